package webhooksend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/subconfig"
	"github.com/outboxkit/outbox/webhook"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// loopbackNetworks lets the SSRF guard through to httptest receivers.
var loopbackNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// webhookClock is the fixed time of senders built by newTestSender.
var webhookClock = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestSender returns a sender with a fixed clock that may reach loopback
// (unless s sets AllowedNetworks to an empty, non-nil slice).
func newTestSender(t *testing.T, s Settings) *Sender {
	t.Helper()
	if s.AllowedNetworks == nil {
		s.AllowedNetworks = loopbackNetworks
	}
	if s.Clock == nil {
		s.Clock = func() time.Time { return webhookClock }
	}
	if s.UserAgent == "" {
		s.UserAgent = testUserAgent
	}
	snd := New(Config{Settings: mustSettings(t, s)})
	t.Cleanup(snd.Close)
	return snd
}

// mustSettings is Settings.WithDefaults for settings a test knows to be
// valid.
func mustSettings(t *testing.T, s Settings) Settings {
	t.Helper()
	s, err := s.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const testUserAgent = "outboxkit/test"

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func whDelivery() *dispatch.Delivery {
	return &dispatch.Delivery{
		ID:           uuid.Must(uuid.NewV7()),
		EventID:      uuid.Must(uuid.NewV7()),
		Subscription: "billing",
		Topic:        "order.created",
		Payload:      json.RawMessage(`{"order": 42, "total": "9.99"}`),
		Attempt:      1,
		CreatedAt:    time.Date(2030, 1, 2, 3, 0, 0, 123456000, time.FixedZone("CET", 3600)),
	}
}

func isPermanent(err error) bool { return dispatch.IsPermanent(err) }

func retryAfterOf(err error) (time.Duration, bool) { return dispatch.RetryAfterDelay(err) }

func TestWebhookSenderDelivers(t *testing.T) {
	t.Parallel()
	srv, got := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Receiver", "yes")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	s := newTestSender(t, Settings{})
	d := whDelivery()
	cfg := subconfig.Config{
		Secrets: []string{vectorSecret},
		Headers: map[string]string{
			"Authorization": "Bearer t0ken",
			"X-Tenant":      "acme",
			"webhook-id":    "spoofed", // reserved headers stay the library's
			"Content-Type":  "text/plain",
		},
	}
	a := s.send(ctxT(t), srv.URL+"/hooks?x=1", cfg, d)
	if a.err != nil {
		t.Fatalf("send: %v", a.err)
	}
	r := testutil.Recv(t, got)

	for k, want := range map[string]string{
		"Content-Type":          "application/json",
		"User-Agent":            testUserAgent,
		webhook.HeaderID:        d.EventID.String(),
		webhook.HeaderTimestamp: strconv.FormatInt(webhookClock.Unix(), 10),
		"Authorization":         "Bearer t0ken",
		"X-Tenant":              "acme",
	} {
		if v := r.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if sigs := r.Header.Values(webhook.HeaderSignature); len(sigs) != 1 || strings.Count(sigs[0], "v1,") != 1 {
		t.Errorf("signature header = %q", sigs)
	}
	if err := mustVerifier(t, webhookClock, vectorSecret).Verify(r.Header, r.Body); err != nil {
		t.Errorf("verify: %v", err)
	}

	var env webhook.Envelope
	if err := json.Unmarshal(r.Body, &env); err != nil {
		t.Fatalf("body %s: %v", r.Body, err)
	}
	if env.ID != d.EventID.String() || env.Type != d.Topic || !env.Timestamp.Equal(d.CreatedAt) || env.Timestamp.Location() != time.UTC {
		t.Errorf("envelope = %+v", env)
	}
	if string(env.Data) != `{"order":42,"total":"9.99"}` {
		t.Errorf("data = %s", env.Data)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(r.Body, &raw)
	if len(raw) != 4 || string(raw["timestamp"]) != `"2030-01-02T02:00:00.123456Z"` {
		t.Errorf("envelope keys/timestamp: %s", r.Body)
	}

	// What the integration log records.
	if a.status != http.StatusAccepted || string(a.respBody) != `{"ok":true}` || a.respTruncated ||
		a.respHeader.Get("X-Receiver") != "yes" || a.gone {
		t.Errorf("attempt = status %d body %q truncated %v gone %v", a.status, a.respBody, a.respTruncated, a.gone)
	}
	if string(a.reqBody) != string(r.Body) || a.reqHeader.Get(webhook.HeaderSignature) != r.Header.Get(webhook.HeaderSignature) ||
		a.method != http.MethodPost || a.url != srv.URL+"/hooks?x=1" || !a.started.Equal(webhookClock) || a.duration <= 0 {
		t.Errorf("attempt request = %s %s started %v duration %v", a.method, a.url, a.started, a.duration)
	}

	// The same event, attempt 2: the same id and body, so the same dedupe key.
	d.Attempt = 2
	if a2 := s.send(ctxT(t), srv.URL, cfg, d); a2.err != nil || string(a2.reqBody) != string(a.reqBody) || a2.reqHeader.Get(webhook.HeaderID) != d.EventID.String() {
		t.Errorf("retry: err %v, body %s", a2.err, a2.reqBody)
	}
}

// TestWebhookSenderReferenceReceiver has the specification's own library
// verify a real delivery, on the real clock.
func TestWebhookSenderReferenceReceiver(t *testing.T) {
	t.Parallel()
	ref, err := standardwebhooks.NewWebhook(otherSecret)
	if err != nil {
		t.Fatal(err)
	}
	verified := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		verified <- ref.Verify(body, r.Header)
	}))
	t.Cleanup(srv.Close)
	s := New(Config{Settings: mustSettings(t, Settings{AllowedNetworks: loopbackNetworks})})
	t.Cleanup(s.Close)
	a := s.send(ctxT(t), srv.URL, subconfig.Config{Secrets: []string{vectorSecret, otherSecret}}, whDelivery())
	if a.err != nil {
		t.Fatal(a.err)
	}
	if err := testutil.Recv(t, verified); err != nil {
		t.Fatalf("reference library refused our delivery: %v", err)
	}
}

