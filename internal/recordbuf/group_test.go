package recordbuf

import (
	"context"
	"errors"
	"testing"
	"time"
)

// groupBuf returns a buffer that groups items by groupOf: group 0 holds
// 0..999, group 1 holds 1000..1999.
func groupBuf(t *testing.T, s *sink, cfg Config[int, int, int]) *Buffer[int, int, int] {
	t.Helper()
	cfg.Group = groupOf
	return newBuf(t, s, cfg)
}

// A group whose writes fail holds back no other group; when it recovers
// before its bound, every one of its items is written.
func TestGroupFailingDoesNotHoldBackOthers(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.setGroup(1, errors.New("db down"), nil)
	b := groupBuf(t, s, Config[int, int, int]{BatchSize: 4, FlushInterval: time.Millisecond, MaxRetryTime: time.Hour})
	defer closeNow(t, b)
	for i := range 10 {
		add(t, b, 1000+i) // the failing group first
	}
	for i := range 20 {
		add(t, b, i)
	}
	eventually(t, "the healthy group written", func() bool { return s.nGroup(0) == 20 })
	eventually(t, "the failing group retried", func() bool { return s.attemptsOf(1) >= 3 })
	if st := b.Stats(); st.Buffered != 10 || st.Written != 20 || st.Lost != 0 {
		t.Fatalf("stats while group 1 fails: %+v", st)
	}
	s.setGroup(1, nil, nil)
	if err := b.Flush(ctxLong(t)); err != nil {
		t.Fatal(err)
	}
	if n := s.nGroup(1); n != 10 {
		t.Fatalf("%d items of the recovered group written, want 10", n)
	}
	if s.mixed {
		t.Fatal("a batch held items of two groups")
	}
}

// A group whose write hangs (until its WriteTimeout) holds back no other
// group either.
func TestGroupHangingDoesNotHoldBackOthers(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.setGroup(1, nil, make(chan struct{})) // never released: the attempt ends with its context
	b := groupBuf(t, s, Config[int, int, int]{BatchSize: 4, FlushInterval: time.Millisecond, WriteTimeout: time.Hour})
	add(t, b, 1000, 1001)
	eventually(t, "the hanging write under way", func() bool { return s.attemptsOf(1) == 1 })
	add(t, b, 1, 2, 3)
	eventually(t, "the healthy group written", func() bool { return s.nGroup(0) == 3 })
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := b.Flush(short)
	var nw *NotWrittenError
	if !errors.As(err, &nw) || nw.Count != 2 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush: %v, want the hanging group's 2 items", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = b.Close(ctx)
	if !errors.As(err, &nw) || nw.Count != 2 {
		t.Fatalf("Close: %v, want the hanging group's 2 items", err)
	}
	<-b.done
	if st := b.Stats(); st.Written != 3 || st.Lost != 2 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A group failing for MaxRetryTime gives up the batch it retries and the
// items queued behind it, exactly those; while it keeps failing, a later
// batch gets one attempt; once a write succeeds it is healthy again.
func TestGroupGivenUpAfterMaxRetryTime(t *testing.T) {
	t.Parallel()
	const bound = 50 * time.Millisecond
	s := &sink{}
	s.setGroup(1, errors.New("db down"), nil)
	b := groupBuf(t, s, Config[int, int, int]{BatchSize: 2, FlushInterval: time.Millisecond, MaxRetryTime: bound})
	defer closeNow(t, b)
	start := time.Now()
	add(t, b, 1000, 1001, 1002, 1003, 1004, 1005, 1, 2)
	err := b.Flush(ctxLong(t))
	elapsed := time.Since(start)
	var nw *NotWrittenError
	if !errors.As(err, &nw) || nw.Count != 6 || !errors.Is(err, ErrGivenUp) {
		t.Fatalf("Flush: %v, want 6 given up", err)
	}
	if elapsed < bound {
		t.Fatalf("given up after %s, before the bound of %s", elapsed, bound)
	}
	st := b.Stats()
	if st.Lost != 6 || st.Written != 2 || st.Buffered != 0 || st.Retries == 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("given up after %s (bound %s), %d attempts of group 1", elapsed, bound, s.attemptsOf(1))

	// Still failing: one attempt, then given up, no retry.
	attempts := s.attemptsOf(1)
	add(t, b, 1006)
	if err := b.Flush(ctxLong(t)); !errors.As(err, &nw) || nw.Count != 1 {
		t.Fatalf("Flush: %v, want 1 given up", err)
	}
	if n := s.attemptsOf(1) - attempts; n != 1 {
		t.Fatalf("%d attempts of an exhausted group's batch, want 1", n)
	}
	if got := b.Stats(); got.Retries != st.Retries || got.Lost != 7 {
		t.Fatalf("stats %+v", got)
	}

	// Back: written, and healthy again (a failure is retried again).
	s.setGroup(1, nil, nil)
	add(t, b, 1007)
	if err := b.Flush(ctxLong(t)); err != nil {
		t.Fatal(err)
	}
	s.setGroup(1, errors.New("blip"), nil)
	add(t, b, 1008)
	eventually(t, "a retry", func() bool { return b.Stats().Retries > st.Retries })
	s.setGroup(1, nil, nil)
	if err := b.Flush(ctxLong(t)); err != nil {
		t.Fatal(err)
	}
	if !s.has(1007, 1008) || b.Stats().Lost != 7 {
		t.Fatalf("written %v, stats %+v", s.got, b.Stats())
	}
}

// The items of a failing group count against the buffer's bounds.
func TestGroupFailingCountsAgainstBounds(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.setGroup(1, errors.New("db down"), nil)
	b := groupBuf(t, s, Config[int, int, int]{MaxItems: 4, BatchSize: 2, FlushInterval: time.Millisecond, MaxRetryTime: time.Hour})
	add(t, b, 1000, 1001, 1002, 1003)
	eventually(t, "retries", func() bool { return b.Stats().Retries > 0 })
	if err := b.Add(context.Background(), 1, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("Add to a buffer full of a failing group's items: %v", err)
	}
	s.setGroup(1, nil, nil)
	closeNow(t, b)
	if st := b.Stats(); st.Written != 4 || st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}
