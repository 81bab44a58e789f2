package integrationlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"

	"github.com/cenkalti/backoff/v4"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/httprecord"
	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/recordbuf"
)

// BufferFullPolicy is what a recorded call does when the integration log's
// buffer is full.
type BufferFullPolicy int

// The full-buffer policies.
const (
	// DropWhenFull drops the record at once (the default): the call never
	// waits.
	DropWhenFull BufferFullPolicy = iota
	// BlockWhenFull waits for room up to Config.BlockTimeout,
	// then drops the record.
	BlockWhenFull
)

// BufferStats counts what became of the records Transport and Middleware
// made. Every counter but Buffered and BufferedBytes only grows
// (they suit monotonic metrics); every record handed to the buffer is, at
// any time, buffered, written, rejected or lost.
type BufferStats struct {
	// Buffered is how many records wait to be written (a batch being
	// written or retried included), BufferedBytes what they hold.
	Buffered      int
	BufferedBytes int64
	// Written counts the records stored.
	Written uint64
	// Dropped counts the records never buffered: the buffer was full
	// (after BlockTimeout under BlockWhenFull), or the log was closed.
	Dropped uint64
	// Rejected counts the records that failed validation (such as a body
	// over the handle's outbox.Config.MaxPayloadBytes once redacted); each
	// kind is logged.
	Rejected uint64
	// Lost counts buffered records given up: refused by the database for
	// good (bad data, a finished transaction as HTTPOptions.DB),
	// their destination failing for MaxRetryTime, or still unwritten when
	// Close's context ended.
	Lost uint64
	// Retries counts batch writes that failed and were retried.
	Retries uint64
}

// BufferStats returns the counters of the buffer between Transport and
// Middleware and the database.
func (l *Log) BufferStats() BufferStats {
	l.mu.Lock()
	buf := l.buf
	l.mu.Unlock()
	if buf == nil {
		return BufferStats{}
	}
	s := buf.Stats()
	return BufferStats{Buffered: s.Buffered, BufferedBytes: s.BufferedBytes, Written: s.Written,
		Dropped: s.Dropped, Rejected: s.Rejected, Lost: s.Lost, Retries: s.Retries}
}

// Flush writes the records Transport and Middleware made before the call
// (a call is recorded once its response body is closed, or when it fails)
// and returns when each of them is stored, rejected by validation or given
// up. It writes them at once, without waiting for a full batch or
// FlushInterval, and it is not final: the log goes on recording and
// writing during and after it, so a dashboard or a test reads back with
// List what was just recorded. Flush returns nil when none of those
// records was given up, else an error wrapping ErrRecordsNotWritten that
// says how many were (refused for good, or their destination failing for
// MaxRetryTime; they are also counted in BufferStats().Lost). When ctx
// ends first, it returns an error wrapping ErrRecordsNotWritten and ctx's
// error with the number of those records not written by then; the ones
// still buffered are not lost, the background writer keeps writing them.
// Rejected records are counted and logged, not reported by the error, as
// with Close. Flush may be called concurrently with recording, Close and
// other Flush calls; on a log whose Transport and Middleware were never
// used it returns nil at once.
func (l *Log) Flush(ctx context.Context) error {
	l.mu.Lock()
	buf := l.buf
	l.mu.Unlock()
	if buf == nil {
		return nil
	}
	return recordsNotWritten(buf.Flush(ctx))
}

// Close writes the records Transport and Middleware have buffered and
// stops the log's background writer. Every application that uses
// Transport or Middleware must call it when shutting down, after its HTTP
// servers and clients have stopped (http.Server.Shutdown), with a context
// that bounds the flush: records not written when ctx ends are given up,
// counted in BufferStats().Lost, and reported by an error wrapping
// ErrRecordsNotWritten and ctx's error. Records given up during Close
// (refused for good, or their destination failing for MaxRetryTime) are
// reported the same way. Records made after Close are dropped and counted.
//
// The guarantee of the HTTP recorders: a call hands its capture (bodies
// already bounded by the body limit) to an in-memory buffer and goes on; it
// never waits on the database, whatever the database does. Under the
// default DropWhenFull it does not wait at all; under BlockWhenFull it
// waits at most BlockTimeout for room. A background writer redacts the
// records, writes them in batches (one INSERT per batch and destination)
// and retries a failed batch with backoff while the buffer keeps filling
// up to its bounds. Each destination (the handle's pool, or an
// HTTPOptions.DB) is written and retried on its own: one that fails
// or hangs does not delay the others' records, and its records are given
// up once its writes have failed for MaxRetryTime. What can be lost:
// records in the buffer when the process crashes or Close gives up,
// records dropped because the buffer was full, and records given up.
// BufferStats counts them, and drops are logged at Warn at most once every
// 10 seconds with their count.
//
// Close may be called more than once (a later call returns nil at once,
// even while the first is still flushing: wait on the first), and on a log
// whose Transport and Middleware were never used; the Record* calls, List
// and Stats keep working after it.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	buf := l.buf
	l.mu.Unlock()
	if buf == nil {
		return nil
	}
	return recordsNotWritten(buf.Close(ctx))
}

