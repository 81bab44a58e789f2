// Package subconfig holds a subscription's delivery settings, Config: what
// outbox.Subscription.Config and outbox.Outbox.UpdateSubscriptionConfig
// take, stored as JSON in the subscription_config column. Parse reads that
// JSON strictly; Validate checks a Config the way Subscribe does. The
// delivery engine and the webhook sender read the same type, so the fields
// documented here are the settings they apply.
package subconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/outboxkit/outbox/webhook"
)

// MaxRetriesLimit is the largest max_retries a config accepts.
const MaxRetriesLimit = 1000

// ErrInvalid reports a config that Parse or Validate refuses; the error is
// a *FieldError naming the field. (Subscribe reports the same refusal as an
// outbox.ErrInvalidSubscription *outbox.ValidationError.)
var ErrInvalid = errors.New("subconfig: invalid subscription config")

// FieldError describes one rejected value. It wraps ErrInvalid.
type FieldError struct {
	Field  string // such as "subscription_config.max_retries"
	Reason string
}

// Error says which field was rejected and why.
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Config holds per-subscription delivery settings, stored as
// JSON in subscription_config. Zero fields mean the dispatcher's defaults.
// Unknown keys are rejected.
type Config struct {
	// MaxRetries is the number of retries after the first attempt given to
	// new rows (default 3 for handlers, 9 for webhooks).
	MaxRetries *int `json:"max_retries,omitempty"`
	// BackoffInitial, BackoffMax and BackoffMultiplier shape the exponential
	// backoff between attempts (defaults in DispatcherConfig).
	BackoffInitial    Duration `json:"backoff_initial,omitempty"`
	BackoffMax        Duration `json:"backoff_max,omitempty"`
	BackoffMultiplier float64  `json:"backoff_multiplier,omitempty"`
	// RetrySchedule, when set, replaces exponential backoff: the delay before
	// retry n is RetrySchedule[n-1] (the last entry repeats), with ±20 % jitter.
	RetrySchedule []Duration `json:"retry_schedule,omitempty"`
	// Timeout bounds one attempt (a handler call or an HTTP request).
	Timeout Duration `json:"timeout,omitempty"`
	// Secrets sign webhook deliveries (Standard Webhooks, "whsec_" + base64).
	// Several secrets produce several signatures, for rotation.
	Secrets []string `json:"secrets,omitempty"`
	// Headers are extra HTTP headers sent with every webhook delivery. The
	// values of secret headers (see SecretHeader) are encrypted at rest.
	Headers map[string]string `json:"headers,omitempty"`
	// SecretHeaders names more headers whose values are secret, beyond
	// those SecretHeader recognises by name (case-insensitive).
	SecretHeaders []string `json:"secret_headers,omitempty"`
	// Encrypted holds the secrets and secret header values sealed at rest
	// (see Sealed); nil when there are none or no key is configured.
	Encrypted *Sealed `json:"encrypted,omitempty"`
	// SkipFailed lets rows with an ordering key move on past a FAILED row of
	// the same key (by default a FAILED row blocks its key).
	SkipFailed bool `json:"skip_failed,omitempty"`
}

// LogValue keeps secrets out of logs.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{}
	if c.MaxRetries != nil {
		attrs = append(attrs, slog.Int("max_retries", *c.MaxRetries))
	}
	if c.Timeout > 0 {
		attrs = append(attrs, slog.Duration("timeout", time.Duration(c.Timeout)))
	}
	attrs = append(attrs, slog.Int("secrets", len(c.Secrets)), slog.Int("headers", len(c.Headers)))
	if c.Encrypted != nil {
		attrs = append(attrs, slog.String("encrypted_kid", c.Encrypted.KeyID),
			slog.Int("encrypted_secrets", len(c.Encrypted.Secrets)), slog.Int("encrypted_headers", len(c.Encrypted.Headers)))
	}
	return slog.GroupValue(attrs...)
}

