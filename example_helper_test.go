package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/pgtest"
)

// exampleOutbox opens the database at DATABASE_URL (default: the local
// server, database test), migrates a fresh schema of its own, and returns a
// handle on it (logging nothing: the examples' output is what they print),
// the DSN (for DispatcherConfig.ListenDSN), and done, which drops the schema
// and closes the database.
func exampleOutbox() (ob *outbox.Outbox, dsn string, done func()) {
	dsn = pgtest.URL()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		panic(err)
	}
	// The shared server's connections are budgeted (see package pgtest):
	// examples run one at a time, after the tests, and a dispatcher's
	// workers queue for a connection.
	db.SetMaxOpenConns(4)
	schema := "example_" + pgtest.NewName()
	drop := func() {
		_, _ = db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
		_ = db.Close()
	}
	ob, err = outbox.New(db, outbox.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = ob.Migrate(ctx)
		cancel()
	}
	if err != nil {
		drop()
		panic(err)
	}
	return ob, dsn, drop
}

// runUntil runs d until done is closed, then stops it and waits for Run
// to return (every outcome written). It panics, rather than hang, if done
// is not closed within 10 seconds or Run fails.
func runUntil(d *outbox.Dispatcher, done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- d.Run(ctx) }()
	select {
	case <-done:
	case err := <-stopped:
		panic(fmt.Sprintf("Run returned before the deliveries: %v", err))
	case <-time.After(10 * time.Second):
		panic("no delivery within 10 seconds")
	}
	cancel()
	if err := <-stopped; err != nil {
		panic(err)
	}
}
