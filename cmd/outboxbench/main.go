// Command outboxbench measures outboxkit against the limits of the
// PostgreSQL it runs on (issue 7), and prints a table of medians with each
// figure's ratio to its pgbench limit, measured in the same run.
//
//	go run ./cmd/outboxbench -runs 3 -json bench-results.json
//
// It needs pgbench (on PATH or -pgbench) and the database at DATABASE_URL
// (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable). It
// works in two schemas of its own, outboxbench (the library's tables) and
// outboxbench_pg (the pgbench baseline table), which it creates and drops.
//
// Every point runs pgbench and outboxkit back to back (interleaved), so
// that load from other work on the machine hits both; each figure is the
// median of -runs runs and each ratio the median of the per-run ratios.
//
// The full sizes: -dur 15s -drain-rows 200000 -drain-tx-rows 200000 -latency-dur 20s
// -heap-rows 1000000 (the defaults are smaller so that a run with -runs 3
// ends in about ten minutes on an idle two-core machine; under heavy
// concurrent load, lower -drain-rows and -drain-tx-rows).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/outboxkit/outbox"
)

// poolSize bounds the benchmark's own connections (8 enqueuers, the
// dispatcher and its completer, listener aside).
const poolSize = 16

type bench struct {
	dsn, libpqDSN string
	schema        string // the library's schema
	baseSchema    string // the pgbench baseline table's schema
	scriptDir     string
	pgbenchBin    string
	db            *sql.DB
	ob            *outbox.Outbox // default config
	obNoNotify    *outbox.Outbox // NotifyCooldown < 0

	runs        int
	dur         time.Duration
	conc        []int
	drainRows   int
	drainTxRows int
	latRate     int
	latDur      time.Duration
	heapRows    int
	recConc     int           // concurrent callers of the recorders phase
	recDur      time.Duration // duration of each recorders point
	orderedRows int
	orderedKeys int
	workers     int // DispatcherConfig.Workers for the drains (0: default)
	batchSize   int // DispatcherConfig.BatchSize for the drains (0: default)
	log         *slog.Logger

	res *results
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "outboxbench:", err)
		os.Exit(1)
	}
}

