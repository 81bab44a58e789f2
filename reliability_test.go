package outbox

// Reliability tests (issue 5): crashes of real processes, backends killed
// under a running dispatcher, transaction semantics, poison messages,
// shutdown under load, connection pressure and hostile input. Every test
// asserts counts read from PostgreSQL.
//
// Sizes are the by default; OUTBOX_RELIABILITY_SCALE (a positive
// number, default 1) multiplies the event counts for longer runs, e.g.
//
//	OUTBOX_RELIABILITY_SCALE=10 go test -run Reliability -v -timeout 1h .

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/subconfig"
)

// ScaleEnv names the environment variable that multiplies the event counts
// of the reliability tests.
const ScaleEnv = "OUTBOX_RELIABILITY_SCALE"

// scaled returns n times OUTBOX_RELIABILITY_SCALE (at least 1).
func scaled(n int) int {
	s := 1.0
	if v := os.Getenv(ScaleEnv); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			s = f
		}
	}
	return max(1, int(float64(n)*s))
}

// ---- database helpers ----

// deliveryTable creates the table that handlers (in process and in
// cmd/internal/testworker) record deliveries in, and returns its quoted name.
func deliveryTable(t testing.TB, b *bundle) string {
	t.Helper()
	name := `"` + b.schema + `".rel_delivery`
	if _, err := b.db.Exec(`CREATE TABLE ` + name + ` (
		id bigserial PRIMARY KEY,
		queue_id uuid NOT NULL,
		event_id uuid NOT NULL,
		worker text NOT NULL,
		attempt int NOT NULL,
		at timestamptz NOT NULL DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(`CREATE INDEX ON ` + name + ` (queue_id)`); err != nil {
		t.Fatal(err)
	}
	return name
}

// recorder is a handler that records each delivery in rel_delivery, in a
// transaction of its own, through db.
func recorder(db *sql.DB, schema, worker string) HandlerFunc {
	q := `INSERT INTO "` + schema + `".rel_delivery (queue_id, event_id, worker, attempt) VALUES ($1, $2, $3, $4)`
	return func(ctx context.Context, d *Delivery) error {
		_, err := db.ExecContext(ctx, q, d.ID, d.EventID, worker, d.Attempt)
		return err
	}
}

func (b *bundle) q(t testing.TB, query string, args ...any) int64 {
	t.Helper()
	return countRows(t, b.db, strings.ReplaceAll(query, "{s}", `"`+b.schema+`"`), args...)
}

// statusCounts reads the queue's rows per status, for progress messages.
func (b *bundle) statusCounts(t testing.TB) string {
	t.Helper()
	rows, err := b.db.Query(`SELECT status::text, count(*) FROM "` + b.schema + `".event_queue GROUP BY 1 ORDER BY 1`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s=%d", s, n))
	}
	deliveries := "?"
	var d int64
	if err := b.db.QueryRow(`SELECT count(*) FROM "` + b.schema + `".rel_delivery`).Scan(&d); err == nil {
		deliveries = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, " ") + " deliveries=" + deliveries
}

// enqueueMany commits n events on topic, in transactions of up to 500
// events (EnqueueBatch), with payload {"n": i} for i from start.
func enqueueMany(t testing.TB, ob *Outbox, topic string, start, n int) {
	t.Helper()
	ctx := context.Background()
	for i := start; i < start+n; {
		m := min(500, start+n-i)
		events := make([]Event, m)
		for j := range events {
			events[j] = Event{Topic: topic, Payload: map[string]any{"n": i + j}}
		}
		tx, err := ob.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := ob.EnqueueBatch(ctx, tx, events); err != nil {
			_ = tx.Rollback()
			t.Error(err)
			return
		}
		if err := tx.Commit(); err != nil {
			t.Error(err)
			return
		}
		i += m
	}
}

// waitUntil checks cond every 20 ms until it holds, and fails the test with
// state() when timeout passes first.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if t.Failed() {
			t.FailNow()
		}
		if time.Now().After(deadline) {
			s := ""
			if state != nil {
				s = ": " + state()
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProgress checks cond every 20 ms until it holds, like waitUntil, but
// fails the test with state() only when progress (a count that grows while
// the work goes on) has not grown for stall: a deadlock stops progress, a
// loaded machine only slows it, so the wait's length is not what the test
// asserts.
func waitProgress(t testing.TB, stall time.Duration, what string, cond func() bool, progress func() int64, state func() string) {
	t.Helper()
	last, lastAt := progress(), time.Now()
	for !cond() {
		if t.Failed() {
			t.FailNow()
		}
		if p := progress(); p != last {
			last, lastAt = p, time.Now()
		} else if time.Since(lastAt) > stall {
			s := ""
			if state != nil {
				s = ": " + state()
			}
			t.Fatalf("no progress for %s while waiting for %s (stuck at %d)%s", stall, what, last, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dsnApp returns the test database URL with application_name set, so that
// a process's backends can be found in pg_stat_activity.
func dsnApp(app string) string {
	u := pgtest.URL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "application_name=" + app
}

func backends(t testing.TB, db *sql.DB, app string) int64 {
	t.Helper()
	return countRows(t, db, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app)
}

// queueIDs returns the ids of the queue rows that match where.
func (b *bundle) queueIDs(t testing.TB, where string) map[uuid.UUID]bool {
	t.Helper()
	return b.idSet(t, `SELECT id FROM "`+b.schema+`".event_queue WHERE `+where)
}

// eventIDs returns the ids of the stored events.
func (b *bundle) eventIDs(t testing.TB) map[uuid.UUID]bool {
	t.Helper()
	return b.idSet(t, `SELECT id FROM "`+b.schema+`".system_event`)
}

// idSet runs query (one uuid column) and returns the ids it returns.
func (b *bundle) idSet(t testing.TB, query string) map[uuid.UUID]bool {
	t.Helper()
	rows, err := b.db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uuid.UUID]bool{}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// analyzeQueue analyzes b's queue table, as autovacuum would have by the
// time a backlog is drained in production. The kill tests do it before
// their first worker starts: without statistics that worker's first claims
// may read the whole backlog (which is why the engine analyzes it first),
// and with a second suite beside this one the worker twice lost the 1 s
// lease of its first rows (a claim's lease counts from the claim
// statement's start) and rescued them itself, before the kill the test is
// about.
func (b *bundle) analyzeQueue(t testing.TB) {
	t.Helper()
	if _, err := b.db.ExecContext(ctxT(t), `ANALYZE "`+b.schema+`".event_queue`); err != nil {
		t.Fatal(err)
	}
}

// checkEveryRowDelivered asserts that every queue row has at least one
// recorded delivery and that every recorded delivery names a queue row:
// the union of handled ids equals the enqueued ids.
func (b *bundle) checkEveryRowDelivered(t testing.TB, want int) {
	t.Helper()
	if n := b.q(t, `SELECT count(*) FROM {s}.event_queue`); n != int64(want) {
		t.Fatalf("queue rows = %d, want %d", n, want)
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.event_queue q WHERE NOT EXISTS (SELECT 1 FROM {s}.rel_delivery d WHERE d.queue_id = q.id)`); n != 0 {
		t.Fatalf("%d enqueued rows never delivered (lost)", n)
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.rel_delivery d WHERE NOT EXISTS (SELECT 1 FROM {s}.event_queue q WHERE q.id = d.queue_id AND q.event_id = d.event_id)`); n != 0 {
		t.Fatalf("%d deliveries of rows that were never enqueued", n)
	}
	if n := b.q(t, `SELECT count(DISTINCT queue_id) FROM {s}.rel_delivery`); n != int64(want) {
		t.Fatalf("distinct delivered rows = %d, want %d", n, want)
	}
}

// ---- worker processes ----

// buildWorker builds cmd/internal/testworker into a temporary directory.
func buildWorker(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: the crash tests build a worker binary with it: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "testworker")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/internal/testworker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/internal/testworker: %v\n%s", err, out)
	}
	return bin
}

// proc is a running testworker process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testutil.LockedBuffer
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// workerConns is what one testworker process started with -max-conns n
// holds on the server at most: its pool and its listener.
func workerConns(maxConns int) int { return maxConns + 1 }

// startWorker starts the testworker binary on b's schema. The server is
// shared: pass -max-conns, and reserve what the test's workers hold at once
// (workerConns each) with pgtest.ReserveConns before the first start. The
// process is killed (SIGKILL) and reaped when the test ends if it still
// runs, and its output is logged if the test failed.
func startWorker(t *testing.T, bin string, b *bundle, name, app string, args ...string) *proc {
	t.Helper()
	full := append([]string{"-dsn", dsnApp(app), "-schema", b.schema, "-name", name}, args...)
	p := &proc{name: name, cmd: exec.Command(bin, full...), out: &testutil.LockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			out := p.out.String()
			if len(out) > 8000 {
				out = "...\n" + out[len(out)-8000:]
			}
			t.Logf("output of worker %s:\n%s", p.name, out)
		}
	})
	return p
}

// requireConnections fails t, saying why, if the shared server refused a
// connection to any of ws with "too many clients": a worker refused
// connections retries claims, fails deliveries and misses lease renewals,
// and the counts the test checks next would measure the server's
// max_connections (shared by every suite running against it), not the
// behaviour under test.
func requireConnections(t *testing.T, ws ...*proc) {
	t.Helper()
	for _, w := range ws {
		if pgtest.RefusedInLog(w.out.String()) {
			t.Fatalf("worker %s was refused connections by the shared server (too many clients, SQLSTATE 53300): "+
				"its retries and failures are not the behaviour under test; the server's max_connections is shared "+
				"by every suite running against it (see package pgtest's connection budget)", w.name)
		}
	}
}

// ownLeaseLost is what a worker logs when it rescued rows whose lease had
// expired, or could not write outcomes because their lease was lost.
var ownLeaseLost = []string{"rows with expired leases returned to the queue", "outcomes of rows whose lease was lost"}

// requireLeasesKept fails t, saying why, if any of ws (each the only live
// worker while it ran, or running with a lease far longer than the test)
// lost the lease of rows it was running: the machine then stalled for
// longer than the lease, and the duplicate deliveries that follow are not
// the behaviour under test.
func requireLeasesKept(t *testing.T, ws ...*proc) {
	t.Helper()
	for _, w := range ws {
		out := w.out.String()
		for _, msg := range ownLeaseLost {
			if strings.Contains(out, msg) {
				t.Fatalf("worker %s lost the lease of rows it was running (%q): heartbeats did not land within "+
					"the lease, the machine or the server stalled for longer; its duplicates are not the behaviour under test", w.name, msg)
			}
		}
	}
}

// kill sends SIGKILL and waits until the process is reaped.
func (p *proc) kill(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("worker %s not reaped 30s after SIGKILL", p.name)
	}
}

// stop sends SIGTERM and expects a clean exit within timeout.
func (p *proc) stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("worker %s exited with %v", p.name, p.err)
		}
	case <-time.After(timeout):
		t.Errorf("worker %s still running %s after SIGTERM", p.name, timeout)
		p.kill(t)
	}
}

// ---- 1. kill -9 mid-batch ----

func TestReliabilityKill9MidBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	b.subscribe(t, "rel", "rel.#", "record")
	bin := buildWorker(t)
	n := scaled(5000)
	enqueueMany(t, b.ob, "rel.kill", 0, n)
	b.analyzeQueue(t)
	state := func() string { return b.statusCounts(t) }
	// w2 starts once w1's backends are gone: one worker's connections.
	pgtest.ReserveConns(t, workerConns(6))

	app1 := "rel_" + b.schema + "_w1"
	w1 := startWorker(t, bin, b, "w1", app1, "-workers", "16", "-batch", "16", "-delay", "10ms", "-lease", "2s", "-max-conns", "6")
	waitUntil(t, 90*time.Second, "rows PROCESSING and a fifth of the events delivered", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) >= int64(n/5) &&
			b.count(t, "status = 'PROCESSING'") > 0
	}, state)
	w1.kill(t)
	// A statement the dead process sent may still be running in its
	// backend; once the backends are gone the PROCESSING rows are exactly
	// the rows the killed process held.
	waitUntil(t, 30*time.Second, "the killed worker's backends to end", func() bool { return backends(t, b.db, app1) == 0 }, nil)
	inflight := b.queueIDs(t, "status = 'PROCESSING'")
	completedAtKill := b.count(t, "status = 'COMPLETED'")
	if len(inflight) == 0 {
		t.Fatalf("no row was PROCESSING after the kill (%s): the kill did not hit a batch", state())
	}
	if completedAtKill == int64(n) {
		t.Fatal("every row was done before the kill")
	}

	start := time.Now()
	// w2's own lease is long: the rescue of w1's rows is under test, not
	// w2's heartbeats on a machine that may stall for longer than 2 s.
	w2 := startWorker(t, bin, b, "w2", "rel_"+b.schema+"_w2", "-workers", "16", "-lease", "30s", "-max-conns", "6")
	waitUntil(t, 120*time.Second, "every row COMPLETED after the restart", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(n)
	}, state)
	recovery := time.Since(start)
	w2.stop(t, 15*time.Second)
	requireConnections(t, w1, w2)
	requireLeasesKept(t, w1)

	if p := b.count(t, "status <> 'COMPLETED'"); p != 0 {
		t.Fatalf("%d rows not COMPLETED (%s)", p, state())
	}
	b.checkEveryRowDelivered(t, n)
	dups := b.duplicatesIn(t, "rel_delivery")
	extra := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) - int64(n)
	for id, c := range dups {
		if !inflight[id] {
			t.Errorf("row %s delivered %d times but was not in flight at the kill", id, c)
		}
	}
	if extra > int64(len(inflight)) {
		t.Fatalf("%d duplicate deliveries, more than the %d rows in flight at the kill", extra, len(inflight))
	}
	// The rows in flight were rescued after their lease, which counts the
	// lost attempt; no other row was.
	rescued := b.queueIDs(t, "failure_reason LIKE 'lease expired%' AND retry_count = 1")
	if len(rescued) != len(inflight) {
		t.Fatalf("%d rows rescued after their lease, want the %d in flight", len(rescued), len(inflight))
	}
	for id := range rescued {
		if !inflight[id] {
			t.Fatalf("row %s rescued but not in flight at the kill", id)
		}
	}
	t.Logf("kill -9: %d events, %d COMPLETED at the kill, %d PROCESSING at the kill, %d duplicate deliveries (%d rows), 0 lost; second process finished in %s",
		n, completedAtKill, len(inflight), extra, len(dups), recovery.Round(time.Millisecond))
}

// ---- 2. competing dispatcher processes ----

func TestReliabilityCompetingProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	b.subscribe(t, "rel", "rel.#", "record")
	bin := buildWorker(t)
	n := scaled(20000)
	const procs, conns = 4, 2
	pgtest.ReserveConns(t, procs*workerConns(conns))
	var ws []*proc
	for i := range procs {
		name := fmt.Sprintf("p%d", i+1)
		// No worker dies here: a lease as long as the product's default, so
		// that a loaded machine's stall (once longer than the testworker's
		// default lease of 2 s, for all four workers at once) does not hand
		// running rows to a competitor.
		ws = append(ws, startWorker(t, bin, b, name, "rel_"+b.schema+"_"+name, "-workers", "8", "-batch", "50",
			"-max-conns", strconv.Itoa(conns), "-lease", defaultLease.String()))
	}
	start := time.Now()
	var wg sync.WaitGroup
	const producers = 4
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enqueueMany(t, b.ob, "rel.compete", i*(n/producers), n/producers+(n%producers)*btoi(i == producers-1))
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitUntil(t, 180*time.Second, "every row COMPLETED", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(n)
	}, func() string { return b.statusCounts(t) })
	elapsed := time.Since(start)
	for _, w := range ws {
		w.stop(t, 15*time.Second)
	}
	requireConnections(t, ws...)
	requireLeasesKept(t, ws...)
	b.checkEveryRowDelivered(t, n)
	if total := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`); total != int64(n) {
		t.Fatalf("%d deliveries for %d rows: not exactly once", total, n)
	}
	if r := b.count(t, "retry_count <> 0 OR status <> 'COMPLETED'"); r != 0 {
		t.Fatalf("%d rows retried or not completed", r)
	}
	per := map[string]int64{}
	rows, err := b.db.Query(`SELECT worker, count(*) FROM "` + b.schema + `".rel_delivery GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var w string
		var c int64
		if err := rows.Scan(&w, &c); err != nil {
			t.Fatal(err)
		}
		per[w] = c
	}
	t.Logf("competing: %d events through %d processes x 8 workers in %s (enqueue included): exactly once, per process %v",
		n, procs, elapsed.Round(time.Millisecond), per)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ---- 3. backends terminated while draining ----

func TestReliabilityBackendsTerminated(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	b.subscribe(t, "rel", "rel.#", "record")
	bin := buildWorker(t)
	n := scaled(3000)
	app := "rel_" + b.schema + "_pg"
	pgtest.ReserveConns(t, workerConns(4))
	// An hourly poll: the worker's poll timer fires when Run starts and
	// then not again while the test runs, so that only a notification (or
	// the fetch that follows a reconnect) can deliver the event enqueued
	// after the kills, however long a loaded machine takes over the drain.
	// (A one-minute poll could fire just after that enqueue.)
	const poll = time.Hour
	w := startWorker(t, bin, b, "pg", app, "-workers", "4", "-delay", "5ms", "-poll", poll.String(), "-lease", "2s", "-max-conns", "4")
	waitUntil(t, 30*time.Second, "the worker to LISTEN", func() bool { return listening(t, b.db, app) }, nil)
	enqueueMany(t, b.ob, "rel.pg", 0, n)
	state := func() string { return b.statusCounts(t) }

	kills, terminated := 0, int64(0)
	for _, frac := range []float64{0.15, 0.35, 0.55, 0.75} {
		waitUntil(t, 60*time.Second, fmt.Sprintf("%.0f%% delivered", frac*100), func() bool {
			return b.q(t, `SELECT count(DISTINCT queue_id) FROM {s}.rel_delivery`) >= int64(frac*float64(n))
		}, state)
		terminated += countRows(t, b.db, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k`, app)
		kills++
	}
	waitUntil(t, 120*time.Second, "every row COMPLETED", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(n)
	}, state)

	// LISTEN is back: a new event must arrive, and with an hourly poll
	// only a notification can bring it. This replaces a bound of 5 s on
	// its latency, which a loaded machine could exceed with LISTEN back
	// and a one-minute poll could meet without it; the deadline is a hang
	// guard, far from the next poll.
	waitUntil(t, 30*time.Second, "the listener to LISTEN again", func() bool { return listening(t, b.db, app) }, nil)
	sent := time.Now()
	res := b.enqueue(t, "rel.pg.after", map[string]any{"n": n})
	waitUntil(t, 60*time.Second, "the event enqueued after the kills (LISTEN did not come back: the worker polls hourly)", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.rel_delivery WHERE event_id = $1`, res.EventID) > 0
	}, state)
	latency := time.Since(sent)
	waitUntil(t, 30*time.Second, "its completion", func() bool { return b.count(t, "status = 'COMPLETED'") == int64(n+1) }, state)
	w.stop(t, 15*time.Second)
	requireConnections(t, w)

	if r := b.count(t, "status <> 'COMPLETED'"); r != 0 {
		t.Fatalf("%d rows not COMPLETED (%s)", r, state())
	}
	b.checkEveryRowDelivered(t, n+1)
	extra := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) - int64(n+1)
	retried := b.count(t, "retry_count > 0")
	logs := w.out.String()
	for _, want := range []string{"listener disconnected", "listener reconnected"} {
		if !strings.Contains(logs, want) {
			t.Errorf("worker log lacks %q", want)
		}
	}
	// The worker claims with the default BatchSize, 100.
	if extra > int64(kills*(4+100)) {
		t.Fatalf("%d duplicate deliveries after %d kills", extra, kills)
	}
	t.Logf("pg_terminate_backend: %d events, %d rounds killing %d backends, 0 lost, %d duplicate deliveries, %d rows retried, event after the kills delivered through LISTEN in %s (the next poll: in about %s)",
		n+1, kills, terminated, extra, retried, latency.Round(time.Millisecond), poll)
}

// listening reports whether a backend of app has LISTEN as its last
// statement (or the empty query lib/pq's listener pings with, every 30 s).
func listening(t testing.TB, db *sql.DB, app string) bool {
	return countRows(t, db, `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND (query ILIKE 'listen%' OR query = '')`, app) > 0
}

// ---- 4. transaction semantics ----

func TestReliabilityTransactionSemantics(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	b.subscribe(t, "tx", "tx.#", "rec")
	if _, err := b.db.Exec(`CREATE TABLE "` + b.schema + `".orders (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	d, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("rec", recorder(b.db, b.schema, "in-process"))
	startDispatcher(t, d)
	ctx := ctxT(t)
	state := func() string { return b.statusCounts(t) }

	// Rolled back: no trace.
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rolledBack, err := b.ob.Enqueue(ctx, tx, "tx.rolledback", map[string]any{"n": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// A business constraint fails after the Enqueue: the commit fails too.
	if _, err := b.db.Exec(`INSERT INTO "` + b.schema + `".orders VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	tx, err = b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	constrained, err := b.ob.Enqueue(ctx, tx, "tx.constraint", map[string]any{"n": 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO "`+b.schema+`".orders VALUES (1)`)
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "23505" {
		t.Fatalf("duplicate order: err = %v, want unique_violation", err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("commit of a failed transaction succeeded")
	}

	// A long-open transaction holds an event; others commit after it and
	// are delivered while it stays open.
	late, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback() //nolint:errcheck // a no-op after Commit
	lateRes, err := b.ob.Enqueue(ctx, late, "tx.late", map[string]any{"n": 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	others := 200
	for i := 0; i < others; i += 10 {
		enqueueMany(t, b.ob, "tx.other", 100+i, 10)
	}
	waitUntil(t, 30*time.Second, "the events committed after the open transaction", func() bool {
		return b.q(t, `SELECT count(DISTINCT d.queue_id) FROM {s}.rel_delivery d JOIN {s}.event_queue q ON q.id = d.queue_id WHERE q.topic = 'tx.other'`) == int64(others)
	}, state)
	// A reader that remembered the last id it saw would now be past the
	// late event: its id (UUIDv7, taken at insert) is older than all of them.
	if n := b.q(t, `SELECT count(*) FROM {s}.system_event WHERE event_type = 'tx.other' AND id < $1`, lateRes.EventID); n != 0 {
		t.Fatalf("%d other events have ids below the late event's", n)
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.rel_delivery WHERE event_id = $1`, lateRes.EventID); n != 0 {
		t.Fatal("the uncommitted event was delivered")
	}
	if err := late.Commit(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the late-committed event", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.rel_delivery WHERE event_id = $1`, lateRes.EventID) == 1
	}, state)

	// A sentinel enqueued after everything: once it is delivered, the
	// dispatcher has looked at the queue after the rollbacks.
	sentinel := b.enqueue(t, "tx.sentinel", map[string]any{"n": 4})
	waitUntil(t, 30*time.Second, "the sentinel", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.rel_delivery WHERE event_id = $1`, sentinel.EventID) == 1
	}, state)
	for _, id := range []uuid.UUID{rolledBack.EventID, constrained.EventID} {
		n := b.q(t, `SELECT (SELECT count(*) FROM {s}.system_event WHERE id = $1) + (SELECT count(*) FROM {s}.event_queue WHERE event_id = $1)
			+ (SELECT count(*) FROM {s}.rel_delivery WHERE event_id = $1)`, id)
		if n != 0 {
			t.Fatalf("event %s of a failed transaction left %d rows", id, n)
		}
	}
	want := others + 2
	b.checkEveryRowDelivered(t, want)
	if total := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`); total != int64(want) {
		t.Fatalf("%d deliveries, want %d", total, want)
	}
}

// ---- 5. poison messages ----

func TestReliabilityPoisonMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	three := 3
	if _, err := b.ob.Subscribe(ctxT(t), Subscription{Name: "poison", TopicPattern: "poison.#", CallbackMethod: "poison",
		Config: subconfig.Config{MaxRetries: &three, BackoffInitial: subconfig.Duration(10 * time.Millisecond), BackoffMax: subconfig.Duration(40 * time.Millisecond)},
	}); err != nil {
		t.Fatal(err)
	}
	n := scaled(3000)
	panicAt, failAt := n/3, 2*n/3
	cfg := fastConfig()
	cfg.Workers = 8
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var panics, fails atomic.Int32
	rec := recorder(b.db, b.schema, "in-process")
	d.Handle("poison", func(ctx context.Context, dl *Delivery) error {
		var p struct{ N int }
		if err := json.Unmarshal(dl.Payload, &p); err != nil {
			return Permanent(err)
		}
		switch p.N {
		case panicAt:
			panics.Add(1)
			panic("poison pill")
		case failAt:
			fails.Add(1)
			return errors.New("always fails")
		}
		return rec(ctx, dl)
	})
	startDispatcher(t, d)
	enqueueMany(t, b.ob, "poison.msg", 0, n)
	state := func() string { return b.statusCounts(t) }
	waitUntil(t, 90*time.Second, "the good rows COMPLETED and the two poison rows FAILED", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(n-2) && b.count(t, "status = 'FAILED'") == 2
	}, state)
	if c := b.count(t, `status = 'FAILED' AND retry_count = 4 AND failure_reason LIKE 'panic: poison pill%' AND payload->>'n' = $1`, strconv.Itoa(panicAt)); c != 1 {
		t.Fatalf("panicking row: %d rows FAILED after 4 attempts with the panic as reason, want 1", c)
	}
	if c := b.count(t, `status = 'FAILED' AND retry_count = 4 AND failure_reason = 'always fails' AND payload->>'n' = $1`, strconv.Itoa(failAt)); c != 1 {
		t.Fatalf("failing row: %d rows FAILED after 4 attempts, want 1", c)
	}
	if panics.Load() != 4 || fails.Load() != 4 {
		t.Fatalf("attempts: panic %d, fail %d, want 4 each (max_retries 3)", panics.Load(), fails.Load())
	}
	// The dispatcher keeps going.
	enqueueMany(t, b.ob, "poison.after", n, 500)
	waitUntil(t, 60*time.Second, "the rows enqueued after the poison", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(n-2+500)
	}, state)
	if total, distinct := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`), b.q(t, `SELECT count(DISTINCT queue_id) FROM {s}.rel_delivery`); total != int64(n-2+500) || distinct != total {
		t.Fatalf("deliveries %d (distinct %d), want %d once each", total, distinct, n-2+500)
	}
	t.Logf("poison: %d good rows delivered once each, 2 poison rows FAILED after 4 attempts", n-2+500)
}

// ---- 6. shutdown under load ----

func TestReliabilityShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	b.subscribe(t, "sd", "sd.#", "sd")
	cfg := fastConfig()
	cfg.Workers, cfg.BatchSize, cfg.ShutdownTimeout = 16, 16, time.Second
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := recorder(b.db, b.schema, "first")
	var blocked atomic.Int32
	d.Handle("sd", func(ctx context.Context, dl *Delivery) error {
		if dl.Topic == "sd.block" {
			blocked.Add(1)
			<-ctx.Done() // cut off only by the shutdown timeout
			return ctx.Err()
		}
		if err := rec(context.WithoutCancel(ctx), dl); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		return nil
	})
	const blockers = 4
	enqueueMany(t, b.ob, "sd.block", 0, blockers)
	n := scaled(5000)
	enqueueMany(t, b.ob, "sd.load", blockers, n)
	total := n + blockers
	state := func() string { return b.statusCounts(t) }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitUntil(t, 60*time.Second, "the blocking handlers to run and load to flow", func() bool {
		return blocked.Load() == blockers && b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) >= int64(n/10)
	}, state)
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(cfg.ShutdownTimeout + 30*time.Second):
		t.Fatal("Run did not return after cancel")
	}
	took := time.Since(cancelled)
	// Run returns about ShutdownTimeout after cancel: it cuts the blocked
	// handlers then, and only writes the outcomes of the rows in flight
	// after it. Not sooner; and not later than the old bound's slack plus
	// twenty writes at what a write costs on this machine, measured right
	// after (a second wait would cost another ShutdownTimeout).
	if took < cfg.ShutdownTimeout-50*time.Millisecond {
		t.Fatalf("Run returned %s after cancel, before ShutdownTimeout (%s)", took, cfg.ShutdownTimeout)
	}
	bound := testutil.Bound{}.Plus("ShutdownTimeout", cfg.ShutdownTimeout).Plus("slack", 3*time.Second).
		PlusTimes(20, "write round trip", writeRoundTrip(t, b.db))
	if !testutil.Within(t, "Run's return after cancel, under load", took, bound) {
		t.FailNow()
	}
	if p := b.count(t, "status = 'PROCESSING'"); p != 0 {
		t.Fatalf("%d rows left PROCESSING after Run returned", p)
	}
	if r := b.count(t, "topic = 'sd.block' AND status = 'PENDING' AND retry_count = 0 AND failure_reason LIKE 'released at shutdown%'"); r != blockers {
		t.Fatalf("%d cut-off rows back to PENDING without an attempt counted, want %d (%s)", r, blockers, state())
	}
	// Every handler that ran to completion had its outcome written.
	completed := b.count(t, "status = 'COMPLETED'")
	if recorded := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`); recorded != completed {
		t.Fatalf("%d deliveries recorded but %d rows COMPLETED", recorded, completed)
	}
	if r := b.count(t, "retry_count <> 0"); r != 0 {
		t.Fatalf("%d rows had an attempt counted", r)
	}
	if completed == int64(n) {
		t.Fatal("the load was drained before the shutdown")
	}

	// A second dispatcher finishes the queue: nothing lost, nothing twice.
	d2, err := b.ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	d2.Handle("sd", recorder(b.db, b.schema, "second"))
	startDispatcher(t, d2)
	waitUntil(t, 90*time.Second, "the rest of the queue", func() bool { return b.count(t, "status = 'COMPLETED'") == int64(total) }, state)
	b.checkEveryRowDelivered(t, total)
	if dup := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) - int64(total); dup != 0 {
		t.Fatalf("%d duplicate deliveries after a clean shutdown", dup)
	}
	t.Logf("shutdown: Run returned %s after cancel (ShutdownTimeout %s) with %d of %d rows done; %d cut-off rows released; all %d delivered once",
		took.Round(time.Millisecond), cfg.ShutdownTimeout, completed, total, blockers, total)
}