// Sealed is the encrypted form of a subscription's secrets, stored in
// subscription_config under "encrypted". DataKey is a random 256-bit data
// key wrapped (encrypted) by the key KeyID names; each secret and each
// secret header value is encrypted under the data key with AES-256-GCM,
// bound to its subscription and field. Every value is standard base64 of
// nonce followed by ciphertext and tag.
type Sealed struct {
	KeyID   string            `json:"kid"`
	DataKey string            `json:"dek"`
	Secrets []string          `json:"secrets,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// secretHeaderWords are the parts of a header name that make its value
// secret: credentials, tokens, keys, sessions and signatures.
var secretHeaderWords = []string{"auth", "key", "token", "secret", "pass", "credential", "session", "cookie", "signature"}

// SecretHeader reports whether the value of header name is secret: its
// lower-cased name contains one of auth, key, token, secret, pass,
// credential, session, cookie or signature (Authorization,
// Proxy-Authorization, X-Api-Key, Api-Key, X-Auth-Token, Cookie, ...), or
// it is in extra (case-insensitive).
func SecretHeader(name string, extra []string) bool {
	l := strings.ToLower(name)
	for _, w := range secretHeaderWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	for _, e := range extra {
		if strings.EqualFold(e, name) {
			return true
		}
	}
	return false
}

// SecretMaterial returns what c holds in clear that is secret: its signing
// secrets and the values of its secret headers.
func (c Config) SecretMaterial() (secrets []string, headers map[string]string) {
	for k, v := range c.Headers {
		if SecretHeader(k, c.SecretHeaders) {
			if headers == nil {
				headers = map[string]string{}
			}
			headers[k] = v
		}
	}
	return c.Secrets, headers
}

// HasSecrets reports whether c holds secrets, in clear or sealed.
func (c Config) HasSecrets() bool {
	s, h := c.SecretMaterial()
	return len(s) > 0 || len(h) > 0 || (c.Encrypted != nil && (len(c.Encrypted.Secrets) > 0 || len(c.Encrypted.Headers) > 0))
}

// WithoutSecrets returns c without its clear secrets, secret header values
// and sealed block; the maps and slices of c are not modified.
func (c Config) WithoutSecrets() Config {
	c.Secrets = nil
	c.Encrypted = nil
	if len(c.Headers) > 0 {
		h := make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			if !SecretHeader(k, c.SecretHeaders) {
				h[k] = v
			}
		}
		if len(h) == 0 {
			h = nil
		}
		c.Headers = h
	}
	return c
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1.5s", "10m"); a JSON number is taken as nanoseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string such as \"5s\": %w", err)
	}
	*d = Duration(n)
	return nil
}

// Parse decodes subscription_config JSON strictly: an
// unknown key or a value out of range is a *FieldError naming it.
func Parse(data []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fieldError("subscription_config", "%v", err)
	}
	if dec.More() {
		return Config{}, fieldError("subscription_config", "trailing data after the JSON object")
	}
	return c, c.Validate()
}

// Validate checks the values of c; an error is a *FieldError.
func (c Config) Validate() error {
	field := func(name, format string, args ...any) error {
		return fieldError("subscription_config."+name, format, args...)
	}
	if c.MaxRetries != nil && (*c.MaxRetries < 0 || *c.MaxRetries > MaxRetriesLimit) {
		return field("max_retries", "must be between 0 and %d, got %d", MaxRetriesLimit, *c.MaxRetries)
	}
	if c.BackoffInitial < 0 || c.BackoffMax < 0 || c.Timeout < 0 {
		return field("backoff_initial", "durations must not be negative")
	}
	if c.BackoffMax > 0 && c.BackoffInitial > c.BackoffMax {
		return field("backoff_max", "must not be below backoff_initial")
	}
	if c.BackoffMultiplier != 0 && (c.BackoffMultiplier < 1 || c.BackoffMultiplier > 100) {
		return field("backoff_multiplier", "must be between 1 and 100, got %g", c.BackoffMultiplier)
	}
	if len(c.RetrySchedule) > 100 {
		return field("retry_schedule", "has more than 100 entries")
	}
	for _, d := range c.RetrySchedule {
		if d < 0 {
			return field("retry_schedule", "durations must not be negative")
		}
	}
	for _, s := range c.Secrets {
		if err := webhook.CheckSecret(s); err != nil {
			return field("secrets", "%v", err)
		}
	}
	for k, v := range c.Headers {
		if !validHeaderName(k) {
			return field("headers", "%q is not a valid header name", k)
		}
		if !validHeaderValue(v) {
			return field("headers", "value of %q holds control characters", k)
		}
	}
	for _, k := range c.SecretHeaders {
		if !validHeaderName(k) {
			return field("secret_headers", "%q is not a valid header name", k)
		}
	}
	if e := c.Encrypted; e != nil {
		if e.KeyID == "" || len(e.KeyID) > 100 || !validHeaderValue(e.KeyID) {
			return field("encrypted.kid", "must be 1 to 100 characters without control characters")
		}
		if !validB64(e.DataKey) {
			return field("encrypted.dek", "must be base64")
		}
		for _, v := range e.Secrets {
			if !validB64(v) {
				return field("encrypted.secrets", "values must be base64")
			}
		}
		for k, v := range e.Headers {
			if !validHeaderName(k) {
				return field("encrypted.headers", "%q is not a valid header name", k)
			}
			if !validB64(v) {
				return field("encrypted.headers", "values must be base64")
			}
		}
	}
	return nil
}

// validB64 reports whether s is non-empty standard base64.
func validB64(s string) bool {
	if s == "" {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

// validHeaderName reports whether k is an HTTP header name (an RFC 9110 token).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v holds no control character but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
