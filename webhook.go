package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/subconfig"
	"github.com/outboxkit/outbox/webhook"
)

// Version is the library's version, sent in the User-Agent of webhook
// deliveries.
const Version = "0.1.0"

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
	// WebhookUserAgentDefault is the User-Agent of webhook deliveries.
	WebhookUserAgentDefault = "outboxkit/" + Version
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
func WebhookRetrySchedule() []Duration {
	return []Duration{
		Duration(5 * time.Second), Duration(5 * time.Minute), Duration(30 * time.Minute),
		Duration(2 * time.Hour), Duration(5 * time.Hour), Duration(10 * time.Hour),
		Duration(14 * time.Hour), Duration(20 * time.Hour), Duration(24 * time.Hour),
	}
}

// ErrWebhookStatus reports a webhook response whose status is not 2xx
// (redirects are not followed: a 3xx is a failure too). The error text holds
// the status and the start of the response body.
var ErrWebhookStatus = errors.New("outbox: webhook failed")

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
	// WebhookUserAgentDefault ("outboxkit/" + Version).
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
	// enqueued (Resume re-enables it and starts the count afresh). The
	// count runs from the last successful attempt, or from the last change
	// to the subscription (Resume, UpdateConfig, Subscribe), whichever is
	// later; it reads the attempts recorded in integration_log. Defaults
	// WebhookDisableAfterDefault (5 days) and
	// WebhookDisableMinFailuresDefault; a negative DisableAfter never
	// pauses an endpoint for failing.
	DisableAfter       time.Duration
	DisableMinFailures int
	// Clock supplies the time of the webhook-timestamp header and resolves
	// HTTP-date Retry-After values. Receivers compare webhook-timestamp with
	// their own clock, so leave it nil (time.Now) outside tests.
	Clock func() time.Time
}

// webhookSender delivers webhook rows over HTTP: it builds the envelope,
// signs it, enforces the per-endpoint concurrency limit and the SSRF guard,
// and classifies the outcome. It is safe for concurrent use.
type webhookSender struct {
	opts      WebhookOptions
	transport *http.Transport
	client    *http.Client

	mu        sync.Mutex
	endpoints map[string]*endpointSlots
}

// webhookAttempt is the outcome of one delivery attempt, with what the
// integration log records about it.
type webhookAttempt struct {
	// err is what the dispatcher acts on: nil for a 2xx; Permanent(...) for
	// 410 Gone, a blocked address and errors no retry can fix;
	// RetryAfter(...) for 429 and 503 with a usable Retry-After; a plain
	// error (to retry with backoff) otherwise. Its text, with the status and
	// the start of the response body, is meant for failure_reason.
	err error
	// gone reports a 410 Gone: the dispatcher pauses the subscription.
	gone bool
	// status is the HTTP status, 0 when no response arrived.
	status int
	// started is when the attempt began; duration covers the request and
	// reading the response (not the wait for an endpoint slot).
	started  time.Time
	duration time.Duration

	method, url string
	// reqHeader and reqBody are the request as sent, signature included;
	// config headers may hold credentials, so redact before storing.
	reqHeader http.Header
	reqBody   []byte
	// respHeader and respBody are the response (nil without one); respBody
	// is cut at MaxResponseBytes, and respTruncated says if it was.
	respHeader    http.Header
	respBody      []byte
	respTruncated bool
	// busy reports an attempt not made because every slot of the endpoint
	// was taken (only when the caller asked not to wait): no request was
	// sent, and the row should simply be tried again a little later.
	busy bool
}

// endpointSlots is a per-endpoint semaphore shared by the sends in flight;
// users counts holders and waiters so idle endpoints leave the map.
type endpointSlots struct {
	sem   chan struct{}
	users int
}

// webhookFailureBodyBytes is how much of a response body goes into the
// error text (and so into failure_reason).
const webhookFailureBodyBytes = 512

// webhookDrainBytes bounds how much of an unread response body is drained
// so that its connection can be reused.
const webhookDrainBytes = 256 << 10

