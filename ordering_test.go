package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/subconfig"
)

type seqPayload struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

// orderChecker records deliveries per key and reports any overtaking or
// concurrent delivery within a key.
type orderChecker struct {
	mu       sync.Mutex
	last     map[string]int
	inflight map[string]bool
	errs     []string
	n        atomic.Int64
}

func newOrderChecker() *orderChecker {
	return &orderChecker{last: map[string]int{}, inflight: map[string]bool{}}
}

func (c *orderChecker) handle(ctx context.Context, dl *Delivery) error {
	var p seqPayload
	if err := json.Unmarshal(dl.Payload, &p); err != nil {
		return err
	}
	c.mu.Lock()
	if c.inflight[p.Key] {
		c.errs = append(c.errs, fmt.Sprintf("key %s: two rows in flight at once", p.Key))
	}
	if p.Seq <= c.last[p.Key] {
		c.errs = append(c.errs, fmt.Sprintf("key %s: seq %d after %d", p.Key, p.Seq, c.last[p.Key]))
	}
	c.inflight[p.Key] = true
	c.last[p.Key] = p.Seq
	c.mu.Unlock()
	time.Sleep(time.Millisecond) // widen the window in which a second row of the key could overtake
	c.mu.Lock()
	c.inflight[p.Key] = false
	c.mu.Unlock()
	c.n.Add(1)
	return nil
}

func TestOrderingKeyFIFOAcrossDispatchers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "ordered", "#", "ordered")
	const keys, perKey, unkeyed = 20, 25, 200
	// Interleave keys, in a few transactions per round, so claims see many heads at once.
	for seq := 1; seq <= perKey; seq++ {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			key := fmt.Sprintf("k%02d", k)
			if _, err := b.ob.Enqueue(ctx, tx, "x", seqPayload{Key: key, Seq: seq}, &EnqueueOptions{OrderingKey: key}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range unkeyed {
		b.enqueue(t, "x", seqPayload{Key: fmt.Sprintf("free%d", i), Seq: 1})
	}
	c := newOrderChecker()
	for i := range 4 {
		cfg := fastConfig()
		cfg.Name = fmt.Sprintf("d%d", i)
		cfg.Workers = 8
		cfg.BatchSize = 10
		d, err := b.ob.NewDispatcher(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d.Handle("ordered", c.handle)
		startDispatcher(t, d)
	}
	waitFor(t, "all delivered", func() bool { return b.count(t, "status = 'COMPLETED'") == keys*perKey+unkeyed })
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) > 0 {
		t.Fatalf("ordering violated %d times, first: %s", len(c.errs), c.errs[0])
	}
	for k := range keys {
		if got := c.last[fmt.Sprintf("k%02d", k)]; got != perKey {
			t.Fatalf("key k%02d ended at seq %d, want %d", k, got, perKey)
		}
	}
	if n := c.n.Load(); n != keys*perKey+unkeyed {
		t.Fatalf("handled %d, want %d (exactly once without crashes)", n, keys*perKey+unkeyed)
	}
}

func TestOrderingBlocksBehindRetriesAndFailures(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "strict", "strict", "h")
	if _, err := b.ob.Subscribe(ctx, Subscription{Name: "lenient", TopicPattern: "lenient", CallbackMethod: "h",
		Config: subconfig.Config{SkipFailed: true}}); err != nil {
		t.Fatal(err)
	}
	d, _ := b.ob.NewDispatcher(fastConfig())
	var mu sync.Mutex
	var seen []string
	poison := map[string]bool{"strict/1": true, "lenient/1": true}
	d.Handle("h", func(_ context.Context, dl *Delivery) error {
		var p seqPayload
		_ = json.Unmarshal(dl.Payload, &p)
		id := fmt.Sprintf("%s/%d", dl.Topic, p.Seq)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, id)
		if poison[id] {
			return errors.New("poison")
		}
		return nil
	})
	seenHas := func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seen {
			if s == id {
				return true
			}
		}
		return false
	}
	first := b.enqueue(t, "strict", seqPayload{Seq: 1}, &EnqueueOptions{OrderingKey: "K", MaxRetries: intPtr(1)})
	b.enqueue(t, "strict", seqPayload{Seq: 2}, &EnqueueOptions{OrderingKey: "K"})
	b.enqueue(t, "strict", seqPayload{Seq: 3}, &EnqueueOptions{OrderingKey: "other"})
	b.enqueue(t, "lenient", seqPayload{Seq: 1}, &EnqueueOptions{OrderingKey: "K", MaxRetries: intPtr(0)})
	b.enqueue(t, "lenient", seqPayload{Seq: 2}, &EnqueueOptions{OrderingKey: "K"})
	startDispatcher(t, d)
	waitFor(t, "other key and the first attempt", func() bool { return seenHas("strict/3") && seenHas("strict/1") })
	waitFor(t, "retry scheduled", func() bool { return b.count(t, "topic = 'strict' AND status = 'PENDING' AND retry_count = 1") == 1 })
	// The lenient subscription moves past its FAILED row, and only then.
	waitFor(t, "lenient key moves on", func() bool { return seenHas("lenient/2") })
	mu.Lock()
	l1, l2 := slices.Index(seen, "lenient/1"), slices.Index(seen, "lenient/2")
	mu.Unlock()
	if l1 < 0 || l1 > l2 {
		t.Fatalf("lenient/2 ran before lenient/1 had failed: %v", seen)
	}
	if n := b.count(t, "topic = 'lenient' AND status = 'FAILED'"); n != 1 {
		t.Fatalf("lenient FAILED rows = %d, want 1 (the one skipped past)", n)
	}
	if seenHas("strict/2") {
		t.Fatal("strict/2 overtook strict/1 while it waited for a retry")
	}
	b.clock.Advance(time.Hour)
	waitFor(t, "strict/1 failed for good", func() bool { return b.count(t, "topic = 'strict' AND status = 'FAILED'") == 1 })
	st, err := b.ob.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.BlockedKeys != 1 || st.OldestBlockedAge <= 0 {
		t.Fatalf("stats: blocked keys %d, oldest %s; want 1 blocked key", st.BlockedKeys, st.OldestBlockedAge)
	}
	if seenHas("strict/2") {
		t.Fatal("strict/2 overtook a FAILED strict/1")
	}
	// Re-driving the dead row unblocks the key, in order.
	mu.Lock()
	delete(poison, "strict/1")
	mu.Unlock()
	failed, err := b.ob.ListFailed(ctx, FailedFilter{Subscription: "strict"})
	if err != nil || len(failed) != 1 || failed[0].EventID != first.EventID {
		t.Fatalf("ListFailed = %+v, %v", failed, err)
	}
	if _, err := b.ob.RetryFailed(ctx, failed[0].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "strict/2 after strict/1", func() bool { return seenHas("strict/2") })
	mu.Lock()
	defer mu.Unlock()
	var order []string
	for _, s := range seen {
		if s == "strict/1" || s == "strict/2" {
			order = append(order, s)
		}
	}
	if fmt.Sprint(order) != "[strict/1 strict/1 strict/1 strict/2]" {
		t.Fatalf("strict key delivery order = %v", order)
	}
}

