package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/store"
)

// order is the benchmark payload: the same JSON shape and size (~200 bytes)
// as the pgbench scripts' payload.
type order struct {
	OrderID    int64  `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Currency   string `json:"currency"`
	Items      []item `json:"items"`
	Source     string `json:"source"`
	Seq        int    `json:"seq,omitempty"`
	EnqueuedNS int64  `json:"enqueued_ns,omitempty"`
}

type item struct {
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	PriceCents int    `json:"price_cents"`
}

func newOrder(n int64) order {
	return order{OrderID: n, CustomerID: "cust-" + strconv.FormatInt(n, 10), Currency: "EUR",
		Items:  []item{{SKU: "SKU-" + strconv.FormatInt(n, 10), Qty: 2, PriceCents: 1999}, {SKU: "SKU-" + strconv.FormatInt(n, 10), Qty: 1, PriceCents: 4999}},
		Source: "checkout-service"}
}

const topic = "orders.created"

func (b *bench) pgbVars() []string {
	p, _ := json.Marshal(newOrder(123456789))
	var topics, payloads []string
	for range 100 {
		topics = append(topics, topic)
		payloads = append(payloads, string(p))
	}
	return []string{"-D", "topic=" + topic, "-D", "payload=" + string(p),
		"-D", "topics={" + strings.Join(topics, ",") + "}", "-D", "payloads=[" + strings.Join(payloads, ",") + "]",
		"-D", "methods={bench}", "-D", "webhooks=false", "-D", "limit=100", "-D", "token=pgbench/0000", "-D", "lease=30000000"}
}

func secs(d time.Duration) string { return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) }

// runEnqueue: one-event transactions at each concurrency, 1 and 5 matching
// subscriptions, each point right after pgbench runs Enqueue's statement (and
// the one-row INSERT baseline) at the same client count.
func (b *bench) runEnqueue(ctx context.Context) error {
	vars := b.pgbVars()
	for _, subs := range []int{1, 5} {
		if err := b.setSubs(ctx, subs); err != nil {
			return err
		}
		for _, c := range b.conc {
			sfx := fmt.Sprintf("%d sub, %d goroutines", subs, c)
			if err := b.reset(ctx); err != nil {
				return err
			}
			tps, err := b.pgbench(ctx, "lib_enqueue.sql", c, append([]string{"-T", secs(b.dur)}, vars...)...)
			if err != nil {
				return err
			}
			b.res.add("pgbench Enqueue statement, "+sfx, "tx/s", tps)
			if err := b.reset(ctx); err != nil {
				return err
			}
			eps, err := b.goEnqueue(ctx, b.ob, c, b.dur)
			if err != nil {
				return err
			}
			name := "enqueue, " + sfx
			b.res.add(name, "events/s", eps)
			target := 0.0
			if subs == 1 && c == 8 {
				target = 0.9
			}
			b.res.compare(name, "pgbench Enqueue statement, "+sfx, target)
			if subs == 1 && c == b.conc[len(b.conc)-1] {
				// The driver's own ceiling: database/sql and lib/pq sending
				// the same statement in the same transactions, no library
				// code (NOTIFY off on both sides of this comparison).
				if err := b.reset(ctx); err != nil {
					return err
				}
				raw, err := b.goRawEnqueue(ctx, c, b.dur)
				if err != nil {
					return err
				}
				rawName := "database/sql+lib/pq, Enqueue statement, " + sfx
				b.res.add(rawName, "events/s", raw)
				b.res.compare(rawName, "pgbench Enqueue statement, "+sfx, 0)
			}
			if subs == 1 {
				if err := b.reset(ctx); err != nil {
					return err
				}
				tps, err := b.pgbench(ctx, "enqueue.sql", c, "-T", secs(b.dur))
				if err != nil {
					return err
				}
				base := fmt.Sprintf("pgbench one-row INSERT tx, %d clients", c)
				b.res.add(base, "tx/s", tps)
				b.res.add(name+" vs one-row INSERT", "events/s", eps)
				b.res.compare(name+" vs one-row INSERT", base, 0)
			}
			b.log.Info("enqueue", "subs", subs, "conc", c, "events_per_s", eps)
		}
	}
	if err := b.setSubs(ctx, 1); err != nil {
		return err
	}
	// NOTIFY: the pgbench INSERT+NOTIFY limit, and Enqueue with NOTIFY off.
	c := b.conc[len(b.conc)-1]
	sfx := fmt.Sprintf("1 sub, %d goroutines", c)
	if err := b.reset(ctx); err != nil {
		return err
	}
	tps, err := b.pgbench(ctx, "enqueue_notify.sql", c, "-T", secs(b.dur))
	if err != nil {
		return err
	}
	b.res.add(fmt.Sprintf("pgbench INSERT+NOTIFY tx, %d clients", c), "tx/s", tps)
	if err := b.reset(ctx); err != nil {
		return err
	}
	eps, err := b.goEnqueue(ctx, b.obNoNotify, c, b.dur)
	if err != nil {
		return err
	}
	b.res.add("enqueue NOTIFY off, "+sfx, "events/s", eps)
	b.res.compare("enqueue NOTIFY off, "+sfx, "pgbench Enqueue statement, "+sfx, 0)
	return nil
}

// goEnqueue runs conc goroutines of BEGIN, Enqueue, COMMIT for dur (after a
// short warm-up) and returns events per second.
func (b *bench) goEnqueue(ctx context.Context, ob *outbox.Outbox, conc int, dur time.Duration) (float64, error) {
	return rate(conc, dur, func(g int) func() (int, error) {
		i := int64(g) << 40
		return func() (int, error) {
			i++
			return 1, enqueueTx(ctx, b.db, ob, newOrder(i))
		}
	})
}

// goRawEnqueue is goEnqueue without the library: BEGIN, Enqueue's statement
// (NOTIFY off) prepared on the pool and bound with what Enqueue binds (a
// UUIDv7 made in Go, the topic, the payload marshalled to JSON), COMMIT.
func (b *bench) goRawEnqueue(ctx context.Context, conc int, dur time.Duration) (float64, error) {
	st, err := b.db.PrepareContext(ctx, store.Render(b.schema, fmt.Sprintf(store.EnqueueOne, "NULL::text")))
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return rate(conc, dur, func(g int) func() (int, error) {
		i := int64(g) << 40
		return func() (int, error) {
			i++
			payload, err := json.Marshal(newOrder(i))
			if err != nil {
				return 0, err
			}
			tx, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				return 0, err
			}
			var rows, inserted int
			var notified sql.NullString
			err = tx.StmtContext(ctx, st).QueryRowContext(ctx, uuid.Must(uuid.NewV7()), topic, payload,
				nil, nil, nil, nil, nil, nil, nil).Scan(&rows, &inserted, &notified)
			if err != nil {
				_ = tx.Rollback()
				return 0, err
			}
			return 1, tx.Commit()
		}
	})
}

// rate runs conc goroutines, each calling the step newStep made for it until
// stopped or until a step fails; after a 300 ms warm-up it counts the units
// the steps report for dur, and returns units per second.
func rate(conc int, dur time.Duration, newStep func(g int) func() (int, error)) (float64, error) {
	var n atomic.Int64
	var firstErr error
	var errOnce sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range conc {
		wg.Add(1)
		step := newStep(g)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				k, err := step()
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				n.Add(int64(k))
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	n0, t0 := n.Load(), time.Now()
	time.Sleep(dur)
	n1, t1 := n.Load(), time.Now()
	close(stop)
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n1-n0) / t1.Sub(t0).Seconds(), nil
}

func enqueueTx(ctx context.Context, db *sql.DB, ob *outbox.Outbox, payload any) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := ob.Enqueue(ctx, tx, topic, payload, nil); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// runBatch: EnqueueBatch of 100 events per call (one statement, autocommit,
// like the pgbench script) at 1 and 2 concurrent callers.
func (b *bench) runBatch(ctx context.Context) error {
	vars := b.pgbVars()
	for _, c := range []int{1, 2} {
		sfx := fmt.Sprintf("%d clients", c)
		if err := b.reset(ctx); err != nil {
			return err
		}
		tps, err := b.pgbench(ctx, "enqueue_batch100.sql", c, "-T", secs(b.dur))
		if err != nil {
			return err
		}
		base := "pgbench 100-row batch INSERT, " + sfx
		b.res.add(base, "rows/s", tps*100)
		if err := b.reset(ctx); err != nil {
			return err
		}
		tps, err = b.pgbench(ctx, "lib_batch100.sql", c, append([]string{"-T", secs(b.dur)}, vars...)...)
		if err != nil {
			return err
		}
		lib := "pgbench EnqueueBatch statement x100, " + sfx
		b.res.add(lib, "rows/s", tps*100)
		if err := b.reset(ctx); err != nil {
			return err
		}
		eps, err := b.goBatch(ctx, c, 100, b.dur)
		if err != nil {
			return err
		}
		name := "EnqueueBatch x100, " + sfx
		b.res.add(name, "events/s", eps)
		b.res.compare(name, base, 0.8)
		b.res.add(name+" vs same statement", "events/s", eps)
		b.res.compare(name+" vs same statement", lib, 0)
		b.log.Info("batch", "conc", c, "events_per_s", eps)
	}
	return nil
}

func (b *bench) goBatch(ctx context.Context, conc, size int, dur time.Duration) (float64, error) {
	return rate(conc, dur, func(g int) func() (int, error) {
		i := int64(g) << 40
		events := make([]outbox.Event, size)
		return func() (int, error) {
			for k := range events {
				i++
				events[k] = outbox.Event{Topic: topic, Payload: newOrder(i)}
			}
			_, err := b.ob.EnqueueBatch(ctx, b.db, events)
			return size, err
		}
	})
}

// prefill enqueues rows events (one queue row each: only s1 is active)
// through EnqueueBatch, 1000 per call, then vacuums and checkpoints.
func (b *bench) prefill(ctx context.Context, rows int) error { return b.prefillKeys(ctx, rows, 0) }

// prefillKeys is prefill with ordering keys: event i gets key i mod keys
// (keys interleaved in enqueue order); keys 0 means no key.
func (b *bench) prefillKeys(ctx context.Context, rows, keys int) error {
	if err := b.reset(ctx); err != nil {
		return err
	}
	const per = 1000
	work := make(chan int, 4)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var events []outbox.Event
			for start := range work {
				events = events[:0]
				for i := start; i < min(start+per, rows); i++ {
					ev := outbox.Event{Topic: topic, Payload: newOrder(int64(i))}
					if keys > 0 {
						ev.Options = &outbox.EnqueueOptions{OrderingKey: fmt.Sprintf("account-%d", i%keys)}
					}
					events = append(events, ev)
				}
				if _, err := b.ob.EnqueueBatch(ctx, b.db, events); err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for start := 0; start < rows; start += per {
		work <- start
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return b.vacuum(ctx)
}

func (b *bench) prefillBase(ctx context.Context, rows int) error {
	// One simple-protocol query: the SET and RESET apply to this session only.
	_, err := b.db.ExecContext(ctx, `SET search_path TO "`+b.baseSchema+`"; `+withPayload(fmt.Sprintf(basePrefill, rows, rows))+`; RESET search_path`)
	if err != nil {
		return err
	}
	return b.vacuum(ctx)
}

// runDrain: pgbench's two-transaction drain of the baseline table (1 and 2
// clients), pgbench running the dispatcher's own claim and outcome
// statements, then the dispatcher draining the same backlog to a no-op
// Handle and to a HandleTx handler.
func (b *bench) runDrain(ctx context.Context) error {
	rows := b.drainRows
	for _, c := range []int{1, 2} {
		if err := b.prefillBase(ctx, rows); err != nil {
			return err
		}
		tps, err := b.pgbench(ctx, "drain_2tx.sql", c, "-t", strconv.Itoa(rows/100/c))
		if err != nil {
			return err
		}
		b.res.add(fmt.Sprintf("pgbench drain_2tx, %d clients", c), "rows/s", tps*100)
	}
	if err := b.prefill(ctx, rows); err != nil {
		return err
	}
	tps, err := b.pgbench(ctx, "lib_drain_2tx.sql", 1, append([]string{"-t", strconv.Itoa(rows / 100)}, b.pgbVars()...)...)
	if err != nil {
		return err
	}
	b.res.add("pgbench claim+outcome statements, 1 client", "rows/s", tps*100)
	if err := b.prefill(ctx, rows); err != nil {
		return err
	}
	m, err := b.goDrain(ctx, rows, false, true)
	if err != nil {
		return err
	}
	name := "drain to no-op Handle"
	b.res.add(name, "events/s", m.eps)
	b.res.compare(name, "pgbench drain_2tx, 1 clients", 0.6)
	b.res.add(name+" vs 2 clients", "events/s", m.eps)
	b.res.compare(name+" vs 2 clients", "pgbench drain_2tx, 2 clients", 0)
	b.res.add(name+" vs its statements", "events/s", m.eps)
	b.res.compare(name+" vs its statements", "pgbench claim+outcome statements, 1 client", 0)
	b.res.add("cost: allocs per delivered event", "allocs", m.allocs)
	b.res.add("cost: bytes per delivered event", "B", m.bytes)
	b.res.add("cost: round trips per delivered event", "trips", m.trips)
	b.res.add("cost: dispatcher peak heap in use", "MiB", m.peakHeap)
	b.res.add("cost: heap in use, 2nd quarter of drain", "MiB", m.heapQ2)
	b.res.add("cost: heap in use, last quarter of drain", "MiB", m.heapQ4)
	if err := b.prefill(ctx, b.drainTxRows); err != nil {
		return err
	}
	m, err = b.goDrain(ctx, b.drainTxRows, true, false)
	if err != nil {
		return err
	}
	b.res.add("drain to HandleTx handler", "events/s", m.eps)
	b.res.compare("drain to HandleTx handler", "pgbench drain_2tx, 1 clients", 0)
	return nil
}

// runOrdering drains the same backlog without and with ordering keys
// (issue 6: with 10,000 keys over 100,000 rows, at least half the rate).
func (b *bench) runOrdering(ctx context.Context) error {
	rows, keys := b.orderedRows, b.orderedKeys
	if err := b.prefill(ctx, rows); err != nil {
		return err
	}
	m, err := b.goDrain(ctx, rows, false, false)
	if err != nil {
		return err
	}
	plain := fmt.Sprintf("drain %d rows, no ordering keys", rows)
	b.res.add(plain, "events/s", m.eps)
	if err := b.prefillKeys(ctx, rows, keys); err != nil {
		return err
	}
	if m, err = b.goDrain(ctx, rows, false, false); err != nil {
		return err
	}
	keyed := fmt.Sprintf("drain %d rows, %d ordering keys", rows, keys)
	b.res.add(keyed, "events/s", m.eps)
	b.res.compare(keyed, plain, 0.5)
	return nil
}

type drainMetrics struct {
	eps, allocs, bytes, trips, peakHeap, heapQ2, heapQ4 float64
}

// goDrain runs a default dispatcher over a backlog of rows and measures it
// until every row is delivered and its outcome written.
func (b *bench) goDrain(ctx context.Context, rows int, tx, sampleHeap bool) (drainMetrics, error) {
	var m drainMetrics
	d, err := b.ob.NewDispatcher(outbox.DispatcherConfig{Name: "outboxbench", Workers: b.workers, BatchSize: b.batchSize})
	if err != nil {
		return m, err
	}
	var n atomic.Int64
	done := make(chan struct{})
	count := func() {
		if n.Add(1) == int64(rows) {
			close(done)
		}
	}
	if tx {
		d.HandleTx("bench", func(context.Context, *sql.Tx, *outbox.Delivery) error { count(); return nil })
	} else {
		d.Handle("bench", func(context.Context, *outbox.Delivery) error { count(); return nil })
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	rt0 := roundTrips.Load()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var heap []float64
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if sampleHeap {
					runtime.ReadMemStats(&ms)
					heap = append(heap, float64(ms.HeapInuse)/(1<<20))
				}
			}
		}
	}()
	start := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	select {
	case <-done:
	case <-ctx.Done():
		return m, ctx.Err()
	case <-time.After(10 * time.Minute):
		return m, errIncomplete
	}
	cancel()
	if err := <-runErr; err != nil {
		return m, err
	}
	elapsed := time.Since(start)
	<-sampleDone
	runtime.ReadMemStats(&ms1)
	m.trips = float64(roundTrips.Load()-rt0) / float64(rows)
	var completed int
	if err := b.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM "%s".event_queue WHERE status = 'COMPLETED'`, b.schema)).Scan(&completed); err != nil {
		return m, err
	}
	if completed != rows {
		return m, fmt.Errorf("%w: %d of %d rows COMPLETED", errIncomplete, completed, rows)
	}
	m.eps = float64(rows) / elapsed.Seconds()
	m.allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(rows)
	m.bytes = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(rows)
	for _, h := range heap {
		m.peakHeap = max(m.peakHeap, h)
	}
	if q := len(heap) / 4; q > 0 {
		m.heapQ2 = mean(heap[q : 2*q])
		m.heapQ4 = mean(heap[len(heap)-q:])
	}
	b.log.Info("drain", "tx", tx, "rows", rows, "events_per_s", m.eps, "elapsed", elapsed, "heap_samples", len(heap))
	return m, nil
}

