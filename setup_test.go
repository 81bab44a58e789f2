package outbox

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
)

// bundle is what setup gives a test: a migrated handle in a schema of its own.
type bundle struct {
	db     *sql.DB
	ob     *Outbox
	schema string
	clock  *testutil.Clock
}

// setup migrates a fresh schema and returns a handle on it. cfg may be nil.
func setup(t testing.TB, cfg *Config) *bundle {
	t.Helper()
	db := pgtest.DB(t)
	schema := pgtest.Schema(t)
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Schema = schema
	if c.WebhookAllowedNetworks == nil {
		// Tests deliver to httptest receivers on loopback.
		c.WebhookAllowedNetworks = loopbackNetworks
	}
	if c.Keys == nil && !c.AllowPlaintextSecrets {
		// Secrets at rest need a key (or the plaintext opt-in).
		c.Keys = newTestKeys(t, "test-key")
	}
	ob, err := New(db, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &bundle{db: db, ob: ob, schema: schema}
}

// setupClock is setup with a test clock that only moves when told.
func setupClock(t testing.TB, cfg *Config) *bundle {
	t.Helper()
	clk := testutil.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Test.Clock = clk.Now
	b := setup(t, &c)
	b.clock = clk
	return b
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func intPtr(n int) *int { return &n }

// writeRoundTrip returns the slowest of three one-statement write
// transactions through db (the statement takes a transaction id, so that
// its commit is flushed like a real write's), pool wait included: what a
// write costs on this machine now, for time bounds that allow a number of
// writes.
func writeRoundTrip(t testing.TB, db *sql.DB) time.Duration {
	t.Helper()
	ctx := ctxT(t)
	return testutil.Slowest(3, func() {
		if _, err := db.ExecContext(ctx, `SELECT pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
	})
}

// countRows counts the rows of a table of b's schema matching where ("" for
// all).
func (b *bundle) countRows(t testing.TB, table, where string, args ...any) int64 {
	t.Helper()
	return testutil.CountRows(t, b.db, b.schema, table, where, args...)
}

// defaultLease is DispatcherConfig.LeaseDuration's documented default.
const defaultLease = 30 * time.Second

// idMap runs query (two columns: a row id and a value) on b's database
// and returns the values by id.
func idMap[V any](t testing.TB, b *bundle, query string) map[uuid.UUID]V {
	t.Helper()
	rows, err := b.db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uuid.UUID]V{}
	for rows.Next() {
		var id uuid.UUID
		var v V
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// duplicatesIn returns, per queue row recorded more than once in table,
// how many times.
func (b *bundle) duplicatesIn(t testing.TB, table string) map[uuid.UUID]int {
	t.Helper()
	return idMap[int](t, b, `SELECT queue_id, count(*) FROM "`+b.schema+`".`+table+` GROUP BY 1 HAVING count(*) > 1`)
}

// rowDigests maps each row of a log to the md5 of its text.
func (b *bundle) rowDigests(t testing.TB, table string) map[uuid.UUID]string {
	t.Helper()
	return idMap[string](t, b, `SELECT id, md5(r::text) FROM "`+b.schema+`".`+table+` r`)
}
