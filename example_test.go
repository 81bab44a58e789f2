package outbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/outboxkit/outbox"
)

// The whole flow: a subscription, an event enqueued in a business
// transaction, and a dispatcher delivering it to a handler.
func Example() {
	ob, dsn, done := exampleOutbox() // outbox.New on your *sql.DB, then Migrate at start-up
	defer done()
	ctx := context.Background()
	db := ob.DB()

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
	delivered := make(chan struct{})
	d.Handle("send_mail", func(ctx context.Context, dl *outbox.Delivery) error {
		fmt.Printf("%s %s (attempt %d)\n", dl.Topic, dl.Payload, dl.Attempt)
		close(delivered)
		return nil
	})
	runCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	stopped := make(chan error)
	go func() { stopped <- d.Run(runCtx) }()
	select {
	case <-delivered:
	case err := <-stopped: // Run ended (10 s passed) before the delivery
		panic(fmt.Sprintf("no delivery: %v", err))
	}
	stop() // in a service: on SIGTERM
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