// errGivenUp is the cause of ErrRecordsNotWritten for records given up.
var errGivenUp = errors.New("given up: refused for good, or their destination failed for MaxRetryTime")

// recordsNotWritten turns the buffer's error into the log's.
func recordsNotWritten(err error) error {
	var nw *recordbuf.NotWrittenError
	if !errors.As(err, &nw) {
		return err
	}
	cause := nw.Err
	if errors.Is(cause, recordbuf.ErrGivenUp) {
		cause = errGivenUp
	}
	return fmt.Errorf("%w: %d records: %w", ErrRecordsNotWritten, nw.Count, cause)
}

// recordBuffer carries the captures of Transport and Middleware to the
// background writer, grouped by destination.
type recordBuffer struct {
	*recordbuf.Buffer[capture, preparedRecord, *destination]
	pool *destination // the handle's pool

	mu    sync.Mutex
	dests map[outbox.Querier]*destination // HTTPOptions.DB handles of pointer type
}

// destination is where records are written: the handle's pool or an
// HTTPOptions.DB. The buffer batches, retries and gives up records
// per destination.
type destination struct {
	db outbox.Querier
}

// httpSink is one Transport or Middleware: where its captures go.
type httpSink struct {
	l           *Log
	buf         *recordBuffer
	dest        *destination
	integration string
	op          Operation
	opts        HTTPOptions
}

// capture is one exchange handed to the buffer, detached from everything
// the caller or the server owns.
type capture struct {
	sink *httpSink
	ex   *httprecord.Exchange
}

// preparedRecord is a redacted, validated record and where it goes.
type preparedRecord struct {
	sink *httpSink
	rec  intrecord.Record
}

// newSink returns the sink of a Transport or Middleware, starting the
// log's buffer if it is the first.
func (l *Log) newSink(integration string, op Operation, opts *HTTPOptions) *httpSink {
	s := &httpSink{l: l, buf: l.buffer(), integration: integration, op: op}
	if opts != nil {
		s.opts = *opts
		s.opts.Headers = append([]string(nil), opts.Headers...)
	}
	s.dest = s.buf.destination(s.opts.DB)
	return s
}

// handOff is the whole of recording on the request path: detach the
// exchange (copy the headers, URL and status) and buffer it.
func (s *httpSink) handOff(ex *httprecord.Exchange) {
	d := ex.Detach(s.opts.Headers)
	_ = s.buf.Add(context.Background(), capture{sink: s, ex: d}, d.Size()) // a drop is counted and logged by the buffer
}

// buffer returns the log's buffer, started on first use.
func (l *Log) buffer() *recordBuffer {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf != nil {
		return l.buf
	}
	policy := recordbuf.Drop
	if l.cfg.WhenFull == BlockWhenFull {
		policy = recordbuf.Block
	}
	l.buf = &recordBuffer{pool: &destination{db: l.core.DB}, dests: map[outbox.Querier]*destination{}}
	l.buf.Buffer = recordbuf.New(recordbuf.Config[capture, preparedRecord, *destination]{
		// Zero settings take recordbuf's defaults, which Config documents.
		MaxItems:      l.cfg.BufferRecords,
		MaxBytes:      l.cfg.BufferBytes,
		BatchSize:     l.cfg.BatchSize,
		FlushInterval: l.cfg.FlushInterval,
		Policy:        policy,
		BlockTimeout:  l.cfg.BlockTimeout,
		WriteTimeout:  l.cfg.WriteTimeout,
		MaxRetryTime:  l.cfg.MaxRetryTime,
		Prepare:       l.prepareCapture,
		Group:         func(c capture) *destination { return c.sink.dest },
		Write:         l.writeBatch,
		Logger:        l.core.Logger.With(slog.String("recorder", "integration_log")),
	})
	if l.closed {
		// Used after Close: every record is dropped and counted.
		_ = l.buf.Close(context.Background())
	}
	return l.buf
}