// newWebhookSender validates opts (nil means defaults) and returns a sender.
// Call close when done with it, to release idle connections.
func newWebhookSender(opts *WebhookOptions) (*webhookSender, error) {
	var o WebhookOptions
	if opts != nil {
		o = *opts
	}
	if o.Timeout < 0 || o.EndpointConcurrency < 0 || o.MaxResponseBytes < 0 || o.MaxRetryAfter < 0 || o.DisableMinFailures < 0 {
		return nil, fmt.Errorf("%w: webhook options must not be negative", ErrInvalidConfig)
	}
	if o.Timeout == 0 {
		o.Timeout = WebhookTimeoutDefault
	}
	if o.EndpointConcurrency == 0 {
		o.EndpointConcurrency = WebhookEndpointConcurrencyDefault
	}
	if o.UserAgent == "" {
		o.UserAgent = WebhookUserAgentDefault
	}
	if !subconfig.ValidHeaderValue(o.UserAgent) {
		return nil, fmt.Errorf("%w: webhook user agent holds control characters", ErrInvalidConfig)
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = WebhookMaxResponseBytesDefault
	}
	if o.MaxRetryAfter == 0 {
		o.MaxRetryAfter = WebhookMaxRetryAfterDefault
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.DisableAfter == 0 {
		o.DisableAfter = WebhookDisableAfterDefault
	}
	if o.DisableMinFailures == 0 {
		o.DisableMinFailures = WebhookDisableMinFailuresDefault
	}
	for _, p := range o.AllowedNetworks {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid allowed network %v", ErrInvalidConfig, p)
		}
	}
	o.AllowedNetworks = append([]netip.Prefix(nil), o.AllowedNetworks...)

	guard := newSSRFGuard(o.AllowedNetworks)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: guard.control}
	tr := &http.Transport{
		// No proxy, ever: a proxy would dial the target itself, past the
		// dial-time SSRF check.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    o.EndpointConcurrency,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &webhookSender{
		opts:      o,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// Never follow a redirect: the 3xx is the answer, and a
			// failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		endpoints: map[string]*endpointSlots{},
	}, nil
}

// close releases the sender's idle connections.
func (s *webhookSender) close() { s.transport.CloseIdleConnections() }

// send makes one delivery attempt of d to rawURL under cfg: it POSTs the
// webhook.Envelope with Standard Webhooks headers (one signature per secret
// in cfg.Secrets, none without secrets), cfg.Headers, Content-Type and
// User-Agent. The attempt, including the wait for one of the endpoint's
// slots, is bounded by cfg.Timeout (or WebhookOptions.Timeout) and by ctx.
func (s *webhookSender) send(ctx context.Context, rawURL string, cfg SubscriptionConfig, d *Delivery) webhookAttempt {
	return s.sendMode(ctx, rawURL, cfg, d, true)
}

// sendMode is send; when wait is false and every slot of the endpoint is
// taken, it returns at once an attempt with busy set, sending nothing. The
// dispatcher does not wait: a worker blocked on a slow endpoint's slot would
// be a worker taken from every other endpoint.
func (s *webhookSender) sendMode(ctx context.Context, rawURL string, cfg SubscriptionConfig, d *Delivery, wait bool) webhookAttempt {
	a := webhookAttempt{method: http.MethodPost, url: rawURL, started: s.opts.Clock()}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL itself may carry a token: name only its parts.
		var scheme, host string
		if u != nil {
			scheme, host = u.Scheme, u.Host
		}
		a.err = Permanent(fmt.Errorf("outbox: webhook: unusable URL (scheme %q, host %q): need http or https and a host", scheme, host))
		return a
	}
	host := u.Host
	signer, err := webhook.NewSigner(cfg.Secrets...)
	if err != nil {
		a.err = Permanent(fmt.Errorf("outbox: webhook to %s: %w", host, err))
		return a
	}
	body, err := webhookBody(d, a.started)
	if err != nil {
		a.err = Permanent(fmt.Errorf("outbox: webhook to %s: %w", host, err))
		return a
	}
	a.reqBody = body

	timeout := s.opts.Timeout
	if cfg.Timeout > 0 {
		timeout = time.Duration(cfg.Timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := d.EventID.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		a.err = Permanent(fmt.Errorf("outbox: webhook to %s: %w", host, err))
		return a
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", s.opts.UserAgent)
	}
	req.Header.Set("Content-Type", "application/json")
	signer.Header(req.Header, id, a.started, body)
	if len(cfg.Secrets) == 0 {
		req.Header.Del(webhook.HeaderSignature)
	}
	a.reqHeader = req.Header.Clone()

	release, err := s.acquire(ctx, endpointKey(u), wait)
	if errors.Is(err, errEndpointBusy) {
		a.busy = true
		a.err = fmt.Errorf("outbox: webhook to %s: %w", host, err)
		return a
	}
	if err != nil {
		a.err = fmt.Errorf("outbox: webhook to %s: no free slot among %d in flight within %s: %w",
			host, s.opts.EndpointConcurrency, timeout, err)
		return a
	}
	defer release()

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		a.duration = time.Since(start)
		a.err = s.transportError(host, timeout, err)
		return a
	}
	a.status = resp.StatusCode
	a.gone = resp.StatusCode == http.StatusGone
	a.respHeader = resp.Header.Clone()
	// The status decides the outcome: a body cut short by an error or the
	// deadline does not change it.
	a.respBody, a.respTruncated, _ = readCapped(resp.Body, s.opts.MaxResponseBytes)
	a.duration = time.Since(start)
	a.err = s.classify(host, resp, a.respBody)
	return a
}

