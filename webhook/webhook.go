// Package webhook signs and verifies webhooks the Standard Webhooks way
// (https://www.standardwebhooks.com): HMAC-SHA256 over "id.timestamp.body",
// carried in the webhook-id, webhook-timestamp and webhook-signature headers.
//
// outboxkit's dispatcher signs every delivery with [Signer]; a service that
// receives webhooks, from outboxkit or any sender that follows the
// specification, checks them with [Verifier]. The package needs no database:
// a receiver imports neither lib/pq nor golang-migrate.
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names. Every outboxkit delivery carries all three.
const (
	// HeaderID carries the event id: the same on every attempt and for every
	// subscription, so receivers deduplicate on it.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the attempt's time in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries space-separated "v1,<base64>" signatures, one
	// per signing secret.
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every Standard Webhooks signing secret.
const SecretPrefix = "whsec_"

// Defaults of Verifier fields left at their zero value.
const (
	// ToleranceDefault is how far a webhook's timestamp may lie from the
	// receiver's clock, in either direction, before it is refused.
	ToleranceDefault = 5 * time.Minute
	// MaxBodyBytesDefault caps the body VerifyRequest reads (4 MiB).
	MaxBodyBytesDefault = 4 << 20
)

// Errors of this package. Every error it returns wraps one of them.
var (
	// ErrInvalidSecret reports a signing secret that is not "whsec_"
	// followed by the base64 of 16 to 128 bytes, or no secret at all.
	ErrInvalidSecret = errors.New("webhook: invalid secret")
	// ErrMissingHeaders reports a request without the webhook-id,
	// webhook-timestamp or webhook-signature header.
	ErrMissingHeaders = errors.New("webhook: headers missing")
	// ErrTimestamp reports a webhook-timestamp that is not Unix seconds or
	// lies outside the verifier's tolerance (a replay or a skewed clock).
	ErrTimestamp = errors.New("webhook: timestamp invalid or outside tolerance")
	// ErrSignature reports that no signature in webhook-signature matches
	// the body under any of the verifier's secrets.
	ErrSignature = errors.New("webhook: signature mismatch")
	// ErrBodyTooLarge reports a request body over Verifier.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("webhook: body too large")
)

// Envelope is the JSON body of every outboxkit webhook delivery, the shape
// the Standard Webhooks specification recommends:
//
//	{"id": "<event id>", "type": "<topic>", "timestamp": "<RFC 3339>", "data": <payload>}
//
// id equals the webhook-id header and is the same on every attempt;
// timestamp is when the event was enqueued. Receivers may unmarshal into it.
type Envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// NewSecret returns a fresh signing secret: "whsec_" followed by the base64
// of 32 random bytes.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhook: new secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// CheckSecret reports whether s is a usable signing secret: "whsec_"
// (optional) followed by the base64 of 16 to 128 bytes. The error wraps
// ErrInvalidSecret and never holds the secret.
func CheckSecret(s string) error {
	_, err := decodeSecret(s)
	return err
}

// Signer signs messages with one or more secrets. It is safe for
// concurrent use.
type Signer struct {
	keys [][]byte
}

// NewSigner returns a signer for secrets. While a secret is rotated, pass
// the old and the new one: every message then carries both signatures, and
// receivers holding either secret accept it. The error wraps
// ErrInvalidSecret and names the secret by index, never by value.
func NewSigner(secrets ...string) (*Signer, error) {
	keys, err := decodeSecrets(secrets)
	if err != nil {
		return nil, err
	}
	return &Signer{keys: keys}, nil
}

// Sign returns the webhook-signature header value of one message: one
// "v1,<base64>" signature per secret, space-separated.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	var b strings.Builder
	for i, key := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.Write(signatureV1(key, id, ts.Unix(), body))
	}
	return b.String()
}

// Header sets the three Standard Webhooks headers of one message on h.
func (s *Signer) Header(h http.Header, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(id, ts, body))
}

