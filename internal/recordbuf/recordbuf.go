// Package recordbuf is a bounded in-memory buffer drained in batches by
// background writers, after OpenTelemetry's batch span processor: producers
// hand items off without ever waiting on storage, the buffer prepares each
// item once (off the producers' goroutines), writes batches, retries a
// failed batch with backoff, and flushes what is left at Flush and Close.
//
// The buffer is bounded in items and in bytes. While a write is retried,
// new items keep filling the buffer up to those bounds; beyond them the
// full-buffer policy applies: drop the item (the default) or wait for room
// up to a deadline, then drop it. Drops are counted and logged at a limited
// rate, never on the producer's goroutine.
//
// Items are written by group (Config.Group: the outbox groups records by
// destination database). Each group with items to write has a writer of its
// own, its own retries and its own retry bound (Config.MaxRetryTime), so a
// group whose writes fail holds back no other group; its items still count
// against the buffer's bounds. A group that keeps failing for MaxRetryTime
// gives its items up.
//
// It knows nothing of what the items are nor where they go: Config.Prepare,
// Config.Group and Config.Write are the caller's.
package recordbuf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	MaxRetryTimeDefault  = time.Minute
	LogIntervalDefault   = 10 * time.Second
)

// Errors of Add, Flush and Close.
var (
	// ErrFull reports an item dropped because the buffer was full (after
	// waiting up to BlockTimeout under the Block policy).
	ErrFull = errors.New("recordbuf: buffer full")
	// ErrClosed reports an item dropped because the buffer is closed.
	ErrClosed = errors.New("recordbuf: buffer closed")
	// ErrNotWritten reports items Flush or Close could not write; the
	// error is a *NotWrittenError.
	ErrNotWritten = errors.New("recordbuf: items not written")
	// ErrGivenUp is the cause in a *NotWrittenError counting items given
	// up: refused for good by Write, their group failing for MaxRetryTime,
	// or abandoned by a Close whose context ended.
	ErrGivenUp = errors.New("recordbuf: items given up")
)

// NotWrittenError is the error of Flush and Close when items were left
// unwritten: their context ended (Err) while Count items were still
// buffered or had been given up, or Count items were given up (Err wraps
// ErrGivenUp).
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
type Config[T, U any, K comparable] struct {
	// MaxItems bounds the items buffered, the batches being written or
	// retried included.
	MaxItems int
	// MaxBytes bounds the sum of the sizes given to Add of the items
	// buffered, the batches being written or retried included.
	MaxBytes int64
	// BatchSize is the most items one Write gets.
	BatchSize int
	// FlushInterval is how long an item waits for a full batch before it
	// is written in a partial one.
	FlushInterval time.Duration
	// Policy is what Add does when the buffer is full.
	Policy Policy
	// BlockTimeout is the longest Add waits for room under Block.
	BlockTimeout time.Duration
	// WriteTimeout bounds each Write attempt (its context's deadline).
	WriteTimeout time.Duration
	// MaxRetryTime bounds how long a group's writes are retried while they
	// keep failing, from the first failure after the group's last
	// successful write. When it is reached, the batch being retried and
	// every item waiting behind it in the group are given up; until a
	// write of the group succeeds again, each later batch of the group is
	// tried once and given up if that fails. Default MaxRetryTimeDefault
	// (one minute).
	MaxRetryTime time.Duration
	// NewBackOff returns the backoff between attempts of one batch.
	// Default: exponential from 100 ms to 5 s, with jitter, bounded only
	// by MaxRetryTime. A backoff that stops gives the batch up (not the
	// group's other items).
	NewBackOff func() backoff.BackOff
	// Prepare turns an item into what Write stores, once per item, on a
	// background goroutine. An item it fails is rejected: counted, logged,
	// never written.
	Prepare func(T) (U, error)
	// Group returns the group of an item (in the outbox: its destination
	// database), on a background goroutine; it must be cheap and must not
	// panic. Every batch given to Write holds items of one group. Nil: one
	// group. The buffer keeps the retry state of a failing group until it
	// writes again, so the keys should be few.
	Group func(T) K
	// Write stores a batch of one group. Batches of different groups may
	// be written concurrently. An error retries the whole batch after a
	// backoff (so Write must be idempotent), unless it wraps a
	// *backoff.PermanentError (backoff.Permanent), which gives the batch
	// up.
	Write func(ctx context.Context, batch []U) error
	// Logger receives the rate-limited warnings (drops, write failures,
	// rejected items, items given up). Default: none.
	Logger *slog.Logger
	// LogInterval is the least time between two warnings of one kind (of
	// one group, for write failures).
	LogInterval time.Duration
	// OnDrop, if set, is called on a background goroutine with the number
	// of items dropped by Add since its last call (a hook for metrics).
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
	Lost          uint64 // items given up: refused for good, group failing for MaxRetryTime, or Close's context ended
	Retries       uint64 // failed Write attempts that were retried
}