func TestWebhookSenderSecretRotation(t *testing.T) {
	t.Parallel()
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusOK))
	s := newTestSender(t, Settings{})
	a := s.send(ctxT(t), srv.URL, subconfig.Config{Secrets: []string{otherSecret, vectorSecret}}, whDelivery())
	if a.err != nil {
		t.Fatal(a.err)
	}
	r := testutil.Recv(t, got)
	if n := len(strings.Fields(r.Header.Get(webhook.HeaderSignature))); n != 2 {
		t.Fatalf("%d signatures, want 2", n)
	}
	for _, secret := range []string{vectorSecret, otherSecret} {
		if err := mustVerifier(t, webhookClock, secret).Verify(r.Header, r.Body); err != nil {
			t.Errorf("receiver holding one secret refused: %v", err)
		}
	}

	// Without secrets the delivery is unsigned but still identified.
	a = s.send(ctxT(t), srv.URL, subconfig.Config{}, whDelivery())
	if a.err != nil {
		t.Fatal(a.err)
	}
	r = testutil.Recv(t, got)
	if r.Header.Get(webhook.HeaderSignature) != "" || r.Header.Get(webhook.HeaderID) == "" {
		t.Errorf("unsigned delivery headers: %v", r.Header)
	}
}

func TestWebhookSenderOutcomes(t *testing.T) {
	t.Parallel()
	retryDate := webhookClock.Add(90 * time.Second).Format(http.TimeFormat)
	tests := []struct {
		name       string
		code       int
		header     string // Retry-After
		body       string
		wantErr    bool
		permanent  bool
		gone       bool
		retryAfter time.Duration // -1: no RetryAfter wrapper
	}{
		{name: "200", code: 200, retryAfter: -1},
		{name: "201", code: 201, retryAfter: -1},
		{name: "204", code: 204, retryAfter: -1},
		{name: "410 gone", code: 410, body: "endpoint removed", wantErr: true, permanent: true, gone: true, retryAfter: -1},
		{name: "429 seconds", code: 429, header: "120", wantErr: true, retryAfter: 2 * time.Minute},
		{name: "503 date", code: 503, header: retryDate, wantErr: true, retryAfter: 90 * time.Second},
		{name: "503 zero", code: 503, header: "0", wantErr: true, retryAfter: 0},
		{name: "429 huge", code: 429, header: "99999999999999999999", wantErr: true, retryAfter: maxRetryAfterDefault},
		{name: "429 week", code: 429, header: "604800", wantErr: true, retryAfter: maxRetryAfterDefault},
		{name: "429 without", code: 429, wantErr: true, retryAfter: -1},
		{name: "503 garbage", code: 503, header: "soon", wantErr: true, retryAfter: -1},
		{name: "500 retry-after ignored", code: 500, header: "60", body: "boom", wantErr: true, retryAfter: -1},
		{name: "502", code: 502, wantErr: true, retryAfter: -1},
		{name: "400", code: 400, body: `{"error":"bad"}`, wantErr: true, retryAfter: -1},
		{name: "401", code: 401, wantErr: true, retryAfter: -1},
		{name: "404", code: 404, wantErr: true, retryAfter: -1},
		{name: "408", code: 408, wantErr: true, retryAfter: -1},
		{name: "409", code: 409, wantErr: true, retryAfter: -1},
		{name: "425", code: 425, wantErr: true, retryAfter: -1},
		{name: "301", code: 301, wantErr: true, retryAfter: -1},
		{name: "304", code: 304, wantErr: true, retryAfter: -1},
	}
	s := newTestSender(t, Settings{})
	for _, tt := range tests {
		srv, _ := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
			if tt.header != "" {
				w.Header().Set("Retry-After", tt.header)
			}
			if tt.code/100 == 3 {
				w.Header().Set("Location", "https://example.com/elsewhere")
			}
			w.WriteHeader(tt.code)
			_, _ = io.WriteString(w, tt.body)
		})
		a := s.send(ctxT(t), srv.URL, subconfig.Config{}, whDelivery())
		if (a.err != nil) != tt.wantErr || isPermanent(a.err) != tt.permanent || a.gone != tt.gone || a.status != tt.code {
			t.Errorf("%s: err %v (permanent %v), gone %v, status %d", tt.name, a.err, isPermanent(a.err), a.gone, a.status)
			continue
		}
		d, ok := retryAfterOf(a.err)
		if tt.retryAfter < 0 && ok || tt.retryAfter >= 0 && tt.wantErr && (!ok || d != tt.retryAfter) {
			t.Errorf("%s: retry after %v (%v), want %v", tt.name, d, ok, tt.retryAfter)
		}
		if tt.wantErr {
			msg := a.err.Error()
			if !errors.Is(a.err, ErrStatus) || !strings.Contains(msg, "HTTP "+strconv.Itoa(tt.code)) || !strings.Contains(msg, tt.body) {
				t.Errorf("%s: error text %q lacks status or body", tt.name, msg)
			}
			if tt.code/100 == 3 && !strings.Contains(msg, "redirects are not followed") {
				t.Errorf("%s: error text %q does not mention the redirect", tt.name, msg)
			}
		}
	}
}

