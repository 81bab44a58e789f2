package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
)

// The whole flow: a subscription, an event enqueued in a business
// transaction, and a dispatcher delivering it to a handler.
func Example() {
	ctx := context.Background()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		panic(err)
	}
	defer db.Close()
	_, _ = db.Exec(`DROP SCHEMA IF EXISTS outbox_example CASCADE`)
	defer db.Exec(`DROP SCHEMA IF EXISTS outbox_example CASCADE`) //nolint:errcheck

	ob, err := outbox.New(db, outbox.Config{Schema: "outbox_example"})
	if err != nil {
		panic(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "mailer", TopicPattern: "order.*", CallbackMethod: "send_mail"}); err != nil {
		panic(err)
	}

	// In the business transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	res, err := ob.Enqueue(ctx, tx, "order.created", map[string]any{"order_id": 42}, nil)
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}
	fmt.Println("deliveries:", res.Deliveries)

	// The dispatcher, usually started once at boot.
	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn})
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	d.Handle("send_mail", func(ctx context.Context, dl *outbox.Delivery) error {
		fmt.Printf("%s %s (attempt %d)\n", dl.Topic, dl.Payload, dl.Attempt)
		close(done)
		return nil
	})
	runCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	stopped := make(chan error)
	go func() { stopped <- d.Run(runCtx) }()
	select {
	case <-done:
	case err := <-stopped: // Run ended (10 s passed) before the delivery
		panic(fmt.Sprintf("no delivery: %v", err))
	}
	stop()
	if err := <-stopped; err != nil {
		panic(err)
	}
	// Output:
	// deliveries: 1
	// order.created {"order_id": 42} (attempt 1)
}

func ExampleMatchTopic() {
	fmt.Println(outbox.MatchTopic("order.*", "order.created"))
	fmt.Println(outbox.MatchTopic("order.*", "order.item.added"))
	fmt.Println(outbox.MatchTopic("order.#", "order.item.added"))
	fmt.Println(outbox.MatchTopic("#.failed", "payment.card.failed"))
	// Output:
	// true
	// false
	// true
	// true
}
