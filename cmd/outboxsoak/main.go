// Command soak pushes many events through outboxkit and reports memory and
// table sizes along the way (issue 5, item 7). It is a benchmark-style
// program, not part of go test:
//
//	go run ./cmd/outboxsoak -events 1000000
//
// Producers commit events (EnqueueBatch, -enqueue-batch per transaction) while
// -dispatchers dispatchers in this process drain them, with retention cleanup
// on (-retention, -cleanup). Producers pause while more than -max-backlog
// events are undelivered. Every -sample it prints the queue depth, heap
// (runtime.MemStats), RSS and peak RSS (/proc/self/status) and the size of the
// tables (pg_total_relation_size). At the end it checks that every event was
// delivered exactly once (a bitmap of payload numbers), that the queue depth
// is 0, and waits for cleanup to empty the tables.
//
// It works in its own schema (-schema, default outbox_soak), recreated on
// each run, on DATABASE_URL (default: the local server, database test).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
)

type options struct {
	dsn, schema                         string
	events, dispatchers, workers, batch int
	producers, enqueueBatch, maxBacklog int
	maxConns                            int
	retention, cleanup, sample, timeout time.Duration
	vacuum                              time.Duration
	keep                                bool
}

func main() {
	var o options
	flag.StringVar(&o.dsn, "dsn", envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flag.StringVar(&o.schema, "schema", "outbox_soak", "schema to use (dropped and recreated)")
	flag.IntVar(&o.events, "events", 1_000_000, "events to enqueue and deliver")
	flag.IntVar(&o.dispatchers, "dispatchers", 2, "dispatchers in this process")
	flag.IntVar(&o.workers, "workers", 16, "workers per dispatcher")
	flag.IntVar(&o.batch, "batch", 100, "claim batch size")
	flag.IntVar(&o.producers, "producers", 2, "concurrent producers")
	flag.IntVar(&o.maxConns, "max-conns", 16, "connection pool size (the handler sends no SQL)")
	flag.IntVar(&o.enqueueBatch, "enqueue-batch", 500, "events per producer transaction")
	flag.IntVar(&o.maxBacklog, "max-backlog", 50_000, "producers pause above this many undelivered events")
	flag.DurationVar(&o.retention, "retention", 2*time.Second, "retention of COMPLETED rows")
	flag.DurationVar(&o.cleanup, "cleanup", time.Second, "retention cleanup interval")
	flag.DurationVar(&o.sample, "sample", 5*time.Second, "sampling interval")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Hour, "give up after this long")
	flag.DurationVar(&o.vacuum, "vacuum", 0, "run VACUUM (ANALYZE) on the queue tables this often (0: leave it to autovacuum)")
	flag.BoolVar(&o.keep, "keep", false, "keep the schema afterwards")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// sample is one measurement.
type sample struct {
	elapsed                  time.Duration
	enqueued, handled        int64
	depth                    int64 // rows not COMPLETED or FAILED
	heapAlloc, heapInuse     uint64
	sys                      uint64
	rss, hwm                 int64 // bytes
	goroutines               int
	queueBytes, eventBytes   int64
	queueRows, eventRowsLive int64
}

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	db, err := sql.Open("postgres", o.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(o.maxConns)
	db.SetMaxIdleConns(o.maxConns)
	if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+o.schema+`" CASCADE`); err != nil {
		return fmt.Errorf("is PostgreSQL running at %s? %w", o.dsn, err)
	}
	if !o.keep {
		defer func() {
			_, _ = db.Exec(`DROP SCHEMA IF EXISTS "` + o.schema + `" CASCADE`)
		}()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ob, err := outbox.New(db, outbox.Config{Schema: o.schema, Logger: log})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return err
	}
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "soak", TopicPattern: "soak.#", CallbackMethod: "soak"}); err != nil {
		return err
	}

	var autovacuum string
	if err := db.QueryRowContext(ctx, `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		return err
	}
	if autovacuum != "on" && o.vacuum == 0 {
		fmt.Println("soak: warning: autovacuum is", autovacuum, "on this server and -vacuum is 0: dead rows pile up and the planner has no statistics")
	}
	if o.vacuum > 0 {
		go func() {
			t := time.NewTicker(o.vacuum)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					_, _ = db.ExecContext(ctx, `VACUUM (ANALYZE) "`+o.schema+`".event_queue, "`+o.schema+`".system_event`)
				}
			}
		}()
	}

	seen := make([]atomic.Uint32, o.events)
	var handled, dupes, enqueued atomic.Int64
	runCtx, stopRun := context.WithCancel(ctx)
	var runs sync.WaitGroup
	runErr := make(chan error, o.dispatchers)
	for i := range o.dispatchers {
		d, err := ob.NewDispatcher(outbox.DispatcherConfig{
			Name: fmt.Sprintf("soak-%d", i+1), Workers: o.workers, BatchSize: o.batch,
			PollInterval: 200 * time.Millisecond, ListenDSN: o.dsn,
			CleanupInterval: o.cleanup, CompletedRetention: o.retention, FailedRetention: o.retention,
		})
		if err != nil {
			stopRun()
			return err
		}
		d.Handle("soak", func(_ context.Context, dl *outbox.Delivery) error {
			var p struct{ N int }
			if err := json.Unmarshal(dl.Payload, &p); err != nil || p.N < 0 || p.N >= o.events {
				return outbox.Permanent(fmt.Errorf("bad payload %s", dl.Payload))
			}
			if seen[p.N].Add(1) > 1 {
				dupes.Add(1)
			}
			handled.Add(1)
			return nil
		})
		runs.Add(1)
		go func() { defer runs.Done(); runErr <- d.Run(runCtx) }()
	}
	defer func() { stopRun(); runs.Wait() }()

	start := time.Now()
	var peak sample
	take := func() sample {
		s := measure(ctx, db, o.schema)
		s.elapsed, s.enqueued, s.handled = time.Since(start), enqueued.Load(), handled.Load()
		peak.heapAlloc = max(peak.heapAlloc, s.heapAlloc)
		peak.heapInuse = max(peak.heapInuse, s.heapInuse)
		peak.hwm = max(peak.hwm, s.hwm)
		peak.queueBytes = max(peak.queueBytes, s.queueBytes)
		peak.eventBytes = max(peak.eventBytes, s.eventBytes)
		peak.depth = max(peak.depth, s.depth)
		peak.goroutines = max(peak.goroutines, s.goroutines)
		return s
	}
	fmt.Printf("soak: %d events, %d dispatchers x %d workers, %d producers x %d per tx, max backlog %d, retention %s, cleanup every %s, vacuum every %s (autovacuum %s), GOMAXPROCS %d\n",
		o.events, o.dispatchers, o.workers, o.producers, o.enqueueBatch, o.maxBacklog, o.retention, o.cleanup, o.vacuum, autovacuum, runtime.GOMAXPROCS(0))
	fmt.Println(header)
	fmt.Println(row(take()))

	// Producers.
	next := atomic.Int64{}
	prodErr := make(chan error, o.producers)
	for range o.producers {
		go func() {
			prodErr <- func() error {
				for {
					for enqueued.Load()-handled.Load() > int64(o.maxBacklog) {
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(10 * time.Millisecond):
						}
					}
					first := int(next.Add(int64(o.enqueueBatch))) - o.enqueueBatch
					if first >= o.events {
						return nil
					}
					n := min(o.enqueueBatch, o.events-first)
					evs := make([]outbox.Event, n)
					for i := range evs {
						evs[i] = outbox.Event{Topic: "soak.event", Payload: json.RawMessage(`{"n":` + strconv.Itoa(first+i) + `}`)}
					}
					// A shared server may refuse connections for a while:
					// retry a batch (its events are new each time) before
					// giving up.
					var err error
					for attempt := 0; attempt < 30; attempt++ {
						if err = enqueue(ctx, db, ob, evs); err == nil {
							break
						}
						fmt.Fprintln(os.Stderr, "soak: enqueue failed, retrying:", err)
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(time.Second):
						}
					}
					if err != nil {
						return err
					}
					enqueued.Add(int64(n))
				}
			}()
		}()
	}

	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	producersLeft := o.producers
	drained := time.Duration(0)
	for drained == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out: %d of %d handled", handled.Load(), o.events)
		case err := <-runErr:
			return fmt.Errorf("dispatcher stopped: %v", err)
		case err := <-prodErr:
			if err != nil {
				return fmt.Errorf("producer: %w", err)
			}
			producersLeft--
		case <-tick.C:
			s := take()
			fmt.Println(row(s))
			if producersLeft == 0 && s.handled >= int64(o.events) && s.depth == 0 {
				drained = s.elapsed
			}
		}
	}
	fmt.Printf("drained: %d events in %s (%.0f events/s), duplicates %d\n",
		handled.Load(), drained.Round(time.Millisecond), float64(o.events)/drained.Seconds(), dupes.Load())

	// Retention empties the tables.
	for {
		s := take()
		if s.queueRows == 0 && s.eventRowsLive == 0 {
			fmt.Println(row(s))
			break
		}
		select {
		case <-ctx.Done():
			return errors.New("timed out waiting for retention cleanup")
		case <-tick.C:
			fmt.Println(row(s))
		}
	}
	stopRun()
	runs.Wait()
	runtime.GC()
	final := take()
	fmt.Println(row(final))

	missing := 0
	for i := range seen {
		if seen[i].Load() == 0 {
			missing++
		}
	}
	fmt.Printf("result: events %d, delivered %d, missing %d, duplicates %d, queue depth %d\n",
		o.events, handled.Load(), missing, dupes.Load(), final.depth)
	fmt.Printf("peak: heap alloc %s, heap in use %s, RSS high-water %s, goroutines %d, event_queue %s, system_event %s, depth %d\n",
		mib(int64(peak.heapAlloc)), mib(int64(peak.heapInuse)), mib(peak.hwm), peak.goroutines,
		mib(peak.queueBytes), mib(peak.eventBytes), peak.depth)
	fmt.Printf("end: heap alloc %s after GC, event_queue %s, system_event %s (empty tables keep their pages until VACUUM)\n",
		mib(int64(final.heapAlloc)), mib(final.queueBytes), mib(final.eventBytes))
	if missing != 0 || final.depth != 0 {
		return fmt.Errorf("%d events missing, depth %d", missing, final.depth)
	}
	return nil
}

// enqueue commits evs in one transaction.
func enqueue(ctx context.Context, db *sql.DB, ob *outbox.Outbox, evs []outbox.Event) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := ob.EnqueueBatch(ctx, tx, evs); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

const header = "elapsed      enqueued     handled   depth  heapAlloc heapInuse      RSS   RSSpeak  gor  event_queue system_event"

func row(s sample) string {
	return fmt.Sprintf("%7s %11d %11d %7d %10s %9s %8s %9s %4d %12s %12s",
		s.elapsed.Round(time.Second), s.enqueued, s.handled, s.depth, mib(int64(s.heapAlloc)), mib(int64(s.heapInuse)),
		mib(s.rss), mib(s.hwm), s.goroutines, mib(s.queueBytes), mib(s.eventBytes))
}

func measure(ctx context.Context, db *sql.DB, schema string) sample {
	var s sample
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heapAlloc, s.heapInuse, s.sys = ms.HeapAlloc, ms.HeapInuse, ms.Sys
	s.goroutines = runtime.NumGoroutine()
	s.rss, s.hwm = procStatus("VmRSS:"), procStatus("VmHWM:")
	q := `"` + schema + `"`
	err := db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM `+q+`.event_queue WHERE status IN ('PENDING', 'PROCESSING')),
		(SELECT count(*) FROM `+q+`.event_queue),
		(SELECT count(*) FROM `+q+`.system_event),
		pg_total_relation_size('`+q+`.event_queue'),
		pg_total_relation_size('`+q+`.system_event')`).
		Scan(&s.depth, &s.queueRows, &s.eventRowsLive, &s.queueBytes, &s.eventBytes)
	if err != nil {
		// Never read a failed sample as an empty queue.
		fmt.Fprintln(os.Stderr, "soak: sample:", err)
		s.depth, s.queueRows, s.eventRowsLive = -1, -1, -1
	}
	return s
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
