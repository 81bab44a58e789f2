package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/redact"
	migrations "github.com/outboxkit/outbox/schema"
	"github.com/outboxkit/outbox/subconfig"
)

// unmigrated returns a handle on a fresh schema that has no tables yet.
func unmigrated(t *testing.T) (ob *Outbox, db *sql.DB, schema string) {
	t.Helper()
	db = pgtest.DB(t)
	schema = pgtest.Schema(t)
	ob, err := New(db, Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	return ob, db, schema
}

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	ob, db, schema := unmigrated(t)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- ob.Migrate(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var version int
	var dirty bool
	if err := db.QueryRowContext(ctx, `SELECT version, dirty FROM "`+schema+`".`+MigrationsTable).Scan(&version, &dirty); err != nil {
		t.Fatal(err)
	}
	if want := latestMigration(t); version != want || dirty {
		t.Fatalf("migrations table: version %d dirty %v, want version %d", version, dirty, want)
	}
	for _, table := range []string{"system_event", "event_queue", "event_subscription", "integration_log", "security_event"} {
		if n := countRows(t, db, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2`, schema, table); n != 1 {
			t.Errorf("table %s.%s missing", schema, table)
		}
	}
	// Down removes everything but the migrations table.
	if err := ob.MigrateDown(ctx); err != nil {
		t.Fatal(err)
	}
	left := countRows(t, db, `SELECT
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname <> $2 AND c.relname NOT LIKE $2 || '%')
		+ (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typtype = 'e')
		+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1)`, schema, MigrationsTable)
	if left != 0 {
		t.Fatalf("after MigrateDown %d objects remain in %s", left, schema)
	}
	// And up again works.
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"system_event", "event_queue", "event_subscription", "integration_log", "security_event"} {
		if n := countRows(t, db, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2`, schema, table); n != 1 {
			t.Errorf("table %s.%s missing after down and up again", schema, table)
		}
	}
}

// latestMigration is the highest version among the embedded migrations.
func latestMigration(t *testing.T) int {
	t.Helper()
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	latest := 0
	for _, e := range entries {
		var v int
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil {
			latest = max(latest, v)
		}
	}
	return latest
}

