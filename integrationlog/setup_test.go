package integrationlog_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
)

// bundle is what setup gives a test: a migrated handle in a schema of its
// own, and the clock when setupClock made it.
type bundle struct {
	db     *sql.DB
	ob     *outbox.Outbox
	schema string
	clock  *testutil.Clock
}

// setup migrates a fresh schema and returns a handle on it. cfg may be nil.
func setup(t testing.TB, cfg *outbox.Config) *bundle {
	t.Helper()
	db := pgtest.DB(t)
	schema := pgtest.Schema(t)
	c := outbox.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Schema = schema
	ob, err := outbox.New(db, c)
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
func setupClock(t testing.TB, cfg *outbox.Config) *bundle {
	t.Helper()
	clk := testutil.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c := outbox.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Test.Clock = clk.Now
	b := setup(t, &c)
	b.clock = clk
	return b
}

// newLog returns the integration log of b's handle, closed when the test
// ends (a second Close is a no-op).
func newLog(t testing.TB, b *bundle, cfg integrationlog.Config) *integrationlog.Log {
	t.Helper()
	l := logOn(t, b.ob, cfg)
	t.Cleanup(func() { closeLog(t, l) })
	return l
}

// handleOn returns a handle on db in schema, not migrated, logging to
// logger (nil: nowhere): for the tests whose database is not the shared
// one, or fails.
func handleOn(t testing.TB, db *sql.DB, schema string, logger *slog.Logger) *outbox.Outbox {
	t.Helper()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ob, err := outbox.New(db, outbox.Config{Schema: schema, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// logOn returns the integration log of ob. The test closes it (with a
// context of its choosing: its database may never answer).
func logOn(t testing.TB, ob *outbox.Outbox, cfg integrationlog.Config) *integrationlog.Log {
	t.Helper()
	l, err := integrationlog.New(ob, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// closeLog closes l, flushing what Transport and Middleware buffered.
func closeLog(t testing.TB, l *integrationlog.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// listAll lists every record f selects, following the cursor page by page.
func listAll(t testing.TB, l *integrationlog.Log, f integrationlog.Filter) []integrationlog.Record {
	t.Helper()
	var out []integrationlog.Record
	for {
		page, err := l.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Records...)
		if page.Next == "" {
			return out
		}
		f.Cursor = page.Next
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// countRows counts the rows of a table of b's schema matching where ("" for
// all).
func (b *bundle) countRows(t testing.TB, table, where string, args ...any) int64 {
	t.Helper()
	return testutil.CountRows(t, b.db, b.schema, table, where, args...)
}

// jsonHas reports whether compact JSON text holds sub (jsonb renders
// objects with spaces).
func jsonHas(raw json.RawMessage, sub string) bool {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return false
	}
	return strings.Contains(buf.String(), sub)
}
