package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/outboxkit/outbox"
)

// A handler whose effects live in the same database commits them with the
// row's completion: a failed attempt leaves nothing behind, so the effect
// happens exactly once however often the event is retried.
func ExampleDispatcher_HandleTx() {
	ob, dsn, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	db := ob.DB()
	emails := `"` + ob.Schema() + `".emails_sent` // an application table
	if _, err := db.Exec(`CREATE TABLE ` + emails + ` (event_id uuid PRIMARY KEY)`); err != nil {
		panic(err)
	}
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "mailer", TopicPattern: "user.signed_up", CallbackMethod: "welcome"}); err != nil {
		panic(err)
	}
	if _, err := ob.Enqueue(ctx, db, "user.signed_up", map[string]string{"email": "ada@example.com"}, nil); err != nil {
		panic(err)
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn, PollInterval: 50 * time.Millisecond, BackoffInitial: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	delivered := make(chan struct{})
	d.HandleTx("welcome", func(ctx context.Context, tx *sql.Tx, dl *outbox.Delivery) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+emails+` (event_id) VALUES ($1)`, dl.EventID); err != nil {
			return err
		}
		if dl.Attempt == 1 {
			return errors.New("mail server unavailable") // rolls the insert back
		}
		close(delivered)
		return nil // the insert and the completion commit together
	})
	runUntil(d, delivered)

	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + emails).Scan(&n); err != nil {
		panic(err)
	}
	fmt.Println("emails sent:", n)
	// Output:
	// emails sent: 1
}

// OrderPlaced is the payload of order.placed events.
type OrderPlaced struct {
	OrderID int    `json:"order_id"`
	Email   string `json:"email"`
}

// Typed decodes the payload before the handler runs; a payload that does
// not decode fails its row at once.
func ExampleTyped() {
	ob, dsn, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "receipts", TopicPattern: "order.placed", CallbackMethod: "receipt"}); err != nil {
		panic(err)
	}
	if _, err := ob.Enqueue(ctx, ob.DB(), "order.placed", OrderPlaced{OrderID: 42, Email: "ada@example.com"}, nil); err != nil {
		panic(err)
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn})
	if err != nil {
		panic(err)
	}
	handled := make(chan struct{})
	d.Handle("receipt", outbox.Typed(func(ctx context.Context, dl *outbox.Delivery, o OrderPlaced) error {
		fmt.Printf("receipt for order %d to %s\n", o.OrderID, o.Email)
		close(handled)
		return nil
	}))
	runUntil(d, handled)
	// Output:
	// receipt for order 42 to ada@example.com
}

// Permanent fails the row at once: no retry, whatever max_retries allows.
// The row waits among the dead letters for RetryFailed or DiscardFailed.
func ExamplePermanent() {
	ob, dsn, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "payments", TopicPattern: "payment.requested", CallbackMethod: "charge"}); err != nil {
		panic(err)
	}
	if _, err := ob.Enqueue(ctx, ob.DB(), "payment.requested", map[string]int{"amount": 1500}, nil); err != nil {
		panic(err)
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn})
	if err != nil {
		panic(err)
	}
	handled := make(chan struct{})
	d.Handle("charge", func(ctx context.Context, dl *outbox.Delivery) error {
		defer close(handled)
		return outbox.Permanent(errors.New("card declined")) // retrying cannot help
	})
	runUntil(d, handled) // Run writes every outcome before it returns

	failed, err := ob.ListFailed(ctx, outbox.FailedFilter{})
	if err != nil {
		panic(err)
	}
	for _, r := range failed {
		fmt.Printf("%s: %s (attempts: %d of %d allowed)\n", r.Subscription, r.FailureReason, r.RetryCount, r.MaxRetries+1)
	}
	// Output:
	// payments: permanent: card declined (attempts: 1 of 4 allowed)
}

// RetryAfter chooses the delay before the next attempt, such as the one a
// rate-limited API asked for, instead of the backoff.
func ExampleRetryAfter() {
	ob, dsn, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "crm", TopicPattern: "customer.updated", CallbackMethod: "sync"}); err != nil {
		panic(err)
	}
	if _, err := ob.Enqueue(ctx, ob.DB(), "customer.updated", map[string]int{"customer_id": 7}, nil); err != nil {
		panic(err)
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn, PollInterval: 50 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	var first time.Time
	synced := make(chan struct{})
	d.Handle("sync", func(ctx context.Context, dl *outbox.Delivery) error {
		if dl.Attempt == 1 {
			first = time.Now()
			return outbox.RetryAfter(200*time.Millisecond, errors.New("429 Too Many Requests"))
		}
		fmt.Printf("attempt %d, at least 200ms later: %v\n", dl.Attempt, time.Since(first) >= 200*time.Millisecond)
		close(synced)
		return nil
	})
	runUntil(d, synced)
	// Output:
	// attempt 2, at least 200ms later: true
}

// Run returns once its context ends: it stops claiming rows, lets the
// handlers in flight finish (for up to ShutdownTimeout), writes their
// outcomes, and returns nil when all its goroutines have ended.
func ExampleDispatcher_Run_shutdown() {
	ob, dsn, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "reports", TopicPattern: "report.requested", CallbackMethod: "render"}); err != nil {
		panic(err)
	}
	if _, err := ob.Enqueue(ctx, ob.DB(), "report.requested", map[string]int{"report_id": 1}, nil); err != nil {
		panic(err)
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn, ShutdownTimeout: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	started, finish := make(chan struct{}), make(chan struct{})
	d.Handle("render", func(ctx context.Context, dl *outbox.Delivery) error {
		close(started)
		<-finish // a long piece of work
		fmt.Println("handler finished, its context:", ctx.Err())
		return nil
	})

	runCtx, shutdown := context.WithCancel(ctx) // in a service: signal.NotifyContext
	stopped := make(chan error, 1)
	go func() { stopped <- d.Run(runCtx) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		panic("no delivery within 10 seconds")
	}
	shutdown()    // SIGTERM arrives while the handler runs
	close(finish) // the work completes
	select {
	case err := <-stopped:
		fmt.Println("Run returned:", err)
	case <-time.After(40 * time.Second):
		panic("Run did not return")
	}

	stats, err := ob.Stats(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("completed:", stats.ByStatus[outbox.StatusCompleted])
	// Output:
	// handler finished, its context: <nil>
	// Run returned: <nil>
	// completed: 1
}
