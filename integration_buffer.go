package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/httprecord"
	"github.com/outboxkit/outbox/internal/recordbuf"
)

// Defaults of the buffer between Transport and Middleware and the
// database (IntegrationLogConfig).
const (
	// RecordBufferDefault is how many records the buffer holds at most
	// (10,000).
	RecordBufferDefault = recordbuf.MaxItemsDefault
	// RecordBufferBytesDefault is how many bytes of captured data (bodies
	// up to the body limit, URLs, headers) the buffer holds at most:
	// 32 MiB.
	RecordBufferBytesDefault = recordbuf.MaxBytesDefault
	// RecordBatchSizeDefault is the most records one INSERT writes (500).
	RecordBatchSizeDefault = recordbuf.BatchSizeDefault
	// RecordFlushIntervalDefault is the longest a record waits for its
	// batch to fill (200 ms).
	RecordFlushIntervalDefault = recordbuf.FlushIntervalDefault
	// RecordBlockTimeoutDefault is the longest a call waits for room in a
	// full buffer under BlockWhenFull (5 ms).
	RecordBlockTimeoutDefault = recordbuf.BlockTimeoutDefault
	// RecordWriteTimeoutDefault bounds each attempt to write a batch (10 s).
	RecordWriteTimeoutDefault = recordbuf.WriteTimeoutDefault
	// RecordMaxRetryTimeDefault is how long the writes to one destination
	// are retried while they keep failing before its records are given
	// up (1 minute): long enough to ride out a PostgreSQL restart or a
	// failover, and several attempts of WriteTimeout against a stalled
	// pool; short enough that a destination gone for good holds at most a
	// minute of its records in the buffer.
	RecordMaxRetryTimeDefault = recordbuf.MaxRetryTimeDefault
)

// BufferFullPolicy is what a recorded call does when the integration log's
// buffer is full.
type BufferFullPolicy int

// The full-buffer policies.
const (
	// DropWhenFull drops the record at once (the default): the call never
	// waits.
	DropWhenFull BufferFullPolicy = iota
	// BlockWhenFull waits for room up to IntegrationLogConfig.BlockTimeout,
	// then drops the record.
	BlockWhenFull
)

// IntegrationBufferStats counts what became of the records Transport and
// Middleware made. Every counter but Buffered and BufferedBytes only grows
// (they suit monotonic metrics); every record handed to the buffer is, at
// any time, buffered, written, rejected or lost.
type IntegrationBufferStats struct {
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
	// over Config.MaxPayloadBytes once redacted); each kind is logged.
	Rejected uint64
	// Lost counts buffered records given up: refused by the database for
	// good (bad data, a finished transaction as HTTPRecordOptions.DB),
	// their destination failing for MaxRetryTime, or still unwritten when
	// Close's context ended.
	Lost uint64
	// Retries counts batch writes that failed and were retried.
	Retries uint64
}