// Buffer is the buffer and its writers. Its methods are safe for concurrent
// use.
type Buffer[T, U any, K comparable] struct {
	cfg Config[T, U, K]

	mu      sync.Mutex
	intake  []entry[T]      // accepted items not yet prepared, oldest first
	groups  map[K]*group[U] // groups with items, or failing
	count   int             // items buffered: intake, being prepared, queued in groups, being written
	bytes   int64           // their sizes
	seq     uint64          // sequence number of the last accepted item
	dueSeq  uint64          // intake items up to this one are due: dispatched without waiting for a full batch
	shut    bool            // Close was called
	flushes []*flushWait    // Flush calls waiting

	workers sync.WaitGroup // the groups' writers

	wake    chan struct{} // items arrived (first one, or a full batch), or a Flush
	room    chan struct{} // room was freed
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the dispatcher and every group writer have ended
	repDone chan struct{} // closed when the reporter ends
	ctx     context.Context
	cancel  context.CancelFunc

	lastReject time.Time // when the dispatcher last logged a rejected item

	accepted, written, dropped, rejected, lost, retries atomic.Uint64
}

type entry[T any] struct {
	v    T
	size int64
	seq  uint64
}

// item is a prepared entry.
type item[U any] struct {
	u    U
	size int64
	seq  uint64
}

// group is the queue and retry state of one group. The retry state is
// owned by the group's writer goroutine (there is at most one at a time;
// the next one starts after the last one's state is published under mu).
type group[U any] struct {
	queue   []item[U] // prepared items waiting, oldest first (under mu)
	running bool      // a writer goroutine serves the group (under mu)

	failingSince time.Time // first failure since the last successful write; zero: healthy
	exhausted    bool      // failing for MaxRetryTime: a batch gets one attempt
	lastWriteErr time.Time // when a failed write was last logged
	lastGiveUp   time.Time // when given-up items were last logged
}

// flushWait is one Flush call waiting for the items accepted before it.
type flushWait struct {
	upTo    uint64 // sequence number of the last item accepted before the call
	pending int    // items up to upTo not settled yet
	lost    int    // items up to upTo given up since the call
	done    chan struct{}
}

// outcome is how an item left the buffer.
type outcome int

const (
	written outcome = iota
	rejected
	lost
)

