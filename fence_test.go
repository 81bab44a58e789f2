package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/fence"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/internal/testutil"
	migrations "github.com/outboxkit/outbox/schema"
)

// futureMigration does to b's schema what a later release's migration does
// to the fence (docs/schema.md, "Version fence"): schema_version and
// golang-migrate's history to version, min_release raised to minRelease,
// and the NOTIFY, in one transaction as a migration file runs.
func futureMigration(t testing.TB, db *sql.DB, schema string, version, minRelease int) {
	t.Helper()
	q := fmt.Sprintf(`UPDATE %[1]q.outboxkit_fence SET schema_version = %[2]d, min_release = GREATEST(min_release, %[3]d), updated_at = now();
		UPDATE %[1]q.%[4]s SET version = %[2]d, dirty = false;
		SELECT pg_notify(left('outboxkit_' || %[5]s, 63), 'fence')`, schema, version, minRelease, MigrationsTable, pq.QuoteLiteral(schema))
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
}

// lowerFence sets min_release down to minRelease, as reverting a later
// release's migration does.
func lowerFence(t testing.TB, db *sql.DB, schema string, version, minRelease int) {
	t.Helper()
	q := fmt.Sprintf(`UPDATE %[1]q.outboxkit_fence SET schema_version = %[2]d, min_release = %[3]d;
		UPDATE %[1]q.%[4]s SET version = %[2]d, dirty = false;
		SELECT pg_notify(left('outboxkit_' || %[5]s, 63), 'fence')`, schema, version, minRelease, MigrationsTable, pq.QuoteLiteral(schema))
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
}

