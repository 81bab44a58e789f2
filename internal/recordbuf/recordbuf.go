// Package recordbuf is a bounded in-memory buffer drained by one background
// writer in batches, after OpenTelemetry's batch span processor: producers
// hand items off without ever waiting on storage, the writer prepares each
// item once (off the producers' goroutines), writes batches, retries a
// failed batch with backoff, and flushes what is left at Close.
//
// The buffer is bounded in items and in bytes. While the writer retries,
// new items keep filling the buffer up to those bounds; beyond them the
// full-buffer policy applies: drop the item (the default) or wait for room
// up to a deadline, then drop it. Drops are counted and logged at a limited
// rate, never on the producer's goroutine.
//
// It knows nothing of what the items are nor where they go: Config.Prepare
// and Config.Write are the caller's.
package recordbuf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults of the zero Config fields.
const (
	MaxItemsDefault      = 10000
	MaxBytesDefault      = 32 << 20
	BatchSizeDefault     = 500
	FlushIntervalDefault = 200 * time.Millisecond
	BlockTimeoutDefault  = 5 * time.Millisecond
	WriteTimeoutDefault  = 10 * time.Second
	LogIntervalDefault   = 10 * time.Second
)

// Errors of Add and Close.
var (
	// ErrFull reports an item dropped because the buffer was full (after
	// waiting up to BlockTimeout under the Block policy).
	ErrFull = errors.New("recordbuf: buffer full")
	// ErrClosed reports an item dropped because the buffer is closed.
	ErrClosed = errors.New("recordbuf: buffer closed")
	// ErrNotWritten reports items Close could not write; the error is a
	// *NotWrittenError.
	ErrNotWritten = errors.New("recordbuf: items not written")
)

// GivenUpError is what Config.Write returns (wrapped in backoff.Permanent,
// or alone: it is never retried) when it wrote part of a batch and gave up
// Count items of it for good; the rest counts as written.
type GivenUpError struct {
	Count int
	Err   error
}

// Error says how many items were given up and why.
func (e *GivenUpError) Error() string {
	return fmt.Sprintf("recordbuf: %d items given up: %v", e.Count, e.Err)
}

// Unwrap returns the cause.
func (e *GivenUpError) Unwrap() error { return e.Err }

// NotWrittenError is Close's error when items were left unwritten: Close's
// context ended (Err) while Count items were still buffered or being
// written, or a batch failed permanently.
type NotWrittenError struct {
	Count int
	Err   error
}

// Error says how many items were not written and why.
func (e *NotWrittenError) Error() string {
	return fmt.Sprintf("%v: %d: %v", ErrNotWritten, e.Count, e.Err)
}

// Unwrap returns ErrNotWritten and the cause.
func (e *NotWrittenError) Unwrap() []error { return []error{ErrNotWritten, e.Err} }

// Policy is what Add does when the buffer is full.
type Policy int

// The full-buffer policies.
const (
	// Drop drops the item at once (the default).
	Drop Policy = iota
	// Block waits for room up to Config.BlockTimeout, then drops.
	Block
)

// Config configures New. Zero fields take the XxxDefault constants.
type Config[T, U any] struct {
	// MaxItems bounds the items buffered, the batch being written
	// included.
	MaxItems int
	// MaxBytes bounds the sum of the sizes given to Add of the items
	// buffered, the batch being written included.
	MaxBytes int64
	// BatchSize is the most items one Write gets.
	BatchSize int
	// FlushInterval is how long the writer waits for a batch to fill
	// before it writes a partial one.
	FlushInterval time.Duration
	// Policy is what Add does when the buffer is full.
	Policy Policy
	// BlockTimeout is the longest Add waits for room under Block.
	BlockTimeout time.Duration
	// WriteTimeout bounds each Write attempt (its context's deadline).
	WriteTimeout time.Duration
	// NewBackOff returns the backoff between attempts of one batch.
	// Default: exponential from 100 ms to 5 s, with jitter, without end
	// (a batch is retried until it is written or Close gives up).
	NewBackOff func() backoff.BackOff
	// Prepare turns an item into what Write stores, once per item, on the
	// writer's goroutine. An item it fails is rejected: counted, logged,
	// never written.
	Prepare func(T) (U, error)
	// Write stores a batch. An error retries the whole batch after a
	// backoff (so Write must be idempotent), unless it wraps a
	// *backoff.PermanentError (backoff.Permanent), which gives the batch
	// up.
	Write func(ctx context.Context, batch []U) error
	// Logger receives the rate-limited warnings (drops, write failures,
	// rejected items). Default: none.
	Logger *slog.Logger
	// LogInterval is the least time between two warnings of one kind.
	LogInterval time.Duration
	// OnDrop, if set, is called on a background goroutine with the number
	// of items dropped since its last call (a hook for metrics).
	OnDrop func(n int)
}