// New returns a buffer and starts its writer. Close ends it.
func New[T, U any, K comparable](cfg Config[T, U, K]) *Buffer[T, U, K] {
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
	if cfg.MaxRetryTime <= 0 {
		cfg.MaxRetryTime = MaxRetryTimeDefault
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
	b := &Buffer[T, U, K]{
		cfg: cfg, groups: map[K]*group[U]{}, wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
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
func (b *Buffer[T, U, K]) Add(ctx context.Context, v T, size int64) error {
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
			b.seq++
			b.intake = append(b.intake, entry[T]{v: v, size: size, seq: b.seq})
			b.count++
			b.bytes += size
			b.accepted.Add(1)
			n, free := len(b.intake), b.count < b.cfg.MaxItems && b.bytes < b.cfg.MaxBytes
			b.mu.Unlock()
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

// Flush has every item accepted before the call written without waiting
// for a full batch, and returns when each of them is settled: written,
// rejected by Prepare, or given up. It is not final: the buffer keeps
// accepting and writing items during and after it. It returns nil when none
// of those items was given up since the call, else a *NotWrittenError
// counting those that were (its Err wraps ErrGivenUp). When ctx ends first,
// it returns a *NotWrittenError whose Count is those items still buffered
// plus those given up since the call, and whose Err is ctx's error; the
// buffered ones stay buffered and are written as usual. Flush may run
// concurrently with Add, Close and other Flush calls.
func (b *Buffer[T, U, K]) Flush(ctx context.Context) error {
	b.mu.Lock()
	if b.count == 0 {
		b.mu.Unlock()
		return nil
	}
	// Every item buffered now was accepted before the call and has a
	// sequence number up to b.seq; every later one has a greater one.
	w := &flushWait{upTo: b.seq, pending: b.count, done: make(chan struct{})}
	b.flushes = append(b.flushes, w)
	b.dueSeq = max(b.dueSeq, b.seq)
	b.mu.Unlock()
	signal(b.wake)
	select {
	case <-w.done:
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.pending > 0 {
		b.flushes = slices.DeleteFunc(b.flushes, func(x *flushWait) bool { return x == w })
		return &NotWrittenError{Count: w.pending + w.lost, Err: ctx.Err()}
	}
	if w.lost > 0 {
		return &NotWrittenError{Count: w.lost, Err: ErrGivenUp}
	}
	return nil
}

// Stats returns the counters.
func (b *Buffer[T, U, K]) Stats() Stats {
	// Read under the lock that settles items: an item is never seen both
	// buffered and settled.
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Buffered: b.count, BufferedBytes: b.bytes, Accepted: b.accepted.Load(), Written: b.written.Load(),
		Dropped: b.dropped.Load(), Rejected: b.rejected.Load(), Lost: b.lost.Load(), Retries: b.retries.Load()}
}

// closeGrace is how long Close, once its context has ended, waits for the
// cancelled writers to end.
const closeGrace = 100 * time.Millisecond

// Close refuses new items and has every buffered item written at once,
// retrying as usual (up to MaxRetryTime per group), until ctx ends. Then it
// stops the writers and returns a *NotWrittenError counting the items left
// unwritten (a batch whose attempt was under way may still land if the
// driver ignores the cancellation). Without ctx ending, it returns a
// *NotWrittenError wrapping ErrGivenUp if items were given up after Close
// began. Close returns when the writers have ended or ctx has ended,
// whichever comes first. A second Close returns nil at once.
func (b *Buffer[T, U, K]) Close(ctx context.Context) error {
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
		// Cancelled writers end at once unless one is stuck in a driver
		// that ignores cancellation: give them a moment, so that the
		// counts are final when Close returns in the usual case.
		grace := time.NewTimer(closeGrace)
		select {
		case <-b.done:
		case <-grace.C:
		}
		grace.Stop()
		b.mu.Lock()
		// Items still buffered, and those given up since Close began
		// (writers that ended within the grace period).
		n := b.count + int(b.lost.Load()-lostBefore)
		b.mu.Unlock()
		if n > 0 {
			err = &NotWrittenError{Count: n, Err: ctx.Err()}
		}
	}
	b.cancel()
	<-b.repDone
	if err == nil {
		if n := b.lost.Load() - lostBefore; n > 0 {
			err = &NotWrittenError{Count: int(n), Err: ErrGivenUp}
		}
	}
	return err
}

// run is the dispatcher: it waits for a full batch, the flush interval, a
// Flush or Close, then prepares the due items and hands them to their
// groups' writers. It ends once closed and empty (or cancelled) and every
// group writer has ended.
func (b *Buffer[T, U, K]) run() {
	defer close(b.done)
	defer b.workers.Wait() // (only run adds workers)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		if b.ctx.Err() != nil {
			b.loseIntake()
			return
		}
		b.mu.Lock()
		n, shut := len(b.intake), b.shut
		due := n >= b.cfg.BatchSize || (n > 0 && (shut || b.intake[0].seq <= b.dueSeq))
		b.mu.Unlock()
		if due {
			timer.Stop() // (Go 1.23 timers: no stale tick after Stop)
			armed = false
			b.dispatch()
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
			armed = false
			b.mu.Lock()
			b.dueSeq = b.seq // the oldest waiting item has waited FlushInterval
			b.mu.Unlock()
		case <-b.closing:
		case <-b.ctx.Done():
		}
	}
}

// dispatch takes up to BatchSize items of the intake, prepares them and
// queues them in their groups, starting the writer of a group that has
// none.
func (b *Buffer[T, U, K]) dispatch() {
	b.mu.Lock()
	k := min(len(b.intake), b.cfg.BatchSize)
	chunk := make([]entry[T], k)
	copy(chunk, b.intake)
	rest := copy(b.intake, b.intake[k:])
	clear(b.intake[rest:])
	b.intake = b.intake[:rest]
	b.mu.Unlock()

	type part struct {
		key   K
		items []item[U]
	}
	var parts []part
	index := map[K]int{}
	var rejectedSeqs []uint64
	var rejectedBytes int64
	for _, e := range chunk {
		u, err := b.prepare(e.v)
		if err != nil {
			rejectedSeqs = append(rejectedSeqs, e.seq)
			rejectedBytes += e.size
			b.warn(&b.lastReject, "record rejected", slog.Any("error", err))
			continue
		}
		var key K
		if b.cfg.Group != nil {
			key = b.cfg.Group(e.v)
		}
		i, ok := index[key]
		if !ok {
			i = len(parts)
			index[key] = i
			parts = append(parts, part{key: key})
		}
		parts[i].items = append(parts[i].items, item[U]{u: u, size: e.size, seq: e.seq})
	}
	clear(chunk)

	b.mu.Lock()
	if len(rejectedSeqs) > 0 {
		b.settleLocked(rejectedSeqs, rejectedBytes, rejected) // settled at once: no longer buffered
	}
	for _, p := range parts {
		g := b.groups[p.key]
		if g == nil {
			g = &group[U]{}
			b.groups[p.key] = g
		}
		g.queue = append(g.queue, p.items...)
		if !g.running {
			g.running = true
			b.workers.Add(1)
			go b.serve(p.key, g)
		}
	}
	b.mu.Unlock()
	if len(rejectedSeqs) > 0 {
		signal(b.room)
	}
}

// serve is the writer of one group: it writes the group's queue in batches
// until it is empty, then ends. A healthy group is forgotten when it ends; a
// failing one keeps its retry state.
func (b *Buffer[T, U, K]) serve(key K, g *group[U]) {
	defer b.workers.Done()
	for {
		b.mu.Lock()
		if b.ctx.Err() != nil && len(g.queue) > 0 {
			b.settleLocked(seqsOf(g.queue), bytesOf(g.queue), lost) // Close gave up
			clear(g.queue)
			g.queue = g.queue[:0]
		}
		if len(g.queue) == 0 {
			g.running = false
			if g.failingSince.IsZero() {
				delete(b.groups, key)
			}
			b.mu.Unlock()
			return
		}
		k := min(len(g.queue), b.cfg.BatchSize)
		batch := make([]item[U], k)
		copy(batch, g.queue)
		rest := copy(g.queue, g.queue[k:])
		clear(g.queue[rest:])
		g.queue = g.queue[:rest]
		b.mu.Unlock()
		b.write(g, batch)
	}
}

// write writes one batch of g, retrying with backoff until it is written,
// refused for good, the group's retry bound is reached, or the buffer is
// cancelled; then it settles the batch.
func (b *Buffer[T, U, K]) write(g *group[U], batch []item[U]) {
	prepared := make([]U, len(batch))
	for i, it := range batch {
		prepared[i] = it.u
	}
	bo := b.cfg.NewBackOff()
	bo.Reset()
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.WriteTimeout)
		err := b.cfg.Write(ctx, prepared)
		cancel()
		var perm *backoff.PermanentError
		switch {
		case err == nil:
			g.failingSince, g.exhausted = time.Time{}, false
			b.finish(batch, written)
			return
		case b.ctx.Err() != nil: // Close gave up
			b.finish(batch, lost)
			return
		case errors.As(err, &perm):
			// The group answered: its data, not its availability, is at
			// fault. Its other items are not held back.
			g.failingSince, g.exhausted = time.Time{}, false
			b.cfg.Logger.Warn("batch given up", slog.Int("records", len(batch)), slog.Any("error", perm.Err))
			b.finish(batch, lost)
			return
		}
		now := time.Now()
		if g.failingSince.IsZero() {
			g.failingSince = now
		}
		left := b.cfg.MaxRetryTime - now.Sub(g.failingSince)
		if g.exhausted || left <= 0 {
			b.giveUpGroup(g, batch, now, err)
			return
		}
		next := bo.NextBackOff()
		if next == backoff.Stop {
			b.cfg.Logger.Warn("batch given up: backoff stopped", slog.Int("records", len(batch)), slog.Any("error", err))
			b.finish(batch, lost)
			return
		}
		next = min(next, left) // the last attempt is made at the bound
		b.retries.Add(1)
		b.warn(&g.lastWriteErr, "batch not written, retrying", slog.Int("records", len(batch)),
			slog.Int("attempt", attempt), slog.Duration("retry_in", next), slog.Any("error", err))
		if wait == nil {
			wait = time.NewTimer(next)
		} else {
			wait.Reset(next)
		}
		select {
		case <-wait.C:
		case <-b.ctx.Done(): // Close gave up
			b.finish(batch, lost)
			return
		}
	}
}

