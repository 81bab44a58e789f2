package outbox

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/subconfig"
	"github.com/outboxkit/outbox/webhook"
)

// newSecret returns a fresh "whsec_" signing secret.
func newSecret(t testing.TB) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// secretForms are the ways a secret could leak into a table: as given, and
// for a whsec_ secret its raw bytes in base64 and hex.
func secretForms(t testing.TB, secret string) []string {
	t.Helper()
	forms := []string{secret}
	if raw, ok := strings.CutPrefix(secret, "whsec_"); ok {
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, raw, base64.RawURLEncoding.EncodeToString(b), hex.EncodeToString(b))
	}
	return forms
}

// keyForms are the ways a key's bytes could leak: base64 (padded, raw, URL)
// and hex.
func keyForms(k keys.Key) []string {
	return []string{base64.StdEncoding.EncodeToString(k.Secret), base64.RawStdEncoding.EncodeToString(k.Secret),
		base64.URLEncoding.EncodeToString(k.Secret), base64.RawURLEncoding.EncodeToString(k.Secret), hex.EncodeToString(k.Secret)}
}

// assertNowhere fails if any row of any table of the schema holds one of
// needles (testutil.AssertNowhere).
func (b *bundle) assertNowhere(t *testing.T, needles []string) {
	t.Helper()
	testutil.AssertNowhere(t, b.db, b.schema, needles)
}

// refReceiver is a webhook receiver that verifies every delivery with the
// Standard Webhooks reference library, under the secret of the
// subscription named by the request path ("/<name>"). It answers 204 to a
// verified delivery, 401 otherwise.
type refReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	secrets  map[string]string          // subscription → secret
	verified map[string]map[string]bool // subscription → event ids verified
	headers  map[string]http.Header     // subscription → last verified request's headers
	bad      atomic.Int64               // deliveries that did not verify
	got      chan struct{}
}

func newRefReceiver(t *testing.T) *refReceiver {
	t.Helper()
	r := &refReceiver{secrets: map[string]string{}, verified: map[string]map[string]bool{},
		headers: map[string]http.Header{}, got: make(chan struct{}, 10000)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		sub := strings.TrimPrefix(req.URL.Path, "/")
		r.mu.Lock()
		secret := r.secrets[sub]
		r.mu.Unlock()
		ref, err := standardwebhooks.NewWebhook(secret)
		if err == nil {
			err = ref.Verify(body, req.Header)
		}
		if err != nil {
			r.bad.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		if r.verified[sub] == nil {
			r.verified[sub] = map[string]bool{}
		}
		r.verified[sub][req.Header.Get(webhook.HeaderID)] = true
		r.headers[sub] = req.Header.Clone()
		r.mu.Unlock()
		r.got <- struct{}{}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *refReceiver) url(sub string) string { return r.srv.URL + "/" + sub }

func (r *refReceiver) expect(sub, secret string) {
	r.mu.Lock()
	r.secrets[sub] = secret
	r.mu.Unlock()
}

func (r *refReceiver) verifiedCount(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.verified[sub])
}

func (r *refReceiver) has(sub, eventID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verified[sub][eventID]
}

func (r *refReceiver) header(sub string) http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headers[sub]
}