// BufferStats returns the counters of the buffer between Transport and
// Middleware and the database.
func (l *IntegrationLog) BufferStats() IntegrationBufferStats {
	l.mu.Lock()
	buf := l.buf
	l.mu.Unlock()
	if buf == nil {
		return IntegrationBufferStats{}
	}
	s := buf.Stats()
	return IntegrationBufferStats{Buffered: s.Buffered, BufferedBytes: s.BufferedBytes, Written: s.Written,
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
func (l *IntegrationLog) Flush(ctx context.Context) error {
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
// HTTPRecordOptions.DB) is written and retried on its own: one that fails
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
func (l *IntegrationLog) Close(ctx context.Context) error {
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
	dests map[Querier]*destination // HTTPRecordOptions.DB handles of pointer type
}

// destination is where records are written: the handle's pool or an
// HTTPRecordOptions.DB. The buffer batches, retries and gives up records
// per destination.
type destination struct {
	db Querier
}

// httpSink is one Transport or Middleware: where its captures go.
type httpSink struct {
	l           *IntegrationLog
	buf         *recordBuffer
	dest        *destination
	integration string
	op          Operation
	opts        HTTPRecordOptions
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
	rec  IntegrationRecord
}

// newSink returns the sink of a Transport or Middleware, starting the
// log's buffer if it is the first.
func (l *IntegrationLog) newSink(integration string, op Operation, opts *HTTPRecordOptions) *httpSink {
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
func (l *IntegrationLog) buffer() *recordBuffer {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf != nil {
		return l.buf
	}
	policy := recordbuf.Drop
	if l.cfg.WhenFull == BlockWhenFull {
		policy = recordbuf.Block
	}
	l.buf = &recordBuffer{pool: &destination{db: l.o.db}, dests: map[Querier]*destination{}}
	l.buf.Buffer = recordbuf.New(recordbuf.Config[capture, preparedRecord, *destination]{
		MaxItems:      orDefault(l.cfg.BufferRecords, RecordBufferDefault),
		MaxBytes:      orDefault(l.cfg.BufferBytes, RecordBufferBytesDefault),
		BatchSize:     orDefault(l.cfg.BatchSize, RecordBatchSizeDefault),
		FlushInterval: orDefault(l.cfg.FlushInterval, RecordFlushIntervalDefault),
		Policy:        policy,
		BlockTimeout:  orDefault(l.cfg.BlockTimeout, RecordBlockTimeoutDefault),
		WriteTimeout:  orDefault(l.cfg.WriteTimeout, RecordWriteTimeoutDefault),
		MaxRetryTime:  orDefault(l.cfg.MaxRetryTime, RecordMaxRetryTimeDefault),
		Prepare:       l.prepareCapture,
		Group:         func(c capture) *destination { return c.sink.dest },
		Write:         l.writeBatch,
		Logger:        l.o.log.With(slog.String("recorder", "integration_log")),
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
func (b *recordBuffer) destination(db Querier) *destination {
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
func (l *IntegrationLog) prepareCapture(c capture) (p preparedRecord, err error) {
	s, ex := c.sink, c.ex
	rec := httpRecord(l.red, s.integration, s.op, ex.Request, ex.RequestBody, ex.RequestBytes, ex.Response, ex.ResponseBody,
		ex.ResponseBytes, ex.Err, ex.Duration, s.opts.Headers)
	rec.OccurredAt = ex.Start
	if s.opts.ExternalID != nil {
		if rec.ExternalID, err = externalID(s.opts.ExternalID, ex); err != nil {
			return preparedRecord{}, err
		}
		// The id comes from the application's func: redacted like the rest
		// (prepareIntegration below only validates).
		rec.ExternalID = l.red.String(rec.ExternalID)
	}
	rec, err = l.o.prepareIntegration(rec, nil)
	if err != nil {
		return preparedRecord{}, fmt.Errorf("integration %q: %w", s.integration, err)
	}
	return preparedRecord{sink: s, rec: rec}, nil
}

// externalID calls the application's ExternalID func, turning a panic
// into an error (it runs on the background writer).
func externalID(f func(*http.Request, []byte, *http.Response, []byte) string, ex *httprecord.Exchange) (id string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = invalid(ErrInvalidRecord, "external_id", "HTTPRecordOptions.ExternalID panicked (%T; the value is not logged: it may hold request data)", p)
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
func (l *IntegrationLog) writeBatch(ctx context.Context, batch []preparedRecord) error {
	recs := make([]IntegrationRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	_, err := batch[0].sink.dest.db.ExecContext(ctx, l.sql.InsertOnce, l.o.integrationArgs(recs)...)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("outbox: record integration: %w", err)
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
func (c IntegrationLogConfig) checkBuffer() error {
	switch {
	case c.BufferRecords < 0:
		return invalid(ErrInvalidConfig, "buffer_records", "must not be negative, got %d", c.BufferRecords)
	case c.BufferBytes < 0:
		return invalid(ErrInvalidConfig, "buffer_bytes", "must not be negative, got %d", c.BufferBytes)
	case c.BatchSize < 0:
		return invalid(ErrInvalidConfig, "batch_size", "must not be negative, got %d", c.BatchSize)
	case c.FlushInterval < 0:
		return invalid(ErrInvalidConfig, "flush_interval", "must not be negative, got %s", c.FlushInterval)
	case c.BlockTimeout < 0:
		return invalid(ErrInvalidConfig, "block_timeout", "must not be negative, got %s", c.BlockTimeout)
	case c.WriteTimeout < 0:
		return invalid(ErrInvalidConfig, "write_timeout", "must not be negative, got %s", c.WriteTimeout)
	case c.MaxRetryTime < 0:
		return invalid(ErrInvalidConfig, "max_retry_time", "must not be negative, got %s", c.MaxRetryTime)
	case c.WhenFull != DropWhenFull && c.WhenFull != BlockWhenFull:
		return invalid(ErrInvalidConfig, "when_full", "unknown policy %d", c.WhenFull)
	}
	return nil
}

func orDefault[N int | int64 | time.Duration](v, def N) N {
	if v == 0 {
		return def
	}
	return v
}