// giveUpGroup gives up batch and every item queued in g: the group has
// failed for MaxRetryTime (or failed again since). It logs before it
// settles, so that a Flush or Close reporting the items finds them logged.
func (b *Buffer[T, U, K]) giveUpGroup(g *group[U], batch []item[U], now time.Time, err error) {
	g.exhausted = true
	b.mu.Lock()
	items := append(batch, g.queue...)
	clear(g.queue)
	g.queue = g.queue[:0]
	b.mu.Unlock()
	b.warn(&g.lastGiveUp, "records given up: destination failing", slog.Int("records", len(items)),
		slog.Int("queued", len(items)-len(batch)), slog.Duration("failing_for", now.Sub(g.failingSince).Round(time.Millisecond)),
		slog.Any("error", err))
	b.finish(items, lost)
}

// finish settles a batch.
func (b *Buffer[T, U, K]) finish(batch []item[U], o outcome) {
	b.mu.Lock()
	b.settleLocked(seqsOf(batch), bytesOf(batch), o)
	b.mu.Unlock()
	signal(b.room)
}

// settleLocked counts items (by their sequence numbers) written, rejected
// or lost, removes them from the buffered count, and releases the Flush
// calls waiting for nothing else. Counted and unbuffered under one lock:
// Stats never sees an item both buffered and settled.
func (b *Buffer[T, U, K]) settleLocked(seqs []uint64, bytes int64, o outcome) {
	n := len(seqs)
	b.count -= n
	b.bytes -= bytes
	switch o {
	case written:
		b.written.Add(uint64(n))
	case rejected:
		b.rejected.Add(uint64(n))
	case lost:
		b.lost.Add(uint64(n))
	}
	if len(b.flushes) == 0 {
		return
	}
	b.flushes = slices.DeleteFunc(b.flushes, func(w *flushWait) bool {
		k := 0
		for _, s := range seqs {
			if s <= w.upTo {
				k++
			}
		}
		w.pending -= k
		if o == lost {
			w.lost += k
		}
		if w.pending > 0 {
			return false
		}
		close(w.done)
		return true
	})
}