// TestSecretsNeverStoredInClear plants signing secrets and header
// credentials, and finds none of them, in any form, in any column of any
// table: after Subscribe, after UpdateSubscriptionConfig, and after
// deliveries (whose attempts are recorded in integration_log), which the
// Standard Webhooks reference library verifies and which carry the
// credentials in clear.
func TestSecretsNeverStoredInClear(t *testing.T) {
	t.Parallel()
	key := newTestKey(t, "k-2030")
	kp, err := keys.Static(key)
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, &Config{Keys: kp})
	ctx := ctxT(t)
	recv := newRefReceiver(t)
	s1, s2, s3 := newSecret(t), newSecret(t), newSecret(t)
	creds := map[string]string{
		"Authorization":       "Bearer tok-" + strings.Repeat("a1", 12),
		"X-Api-Key":           "apikey-" + strings.Repeat("b2", 12),
		"Proxy-Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pw-c3c3c3c3c3")),
		"X-Custom-Cred":       "custom-" + strings.Repeat("d4", 12), // secret because listed in SecretHeaders
	}
	headers := map[string]string{"X-Tenant": "acme"}
	for k, v := range creds {
		headers[k] = v
	}
	b.subscribeWebhook(t, "alpha", "order.*", recv.url("alpha"), subconfig.Config{
		Secrets: []string{s1, s2}, Headers: headers, SecretHeaders: []string{"x-custom-cred"}})
	b.subscribeWebhook(t, "beta", "order.*", recv.url("beta"), subconfig.Config{Secrets: []string{s3}})
	recv.expect("alpha", s2)
	recv.expect("beta", s3)

	var needles []string
	for _, s := range []string{s1, s2, s3} {
		needles = append(needles, secretForms(t, s)...)
	}
	for _, v := range creds {
		needles = append(needles, v)
	}
	needles = append(needles, keyForms(key)...)
	b.assertNowhere(t, needles)

	// Rewriting the config through UpdateSubscriptionConfig seals again.
	got, err := b.ob.GetSubscription(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	got.Config.MaxRetries = intPtr(4)
	if _, err := b.ob.UpdateSubscriptionConfig(ctx, "alpha", got.Config); err != nil {
		t.Fatal(err)
	}
	b.assertNowhere(t, needles)

	startDispatcher(t, whDispatcher(t, b, nil))
	ev := b.enqueue(t, "order.created", map[string]any{"id": 1})
	waitFor(t, "both deliveries verified", func() bool {
		return recv.has("alpha", ev.EventID.String()) && recv.has("beta", ev.EventID.String())
	})
	if n := recv.bad.Load(); n != 0 {
		t.Fatalf("%d deliveries did not verify", n)
	}
	h := recv.header("alpha")
	for k, v := range creds {
		if h.Get(k) != v {
			t.Errorf("header %s not delivered in clear", k)
		}
	}
	if h.Get("X-Tenant") != "acme" {
		t.Errorf("X-Tenant = %q", h.Get("X-Tenant"))
	}
	waitFor(t, "attempts recorded", func() bool { return b.attempts(t, "alpha", "success") == 1 })
	b.assertNowhere(t, needles)
}

