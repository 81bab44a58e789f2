package webhook

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The specification's test vector, used by every reference library.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// A second secret, for rotation tests.
	otherSecret = "whsec_dGhpcyBpcyBhIHNlY29uZCB0ZXN0IHNlY3JldCE="
)

func mustKeys(t testing.TB, secrets ...string) *Signer {
	t.Helper()
	s, err := NewSigner(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signWebhook(s *Signer, id string, ts int64, body []byte) string {
	return s.Sign(id, time.Unix(ts, 0), body)
}

func mustVerifier(t testing.TB, now time.Time, secrets ...string) *Verifier {
	t.Helper()
	v, err := NewVerifier(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	return v
}

func signedHeader(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestWebhookSignatureVector(t *testing.T) {
	t.Parallel()
	got := signWebhook(mustKeys(t, vectorSecret), vectorID, vectorTimestamp, []byte(vectorPayload))
	if got != vectorSignature {
		t.Fatalf("signature = %q, want the specification's %q", got, vectorSignature)
	}
	// The whsec_ prefix is optional.
	if got := signWebhook(mustKeys(t, strings.TrimPrefix(vectorSecret, "whsec_")), vectorID, vectorTimestamp, []byte(vectorPayload)); got != vectorSignature {
		t.Fatalf("signature without prefix = %q", got)
	}
	v := mustVerifier(t, time.Unix(vectorTimestamp, 0), vectorSecret)
	if err := v.Verify(signedHeader(vectorID, vectorTimestamp, vectorSignature), []byte(vectorPayload)); err != nil {
		t.Fatalf("verify vector: %v", err)
	}
}

// TestWebhookSignatureReferenceLibrary checks both directions against the
// specification's Go library: it verifies what we sign, we verify what it
// signs.
func TestWebhookSignatureReferenceLibrary(t *testing.T) {
	t.Parallel()
	ref, err := standardwebhooks.NewWebhook(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	bodies := []string{vectorPayload, ``, `{"id":"x","data":{"emoji":"✓","nested":[1,2,3]}}`, strings.Repeat("a", 10000)}
	for i, body := range bodies {
		id := "evt_" + strconv.Itoa(i)
		// We sign (with a rotation pair), the reference verifies.
		sig := signWebhook(mustKeys(t, otherSecret, vectorSecret), id, now.Unix(), []byte(body))
		if err := ref.Verify([]byte(body), signedHeader(id, now.Unix(), sig)); err != nil {
			t.Errorf("body %d: reference library refused our signature %q: %v", i, sig, err)
		}
		// The reference signs, we verify.
		refSig, err := ref.Sign(id, now, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		v := mustVerifier(t, now, vectorSecret)
		if err := v.Verify(signedHeader(id, now.Unix(), refSig), []byte(body)); err != nil {
			t.Errorf("body %d: we refused the reference signature %q: %v", i, refSig, err)
		}
		if got := signWebhook(mustKeys(t, vectorSecret), id, now.Unix(), []byte(body)); got != refSig {
			t.Errorf("body %d: signature %q differs from the reference's %q", i, got, refSig)
		}
	}
}

func TestWebhookSignatureRotation(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	body := []byte(`{"a":1}`)
	sig := signWebhook(mustKeys(t, vectorSecret, otherSecret), "evt_1", now.Unix(), body)
	parts := strings.Fields(sig)
	if len(parts) != 2 || !strings.HasPrefix(parts[0], "v1,") || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("want two v1 signatures, got %q", sig)
	}
	h := signedHeader("evt_1", now.Unix(), sig)
	for _, secrets := range [][]string{{vectorSecret}, {otherSecret}, {otherSecret, vectorSecret}} {
		if err := mustVerifier(t, now, secrets...).Verify(h, body); err != nil {
			t.Errorf("verifier with %d secret(s) refused: %v", len(secrets), err)
		}
	}
	stranger, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := mustVerifier(t, now, stranger).Verify(h, body); !errors.Is(err, ErrSignature) {
		t.Fatalf("unrelated secret: err = %v, want ErrSignature", err)
	}
}

func TestWebhookVerifierErrors(t *testing.T) {
	t.Parallel()
	now := time.Unix(vectorTimestamp, 0)
	body := []byte(vectorPayload)
	v := mustVerifier(t, now, vectorSecret)
	tests := []struct {
		name   string
		header http.Header
		body   []byte
		want   error
	}{
		{"missing id", signedHeader("", vectorTimestamp, vectorSignature), body, ErrMissingHeaders},
		{"missing signature", signedHeader(vectorID, vectorTimestamp, ""), body, ErrMissingHeaders},
		{"missing timestamp", func() http.Header {
			h := signedHeader(vectorID, 0, vectorSignature)
			h.Del(HeaderTimestamp)
			return h
		}(), body, ErrMissingHeaders},
		{"timestamp not a number", func() http.Header {
			h := signedHeader(vectorID, 0, vectorSignature)
			h.Set(HeaderTimestamp, "2021-02-25T15:02:10Z")
			return h
		}(), body, ErrTimestamp},
		{"timestamp too old", signedHeader(vectorID, vectorTimestamp-301, signWebhook(mustKeys(t, vectorSecret), vectorID, vectorTimestamp-301, body)), body, ErrTimestamp},
		{"timestamp too new", signedHeader(vectorID, vectorTimestamp+301, signWebhook(mustKeys(t, vectorSecret), vectorID, vectorTimestamp+301, body)), body, ErrTimestamp},
		{"timestamp absurd", signedHeader(vectorID, -1<<62, vectorSignature), body, ErrTimestamp},
		{"tampered body", signedHeader(vectorID, vectorTimestamp, vectorSignature), []byte(`{"test": 2432232315}`), ErrSignature},
		{"other id", signedHeader("msg_other", vectorTimestamp, vectorSignature), body, ErrSignature},
		{"other timestamp", signedHeader(vectorID, vectorTimestamp+1, vectorSignature), body, ErrSignature},
		{"unknown version", signedHeader(vectorID, vectorTimestamp, "v2,"+strings.TrimPrefix(vectorSignature, "v1,")), body, ErrSignature},
		{"truncated signature", signedHeader(vectorID, vectorTimestamp, vectorSignature[:len(vectorSignature)-2]), body, ErrSignature},
		{"garbage", signedHeader(vectorID, vectorTimestamp, "v1, ,,, v1"), body, ErrSignature},
	}
	for _, tt := range tests {
		err := v.Verify(tt.header, tt.body)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Within tolerance at the edges, and several signatures with the
	// valid one last.
	for _, skew := range []int64{-300, 300} {
		ts := int64(vectorTimestamp) + skew
		sig := "v1,bm9wZQ== v2,x " + signWebhook(mustKeys(t, vectorSecret), vectorID, ts, body)
		if err := v.Verify(signedHeader(vectorID, ts, sig), body); err != nil {
			t.Errorf("skew %ds: %v", skew, err)
		}
	}
	// A custom tolerance.
	strict := mustVerifier(t, now, vectorSecret)
	strict.Tolerance = 10 * time.Second
	ts := int64(vectorTimestamp) - 11
	if err := strict.Verify(signedHeader(vectorID, ts, signWebhook(mustKeys(t, vectorSecret), vectorID, ts, body)), body); !errors.Is(err, ErrTimestamp) {
		t.Errorf("tolerance 10s, skew 11s: err = %v", err)
	}
}

func TestWebhookVerifyRequest(t *testing.T) {
	t.Parallel()
	now := time.Unix(vectorTimestamp, 0)
	v := mustVerifier(t, now, vectorSecret)
	newReq := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
		for k, vals := range signedHeader(vectorID, vectorTimestamp, vectorSignature) {
			r.Header[k] = vals
		}
		return r
	}
	r := newReq(vectorPayload)
	body, err := v.VerifyRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != vectorPayload {
		t.Fatalf("body = %q", body)
	}
	again, err := io.ReadAll(r.Body)
	if err != nil || string(again) != vectorPayload {
		t.Fatalf("body not restored: %q, %v", again, err)
	}
	if _, err := v.VerifyRequest(newReq(vectorPayload + " ")); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered: err = %v", err)
	}
	small := mustVerifier(t, now, vectorSecret)
	small.MaxBodyBytes = 5
	if _, err := small.VerifyRequest(newReq(vectorPayload)); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("too large: err = %v", err)
	}
	// A body of exactly the limit is read whole.
	exact := mustVerifier(t, now, vectorSecret)
	exact.MaxBodyBytes = int64(len(vectorPayload))
	if _, err := exact.VerifyRequest(newReq(vectorPayload)); err != nil {
		t.Fatalf("body at the limit: %v", err)
	}
}

func TestWebhookVerifierConfig(t *testing.T) {
	t.Parallel()
	if _, err := NewVerifier(); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("no secret: err = %v", err)
	}
	for _, bad := range []string{"whsec_not base64!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short")), ""} {
		_, err := NewVerifier(vectorSecret, bad)
		if !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("secret %q: err = %v", bad, err)
		}
		if err != nil && bad != "" && strings.Contains(err.Error(), strings.TrimPrefix(bad, "whsec_")) {
			t.Errorf("error %q repeats the secret", err)
		}
	}
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	key, err := decodeSecret(s)
	if err != nil || len(key) != 32 || !strings.HasPrefix(s, "whsec_") {
		t.Fatalf("NewSecret = %q: key %d bytes, %v", s, len(key), err)
	}
}

