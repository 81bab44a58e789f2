package webhooksend

import (
	"fmt"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/outboxkit/outbox/internal/dispatch"
)

// UserAgentDefault is the product token of the default User-Agent; the
// module's version follows it ("outboxkit/v0.2.0") when the binary's build
// information records one.
const UserAgentDefault = "outboxkit"

// Defaults of the Settings left at their zero value. The root's
// WebhookOptions documents each value in its field comment.
const (
	timeoutDefault             = 15 * time.Second
	endpointConcurrencyDefault = 10
	maxResponseBytesDefault    = 16 << 10
	// maxRetryAfterDefault is the longest step of the default retry
	// schedule.
	maxRetryAfterDefault = 24 * time.Hour
	// disableAfterDefault is 5 days, as Svix does.
	disableAfterDefault       = 5 * 24 * time.Hour
	disableMinFailuresDefault = 10
	busyDelayDefault          = time.Second
)

// modulePath is the import path of the module whose version goes into the
// default User-Agent.
const modulePath = "github.com/outboxkit/outbox"

// Settings are the sender's tunables, what the root's WebhookOptions sets.
// The zero value of a field means its default; WithDefaults checks the
// values and applies the defaults, and New takes only settings that went
// through it.
type Settings struct {
	// Timeout bounds one attempt when the subscription's config sets
	// none. Default 15 s.
	Timeout time.Duration
	// EndpointConcurrency bounds the deliveries in flight to one
	// endpoint. Default 10.
	EndpointConcurrency int
	// UserAgent is sent with every delivery; no control characters.
	// Default UserAgentDefault and the module's version, when known.
	UserAgent string
	// AllowedNetworks are let through the SSRF guard.
	AllowedNetworks []netip.Prefix
	// MaxResponseBytes is how much of a response body is kept. Default
	// 16 KiB.
	MaxResponseBytes int
	// MaxRetryAfter caps a Retry-After delay. Default 24 h.
	MaxRetryAfter time.Duration
	// DisableAfter and DisableMinFailures govern endpoint health; a
	// negative DisableAfter never pauses an endpoint for failing. Defaults
	// 5 days and 10.
	DisableAfter       time.Duration
	DisableMinFailures int
	// Clock stamps webhook-timestamp and resolves HTTP-date Retry-After
	// values. Default time.Now.
	Clock func() time.Time
	// BusyDelay is about how long a row waits when every slot of its
	// endpoint is taken (jittered; no attempt counted). Default 1 s.
	BusyDelay time.Duration
}

// WithDefaults checks s and returns it with every default applied (and
// AllowedNetworks copied). A value that cannot be used is a
// *dispatch.FieldError: a negative size or duration (a negative
// DisableAfter excepted), a User-Agent with control characters, or an
// invalid network.
func (s Settings) WithDefaults() (Settings, error) {
	if err := s.check(); err != nil {
		return Settings{}, err
	}
	if s.Timeout == 0 {
		s.Timeout = timeoutDefault
	}
	if s.EndpointConcurrency == 0 {
		s.EndpointConcurrency = endpointConcurrencyDefault
	}
	if s.UserAgent == "" {
		s.UserAgent = defaultUserAgent()
	}
	s.AllowedNetworks = slices.Clone(s.AllowedNetworks)
	if s.MaxResponseBytes == 0 {
		s.MaxResponseBytes = maxResponseBytesDefault
	}
	if s.MaxRetryAfter == 0 {
		s.MaxRetryAfter = maxRetryAfterDefault
	}
	if s.DisableAfter == 0 {
		s.DisableAfter = disableAfterDefault
	}
	if s.DisableMinFailures == 0 {
		s.DisableMinFailures = disableMinFailuresDefault
	}
	if s.Clock == nil {
		s.Clock = time.Now
	}
	if s.BusyDelay == 0 {
		s.BusyDelay = busyDelayDefault
	}
	return s, nil
}

// check refuses the values no default can mend.
func (s Settings) check() error {
	for _, f := range []struct {
		field string
		v     int
	}{{"endpoint_concurrency", s.EndpointConcurrency}, {"max_response_bytes", s.MaxResponseBytes},
		{"disable_min_failures", s.DisableMinFailures}} {
		if f.v < 0 {
			return fieldError(f.field, "must not be negative, got %d", f.v)
		}
	}
	for _, f := range []struct {
		field string
		v     time.Duration
	}{{"timeout", s.Timeout}, {"max_retry_after", s.MaxRetryAfter}, {"busy_delay", s.BusyDelay}} {
		if f.v < 0 {
			return fieldError(f.field, "must not be negative, got %s", f.v)
		}
	}
	if strings.ContainsFunc(s.UserAgent, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }) {
		return fieldError("user_agent", "holds control characters")
	}
	for _, p := range s.AllowedNetworks {
		if !p.IsValid() {
			return fieldError("allowed_networks", "invalid network %v", p)
		}
	}
	return nil
}

// defaultUserAgent is UserAgentDefault with the module's version from the
// binary's build information, when it records one.
func defaultUserAgent() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
			if m.Path == modulePath && m.Version != "" && m.Version != "(devel)" {
				return UserAgentDefault + "/" + m.Version
			}
		}
	}
	return UserAgentDefault
}

func fieldError(field, format string, args ...any) *dispatch.FieldError {
	return &dispatch.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
