package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
)

// startDispatcher runs d until the test ends and fails the test if Run
// returns an error or does not return.
func startDispatcher(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (b *bundle) subscribe(t testing.TB, name, pattern, method string) Subscription {
	t.Helper()
	s, err := b.ob.Subscribe(context.Background(), Subscription{Name: name, TopicPattern: pattern, CallbackMethod: method})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *bundle) enqueue(t testing.TB, topic string, payload any, opts ...*EnqueueOptions) EnqueueResult {
	t.Helper()
	ctx := context.Background()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var o *EnqueueOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	res, err := b.ob.Enqueue(ctx, tx, topic, payload, o)
	if err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return res
}

func (b *bundle) count(t testing.TB, where string, args ...any) int64 {
	t.Helper()
	return countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".event_queue WHERE `+where, args...)
}

// waitFor polls cond (a database check) until it holds, for up to 30 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, 30*time.Second, what, cond, nil)
}

func fastConfig() DispatcherConfig {
	return DispatcherConfig{Name: "test", PollInterval: 20 * time.Millisecond, ShutdownTimeout: 5 * time.Second}
}

func TestDispatcherDeliversAndRetries(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	b.subscribe(t, "mailer", "order.*", "mailer")
	d, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	got := make(chan *Delivery, 10)
	d.Handle("mailer", func(ctx context.Context, dl *Delivery) error {
		got <- dl
		if calls.Add(1) == 1 {
			return errors.New("smtp down")
		}
		return nil
	})
	res := b.enqueue(t, "order.created", map[string]any{"id": 7}, &EnqueueOptions{Metadata: map[string]string{"trace": "abc"}})
	if res.Deliveries != 1 {
		t.Fatalf("deliveries = %d, want 1", res.Deliveries)
	}
	startDispatcher(t, d)
	first := testutil.Recv(t, got)
	if first.EventID != res.EventID || first.Attempt != 1 || first.Topic != "order.created" || first.Metadata["trace"] != "abc" {
		t.Fatalf("first delivery = %+v", first)
	}
	waitFor(t, "the retry to be scheduled", func() bool { return b.count(t, "status = 'PENDING' AND retry_count = 1") == 1 })
	var reason string
	var next time.Time
	if err := b.db.QueryRow(`SELECT failure_reason, next_retry_at FROM "`+b.schema+`".event_queue`).Scan(&reason, &next); err != nil {
		t.Fatal(err)
	}
	if reason != "smtp down" {
		t.Fatalf("failure_reason = %q", reason)
	}
	// First retry: BackoffInitial's default, 1 s, ± 20 %.
	if delay := next.Sub(b.clock.Now()); delay < 800*time.Millisecond || delay > 1200*time.Millisecond {
		t.Fatalf("retry delay = %s, want 1s ± 20%%", delay)
	}
	select {
	case dl := <-got:
		t.Fatalf("retried before it was due: %+v", dl)
	case <-time.After(100 * time.Millisecond):
	}
	b.clock.Advance(2 * time.Second)
	second := testutil.Recv(t, got)
	if second.Attempt != 2 || second.EventID != res.EventID {
		t.Fatalf("second delivery = %+v", second)
	}
	waitFor(t, "completion", func() bool {
		return b.count(t, "status = 'COMPLETED' AND processed_at IS NOT NULL AND locked_by IS NULL") == 1
	})
}