// TestSecretsHiddenFromReads: GetSubscription, ListSubscriptions and
// Subscribe return no secret in clear (Encrypted instead), logs show none,
// a config read and written back keeps its secrets, a header given in
// clear replaces its sealed value, and GetSubscriptionSecrets decrypts.
func TestSecretsHiddenFromReads(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	secret := newSecret(t)
	out := b.subscribeWebhook(t, "crm", "#", "http://127.0.0.1:1/hook", subconfig.Config{
		Secrets: []string{secret}, Headers: map[string]string{"Authorization": "Bearer one", "X-Tenant": "acme"}})
	list, err := b.ob.ListSubscriptions(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	get, err := b.ob.GetSubscription(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Subscription{out, list[0], get} {
		c := s.Config
		if len(c.Secrets) != 0 || c.Headers["Authorization"] != "" || c.Headers["X-Tenant"] != "acme" ||
			c.Encrypted == nil || c.Encrypted.KeyID != "test-key" || len(c.Encrypted.Secrets) != 1 || c.Encrypted.Headers["Authorization"] == "" {
			t.Fatalf("config returned = %+v", c)
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", slog.Any("config", c), slog.Any("subscription", s))
		if strings.Contains(buf.String(), c.Encrypted.Secrets[0]) || strings.Contains(buf.String(), c.Encrypted.DataKey) ||
			strings.Contains(buf.String(), "Bearer") {
			t.Fatalf("log shows a secret: %s", buf.String())
		}
	}

	// Read, change, write back: the secrets stay.
	get.Config.MaxRetries = intPtr(2)
	if _, err := b.ob.UpdateSubscriptionConfig(ctx, "crm", get.Config); err != nil {
		t.Fatal(err)
	}
	sec, err := b.ob.GetSubscriptionSecrets(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.Secrets) != 1 || sec.Secrets[0] != secret || sec.Headers["Authorization"] != "Bearer one" || len(sec.Headers) != 1 {
		t.Fatalf("secrets after round trip: %d secrets, headers %v", len(sec.Secrets), len(sec.Headers))
	}
	// A header given in clear replaces its sealed value; the secrets stay.
	get, _ = b.ob.GetSubscription(ctx, "crm")
	get.Config.Headers["authorization"] = "Bearer two"
	if _, err := b.ob.UpdateSubscriptionConfig(ctx, "crm", get.Config); err != nil {
		t.Fatal(err)
	}
	sec, err = b.ob.GetSubscriptionSecrets(ctx, "crm")
	if err != nil || len(sec.Secrets) != 1 || len(sec.Headers) != 1 || sec.Headers["authorization"] != "Bearer two" {
		t.Fatalf("after header change: %v %d %v", err, len(sec.Secrets), sec.Headers["authorization"] == "Bearer two")
	}
	// Without Encrypted, the config holds no secret any more.
	if _, err := b.ob.UpdateSubscriptionConfig(ctx, "crm", subconfig.Config{}); err != nil {
		t.Fatal(err)
	}
	if sec, err := b.ob.GetSubscriptionSecrets(ctx, "crm"); err != nil || len(sec.Secrets)+len(sec.Headers) != 0 {
		t.Fatalf("after clearing: %v, %d secrets", err, len(sec.Secrets)+len(sec.Headers))
	}
	// A sealed block copied to another subscription does not open there.
	b.subscribeWebhook(t, "other", "#", "http://127.0.0.1:1/other", subconfig.Config{Secrets: []string{secret}})
	o, _ := b.ob.GetSubscription(ctx, "other")
	_, err = b.ob.UpdateSubscriptionConfig(ctx, "crm", o.Config)
	var se *SecretsError
	if !errors.Is(err, keys.ErrDecrypt) || !errors.As(err, &se) || se.Subscription != "crm" {
		t.Fatalf("copied sealed block: err = %v", err)
	}
	if _, err := b.ob.GetSubscriptionSecrets(ctx, "nope"); !errors.Is(err, ErrSubscriptionNotFound) {
		t.Fatalf("unknown subscription: %v", err)
	}
}

// storedConfig reads a subscription's stored config JSON.
func (b *bundle) storedConfig(t *testing.T, name string) map[string]any {
	t.Helper()
	var raw string
	if err := b.db.QueryRow(`SELECT subscription_config::text FROM "`+b.schema+`".event_subscription WHERE subscriber_name = $1`, name).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (b *bundle) setStoredConfig(t *testing.T, name string, m map[string]any) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(`UPDATE "`+b.schema+`".event_subscription SET subscription_config = $2::jsonb WHERE subscriber_name = $1`, name, string(raw)); err != nil {
		t.Fatal(err)
	}
}

// flipB64 flips one bit of the decoded bytes at i (from the end when
// negative) and encodes again.
func flipB64(t *testing.T, s string, i int) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(b)
	}
	b[i] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

// TestSecretsTamperingDetected alters the stored JSON: a flipped byte in a
// secret, in a header value, in the wrapped data key; ciphertexts swapped
// between two fields of one subscription and between two subscriptions;
// a whole sealed block moved to another subscription. Each is detected:
// GetSubscriptionSecrets fails with keys.ErrDecrypt in a *SecretsError,
// and delivery fails with a clear failure_reason naming the key id,
// retried and not lost, while an untouched subscription keeps flowing.
func TestSecretsTamperingDetected(t *testing.T) {
	t.Parallel()
	type sealed = map[string]any
	enc := func(m map[string]any) sealed { return m["encrypted"].(map[string]any) }
	cases := []struct {
		name   string
		tamper func(t *testing.T, victim, other map[string]any)
	}{
		{"flipped secret byte", func(t *testing.T, v, _ map[string]any) {
			s := enc(v)["secrets"].([]any)
			s[0] = flipB64(t, s[0].(string), -1)
		}},
		{"flipped nonce byte", func(t *testing.T, v, _ map[string]any) {
			h := enc(v)["headers"].(map[string]any)
			h["Authorization"] = flipB64(t, h["Authorization"].(string), 0)
		}},
		{"flipped data key byte", func(t *testing.T, v, _ map[string]any) {
			enc(v)["dek"] = flipB64(t, enc(v)["dek"].(string), 20)
		}},
		{"fields swapped", func(t *testing.T, v, _ map[string]any) {
			s, h := enc(v)["secrets"].([]any), enc(v)["headers"].(map[string]any)
			s[0], h["Authorization"] = h["Authorization"], s[0]
		}},
		{"secrets swapped between subscriptions", func(t *testing.T, v, o map[string]any) {
			enc(v)["secrets"], enc(o)["secrets"] = enc(o)["secrets"], enc(v)["secrets"]
		}},
		{"sealed block moved from another subscription", func(t *testing.T, v, o map[string]any) {
			v["encrypted"] = o["encrypted"]
		}},
		// Dropping entries would otherwise leave every remaining value
		// authentic: deliveries unsigned, or without their credentials.
		{"secret dropped", func(t *testing.T, v, _ map[string]any) {
			enc(v)["secrets"] = []any{}
		}},
		{"secret header dropped", func(t *testing.T, v, _ map[string]any) {
			delete(enc(v), "headers")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			ctx := ctxT(t)
			recv := newRefReceiver(t)
			for _, name := range []string{"victim", "other"} {
				s := newSecret(t)
				recv.expect(name, s)
				b.subscribeWebhook(t, name, "order.*", recv.url(name), subconfig.Config{
					Secrets: []string{s}, Headers: map[string]string{"Authorization": "Bearer " + name}})
			}
			healthy := newSecret(t)
			recv.expect("healthy", healthy)
			b.subscribeWebhook(t, "healthy", "order.*", recv.url("healthy"), subconfig.Config{Secrets: []string{healthy}})
			victim, other := b.storedConfig(t, "victim"), b.storedConfig(t, "other")
			tc.tamper(t, victim, other)
			b.setStoredConfig(t, "victim", victim)
			b.setStoredConfig(t, "other", other)

			_, err := b.ob.GetSubscriptionSecrets(ctx, "victim")
			var se *SecretsError
			if !errors.Is(err, keys.ErrDecrypt) || !errors.As(err, &se) || se.Subscription != "victim" || se.KeyID != "test-key" {
				t.Fatalf("GetSubscriptionSecrets: %v", err)
			}
			if strings.Contains(err.Error(), "Bearer") || strings.Contains(err.Error(), "whsec_") {
				t.Fatalf("error shows a secret: %v", err)
			}

			startDispatcher(t, whDispatcher(t, b, nil))
			ev := b.enqueue(t, "order.created", map[string]any{"id": 1})
			waitFor(t, "healthy delivered", func() bool { return recv.has("healthy", ev.EventID.String()) })
			waitFor(t, "victim's attempt failed", func() bool {
				r := b.whRow(t, "victim")
				return r.retries >= 1 && r.reason.Valid
			})
			r := b.whRow(t, "victim")
			if r.status != "PENDING" && r.status != "PROCESSING" {
				t.Fatalf("victim row %s: retried rows stay queued", r.status)
			}
			if !strings.Contains(r.reason.String, "do not decrypt") || !strings.Contains(r.reason.String, `"test-key"`) ||
				!strings.Contains(r.reason.String, "victim") {
				t.Fatalf("failure_reason = %q", r.reason.String)
			}
			if recv.has("victim", ev.EventID.String()) || recv.bad.Load() != 0 {
				t.Fatal("a tampered subscription's webhook was sent")
			}
			if n := b.attempts(t, "victim", ""); n != 0 {
				t.Fatalf("%d attempts recorded for a webhook never sent", n)
			}
		})
	}
}

// TestSecretsWrongOrMissingKey delivers with handles on the same schema
// that lack the sealing key: one holding another key under the same id
// (wrong key), one holding only a key of another id, one with no key at
// all. Each fails the sealed subscription's rows with a clear reason
// naming the key id, and keeps them queued; a subscription sealed under a
// key the handle holds keeps flowing. With the key back, the row is
// delivered.
func TestSecretsWrongOrMissingKey(t *testing.T) {
	t.Parallel()
	keyA := newTestKey(t, "key-a")
	for _, tc := range []struct {
		name   string
		keys   func(t *testing.T) keys.Provider
		reason string
		is     error
	}{
		{"wrong key", func(t *testing.T) keys.Provider { return newTestKeys(t, "key-a") }, `unwrap data key with key "key-a": keys: sealed secrets do not decrypt`, keys.ErrDecrypt},
		{"unknown key id", func(t *testing.T) keys.Provider { return newTestKeys(t, "key-b") }, `no key "key-a" among the configured keys`, keys.ErrKeyNotFound},
		{"no key", func(*testing.T) keys.Provider { return nil }, `secrets are encrypted with key "key-a", and no key provider is configured`, keys.ErrKeyNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kpA, err := keys.Static(keyA)
			if err != nil {
				t.Fatal(err)
			}
			b := setup(t, &Config{Keys: kpA})
			recv := newRefReceiver(t)
			sealed := newSecret(t)
			recv.expect("sealed", sealed)
			b.subscribeWebhook(t, "sealed", "order.*", recv.url("sealed"), subconfig.Config{Secrets: []string{sealed}})

			keys := tc.keys(t)
			other, err := New(b.db, Config{Schema: b.schema, Keys: keys, AllowPlaintextSecrets: keys == nil,
				WebhookAllowedNetworks: loopbackNetworks, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ob := &bundle{db: b.db, ob: other, schema: b.schema}
			flowing := newSecret(t)
			recv.expect("flowing", flowing)
			ob.subscribeWebhook(t, "flowing", "order.*", recv.url("flowing"), subconfig.Config{Secrets: []string{flowing}})

			_, err = other.GetSubscriptionSecrets(ctxT(t), "sealed")
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), `"key-a"`) {
				t.Fatalf("GetSubscriptionSecrets: %v", err)
			}
			stop := startDispatcher(t, whDispatcher(t, ob, nil))
			ev := b.enqueue(t, "order.created", map[string]any{"id": 1})
			waitFor(t, "flowing delivered", func() bool { return recv.has("flowing", ev.EventID.String()) })
			waitFor(t, "sealed attempt failed", func() bool { return b.whRow(t, "sealed").retries >= 1 })
			stop()
			r := b.whRow(t, "sealed")
			if r.status != "PENDING" || !strings.Contains(r.reason.String, tc.reason) {
				t.Fatalf("row %s, failure_reason %q", r.status, r.reason.String)
			}
			// The key is back: the row is delivered on its next attempt.
			if _, err := b.db.Exec(`UPDATE "` + b.schema + `".event_queue SET next_retry_at = NULL WHERE status = 'PENDING'`); err != nil {
				t.Fatal(err)
			}
			startDispatcher(t, whDispatcher(t, b, nil))
			waitFor(t, "sealed delivered with its key", func() bool { return recv.has("sealed", ev.EventID.String()) })
			if recv.bad.Load() != 0 {
				t.Fatal("a delivery did not verify")
			}
		})
	}
}

// A signing secret planted in clear into subscription_config (by SQL, or by
// a process without keys) of a handle that has keys is never used: the row
// is not sent, its failure_reason and an Error log say why and how to seal
// it, and once RotateSubscriptionSecrets has sealed it the row is delivered,
// signed with it.
func TestSecretsInClearRefusedWithKeys(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	recv := newRefReceiver(t)
	sealed := newSecret(t)
	recv.expect("sub", sealed)
	b.subscribeWebhook(t, "sub", "order.*", recv.url("sub"), subconfig.Config{Secrets: []string{sealed}})
	planted := newSecret(t)
	if _, err := b.db.Exec(`UPDATE "`+b.schema+`".event_subscription SET subscription_config = subscription_config || jsonb_build_object('secrets', jsonb_build_array($1::text))
		WHERE subscriber_name = 'sub'`, planted); err != nil {
		t.Fatal(err)
	}
	ev := b.enqueue(t, "order.created", map[string]any{"id": 1})
	stop := startDispatcher(t, whDispatcher(t, b, nil))
	waitFor(t, "refused attempt", func() bool { return b.whRow(t, "sub").retries >= 1 })
	stop()
	r := b.whRow(t, "sub")
	if r.status != "PENDING" || !strings.Contains(r.reason.String, "in clear") || !strings.Contains(r.reason.String, "RotateSubscriptionSecrets") {
		t.Fatalf("row %s, failure_reason %q", r.status, r.reason.String)
	}
	if recv.verifiedCount("sub") != 0 || recv.bad.Load() != 0 {
		t.Fatalf("a request was sent: %d verified, %d not", recv.verifiedCount("sub"), recv.bad.Load())
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "in clear") || strings.Contains(out, planted) {
		t.Fatalf("log does not say so at Error, or shows the secret:\n%s", out)
	}
	res, err := b.ob.RotateSubscriptionSecrets(ctxT(t))
	if err != nil || res.Sealed+res.Rotated != 1 {
		t.Fatalf("RotateSubscriptionSecrets = %+v, %v", res, err)
	}
	var inClear bool
	if err := b.db.QueryRow(`SELECT subscription_config ? 'secrets' FROM "` + b.schema + `".event_subscription WHERE subscriber_name = 'sub'`).Scan(&inClear); err != nil || inClear {
		t.Fatalf("secrets still in clear after rotation: %v %v", inClear, err)
	}
	if _, err := b.db.Exec(`UPDATE "` + b.schema + `".event_queue SET next_retry_at = NULL`); err != nil {
		t.Fatal(err)
	}
	recv.expect("sub", planted)
	stop = startDispatcher(t, whDispatcher(t, b, nil))
	defer stop()
	waitFor(t, "delivery signed with the sealed secret", func() bool { return recv.has("sub", ev.EventID.String()) })
}
