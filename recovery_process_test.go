package outbox

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
)

// Crash recovery keeps a row's place in line (issue 13): a worker process
// is SIGKILLed while it holds keyed rows, with a backlog far larger than
// the rows in flight, and a second process takes over. A key whose row was
// in flight at the kill must get its next delivery about one lease and one
// rescue interval after the kill (or after the second process started, if
// that was later), plus the time the second process needs for a few claims
// of deliveries, however long the backlog: the rescued row resumes where it
// stood instead of queueing behind every row enqueued after it (which
// per-key ordering would hold its whole key behind).
//
// The bound is measured against what the second process did in the same
// run, not a constant: its start (from the kill to its first delivery of
// any row) and its time per delivery while the keys stalled (from its first
// delivery to the last key's resumption, over the deliveries it made in
// that time, across its workers). A loaded machine slows both, and the
// bound with them; a rescued row sent to the back of the line would wait
// for the whole remaining backlog, thousands of deliveries at that pace,
// against the stallDeliveries the bound allows.

const (
	stallKeys   = 100
	stallLease  = time.Second
	stallRescue = 300 * time.Millisecond
	// stallTxRows is how many events one enqueue transaction commits. They
	// share a due time (created_at is the transaction's), and among them
	// the rescued row has no earlier place than the others: up to that many
	// may be claimed before it.
	stallTxRows = 100
	// stallDeliveries is how many of the second process's deliveries, at
	// its measured time per delivery, the bound allows beyond the lease and
	// the rescue interval: the rows that share the rescued row's due time,
	// and 200 more for the claims that take it (one every half batch of
	// freed workers, 16 rows a batch) with the rescue's and the claims' own
	// statements. The backlog behind the rescued rows is about 18,000
	// deliveries at 20,000 events, the case that tells; at 2,000 a quiet
	// machine drains most of it during the lease.
	stallDeliveries = stallTxRows + 200
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
	enqueueKeyed(t, b.ob, "stall.x", stallKeys, backlog, stallTxRows)
	b.analyzeQueue(t)
	state := func() string { return b.statusCounts(t) }
	// The workers commit without waiting for the WAL flush: only the worker
	// process crashes here, never the server, and a drain in which each
	// recorded delivery waits for its own fsync takes far longer.
	// w1's lease is the one under test. w2's own is long: a loaded
	// machine may stall for longer than stallLease, and w2 losing rows it
	// runs is not what the test is about.
	args := func(app string, lease time.Duration) []string {
		return []string{"-dsn", dsnApp(app) + "&synchronous_commit=off",
			"-workers", "16", "-batch", "16", "-delay", "2ms", "-max-conns", "6",
			"-lease", lease.String(), "-rescue", stallRescue.String()}
	}

	// w1's backends may outlive it for a moment while w2 starts.
	pgtest.ReserveConns(t, 2*workerConns(6))
	app1 := "stall_" + b.schema + "_w1"
	w1 := startWorker(t, bin, b, "w1", app1, args(app1, stallLease)...)
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
	w2 := startWorker(t, bin, b, "w2", app2, args(app2, defaultLease)...)
	waitUntil(t, 180*time.Second, "every row COMPLETED after the kill", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(backlog)
	}, state)
	w2.stop(t, 15*time.Second)
	requireConnections(t, w1, w2)
	requireLeasesKept(t, w1)

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
	for id, n := range b.duplicatesIn(t, "rel_delivery") {
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
	var w2At []time.Time // the start of each of w2's deliveries
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
		w2At = append(w2At, at)
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

	// What w2 did: its start, from the kill to its first delivery (process
	// start, connections, first claim), and its time per delivery while the
	// keys stalled (across its 16 workers, so a fraction of one handler's
	// time).
	sort.Slice(w2At, func(i, j int) bool { return w2At[i].Before(w2At[j]) })
	start := w2At[0].Sub(killedAt)
	window := killedAt.Add(maxStall).Sub(w2At[0])
	inWindow := sort.Search(len(w2At), func(i int) bool { return w2At[i].After(killedAt.Add(maxStall)) })
	perDelivery := window / time.Duration(max(1, inWindow-1))
	// The rescue can only run once the lease has expired and w2 runs, and
	// runs within a rescue interval of both.
	bound := testutil.Bound{}
	if start > stallLease {
		bound = bound.Plus("second worker's start", start)
	} else {
		bound = bound.Plus("lease", stallLease)
	}
	bound = bound.Plus("rescue interval", stallRescue).PlusTimes(stallDeliveries, "second worker's time per delivery", perDelivery)
	t.Logf("backlog %d, %d keys: %d rows in flight at the kill (%d keys); second worker: first delivery %s after the kill, then %d deliveries in %s while keys stalled (%s each), %d in all; stall of those keys from the kill to their next delivery: min %s, median %s, max %s (key %s, after %d deliveries of other keys by the second worker)",
		backlog, stallKeys, len(rescued), len(stalls), start.Round(time.Millisecond), inWindow, window.Round(time.Millisecond), perDelivery.Round(time.Microsecond), w2Deliveries,
		stalls[0].Round(time.Millisecond), stalls[len(stalls)/2].Round(time.Millisecond), maxStall.Round(time.Millisecond), worst, worstBefore)
	if !testutil.Within(t, fmt.Sprintf("backlog %d: longest stall of a key in flight at the kill (key %s, %d deliveries of other keys went first)", backlog, worst, worstBefore), maxStall, bound) {
		t.FailNow()
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
// perTx events.
func enqueueKeyed(t testing.TB, ob *Outbox, topic string, keys, n, perTx int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; {
		m := min(perTx, n-i)
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