func TestDispatcherFailures(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	b.subscribe(t, "perm", "perm", "perm")
	b.subscribe(t, "panics", "panics", "panics")
	b.subscribe(t, "exhaust", "exhaust", "exhaust")
	b.subscribe(t, "later", "later", "later")
	d, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	var exhaustCalls atomic.Int32
	d.Handle("perm", func(context.Context, *Delivery) error { return Permanent(errors.New("bad address")) })
	d.Handle("panics", func(context.Context, *Delivery) error { panic("boom") })
	d.Handle("exhaust", func(context.Context, *Delivery) error {
		exhaustCalls.Add(1)
		return errors.New("always")
	})
	d.Handle("later", func(context.Context, *Delivery) error {
		return RetryAfter(90*time.Second, errors.New("rate limited"))
	})
	b.enqueue(t, "perm", 1)
	b.enqueue(t, "panics", 2, &EnqueueOptions{MaxRetries: intPtr(0)})
	b.enqueue(t, "exhaust", 3, &EnqueueOptions{MaxRetries: intPtr(2)})
	b.enqueue(t, "later", 4)
	startDispatcher(t, d)
	waitFor(t, "permanent failure", func() bool {
		return b.count(t, "topic = 'perm' AND status = 'FAILED' AND retry_count = 1 AND failure_reason LIKE '%bad address%'") == 1
	})
	waitFor(t, "panic failure", func() bool {
		return b.count(t, "topic = 'panics' AND status = 'FAILED' AND failure_reason LIKE 'panic: boom%goroutine%'") == 1
	})
	waitFor(t, "retry-after", func() bool { return b.count(t, "topic = 'later' AND status = 'PENDING' AND retry_count = 1") == 1 })
	var next time.Time
	if err := b.db.QueryRow(`SELECT next_retry_at FROM "` + b.schema + `".event_queue WHERE topic = 'later'`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	if !next.Equal(b.clock.Now().Add(90 * time.Second)) {
		t.Fatalf("RetryAfter next_retry_at = %s, want now + 90s", next)
	}
	// max_retries = 2: exactly three attempts, then FAILED.
	for i := 1; i <= 3; i++ {
		waitFor(t, fmt.Sprintf("attempt %d", i), func() bool { return exhaustCalls.Load() >= int32(i) })
		if i < 3 {
			waitFor(t, "retry scheduled", func() bool {
				return b.count(t, "topic = 'exhaust' AND status = 'PENDING' AND retry_count = $1", i) == 1
			})
			b.clock.Advance(time.Hour)
		}
	}
	waitFor(t, "exhausted", func() bool { return b.count(t, "topic = 'exhaust' AND status = 'FAILED' AND retry_count = 3") == 1 })
	if n := exhaustCalls.Load(); n != 3 {
		t.Fatalf("attempts = %d, want 3", n)
	}
	failed, err := b.ob.ListFailed(ctxT(t), FailedFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 3 {
		t.Fatalf("ListFailed = %d rows, want 3", len(failed))
	}
}

func TestHandleTxExactlyOnceEffects(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	ctx := ctxT(t)
	if _, err := b.db.ExecContext(ctx, `CREATE TABLE "`+b.schema+`".ledger (event_id uuid PRIMARY KEY, amount int)`); err != nil {
		t.Fatal(err)
	}
	b.subscribe(t, "ledger", "payment.*", "ledger")
	d, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	type payment struct {
		Amount int `json:"amount"`
	}
	d.HandleTx("ledger", TypedTx(func(ctx context.Context, tx *sql.Tx, dl *Delivery, p payment) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO "`+b.schema+`".ledger VALUES ($1, $2)`, dl.EventID, p.Amount); err != nil {
			return err
		}
		if calls.Add(1) == 1 {
			return errors.New("fail after writing: the write must roll back")
		}
		return nil
	}))
	res := b.enqueue(t, "payment.received", payment{Amount: 42})
	startDispatcher(t, d)
	waitFor(t, "first attempt rolled back", func() bool { return b.count(t, "status = 'PENDING' AND retry_count = 1") == 1 })
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".ledger`); n != 0 {
		t.Fatalf("failed attempt left %d ledger rows", n)
	}
	b.clock.Advance(time.Minute)
	waitFor(t, "completion", func() bool { return b.count(t, "status = 'COMPLETED'") == 1 })
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".ledger WHERE event_id = $1 AND amount = 42`, res.EventID); n != 1 {
		t.Fatalf("ledger rows = %d, want 1", n)
	}
}

func TestTypedDecodeFailureIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "typed", "#", "typed")
	d, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("typed", Typed(func(context.Context, *Delivery, struct{ N int }) error { return nil }))
	b.enqueue(t, "x", "not an object")
	startDispatcher(t, d)
	waitFor(t, "permanent failure", func() bool {
		return b.count(t, "status = 'FAILED' AND retry_count = 1 AND failure_reason LIKE '%decode x payload%'") == 1
	})
}

func TestDispatcherClaimsOnlyItsHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	b.subscribe(t, "b", "#", "b")
	for range 20 {
		b.enqueue(t, "x", 1)
	}
	seen := make(chan string, 100)
	da, _ := b.ob.NewDispatcher(fastConfig())
	da.Handle("a", func(_ context.Context, dl *Delivery) error { seen <- "a:" + dl.Subscription; return nil })
	startDispatcher(t, da)
	waitFor(t, "a's rows", func() bool { return b.count(t, "status = 'COMPLETED'") == 20 })
	if n := b.count(t, "status = 'PENDING'"); n != 20 {
		t.Fatalf("b's rows touched by a's dispatcher: %d pending", n)
	}
	db, _ := b.ob.NewDispatcher(fastConfig())
	db.Handle("b", func(_ context.Context, dl *Delivery) error { seen <- "b:" + dl.Subscription; return nil })
	startDispatcher(t, db)
	waitFor(t, "b's rows", func() bool { return b.count(t, "status = 'COMPLETED'") == 40 })
	close(seen)
	for s := range seen {
		if s != "a:a" && s != "b:b" {
			t.Fatalf("handler got another subscription's row: %s", s)
		}
	}
}

func TestHeartbeatKeepsLongHandlerLease(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "slow", "#", "slow")
	cfg := fastConfig()
	// A heartbeat's write must land within the lease less one interval,
	// or the rescue takes the row from under its handler: the lease is 3 s
	// (with 600 ms the row was lost once when a loaded machine held the
	// heartbeats back), or twenty writes at what a write costs on this
	// machine now if that is longer.
	rt := writeRoundTrip(t, b.db)
	cfg.LeaseDuration = max(3*time.Second, 20*rt)
	t.Logf("lease %s (write round trip %s)", cfg.LeaseDuration, rt)
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.RescueInterval = 50 * time.Millisecond
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	d.Handle("slow", func(ctx context.Context, _ *Delivery) error {
		calls.Add(1)
		started <- struct{}{}
		<-release
		return nil
	})
	b.enqueue(t, "x", 1)
	startDispatcher(t, d)
	testutil.Recv(t, started)
	// Hold the handler past two lease lengths: the lease must keep moving.
	var first time.Time
	if err := b.db.QueryRow(`SELECT locked_until FROM "` + b.schema + `".event_queue`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second+2*cfg.LeaseDuration, "lease renewed past two lease lengths", func() bool {
		return b.count(t, "status = 'PROCESSING' AND locked_until > $1", first.Add(2*cfg.LeaseDuration)) == 1
	}, nil)
	close(release)
	waitFor(t, "completion", func() bool { return b.count(t, "status = 'COMPLETED' AND retry_count = 0") == 1 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (rescued from under itself)", n)
	}
}

