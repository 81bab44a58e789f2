package recordbuf

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func ctxLong(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func add(t *testing.T, b *Buffer[int, int, int], vs ...int) {
	t.Helper()
	for _, v := range vs {
		if err := b.Add(context.Background(), v, 1); err != nil {
			t.Fatalf("Add(%d): %v", v, err)
		}
	}
}

// has reports whether every v was written.
func (s *sink) has(vs ...int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		if !slices.Contains(s.got, v) {
			return false
		}
	}
	return true
}

// Flush writes what was accepted before it without waiting for a full
// batch or the flush interval, and the buffer goes on writing after it.
func TestFlushWritesAndGoesOn(t *testing.T) {
	t.Parallel()
	s := &sink{}
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 100, FlushInterval: time.Hour})
	defer closeNow(t, b)
	for round := range 3 {
		for i := range 5 {
			add(t, b, round*5+i)
		}
		if err := b.Flush(ctxLong(t)); err != nil {
			t.Fatal(err)
		}
		if n := s.n(); n != (round+1)*5 {
			t.Fatalf("round %d: %d written after Flush, want %d", round, n, (round+1)*5)
		}
	}
	if err := b.Flush(ctxLong(t)); err != nil {
		t.Fatalf("Flush of an empty buffer: %v", err)
	}
	if st := b.Stats(); st.Written != 15 || st.Buffered != 0 || st.BufferedBytes != 0 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A Flush whose context ends first reports how many items it left
// buffered, and gives none of them up: they are written once the write
// goes through.
func TestFlushContextEndsLosesNothing(t *testing.T) {
	t.Parallel()
	s := &sink{}
	hold := make(chan struct{})
	s.set(nil, hold)
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 2})
	defer closeNow(t, b)
	add(t, b, 1, 2, 3, 4, 5)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Flush(cancelled)
	var nw *NotWrittenError
	if !errors.As(err, &nw) || nw.Count != 5 || !errors.Is(err, ErrNotWritten) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush with a cancelled context: %v", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Flush(short); !errors.As(err, &nw) || nw.Count != 5 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a short deadline: %v", err)
	}
	if st := b.Stats(); st.Buffered != 5 || st.Lost != 0 {
		t.Fatalf("stats after the Flush calls gave up: %+v", st)
	}

	close(hold)
	if err := b.Flush(ctxLong(t)); err != nil {
		t.Fatal(err)
	}
	if !s.has(1, 2, 3, 4, 5) {
		t.Fatalf("written %v", s.got)
	}
}

// Items given up while Flush waits (their group failed for MaxRetryTime)
// are reported by it; the buffer keeps writing later items.
func TestFlushReportsGivenUp(t *testing.T) {
	t.Parallel()
	s := &sink{}
	s.set(errors.New("db down"), nil)
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 2, MaxRetryTime: 30 * time.Millisecond})
	defer closeNow(t, b)
	add(t, b, 1, 2, 3)
	err := b.Flush(ctxLong(t))
	var nw *NotWrittenError
	if !errors.As(err, &nw) || nw.Count != 3 || !errors.Is(err, ErrGivenUp) {
		t.Fatalf("Flush: %v, want 3 given up", err)
	}
	if st := b.Stats(); st.Lost != 3 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
	s.set(nil, nil)
	add(t, b, 4)
	if err := b.Flush(ctxLong(t)); err != nil {
		t.Fatal(err)
	}
	if !s.has(4) {
		t.Fatalf("written %v", s.got)
	}
}

// Flush runs concurrently with Add, other Flush calls and Close. A Flush
// that returns nil has seen written every item its caller added before it.
func TestFlushConcurrentWithAddAndClose(t *testing.T) {
	t.Parallel()
	s := &sink{}
	b := newBuf(t, s, Config[int, int, int]{BatchSize: 7, FlushInterval: 50 * time.Millisecond})
	const producers, each = 4, 60
	var wg sync.WaitGroup
	var mu sync.Mutex
	flushed, tried := 0, 0
	for p := range producers {
		wg.Go(func() {
			var mine []int
			for i := range each {
				v := p*100 + i
				mu.Lock()
				tried++
				mu.Unlock()
				if err := b.Add(context.Background(), v, 1); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Add: %v", err)
					}
					return
				}
				mine = append(mine, v)
				if i%5 != 4 {
					continue
				}
				if err := b.Flush(context.Background()); err != nil {
					t.Errorf("Flush: %v", err)
					return
				}
				if !s.has(mine...) {
					t.Errorf("producer %d: Flush returned before its items were written", p)
					return
				}
				mu.Lock()
				flushed++
				mu.Unlock()
			}
		})
	}
	eventually(t, "some items written", func() bool { return s.n() >= producers*each/3 })
	closeNow(t, b)
	wg.Wait()
	st := b.Stats()
	if st.Accepted != st.Written || st.Accepted+st.Dropped != uint64(tried) || st.Lost != 0 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
	t.Logf("%d Flush calls returned nil; %d items written, %d dropped by Close", flushed, st.Written, st.Dropped)
}
