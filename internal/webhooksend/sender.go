// Package webhooksend delivers webhook rows: a dispatch.Target that POSTs
// the signed Standard Webhooks envelope (package webhook) behind an SSRF
// guard, bounds the deliveries in flight per endpoint, honours Retry-After,
// captures the response for the attempt record, classifies the outcome, and
// pauses the subscription of an endpoint that is gone or keeps failing.
package webhooksend

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/redact"
	"github.com/outboxkit/outbox/subconfig"
	"github.com/outboxkit/outbox/webhook"
)

// ErrStatus reports a webhook response whose status is not 2xx (redirects
// are not followed: a 3xx is a failure too). The error text holds the
// status and the start of the response body.
var ErrStatus = errors.New("outbox: webhook failed")

// Config configures a Sender: its settings and what the root wires in.
type Config struct {
	// Settings are as Settings.WithDefaults returned them.
	Settings
	// Store runs the endpoint-health statements; its clock is the
	// handle's (attempt records, pausing).
	Store  *store.Store
	Logger *slog.Logger
	// Redactor scrubs the attempt records and the endpoint-disabled
	// event's URL and last error.
	Redactor *redact.Redactor
	// MaxRecordBytes caps an attempt record's request and response data
	// (the handle's MaxPayloadBytes).
	MaxRecordBytes int
	// Disabled publishes, in tx, that an endpoint was paused (the root
	// enqueues its webhook.endpoint_disabled event).
	Disabled func(ctx context.Context, tx *sql.Tx, d Disabled) error
	// Keys unwraps the data keys of sealed subscription secrets; nil
	// means none (sealed secrets then fail to open, ErrKeyNotFound).
	Keys keys.Provider
}

// Sender delivers webhook rows over HTTP: it builds the envelope,
// signs it, enforces the per-endpoint concurrency limit and the SSRF guard,
// and classifies the outcome. It is safe for concurrent use.
type Sender struct {
	cfg       Config
	transport *http.Transport
	client    *http.Client

	mu        sync.Mutex
	endpoints map[string]*endpointSlots

	secMu   sync.Mutex
	secrets map[uuid.UUID]openedSecrets // decrypted secrets by subscription
}

// attempt is the outcome of one delivery attempt, with what the
// integration log records about it.
type attempt struct {
	// err is what the dispatcher acts on: nil for a 2xx; dispatch.Permanent(...) for
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

// failureBodyBytes is how much of a response body goes into the
// error text (and so into failure_reason).
const failureBodyBytes = 512

// drainBytes bounds how much of an unread response body is drained
// so that its connection can be reused.
const drainBytes = 256 << 10

// New returns a sender for cfg; cfg.Settings must come from
// Settings.WithDefaults. Call Close when done with it, to release idle
// connections.
func New(cfg Config) *Sender {
	guard := newSSRFGuard(cfg.AllowedNetworks)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: guard.control}
	tr := &http.Transport{
		// No proxy, ever: a proxy would dial the target itself, past the
		// dial-time SSRF check.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    cfg.EndpointConcurrency,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Sender{
		cfg:       cfg,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// Never follow a redirect: the 3xx is the answer, and a
			// failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		endpoints: map[string]*endpointSlots{},
		secrets:   map[uuid.UUID]openedSecrets{},
	}
}

// Close releases the sender's idle connections.
func (s *Sender) Close() { s.transport.CloseIdleConnections() }

// send makes one delivery attempt of d to rawURL under cfg: it POSTs the
// webhook.Envelope with Standard Webhooks headers (one signature per secret
// in cfg.Secrets, none without secrets), cfg.Headers, Content-Type and
// User-Agent. The attempt, including the wait for one of the endpoint's
// slots, is bounded by cfg.Timeout (or Config.Timeout) and by ctx.
func (s *Sender) send(ctx context.Context, rawURL string, cfg subconfig.Config, d *dispatch.Delivery) attempt {
	return s.sendMode(ctx, rawURL, cfg, d, true)
}