func TestRescueExpiredLease(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "a", "#", "a")
	b.enqueue(t, "x", 1)
	lastTry := b.enqueue(t, "y", 1, &EnqueueOptions{MaxRetries: intPtr(0)})
	// A dispatcher that died holding both rows.
	if _, err := b.db.ExecContext(ctx, `UPDATE "`+b.schema+`".event_queue SET status = 'PROCESSING',
		locked_by = 'dead/1', locked_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.RescueInterval = 50 * time.Millisecond
	d, _ := b.ob.NewDispatcher(cfg)
	got := make(chan *Delivery, 2)
	d.Handle("a", func(_ context.Context, dl *Delivery) error { got <- dl; return nil })
	startDispatcher(t, d)
	dl := testutil.Recv(t, got)
	if dl.Attempt != 2 || dl.Topic != "x" {
		t.Fatalf("rescued delivery = %+v, want attempt 2 of x", dl)
	}
	waitFor(t, "rescued row completed", func() bool { return b.count(t, "topic = 'x' AND status = 'COMPLETED' AND retry_count = 1") == 1 })
	if n := b.count(t, "event_id = $1 AND status = 'FAILED' AND failure_reason LIKE 'lease expired%dead/1%'", lastTry.EventID); n != 1 {
		t.Fatal("row with no retries left was not failed by the rescue")
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "soft", "soft", "soft")
	b.subscribe(t, "hard", "hard", "hard")
	cfg := fastConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	d, _ := b.ob.NewDispatcher(cfg)
	started := make(chan string, 2)
	finish := make(chan struct{})
	d.Handle("soft", func(ctx context.Context, _ *Delivery) error {
		started <- "soft"
		<-finish // finishes after Run's context ends, within the timeout
		return nil
	})
	d.Handle("hard", func(ctx context.Context, _ *Delivery) error {
		started <- "hard"
		<-ctx.Done() // never finishes on its own
		return ctx.Err()
	})
	b.enqueue(t, "soft", 1)
	b.enqueue(t, "hard", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(ctx) }()
	testutil.Recv(t, started)
	testutil.Recv(t, started)
	begin := time.Now()
	cancel()
	close(finish) // the soft handler returns only after Run's context has ended
	if err := testutil.Recv(t, runDone); err != nil {
		t.Fatalf("Run = %v", err)
	}
	// Run returns once the hard handler is cut at ShutdownTimeout and both
	// outcomes are written: within the old bound's slack plus twenty writes
	// at what a write costs on this machine, measured right after.
	took := time.Since(begin)
	bound := testutil.Bound{}.Plus("ShutdownTimeout", cfg.ShutdownTimeout).Plus("slack", 5*time.Second-cfg.ShutdownTimeout).
		PlusTimes(20, "write round trip", writeRoundTrip(t, b.db))
	testutil.Within(t, "Run's return after cancel", took, bound)
	if n := b.count(t, "topic = 'soft' AND status = 'COMPLETED'"); n != 1 {
		t.Fatal("in-flight handler's success was not written at shutdown")
	}
	if n := b.count(t, "topic = 'hard' AND status = 'PENDING' AND retry_count = 0 AND locked_by IS NULL AND failure_reason LIKE 'released at shutdown%'"); n != 1 {
		t.Fatal("cut-off handler's row was not released without counting an attempt")
	}
}

func TestNotifyWakesDispatcher(t *testing.T) {
	t.Parallel()
	b := setup(t, &Config{NotifyCooldown: time.Nanosecond}) // every Enqueue notifies
	b.subscribe(t, "a", "#", "a")
	cfg := fastConfig()
	cfg.PollInterval = time.Hour // only LISTEN/NOTIFY can deliver in time
	cfg.ListenDSN = pgtest.URL()
	pgtest.ReserveConns(t, 1) // the listener's connection
	d, _ := b.ob.NewDispatcher(cfg)
	got := make(chan *Delivery, 10)
	d.Handle("a", func(_ context.Context, dl *Delivery) error { got <- dl; return nil })
	startDispatcher(t, d)
	// The first poll runs at start; wait until the listener is up.
	waitFor(t, "listener", func() bool {
		return countRows(t, b.db, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%outboxkit_`+b.schema+`%'`) > 0
	})
	for i := range 3 {
		res := b.enqueue(t, "x", i)
		if dl := testutil.Recv(t, got); dl.EventID != res.EventID {
			t.Fatalf("delivery %d = %v, want %v", i, dl.EventID, res.EventID)
		}
	}
}

func TestRetentionCleanup(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	b.subscribe(t, "a", "#", "a")
	cfg := fastConfig()
	cfg.CompletedRetention = time.Hour
	cfg.FailedRetention = 2 * time.Hour
	d, _ := b.ob.NewDispatcher(cfg)
	d.Handle("a", func(_ context.Context, dl *Delivery) error {
		if string(dl.Payload) == `"fail"` {
			return Permanent(errors.New("no"))
		}
		return nil
	})
	b.enqueue(t, "x", "ok")
	b.enqueue(t, "x", "fail")
	stop := startDispatcher(t, d)
	waitFor(t, "both finished", func() bool { return b.count(t, "status IN ('COMPLETED', 'FAILED')") == 2 })
	stop()
	// A dispatcher that cleans up every few milliseconds, run after each
	// move of the clock.
	cleanCfg := fastConfig()
	cleanCfg.CompletedRetention, cleanCfg.FailedRetention = cfg.CompletedRetention, cfg.FailedRetention
	cleanCfg.CleanupInterval = 5 * time.Millisecond
	cleaner, _ := b.ob.NewDispatcher(cleanCfg)
	cleaner.Handle("a", func(context.Context, *Delivery) error { return nil })
	b.clock.Advance(90 * time.Minute)
	stop = startDispatcher(t, cleaner)
	waitFor(t, "the completed row deleted", func() bool { return b.count(t, "status = 'COMPLETED'") == 0 })
	waitFor(t, "its event deleted", func() bool {
		return countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".system_event`) == 1
	})
	stop()
	if b.count(t, "status = 'FAILED'") != 1 {
		t.Fatal("failed row deleted before its own retention")
	}
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".system_event`); n != 1 {
		t.Fatalf("events = %d, want 1 (the one still referenced by a FAILED row)", n)
	}
	b.clock.Advance(time.Hour)
	stop = startDispatcher(t, cleaner)
	waitFor(t, "everything deleted", func() bool {
		return countRows(t, b.db, `SELECT (SELECT count(*) FROM "`+b.schema+`".system_event) + (SELECT count(*) FROM "`+b.schema+`".event_queue)`) == 0
	})
	stop()
	if n := countRows(t, b.db, `SELECT (SELECT count(*) FROM "`+b.schema+`".system_event) + (SELECT count(*) FROM "`+b.schema+`".event_queue)`); n != 0 {
		t.Fatalf("%d rows left after both retentions", n)
	}
}