func TestWebhookSenderRetryAfterCap(t *testing.T) {
	t.Parallel()
	srv, _ := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "7200")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	s := newTestSender(t, Settings{MaxRetryAfter: time.Hour})
	a := s.send(ctxT(t), srv.URL, subconfig.Config{}, whDelivery())
	if d, ok := retryAfterOf(a.err); !ok || d != time.Hour {
		t.Fatalf("retry after %v %v, want the 1h cap", d, ok)
	}
}

func TestWebhookSenderResponseBodyCap(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 5000) // 10000 bytes
	srv, _ := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, long)
	})
	s := newTestSender(t, Settings{MaxResponseBytes: 1000})
	a := s.send(ctxT(t), srv.URL, subconfig.Config{}, whDelivery())
	if len(a.respBody) != 1000 || !a.respTruncated || string(a.respBody) != long[:1000] {
		t.Errorf("kept %d bytes, truncated %v", len(a.respBody), a.respTruncated)
	}
	msg := a.err.Error()
	if len(msg) > 800 || !strings.Contains(msg, "HTTP 500") || !strings.Contains(msg, "éé") || !strings.HasSuffix(msg, "…") {
		t.Errorf("error text (%d bytes) = %q", len(msg), msg)
	}
}

func TestWebhookSenderTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(stop) // runs before srv.Close
	s := newTestSender(t, Settings{Timeout: time.Minute})
	// The attempt's duration starts after its deadline was set, once the
	// request is built and signed: it covers the timeout less that setup.
	// The lower bound allows ten times the setup of a send beside it (the
	// time the test sees outside the reported duration, the slowest of
	// three sends answered at once), so that a loaded machine does not
	// fail it; a machine that sets up a send in under 10 ms still fails a
	// duration that misses most of the wait. (Under heavy load the bound
	// can fall to nothing; the duration must still have been set.)
	quick := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(quick.Close)
	var setup time.Duration
	for range 3 {
		start := time.Now()
		q := s.send(ctxT(t), quick.URL, subconfig.Config{}, whDelivery())
		if q.err != nil {
			t.Fatal(q.err)
		}
		setup = max(setup, time.Since(start)-q.duration)
	}
	const timeout = 100 * time.Millisecond
	a := s.send(ctxT(t), srv.URL, subconfig.Config{Timeout: subconfig.Duration(timeout)}, whDelivery())
	if a.err == nil || isPermanent(a.err) || !errors.Is(a.err, context.DeadlineExceeded) || !strings.Contains(a.err.Error(), "timed out after 100ms") {
		t.Fatalf("err = %v, want a retryable timeout", a.err)
	}
	if a.status != 0 || a.duration <= 0 {
		t.Errorf("status %d, duration %s: want no status and the attempt's duration", a.status, a.duration)
	}
	testutil.AtLeast(t, "duration of an attempt cut by its timeout", a.duration,
		testutil.Bound{}.Plus("timeout", timeout).MinusTimes(10, "setup of a send", setup))
	// The caller's context bounds the attempt too.
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if a := s.send(ctx, srv.URL, subconfig.Config{}, whDelivery()); a.err == nil || isPermanent(a.err) {
		t.Errorf("cancelled context: err = %v", a.err)
	}
}