// prepare runs Config.Prepare, turning a panic into an error: a bug in the
// preparation rejects one item and never ends the writer (nor the process).
func (b *Buffer[T, U, K]) prepare(v T) (u U, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("recordbuf: prepare panicked: %T", p)
		}
	}()
	return b.cfg.Prepare(v)
}

// loseIntake counts every item still in the intake as lost (Close gave
// up).
func (b *Buffer[T, U, K]) loseIntake() {
	b.mu.Lock()
	defer b.mu.Unlock()
	seqs := make([]uint64, len(b.intake))
	var bytes int64
	for i, e := range b.intake {
		seqs[i] = e.seq
		bytes += e.size
	}
	b.intake = nil
	b.settleLocked(seqs, bytes, lost)
}

// report logs drops at most once per LogInterval and feeds OnDrop, off the
// producers' goroutines; it ends with Close, reporting the last drops.
func (b *Buffer[T, U, K]) report() {
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
// kind's time of last log). Only one goroutine calls it for a given last.
func (b *Buffer[T, U, K]) warn(last *time.Time, msg string, attrs ...slog.Attr) {
	if !last.IsZero() && time.Since(*last) < b.cfg.LogInterval {
		return
	}
	*last = time.Now()
	b.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

func seqsOf[U any](items []item[U]) []uint64 {
	seqs := make([]uint64, len(items))
	for i, it := range items {
		seqs[i] = it.seq
	}
	return seqs
}

func bytesOf[U any](items []item[U]) int64 {
	var n int64
	for _, it := range items {
		n += it.size
	}
	return n
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