func TestOrderingLateCommitIsNeverSkipped(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "s", "#", "s")
	// Transaction A enqueues first but commits last.
	txA, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback() //nolint:errcheck
	if _, err := b.ob.Enqueue(ctx, txA, "x", seqPayload{Key: "K", Seq: 1}, &EnqueueOptions{OrderingKey: "K"}); err != nil {
		t.Fatal(err)
	}
	b.enqueue(t, "x", seqPayload{Key: "K", Seq: 2}, &EnqueueOptions{OrderingKey: "K"})
	d, _ := b.ob.NewDispatcher(fastConfig())
	started := make(chan int, 2)
	release := make(chan struct{})
	var inflight, overlap atomic.Int32
	d.Handle("s", func(_ context.Context, dl *Delivery) error {
		if inflight.Add(1) > 1 {
			overlap.Add(1)
		}
		defer inflight.Add(-1)
		var p seqPayload
		_ = json.Unmarshal(dl.Payload, &p)
		started <- p.Seq
		if p.Seq == 2 {
			<-release
		}
		return nil
	})
	startDispatcher(t, d)
	if got := testutil.Recv(t, started); got != 2 {
		t.Fatalf("first delivery = seq %d, want 2 (the only visible row)", got)
	}
	// A commits while B's row of the same key is running: A must wait.
	if err := txA.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-started:
		t.Fatalf("seq %d started while seq 2 of the same key was running", s)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if got := testutil.Recv(t, started); got != 1 {
		t.Fatalf("late-committed row: got seq %d, want 1", got)
	}
	waitFor(t, "both completed", func() bool { return b.count(t, "status = 'COMPLETED'") == 2 })
	if overlap.Load() != 0 {
		t.Fatal("two rows of one key ran at once")
	}
}

func TestIdempotentEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "a", "#", "a")
	first := b.enqueue(t, "x", 1, &EnqueueOptions{IdempotencyKey: "order-42-created"})
	if first.Duplicate || first.Deliveries != 1 {
		t.Fatalf("first = %+v", first)
	}
	again := b.enqueue(t, "x", 2, &EnqueueOptions{IdempotencyKey: "order-42-created"})
	if !again.Duplicate || again.EventID != first.EventID || again.Deliveries != 0 {
		t.Fatalf("second = %+v, want duplicate of %v", again, first.EventID)
	}
	// Within one transaction, and in a batch (inside the batch and against stored events).
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := b.ob.Enqueue(ctx, tx, "x", 1, &EnqueueOptions{IdempotencyKey: "k-tx"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.ob.Enqueue(ctx, tx, "x", 1, &EnqueueOptions{IdempotencyKey: "k-tx"})
	if err != nil || !r2.Duplicate || r2.EventID != r1.EventID {
		t.Fatalf("same tx duplicate = %+v, %v", r2, err)
	}
	res, err := b.ob.EnqueueBatch(ctx, tx, []Event{
		{Topic: "x", Payload: 1, Options: &EnqueueOptions{IdempotencyKey: "b1"}},
		{Topic: "x", Payload: 2, Options: &EnqueueOptions{IdempotencyKey: "b1"}},
		{Topic: "x", Payload: 3, Options: &EnqueueOptions{IdempotencyKey: "order-42-created"}},
		{Topic: "x", Payload: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Duplicate || !res[1].Duplicate || res[1].EventID != res[0].EventID ||
		!res[2].Duplicate || res[2].EventID != first.EventID || res[3].Duplicate || res[3].Deliveries != 1 {
		t.Fatalf("batch results = %+v", res)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".system_event`); n != 4 {
		t.Fatalf("events = %d, want 4", n)
	}
	if n := b.count(t, "true"); n != 4 {
		t.Fatalf("queue rows = %d, want 4", n)
	}
	// An empty key is no key: the event is enqueued, not deduplicated.
	if r, err := b.ob.Enqueue(ctx, b.db, "x", 1, &EnqueueOptions{IdempotencyKey: ""}); err != nil || r.Duplicate {
		t.Fatalf("empty key: %+v, %v", r, err)
	}
}

func TestIdempotentEnqueueRace(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "a", "#", "a")
	for round, commitFirst := range []bool{true, false} {
		key := fmt.Sprintf("race-%d", round)
		tx1, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		r1, err := b.ob.Enqueue(ctx, tx1, "x", 1, &EnqueueOptions{IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		// tx2 blocks on tx1's uncommitted key until tx1 ends.
		done := make(chan EnqueueResult, 1)
		errc := make(chan error, 1)
		pid2 := make(chan int, 1)
		go func() {
			tx2, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				errc <- err
				return
			}
			var pid int
			if err := tx2.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				_ = tx2.Rollback()
				errc <- err
				return
			}
			pid2 <- pid
			r2, err := b.ob.Enqueue(ctx, tx2, "x", 2, &EnqueueOptions{IdempotencyKey: key})
			if err != nil {
				_ = tx2.Rollback()
				errc <- err
				return
			}
			errc <- tx2.Commit()
			done <- r2
		}()
		var pid int
		select {
		case pid = <-pid2:
		case err := <-errc:
			t.Fatalf("tx2: %v", err)
		}
		waitFor(t, "tx2 to wait on tx1's key", func() bool {
			return countRows(t, b.db, `SELECT cardinality(pg_blocking_pids($1))`, pid) > 0
		})
		if commitFirst {
			err = tx1.Commit()
		} else {
			err = tx1.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("round %d: racing transaction failed: %v", round, err)
		}
		r2 := <-done
		if commitFirst && (!r2.Duplicate || r2.EventID != r1.EventID) {
			t.Fatalf("after commit: %+v, want duplicate of %v", r2, r1.EventID)
		}
		if !commitFirst && (r2.Duplicate || r2.EventID == r1.EventID) {
			t.Fatalf("after rollback: %+v, want a new event", r2)
		}
		if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".system_event WHERE idempotency_key = $1`, key); n != 1 {
			t.Fatalf("round %d: %d events with the key, want 1", round, n)
		}
	}
}