func TestWebhookSenderNetworkErrors(t *testing.T) {
	t.Parallel()
	s := newTestSender(t, Settings{})

	// Connection refused: a server that is gone.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	a := s.send(ctxT(t), deadURL+"/hook?token=s3cret", subconfig.Config{}, whDelivery())
	if a.err == nil || isPermanent(a.err) || a.status != 0 {
		t.Fatalf("refused: err %v, status %d", a.err, a.status)
	}
	if strings.Contains(a.err.Error(), "s3cret") {
		t.Errorf("error text repeats the URL: %v", a.err)
	}

	// A server that hangs up without answering.
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(hangup.Close)
	a = s.send(ctxT(t), hangup.URL, subconfig.Config{}, whDelivery())
	if a.err == nil || isPermanent(a.err) || a.status != 0 {
		t.Errorf("hang-up: err %v, status %d", a.err, a.status)
	}

	// Unusable input is permanent: no retry can fix it.
	for _, tt := range []struct {
		url string
		cfg subconfig.Config
	}{
		{"ftp://example.com/x", subconfig.Config{}},
		{"http://", subconfig.Config{}},
		{"http://127.0.0.1/", subconfig.Config{Secrets: []string{"whsec_!!"}}},
	} {
		if a := s.send(ctxT(t), tt.url, tt.cfg, whDelivery()); !isPermanent(a.err) {
			t.Errorf("%s: err = %v, want permanent", tt.url, a.err)
		}
	}
}

func TestWebhookSenderRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	target, targetHits := testutil.Receiver(t, testutil.Status(http.StatusOK))
	s := newTestSender(t, Settings{})
	for _, location := range []string{
		target.URL + "/moved",                      // an allowed address
		"http://169.254.169.254/latest/meta-data/", // cloud metadata
		"http://127.0.0.1:1/admin",
		"https://user:pw-secret-1@example.com/hook?token=tok-secret-2", // credentials in the location
	} {
		srv, _ := testutil.Receiver(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, location, http.StatusTemporaryRedirect)
		})
		a := s.send(ctxT(t), srv.URL, subconfig.Config{}, whDelivery())
		u, _ := url.Parse(location)
		msg := ""
		if a.err != nil {
			msg = a.err.Error()
		}
		// The error names where the redirect pointed (scheme and host),
		// never its path, query or user info: it becomes failure_reason.
		if a.status != http.StatusTemporaryRedirect || a.err == nil || errors.Is(a.err, ErrBlocked) ||
			!strings.Contains(msg, u.Scheme+"://"+u.Host) || strings.Contains(msg, u.Path) ||
			strings.Contains(msg, "secret") {
			t.Errorf("redirect to %s: status %d, err %v", location, a.status, a.err)
		}
	}
	select {
	case <-targetHits:
		t.Fatal("the redirect was followed")
	default:
	}
}