func countRows(t testing.TB, db interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestConfigRedactionAppliesToHandleRecords: the rules of Config.Redaction
// scrub the records the handle writes itself. A webhook delivery carries a
// value only the extra rule redacts (the built-in rules keep it), in its
// URL's query and in its body; the receiver gets it, and the attempt's
// integration_log row does not hold it.
func TestConfigRedactionAppliesToHandleRecords(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	if _, err := New(db, Config{Redaction: &redact.Rules{MaxBodyBytes: -1}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad redaction rules accepted: %v", err)
	}
	const tenant = "acme-tenant-7f3c"
	if out, err := redact.Default().JSON(json.RawMessage(`{"tenant":"` + tenant + `"}`)); err != nil || !strings.Contains(string(out), tenant) {
		t.Fatalf("the built-in rules redact the value already (%s, %v): the test would prove nothing", out, err)
	}
	b := setup(t, &Config{Redaction: &redact.Rules{Keys: []string{"tenant"}}})
	srv, got := testutil.Receiver(t, testutil.Status(http.StatusNoContent))
	b.subscribeWebhook(t, "partner", "order.*", srv.URL+"/hook?tenant="+tenant+"&page=2", subconfig.Config{})
	b.enqueue(t, "order.created", map[string]any{"tenant": tenant, "n": 1})
	startDispatcher(t, whDispatcher(t, b, nil))
	if r := testutil.Recv(t, got); !strings.Contains(string(r.Body), tenant) {
		t.Fatalf("the delivery does not carry the value: %s", r.Body)
	}
	waitFor(t, "the attempt's record", func() bool { return b.attempts(t, "partner", "success") == 1 })
	var req string
	if err := db.QueryRow(`SELECT request_data::text FROM "` + b.schema + `".integration_log WHERE integration_name = 'partner'`).Scan(&req); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(req, "page=2") || !strings.Contains(req, `"n": 1`) || !strings.Contains(req, redact.Marker) {
		t.Fatalf("attempt record without its URL or body: %s", req)
	}
	if n := b.countRows(t, "integration_log", "strpos(integration_log::text, $1) > 0", tenant); n != 0 {
		t.Fatalf("application redaction rule not applied to the webhook attempt record: %s", req)
	}
}

func TestTwoSchemasSideBySide(t *testing.T) {
	t.Parallel()
	a := setup(t, nil)
	b := setup(t, nil)
	a.subscribe(t, "s", "#", "h")
	b.subscribe(t, "s", "#", "h")
	ra := a.enqueue(t, "x", 1)
	b.enqueue(t, "x", 2)
	b.enqueue(t, "x", 3)
	if a.count(t, "true") != 1 || b.count(t, "true") != 2 || a.count(t, "event_id = $1", ra.EventID) != 1 {
		t.Fatal("schemas share rows")
	}
	// Dropping one schema's objects leaves the other working.
	if err := a.ob.MigrateDown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if res := b.enqueue(t, "x", 4); res.Deliveries != 1 {
		t.Fatalf("second schema after the first was migrated down: %+v", res)
	}
}

// TestMigration7CopiesMetadataToQueue: rows enqueued before version 7 that
// may still be delivered take their event's metadata into the queue row,
// where the claim now reads it.
func TestMigration7CopiesMetadataToQueue(t *testing.T) {
	t.Parallel()
	ob, db, schema := unmigrated(t)
	ctx := ctxT(t)
	if err := ob.migrateTo(ctx, 6); err != nil {
		t.Fatal(err)
	}
	b := &bundle{db: db, ob: ob, schema: schema}
	// Version 6's columns (Subscribe writes version 9's).
	var sub Subscription
	if err := db.QueryRowContext(ctx, `INSERT INTO "`+schema+`".event_subscription (subscriber_name, event_pattern, callback_method)
		VALUES ('s', '#', 'h') RETURNING id`).Scan(&sub.ID); err != nil {
		t.Fatal(err)
	}
	// What version 6's Enqueue wrote: metadata on the event only.
	if _, err := db.ExecContext(ctx, `SET search_path TO "`+schema+`";
		INSERT INTO system_event (id, event_type, payload, metadata, occurred_at) VALUES
			('01900000-0000-7000-8000-000000000001', 'x', '1', '{"trace":"a"}', now()),
			('01900000-0000-7000-8000-000000000002', 'x', '2', '{"trace":"b"}', now()),
			('01900000-0000-7000-8000-000000000003', 'x', '3', NULL, now());
		INSERT INTO event_queue (event_id, subscription_id, topic, payload, status) VALUES
			('01900000-0000-7000-8000-000000000001', '`+sub.ID.String()+`', 'x', '1', 'PENDING'),
			('01900000-0000-7000-8000-000000000002', '`+sub.ID.String()+`', 'x', '2', 'COMPLETED'),
			('01900000-0000-7000-8000-000000000003', '`+sub.ID.String()+`', 'x', '3', 'FAILED');
		RESET search_path`); err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, "metadata->>'trace' = 'a' AND status = 'PENDING'"); n != 1 {
		t.Fatal("a pending row did not take its event's metadata")
	}
	if n := b.count(t, "metadata IS NULL"); n != 2 {
		t.Fatalf("%d rows without metadata, want 2 (a finished row and an event without any)", n)
	}
	// A process of the previous version, still running during a rolling
	// upgrade, inserts a row without the column: its delivery still carries
	// the event's metadata (and a row of this version, its own).
	if _, err := db.ExecContext(ctx, `SET search_path TO "`+schema+`";
		INSERT INTO system_event (id, event_type, payload, metadata, occurred_at) VALUES
			('01900000-0000-7000-8000-000000000004', 'old', '4', '{"trace":"old"}', now());
		INSERT INTO event_queue (event_id, subscription_id, topic, payload) VALUES
			('01900000-0000-7000-8000-000000000004', '`+sub.ID.String()+`', 'old', '4');
		RESET search_path`); err != nil {
		t.Fatal(err)
	}
	b.enqueue(t, "new", 5, &EnqueueOptions{Metadata: map[string]string{"trace": "new"}})
	d, err := ob.NewDispatcher(fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 3)
	d.Handle("h", func(_ context.Context, dl *Delivery) error {
		got <- dl.Topic + "=" + dl.Metadata["trace"]
		return nil
	})
	stop := startDispatcher(t, d)
	seen := map[string]bool{}
	for range 3 {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("deliveries so far: %v", seen)
		}
	}
	stop()
	if !seen["x=a"] || !seen["old=old"] || !seen["new=new"] {
		t.Fatalf("deliveries with metadata: %v; want x=a, old=old, new=new", seen)
	}
	if err := ob.MigrateDown(ctx); err != nil {
		t.Fatal(err)
	}
}

// migrateTo moves the schema to one version (tests of a migration's data step).
func (o *Outbox) migrateTo(ctx context.Context, version uint) error {
	return o.MigrateTo(ctx, int(version))
}