// Stats counts what happened to the items. Counters only grow, except
// Buffered and BufferedBytes. Every accepted item is, at any time, buffered,
// written, rejected or lost.
type Stats struct {
	Buffered      int    // items waiting or being written
	BufferedBytes int64  // their sizes
	Accepted      uint64 // items Add took
	Written       uint64 // items Write stored
	Dropped       uint64 // items Add refused: buffer full or closed
	Rejected      uint64 // items Prepare failed
	Lost          uint64 // items given up: permanent write error, or Close's context ended
	Retries       uint64 // failed Write attempts that were retried
}

// Buffer is the buffer and its writer. Its methods are safe for concurrent
// use.
type Buffer[T, U any] struct {
	cfg Config[T, U]

	mu    sync.Mutex
	queue []entry[T] // waiting items, oldest first
	count int        // len(queue) plus the batch being written
	bytes int64      // their sizes
	shut  bool       // Close was called

	wake    chan struct{} // items arrived (first one, or a full batch)
	room    chan struct{} // the writer freed room
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the writer ends
	repDone chan struct{} // closed when the reporter ends
	ctx     context.Context
	cancel  context.CancelFunc

	// when the writer last logged a rejected item and a failed write
	lastReject, lastWriteErr time.Time

	accepted, written, dropped, rejected, lost, retries atomic.Uint64
}

type entry[T any] struct {
	v    T
	size int64
}