// FuzzWebhookSignatureVerify checks that Verify never panics on any header,
// that a correctly signed message always verifies (whatever junk signatures
// come with it), and that changing one bit of the body never verifies.
func FuzzWebhookSignatureVerify(f *testing.F) {
	f.Add(vectorID, []byte(vectorPayload), vectorSignature, uint(0))
	f.Add("", []byte{}, "", uint(7))
	f.Add("evt 1", []byte(`{"a":[1,2,{"b":null}]}`), "v1,, v1,=== v2,abc", uint(12345))
	keys := mustKeys(f, vectorSecret, otherSecret)
	now := time.Unix(vectorTimestamp, 0)
	v := mustVerifier(f, now, vectorSecret)
	f.Fuzz(func(t *testing.T, id string, body []byte, junk string, flip uint) {
		ts := now.Unix()
		_ = v.Verify(signedHeader(id, ts, junk), body)

		if id == "" {
			return
		}
		sig := signWebhook(keys, id, ts, body)
		h := signedHeader(id, ts, junk+" "+sig)
		if err := v.Verify(h, body); err != nil {
			t.Fatalf("signed message refused: %v", err)
		}
		tampered := bytes.Clone(body)
		if len(tampered) == 0 {
			tampered = append(tampered, byte(flip))
		} else {
			tampered[flip%uint(len(tampered))] ^= 1 << (flip % 8)
		}
		if err := v.Verify(h, tampered); !errors.Is(err, ErrSignature) {
			t.Fatalf("tampered body: err = %v, want ErrSignature", err)
		}
	})
}

func TestSignerHeader(t *testing.T) {
	t.Parallel()
	s := mustKeys(t, vectorSecret)
	h := http.Header{}
	s.Header(h, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if h.Get(HeaderID) != vectorID || h.Get(HeaderTimestamp) != strconv.Itoa(vectorTimestamp) || h.Get(HeaderSignature) != vectorSignature {
		t.Fatalf("headers = %v", h)
	}
	v := mustVerifier(t, time.Unix(vectorTimestamp, 0), vectorSecret)
	if err := v.Verify(h, []byte(vectorPayload)); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecret("whsec_short"); !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("CheckSecret: %v", err)
	}
	if _, err := NewSigner("whsec_" + strings.Repeat("A", 300)); !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("NewSigner with a long secret: %v", err)
	}
}
