package outbox

import (
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Benchmarks of the pure functions on the enqueue and delivery paths. They
// send no SQL. Run them with
//
//	go test -run XXX -bench . -benchmem .
//
// The end-to-end figures (throughput against the PostgreSQL limit, latency,
// round trips) come from cmd/outboxbench.

var benchPayload = json.RawMessage(`{"order_id":123456789,"customer_id":"cust-123456789","currency":"EUR","items":[{"sku":"SKU-123456789","qty":2,"price_cents":1999},{"sku":"SKU-123456789","qty":1,"price_cents":4999}],"source":"checkout-service"}`)

type benchOrder struct {
	OrderID    int64  `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Currency   string `json:"currency"`
	Items      []struct {
		SKU        string `json:"sku"`
		Qty        int    `json:"qty"`
		PriceCents int    `json:"price_cents"`
	} `json:"items"`
	Source string `json:"source"`
}

var sinkBool bool

func BenchmarkMatchTopic(b *testing.B) {
	cases := []struct{ pattern, topic string }{
		{"orders.created", "orders.created"},
		{"orders.*", "orders.created"},
		{"#", "orders.eu.created.v2"},
		{"orders.#.v2", "orders.eu.created.v2"},
		{"*.*.*.miss", "orders.eu.created.v2"},
	}
	for _, c := range cases {
		b.Run(c.pattern, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkBool = MatchTopic(c.pattern, c.topic)
			}
		})
	}
}

func BenchmarkValidTopic(b *testing.B) {
	for _, topic := range []string{"orders.created", "billing.invoice.eu-west-1.payment_failed.v2"} {
		b.Run(fmt.Sprint(len(topic)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkBool = ValidTopic(topic)
			}
		})
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	var order benchOrder
	if err := json.Unmarshal(benchPayload, &order); err != nil {
		b.Fatal(err)
	}
	big := make([]benchOrder, 50) // ~10 KiB
	for i := range big {
		big[i] = order
	}
	cases := []struct {
		name string
		v    any
	}{
		{"raw_200B", benchPayload},
		{"struct_200B", order},
		{"map_200B", map[string]any{"order_id": 123456789, "customer_id": "cust-123456789", "currency": "EUR", "source": "checkout-service"}},
		{"struct_10KiB", big},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encodeJSON(c.v, "payload", MaxPayloadBytesDefault); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckJSON(b *testing.B) {
	escaped := json.RawMessage(`{"text":"caf\u00e9 \ud83d\ude00 \"quoted\" line\nbreak","n":[1,2,3,{"a":[true,false,null]}]}`)
	for _, c := range []struct {
		name string
		b    []byte
	}{{"200B", benchPayload}, {"escapes", escaped}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.b)))
			for b.Loop() {
				if err := checkJSON(c.b); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchOutbox(b *testing.B) *Outbox {
	b.Helper()
	db, err := sql.Open("postgres", "") // never connects: prepareEvent sends no SQL
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	o, err := New(db, Config{})
	if err != nil {
		b.Fatal(err)
	}
	return o
}

func BenchmarkPrepareEvent(b *testing.B) {
	o := benchOutbox(b)
	var order benchOrder
	if err := json.Unmarshal(benchPayload, &order); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name    string
		payload any
		opts    []EnqueueOption
	}{
		{"raw", benchPayload, nil},
		{"struct", order, nil},
		{"struct_options", order, []EnqueueOption{WithDelay(time.Second), WithMaxRetries(5),
			WithMetadata(map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := o.prepareEvent("orders.created", c.payload, c.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	o := benchOutbox(b)
	d, err := o.NewDispatcher(DispatcherConfig{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	c := &claimedRow{token: "bench/0123456789abcdef", retryCount: 1}
	c.delivery.ID = uuid.Must(uuid.NewV7())
	c.delivery.MaxRetries = 3
	cases := []struct {
		name string
		sub  SubscriptionConfig
		err  error
	}{
		{"success", SubscriptionConfig{}, nil},
		{"retry_backoff", SubscriptionConfig{}, errors.New("smtp: 421 service not available")},
		{"retry_schedule", SubscriptionConfig{RetrySchedule: []Duration{Duration(time.Second), Duration(time.Minute)}}, errors.New("busy")},
		{"retry_after", SubscriptionConfig{}, RetryAfter(time.Minute, errors.New("429"))},
		{"permanent", SubscriptionConfig{}, Permanent(errors.New("bad payload"))},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = d.decide(c, tc.sub, tc.err)
			}
		})
	}
}

var sinkDuration time.Duration

func BenchmarkBackoffDelay(b *testing.B) {
	for _, n := range []int{1, 5, 20} {
		b.Run(fmt.Sprint("retry_", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkDuration = backoffDelay(n, time.Second, time.Hour, 2)
			}
		})
	}
}

// BenchmarkOutcomeBatchEncode measures what one outcome write costs in Go
// for a batch of 100 outcomes: the parameter arrays that flush builds and
// their encoding by lib/pq (pq.Array's Value), i.e. everything but the
// round trip. "successes" takes the lean CompleteMany statement (ids and
// tokens); "mixed" has one retry among 99 successes and takes the full one.
func BenchmarkOutcomeBatchEncode(b *testing.B) {
	successes := make([]outcome, 100)
	for i := range successes {
		successes[i] = outcome{id: uuid.Must(uuid.NewV7()), token: "bench-host-1234/0123456789abcdef", status: StatusCompleted}
	}
	mixed := slices.Clone(successes)
	mixed[7] = outcome{id: uuid.Must(uuid.NewV7()), token: mixed[0].token, status: StatusPending, inc: 1,
		delay: 2 * time.Second, reason: "smtp: 421 service not available"}
	for _, c := range []struct {
		name  string
		batch []outcome
	}{{"successes", successes}, {"mixed", mixed}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				w, _ := outcomeArgs(c.batch)
				for _, a := range w.args {
					if _, err := a.(driver.Valuer).Value(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
