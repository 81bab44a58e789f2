package outbox

import (
	"errors"
	"fmt"
	"time"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/fence"
	"github.com/outboxkit/outbox/internal/webhooksend"
)

// Sentinel errors. Every error the package returns that belongs to one of these
// classes wraps the sentinel, so callers test with errors.Is.
var (
	// ErrInvalidTopic reports a topic that is empty, longer than 100
	// characters, or not dot-separated segments of [A-Za-z0-9_-].
	ErrInvalidTopic = errors.New("outbox: invalid topic")
	// ErrInvalidPattern reports a subscription pattern that breaks the topic
	// syntax (segments may also be * or #).
	ErrInvalidPattern = errors.New("outbox: invalid pattern")
	// ErrInvalidPayload reports a payload (or metadata) that does not
	// marshal to JSON, holds a string that is not valid UTF-8 (which
	// encoding/json would silently replace with U+FFFD), or raw bytes that
	// are not valid UTF-8 JSON that jsonb stores.
	ErrInvalidPayload = errors.New("outbox: invalid payload")
	// ErrPayloadTooLarge reports a payload over Config.MaxPayloadBytes.
	ErrPayloadTooLarge = errors.New("outbox: payload too large")
	// ErrInvalidConfig reports a Config, DispatcherConfig or option value that
	// cannot be used.
	ErrInvalidConfig = errors.New("outbox: invalid configuration")
	// ErrSchemaFenced reports a process outside the range of releases its
	// schema admits: too old (a newer release's migration raised the
	// version fence above it) or too new (migrations it needs are not
	// applied). The error is a *SchemaFenceError; nothing was written.
	ErrSchemaFenced = errors.New("outbox: schema fenced")
	// ErrInvalidSubscription reports a subscription that fails validation.
	ErrInvalidSubscription = errors.New("outbox: invalid subscription")
	// ErrSubscriptionNotFound reports that no subscription has the given name.
	ErrSubscriptionNotFound = errors.New("outbox: subscription not found")
	// ErrSubscriptionBusy reports a DeleteSubscription refused because the subscription
	// still has PENDING or PROCESSING rows and the caller did not ask to
	// discard them.
	ErrSubscriptionBusy = errors.New("outbox: subscription has undelivered rows")
	// ErrNotFound reports that a queue row or record does not exist.
	ErrNotFound = errors.New("outbox: not found")
	// ErrDispatcherRunning reports a second Run, or a registration after Run.
	ErrDispatcherRunning = errors.New("outbox: dispatcher already running")
	// ErrInvalidFilter reports a query filter or cursor that cannot be used
	// (the List calls of packages integrationlog and securitylog).
	ErrInvalidFilter = errors.New("outbox: invalid filter")
	// ErrKeyRequired reports a subscription with secrets (signing secrets,
	// secret header values) written through a handle with no Config.Keys
	// and no Config.AllowPlaintextSecrets: nothing was written.
	ErrKeyRequired = errors.New("outbox: secrets need an encryption key (Config.Keys)")
)

// SecretsError reports secrets of one subscription that could not be read
// or sealed. It wraps keys.ErrKeyNotFound, keys.ErrDecrypt or the key
// provider's error; its text names the key id, never a key or a secret.
type SecretsError struct {
	Subscription string // subscriber_name
	KeyID        string // the key the secrets are sealed under, if any
	Err          error
}

// Error names the subscription and the key id.
func (e *SecretsError) Error() string {
	if e.KeyID == "" {
		return fmt.Sprintf("outbox: secrets of subscription %s: %v", e.Subscription, e.Err)
	}
	return fmt.Sprintf("outbox: secrets of subscription %s (key %q): %v", e.Subscription, e.KeyID, e.Err)
}

// Unwrap returns the cause.
func (e *SecretsError) Unwrap() error { return e.Err }

// SchemaFenceError reports a process outside the range of releases its
// schema admits (the version fence, docs/schema.md). A release is counted
// by the number of the last migration it ships: v0.3 is release 10. It
// wraps ErrSchemaFenced.
type SchemaFenceError struct {
	// Release is this process's release (10 for v0.3).
	Release int
	// NeedsSchema is the lowest schema version this release runs against
	// (9 for v0.3).
	NeedsSchema int
	// Schema is the schema's version, the number of the last migration
	// applied; 0 when the schema has none (not migrated).
	Schema int
	// MinRelease is the lowest release the schema admits; 0 when the
	// schema has no fence (version 9).
	MinRelease int
}

// Error says which side of the range the process is on and what to do.
func (e *SchemaFenceError) Error() string {
	return fence.Describe(e.Release, e.NeedsSchema, fence.State{Schema: e.Schema, MinRelease: e.MinRelease})
}

// Unwrap returns ErrSchemaFenced.
func (e *SchemaFenceError) Unwrap() error { return ErrSchemaFenced }

// TooOld reports that the schema admits only newer releases (a newer
// release's migration raised the fence); otherwise the schema lacks
// migrations this release needs.
func (e *SchemaFenceError) TooOld() bool { return e.MinRelease > e.Release }

// ValidationError describes one rejected input value. It wraps the sentinel of
// its class (ErrInvalidTopic, ErrInvalidSubscription, ...), so both
// errors.Is(err, ErrInvalidTopic) and errors.As(err, &*ValidationError) work.
type ValidationError struct {
	Field  string // the input that was rejected, such as "topic" or "webhook_url"
	Reason string // why, in a few words
	Err    error  // the sentinel class
}

// Error says which field was rejected and why.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Err, e.Field, e.Reason)
}

// Unwrap returns the sentinel class.
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(class error, field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...), Err: class}
}

// ErrWebhookStatus reports a webhook response whose status is not 2xx
// (redirects are not followed: a 3xx is a failure too). The error text holds
// the status and the start of the response body.
var ErrWebhookStatus = webhooksend.ErrStatus

// ErrWebhookBlocked reports a webhook target whose address the SSRF guard
// refuses: loopback, private, link-local (cloud metadata included), CGNAT,
// multicast, unspecified, reserved, IPv6 unique-local or link-local, or an
// IPv4-mapped form of one of them. A delivery refused this way fails at once
// (it is not retried). WebhookOptions.AllowedNetworks lets chosen networks
// through.
var ErrWebhookBlocked = webhooksend.ErrBlocked

// Permanent wraps err so that the dispatcher fails the row at once (status
// FAILED) instead of retrying it. A nil err still fails the row.
func Permanent(err error) error { return dispatch.Permanent(err) }

// RetryAfter wraps err so that the next attempt of the row happens after d
// instead of the subscription's backoff. The attempt still counts against
// max_retries.
func RetryAfter(d time.Duration, err error) error { return dispatch.RetryAfter(d, err) }