func mean(s []float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t / float64(len(s))
}

// runHeap drains -heap-rows rows once, sampling the heap (issue: 1,000,000).
func (b *bench) runHeap(ctx context.Context) error {
	if err := b.prefill(ctx, b.heapRows); err != nil {
		return err
	}
	m, err := b.goDrain(ctx, b.heapRows, false, true)
	if err != nil {
		return err
	}
	sfx := fmt.Sprintf(" (%d-row drain)", b.heapRows)
	b.res.add("drain to no-op Handle"+sfx, "events/s", m.eps)
	b.res.add("cost: dispatcher peak heap in use"+sfx, "MiB", m.peakHeap)
	b.res.add("cost: heap in use, 2nd quarter"+sfx, "MiB", m.heapQ2)
	b.res.add("cost: heap in use, last quarter"+sfx, "MiB", m.heapQ4)
	return nil
}

// runLatency offers latRate events/s for latDur through one-event
// transactions and measures commit → handler start (commit = when Commit
// returned) and enqueue → handler start (enqueue = before BEGIN), with
// LISTEN/NOTIFY at default settings and in poll-only mode.
func (b *bench) runLatency(ctx context.Context) error {
	modes := []struct {
		name string
		cfg  outbox.DispatcherConfig
	}{
		{"LISTEN/NOTIFY, defaults", outbox.DispatcherConfig{Name: "outboxbench", ListenDSN: b.dsn}},
		{"poll-only, default interval", outbox.DispatcherConfig{Name: "outboxbench", PollOnly: true}},
	}
	for _, mode := range modes {
		if err := b.reset(ctx); err != nil {
			return err
		}
		c, e, err := b.goLatency(ctx, mode.cfg)
		if err != nil {
			return err
		}
		for i, p := range []string{"p50", "p95", "p99"} {
			name := fmt.Sprintf("latency %s commit→handler, %s", p, mode.name)
			b.res.add(name, "ms", c[i])
			if mode.cfg.ListenDSN != "" && p == "p50" {
				b.res.ceiling(name, 3)
			}
			if mode.cfg.ListenDSN != "" && p == "p99" {
				b.res.ceiling(name, 6)
			}
		}
		for i, p := range []string{"p50", "p99"} {
			b.res.add(fmt.Sprintf("latency %s enqueue→handler, %s", p, mode.name), "ms", e[[]int{0, 2}[i]])
		}
	}
	return nil
}

