package outbox_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outboxkit/outbox"
)

// The event is written through the business transaction: it exists if and
// only if the transaction commits.
func ExampleOutbox_Enqueue() {
	ob, _, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	db := ob.DB()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "mailer", TopicPattern: "order.*", CallbackMethod: "send_mail"}); err != nil {
		panic(err)
	}

	// An order placed: the order row and its event commit together.
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

	// An order that fails after its event was enqueued: the rollback takes
	// the event with it.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	if _, err := ob.Enqueue(ctx, tx, "order.created", map[string]any{"order_id": 43}, nil); err != nil {
		panic(err)
	}
	if err := tx.Rollback(); err != nil {
		panic(err)
	}

	stats, err := ob.Stats(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("pending:", stats.ByStatus[outbox.StatusPending])
	// Output:
	// deliveries: 1
	// pending: 1
}

// Many events in one statement and one round trip, each with its own
// options.
func ExampleOutbox_EnqueueBatch() {
	ob, _, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	for _, s := range []outbox.Subscription{
		{Name: "mailer", TopicPattern: "order.*", CallbackMethod: "send_mail"},
		{Name: "audit", TopicPattern: "#", CallbackMethod: "audit"},
	} {
		if _, err := ob.Subscribe(ctx, s); err != nil {
			panic(err)
		}
	}

	tx, err := ob.DB().BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback()
	results, err := ob.EnqueueBatch(ctx, tx, []outbox.Event{
		{Topic: "order.created", Payload: map[string]any{"order_id": 1}},
		{Topic: "order.shipped", Payload: map[string]any{"order_id": 1}, Options: &outbox.EnqueueOptions{Delay: time.Hour}},
		{Topic: "invoice.paid", Payload: map[string]any{"invoice_id": 7}},
	})
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}
	for _, r := range results {
		fmt.Println("deliveries:", r.Deliveries)
	}
	// Output:
	// deliveries: 2
	// deliveries: 2
	// deliveries: 1
}

// Events with the same ordering key reach each subscription one at a time,
// in the order they were enqueued; events of other keys flow in parallel.
func ExampleEnqueueOptions_orderingKey() {
	ob, dsn, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "ledger", TopicPattern: "account.#", CallbackMethod: "post"}); err != nil {
		panic(err)
	}
	tx, err := ob.DB().BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback()
	for _, e := range []struct{ account, topic string }{
		{"acct-1", "account.opened"}, {"acct-2", "account.opened"},
		{"acct-1", "account.credited"}, {"acct-2", "account.closed"},
		{"acct-1", "account.debited"}, {"acct-1", "account.closed"},
	} {
		opts := &outbox.EnqueueOptions{OrderingKey: e.account}
		if _, err := ob.Enqueue(ctx, tx, e.topic, map[string]string{"account": e.account}, opts); err != nil {
			panic(err)
		}
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn, Workers: 8})
	if err != nil {
		panic(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string][]string{} // topics handled, per account
		all  = make(chan struct{})
		n    int
	)
	d.Handle("post", outbox.Typed(func(ctx context.Context, dl *outbox.Delivery, p map[string]string) error {
		mu.Lock()
		defer mu.Unlock()
		seen[p["account"]] = append(seen[p["account"]], strings.TrimPrefix(dl.Topic, "account."))
		if n++; n == 6 {
			close(all)
		}
		return nil
	}))
	runUntil(d, all)
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		fmt.Println(k, seen[k])
	}
	// Output:
	// acct-1 [opened credited debited closed]
	// acct-2 [opened closed]
}

// An idempotency key makes a retried request enqueue its event once: the
// second Enqueue inserts nothing and reports the first event's id.
func ExampleEnqueueOptions_idempotencyKey() {
	ob, _, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "billing", TopicPattern: "payment.received", CallbackMethod: "book"}); err != nil {
		panic(err)
	}
	opts := &outbox.EnqueueOptions{IdempotencyKey: "payment:pi_3Mtw"} // the client's request id
	var ids []string
	for range 2 { // the client retried its request
		res, err := ob.Enqueue(ctx, ob.DB(), "payment.received", map[string]int{"amount": 1500}, opts)
		if err != nil {
			panic(err)
		}
		fmt.Printf("duplicate: %v, deliveries: %d\n", res.Duplicate, res.Deliveries)
		ids = append(ids, res.EventID.String())
	}
	fmt.Println("same event:", ids[0] == ids[1])
	// Output:
	// duplicate: false, deliveries: 1
	// duplicate: true, deliveries: 0
	// same event: true
}