// TestEventCleanupByIDRange: with the wall clock, event retention walks the
// primary key (UUIDv7 ids below the cutoff's), deleting old events no row
// refers to and keeping recent ones and referenced ones.
func TestEventCleanupByIDRange(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	sub := b.subscribe(t, "a", "x", "a")
	cfg := fastConfig()
	cfg.CompletedRetention = time.Hour
	cfg.CleanupInterval = 5 * time.Millisecond
	d, _ := b.ob.NewDispatcher(cfg)
	d.Handle("unused", func(context.Context, *Delivery) error { return nil })
	old := time.Now().Add(-2 * time.Hour)
	oldFree, oldHeld := dispatch.UUIDV7Floor(old), dispatch.UUIDV7Floor(old.Add(time.Millisecond))
	fresh := b.enqueue(t, "none.matches.this", 1) // no subscription: no row refers to it
	if fresh.Deliveries != 0 {
		t.Fatalf("fresh event fanned out: %+v", fresh)
	}
	if _, err := b.db.ExecContext(ctx, `INSERT INTO "`+b.schema+`".system_event (id, event_type, payload, occurred_at)
		VALUES ($1, 'x', '1', $3), ($2, 'x', '2', $3);
		`, oldFree, oldHeld, old); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.ExecContext(ctx, `INSERT INTO "`+b.schema+`".event_queue (event_id, subscription_id, topic, payload)
		VALUES ($1, $2, 'x', '2')`, oldHeld, sub.ID); err != nil {
		t.Fatal(err)
	}
	stop := startDispatcher(t, d)
	waitFor(t, "the old unreferenced event deleted", func() bool { return !b.eventIDs(t)[oldFree] })
	stop()
	left := b.eventIDs(t)
	if left[oldFree] || !left[oldHeld] || !left[fresh.EventID] || len(left) != 2 {
		t.Fatalf("events left: %v; want the old referenced one and the fresh one", left)
	}
}

func TestHandlerRegistrationPanics(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	d, _ := b.ob.NewDispatcher(DispatcherConfig{})
	d.Handle("a", func(context.Context, *Delivery) error { return nil })
	for name, fn := range map[string]func(){
		"duplicate": func() { d.Handle("a", func(context.Context, *Delivery) error { return nil }) },
		"nil":       func() { d.Handle("b", nil) },
		"empty":     func() { d.Handle("", func(context.Context, *Delivery) error { return nil }) },
		"nil tx":    func() { d.HandleTx("c", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s registration did not panic", name)
				}
			}()
			fn()
		}()
	}
	if _, err := b.ob.NewDispatcher(DispatcherConfig{LeaseDuration: time.Second, HeartbeatInterval: 2 * time.Second}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("heartbeat >= lease accepted: %v", err)
	}
	if _, err := b.ob.NewDispatcher(DispatcherConfig{Workers: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative workers accepted: %v", err)
	}
}