// destination returns the destination of records written through db (nil:
// the handle's pool). Recorders given the same handle share its
// destination; a handle whose type cannot serve as a map key safely (not a
// pointer) is a destination of its own.
func (b *recordBuffer) destination(db outbox.Querier) *destination {
	if db == nil {
		return b.pool
	}
	if reflect.TypeOf(db).Kind() != reflect.Pointer {
		return &destination{db: db}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dests[db]
	if d == nil {
		d = &destination{db: db}
		b.dests[db] = d
	}
	return d
}

// prepareCapture builds the redacted record of a capture, on the writer
// goroutine: redaction runs here, once per record.
func (l *Log) prepareCapture(c capture) (p preparedRecord, err error) {
	s, ex := c.sink, c.ex
	rec := intrecord.FromHTTP(l.red, s.integration, string(s.op), intrecord.FromExchange(ex), s.opts.Headers)
	if s.opts.ExternalID != nil {
		if rec.ExternalID, err = externalID(s.opts.ExternalID, ex); err != nil {
			return preparedRecord{}, err
		}
		// The id comes from the application's func: redacted like the rest
		// (Prepare below only validates).
		rec.ExternalID = l.red.String(rec.ExternalID)
	}
	rec, err = intrecord.Prepare(rec, nil, l.core.MaxPayloadBytes)
	if err != nil {
		return preparedRecord{}, fmt.Errorf("integration %q: %w", s.integration, recordError(err))
	}
	return preparedRecord{sink: s, rec: rec}, nil
}

// externalID calls the application's ExternalID func, turning a panic
// into an error (it runs on the background writer).
func externalID(f func(*http.Request, []byte, *http.Response, []byte) string, ex *httprecord.Exchange) (id string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = invalidRecord("external_id", "HTTPOptions.ExternalID panicked (%T; the value is not logged: it may hold request data)", p)
		}
	}()
	return f(ex.Request, ex.RequestBody, ex.Response, ex.ResponseBody), nil
}

// writeBatch writes a batch of one destination (the buffer groups records
// by destination) in one statement. The statement skips records already
// stored, so a batch retried after an attempt whose outcome is unknown is
// written once. A destination that refuses the records for good (a
// finished transaction, data the database rejects) gives the batch up at
// once; any other error is retried.
func (l *Log) writeBatch(ctx context.Context, batch []preparedRecord) error {
	recs := make([]intrecord.Record, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	err := intrecord.InsertOnce(ctx, batch[0].sink.dest.db, l.core.Store, recs)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("integrationlog: record integration: %w", err)
	if permanentWriteError(err) {
		return backoff.Permanent(err)
	}
	return err
}

// permanentWriteError reports an error that retrying cannot cure: a
// finished transaction, or data the database refuses.
func permanentWriteError(err error) bool {
	if errors.Is(err, sql.ErrTxDone) {
		return true
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code.Class() {
		case "22", "23": // data exception, integrity constraint violation
			return true
		}
	}
	return false
}

// checkBuffer validates the buffer settings.
func (c Config) checkBuffer() error {
	switch {
	case c.BufferRecords < 0:
		return invalidConfig("buffer_records", "must not be negative, got %d", c.BufferRecords)
	case c.BufferBytes < 0:
		return invalidConfig("buffer_bytes", "must not be negative, got %d", c.BufferBytes)
	case c.BatchSize < 0:
		return invalidConfig("batch_size", "must not be negative, got %d", c.BatchSize)
	case c.FlushInterval < 0:
		return invalidConfig("flush_interval", "must not be negative, got %s", c.FlushInterval)
	case c.BlockTimeout < 0:
		return invalidConfig("block_timeout", "must not be negative, got %s", c.BlockTimeout)
	case c.WriteTimeout < 0:
		return invalidConfig("write_timeout", "must not be negative, got %s", c.WriteTimeout)
	case c.MaxRetryTime < 0:
		return invalidConfig("max_retry_time", "must not be negative, got %s", c.MaxRetryTime)
	case c.WhenFull != DropWhenFull && c.WhenFull != BlockWhenFull:
		return invalidConfig("when_full", "unknown policy %d", c.WhenFull)
	}
	return nil
}