// sendMode is send; when wait is false and every slot of the endpoint is
// taken, it returns at once an attempt with busy set, sending nothing. The
// dispatcher does not wait: a worker blocked on a slow endpoint's slot would
// be a worker taken from every other endpoint.
func (s *Sender) sendMode(ctx context.Context, rawURL string, cfg subconfig.Config, d *dispatch.Delivery, wait bool) attempt {
	a := attempt{method: http.MethodPost, url: rawURL, started: s.cfg.Clock()}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL itself may carry a token: name only its parts.
		var scheme, host string
		if u != nil {
			scheme, host = u.Scheme, u.Host
		}
		a.err = dispatch.Permanent(fmt.Errorf("outbox: webhook: unusable URL (scheme %q, host %q): need http or https and a host", scheme, host))
		return a
	}
	host := u.Host
	timeout := s.cfg.Timeout
	if cfg.Timeout > 0 {
		timeout = time.Duration(cfg.Timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := s.request(ctx, rawURL, cfg, d, &a)
	if err != nil {
		a.err = dispatch.Permanent(fmt.Errorf("outbox: webhook to %s: %w", host, err))
		return a
	}

	release, err := s.acquire(ctx, endpointKey(u), wait)
	if errors.Is(err, errEndpointBusy) {
		a.busy = true
		a.err = fmt.Errorf("outbox: webhook to %s: %w", host, err)
		return a
	}
	if err != nil {
		a.err = fmt.Errorf("outbox: webhook to %s: no free slot among %d in flight within %s: %w",
			host, s.cfg.EndpointConcurrency, timeout, err)
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
	a.respBody, a.respTruncated, _ = readCapped(resp.Body, s.cfg.MaxResponseBytes)
	a.duration = time.Since(start)
	a.err = s.classify(host, resp, a.respBody)
	return a
}

// request builds the signed request of d to rawURL under cfg, and keeps
// its body and headers in a for the attempt record. An error is for good:
// no retry builds a different request.
func (s *Sender) request(ctx context.Context, rawURL string, cfg subconfig.Config, d *dispatch.Delivery, a *attempt) (*http.Request, error) {
	signer, err := webhook.NewSigner(cfg.Secrets...)
	if err != nil {
		return nil, err
	}
	body, err := webhookBody(d, a.started)
	if err != nil {
		return nil, err
	}
	a.reqBody = body
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", s.cfg.UserAgent)
	}
	req.Header.Set("Content-Type", "application/json")
	signer.Header(req.Header, d.EventID.String(), a.started, body)
	if len(cfg.Secrets) == 0 {
		req.Header.Del(webhook.HeaderSignature)
	}
	a.reqHeader = req.Header.Clone()
	return req, nil
}

// classify turns a response into the error the dispatcher acts on.
func (s *Sender) classify(host string, resp *http.Response, body []byte) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("%w: HTTP %d %s from %s%s", ErrStatus, code, http.StatusText(code), host, failureBody(body))
	if code >= 300 && code < 400 {
		// The location may repeat the request's query (tokens): name only
		// its scheme and host, as an unusable URL is named.
		err = fmt.Errorf("%w (redirects are not followed; location %s)", err, locationSite(resp.Header.Get("Location")))
	}
	switch code {
	case http.StatusGone:
		return dispatch.Permanent(fmt.Errorf("%w; the subscription is paused", err))
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), s.cfg.Clock()); ok {
			return dispatch.RetryAfter(min(d, s.cfg.MaxRetryAfter), err)
		}
	}
	return err
}

// transportError describes a request that got no response. A blocked
// address is permanent; anything else (timeouts, refused connections, TLS
// failures) is retried.
func (s *Sender) transportError(host string, timeout time.Duration, err error) error {
	if errors.Is(err, ErrBlocked) {
		return dispatch.Permanent(fmt.Errorf("outbox: webhook to %s refused by the SSRF guard: %w", host, unwrapURLError(err)))
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
func (s *Sender) acquire(ctx context.Context, host string, wait bool) (release func(), err error) {
	s.mu.Lock()
	ep := s.endpoints[host]
	if ep == nil {
		ep = &endpointSlots{sem: make(chan struct{}, s.cfg.EndpointConcurrency)}
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

// webhookBody is the JSON envelope of d, as signed and sent.
func webhookBody(d *dispatch.Delivery, now time.Time) ([]byte, error) {
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
		_, _ = io.Copy(io.Discard, io.LimitReader(body, drainBytes))
	}
	return data, truncated, err
}

// failureBody is the start of a response body for an error text, on one
// line, valid UTF-8.
func failureBody(body []byte) string {
	s := body
	cut := ""
	if len(s) > failureBodyBytes {
		n := failureBodyBytes
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

// locationSite is a redirect's scheme and host ("https://example.com"), or
// "(none)" / "(unparsable)": never its path, query or user info, which may
// carry credentials.
func locationSite(loc string) string {
	if loc == "" {
		return "(none)"
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "(unparsable)"
	}
	if u.Host == "" {
		return "(relative)"
	}
	return u.Scheme + "://" + u.Host
}
