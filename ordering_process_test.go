package outbox

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/pgtest"
)

// TestOrderingAcrossProcesses runs 4 dispatcher processes over interleaved
// keys: per key, the handlers must see a strictly increasing sequence number.
func TestOrderingAcrossProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	deliveryTable(t, b)
	b.subscribe(t, "ord", "ord.#", "record")
	const keys = 50
	perKey := scaled(20)
	// Interleave keys in runs: each transaction holds the next 5 rows of
	// every key, so rows of one key sit side by side in claim order and a
	// claim without the ordering rule would take several of them at once.
	const run = 5
	for first := 1; first <= perKey; first += run {
		events := make([]Event, 0, keys*run)
		for k := range keys {
			key := fmt.Sprintf("acct-%02d", k)
			for seq := first; seq < first+run && seq <= perKey; seq++ {
				events = append(events, Event{Topic: "ord.x", Payload: seqPayload{Key: key, Seq: seq},
					Options: &EnqueueOptions{OrderingKey: key}})
			}
		}
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.ob.EnqueueBatch(ctx, tx, events); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	bin := buildWorker(t)
	const procs, conns = 4, 2
	pgtest.ReserveConns(t, procs*workerConns(conns))
	var ws []*proc
	for i := range procs {
		name := fmt.Sprintf("o%d", i+1)
		// A short handler delay widens the window in which a second row of a
		// key could be claimed by another process.
		// No worker dies here: the product's default lease, so that a loaded
		// machine's stall does not hand running rows to another process.
		ws = append(ws, startWorker(t, bin, b, name, "ord_"+b.schema+"_"+name,
			"-workers", "8", "-batch", "20", "-max-conns", strconv.Itoa(conns), "-delay", "5ms", "-lease", defaultLease.String()))
	}
	total := int64(keys * perKey)
	waitUntil(t, 120*time.Second, "every row COMPLETED", func() bool {
		return b.count(t, "status = 'COMPLETED'") == total
	}, func() string { return b.statusCounts(t) })
	for _, w := range ws {
		w.stop(t, 15*time.Second)
	}
	requireConnections(t, ws...)
	requireLeasesKept(t, ws...)
	// Deliveries in the order the handlers started them (rel_delivery.id is a
	// sequence taken at the start of each handler).
	rows, err := b.db.QueryContext(ctx, `SELECT q.payload->>'key', (q.payload->>'seq')::int, d.worker, d.at
		FROM "`+b.schema+`".rel_delivery d JOIN "`+b.schema+`".event_queue q ON q.id = d.queue_id ORDER BY d.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	last := map[string]int{}
	lastAt := map[string]time.Time{}
	workers := map[string]map[string]bool{}
	var n int64
	for rows.Next() {
		var key, worker string
		var seq int
		var at time.Time
		if err := rows.Scan(&key, &seq, &worker, &at); err != nil {
			t.Fatal(err)
		}
		if seq != last[key]+1 {
			t.Fatalf("key %s: seq %d delivered after %d", key, seq, last[key])
		}
		// The handler holds each row 5 ms after recording it, and the next
		// row of the key cannot be claimed before that row's outcome is
		// written: two starts closer than that mean two rows ran at once.
		if prev, ok := lastAt[key]; ok && at.Sub(prev) < 5*time.Millisecond {
			t.Fatalf("key %s: seq %d started %s after seq %d: the two overlapped", key, seq, at.Sub(prev), seq-1)
		}
		last[key], lastAt[key] = seq, at
		if workers[key] == nil {
			workers[key] = map[string]bool{}
		}
		workers[key][worker] = true
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != total {
		t.Fatalf("%d deliveries, want %d (exactly once)", n, total)
	}
	spread := 0
	for _, w := range workers {
		if len(w) > 1 {
			spread++
		}
	}
	if spread == 0 {
		t.Fatal("no key was served by more than one process: the test proves nothing")
	}
	t.Logf("ordering: %d keys x %d events through 4 processes; %d keys served by several processes; order held", keys, perKey, spread)
}
