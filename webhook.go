package outbox

import (
	"net/netip"
	"time"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/webhooksend"
)

// Defaults for WebhookOptions fields left at their zero value, and for
// webhook subscriptions whose config leaves a setting unset.
const (
	// WebhookTimeoutDefault bounds one delivery attempt (waiting for a
	// connection slot, the request and reading the response) when the
	// subscription's config sets no timeout.
	WebhookTimeoutDefault = 15 * time.Second
	// WebhookEndpointConcurrencyDefault is how many deliveries may be in
	// flight to one endpoint (URL host and port) at once.
	WebhookEndpointConcurrencyDefault = 10
	// WebhookUserAgentDefault ("outboxkit") is the product token of the
	// User-Agent of webhook deliveries; the module's version follows it
	// ("outboxkit/v0.2.0") when the binary's build information records one.
	WebhookUserAgentDefault = webhooksend.UserAgentDefault
	// WebhookMaxResponseBytesDefault is how much of a response body is kept
	// for the integration log (16 KiB).
	WebhookMaxResponseBytesDefault = 16 << 10
	// WebhookMaxRetryAfterDefault caps the delay a Retry-After header can
	// ask for: the longest step of the default retry schedule.
	WebhookMaxRetryAfterDefault = 24 * time.Hour
	// WebhookMaxRetriesDefault is the number of retries a webhook
	// subscription's rows get after the first attempt: one per step of the
	// default retry schedule.
	WebhookMaxRetriesDefault = 9
	// WebhookRetryJitter is the randomization factor of webhook retry
	// delays (±20 %).
	WebhookRetryJitter = BackoffJitter
	// WebhookDisableAfterDefault is how long an endpoint may fail every
	// delivery before its subscription is paused: 5 days, as Svix does.
	WebhookDisableAfterDefault = 5 * 24 * time.Hour
	// WebhookDisableMinFailuresDefault is how many consecutive failed
	// attempts an endpoint needs, besides WebhookDisableAfterDefault of
	// failing, before its subscription is paused.
	WebhookDisableMinFailuresDefault = 10
)

// WebhookRetrySchedule returns the default delays between webhook attempts,
// the Standard Webhooks schedule: after the first (immediate) attempt, retry
// n waits the n-th entry, ±20 % jitter. SubscriptionConfig.RetrySchedule
// overrides it per subscription.
func WebhookRetrySchedule() []Duration { return dispatch.WebhookRetrySchedule() }

// WebhookOptions configures webhook delivery. The zero value means defaults.
type WebhookOptions struct {
	// Timeout bounds one attempt when the subscription's config sets no
	// timeout. Default WebhookTimeoutDefault (15 s).
	Timeout time.Duration
	// EndpointConcurrency bounds the deliveries in flight to one endpoint
	// (URL host and port), so a slow endpoint holds at most this many
	// workers and other endpoints keep flowing. Default
	// WebhookEndpointConcurrencyDefault.
	EndpointConcurrency int
	// UserAgent is sent with every delivery. Default
	// WebhookUserAgentDefault followed by the module version, when known.
	UserAgent string
	// AllowedNetworks are let through the SSRF guard although they lie in a
	// blocked range (loopback, private, link-local, ...): for example
	// 10.1.0.0/16 for receivers inside a VPC, or 127.0.0.0/8 in tests.
	// IPv4 networks match IPv4-mapped IPv6 addresses too.
	AllowedNetworks []netip.Prefix
	// MaxResponseBytes is how much of a response body is read and kept for
	// the integration log; the rest is drained and discarded. Default
	// WebhookMaxResponseBytesDefault.
	MaxResponseBytes int
	// MaxRetryAfter caps the delay a Retry-After header (on 429 or 503) can
	// ask for. Default WebhookMaxRetryAfterDefault.
	MaxRetryAfter time.Duration
	// DisableAfter and DisableMinFailures govern endpoint health: once
	// every attempt to a subscription's endpoint has failed for at least
	// DisableAfter, and at least DisableMinFailures attempts in a row, the
	// subscription is paused and a "webhook.endpoint_disabled" event is
	// enqueued (ResumeSubscription re-enables it and starts the count afresh). The
	// count runs from the last successful attempt, or from the last change
	// to the subscription (ResumeSubscription, UpdateSubscriptionConfig, Subscribe), whichever is
	// later; it reads the attempts recorded in integration_log. Defaults
	// WebhookDisableAfterDefault (5 days) and
	// WebhookDisableMinFailuresDefault; a negative DisableAfter never
	// pauses an endpoint for failing.
	DisableAfter       time.Duration
	DisableMinFailures int
}