// ---- 9. connection pressure ----

func TestReliabilityConnectionPressure(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	pgtest.ReserveConns(t, 4+1) // the pool of 4 and the listener
	db, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(4)
	ob, err := New(db, Config{Schema: b.schema})
	if err != nil {
		t.Fatal(err)
	}
	// A deadlock stops all progress; a loaded machine only slows it (this
	// test's enqueues took more than the 45 s it once allowed them with a
	// second suite beside it). So the test fails when neither a commit nor
	// a delivery happened for pressureStall, not after a fixed time; the
	// context is a hang guard.
	const pressureStall = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, s := range []Subscription{
		{Name: "plain", TopicPattern: "cp.plain", CallbackMethod: "plain"},
		{Name: "txh", TopicPattern: "cp.tx", CallbackMethod: "txh"},
	} {
		if _, err := ob.Subscribe(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	d, err := ob.NewDispatcher(DispatcherConfig{Name: "pressure", Workers: 32, BatchSize: 64,
		PollInterval: 20 * time.Millisecond, ListenDSN: pgtest.URL(), ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("plain", recorder(db, b.schema, "plain"))
	insert := `INSERT INTO "` + b.schema + `".rel_delivery (queue_id, event_id, worker, attempt) VALUES ($1, $2, 'txh', $3)`
	d.HandleTx("txh", func(ctx context.Context, tx *sql.Tx, dl *Delivery) error {
		_, err := tx.ExecContext(ctx, insert, dl.ID, dl.EventID, dl.Attempt)
		return err
	})
	startDispatcher(t, d)

	const enqueuers, perTx = 8, 10
	n := scaled(2000)
	txs := n / (enqueuers * perTx)
	n = txs * enqueuers * perTx
	errs := make(chan error, enqueuers)
	var committed atomic.Int64
	for e := range enqueuers {
		go func() {
			errs <- func() error {
				for i := range txs {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					for j := range perTx {
						topic := "cp.plain"
						if j%2 == 1 {
							topic = "cp.tx"
						}
						if _, err := ob.Enqueue(ctx, tx, topic, map[string]any{"e": e, "i": i, "j": j}, nil); err != nil {
							_ = tx.Rollback()
							return err
						}
					}
					if err := tx.Commit(); err != nil {
						return err
					}
					committed.Add(1)
				}
				return nil
			}()
		}()
	}
	// Progress: the enqueuers' commits and the handlers' deliveries (read
	// through the test's pool, not the pool of 4 under pressure).
	progress := func() int64 { return committed.Load() + b.q(t, `SELECT count(*) FROM {s}.rel_delivery`) }
	finished := 0
	waitProgress(t, pressureStall, "the enqueuers (deadlocked on a pool of 4 connections?)", func() bool {
		for {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatalf("enqueuer with a pool of 4 connections: %v (%s)", err, b.statusCounts(t))
				}
				finished++
				continue
			default:
			}
			return finished == enqueuers
		}
	}, progress, func() string { return b.statusCounts(t) })
	waitProgress(t, pressureStall, "every row COMPLETED with 4 connections and 32 workers", func() bool {
		return b.count(t, "status = 'COMPLETED'") == int64(n)
	}, progress, func() string { return b.statusCounts(t) })
	b.checkEveryRowDelivered(t, n)
	if total := b.q(t, `SELECT count(*) FROM {s}.rel_delivery`); total != int64(n) {
		t.Fatalf("%d deliveries for %d rows", total, n)
	}
	t.Logf("pressure: %d events from %d enqueuers through a pool of 4 connections, 32 workers: all delivered once", n, enqueuers)
}

// ---- 8. hostile input ----

// injections are SQL (and template) injection attempts: each must be stored
// literally or rejected, never executed.
var injections = []string{
	`'; DROP TABLE event_queue; --`,
	`" OR 1=1 --`,
	`x'); DELETE FROM event_subscription; --`,
	`a' || pg_sleep(5) || '`,
	`$1`, `{s}`, `%s %d %!v`, `\'`, `\\x27`, `E'\x27'`,
}

// usable fails the test unless tx still runs statements: a rejected input
// must not have sent SQL that aborted it.
func usable(t *testing.T, tx *sql.Tx, after string) {
	t.Helper()
	var one int
	if err := tx.QueryRow(`SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("transaction unusable after %s: %v", after, err)
	}
}

func TestReliabilityHostileInput(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	deliveryTable(t, b)
	ctx := ctxT(t)
	tablesBefore := b.q(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, b.schema)

	t.Run("injection", func(t *testing.T) {
		d, err := b.ob.NewDispatcher(fastConfig())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range injections {
			got, err := b.ob.Subscribe(ctx, Subscription{Name: s, TopicPattern: "hostile.#", CallbackMethod: s})
			if err != nil {
				t.Fatalf("Subscribe(%q): %v", s, err)
			}
			back, err := b.ob.GetSubscription(ctx, s)
			if err != nil || back.Name != s || back.CallbackMethod != s || got.ID != back.ID {
				t.Fatalf("subscription %q read back as %+v, %v", s, back, err)
			}
			d.Handle(s, recorder(b.db, b.schema, s))
		}
		url := `https://example.com/hook?q='; DROP TABLE event_queue;--&x="1"`
		if _, err := b.ob.Subscribe(ctx, Subscription{Name: "wh", TopicPattern: "elsewhere", WebhookURL: url}); err != nil {
			t.Fatal(err)
		}
		if back, err := b.ob.GetSubscription(ctx, "wh"); err != nil || back.WebhookURL != url {
			t.Fatalf("webhook URL read back as %q, %v", back.WebhookURL, err)
		}
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		for _, s := range injections {
			if _, err := b.ob.Enqueue(ctx, tx, s, 1, nil); !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("topic %q: err = %v, want ErrInvalidTopic", s, err)
			}
			if _, err := b.ob.Subscribe(ctx, Subscription{Name: "p", TopicPattern: s, CallbackMethod: "p"}); !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("pattern %q: err = %v, want ErrInvalidPattern", s, err)
			}
			usable(t, tx, "topic "+s)
		}
		md := map[string]string{}
		for i, s := range injections {
			md[s] = s
			md[fmt.Sprint("k", i)] = s
		}
		res, err := b.ob.Enqueue(ctx, tx, "hostile.x", map[string]any{"s": injections, "first": injections[0]}, &EnqueueOptions{Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		if res.Deliveries != len(injections) {
			t.Fatalf("fanned out to %d subscriptions, want %d", res.Deliveries, len(injections))
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		for i, s := range injections {
			if n := b.q(t, `SELECT count(*) FROM {s}.system_event WHERE id = $1 AND metadata->>$2 = $3 AND metadata->>$4 = $3 AND payload->'s'->>$5::int = $3`,
				res.EventID, s, s, fmt.Sprint("k", i), i); n != 1 {
				t.Fatalf("injection %q not stored literally in metadata and payload", s)
			}
		}
		startDispatcher(t, d)
		waitUntil(t, 30*time.Second, "delivery to every injected subscription", func() bool {
			return b.count(t, "status = 'COMPLETED'") == int64(len(injections))
		}, func() string { return b.statusCounts(t) })
		if n := b.q(t, `SELECT count(DISTINCT worker) FROM {s}.rel_delivery WHERE worker = ANY($1)`, pq.Array(injections)); n != int64(len(injections)) {
			t.Fatalf("%d handlers with injected names ran, want %d", n, len(injections))
		}
	})

	t.Run("limits", func(t *testing.T) {
		before := b.q(t, `SELECT count(*) FROM {s}.system_event`)
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		topic100 := strings.Repeat("abcdefghi.", 9) + "abcdefghij"
		if len(topic100) != 100 {
			t.Fatal(len(topic100))
		}
		subs := []struct {
			s  Subscription
			ok bool
		}{
			{Subscription{Name: strings.Repeat("n", 100), TopicPattern: topic100, CallbackMethod: strings.Repeat("m", 100)}, true},
			{Subscription{Name: strings.Repeat("é", 100), TopicPattern: "#", CallbackMethod: strings.Repeat("ü", 100)}, true},
			{Subscription{Name: strings.Repeat("n", 101), TopicPattern: "#", CallbackMethod: "m"}, false},
			{Subscription{Name: strings.Repeat("é", 101), TopicPattern: "#", CallbackMethod: "m"}, false},
			{Subscription{Name: "n", TopicPattern: topic100 + "x", CallbackMethod: "m"}, false},
			{Subscription{Name: "n", TopicPattern: "#", CallbackMethod: strings.Repeat("m", 101)}, false},
			{Subscription{Name: "w500", TopicPattern: "#", WebhookURL: "https://example.com/" + strings.Repeat("a", 480)}, true},
			{Subscription{Name: "w501", TopicPattern: "#", WebhookURL: "https://example.com/" + strings.Repeat("a", 481)}, false},
			{Subscription{Name: "bad\xff", TopicPattern: "#", CallbackMethod: "m"}, false},
			{Subscription{Name: "n", TopicPattern: "#", CallbackMethod: "m\xff"}, false},
			{Subscription{Name: "n\x00", TopicPattern: "#", CallbackMethod: "m"}, false},
		}
		for _, c := range subs {
			got, err := b.ob.Subscribe(ctx, c.s)
			if c.ok && (err != nil || got.Name != c.s.Name || got.TopicPattern != c.s.TopicPattern) {
				t.Fatalf("Subscribe(%.30q...) = %v, want it stored", c.s.Name, err)
			}
			if !c.ok && !errors.Is(err, ErrInvalidSubscription) && !errors.Is(err, ErrInvalidPattern) {
				t.Fatalf("Subscribe(%.30q, pattern %d bytes, method %d bytes) = %v, want rejected", c.s.Name, len(c.s.TopicPattern), len(c.s.CallbackMethod), err)
			}
		}
		rejected := []struct {
			name    string
			topic   string
			payload any
			opts    *EnqueueOptions
			want    error
		}{
			{"topic 101", topic100 + "x", 1, nil, ErrInvalidTopic},
			{"topic invalid UTF-8", "a\xff", 1, nil, ErrInvalidTopic},
			{"topic NUL", "a\x00", 1, nil, ErrInvalidTopic},
			{"raw invalid UTF-8", "hostile.x", []byte("\"\xff\""), nil, ErrInvalidPayload},
			// encoding/json would store U+FFFD in their place: refused, never changed silently.
			{"invalid UTF-8 in a Go string", "hostile.x", map[string]string{"s": "a\xffb"}, nil, ErrInvalidPayload},
			{"invalid UTF-8 in metadata", "hostile.x", 1, &EnqueueOptions{Metadata: map[string]string{"k\xff": "v"}}, ErrInvalidPayload},
			{"NUL escape", "hostile.x", json.RawMessage(`{"s":"\u0000"}`), nil, ErrInvalidPayload},
			{"NUL in a Go string", "hostile.x", map[string]string{"s": "a\x00b"}, nil, ErrInvalidPayload},
			{"lone surrogate", "hostile.x", json.RawMessage(`"\ud800"`), nil, ErrInvalidPayload},
			{"NUL in metadata", "hostile.x", 1, &EnqueueOptions{Metadata: map[string]string{"k": "\x00"}}, ErrInvalidPayload},
			{"depth 513", "hostile.x", json.RawMessage(strings.Repeat("[", 513) + strings.Repeat("]", 513)), nil, ErrInvalidPayload},
			{"depth 1e6", "hostile.x", json.RawMessage(strings.Repeat(`{"a":`, 1_000_000) + "1" + strings.Repeat("}", 1_000_000)), nil, ErrPayloadTooLarge},
			{"depth 200k", "hostile.x", json.RawMessage(strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000)), nil, ErrInvalidPayload},
			{"Go value depth 600", "hostile.x", nested(600), nil, ErrInvalidPayload},
			{"not JSON", "hostile.x", json.RawMessage(`{"a":`), nil, ErrInvalidPayload},
			{"trailing data", "hostile.x", json.RawMessage(`{} {}`), nil, ErrInvalidPayload},
			{"1 MiB + 1", "hostile.x", json.RawMessage(`"` + strings.Repeat("a", maxPayloadBytesDefault-1) + `"`), nil, ErrPayloadTooLarge},
		}
		// No rejection may cost more than the old bound of 2 s plus four
		// Enqueues of an accepted payload of the largest size (validated and
		// inserted, then rolled back) on this machine now: a rejection
		// parses at most that much and sends no SQL.
		accepted1MiB := testutil.Slowest(3, func() {
			tx, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback() //nolint:errcheck // never committed
			if _, err := b.ob.Enqueue(ctx, tx, "hostile.x", json.RawMessage(`"`+strings.Repeat("a", maxPayloadBytesDefault-2)+`"`), nil); err != nil {
				t.Fatal(err)
			}
		})
		bound := testutil.Bound{}.Plus("old bound", 2*time.Second).PlusTimes(4, "accepted 1 MiB Enqueue", accepted1MiB)
		var slowest time.Duration
		var slowestName string
		for _, r := range rejected {
			start := time.Now()
			_, err := b.ob.Enqueue(ctx, tx, r.topic, r.payload, r.opts)
			if !errors.Is(err, r.want) {
				t.Fatalf("%s: err = %v, want %v", r.name, err, r.want)
			}
			if took := time.Since(start); took > slowest {
				slowest, slowestName = took, r.name
			}
			usable(t, tx, r.name)
		}
		testutil.Within(t, "slowest rejection ("+slowestName+")", slowest, bound)
		accepted := []struct {
			name    string
			topic   string
			payload any
			opts    *EnqueueOptions
		}{
			{"topic 100", topic100, 1, nil},
			{"depth 512", "hostile.x", json.RawMessage(strings.Repeat("[", 512) + strings.Repeat("]", 512)), nil},
			{"Go value depth 511", "hostile.x", nested(511), nil},
			{"exactly 1 MiB", "hostile.x", json.RawMessage(`"` + strings.Repeat("a", maxPayloadBytesDefault-2) + `"`), nil},
			{"U+FFFD in a Go string", "hostile.x", map[string]string{"s": "a\uFFFDb"}, &EnqueueOptions{Metadata: map[string]string{"k\uFFFD": "v\uFFFD"}}},
			{"surrogate pair", "hostile.x", json.RawMessage(`"\ud83d\ude00"`), nil},
			{"float64 extremes", "hostile.x", []float64{1.7976931348623157e308, 5e-324, -0}, nil},
		}
		for _, a := range accepted {
			if _, err := b.ob.Enqueue(ctx, tx, a.topic, a.payload, a.opts); err != nil {
				t.Fatalf("%s: %v", a.name, err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if n := b.q(t, `SELECT count(*) FROM {s}.system_event`) - before; n != int64(len(accepted)) {
			t.Fatalf("%d events stored, want %d", n, len(accepted))
		}
		if n := b.q(t, `SELECT count(*) FROM {s}.system_event WHERE payload->>'s' = $1 AND metadata->>$2 = $3`, "a\uFFFDb", "k\uFFFD", "v\uFFFD"); n != 1 {
			t.Fatal("U+FFFD in Go strings not stored as it is")
		}
		if n := b.q(t, `SELECT count(*) FROM {s}.system_event WHERE octet_length(payload #>> '{}') = $1`, maxPayloadBytesDefault-2); n != 1 {
			t.Fatal("the 1 MiB payload was not stored whole")
		}
	})

	t.Run("exact limit", func(t *testing.T) {
		const limit = 4096
		ob, err := New(b.db, Config{Schema: b.schema, MaxPayloadBytes: limit})
		if err != nil {
			t.Fatal(err)
		}
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		at := map[string]string{"s": strings.Repeat("x", limit-len(`{"s":""}`))}
		over := map[string]string{"s": strings.Repeat("x", limit-len(`{"s":""}`)+1)}
		if _, err := ob.Enqueue(ctx, tx, "limit.over", over, nil); !errors.Is(err, ErrPayloadTooLarge) {
			t.Fatalf("limit+1 bytes: err = %v, want ErrPayloadTooLarge", err)
		}
		var ve *ValidationError
		if _, err := ob.Enqueue(ctx, tx, "limit.over", over, nil); !errors.As(err, &ve) || ve.Field != "payload" {
			t.Fatalf("limit+1 bytes: err = %v, want a *ValidationError on payload", err)
		}
		usable(t, tx, "a payload one byte over the limit")
		if _, err := ob.Enqueue(ctx, tx, "limit.at", at, nil); err != nil {
			t.Fatalf("payload at the limit: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if n := b.q(t, `SELECT count(*) FROM {s}.system_event WHERE event_type = 'limit.at' AND length(payload->>'s') = $1`, len(at["s"])); n != 1 {
			t.Fatal("payload at the limit not stored")
		}
		if n := b.q(t, `SELECT count(*) FROM {s}.system_event WHERE event_type = 'limit.over'`); n != 0 {
			t.Fatal("payload over the limit stored")
		}
	})

	// Numbers are where JSON's syntax and PostgreSQL's numeric part ways:
	// jsonb cannot hold 1e999999 (the statement would fail and abort the
	// caller's transaction), and holds 1e131071 in a few bytes but prints
	// it as 131,072 digits, so that a small array of them cannot be read
	// back as text at all (the claim of its row would fail forever).
	t.Run("number bombs", func(t *testing.T) {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // never committed
		// No subscription matches bomb.x: even if a bomb were accepted, no
		// dispatcher would try to read it.
		if _, err := b.ob.Enqueue(ctx, tx, "bomb.x", json.RawMessage(`{"n":1e999999}`), nil); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("1e999999: err = %v, want ErrInvalidPayload before any SQL is sent", err)
		}
		usable(t, tx, "a number out of numeric's range")
		bomb := "[" + strings.Repeat("1e131071,", 9000) + "1]" // 81 KB, 1.2 GB as text
		if _, err := b.ob.Enqueue(ctx, tx, "bomb.x", json.RawMessage(bomb), nil); !errors.Is(err, ErrPayloadTooLarge) {
			t.Errorf("%d-byte payload that prints as %d bytes: err = %v, want ErrPayloadTooLarge", len(bomb), 9000*131072, err)
		}
		usable(t, tx, "a number bomb")
		if _, err := b.ob.Enqueue(ctx, tx, "bomb.x", json.RawMessage(`{"n":1e300,"m":-2.5E-300}`), nil); err != nil {
			t.Errorf("float64-range numbers rejected: %v", err)
		}
	})

	if n := b.q(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, b.schema); n != tablesBefore {
		t.Fatalf("tables in the schema: %d, was %d", n, tablesBefore)
	}
}

// nested returns a Go value nested depth arrays deep.
func nested(depth int) any {
	var v any = 1
	for range depth {
		v = []any{v}
	}
	return v
}
