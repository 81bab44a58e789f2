package recordbuf

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/goleak"

	"github.com/outboxkit/outbox/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sink stores what Write gets. Items are ints whose group is v/1000; a
// group's fail makes its writes fail while set, its hold makes them wait
// until released (or their context ends).
type sink struct {
	mu       sync.Mutex
	got      []int
	batches  []int
	fail     map[int]error
	hold     map[int]chan struct{}
	attempts map[int]int
	mixed    bool // a batch held items of two groups
}

func groupOf(v int) int { return v / 1000 }

func (s *sink) write(ctx context.Context, batch []int) error {
	g := groupOf(batch[0])
	s.mu.Lock()
	for _, v := range batch {
		s.mixed = s.mixed || groupOf(v) != g
	}
	if s.attempts == nil {
		s.attempts = map[int]int{}
	}
	s.attempts[g]++
	hold, fail := s.hold[g], s.fail[g]
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, batch...)
	s.batches = append(s.batches, len(batch))
	return nil
}

// set sets fail and hold of group 0.
func (s *sink) set(fail error, hold chan struct{}) { s.setGroup(0, fail, hold) }

func (s *sink) setGroup(g int, fail error, hold chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		s.fail, s.hold = map[int]error{}, map[int]chan struct{}{}
	}
	s.fail[g], s.hold[g] = fail, hold
}

func (s *sink) n() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// nGroup returns how many items of group g were written.
func (s *sink) nGroup(g int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.got {
		if groupOf(v) == g {
			n++
		}
	}
	return n
}

func (s *sink) attemptsOf(g int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[g]
}

func ident(v int) (int, error) { return v, nil }

func fastBackOff() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }

func newBuf(t *testing.T, s *sink, cfg Config[int, int, int]) *Buffer[int, int, int] {
	t.Helper()
	if cfg.Prepare == nil {
		cfg.Prepare = ident
	}
	cfg.Write = s.write
	if cfg.NewBackOff == nil {
		cfg.NewBackOff = fastBackOff
	}
	return New(cfg)
}

// eventually waits for cond, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func closeNow(t *testing.T, b *Buffer[int, int, int]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBatchesAndFlushAtClose(t *testing.T) {
	t.Parallel()
	s := &sink{}
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 10, FlushInterval: time.Hour})
	for i := range 25 {
		if err := b.Add(context.Background(), i, 1); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "two full batches", func() bool { return s.n() == 20 })
	closeNow(t, b)
	if s.n() != 25 {
		t.Fatalf("%d written, want 25", s.n())
	}
	for i, v := range s.got {
		if v != i {
			t.Fatalf("order: %v", s.got)
		}
	}
	st := b.Stats()
	if st.Written != 25 || st.Accepted != 25 || st.Buffered != 0 || st.BufferedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := b.Add(context.Background(), 99, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if b.Stats().Dropped != 1 {
		t.Fatalf("drop after close not counted: %+v", b.Stats())
	}
}

func TestFlushInterval(t *testing.T) {
	t.Parallel()
	s := &sink{}
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 100, FlushInterval: 5 * time.Millisecond})
	defer closeNow(t, b)
	b.Add(context.Background(), 1, 1)
	eventually(t, "a partial batch after the flush interval", func() bool { return s.n() == 1 })
}

func TestDropWhenFullWhileRetrying(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.set(errors.New("db down"), nil)
	var dropped sync.Map
	// BlockTimeout is not the Drop policy's: an hour here, so that an Add
	// that waited for room at all (which never comes while the sink
	// fails) would wait far past the hang guard below, whatever the load.
	b := newBuf(t, s, Config[int, int, int]{MaxItems: 5, BatchSize: 2, FlushInterval: time.Millisecond, BlockTimeout: time.Hour,
		OnDrop: func(n int) { dropped.Store("n", n) }})
	for i := range 5 {
		if err := b.Add(context.Background(), i, 1); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "retries", func() bool { return b.Stats().Retries >= 2 })
	// The batch being retried still counts against the bound, and the
	// record is dropped at once. Room never comes while the sink fails, so
	// an Add that waited would return only at its context's end: that
	// replaces a bound of 50 ms on the Add, which measured the machine's
	// load as much as a wait in Add.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Add(ctx, 5, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("Add to a full buffer: %v, want ErrFull at once (a wait for room would end with the context)", err)
	}
	if st := b.Stats(); st.Dropped != 1 || st.Buffered != 5 {
		t.Fatalf("stats %+v", st)
	}
	s.set(nil, nil)
	closeNow(t, b)
	if s.n() != 5 {
		t.Fatalf("%d written after recovery, want 5", s.n())
	}
	if v, _ := dropped.Load("n"); v != 1 {
		t.Fatalf("OnDrop got %v", v)
	}
}