// classify turns a response into the error the dispatcher acts on.
func (s *webhookSender) classify(host string, resp *http.Response, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("%w: HTTP %d %s from %s%s", ErrWebhookStatus, code, http.StatusText(code), host, failureBody(body))
	if code >= 300 && code < 400 {
		err = fmt.Errorf("%w (redirects are not followed; location %q)", err, resp.Header.Get("Location"))
	}
	switch code {
	case http.StatusGone:
		return Permanent(fmt.Errorf("%w; the subscription is paused", err))
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), s.opts.Clock()); ok {
			return RetryAfter(min(d, s.opts.MaxRetryAfter), err)
		}
	}
	return err
}

// transportError describes a request that got no response. A blocked
// address is permanent; anything else (timeouts, refused connections, TLS
// failures) is retried.
func (s *webhookSender) transportError(host string, timeout time.Duration, err error) error {
	if errors.Is(err, ErrWebhookBlocked) {
		return Permanent(fmt.Errorf("outbox: webhook to %s refused by the SSRF guard: %w", host, unwrapURLError(err)))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("outbox: webhook to %s timed out after %s: %w", host, timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("outbox: webhook to %s: %w", host, unwrapURLError(err))
}

// errEndpointBusy reports that every slot of an endpoint is taken.
var errEndpointBusy = errors.New("every delivery slot of the endpoint is taken")

// acquire waits for one of host's slots (or, unless wait, takes one only if
// one is free, else returns errEndpointBusy); release gives it back.
func (s *webhookSender) acquire(ctx context.Context, host string, wait bool) (release func(), err error) {
	s.mu.Lock()
	ep := s.endpoints[host]
	if ep == nil {
		ep = &endpointSlots{sem: make(chan struct{}, s.opts.EndpointConcurrency)}
		s.endpoints[host] = ep
	}
	ep.users++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		ep.users--
		if ep.users == 0 {
			delete(s.endpoints, host)
		}
		s.mu.Unlock()
	}
	if !wait {
		select {
		case ep.sem <- struct{}{}:
			return func() { <-ep.sem; done() }, nil
		default:
			done()
			return nil, errEndpointBusy
		}
	}
	select {
	case ep.sem <- struct{}{}:
		return func() { <-ep.sem; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// webhookRetryDelay is the delay before webhook retry n (1-based: retry 1
// follows the first attempt) under schedule, or WebhookRetrySchedule when
// schedule is empty. The last entry repeats. The delay is the entry scaled by
// a factor in [0.8, 1.2), drawn from rnd (uniform in [0, 1); nil means
// math/rand/v2).
func webhookRetryDelay(retry int, schedule []Duration, rnd func() float64) time.Duration {
	if len(schedule) == 0 {
		schedule = WebhookRetrySchedule()
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return scheduleDelay(retry, schedule, rnd)
}

// webhookBody is the JSON envelope of d, as signed and sent.
func webhookBody(d *Delivery, now time.Time) ([]byte, error) {
	ts := d.CreatedAt
	if ts.IsZero() {
		ts = now
	}
	data := d.Payload
	if len(bytes.TrimSpace(data)) == 0 {
		data = json.RawMessage("null")
	}
	body, err := json.Marshal(webhook.Envelope{ID: d.EventID.String(), Type: d.Topic, Timestamp: ts.UTC(), Data: data})
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return body, nil
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110 §10.2.3), as a delay from now. A date in the past means no
// delay.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return math.MaxInt64, true // absurdly far: the cap applies
			}
			return 0, false
		}
		if n > uint64(math.MaxInt64/int64(time.Second)) {
			return math.MaxInt64, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// readCapped reads at most limit bytes of body, drains a bounded remainder
// so the connection can be reused, and closes it.
func readCapped(body io.ReadCloser, limit int) (data []byte, truncated bool, err error) {
	defer body.Close()
	data, err = io.ReadAll(io.LimitReader(body, int64(limit)+1))
	if len(data) > limit {
		data, truncated = data[:limit], true
	}
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, webhookDrainBytes))
	}
	return data, truncated, err
}

// failureBody is the start of a response body for an error text, on one
// line, valid UTF-8.
func failureBody(body []byte) string {
	s := body
	cut := ""
	if len(s) > webhookFailureBodyBytes {
		n := webhookFailureBodyBytes
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], "…"
	}
	text := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(s), "\uFFFD"))
	text = strings.TrimSpace(text)
	if text == "" {
		return ""
	}
	return ": " + text + cut
}

// endpointKey names the endpoint a URL delivers to, for the concurrency
// limit: lower-case host and port, the scheme's default port made explicit.
func endpointKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// unwrapURLError drops the *url.Error layer, whose text repeats the whole
// URL (which may carry a token in its query).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
