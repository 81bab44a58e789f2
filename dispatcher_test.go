package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/pgtest"
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
	s, err := b.ob.Subscribe(context.Background(), Subscription{Name: name, Pattern: pattern, CallbackMethod: method})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *bundle) enqueue(t testing.TB, topic string, payload any, opts ...EnqueueOption) EnqueueResult {
	t.Helper()
	ctx := context.Background()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.ob.Enqueue(ctx, tx, topic, payload, opts...)
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

// waitFor polls cond (a database check) until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	res := b.enqueue(t, "order.created", map[string]any{"id": 7}, WithMetadata(map[string]string{"trace": "abc"}))
	if res.Deliveries != 1 {
		t.Fatalf("deliveries = %d, want 1", res.Deliveries)
	}
	startDispatcher(t, d)
	first := recv(t, got)
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
	// First retry: BackoffInitialDefault ± 20 %.
	if delay := next.Sub(b.clock.Now()); delay < 800*time.Millisecond || delay > 1200*time.Millisecond {
		t.Fatalf("retry delay = %s, want 1s ± 20%%", delay)
	}
	select {
	case dl := <-got:
		t.Fatalf("retried before it was due: %+v", dl)
	case <-time.After(100 * time.Millisecond):
	}
	b.clock.Advance(2 * time.Second)
	second := recv(t, got)
	if second.Attempt != 2 || second.EventID != res.EventID {
		t.Fatalf("second delivery = %+v", second)
	}
	waitFor(t, "completion", func() bool { return b.count(t, "status = 'COMPLETED' AND processed_at IS NOT NULL AND locked_by IS NULL") == 1 })
}

func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for a delivery")
	}
	panic("unreachable")
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
	b.enqueue(t, "panics", 2, WithMaxRetries(0))
	b.enqueue(t, "exhaust", 3, WithMaxRetries(2))
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
	if err := b.db.QueryRow(`SELECT next_retry_at FROM "`+b.schema+`".event_queue WHERE topic = 'later'`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	if !next.Equal(b.clock.Now().Add(90 * time.Second)) {
		t.Fatalf("RetryAfter next_retry_at = %s, want now + 90s", next)
	}
	// max_retries = 2: exactly three attempts, then FAILED.
	for i := 1; i <= 3; i++ {
		waitFor(t, fmt.Sprintf("attempt %d", i), func() bool { return exhaustCalls.Load() >= int32(i) })
		if i < 3 {
			waitFor(t, "retry scheduled", func() bool { return b.count(t, "topic = 'exhaust' AND status = 'PENDING' AND retry_count = $1", i) == 1 })
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
	_ = uuid.Nil
	_ = strings.Contains
	_ = pgtest.URL
}