// New returns a buffer and starts its writer. Close ends it.
func New[T, U any](cfg Config[T, U]) *Buffer[T, U] {
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = MaxItemsDefault
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = MaxBytesDefault
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = BatchSizeDefault
	}
	cfg.BatchSize = min(cfg.BatchSize, cfg.MaxItems)
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = FlushIntervalDefault
	}
	if cfg.BlockTimeout <= 0 {
		cfg.BlockTimeout = BlockTimeoutDefault
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = WriteTimeoutDefault
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = LogIntervalDefault
	}
	if cfg.NewBackOff == nil {
		cfg.NewBackOff = defaultBackOff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Buffer[T, U]{
		cfg: cfg, wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
		closing: make(chan struct{}), done: make(chan struct{}), repDone: make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.run()
	go b.report()
	return b
}

// Add hands v, of size bytes, to the writer. It never waits on Write: it
// returns at once, or under the Block policy after at most BlockTimeout
// (or when ctx ends). A dropped item returns ErrFull or ErrClosed and is
// counted.
func (b *Buffer[T, U]) Add(ctx context.Context, v T, size int64) error {
	size = max(size, 0)
	var deadline *time.Timer
	for {
		b.mu.Lock()
		if b.shut {
			b.mu.Unlock()
			b.dropped.Add(1)
			return ErrClosed
		}
		if b.count < b.cfg.MaxItems && b.bytes+size <= b.cfg.MaxBytes {
			b.queue = append(b.queue, entry[T]{v: v, size: size})
			b.count++
			b.bytes += size
			n, free := len(b.queue), b.count < b.cfg.MaxItems && b.bytes < b.cfg.MaxBytes
			b.mu.Unlock()
			b.accepted.Add(1)
			if n == 1 || n == b.cfg.BatchSize {
				signal(b.wake)
			}
			if deadline != nil {
				deadline.Stop()
				if free {
					signal(b.room) // pass the room on to the next waiter
				}
			}
			return nil
		}
		b.mu.Unlock()
		if b.cfg.Policy != Block || size > b.cfg.MaxBytes {
			b.dropped.Add(1)
			return ErrFull
		}
		if deadline == nil {
			deadline = time.NewTimer(b.cfg.BlockTimeout)
		}
		select {
		case <-b.room:
		case <-deadline.C:
			b.dropped.Add(1)
			return ErrFull
		case <-ctx.Done():
			deadline.Stop()
			b.dropped.Add(1)
			return ErrFull
		case <-b.closing:
			deadline.Stop()
			b.dropped.Add(1)
			return ErrClosed
		}
	}
}

// Stats returns the counters.
func (b *Buffer[T, U]) Stats() Stats {
	b.mu.Lock()
	n, bytes := b.count, b.bytes
	b.mu.Unlock()
	return Stats{Buffered: n, BufferedBytes: bytes, Accepted: b.accepted.Load(), Written: b.written.Load(),
		Dropped: b.dropped.Load(), Rejected: b.rejected.Load(), Lost: b.lost.Load(), Retries: b.retries.Load()}
}

// closeGrace is how long Close, once its context has ended, waits for the
// cancelled writer to end.
const closeGrace = 100 * time.Millisecond

// Close refuses new items and has the writer write every buffered item,
// at once, retrying as usual, until ctx ends. Then it stops the writer and
// returns a *NotWrittenError counting the items left unwritten (a batch
// whose attempt was under way may still land if the driver ignores the
// cancellation). Close returns when the writer has ended or ctx has ended,
// whichever comes first. A second Close returns nil at once.
func (b *Buffer[T, U]) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.shut {
		b.mu.Unlock()
		return nil
	}
	b.shut = true
	close(b.closing)
	b.mu.Unlock()
	lostBefore := b.lost.Load()
	var err error
	select {
	case <-b.done:
	case <-ctx.Done():
		b.cancel()
		// A cancelled writer ends at once unless it is stuck in a driver
		// that ignores cancellation: give it a moment, so that its counts
		// are final when Close returns in the usual case.
		grace := time.NewTimer(closeGrace)
		select {
		case <-b.done:
		case <-grace.C:
		}
		grace.Stop()
		b.mu.Lock()
		n := b.count
		b.mu.Unlock()
		// Items still queued, and those the writer gave up on since Close
		// began (a writer that ended within the grace period).
		n += int(b.lost.Load() - lostBefore)
		if n > 0 {
			err = &NotWrittenError{Count: n, Err: ctx.Err()}
		}
	}
	b.cancel()
	<-b.repDone
	if err == nil {
		if n := b.lost.Load() - lostBefore; n > 0 {
			err = &NotWrittenError{Count: int(n), Err: errors.New("write failed permanently")}
		}
	}
	return err
}

// run is the writer: it waits for a full batch, the flush interval or
// Close, writes, and ends once closed and empty (or cancelled).
func (b *Buffer[T, U]) run() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed, due := false, false
	for {
		if b.ctx.Err() != nil {
			b.loseAll()
			return
		}
		b.mu.Lock()
		n, shut := len(b.queue), b.shut
		b.mu.Unlock()
		if n >= b.cfg.BatchSize || (n > 0 && (due || shut)) {
			timer.Stop() // (Go 1.23 timers: no stale tick after Stop)
			armed, due = false, false
			b.writeBatch()
			continue
		}
		if n == 0 && shut {
			return
		}
		if n > 0 && !armed {
			timer.Reset(b.cfg.FlushInterval)
			armed = true
		}
		select {
		case <-b.wake:
		case <-timer.C:
			armed, due = false, true
		case <-b.closing:
		case <-b.ctx.Done():
		}
	}
}