// DispatcherConfig: the documented defaults, and each refused value named
// in a *ValidationError.
func TestDispatcherConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	d, err := b.ob.NewDispatcher(DispatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s := d.engine
	if s.Name == "" || s.Workers != 100 || s.BatchSize != 100 || s.PollInterval != time.Second ||
		s.LeaseDuration != 30*time.Second || s.HeartbeatInterval != 10*time.Second || s.ShutdownTimeout != 10*time.Second ||
		s.RescueInterval != 5*time.Second || s.CleanupInterval != time.Minute || s.CompletedRetention != 24*time.Hour ||
		s.FailedRetention != 7*24*time.Hour || s.Backoff != (dispatch.Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 2}) {
		t.Errorf("defaults = %+v", s)
	}
	for field, cfg := range map[string]DispatcherConfig{
		"workers":            {Workers: -1},
		"batch_size":         {BatchSize: -1},
		"poll_interval":      {PollInterval: -1},
		"lease_duration":     {LeaseDuration: -1},
		"heartbeat_interval": {LeaseDuration: time.Second, HeartbeatInterval: 2 * time.Second},
		"shutdown_timeout":   {ShutdownTimeout: -1},
		"rescue_interval":    {RescueInterval: -1},
		"cleanup_interval":   {CleanupInterval: -1},
		"backoff_initial":    {BackoffInitial: -1},
		"backoff_max":        {BackoffMax: -1},
		"backoff_multiplier": {BackoffMultiplier: 0.5},
		"handler_timeout":    {HandlerTimeout: -1},
	} {
		_, err := b.ob.NewDispatcher(cfg)
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("NewDispatcher(%+v) = %v, want a %s ValidationError", cfg, err, field)
		}
	}
}

func TestRunTwiceAtOnceIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	d, _ := b.ob.NewDispatcher(fastConfig())
	d.Handle("a", func(context.Context, *Delivery) error { return nil })
	stop := startDispatcher(t, d)
	waitFor(t, "Run to start", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.running
	})
	if err := d.Run(context.Background()); !errors.Is(err, ErrDispatcherRunning) {
		t.Fatalf("second Run = %v, want ErrDispatcherRunning", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Handle after Run started did not panic")
			}
		}()
		d.Handle("late", func(context.Context, *Delivery) error { return nil })
	}()
	stop()
	// Once the first Run has returned, the dispatcher can run again.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatalf("Run after Run returned = %v", err)
	}
}

// TestHeartbeatSkipsLockedRows: the heartbeat does not wait for a row
// another statement holds (an outcome write finishing it: waiting there
// deadlocked with the outcome write in the soak), and still extends the
// leases of the others.
func TestHeartbeatSkipsLockedRows(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "a", "#", "a")
	b.enqueue(t, "x", 1)
	b.enqueue(t, "x", 2)
	if _, err := b.db.ExecContext(ctx, `UPDATE "`+b.schema+`".event_queue
		SET status = 'PROCESSING', locked_by = 'hb/1', locked_until = now()`); err != nil {
		t.Fatal(err)
	}
	ids := b.queueIDs(t, "true")
	var all []string
	for id := range ids {
		all = append(all, id.String())
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, `SELECT 1 FROM "`+b.schema+`".event_queue WHERE id = $1 FOR UPDATE`, all[0]); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := b.db.ExecContext(hctx, b.ob.st.Queue.Heartbeat, nil, pq.Array(all), pq.Array([]string{"hb/1", "hb/1"}), time.Minute.Microseconds())
	if err != nil {
		t.Fatalf("heartbeat with a row locked elsewhere: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("heartbeat extended %d leases, want 1 (the unlocked row)", n)
	}
	if n := b.count(t, "id = $1 AND locked_until > now() + interval '30 seconds'", all[1]); n != 1 {
		t.Fatal("the unlocked row's lease was not extended")
	}
}

// TestDispatcherNameCleaned: a dispatcher name that is long and not ASCII,
// or holds a NUL, still makes claim tokens PostgreSQL stores.
func TestDispatcherNameCleaned(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	for i, name := range []string{"a" + strings.Repeat("é", 40), "x\x00y"} {
		cfg := fastConfig()
		cfg.Name = name
		d, err := b.ob.NewDispatcher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{}, 1)
		d.Handle("a", func(context.Context, *Delivery) error { done <- struct{}{}; return nil })
		stop := startDispatcher(t, d)
		b.enqueue(t, "x", i)
		testutil.Recv(t, done)
		waitFor(t, "the outcome", func() bool { return b.count(t, "status = 'COMPLETED'") == int64(i+1) })
		stop()
	}
}