// handleFor returns another handle on b's schema with cfg (its Schema,
// keys and networks filled in from b's); release, when positive, makes it
// play that release (a future one) for the fence.
func handleFor(t testing.TB, b *bundle, cfg Config, release int) *Outbox {
	t.Helper()
	cfg.Schema = b.schema
	if cfg.Keys == nil {
		cfg.Keys = b.ob.keys
	}
	if cfg.WebhookAllowedNetworks == nil {
		cfg.WebhookAllowedNetworks = loopbackNetworks
	}
	ob, err := New(b.db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if release > 0 {
		ob.fence = fence.New(ob.st, ob.log, &fence.Options{Release: release, MinSchema: release, Interval: cfg.Test.FenceInterval})
	}
	return ob
}

// asFence returns err as a *SchemaFenceError, failing the test otherwise.
func asFence(t testing.TB, what string, err error) *SchemaFenceError {
	t.Helper()
	var fe *SchemaFenceError
	if !errors.As(err, &fe) || !errors.Is(err, ErrSchemaFenced) {
		t.Fatalf("%s: error %v, want a *SchemaFenceError", what, err)
	}
	return fe
}

// enqueueIn enqueues one event in a transaction of its own and returns
// Enqueue's error; the transaction is committed when Enqueue succeeded,
// and when it failed it must still be usable (the fence's read sent no
// failing statement).
func enqueueIn(t testing.TB, ob *Outbox, topic string) error {
	t.Helper()
	ctx := context.Background()
	tx, err := ob.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := ob.Enqueue(ctx, tx, topic, map[string]int{"n": 1}, nil); err != nil {
		if _, uerr := tx.ExecContext(ctx, `SELECT 1`); uerr != nil {
			t.Fatalf("transaction unusable after Enqueue's %v: %v", err, uerr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return nil
}

// runDispatcher runs d and returns a channel that receives Run's result;
// Run is stopped, if it still runs, when the test ends.
func runDispatcher(t *testing.T, d *Dispatcher) (stop func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() { ch <- d.Run(ctx); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return cancel, ch
}

func TestFenceWrittenByMigration(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var version, minRelease int
	if err := b.db.QueryRow(`SELECT schema_version, min_release FROM "`+b.schema+`".outboxkit_fence`).Scan(&version, &minRelease); err != nil {
		t.Fatal(err)
	}
	// This release is 10 (its last migration) and admits v0.2 (9) beside it.
	if version != fence.Release || minRelease != 9 || latestMigration(t) != fence.Release || fence.MinSchema != 9 {
		t.Fatalf("fence (%d, %d), release %d, last migration %d", version, minRelease, fence.Release, latestMigration(t))
	}
	if store.MigrationsTable != MigrationsTable {
		t.Fatalf("store.MigrationsTable %q, MigrationsTable %q", store.MigrationsTable, MigrationsTable)
	}
	if _, err := b.db.Exec(`INSERT INTO "` + b.schema + `".outboxkit_fence (singleton, schema_version, min_release) VALUES (true, 10, 9)`); err == nil {
		t.Fatal("a second fence row was accepted")
	}
	if _, err := b.db.Exec(`UPDATE "` + b.schema + `".outboxkit_fence SET min_release = 11`); err == nil {
		t.Fatal("min_release above schema_version accepted")
	}
	if err := enqueueIn(t, b.ob, "x"); err != nil {
		t.Fatal(err)
	}
	// Every down and up file of a version that moves the fence announces it.
	for _, f := range []string{"000010_version_fence.up.sql", "000010_version_fence.down.sql"} {
		text, err := migrations.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), `pg_notify(left('outboxkit_' || current_schema(), 63), 'fence')`) {
			t.Errorf("%s sends no fence NOTIFY", f)
		}
	}
}

// The migration's NOTIFY reaches the channel dispatchers LISTEN on, in both
// directions.
func TestFenceMigrationNotifies(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := pq.NewListener(pgtest.URL(), 10*time.Millisecond, time.Second, nil)
	defer l.Close()
	if err := l.Listen(store.Channel(b.schema)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, step := range []func() error{
		func() error { return b.ob.MigrateTo(ctx, 9) },
		func() error { return b.ob.Migrate(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-l.Notify:
			if n == nil || n.Extra != store.FenceNotifyPayload {
				t.Fatalf("notification %+v", n)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no NOTIFY from the migration")
		}
	}
}

// A later release's migration raises the fence above this release: a
// running dispatcher hears it at once (NOTIFY, long before the 30 s
// interval), stops, and says why; Enqueue, Subscribe, Migrate, a new Run
// and a fresh handle all refuse with a *SchemaFenceError, leaving the
// caller's transaction usable; lowering the fence again admits them.
func TestFenceRaisedStopsThisRelease(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	b.subscribe(t, "a", "#", "a")
	cfg := fastConfig()
	app := "fence-" + b.schema
	cfg.ListenDSN = dsnApp(app)
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 10)
	d.Handle("a", func(context.Context, *Delivery) error { got <- struct{}{}; return nil })
	_, done := runDispatcher(t, d)
	b.enqueue(t, "x", 1)
	testutil.Recv(t, got)
	waitUntil(t, 30*time.Second, "LISTEN", func() bool { return listening(t, b.db, app) }, nil)

	start := time.Now()
	futureMigration(t, b.db, b.schema, 11, 11)
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(fence.IntervalDefault - time.Second):
		t.Fatal("the dispatcher did not stop on the migration's NOTIFY")
	}
	fe := asFence(t, "Run", runErr)
	if !fe.TooOld() || fe.Release != 10 || fe.MinRelease != 11 || fe.Schema != 11 {
		t.Fatalf("Run's error %+v", fe)
	}
	t.Logf("dispatcher stopped %s after the fence moved", time.Since(start).Round(time.Millisecond))
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "schema fenced") ||
		!strings.Contains(out, "admits releases 11 and later") {
		t.Fatalf("no Error log saying why:\n%s", out)
	}

	ctx := ctxT(t)
	asFence(t, "Enqueue", enqueueIn(t, b.ob, "x"))
	if _, err := b.ob.EnqueueBatch(ctx, b.db, []Event{{Topic: "x", Payload: 1}}); err == nil {
		t.Fatal("EnqueueBatch accepted")
	}
	asFence(t, "Subscribe", func() error {
		_, err := b.ob.Subscribe(ctx, Subscription{Name: "b", TopicPattern: "#", CallbackMethod: "b"})
		return err
	}())
	_, done2 := runDispatcher(t, d)
	asFence(t, "second Run", <-done2)

	// A process started after the migration: its first Enqueue reads the
	// fence through the caller's transaction; its Migrate applies nothing.
	fresh := handleFor(t, b, Config{}, 0)
	asFence(t, "fresh Enqueue", enqueueIn(t, fresh, "x"))
	fresh2 := handleFor(t, b, Config{}, 0)
	if fe := asFence(t, "Migrate", fresh2.Migrate(ctx)); !fe.TooOld() {
		t.Fatalf("Migrate: %+v", fe)
	}
	if n := b.count(t, "true"); n != 1 {
		t.Fatalf("%d queue rows, want the 1 enqueued before the fence", n)
	}

	// The later release's migration reverted: admitted again.
	lowerFence(t, b.db, b.schema, 10, 9)
	if err := handleFor(t, b, Config{}, 0).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := enqueueIn(t, handleFor(t, b, Config{}, 0), "x"); err != nil {
		t.Fatal(err)
	}
}

// A schema that a newer release migrated, and that still admits this one
// (an additive migration): Migrate applies nothing and does not fail on a
// version it has no file for, and everything runs.
func TestFenceNewerSchemaStillAdmits(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	futureMigration(t, b.db, b.schema, 12, 9)
	ctx := ctxT(t)
	ob := handleFor(t, b, Config{}, 0)
	if err := ob.Migrate(ctx); err != nil {
		t.Fatalf("Migrate on a newer schema that admits this release: %v", err)
	}
	if err := enqueueIn(t, ob, "x"); err != nil {
		t.Fatal(err)
	}
	d, err := ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("a", func(context.Context, *Delivery) error { return nil })
	startDispatcher(t, d)
	waitFor(t, "delivery", func() bool { return b.count(t, "status = 'COMPLETED'") == 1 })
	if err := ob.MigrateTo(ctx, 9); err == nil || !strings.Contains(err.Error(), "newer than this release") {
		t.Fatalf("MigrateTo on a newer schema: %v", err)
	}
}

// A process newer than its schema (migrations not applied yet, or applied
// by another tool later) refuses with a clear error instead of failing on
// missing columns; a future release plays the same part against this
// schema.
func TestFenceSchemaBehindRelease(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	// Never migrated: no tables at all.
	ob, _, _ := unmigrated(t)
	fe := asFence(t, "Enqueue on an empty schema", enqueueIn(t, ob, "x"))
	if fe.TooOld() || fe.Schema != 0 || fe.NeedsSchema != 9 || !strings.Contains(fe.Error(), "apply the migrations") {
		t.Fatalf("%+v: %v", fe, fe)
	}
	// v0.1's schema (version 8): columns this release names are missing.
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	b.enqueue(t, "x", 1)
	if err := b.ob.MigrateTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	old := handleFor(t, b, Config{}, 0)
	fe = asFence(t, "Enqueue on version 8", enqueueIn(t, old, "x"))
	if fe.TooOld() || fe.Schema != 8 || !strings.Contains(fe.Error(), "is at version 8") {
		t.Fatalf("%+v", fe)
	}
	d, err := old.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("a", func(context.Context, *Delivery) error { return nil })
	_, done := runDispatcher(t, d)
	asFence(t, "Run on version 8", <-done)
	// The handle that moved the schema back knows too.
	asFence(t, "Enqueue through the handle that migrated down", enqueueIn(t, b.ob, "x"))
	if err := old.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := enqueueIn(t, old, "x"); err != nil {
		t.Fatal(err)
	}
	// Version 9 (v0.2's, or 10 reverted): this release runs on it.
	if err := b.ob.MigrateTo(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if err := enqueueIn(t, handleFor(t, b, Config{}, 0), "x"); err != nil {
		t.Fatalf("this release on version 9: %v", err)
	}
	if err := b.ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// A future release that needs version 11, against this schema (10).
	future := handleFor(t, b, Config{}, 11)
	fe = asFence(t, "future release", enqueueIn(t, future, "x"))
	if fe.TooOld() || fe.Release != 11 || fe.Schema != 10 {
		t.Fatalf("%+v", fe)
	}
}

// queryCounter counts the fence reads sent through it.
type queryCounter struct {
	Querier
	fenceReads atomic.Int64
}

func (q *queryCounter) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if strings.Contains(query, "min_release FROM") {
		q.fenceReads.Add(1)
	}
	return q.Querier.QueryRowContext(ctx, query, args...)
}

// Enqueue reads the fence once per interval, never per event, and a handle
// that only enqueues (no dispatcher, no LISTEN) notices a raised fence
// within one interval.
func TestFenceEnqueueReadsOncePerInterval(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	const interval = 300 * time.Millisecond
	ob := handleFor(t, b, Config{Test: TestConfig{FenceInterval: interval}}, 0)
	ctx := ctxT(t)
	q := &queryCounter{Querier: b.db}
	start := time.Now()
	n := 0
	for time.Since(start) < interval/3 || n < 50 {
		if _, err := ob.Enqueue(ctx, q, "x", n, nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	// One read per elapsed interval at most.
	elapsed := time.Since(start)
	if reads, most := q.fenceReads.Load(), int64(elapsed/interval+1); reads > most {
		t.Fatalf("%d fence reads for %d events in %s, want at most %d", reads, n, elapsed, most)
	}
	futureMigration(t, b.db, b.schema, 11, 11)
	refusedAt := time.Time{}
	moved := time.Now()
	for refusedAt.IsZero() {
		_, err := ob.Enqueue(ctx, q, "x", 1, nil)
		switch {
		case errors.Is(err, ErrSchemaFenced):
			refusedAt = time.Now()
		case err != nil:
			t.Fatal(err)
		case time.Since(moved) > 30*time.Second:
			t.Fatal("Enqueue never noticed the fence")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Within one interval, plus what a few Enqueue calls took on this
	// machine in this run.
	perCall := elapsed / time.Duration(n)
	if waited, most := refusedAt.Sub(moved), interval+20*perCall+500*time.Millisecond; waited > most {
		t.Fatalf("Enqueue refused %s after the fence moved, interval %s, %s per call: want at most %s", waited, interval, perCall, most)
	}
}

// A dispatcher that polls only hears no NOTIFY: it reads the fence every
// interval, and stops within one.
func TestFencePollOnlyDispatcherStopsWithinInterval(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	const interval = 200 * time.Millisecond
	ob := handleFor(t, b, Config{Test: TestConfig{FenceInterval: interval}}, 0)
	cfg := fastConfig()
	cfg.PollOnly = true
	d, err := ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("a", func(context.Context, *Delivery) error { return nil })
	_, done := runDispatcher(t, d)
	b.enqueue(t, "x", 1)
	waitFor(t, "delivery", func() bool { return b.count(t, "status = 'COMPLETED'") == 1 })
	moved := time.Now()
	futureMigration(t, b.db, b.schema, 11, 11)
	select {
	case err := <-done:
		asFence(t, "Run", err)
		t.Logf("poll-only dispatcher stopped %s after the fence moved (interval %s)", time.Since(moved).Round(time.Millisecond), interval)
	case <-time.After(30 * time.Second):
		t.Fatal("the poll-only dispatcher did not stop")
	}
}

// A dispatcher fenced off while it delivers: the running handler's context
// is cancelled, its outcome is not written (the row keeps its lease), and
// a release the schema admits takes the row when the lease expires.
func TestFenceStopsInFlightDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	cfg := fastConfig()
	cfg.Name = "old"
	app := "fence-" + b.schema
	cfg.ListenDSN = dsnApp(app)
	cfg.LeaseDuration = time.Second
	cfg.HeartbeatInterval = 200 * time.Millisecond
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	d.Handle("a", func(ctx context.Context, _ *Delivery) error {
		started <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		return nil // even a "success" after the fence is not written
	})
	_, done := runDispatcher(t, d)
	waitUntil(t, 30*time.Second, "LISTEN", func() bool { return listening(t, b.db, app) }, nil)
	b.enqueue(t, "x", 1)
	testutil.Recv(t, started)
	futureMigration(t, b.db, b.schema, 11, 11)
	testutil.Recv(t, cancelled)
	asFence(t, "Run", testutil.Recv(t, done))
	if n := b.count(t, "status = 'PROCESSING' AND locked_by LIKE 'old/%'"); n != 1 {
		t.Fatalf("the fenced dispatcher's row: %s", b.statusCounts(t))
	}
	// The release that raised the fence rescues and delivers it.
	future := handleFor(t, b, Config{}, 11)
	fcfg := fastConfig()
	fcfg.Name = "new"
	fcfg.RescueInterval = 100 * time.Millisecond
	fd, err := future.NewDispatcher(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	var again atomic.Int32
	fd.Handle("a", func(context.Context, *Delivery) error { again.Add(1); return nil })
	startDispatcher(t, fd)
	waitFor(t, "the row delivered by the admitted release", func() bool {
		return b.count(t, "status = 'COMPLETED' AND failure_reason LIKE 'lease expired: dispatcher old/%'") == 1
	})
	if again.Load() != 1 {
		t.Fatalf("admitted release delivered %d times", again.Load())
	}
}