// Verifier checks the signature and timestamp of webhooks a service
// receives. It is safe for concurrent use once its fields are set; set them
// before the first call.
type Verifier struct {
	// Tolerance is how far the webhook-timestamp may lie from Now, in either
	// direction. Default ToleranceDefault (5 minutes).
	Tolerance time.Duration
	// MaxBodyBytes caps the body VerifyRequest reads. Default
	// MaxBodyBytesDefault.
	MaxBodyBytes int64
	// Now supplies the current time. Default time.Now.
	Now func() time.Time

	keys [][]byte
}

// NewVerifier returns a verifier that accepts a webhook signed with any of
// secrets. Pass the old and the new secret while a secret is rotated. The
// error wraps ErrInvalidSecret.
func NewVerifier(secrets ...string) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: a verifier needs at least one secret", ErrInvalidSecret)
	}
	keys, err := decodeSecrets(secrets)
	if err != nil {
		return nil, err
	}
	return &Verifier{keys: keys}, nil
}

// Verify checks that body, with header's webhook-id and webhook-timestamp,
// carries a valid signature under one of the verifier's secrets, and that
// the timestamp lies within the tolerance. Signatures are compared in
// constant time. The error wraps ErrMissingHeaders, ErrTimestamp or
// ErrSignature. A receiver should still deduplicate on webhook-id: delivery
// is at least once.
func (v *Verifier) Verify(header http.Header, body []byte) error {
	id := header.Get(HeaderID)
	tsText := header.Get(HeaderTimestamp)
	sigs := header.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: need %s, %s and %s", ErrMissingHeaders, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not Unix seconds", ErrTimestamp, HeaderTimestamp)
	}
	tolerance := v.Tolerance
	if tolerance <= 0 {
		tolerance = ToleranceDefault
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	// Compare in seconds: a time.Duration would overflow for absurd values.
	skew := now().Unix() - ts
	limit := int64(tolerance / time.Second)
	if skew > limit || skew < -limit {
		return fmt.Errorf("%w: timestamp %d is %ds away from now (tolerance %s)", ErrTimestamp, ts, skew, tolerance)
	}
	for _, key := range v.keys {
		want := signatureV1(key, id, ts, body)
		for _, sig := range strings.Fields(sigs) {
			got, ok := strings.CutPrefix(sig, "v1,")
			if ok && hmac.Equal([]byte(got), want) {
				return nil
			}
		}
	}
	return ErrSignature
}

// VerifyRequest reads r's body (at most MaxBodyBytes), verifies it as Verify
// does, and returns it. r.Body is replaced by a reader of the same bytes, so
// later handlers can read it again. The error wraps ErrBodyTooLarge or one
// of Verify's.
func (v *Verifier) VerifyRequest(r *http.Request) ([]byte, error) {
	limit := v.MaxBodyBytes
	if limit <= 0 {
		limit = MaxBodyBytesDefault
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
		_ = r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("webhook: read body: %w", err)
		}
		if int64(len(body)) > limit {
			return nil, fmt.Errorf("%w: over %d bytes", ErrBodyTooLarge, limit)
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := v.Verify(r.Header, body); err != nil {
		return nil, err
	}
	return body, nil
}

// signatureV1 is the base64 HMAC-SHA256 of "id.timestamp.body" under key.
func signatureV1(key []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	sum := h.Sum(nil)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum)
	return out
}

// decodeSecrets decodes each secret; a failure names the secret's index,
// never its value.
func decodeSecrets(secrets []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		key, err := decodeSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func decodeSecret(s string) ([]byte, error) {
	raw := strings.TrimPrefix(s, SecretPrefix)
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: not whsec_ followed by base64", ErrInvalidSecret)
	}
	if len(key) < 16 || len(key) > 128 {
		return nil, fmt.Errorf("%w: must decode to 16 to 128 bytes, got %d", ErrInvalidSecret, len(key))
	}
	return key, nil
}