func TestWebhookSenderSSRF(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSender(t, Settings{AllowedNetworks: []netip.Prefix{}}) // the default guard
	urls := []string{
		srv.URL,
		"http://localhost:" + port + "/hook", // a name that resolves to 127.0.0.1
		"http://[::ffff:127.0.0.1]:" + port + "/hook",
		"http://[::ffff:169.254.169.254]:" + port + "/latest/meta-data/",
		"http://169.254.169.254:" + port + "/latest/meta-data/",
		"http://10.0.0.1:" + port + "/",
		"http://192.168.0.1:" + port + "/",
		"http://172.16.0.1:" + port + "/",
		"http://100.64.0.1:" + port + "/",
		"http://224.0.0.1:" + port + "/",
		"http://0.0.0.0:" + port + "/",
	}
	for _, u := range urls {
		a := s.send(ctxT(t), u, subconfig.Config{}, whDelivery())
		if !errors.Is(a.err, ErrBlocked) || !isPermanent(a.err) || a.status != 0 ||
			!strings.Contains(a.err.Error(), "SSRF") {
			t.Errorf("%s: err = %v, want a permanent ErrBlocked", u, a.err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the receiver was reached %d times", n)
	}
	// The same receiver is reachable once its network is allowed.
	open := newTestSender(t, Settings{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if a := open.send(ctxT(t), "http://localhost:"+port+"/hook", subconfig.Config{}, whDelivery()); a.err != nil {
		// localhost may resolve to ::1 first; the dialer then falls back to 127.0.0.1.
		t.Fatalf("allowed network: %v", a.err)
	}
}

// TestWebhookSenderEndpointConcurrency shows that an endpoint never has more
// than EndpointConcurrency deliveries in flight, and that a slow endpoint
// does not delay a fast one.
func TestWebhookSenderEndpointConcurrency(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	arrived := make(chan struct{}, 10)
	var inflight, peak atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		inflight.Add(-1)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(stop)
	fast, _ := testutil.Receiver(t, testutil.Status(http.StatusNoContent))

	s := newTestSender(t, Settings{EndpointConcurrency: 2})
	const slowSends = 5
	results := make(chan attempt, slowSends)
	for range slowSends {
		go func() { results <- s.send(ctxT(t), slow.URL, subconfig.Config{}, whDelivery()) }()
	}
	testutil.Recv(t, arrived)
	testutil.Recv(t, arrived) // two slow deliveries hold both slots

	done := make(chan attempt, 1)
	go func() { done <- s.send(ctxT(t), fast.URL, subconfig.Config{}, whDelivery()) }()
	if a := testutil.Recv(t, done); a.err != nil {
		t.Fatalf("fast endpoint: %v", a.err)
	}
	select {
	case <-arrived:
		t.Fatal("a third delivery reached the slow endpoint while two were in flight")
	default:
	}
	stop()
	for range slowSends {
		if a := testutil.Recv(t, results); a.err != nil {
			t.Errorf("slow endpoint: %v", a.err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak in flight = %d, want 2", p)
	}
	s.mu.Lock()
	left := len(s.endpoints)
	s.mu.Unlock()
	if left != 0 {
		t.Errorf("%d idle endpoints kept", left)
	}
}

func TestWebhookSenderEndpointSlotTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	arrived := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(stop)
	s := newTestSender(t, Settings{EndpointConcurrency: 1})
	first := make(chan attempt, 1)
	go func() { first <- s.send(ctxT(t), slow.URL, subconfig.Config{}, whDelivery()) }()
	testutil.Recv(t, arrived)
	a := s.send(ctxT(t), slow.URL, subconfig.Config{Timeout: subconfig.Duration(50 * time.Millisecond)}, whDelivery())
	if a.err == nil || isPermanent(a.err) || !strings.Contains(a.err.Error(), "no free slot") || a.status != 0 {
		t.Errorf("busy endpoint: err = %v", a.err)
	}
	stop()
	if a := testutil.Recv(t, first); a.err != nil {
		t.Fatal(a.err)
	}
}

func TestWebhookSenderKeepAlive(t *testing.T) {
	t.Parallel()
	var newConns atomic.Int64
	var calls atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, strings.Repeat("x", 100000)) // more than the kept part
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := newTestSender(t, Settings{MaxResponseBytes: 100})
	for i := range 6 {
		a := s.send(ctxT(t), srv.URL, subconfig.Config{Secrets: []string{vectorSecret}}, whDelivery())
		if (a.err != nil) != (i%2 == 1) {
			t.Fatalf("send %d: %v", i, a.err)
		}
	}
	if n := newConns.Load(); n != 1 {
		t.Fatalf("%d connections opened for 6 sequential deliveries, want 1 (keep-alive)", n)
	}
}

func TestWebhookParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"30", 30 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{now.Add(time.Hour).Format(http.TimeFormat), time.Hour, true},
		{"Tue, 01 Jan 2030 00:00:10 GMT", 10 * time.Second, true},
		{"Tuesday, 01-Jan-30 00:01:00 GMT", time.Minute, true}, // RFC 850
		{"Tue Jan  1 00:00:05 2030", 5 * time.Second, true},    // asctime
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true}, // past: no delay
		{"99999999999999999999", math.MaxInt64, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"5s", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestWebhookEnvelopeNullPayload(t *testing.T) {
	t.Parallel()
	d := whDelivery()
	d.Payload = nil
	d.CreatedAt = time.Time{}
	body, err := webhookBody(d, webhookClock)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"` + d.EventID.String() + `","type":"order.created","timestamp":"2030-01-02T03:04:05Z","data":null}`
	if string(body) != want {
		t.Fatalf("body = %s, want %s", body, want)
	}
}

func TestWebhookEndpointKey(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://Example.COM/a":      "example.com:443",
		"https://example.com:443/b":  "example.com:443",
		"http://example.com/":        "example.com:80",
		"http://example.com:8080/x":  "example.com:8080",
		"http://[2001:DB8::1]:81/":   "[2001:db8::1]:81",
		"https://hooks.example.com/": "hooks.example.com:443",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := endpointKey(u); got != want {
			t.Errorf("endpointKey(%s) = %s, want %s", raw, got, want)
		}
	}
}

// Secrets of the Standard Webhooks test vector and a second one for
// rotation (the webhook package's tests check the vector itself).
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	otherSecret  = "whsec_dGhpcyBpcyBhIHNlY29uZCB0ZXN0IHNlY3JldCE="
)

func mustVerifier(t testing.TB, now time.Time, secrets ...string) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return now }
	return v
}
