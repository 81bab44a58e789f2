package outbox

import (
	"net/netip"
	"time"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/subconfig"
)

// WebhookUserAgentDefault ("outboxkit") is the product token of the
// User-Agent of webhook deliveries; the module's version follows it
// ("outboxkit/v0.2.0") when the binary's build information records one.
// Receivers and tests may match it.
const WebhookUserAgentDefault = "outboxkit"

// WebhookRetrySchedule returns the default delays between webhook attempts,
// the Standard Webhooks schedule: after the first (immediate) attempt, retry
// n waits the n-th entry, ±20 % jitter. subconfig.Config.RetrySchedule
// overrides it per subscription.
func WebhookRetrySchedule() []subconfig.Duration { return dispatch.WebhookRetrySchedule() }

// WebhookOptions configures webhook delivery. The zero value of a field
// means its default, named in the field's comment; NewDispatcher checks the
// values.
type WebhookOptions struct {
	// Timeout bounds one attempt when the subscription's config sets no
	// timeout: waiting for a connection slot, the request and reading the
	// response. Default 15 s.
	Timeout time.Duration
	// EndpointConcurrency bounds the deliveries in flight to one endpoint
	// (URL host and port), so a slow endpoint holds at most this many
	// workers and other endpoints keep flowing. Default 10.
	EndpointConcurrency int
	// UserAgent is sent with every delivery, unless the subscription's
	// headers set one; no control characters. Default
	// WebhookUserAgentDefault followed by the module version, when known.
	UserAgent string
	// AllowedNetworks are let through the SSRF guard although they lie in a
	// blocked range (loopback, private, link-local, ...): for example
	// 10.1.0.0/16 for receivers inside a VPC, or 127.0.0.0/8 in tests.
	// IPv4 networks match IPv4-mapped IPv6 addresses too.
	AllowedNetworks []netip.Prefix
	// MaxResponseBytes is how much of a response body is read and kept for
	// the integration log; the rest is drained and discarded. Default
	// 16 KiB.
	MaxResponseBytes int
	// MaxRetryAfter caps the delay a Retry-After header (on 429 or 503) can
	// ask for. Default 24 h, the longest step of the default retry
	// schedule.
	MaxRetryAfter time.Duration
	// DisableAfter and DisableMinFailures govern endpoint health: once
	// every attempt to a subscription's endpoint has failed for at least
	// DisableAfter, and at least DisableMinFailures attempts in a row, the
	// subscription is paused and a "webhook.endpoint_disabled" event is
	// enqueued (ResumeSubscription re-enables it and starts the count afresh). The
	// count runs from the last successful attempt, or from the last change
	// to the subscription (ResumeSubscription, UpdateSubscriptionConfig, Subscribe), whichever is
	// later; it reads the attempts recorded in integration_log. Defaults
	// 5 days (as Svix does) and 10; a negative DisableAfter never pauses an
	// endpoint for failing.
	DisableAfter       time.Duration
	DisableMinFailures int
}
