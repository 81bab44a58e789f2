package outbox

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/webhooksend"
)

// loopbackNetworks lets the SSRF guard through to httptest receivers.
var loopbackNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// WebhookOptions: the documented defaults, and each refused value named in
// a *ValidationError.
func TestWebhookOptionsConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for field, o := range map[string]WebhookOptions{
		"webhooks.timeout":              {Timeout: -1},
		"webhooks.endpoint_concurrency": {EndpointConcurrency: -1},
		"webhooks.max_response_bytes":   {MaxResponseBytes: -1},
		"webhooks.max_retry_after":      {MaxRetryAfter: -1},
		"webhooks.disable_min_failures": {DisableMinFailures: -1},
		"webhooks.user_agent":           {UserAgent: "bad\nagent"},
		"webhooks.allowed_networks":     {AllowedNetworks: []netip.Prefix{{}}},
	} {
		_, err := b.ob.NewDispatcher(DispatcherConfig{Webhooks: &o})
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("NewDispatcher with %+v: err = %v, want a %s ValidationError", o, err, field)
		}
	}
	d, err := b.ob.NewDispatcher(DispatcherConfig{Webhooks: &WebhookOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	c := d.webhooks
	if c.Timeout != 15*time.Second || c.EndpointConcurrency != 10 || !strings.HasPrefix(c.UserAgent, WebhookUserAgentDefault) ||
		c.MaxResponseBytes != 16<<10 || c.MaxRetryAfter != 24*time.Hour || c.DisableAfter != 5*24*time.Hour ||
		c.DisableMinFailures != 10 {
		t.Errorf("defaults = %+v", c)
	}
	if d, err := b.ob.NewDispatcher(DispatcherConfig{}); err != nil || d.webhooks != nil {
		t.Errorf("without Webhooks: %v, sender settings %+v", err, d.webhooks)
	}
}

// Subscribe refuses a webhook host that resolves to a blocked address with
// a webhook_url *ValidationError.
func TestSubscribeRefusesBlockedWebhookHost(t *testing.T) {
	t.Parallel()
	b := setup(t, &Config{WebhookAllowedNetworks: []netip.Prefix{}})
	_, err := b.ob.Subscribe(ctxT(t), Subscription{Name: "s", TopicPattern: "#", WebhookURL: "http://localhost:8080/hook"})
	var ve *ValidationError
	if !errors.Is(err, ErrInvalidSubscription) || !errors.As(err, &ve) || ve.Field != "webhook_url" {
		t.Fatalf("err = %v, want a webhook_url ValidationError", err)
	}
}

// The public reasons are the sender's.
func TestWebhookDisabledReasons(t *testing.T) {
	t.Parallel()
	if WebhookDisabledGone != webhooksend.DisabledGone || WebhookDisabledFailing != webhooksend.DisabledFailing {
		t.Fatal("WebhookEndpointDisabled reasons differ from the sender's")
	}
}

// The documented product token is the one the sender sends.
func TestWebhookUserAgentDefault(t *testing.T) {
	t.Parallel()
	if WebhookUserAgentDefault != webhooksend.UserAgentDefault {
		t.Fatalf("WebhookUserAgentDefault %q, sender sends %q", WebhookUserAgentDefault, webhooksend.UserAgentDefault)
	}
}
