package webhooksend

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/dispatch"
)

func TestSettingsDefaults(t *testing.T) {
	t.Parallel()
	s := mustSettings(t, Settings{})
	if s.Timeout != 15*time.Second || s.EndpointConcurrency != 10 || s.MaxResponseBytes != 16<<10 ||
		s.MaxRetryAfter != 24*time.Hour || s.DisableAfter != 5*24*time.Hour || s.DisableMinFailures != 10 ||
		s.BusyDelay != time.Second || s.Clock == nil || s.AllowedNetworks != nil {
		t.Fatalf("defaults = %+v", s)
	}
	// In a test binary the module has no version: the bare product token.
	if s.UserAgent != UserAgentDefault && !strings.HasPrefix(s.UserAgent, UserAgentDefault+"/") {
		t.Fatalf("user agent %q", s.UserAgent)
	}
	// Set values are kept; the networks are copied.
	nets := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	s = mustSettings(t, Settings{Timeout: time.Second, UserAgent: "acme/1", DisableAfter: -1, AllowedNetworks: nets})
	nets[0] = netip.MustParsePrefix("0.0.0.0/0")
	if s.Timeout != time.Second || s.UserAgent != "acme/1" || s.DisableAfter != -1 ||
		s.AllowedNetworks[0] != netip.MustParsePrefix("10.1.0.0/16") {
		t.Fatalf("set values = %+v", s)
	}
}

func TestSettingsRefused(t *testing.T) {
	t.Parallel()
	for field, s := range map[string]Settings{
		"timeout":              {Timeout: -1},
		"endpoint_concurrency": {EndpointConcurrency: -1},
		"max_response_bytes":   {MaxResponseBytes: -1},
		"max_retry_after":      {MaxRetryAfter: -1},
		"disable_min_failures": {DisableMinFailures: -1},
		"busy_delay":           {BusyDelay: -1},
		"user_agent":           {UserAgent: "bad\nagent"},
		"allowed_networks":     {AllowedNetworks: []netip.Prefix{{}}},
	} {
		_, err := s.WithDefaults()
		var fe *dispatch.FieldError
		if !errors.As(err, &fe) || fe.Field != field || fe.Reason == "" {
			t.Errorf("%+v: err = %v, want a %s FieldError", s, err, field)
		}
	}
}
