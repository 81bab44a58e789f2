package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/subconfig"
	"github.com/outboxkit/outbox/webhook"
)

// whDispatcher returns a dispatcher that delivers webhooks under opts (nil:
// defaults with loopback allowed, for httptest receivers).
func whDispatcher(t *testing.T, b *bundle, opts *WebhookOptions) *Dispatcher {
	t.Helper()
	if opts == nil {
		opts = &WebhookOptions{AllowedNetworks: loopbackNetworks}
	}
	cfg := fastConfig()
	cfg.Webhooks = opts
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (b *bundle) subscribeWebhook(t *testing.T, name, pattern, url string, cfg subconfig.Config) Subscription {
	t.Helper()
	s, err := b.ob.Subscribe(context.Background(), Subscription{Name: name, TopicPattern: pattern, WebhookURL: url, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// whRow is the oldest queue row of a subscription.
type whRow struct {
	status  string
	retries int
	next    sql.NullTime
	reason  sql.NullString
}

func (b *bundle) whRow(t *testing.T, sub string) whRow {
	t.Helper()
	var r whRow
	err := b.db.QueryRow(`SELECT q.status::text, q.retry_count, q.next_retry_at, q.failure_reason
		FROM "`+b.schema+`".event_queue q JOIN "`+b.schema+`".event_subscription s ON s.id = q.subscription_id
		WHERE s.subscriber_name = $1 ORDER BY q.created_at, q.id LIMIT 1`, sub).Scan(&r.status, &r.retries, &r.next, &r.reason)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *bundle) attempts(t *testing.T, sub string, where string) int64 {
	t.Helper()
	if where == "" {
		where = "true"
	}
	return countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".integration_log
		WHERE integration_name = $1 AND operation = 'API_CALL_MADE' AND `+where, sub)
}

func (b *bundle) active(t *testing.T, sub string) bool {
	t.Helper()
	s, err := b.ob.GetSubscription(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	return s.Active
}

// disabledEvents returns the payloads of webhook.endpoint_disabled events.
func (b *bundle) disabledEvents(t *testing.T) []WebhookEndpointDisabled {
	t.Helper()
	rows, err := b.db.Query(`SELECT payload::text FROM "`+b.schema+`".system_event WHERE event_type = $1`, WebhookEndpointDisabledTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []WebhookEndpointDisabled
	for rows.Next() {
		var s string
		var ev WebhookEndpointDisabled
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(s), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWebhookDispatchDelivers(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusNoContent))
	b.subscribeWebhook(t, "crm", "order.*", srv.URL+"/hooks?x=1", subconfig.Config{
		Secrets: []string{secret},
		Headers: map[string]string{"Authorization": "Bearer tok-123-secret", "X-Tenant": "acme"},
	})
	// A dispatcher that does not deliver webhooks leaves the row alone.
	plain, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	plain.Handle("other", func(context.Context, *Delivery) error { return nil })
	stopPlain := startDispatcher(t, plain)
	res := b.enqueue(t, "order.created", map[string]any{"id": 7})
	time.Sleep(100 * time.Millisecond) // a few polls of the plain dispatcher; nothing may happen
	if r := b.whRow(t, "crm"); r.status != "PENDING" || len(got) != 0 {
		t.Fatalf("a dispatcher without Webhooks touched the row: %+v", r)
	}
	stopPlain()

	startDispatcher(t, whDispatcher(t, b, nil))
	req := testutil.Recv(t, got)
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(req.Header, req.Body); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	h := req.Header
	if h.Get(webhook.HeaderID) != res.EventID.String() || !strings.HasPrefix(h.Get("User-Agent"), WebhookUserAgentDefault) ||
		h.Get("X-Tenant") != "acme" || h.Get("Authorization") != "Bearer tok-123-secret" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers = %v", h)
	}
	var env webhook.Envelope
	if err := json.Unmarshal(req.Body, &env); err != nil {
		t.Fatal(err)
	}
	if env.ID != res.EventID.String() || env.Type != "order.created" || !env.Timestamp.Equal(b.clock.Now()) || string(env.Data) != `{"id":7}` {
		t.Fatalf("envelope = %+v (%s)", env, env.Data)
	}
	waitFor(t, "completion", func() bool { return b.count(t, "status = 'COMPLETED'") == 1 })

	// One record, written by the transaction that completed the row.
	var reqData, extID string
	var status, durMS int
	var ok, sameTx bool
	err = b.db.QueryRow(`SELECT l.request_data::text, l.http_status_code, l.success, l.external_id, l.duration_ms,
			l.xmin::text = q.xmin::text
		FROM "`+b.schema+`".integration_log l, "`+b.schema+`".event_queue q
		WHERE l.integration_name = 'crm' AND l.operation = 'API_CALL_MADE'`).Scan(&reqData, &status, &ok, &extID, &durMS, &sameTx)
	if err != nil {
		t.Fatal(err)
	}
	if status != 204 || !ok || extID != res.EventID.String() || durMS < 1 || !sameTx {
		t.Fatalf("record: status %d success %v external id %s duration %d ms, same transaction %v", status, ok, extID, durMS, sameTx)
	}
	if strings.Contains(reqData, "tok-123-secret") || strings.Contains(reqData, h.Get(webhook.HeaderSignature)[3:]) {
		t.Fatalf("record keeps a credential: %s", reqData)
	}
	if !strings.Contains(reqData, "acme") || !strings.Contains(reqData, "POST") {
		t.Fatalf("record lacks the request: %s", reqData)
	}
	if n := b.attempts(t, "crm", ""); n != 1 {
		t.Fatalf("records = %d, want 1", n)
	}
}

func TestWebhookDispatchRetryAfterAndSchedule(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	var mu sync.Mutex
	calls := 0
	srv, got := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("maintenance until noon"))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	plain, _ := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(strings.Repeat("x", 5000)))
	})
	b.subscribeWebhook(t, "ra", "a", srv.URL, subconfig.Config{})
	b.subscribeWebhook(t, "std", "b", plain.URL, subconfig.Config{})
	b.enqueue(t, "a", map[string]any{})
	b.enqueue(t, "b", map[string]any{})
	startDispatcher(t, whDispatcher(t, b, nil))
	testutil.Recv(t, got)
	waitFor(t, "the Retry-After retry", func() bool { return b.whRow(t, "ra").retries == 1 })
	waitFor(t, "the scheduled retry", func() bool { return b.whRow(t, "std").retries == 1 })
	now := b.clock.Now()

	r := b.whRow(t, "ra")
	if r.status != "PENDING" || !r.next.Valid || !r.next.Time.Equal(now.Add(120*time.Second)) {
		t.Fatalf("after 503 + Retry-After 120: %+v, want next_retry_at = %s", r, now.Add(120*time.Second))
	}
	if !strings.Contains(r.reason.String, "503") || !strings.Contains(r.reason.String, "maintenance until noon") {
		t.Fatalf("failure_reason = %q", r.reason.String)
	}
	// Without retry settings a webhook row follows the Standard Webhooks
	// schedule: retry 1 after 5 s ± 20 %.
	s := b.whRow(t, "std")
	if d := s.next.Time.Sub(now); d < 4*time.Second || d > 6*time.Second {
		t.Fatalf("first webhook retry in %s, want 5s ± 20%%", d)
	}
	if !strings.Contains(s.reason.String, "500") || len(s.reason.String) > 1000 {
		t.Fatalf("failure_reason = %q (%d bytes), want the status and a truncated body", s.reason.String, len(s.reason.String))
	}
	// Webhook subscriptions' rows get 9 retries by default (one per step
	// of the schedule; subconfig.Config.MaxRetries).
	if n := b.count(t, "max_retries = 9"); n != 2 {
		t.Fatalf("%d rows with max_retries 9, want 2", n)
	}

	b.clock.Advance(119 * time.Second)
	select {
	case <-got:
		t.Fatal("retried before Retry-After elapsed")
	case <-time.After(100 * time.Millisecond):
	}
	b.clock.Advance(2 * time.Second)
	testutil.Recv(t, got)
	waitFor(t, "completion", func() bool { return b.whRow(t, "ra").status == "COMPLETED" })
	if n, fails := b.attempts(t, "ra", ""), b.attempts(t, "ra", "NOT success AND http_status_code = 503"); n != 2 || fails != 1 {
		t.Fatalf("records = %d (%d failed with 503), want 2 (1)", n, fails)
	}
}

func TestWebhookDispatchGone(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusGone))
	b.subscribeWebhook(t, "gone", "#", srv.URL, subconfig.Config{})
	b.enqueue(t, "x", map[string]any{})
	startDispatcher(t, whDispatcher(t, b, nil))
	testutil.Recv(t, got)
	waitFor(t, "the row to fail", func() bool { return b.whRow(t, "gone").status == "FAILED" })
	if r := b.whRow(t, "gone"); r.retries != 1 || !strings.Contains(r.reason.String, "410") {
		t.Fatalf("row = %+v", r)
	}
	if b.active(t, "gone") {
		t.Fatal("subscription still active after 410 Gone")
	}
	evs := b.disabledEvents(t)
	if len(evs) != 1 || evs[0].Reason != WebhookDisabledGone || evs[0].Subscription != "gone" || evs[0].URL != srv.URL {
		t.Fatalf("endpoint_disabled events = %+v", evs)
	}
}

func TestWebhookDispatchSSRFBlocked(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusOK))
	// Subscribe refuses what no receiver can be, without DNS ...
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://0.0.0.0/", "http://224.0.0.1/"} {
		_, err := b.ob.Subscribe(ctxT(t), Subscription{Name: "bad", TopicPattern: "#", WebhookURL: u})
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "webhook_url" {
			t.Errorf("Subscribe(%s) = %v, want a webhook_url ValidationError", u, err)
		}
	}
	// ... and leaves loopback to the dispatcher's guard, which refuses it.
	b.subscribeWebhook(t, "loop", "#", srv.URL, subconfig.Config{})
	b.enqueue(t, "x", map[string]any{})
	startDispatcher(t, whDispatcher(t, b, &WebhookOptions{}))
	waitFor(t, "the row to fail", func() bool { return b.whRow(t, "loop").status == "FAILED" })
	r := b.whRow(t, "loop")
	if r.retries != 1 || !strings.Contains(r.reason.String, "SSRF") || !strings.Contains(r.reason.String, "permanent") {
		t.Fatalf("row = %+v", r)
	}
	if len(got) != 0 {
		t.Fatal("the receiver was reached")
	}
	if n := b.attempts(t, "loop", "NOT success AND http_status_code IS NULL AND error_message LIKE '%SSRF%'"); n != 1 {
		t.Fatalf("failed records = %d, want 1", n)
	}
	if !b.active(t, "loop") {
		t.Fatal("a blocked address paused the subscription")
	}
}

func TestWebhookDispatchSecretRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	oldS, _ := webhook.NewSecret()
	newS, _ := webhook.NewSecret()
	vOld, _ := webhook.NewVerifier(oldS)
	vNew, _ := webhook.NewVerifier(newS)
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusOK))
	b.subscribeWebhook(t, "rot", "#", srv.URL, subconfig.Config{Secrets: []string{oldS, newS}})
	startDispatcher(t, whDispatcher(t, b, nil))
	b.enqueue(t, "x", map[string]any{"n": 1})
	req := testutil.Recv(t, got)
	if err := vOld.Verify(req.Header, req.Body); err != nil {
		t.Fatalf("old secret during rotation: %v", err)
	}
	if err := vNew.Verify(req.Header, req.Body); err != nil {
		t.Fatalf("new secret during rotation: %v", err)
	}
	if sigs := strings.Fields(req.Header.Get(webhook.HeaderSignature)); len(sigs) != 2 {
		t.Fatalf("signatures = %q, want two", sigs)
	}
	if _, err := b.ob.UpdateSubscriptionConfig(ctxT(t), "rot", subconfig.Config{Secrets: []string{newS}}); err != nil {
		t.Fatal(err)
	}
	b.enqueue(t, "x", map[string]any{"n": 2})
	req = testutil.Recv(t, got)
	if err := vNew.Verify(req.Header, req.Body); err != nil {
		t.Fatalf("new secret after rotation: %v", err)
	}
	if err := vOld.Verify(req.Header, req.Body); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("old secret after rotation: err = %v, want webhook.ErrSignature", err)
	}
}

func TestWebhookDispatchEndpointHealth(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusInternalServerError))
	retries := 20
	b.subscribeWebhook(t, "flaky", "#", srv.URL, subconfig.Config{
		MaxRetries: &retries, RetrySchedule: []subconfig.Duration{subconfig.Duration(time.Minute)},
	})
	// Attempts are recorded as starting a few milliseconds before the
	// clock reads; the count starts when the subscription last changed.
	b.clock.Advance(time.Second)
	b.enqueue(t, "x", map[string]any{})
	startDispatcher(t, whDispatcher(t, b, &WebhookOptions{AllowedNetworks: loopbackNetworks, DisableAfter: time.Hour, DisableMinFailures: 3}))
	attempt := func(n int) {
		t.Helper()
		testutil.Recv(t, got)
		waitFor(t, "the attempt's outcome", func() bool { return b.whRow(t, "flaky").retries == n && b.attempts(t, "flaky", "") == int64(n) })
	}
	attempt(1)
	b.clock.Advance(2 * time.Minute)
	attempt(2) // two failures over 2 minutes: below both thresholds
	if !b.active(t, "flaky") || len(b.disabledEvents(t)) != 0 {
		t.Fatal("disabled too early")
	}
	b.clock.Advance(2 * time.Hour)
	attempt(3) // three failures over more than an hour
	if b.active(t, "flaky") {
		t.Fatal("subscription still active after an hour of failures")
	}
	evs := b.disabledEvents(t)
	if len(evs) != 1 || evs[0].Reason != WebhookDisabledFailing || evs[0].Failures != 3 || !strings.Contains(evs[0].LastError, "500") {
		t.Fatalf("endpoint_disabled events = %+v", evs)
	}
	if d := b.clock.Now().Sub(evs[0].FailingSince); d < 2*time.Hour || d > 2*time.Hour+3*time.Minute {
		t.Fatalf("failing since %s before now", d)
	}
	// The row waits while the subscription is paused ...
	b.clock.Advance(2 * time.Minute)
	select {
	case <-got:
		t.Fatal("a paused subscription was delivered to")
	case <-time.After(100 * time.Millisecond):
	}
	// ... and Resume starts afresh: one more failure does not disable it.
	if _, err := b.ob.ResumeSubscription(ctxT(t), "flaky"); err != nil {
		t.Fatal(err)
	}
	attempt(4)
	if !b.active(t, "flaky") || len(b.disabledEvents(t)) != 1 {
		t.Fatal("disabled again right after Resume")
	}
}

func TestWebhookDispatchSlowEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	release := make(chan struct{})
	slow, slowGot := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the server closes
	fast, _ := testutil.Receiver(t, testutil.Status(http.StatusOK))
	b.subscribeWebhook(t, "slow", "slow", slow.URL, subconfig.Config{})
	b.subscribeWebhook(t, "fast", "fast", fast.URL, subconfig.Config{})
	cfg := fastConfig()
	cfg.Workers = 3
	cfg.Webhooks = &WebhookOptions{AllowedNetworks: loopbackNetworks, EndpointConcurrency: 1}
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.webhooks.BusyDelay = 30 * time.Millisecond
	for range 4 {
		b.enqueue(t, "slow", map[string]any{})
	}
	startDispatcher(t, d)
	testutil.Recv(t, slowGot) // the slow endpoint holds its one slot
	for range 6 {
		b.enqueue(t, "fast", map[string]any{})
	}
	waitFor(t, "the fast endpoint's deliveries", func() bool {
		return countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".event_queue q JOIN "`+b.schema+
			`".event_subscription s ON s.id = q.subscription_id WHERE s.subscriber_name = 'fast' AND q.status = 'COMPLETED'`) == 6
	})
	if n := len(slowGot); n != 0 {
		t.Fatalf("%d more requests reached the slow endpoint past its concurrency limit", n)
	}
	unblock()
	waitFor(t, "the slow endpoint's deliveries", func() bool { return b.count(t, "status = 'COMPLETED'") == 10 })
	// Waiting for a slot is not an attempt.
	if n := b.count(t, "retry_count > 0"); n != 0 {
		t.Fatalf("%d rows count a failed attempt", n)
	}
	if n := b.attempts(t, "slow", ""); n != 4 {
		t.Fatalf("slow records = %d, want 4", n)
	}
}

func TestWebhookDispatchShutdownReleases(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	srv, got := testutil.Receiver(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	b.subscribeWebhook(t, "hang", "#", srv.URL, subconfig.Config{})
	cfg := fastConfig()
	cfg.ShutdownTimeout = 50 * time.Millisecond
	cfg.Webhooks = &WebhookOptions{AllowedNetworks: loopbackNetworks}
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.enqueue(t, "x", map[string]any{})
	stop := startDispatcher(t, d)
	testutil.Recv(t, got)
	stop() // returns once the outcome is written
	r := b.whRow(t, "hang")
	if r.status != "PENDING" || r.retries != 0 || !strings.Contains(r.reason.String, "released at shutdown") {
		t.Fatalf("row after shutdown = %+v, want PENDING without a counted attempt", r)
	}
	if n := b.attempts(t, "hang", "NOT success"); n != 1 {
		t.Fatalf("records = %d, want the cut-off attempt recorded", n)
	}
}

// TestWebhookUnstorableRecordDoesNotHoldOutcome: a receiver's response the
// integration log cannot store (a number jsonb cannot hold) costs only its
// record: the attempt's outcome is written, once, and the failure logged.
func TestWebhookUnstorableRecordDoesNotHoldOutcome(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	srv, got := testutil.Receiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"n":1e200000}`))
	})
	b.subscribeWebhook(t, "crm", "order.*", srv.URL, subconfig.Config{})
	b.enqueue(t, "order.created", map[string]any{"id": 7})
	startDispatcher(t, whDispatcher(t, b, nil))
	testutil.Recv(t, got)
	waitFor(t, "the attempt's outcome", func() bool { return b.count(t, "status = 'COMPLETED'") == 1 })
	if n := b.countRows(t, "integration_log", ""); n != 0 {
		t.Fatalf("%d integration records, want 0 (the unstorable one dropped)", n)
	}
	if !strings.Contains(logs.String(), "integration record of a webhook attempt refused") {
		t.Fatalf("dropped record not logged: %s", logs.String())
	}
	if len(got) != 0 {
		t.Fatal("delivered again")
	}
}

// An attempt whose record the log cannot store (a response body with a
// number PostgreSQL's numeric cannot hold) is dropped with an Error log: the
// outcome is written without it, and another subscription's record in the
// same batch is kept.
func TestWebhookAttemptRecordRefusedAlone(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/odd") {
			_, _ = w.Write([]byte(`{"n":1e200000}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	b.subscribeWebhook(t, "odd", "order.*", srv.URL+"/odd", subconfig.Config{Secrets: []string{newSecret(t)}})
	b.subscribeWebhook(t, "plain", "order.*", srv.URL+"/plain", subconfig.Config{Secrets: []string{newSecret(t)}})
	b.enqueue(t, "order.created", map[string]any{"id": 1})
	stop := startDispatcher(t, whDispatcher(t, b, nil))
	defer stop()
	waitFor(t, "both delivered", func() bool {
		return b.whRow(t, "odd").status == "COMPLETED" && b.whRow(t, "plain").status == "COMPLETED"
	})
	waitFor(t, "the plain attempt recorded", func() bool { return b.attempts(t, "plain", "success") == 1 })
	if n := b.attempts(t, "odd", ""); n != 0 {
		t.Fatalf("%d records of the refused attempt", n)
	}
	if out := logs.String(); !strings.Contains(out, "record of a webhook attempt refused") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("no Error log for the refused record:\n%s", out)
	}
}
