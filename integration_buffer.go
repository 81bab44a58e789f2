package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
	// Lost counts buffered records given up: still unwritten when Close's
	// context ended, or refused by the database for good (bad data, a
	// finished transaction as HTTPRecordOptions.DB).
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

// Close writes the records Transport and Middleware have buffered and
// stops the log's background writer. Every application that uses
// Transport or Middleware must call it when shutting down, after its HTTP
// servers and clients have stopped (http.Server.Shutdown), with a context
// that bounds the flush: records not written when ctx ends are given up,
// counted in BufferStats().Lost, and reported by an error wrapping
// ErrRecordsNotWritten and ctx's error. Records made after Close are
// dropped and counted.
//
// The guarantee of the HTTP recorders: a call hands its capture (bodies
// already bounded by the body limit) to an in-memory buffer and goes on; it
// never waits on the database, whatever the database does. Under the
// default DropWhenFull it does not wait at all; under BlockWhenFull it
// waits at most BlockTimeout for room. A background writer redacts the
// records, writes them in batches (one INSERT per batch) and retries a
// failed batch with backoff while the buffer keeps filling up to its
// bounds. What can be lost: records in the buffer when the process
// crashes or Close gives up, and records dropped because the buffer was
// full. BufferStats counts them, and drops are logged at Warn at most once
// every 10 seconds with their count.
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
	err := buf.Close(ctx)
	var nw *recordbuf.NotWrittenError
	if errors.As(err, &nw) {
		return fmt.Errorf("%w: %d records: %w", ErrRecordsNotWritten, nw.Count, nw.Err)
	}
	return err
}

// recordBuffer carries the captures of Transport and Middleware to the
// background writer.
type recordBuffer = recordbuf.Buffer[capture, preparedRecord]

// httpSink is one Transport or Middleware: where its captures go.
type httpSink struct {
	l           *IntegrationLog
	buf         *recordBuffer
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
	// givenUp, when set, is why the record's destination refused it for
	// good: a retry of its batch skips it.
	givenUp error
}

// newSink returns the sink of a Transport or Middleware, starting the
// log's buffer if it is the first.
func (l *IntegrationLog) newSink(integration string, op Operation, opts *HTTPRecordOptions) *httpSink {
	s := &httpSink{l: l, buf: l.buffer(), integration: integration, op: op}
	if opts != nil {
		s.opts = *opts
		s.opts.Headers = append([]string(nil), opts.Headers...)
	}
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
	l.buf = recordbuf.New(recordbuf.Config[capture, preparedRecord]{
		MaxItems:      orDefault(l.cfg.BufferRecords, RecordBufferDefault),
		MaxBytes:      orDefault(l.cfg.BufferBytes, RecordBufferBytesDefault),
		BatchSize:     orDefault(l.cfg.BatchSize, RecordBatchSizeDefault),
		FlushInterval: orDefault(l.cfg.FlushInterval, RecordFlushIntervalDefault),
		Policy:        policy,
		BlockTimeout:  orDefault(l.cfg.BlockTimeout, RecordBlockTimeoutDefault),
		WriteTimeout:  orDefault(l.cfg.WriteTimeout, RecordWriteTimeoutDefault),
		Prepare:       l.prepareCapture,
		Write:         l.writeBatch,
		Logger:        l.o.log.With(slog.String("recorder", "integration_log")),
	})
	if l.closed {
		// Used after Close: every record is dropped and counted.
		_ = l.buf.Close(context.Background())
	}
	return l.buf
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

// writeBatch writes a batch, one statement per destination (the handle's
// pool, or an HTTPRecordOptions.DB). The statement skips records already
// stored, so a batch retried after an attempt whose outcome is unknown is
// written once. A destination that refuses its records for good (a finished
// transaction, data the database rejects) loses only its own group: the
// others are written, and the group is reported as given up.
func (l *IntegrationLog) writeBatch(ctx context.Context, batch []preparedRecord) error {
	type group struct {
		db  Querier
		idx []int // indexes into batch
	}
	var groups []*group
	bySink := map[*httpSink]*group{}
	for i, p := range batch {
		if p.givenUp != nil {
			continue
		}
		key := p.sink
		if p.sink.opts.DB == nil {
			key = nil // the handle's pool: one group
		}
		g := bySink[key]
		if g == nil {
			g = &group{db: p.sink.opts.DB}
			if g.db == nil {
				g.db = l.o.db
			}
			bySink[key] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	var retry error
	for _, g := range groups {
		recs := make([]IntegrationRecord, len(g.idx))
		for j, i := range g.idx {
			recs[j] = batch[i].rec
		}
		if _, err := g.db.ExecContext(ctx, l.sql.InsertOnce, l.o.integrationArgs(recs)...); err != nil {
			err = fmt.Errorf("outbox: record integration: %w", err)
			if !permanentWriteError(err) {
				retry = err // retried with the whole batch; written groups are skipped by the statement
				continue
			}
			for _, i := range g.idx {
				batch[i].givenUp = err
			}
		}
	}
	if retry != nil {
		return retry
	}
	n := 0
	var first error
	for _, p := range batch {
		if p.givenUp != nil {
			n++
			first = cmp.Or(first, p.givenUp)
		}
	}
	if n > 0 {
		return backoff.Permanent(&recordbuf.GivenUpError{Count: n, Err: first})
	}
	return nil
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
