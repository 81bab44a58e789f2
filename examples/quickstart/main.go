// Command quickstart is an order service in miniature: it inserts an order
// and enqueues order.created in the same transaction, subscribes a mailer
// handler, and runs the dispatcher. The mailer fails once and succeeds on the
// retry. A second order whose transaction rolls back is never delivered.
//
//	go run ./examples/quickstart
//
// It reads DATABASE_URL (default: the local PostgreSQL, database test) and
// works in its own schema, outbox_quickstart, which it recreates on each run.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/subconfig"
)

const schema = "outbox_quickstart"

// OrderCreated is the payload of order.created.
type OrderCreated struct {
	OrderID  int64  `json:"order_id"`
	Customer string `json:"customer"`
	TotalCts int64  `json:"total_cents"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	// A fresh start: the outbox tables and the application's orders table.
	if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return fmt.Errorf("is PostgreSQL running at %s? %w", dsn, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ob, err := outbox.New(db, outbox.Config{Schema: schema, Logger: logger})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE `+schema+`.orders (
		id bigserial PRIMARY KEY, customer text NOT NULL, total_cents bigint NOT NULL)`); err != nil {
		return err
	}

	// The mailer subscribes to every order.* event; retries start at 200 ms.
	if _, err := ob.Subscribe(ctx, outbox.Subscription{
		Name: "mailer", TopicPattern: "order.*", CallbackMethod: "mailer",
		Config: subconfig.Config{BackoffInitial: subconfig.Duration(200 * time.Millisecond)},
	}); err != nil {
		return err
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn, Name: "quickstart"})
	if err != nil {
		return err
	}
	var attempts atomic.Int32
	delivered := make(chan OrderCreated, 1)
	d.Handle("mailer", outbox.Typed(func(ctx context.Context, dl *outbox.Delivery, o OrderCreated) error {
		n := attempts.Add(1)
		if n == 1 {
			fmt.Printf("mailer: attempt %d for order %d: SMTP server busy, will retry\n", dl.Attempt, o.OrderID)
			return errors.New("smtp: 421 service not available")
		}
		fmt.Printf("mailer: attempt %d for order %d: confirmation sent to %s (event %s)\n", dl.Attempt, o.OrderID, o.Customer, dl.EventID)
		delivered <- o
		return nil
	}))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(runCtx) }()

	// Order 1 commits: its event is delivered.
	started := time.Now()
	id, err := placeOrder(ctx, db, ob, "ada@example.com", 4999, true)
	if err != nil {
		return err
	}
	fmt.Printf("order %d committed with its order.created event\n", id)
	// Order 2 rolls back: no order, no event.
	if _, err := placeOrder(ctx, db, ob, "bob@example.com", 1999, false); err != nil {
		return err
	}
	fmt.Println("order 2 rolled back: its event vanished with it")

	select {
	case o := <-delivered:
		fmt.Printf("order %d delivered after %d attempts in %s\n", o.OrderID, attempts.Load(), time.Since(started).Round(time.Millisecond))
	case <-ctx.Done():
		return errors.New("the event was not delivered in time")
	}
	stop()
	if err := <-runDone; err != nil {
		return err
	}
	st, err := ob.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("queue: %d completed, %d pending, %d failed; rows of rolled-back orders: 0\n",
		st.ByStatus[outbox.StatusCompleted], st.ByStatus[outbox.StatusPending], st.ByStatus[outbox.StatusFailed])
	if st.ByStatus[outbox.StatusCompleted] != 1 || len(st.ByStatus) != 1 {
		return fmt.Errorf("unexpected queue state: %v", st.ByStatus)
	}
	return nil
}

// placeOrder inserts an order and enqueues order.created in one transaction,
// then commits it (or rolls it back, to show that the event goes too).
func placeOrder(ctx context.Context, db *sql.DB, ob *outbox.Outbox, customer string, cents int64, commit bool) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO `+schema+`.orders (customer, total_cents) VALUES ($1, $2) RETURNING id`,
		customer, cents).Scan(&id); err != nil {
		return 0, err
	}
	if _, err := ob.Enqueue(ctx, tx, "order.created", OrderCreated{OrderID: id, Customer: customer, TotalCts: cents}, nil); err != nil {
		return 0, err
	}
	if !commit {
		return id, tx.Rollback()
	}
	return id, tx.Commit()
}
