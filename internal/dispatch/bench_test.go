package dispatch

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/subconfig"
)

// Benchmarks of the pure functions on the delivery path. They send no SQL:
//
//	go test -run XXX -bench . -benchmem ./internal/dispatch

func BenchmarkDecide(b *testing.B) {
	bo := Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 2}
	c := &Row{Token: "bench/0123456789abcdef", RetryCount: 1}
	c.Delivery.ID = uuid.Must(uuid.NewV7())
	c.Delivery.MaxRetries = 3
	cases := []struct {
		name string
		sub  subconfig.Config
		err  error
	}{
		{"success", subconfig.Config{}, nil},
		{"retry_backoff", subconfig.Config{}, errors.New("smtp: 421 service not available")},
		{"retry_schedule", subconfig.Config{RetrySchedule: []subconfig.Duration{subconfig.Duration(time.Second), subconfig.Duration(time.Minute)}}, errors.New("busy")},
		{"retry_after", subconfig.Config{}, RetryAfter(time.Minute, errors.New("429"))},
		{"permanent", subconfig.Config{}, Permanent(errors.New("bad payload"))},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Config = tc.sub
				_ = decide(c, bo, tc.err)
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