func (b *bench) goLatency(ctx context.Context, cfg outbox.DispatcherConfig) (commit, enqueue [3]float64, err error) {
	total := int(float64(b.latRate) * b.latDur.Seconds())
	commitAt := make([]atomic.Int64, total)
	enqAt := make([]atomic.Int64, total)
	startAt := make([]atomic.Int64, total)
	base := time.Now()
	var handled atomic.Int64
	done := make(chan struct{})
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		return commit, enqueue, err
	}
	d.Handle("bench", func(_ context.Context, dl *outbox.Delivery) error {
		now := int64(time.Since(base))
		var o struct {
			Seq int `json:"seq"`
		}
		if err := json.Unmarshal(dl.Payload, &o); err != nil || o.Seq < 1 || o.Seq > total {
			return nil
		}
		startAt[o.Seq-1].CompareAndSwap(0, now)
		if handled.Add(1) == int64(total) {
			close(done)
		}
		return nil
	})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	time.Sleep(500 * time.Millisecond) // LISTEN established
	seqs := make(chan int, total)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range seqs {
				o := newOrder(int64(seq))
				o.Seq = seq
				enq := int64(time.Since(base))
				o.EnqueuedNS = enq
				enqAt[seq-1].Store(enq)
				if err := enqueueTx(ctx, b.db, b.ob, o); err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				commitAt[seq-1].Store(int64(time.Since(base)))
			}
		}()
	}
	interval := time.Second / time.Duration(b.latRate)
	t0 := time.Now()
	for i := 1; i <= total; i++ {
		if w := time.Until(t0.Add(time.Duration(i-1) * interval)); w > 0 {
			time.Sleep(w)
		}
		seqs <- i
	}
	close(seqs)
	wg.Wait()
	if firstErr != nil {
		return commit, enqueue, firstErr
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return commit, enqueue, fmt.Errorf("%w: %d of %d", errIncomplete, handled.Load(), total)
	}
	cancel()
	if err := <-runErr; err != nil {
		return commit, enqueue, err
	}
	var cl, el []float64
	negative := 0
	for i := range total {
		s := startAt[i].Load()
		c := s - commitAt[i].Load()
		if c < 0 {
			negative++ // the handler started before Commit returned to the enqueuer
			c = 0
		}
		cl = append(cl, float64(c)/1e6)
		el = append(el, float64(s-enqAt[i].Load())/1e6)
	}
	sort.Float64s(cl)
	sort.Float64s(el)
	for i, p := range []float64{50, 95, 99} {
		commit[i], enqueue[i] = percentile(cl, p), percentile(el, p)
	}
	b.log.Info("latency", "listen", cfg.ListenDSN != "", "events", total, "handler_before_commit_returned", negative,
		"commit_ms", commit, "enqueue_ms", enqueue)
	return commit, enqueue, nil
}

