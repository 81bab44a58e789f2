package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/testutil"
)

// TestShutdownReleaseKeepsPlace: a row whose attempt a shutdown cut off goes
// back at its place in line, ahead of the rows enqueued after it, not
// behind them (issue 13).
func TestShutdownReleaseKeepsPlace(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "rel", "rel.*", "rel")
	first := b.enqueue(t, "rel.block", 1)
	const later = 5
	for i := range later {
		b.enqueue(t, "rel.later", i)
	}
	cfg := fastConfig()
	cfg.Workers, cfg.BatchSize, cfg.ShutdownTimeout = 1, 1, 100*time.Millisecond
	d1, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan string, later+1)
	d1.Handle("rel", func(ctx context.Context, dl *Delivery) error {
		started <- dl.Topic
		<-ctx.Done() // cut off by the shutdown
		return ctx.Err()
	})
	stop := startDispatcher(t, d1)
	if got := testutil.Recv(t, started); got != "rel.block" {
		t.Fatalf("first claim took %s, want the oldest row", got)
	}
	stop()
	var dueIsCreated bool
	if err := b.db.QueryRowContext(ctx, `SELECT COALESCE(next_retry_at, created_at) = created_at FROM "`+b.schema+`".event_queue
		WHERE event_id = $1 AND status = 'PENDING' AND retry_count = 0 AND failure_reason LIKE 'released at shutdown%'`,
		first.EventID).Scan(&dueIsCreated); err != nil {
		t.Fatalf("released row: %v (%s)", err, b.statusCounts(t))
	}
	if !dueIsCreated {
		t.Fatal("the released row's due time moved: it lost its place in line")
	}

	d2, err := b.ob.NewDispatcher(DispatcherConfig{Name: "second", Workers: 1, BatchSize: 1, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan string, later+1)
	d2.Handle("rel", func(_ context.Context, dl *Delivery) error { order <- dl.Topic; return nil })
	startDispatcher(t, d2)
	if got := testutil.Recv(t, order); got != "rel.block" {
		t.Fatalf("after the restart %s was delivered first; the released row, enqueued first, went behind it", got)
	}
	for range later {
		testutil.Recv(t, order)
	}
}