func run() error {
	b := &bench{res: newResults()}
	var (
		jsonOut  = flag.String("json", "", "write the results as JSON to this file")
		only     = flag.String("only", "enqueue,batch,drain,ordering,latency,cost,recorders", "phases to run (comma-separated)")
		concS    = flag.String("conc", "1,2,4,8", "goroutine (and pgbench client) counts for single-event enqueue")
		cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		writeDir = flag.String("write-scripts", "", "write the pgbench scripts (for the default schema) into this directory and exit")
		keep     = flag.Bool("keep", false, "keep the schemas at the end")
		verbose  = flag.Bool("v", false, "log every measurement as it is taken")
	)
	flag.IntVar(&b.runs, "runs", 3, "repetitions of every measurement (medians are reported)")
	flag.DurationVar(&b.dur, "dur", 5*time.Second, "duration of each timed enqueue point (issue: 15s)")
	flag.IntVar(&b.drainRows, "drain-rows", 50000, "backlog drained to a no-op handler (issue: 200000)")
	flag.IntVar(&b.drainTxRows, "drain-tx-rows", 20000, "backlog drained to a HandleTx handler (issue: 200000)")
	flag.IntVar(&b.latRate, "latency-rate", 500, "offered load of the latency test, events/s")
	flag.DurationVar(&b.latDur, "latency-dur", 10*time.Second, "duration of each latency run (issue: 20s)")
	flag.IntVar(&b.orderedRows, "ordered-rows", 100000, "backlog of the ordering phase, drained with and without keys (issue 6: 100000)")
	flag.IntVar(&b.orderedKeys, "ordered-keys", 10000, "distinct ordering keys of the ordering phase (issue 6: 10000)")
	flag.IntVar(&b.recConc, "rec-conc", 32, "concurrent callers of the recorders phase (issue 16: 32)")
	flag.DurationVar(&b.recDur, "rec-dur", 3*time.Second, "duration of each point of the recorders phase")
	flag.IntVar(&b.heapRows, "heap-rows", 0, "if > 0, drain this many rows once more to sample the heap (issue: 1000000)")
	flag.IntVar(&b.workers, "workers", 0, "DispatcherConfig.Workers of the drains (0: the library's default)")
	flag.IntVar(&b.batchSize, "batch", 0, "DispatcherConfig.BatchSize of the drains (0: the library's default)")
	flag.StringVar(&b.schema, "schema", "outboxbench", "schema of the library's tables (dropped at the end)")
	flag.StringVar(&b.pgbenchBin, "pgbench", "", "pgbench binary (default: pgbench on PATH, else /usr/lib/postgresql/15/bin/pgbench)")
	flag.Parse()
	b.baseSchema = b.schema + "_pg"
	if *writeDir != "" {
		return writeScripts(*writeDir, b.schema)
	}
	for _, s := range strings.Split(*concS, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -conc %q", *concS)
		}
		b.conc = append(b.conc, n)
	}
	phases := map[string]bool{}
	for _, p := range strings.Split(*only, ",") {
		phases[strings.TrimSpace(p)] = true
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	b.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	b.dsn = os.Getenv("DATABASE_URL")
	if b.dsn == "" {
		b.dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	b.libpqDSN = b.dsn
	if b.pgbenchBin == "" {
		b.pgbenchBin = "/usr/lib/postgresql/15/bin/pgbench"
		if p, err := exec.LookPath("pgbench"); err == nil {
			b.pgbenchBin = p
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "outboxbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b.scriptDir = dir
	if err := writeScripts(dir, b.schema); err != nil {
		return err
	}

	if b.db, err = openDB(b.dsn, poolSize); err != nil {
		return err
	}
	defer b.db.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if b.ob, err = outbox.New(b.db, outbox.Config{Schema: b.schema, Logger: quiet}); err != nil {
		return err
	}
	if b.obNoNotify, err = outbox.New(b.db, outbox.Config{Schema: b.schema, Logger: quiet, NotifyCooldown: -1}); err != nil {
		return err
	}
	if err := b.setup(ctx); err != nil {
		return err
	}
	if !*keep {
		defer b.teardown()
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	b.printEnv(ctx)
	started := time.Now()
	for r := 1; r <= b.runs; r++ {
		fmt.Fprintf(os.Stderr, "[%s] run %d/%d\n", time.Since(started).Round(time.Second), r, b.runs)
		steps := []struct {
			name string
			fn   func(context.Context) error
		}{
			{"enqueue", b.runEnqueue}, {"batch", b.runBatch}, {"drain", b.runDrain}, {"ordering", b.runOrdering},
			{"latency", b.runLatency}, {"recorders", b.runRecorders},
		}
		for _, s := range steps {
			if !phases[s.name] {
				continue
			}
			if err := s.fn(ctx); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	if phases["cost"] {
		if err := b.runCost(ctx); err != nil {
			return fmt.Errorf("cost: %w", err)
		}
	}
	if b.heapRows > 0 {
		if err := b.runHeap(ctx); err != nil {
			return fmt.Errorf("heap: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "[%s] done\n", time.Since(started).Round(time.Second))
	rows := b.res.table()
	printTable(os.Stdout, rows)
	if *jsonOut != "" {
		out := map[string]any{
			"command": "go run ./cmd/outboxbench " + strings.Join(os.Args[1:], " "),
			"machine": b.machine(ctx),
			"config": map[string]any{
				"runs": b.runs, "dur": b.dur.String(), "conc": b.conc, "drain_rows": b.drainRows,
				"drain_tx_rows": b.drainTxRows, "latency_rate": b.latRate, "latency_dur": b.latDur.String(),
				"heap_rows": b.heapRows,
			},
			"results": rows,
		}
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Subscriptions: s1 matches orders.created with handler "bench"; s2..s5
// match it too and are active only for the five-subscription points.
var extraSubs = []struct{ name, pattern string }{
	{"s2", "orders.*"}, {"s3", "orders.#"}, {"s4", "#"}, {"s5", "*.created"},
}

func (b *bench) setup(ctx context.Context) error {
	for _, s := range []string{b.schema, b.baseSchema} {
		if _, err := b.db.ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+s+`" CASCADE`); err != nil {
			return fmt.Errorf("is PostgreSQL running at %s? %w", b.dsn, err)
		}
	}
	if err := b.ob.Migrate(ctx); err != nil {
		return err
	}
	if _, err := b.db.ExecContext(ctx, `CREATE SCHEMA "`+b.baseSchema+`"; SET search_path TO "`+b.baseSchema+`"; `+baseSchemaSQL+`; RESET search_path`); err != nil {
		return err
	}
	if _, err := b.ob.Subscribe(ctx, outbox.Subscription{Name: "s1", TopicPattern: "orders.created", CallbackMethod: "bench"}); err != nil {
		return err
	}
	for _, s := range extraSubs {
		if _, err := b.ob.Subscribe(ctx, outbox.Subscription{Name: s.name, TopicPattern: s.pattern, CallbackMethod: "bench_" + s.name}); err != nil {
			return err
		}
	}
	return b.setSubs(ctx, 1)
}

func (b *bench) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range []string{b.schema, b.baseSchema} {
		if _, err := b.db.ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+s+`" CASCADE`); err != nil {
			fmt.Fprintln(os.Stderr, "outboxbench: drop schema:", err)
		}
	}
}

// setSubs makes exactly n of the five subscriptions active (1 or 5).
func (b *bench) setSubs(ctx context.Context, n int) error {
	for i, s := range extraSubs {
		var err error
		if i+1 < n {
			_, err = b.ob.ResumeSubscription(ctx, s.name)
		} else {
			_, err = b.ob.PauseSubscription(ctx, s.name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// reset empties both queues and checkpoints, so that every measurement
// starts from the same state.
//
// It does not VACUUM (ANALYZE) the emptied tables: TRUNCATE leaves them
// "never analyzed" (reltuples -1), as after the migrations, and the planner
// then assumes at least ten pages. Analyzing them empty instead records
// "known empty", and with autovacuum off (as here) nothing analyzes them
// again during the point: every session then caches, at its sixth foreign-key
// check, a generic plan that scans system_event sequentially (the table is
// a few pages at that moment) and keeps it while the table grows, so each
// insert scans the whole table (quadratic; see "Cost of the seed's foreign
// keys" in docs/benchmarks.md). With autovacuum on, an autoanalyze replaces
// such plans within a minute; a benchmark point that measures only that
// state measures the stale statistics, not the statement.
func (b *bench) reset(ctx context.Context) error {
	stmts := []string{
		fmt.Sprintf(`TRUNCATE "%s".event_queue, "%s".system_event`, b.schema, b.schema),
		fmt.Sprintf(`TRUNCATE "%s".outbox_bench`, b.baseSchema),
		`CHECKPOINT`,
	}
	for _, s := range stmts {
		if _, err := b.db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	}
	return nil
}

func (b *bench) vacuum(ctx context.Context) error {
	for _, s := range []string{
		fmt.Sprintf(`VACUUM (ANALYZE) "%s".event_queue, "%s".system_event, "%s".outbox_bench`, b.schema, b.schema, b.baseSchema),
		`CHECKPOINT`,
	} {
		if _, err := b.db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) printEnv(ctx context.Context) {
	m := b.machine(ctx)
	fmt.Fprintf(os.Stderr, "machine: %v\n", m)
}

func (b *bench) machine(ctx context.Context) map[string]any {
	m := map[string]any{"goos": runtime.GOOS, "goarch": runtime.GOARCH, "cpus": runtime.NumCPU(), "go": runtime.Version()}
	var v string
	if err := b.db.QueryRowContext(ctx, `SELECT version()`).Scan(&v); err == nil {
		m["postgres"] = v
	}
	var settings string
	if err := b.db.QueryRowContext(ctx, `SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
		WHERE name IN ('shared_buffers','synchronous_commit','fsync','wal_level','max_wal_size','checkpoint_timeout','autovacuum')`).Scan(&settings); err == nil {
		m["settings"] = settings
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(data), "\n"); ok {
			m["memory"] = strings.Join(strings.Fields(line)[1:], " ")
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_end"] = strings.TrimSpace(string(data))
	}
	return m
}

// results collects samples per figure.
type results struct {
	order   []string
	samples map[string][]float64
	units   map[string]string
	limits  map[string]limitSpec
}

type limitSpec struct {
	limit  string  // the figure this one is divided by
	target float64 // the least acceptable ratio (0: none)
	max    float64 // for absolute targets: the largest acceptable value (0: none)
}

func newResults() *results {
	return &results{samples: map[string][]float64{}, units: map[string]string{}, limits: map[string]limitSpec{}}
}

func (r *results) add(name, unit string, v float64) {
	if _, ok := r.samples[name]; !ok {
		r.order = append(r.order, name)
		r.units[name] = unit
	}
	r.samples[name] = append(r.samples[name], v)
}

func (r *results) compare(name, limit string, target float64) {
	r.limits[name] = limitSpec{limit: limit, target: target}
}

func (r *results) ceiling(name string, max float64) {
	r.limits[name] = limitSpec{max: max}
}

// Row is one line of the table and of the JSON output.
type Row struct {
	Name        string    `json:"name"`
	Unit        string    `json:"unit"`
	Median      float64   `json:"median"`
	Runs        []float64 `json:"runs"`
	Limit       string    `json:"limit,omitempty"`
	LimitMedian float64   `json:"limit_median,omitempty"`
	Ratio       float64   `json:"ratio,omitempty"`
	Target      string    `json:"target,omitempty"`
	Met         *bool     `json:"met,omitempty"`
}

func (r *results) table() []Row {
	var rows []Row
	for _, name := range r.order {
		s := r.samples[name]
		row := Row{Name: name, Unit: r.units[name], Median: median(s), Runs: s}
		if l, ok := r.limits[name]; ok {
			if l.limit != "" {
				ls := r.samples[l.limit]
				row.Limit, row.LimitMedian = l.limit, median(ls)
				// Interleaved runs: the median of the per-run ratios.
				var ratios []float64
				if len(ls) == len(s) {
					for i := range s {
						if ls[i] > 0 {
							ratios = append(ratios, s[i]/ls[i])
						}
					}
				}
				if len(ratios) > 0 {
					row.Ratio = median(ratios)
				} else if row.LimitMedian > 0 {
					row.Ratio = row.Median / row.LimitMedian
				}
				if l.target > 0 {
					met := row.Ratio >= l.target
					row.Target, row.Met = fmt.Sprintf("≥ %.2f×", l.target), &met
				}
			}
			if l.max > 0 {
				met := row.Median <= l.max
				row.Target, row.Met = fmt.Sprintf("≤ %g", l.max), &met
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func printTable(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-58s %12s %-10s %-34s %12s %7s %-9s %s\n", "figure", "median", "unit", "limit (pgbench, same run)", "limit", "ratio", "target", "met")
	for _, r := range rows {
		limit, lm, ratio := "", "", ""
		if r.Limit != "" {
			limit, lm, ratio = r.Limit, fmtNum(r.LimitMedian), fmt.Sprintf("%.2f", r.Ratio)
		}
		met := ""
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		fmt.Fprintf(w, "%-58s %12s %-10s %-34s %12s %7s %-9s %s\n", r.Name, fmtNum(r.Median), r.Unit, limit, lm, ratio, r.Target, met)
	}
}

func fmtNum(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func median(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	c := append([]float64(nil), s...)
	sort.Float64s(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

// percentile of sorted s (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

var errIncomplete = errors.New("not every event was delivered")