func TestBytesBound(t *testing.T) {
	t.Parallel()
	s := &sink{}
	hold := make(chan struct{})
	s.set(nil, hold)
	b := newBuf(t, s, Config[int, int, int]{MaxBytes: 100, BatchSize: 1})
	if err := b.Add(context.Background(), 1, 60); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(context.Background(), 2, 60); !errors.Is(err, ErrFull) {
		t.Fatalf("over the byte bound: %v", err)
	}
	if err := b.Add(context.Background(), 3, 40); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(context.Background(), 4, 101); !errors.Is(err, ErrFull) {
		t.Fatalf("item larger than the bound: %v", err)
	}
	close(hold)
	closeNow(t, b)
	if st := b.Stats(); st.Written != 2 || st.Dropped != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBlockPolicy(t *testing.T) {
	t.Parallel()
	s := &sink{}
	hold := make(chan struct{})
	s.set(nil, hold)
	b := newBuf(t, s, Config[int, int, int]{MaxItems: 2, BatchSize: 2, FlushInterval: time.Millisecond,
		Policy: Block, BlockTimeout: 20 * time.Millisecond})
	b.Add(context.Background(), 1, 1)
	b.Add(context.Background(), 2, 1)
	// The Add waits BlockTimeout for room (which never comes while the
	// sink holds), then drops: at least BlockTimeout, and at most that
	// plus the old bound's slack plus ten times this machine's timer lag,
	// measured right after.
	start := time.Now()
	if err := b.Add(context.Background(), 3, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("blocked Add: %v", err)
	}
	d := time.Since(start)
	if d < 20*time.Millisecond {
		t.Fatalf("Block waited %s, want at least BlockTimeout (20ms)", d)
	}
	bound := testutil.Bound{}.Plus("BlockTimeout", 20*time.Millisecond).Plus("slack", 980*time.Millisecond).
		PlusTimes(10, "timer lag", testutil.TimerLag(5, 20*time.Millisecond))
	testutil.Within(t, "Add to a full buffer under Block", d, bound)
	// Room made while a caller waits lets it in.
	errc := make(chan error, 1)
	go func() {
		ctx := context.Background()
		errc <- b.Add(ctx, 4, 1)
	}()
	close(hold)
	closeErr := b.Close(context.Background())
	if err := <-errc; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if closeErr != nil {
		t.Fatal(closeErr)
	}
}

func TestRejectedItems(t *testing.T) {
	t.Parallel()
	s := &sink{}
	b := newBuf(t, s, Config[int, int, int]{Prepare: func(v int) (int, error) {
		if v%2 == 1 {
			return 0, fmt.Errorf("odd %d", v)
		}
		return v, nil
	}})
	for i := range 6 {
		b.Add(context.Background(), i, 1)
	}
	closeNow(t, b)
	if st := b.Stats(); st.Written != 3 || st.Rejected != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseDeadlineReportsUnwritten(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.set(errors.New("db down"), nil)
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 2})
	for i := range 5 {
		b.Add(context.Background(), i, 1)
	}
	// Close returns at its deadline (the writes fail for ever): within the
	// old bound's slack plus ten times this machine's timer lag, measured
	// right after.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Close(ctx)
	d := time.Since(start)
	bound := testutil.Bound{}.Plus("Close's context", 50*time.Millisecond).Plus("slack", 1950*time.Millisecond).
		PlusTimes(10, "timer lag", testutil.TimerLag(5, 10*time.Millisecond))
	testutil.Within(t, "Close with a 50ms context", d, bound)
	var nw *NotWrittenError
	if !errors.As(err, &nw) || nw.Count != 5 || !errors.Is(err, ErrNotWritten) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, "lost counted", func() bool { return b.Stats().Lost == 5 })
}

func TestCloseDoesNotWaitOnAStuckWrite(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	b := New(Config[int, int, int]{BatchSize: 1, Prepare: ident, Write: func(context.Context, []int) error {
		signal(entered)
		<-release // a driver that ignores its context
		return nil
	}})
	b.Add(context.Background(), 1, 1)
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); !errors.Is(err, ErrNotWritten) {
		t.Fatalf("Close: %v", err)
	}
	close(release) // the writer ends once the driver returns (goleak checks)
	<-b.done
}

func TestWritePermanentError(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.set(backoff.Permanent(errors.New("tx done")), nil)
	b := newBuf(t, s, Config[int, int, int]{})
	b.Add(context.Background(), 1, 1)
	if err := b.Close(context.Background()); !errors.Is(err, ErrNotWritten) {
		t.Fatalf("Close: %v", err)
	}
	if st := b.Stats(); st.Lost != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}