// writeBatch takes up to BatchSize items, prepares them and writes them,
// retrying until written, given up or cancelled.
func (b *Buffer[T, U]) writeBatch() {
	b.mu.Lock()
	k := min(len(b.queue), b.cfg.BatchSize)
	batch := make([]entry[T], k)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[k:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	b.mu.Unlock()

	var bytes, rejectedBytes int64
	prepared := make([]U, 0, len(batch))
	var rejected int
	for _, e := range batch {
		u, err := b.prepare(e.v)
		if err != nil {
			rejected++
			rejectedBytes += e.size
			b.warn(&b.lastReject, "record rejected", slog.Any("error", err))
			continue
		}
		bytes += e.size
		prepared = append(prepared, u)
	}
	clear(batch)
	if rejected > 0 {
		// Settled at once: rejected, no longer buffered.
		b.mu.Lock()
		b.rejected.Add(uint64(rejected))
		b.count -= rejected
		b.bytes -= rejectedBytes
		b.mu.Unlock()
	}
	attempt := 0
	err := backoff.RetryNotify(func() error {
		attempt++
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.WriteTimeout)
		defer cancel()
		if len(prepared) == 0 {
			return nil
		}
		return b.cfg.Write(ctx, prepared)
	}, backoff.WithContext(b.cfg.NewBackOff(), b.ctx), func(err error, next time.Duration) {
		b.retries.Add(1)
		b.warn(&b.lastWriteErr, "batch not written, retrying", slog.Int("records", len(prepared)),
			slog.Int("attempt", attempt), slog.Duration("retry_in", next), slog.Any("error", err))
	})
	written, lost := len(prepared), 0
	var gu *GivenUpError
	switch {
	case err == nil:
	case errors.As(err, &gu):
		lost = min(max(gu.Count, 0), len(prepared))
		written -= lost
		b.cfg.Logger.Warn("records given up", slog.Int("records", lost), slog.Int("written", written), slog.Any("error", gu.Err))
	default:
		written, lost = 0, len(prepared)
		if b.ctx.Err() == nil {
			b.cfg.Logger.Warn("batch given up", slog.Int("records", len(prepared)), slog.Any("error", err))
		}
	}
	// Counted and unbuffered under one lock: Stats never sees an item
	// both buffered and settled.
	b.mu.Lock()
	b.written.Add(uint64(written))
	b.lost.Add(uint64(lost))
	b.count -= len(prepared)
	b.bytes -= bytes
	b.mu.Unlock()
	signal(b.room)
}

// prepare runs Config.Prepare, turning a panic into an error: a bug in the
// preparation rejects one item and never ends the writer (nor the process).
func (b *Buffer[T, U]) prepare(v T) (u U, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("recordbuf: prepare panicked: %T", p)
		}
	}()
	return b.cfg.Prepare(v)
}

// loseAll counts every item still queued as lost (Close gave up).
func (b *Buffer[T, U]) loseAll() {
	b.mu.Lock()
	n := len(b.queue)
	var bytes int64
	for _, e := range b.queue {
		bytes += e.size
	}
	b.queue = nil
	b.count -= n
	b.bytes -= bytes
	b.mu.Unlock()
	b.lost.Add(uint64(n))
}

// report logs drops at most once per LogInterval and feeds OnDrop, off the
// producers' goroutines; it ends with Close, reporting the last drops.
func (b *Buffer[T, U]) report() {
	defer close(b.repDone)
	tick := time.NewTicker(min(time.Second, b.cfg.LogInterval))
	defer tick.Stop()
	var seen uint64       // drops passed to OnDrop
	var logged uint64     // drops logged
	var lastLog time.Time // when they were
	check := func(final bool) {
		d := b.dropped.Load()
		if d > seen && b.cfg.OnDrop != nil {
			b.cfg.OnDrop(int(d - seen))
		}
		seen = d
		if d > logged && (final || time.Since(lastLog) >= b.cfg.LogInterval) {
			st := b.Stats()
			b.cfg.Logger.Warn("records dropped: buffer full or closed", slog.Uint64("dropped", d-logged),
				slog.Uint64("dropped_total", d), slog.Int("buffered", st.Buffered), slog.Int("max_records", b.cfg.MaxItems))
			logged, lastLog = d, time.Now()
		}
	}
	for {
		select {
		case <-tick.C:
			check(false)
		case <-b.ctx.Done():
			check(true)
			return
		}
	}
}

// warn logs msg at most once per LogInterval per kind (last points to the
// kind's time of last log). Only the writer goroutine calls it.
func (b *Buffer[T, U]) warn(last *time.Time, msg string, attrs ...slog.Attr) {
	if !last.IsZero() && time.Since(*last) < b.cfg.LogInterval {
		return
	}
	*last = time.Now()
	b.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func defaultBackOff() backoff.BackOff {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	return bo
}
