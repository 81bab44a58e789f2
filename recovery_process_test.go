package outbox

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/pgtest"
)

// Crash recovery keeps a row's place in line (issue 13): a worker process
// is SIGKILLed while it holds keyed rows, with a backlog far larger than
// the rows in flight, and a second process takes over. A key whose row was
// in flight at the kill must get its next delivery within about one lease
// and one rescue interval of the kill, however long the backlog: the
// rescued row resumes where it stood instead of queueing behind every row
// enqueued after it (which per-key ordering would hold its whole key
// behind).

const (
	stallKeys   = 100
	stallLease  = time.Second
	stallRescue = 300 * time.Millisecond
	// stallSlack covers what is neither lease nor rescue interval: the
	// second process's start, the claim that takes the rescued row, the
	// handler recording its delivery, a loaded machine.
	stallSlack = 3 * time.Second
)

func TestRecoveryKill9KeyStall(t *testing.T) {
	t.Parallel()
	bin := buildWorker(t)
	for _, backlog := range []int{2000, 20000} {
		t.Run(fmt.Sprintf("backlog_%d", backlog), func(t *testing.T) { keyStallAfterKill(t, bin, backlog) })
	}
}

// keyStallAfterKill enqueues backlog keyed events, kills the worker that
// drains them mid-drain, lets a second worker finish, and measures, for
// every key that had a row in flight at the kill, the time from the kill to
// the key's next delivery.
func keyStallAfterKill(t *testing.T, bin string, backlog int) {
	b := setup(t, nil)
	deliveryTable(t, b)
	b.subscribe(t, "stall", "stall.#", "record")
	enqueueKeyed(t, b.ob, "stall.x", stallKeys, backlog)
	state := func() string { return b.statusCounts(t) }
	// The workers commit without waiting for the WAL flush: only the worker
	// process crashes here, never the server, and a drain in which each
	// recorded delivery waits for its own fsync takes far longer.
	args := func(app string) []string {
		return []string{"-dsn", dsnApp(app) + "&synchronous_commit=off",
			"-workers", "16", "-batch", "16", "-delay", "2ms", "-max-conns", "6",
			"-lease", stallLease.String(), "-rescue", stallRescue.String()}
	}

	// w1's backends may outlive it for a moment while w2 starts.
	pgtest.ReserveConns(t, 2*workerConns(6))
	app1 := "stall_" + b.schema + "_w1"
	w1 := startWorker(t, bin, b, "w1", app1, args(app1)...)
	waitUntil(t, 90*time.Second, "rows PROCESSING and a tenth of the events delivered", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) >= int64(backlog/10) &&
			b.count(t, "status = 'PROCESSING'") > 0
	}, state)
	// The kill's time on the database's clock, which also stamps the
	// deliveries (rel_delivery.at).
	var killedAt time.Time
	if err := b.db.QueryRow(`SELECT clock_timestamp()`).Scan(&killedAt); err != nil {
		t.Fatal(err)
	}
	w1.kill(t)
	app2 := "stall_" + b.schema + "_w2"
	w2 := startWorker(t, bin, b, "w2", app2, args(app2)...)
	waitUntil(t, 180*time.Second, "every row COMPLETED after the kill", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(backlog)
	}, state)
	w2.stop(t, 15*time.Second)
	requireConnections(t, w1, w2)

	// Nothing lost; duplicates only of rows in flight at the kill, which
	// are exactly the rows rescued after w1's lease.
	b.checkEveryRowDelivered(t, backlog)
	rescued := b.queueIDs(t, "failure_reason LIKE 'lease expired: dispatcher w1/%' AND retry_count = 1")
	if len(rescued) == 0 {
		t.Fatalf("no row of w1 was rescued: the kill hit no batch (%s)", state())
	}
	if r := b.count(t, "retry_count <> 0"); r != int64(len(rescued)) {
		t.Fatalf("%d rows with an attempt counted, want the %d rescued", r, len(rescued))
	}
	for id, n := range b.duplicates(t) {
		if !rescued[id] || n != 2 {
			t.Errorf("row %s delivered %d times (rescued: %v)", id, n, rescued[id])
		}
	}

	// Per key, in the order the handlers started: sequence numbers never go
	// back (a rescued row is delivered twice in a row), and for each key of
	// a rescued row, the first delivery by w2 is that row, and its stall.
	rows, err := b.db.QueryContext(ctxT(t), `SELECT q.id, q.ordering_key, (q.payload->>'seq')::int, d.worker, d.at
		FROM "`+b.schema+`".rel_delivery d JOIN "`+b.schema+`".event_queue q ON q.id = d.queue_id ORDER BY d.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type keyState struct {
		last       int
		rescued    bool      // a row of this key was in flight at the kill
		resumedAt  time.Time // the key's first delivery by w2
		resumedRow bool      // that delivery was the rescued row
		before     int       // w2's deliveries of other keys before it
	}
	keys := map[string]*keyState{}
	w2Deliveries := 0
	for rows.Next() {
		var id uuid.UUID
		var key, worker string
		var seq int
		var at time.Time
		if err := rows.Scan(&id, &key, &seq, &worker, &at); err != nil {
			t.Fatal(err)
		}
		ks := keys[key]
		if ks == nil {
			ks = &keyState{}
			keys[key] = ks
		}
		if seq != ks.last && seq != ks.last+1 {
			t.Fatalf("key %s: seq %d delivered after %d", key, seq, ks.last)
		}
		ks.last = seq
		if worker != "w2" {
			continue
		}
		if ks.resumedAt.IsZero() {
			ks.resumedAt, ks.before = at, w2Deliveries
			ks.resumedRow = rescued[id]
		}
		w2Deliveries++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, key := range b.rescuedKeys(t) {
		keys[key].rescued = true
	}

	bound := stallLease + stallRescue + stallSlack
	var stalls []time.Duration
	var maxStall time.Duration
	var worst string
	var worstBefore int
	for key, ks := range keys {
		if !ks.rescued {
			continue
		}
		if !ks.resumedRow {
			t.Errorf("key %s: w2's first delivery was not its rescued row", key)
		}
		stall := ks.resumedAt.Sub(killedAt)
		stalls = append(stalls, stall)
		if stall > maxStall {
			maxStall, worst, worstBefore = stall, key, ks.before
		}
	}
	sort.Slice(stalls, func(i, j int) bool { return stalls[i] < stalls[j] })
	t.Logf("backlog %d, %d keys: %d rows in flight at the kill (%d keys); stall of those keys from the kill to their next delivery: min %s, median %s, max %s (key %s, after %d deliveries of other keys by the second worker); bound %s (lease %s + rescue interval %s + %s)",
		backlog, stallKeys, len(rescued), len(stalls), stalls[0].Round(time.Millisecond), stalls[len(stalls)/2].Round(time.Millisecond),
		maxStall.Round(time.Millisecond), worst, worstBefore, bound, stallLease, stallRescue, stallSlack)
	if maxStall > bound {
		t.Fatalf("key %s stalled %s after the kill (%d deliveries of other keys went first), want at most %s",
			worst, maxStall.Round(time.Millisecond), worstBefore, bound)
	}
}

// rescuedKeys returns the ordering keys of the rows rescued after w1's lease.
func (b *bundle) rescuedKeys(t testing.TB) []string {
	t.Helper()
	rows, err := b.db.Query(`SELECT DISTINCT ordering_key FROM "` + b.schema + `".event_queue
		WHERE failure_reason LIKE 'lease expired: dispatcher w1/%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// enqueueKeyed commits n events on topic over keys ordering keys, key
// i%keys getting payload {"key": ..., "seq": 1, 2, ...}, in transactions of
// 500 events.
func enqueueKeyed(t testing.TB, ob *Outbox, topic string, keys, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; {
		m := min(500, n-i)
		events := make([]Event, m)
		for j := range events {
			k := (i + j) % keys
			key := fmt.Sprintf("key-%03d", k)
			events[j] = keyedEvent(topic, seqPayload{Key: key, Seq: (i+j)/keys + 1}, key)
		}
		tx, err := ob.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ob.EnqueueBatch(ctx, tx, events); err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		i += m
	}
}

// keyedEvent is an Event with an ordering key.
func keyedEvent(topic string, payload any, key string) Event {
	return Event{Topic: topic, Payload: payload, Options: &EnqueueOptions{OrderingKey: key}}
}
