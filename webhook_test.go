package outbox

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// loopbackNetworks lets the SSRF guard through to httptest receivers.
var loopbackNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// received is one request an httptest receiver saw.
type received struct {
	header http.Header
	body   []byte
}

// whReceiver starts an httptest server that records each request on the
// returned channel and answers with respond.
func whReceiver(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- received{header: r.Header.Clone(), body: body}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func whStatus(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

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
