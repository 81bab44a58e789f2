package outbox

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/outboxkit/outbox/internal/webhooksend"
)

// loopbackNetworks lets the SSRF guard through to httptest receivers.
var loopbackNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func TestWebhookSenderOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []WebhookOptions{
		{Timeout: -1}, {EndpointConcurrency: -1}, {MaxResponseBytes: -1}, {MaxRetryAfter: -1},
		{UserAgent: "bad\nagent"}, {AllowedNetworks: []netip.Prefix{{}}},
	} {
		if _, err := webhookConfig(&o, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v", o, err)
		}
		if _, err := setup(t, nil).ob.NewDispatcher(DispatcherConfig{Webhooks: &o}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewDispatcher with %+v: err = %v", o, err)
		}
	}
	c, err := webhookConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != WebhookTimeoutDefault || c.EndpointConcurrency != WebhookEndpointConcurrencyDefault ||
		!strings.HasPrefix(c.UserAgent, WebhookUserAgentDefault) || c.MaxResponseBytes != WebhookMaxResponseBytesDefault ||
		c.MaxRetryAfter != WebhookMaxRetryAfterDefault || c.DisableAfter != WebhookDisableAfterDefault ||
		c.DisableMinFailures != WebhookDisableMinFailuresDefault {
		t.Errorf("defaults = %+v", c)
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