// runCost measures allocations per Enqueue (BEGIN+Enqueue+COMMIT minus
// BEGIN+COMMIT, one goroutine) and round trips per call on one connection.
func (b *bench) runCost(ctx context.Context) error {
	if err := b.reset(ctx); err != nil {
		return err
	}
	const k = 2000
	measure := func(fn func(i int) error) (allocs, bytes float64, err error) {
		for i := range 100 { // warm-up: statements prepared, pool filled
			if err := fn(i); err != nil {
				return 0, 0, err
			}
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for i := range k {
			if err := fn(i); err != nil {
				return 0, 0, err
			}
		}
		runtime.ReadMemStats(&m1)
		return float64(m1.Mallocs-m0.Mallocs) / k, float64(m1.TotalAlloc-m0.TotalAlloc) / k, nil
	}
	payloads := make([]order, k+100)
	for i := range payloads {
		payloads[i] = newOrder(int64(i))
	}
	aTx, bTx, err := measure(func(i int) error { return enqueueTx(ctx, b.db, b.ob, payloads[i]) })
	if err != nil {
		return err
	}
	aEmpty, bEmpty, err := measure(func(int) error {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	b.res.add("cost: allocs per Enqueue call", "allocs", aTx-aEmpty)
	b.res.add("cost: bytes per Enqueue call", "B", bTx-bEmpty)
	b.res.add("cost: allocs per BEGIN+Enqueue+COMMIT", "allocs", aTx)
	b.res.add("cost: bytes per BEGIN+Enqueue+COMMIT", "B", bTx)

	// Round trips, on a small counted pool. Not 1: Enqueue prepares its
	// statement on the pool (db.PrepareContext) while the caller's
	// transaction holds a connection, so a pool of one deadlocks on the
	// first call (reported in issue 7's note).
	db1, err := openDB(b.dsn, 2)
	if err != nil {
		return err
	}
	defer db1.Close()
	for _, v := range []struct {
		name string
		cfg  outbox.Config
	}{
		{"Enqueue", outbox.Config{Schema: b.schema}},
		{"Enqueue (NoPreparedStatements)", outbox.Config{Schema: b.schema, NoPreparedStatements: true}},
	} {
		ob, err := outbox.New(db1, v.cfg)
		if err != nil {
			return err
		}
		var begin, enq, commit int64
		const n = 50
		for i := range n + 5 {
			t0 := roundTrips.Load()
			tx, err := db1.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			t1 := roundTrips.Load()
			if _, err := ob.Enqueue(ctx, tx, topic, payloads[i], nil); err != nil {
				return err
			}
			t2 := roundTrips.Load()
			if err := tx.Commit(); err != nil {
				return err
			}
			t3 := roundTrips.Load()
			if i >= 5 { // after the statement is prepared on the connection
				begin, enq, commit = begin+t1-t0, enq+t2-t1, commit+t3-t2
			}
		}
		b.res.add("cost: round trips per "+v.name, "trips", float64(enq)/n)
		if v.name == "Enqueue" {
			b.res.add("cost: round trips per BEGIN / COMMIT", "trips", float64(begin+commit)/n/2)
		}
	}
	events := make([]outbox.Event, 100)
	for i := range events {
		events[i] = outbox.Event{Topic: topic, Payload: payloads[i]}
	}
	// Through a handle on db1, called with db1 itself (autocommit): the
	// handle's own pool, so the statement is prepared.
	obBatch, err := outbox.New(db1, outbox.Config{Schema: b.schema})
	if err != nil {
		return err
	}
	var trips int64
	for i := range 10 {
		t0 := roundTrips.Load()
		if _, err := obBatch.EnqueueBatch(ctx, db1, events); err != nil {
			return err
		}
		if i >= 2 {
			trips += roundTrips.Load() - t0
		}
	}
	b.res.add("cost: round trips per EnqueueBatch(100) call", "trips", float64(trips)/8)
	fmt.Fprintf(os.Stderr, "cost measured\n")
	return nil
}
