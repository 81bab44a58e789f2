package outbox

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names (https://www.standardwebhooks.com). Every
// webhook delivery carries all three.
const (
	// WebhookIDHeader carries the event id: the same on every attempt and
	// for every subscription, so receivers deduplicate on it.
	WebhookIDHeader = "webhook-id"
	// WebhookTimestampHeader carries the attempt's time in Unix seconds.
	WebhookTimestampHeader = "webhook-timestamp"
	// WebhookSignatureHeader carries space-separated "v1,<base64>"
	// signatures, one per configured secret.
	WebhookSignatureHeader = "webhook-signature"
)

// Defaults of WebhookVerifier fields left at their zero value.
const (
	// WebhookToleranceDefault is how far a webhook's timestamp may lie from
	// the receiver's clock, in either direction, before it is refused.
	WebhookToleranceDefault = 5 * time.Minute
	// WebhookMaxBodyBytesDefault caps the body VerifyRequest reads (4 MiB).
	WebhookMaxBodyBytesDefault = 4 << 20
)

// Errors of webhook verification. Verify and VerifyRequest wrap one of them.
var (
	// ErrWebhookHeaders reports a request without the webhook-id,
	// webhook-timestamp or webhook-signature header.
	ErrWebhookHeaders = errors.New("outbox: webhook headers missing")
	// ErrWebhookTimestamp reports a webhook-timestamp that is not Unix
	// seconds or lies outside the verifier's tolerance (a replay or a
	// skewed clock).
	ErrWebhookTimestamp = errors.New("outbox: webhook timestamp invalid or outside tolerance")
	// ErrWebhookSignature reports that no signature in webhook-signature
	// matches the body under any of the verifier's secrets.
	ErrWebhookSignature = errors.New("outbox: webhook signature mismatch")
	// ErrWebhookBodyTooLarge reports a request body over
	// WebhookVerifier.MaxBodyBytes.
	ErrWebhookBodyTooLarge = errors.New("outbox: webhook body too large")
)

// webhookSecretPrefix starts every Standard Webhooks secret.
const webhookSecretPrefix = "whsec_"

// WebhookVerifier checks the Standard Webhooks signature and timestamp of
// webhooks a Go service receives, from outboxkit or any other sender that
// follows the specification. It is safe for concurrent use once its fields
// are set; set them before the first call.
type WebhookVerifier struct {
	// Tolerance is how far the webhook-timestamp may lie from Now, in either
	// direction. Default WebhookToleranceDefault (5 minutes).
	Tolerance time.Duration
	// MaxBodyBytes caps the body VerifyRequest reads. Default
	// WebhookMaxBodyBytesDefault.
	MaxBodyBytes int64
	// Now supplies the current time. Default time.Now.
	Now func() time.Time

	keys [][]byte
}

// NewWebhookVerifier returns a verifier that accepts a webhook signed with
// any of secrets ("whsec_" followed by base64; the prefix is optional).
// Pass the old and the new secret while a secret is being rotated.
func NewWebhookVerifier(secrets ...string) (*WebhookVerifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: webhook verifier needs at least one secret", ErrInvalidConfig)
	}
	keys, err := decodeSecrets(secrets)
	if err != nil {
		return nil, err
	}
	return &WebhookVerifier{keys: keys}, nil
}

// NewWebhookSecret returns a fresh signing secret: "whsec_" followed by the
// base64 of 32 random bytes, the form SubscriptionConfig.Secrets takes.
func NewWebhookSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("outbox: webhook secret: %w", err)
	}
	return webhookSecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// Verify checks that body, with header's webhook-id and webhook-timestamp,
// carries a valid signature under one of the verifier's secrets, and that the
// timestamp lies within the tolerance. Signatures are compared in constant
// time. The error wraps ErrWebhookHeaders, ErrWebhookTimestamp or
// ErrWebhookSignature. A receiver should still deduplicate on webhook-id:
// delivery is at least once.
func (v *WebhookVerifier) Verify(header http.Header, body []byte) error {
	id := header.Get(WebhookIDHeader)
	tsText := header.Get(WebhookTimestampHeader)
	sigs := header.Get(WebhookSignatureHeader)
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: need %s, %s and %s", ErrWebhookHeaders, WebhookIDHeader, WebhookTimestampHeader, WebhookSignatureHeader)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not Unix seconds", ErrWebhookTimestamp, WebhookTimestampHeader)
	}
	tolerance := v.Tolerance
	if tolerance <= 0 {
		tolerance = WebhookToleranceDefault
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	// Compare in seconds: a time.Duration would overflow for absurd values.
	skew := now().Unix() - ts
	limit := int64(tolerance / time.Second)
	if skew > limit || skew < -limit {
		return fmt.Errorf("%w: timestamp %d is %ds away from now (tolerance %s)", ErrWebhookTimestamp, ts, skew, tolerance)
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
	return ErrWebhookSignature
}

// VerifyRequest reads r's body (at most MaxBodyBytes), verifies it as Verify
// does, and returns it. r.Body is replaced by a reader of the same bytes, so
// later handlers can read it again.
func (v *WebhookVerifier) VerifyRequest(r *http.Request) ([]byte, error) {
	limit := v.MaxBodyBytes
	if limit <= 0 {
		limit = WebhookMaxBodyBytesDefault
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
		_ = r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("outbox: webhook: read body: %w", err)
		}
		if int64(len(body)) > limit {
			return nil, fmt.Errorf("%w: over %d bytes", ErrWebhookBodyTooLarge, limit)
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := v.Verify(r.Header, body); err != nil {
		return nil, err
	}
	return body, nil
}

// signWebhook returns the webhook-signature header value for one message:
// one "v1,<base64>" signature per key, space-separated (empty without keys).
func signWebhook(keys [][]byte, id string, ts int64, body []byte) string {
	var b strings.Builder
	for i, key := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.Write(signatureV1(key, id, ts, body))
	}
	return b.String()
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

// decodeSecrets decodes each secret, wrapping failures in ErrInvalidConfig
// with the secret's index (never its value).
func decodeSecrets(secrets []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		key, err := decodeSecret(s)
		if err != nil {
			return nil, fmt.Errorf("%w: secret %d: %w", ErrInvalidConfig, i, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// decodeSecret decodes a Standard Webhooks signing secret: "whsec_" followed
// by the base64 of 16 to 128 random bytes (the prefix is optional).
func decodeSecret(s string) ([]byte, error) {
	raw := strings.TrimPrefix(s, webhookSecretPrefix)
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("secret is not whsec_ followed by base64: %w", err)
	}
	if len(key) < 16 || len(key) > 128 {
		return nil, fmt.Errorf("secret must decode to 16 to 128 bytes, got %d", len(key))
	}
	return key, nil
}
