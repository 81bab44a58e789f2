package securitylog_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"testing"
	"time"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/securitylog"
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
	if c.Keys == nil {
		// As the root's tests: a handle with an encryption key.
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			t.Fatal(err)
		}
		kp, err := keys.Static(keys.Key{ID: "test-key", Secret: key})
		if err != nil {
			t.Fatal(err)
		}
		c.Keys = kp
	}
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

// newLog returns the security log of b's handle.
func newLog(t testing.TB, b *bundle, cfg securitylog.Config) *securitylog.Log {
	t.Helper()
	l, err := securitylog.New(b.ob, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// countRows counts the rows of a table of b's schema matching where ("" for
// all).
func (b *bundle) countRows(t testing.TB, table, where string, args ...any) int64 {
	t.Helper()
	return testutil.CountRows(t, b.db, b.schema, table, where, args...)
}
