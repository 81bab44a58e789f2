package outbox

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/jsontext"
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
				if _, err := encodeJSON(c.v, "payload", maxPayloadBytesDefault); err != nil {
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
				if err := jsontext.Check(c.b); err != nil {
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
		opts    *EnqueueOptions
	}{
		{"raw", benchPayload, nil},
		{"struct", order, nil},
		{"struct_options", order, &EnqueueOptions{Delay: time.Second, MaxRetries: intPtr(5),
			Metadata: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}},
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
