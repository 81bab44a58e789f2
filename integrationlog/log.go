package integrationlog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/handle"
	"github.com/outboxkit/outbox/internal/httprecord"
	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/page"
	"github.com/outboxkit/outbox/redact"
)

// Operation is the kind of an integration record (the integration_operation
// enum).
type Operation string

// The integration operations.
const (
	OpWebhookReceived Operation = "WEBHOOK_RECEIVED" // a third party called us
	OpAPICallMade     Operation = "API_CALL_MADE"    // we called a third party
	OpDataSync        Operation = "DATA_SYNC"        // a batch synchronisation ran
)

// statsWindowDefault is the window Stats covers when Since is zero.
const statsWindowDefault = 24 * time.Hour

// Record is one row of integration_log: one call to or from a
// third party. Request and Response are JSON; they are redacted before they
// are stored, whoever built the record.
type Record struct {
	// ID identifies the record. Left zero, a UUIDv7 is assigned.
	ID uuid.UUID
	// Integration names the third party, such as "stripe": free text of 1
	// to 100 characters without control characters.
	Integration string
	// Operation is what happened.
	Operation Operation
	// Request is the request data (JSON), or nil. It is stored redacted
	// (Redactor.JSON) and sanitised on purpose, not refused: invalid UTF-8
	// inside its strings becomes U+FFFD and control characters are removed,
	// so a record of what a third party sent is never lost to a bad byte.
	// (Enqueue, by contrast, refuses payloads it would have to change.)
	Request json.RawMessage
	// Response is the response data (JSON), or nil, stored like Request.
	Response json.RawMessage
	// HTTPStatus is the HTTP status code, or 0 for none.
	HTTPStatus int
	// Success reports whether the operation succeeded.
	Success bool
	// Error is the error message ("" for none), stored sanitised on
	// purpose: secrets redacted, invalid UTF-8 as U+FFFD, control
	// characters removed, on one line (line breaks become spaces), cut at
	// 2,000 characters.
	Error string
	// ExternalID is the third party's id for the object or call, such as a
	// Stripe charge id ("" for none). It is sanitised like Error, and a
	// secret-shaped id (a token, a card number) is redacted, before its
	// length is checked.
	ExternalID string
	// OccurredAt is when the operation started. Left zero, the current time
	// (the handle's clock, or the database's now()).
	OccurredAt time.Time
	// Duration is how long the operation took, stored in whole
	// milliseconds; 0 stores none.
	Duration time.Duration
}

// Config configures New. The zero value means defaults.
type Config struct {
	// Redaction extends the built-in redaction rules for every record of
	// the log, and sets the body limit (default 64 KiB). The handle's own
	// outbox.Config.Redaction applies to the records the handle writes
	// itself (the dispatcher's webhook attempts), not to the log's: give
	// the log the same rules when both should apply.
	Redaction redact.Rules

	// The buffer between Transport and Middleware and the database (the
	// Record* calls do not use it): see [Log.Close].

	// BufferRecords bounds the records waiting to be written, the batches
	// being written or retried included. Default 10,000.
	BufferRecords int
	// BufferBytes bounds the bytes those records hold (their captured
	// bodies, URLs and headers). Default 32 MiB.
	BufferBytes int64
	// BatchSize is the most records one INSERT writes. Default 500.
	BatchSize int
	// FlushInterval is the longest a record waits for its batch to fill
	// before a partial batch is written. Default 200 ms.
	FlushInterval time.Duration
	// WhenFull is what a recorded call does when the buffer is full:
	// DropWhenFull (the default) or BlockWhenFull.
	WhenFull BufferFullPolicy
	// BlockTimeout is the longest a call waits for room under
	// BlockWhenFull before its record is dropped. Default 5 ms.
	BlockTimeout time.Duration
	// WriteTimeout bounds each attempt to write a batch. Default 10 s.
	WriteTimeout time.Duration
	// MaxRetryTime bounds how long the records of one destination (the
	// handle's pool, or an HTTPOptions.DB) are retried while its
	// writes keep failing, counted from its first failure after its last
	// successful write. When it is reached, the records waiting for that
	// destination are given up (counted in BufferStats().Lost, logged,
	// reported by Flush and Close), and until a write to it succeeds
	// again each later batch for it is tried once. Other destinations are
	// written meanwhile. Default 1 minute.
	MaxRetryTime time.Duration
}

// Log records calls to and from third parties in integration_log,
// redacted, through the caller's transaction or any outbox.Querier, and
// queries them. Transport and Middleware record through a background
// writer: Flush writes what they recorded so far, and Close must be called
// when shutting down. A Log is safe for concurrent use.
type Log struct {
	core *handle.Core
	red  *redact.Redactor
	cfg  Config

	mu     sync.Mutex
	buf    *recordBuffer // started by the first Transport or Middleware
	closed bool
}

// APICall describes one call we made to a third party.
type APICall struct {
	Integration string        // the third party, such as "stripe"
	Method      string        // the HTTP method or RPC name
	URL         string        // the endpoint; user info and query secrets are redacted
	Request     any           // the request body or value: JSON-marshalled, []byte as a body
	Response    any           // the response body or value, likewise
	HTTPStatus  int           // 0 for none
	Error       string        // "" when the call succeeded
	ExternalID  string        // the third party's id of the object or call
	OccurredAt  time.Time     // zero: now
	Duration    time.Duration // how long the call took
}

// WebhookReceipt describes one webhook a third party sent us.
type WebhookReceipt struct {
	Integration string        // the sender, such as "stripe"
	EventType   string        // the sender's event type, such as "charge.succeeded"
	Headers     http.Header   // the request headers, redacted before storage
	Payload     any           // the body: JSON-marshalled, []byte as a body
	HTTPStatus  int           // the status we answered, 0 for none
	Error       string        // "" when we processed it
	ExternalID  string        // the sender's event id
	OccurredAt  time.Time     // zero: now
	Duration    time.Duration // how long we took
}

// DataSyncRun describes one synchronisation run with a third party.
type DataSyncRun struct {
	Integration string        // the third party
	Entity      string        // what was synchronised, such as "customers"
	Direction   string        // such as "import" or "export"
	Processed   int           // records synchronised
	Failed      int           // records that failed
	Details     any           // anything else worth keeping (cursor, filters): JSON-marshalled
	Error       string        // "" when the run completed
	ExternalID  string        // the third party's id of the run, if any
	OccurredAt  time.Time     // zero: now
	Duration    time.Duration // how long the run took
}

// HTTPOptions tunes what Transport and Middleware record. A nil
// *HTTPOptions means defaults.
type HTTPOptions struct {
	// Headers, when set, are the only request and response headers
	// recorded (still redacted). Default: every header, redacted.
	Headers []string
	// ExternalID, when set, picks the external id from the exchange; resp
	// is nil when the call failed. ExternalIDFromJSON covers the common
	// case. It runs on the log's background writer, off the request path,
	// with copies of the request and response: method, URL, host and
	// headers (only those Headers names, plus Content-Type, when Headers
	// is set), status and headers, no body stream nor context (the bodies
	// are reqBody and respBody, up to the body limit).
	ExternalID func(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) string
	// DB is where the background writer writes the records, in batches.
	// Default: the Outbox's *sql.DB. It must stay usable as long as the
	// recorder is: a pool, not a transaction. Records it fails to take
	// for a passing reason (a lost connection, a pool exhausted) are
	// retried for up to Config.MaxRetryTime, then given up;
	// records it refuses for good (a finished transaction, data the
	// database rejects) are given up at once. Given-up records are counted
	// as Lost. Either way the records of other destinations are written
	// meanwhile: recorders given the same DB share its retries, and never
	// hold back those of another DB or of the Outbox's own. To record in
	// your own transaction, use the Record* calls.
	DB outbox.Querier
}

// Filter selects records for Log.List. Zero fields do not filter.
type Filter struct {
	Integration string    // only this integration
	Operation   Operation // only this operation
	Success     *bool     // only successes (true) or failures (false)
	ExternalID  string    // only this external id
	Since       time.Time // occurred at or after
	Until       time.Time // occurred before
	Limit       int       // page size: default 100, at most 1000
	Cursor      string    // Page.Next of the previous page
}

// Page is one page of records, newest first.
type Page struct {
	Records []Record
	// Next is the cursor of the following page, "" when this page is the
	// last one.
	Next string
}

// Window selects the records Log.Stats aggregates.
type Window struct {
	Since       time.Time // default Until minus 24 hours
	Until       time.Time // exclusive; default now
	Integration string    // only this integration, if set
	Operation   Operation // only this operation, if set
}

// Stats summarises one integration over a window.
type Stats struct {
	Integration string
	Calls       int64         // records in the window
	Failures    int64         // records with success false
	SuccessRate float64       // (Calls-Failures)/Calls, in [0, 1]
	P50         time.Duration // median duration of the records that have one
	P95         time.Duration // 95th percentile duration
}

// New returns the integration log of ob's tables: records go through the
// caller's transaction or any outbox.Querier (Record*), or through a
// bounded buffer and a background writer (Transport, Middleware), redacted
// by cfg.Redaction's rules. It sends no SQL, and starts the writer only
// when Transport or Middleware is first called. A nil ob, or rules or
// buffer settings it cannot use, are an outbox.ErrInvalidConfig error.
func New(ob *outbox.Outbox, cfg Config) (*Log, error) {
	if ob == nil {
		return nil, fmt.Errorf("%w: integrationlog: nil *outbox.Outbox", outbox.ErrInvalidConfig)
	}
	red, err := redact.New(cfg.Redaction)
	if err != nil {
		return nil, fmt.Errorf("%w: integrationlog: Redaction: %w", outbox.ErrInvalidConfig, err)
	}
	if err := cfg.checkBuffer(); err != nil {
		return nil, err
	}
	return &Log{core: handle.Of(ob), red: red, cfg: cfg}, nil
}

// ExternalIDFromJSON returns an HTTPOptions.ExternalID func that takes
// the string (or number) under key in the top-level JSON object of the
// response body, else of the request body. Under a sensitive key (by the
// built-in rules) the id found is redact.Marker.
func ExternalIDFromJSON(key string) func(*http.Request, []byte, *http.Response, []byte) string {
	sensitive := redact.Default().SensitiveKey(key)
	get := func(b []byte) string {
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return ""
		}
		raw, ok := m[key]
		if !ok {
			return ""
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if sensitive && s != "" {
				return redact.Marker
			}
			return s
		}
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			if sensitive {
				return redact.Marker
			}
			return n.String()
		}
		return ""
	}
	return func(_ *http.Request, reqBody []byte, _ *http.Response, respBody []byte) string {
		if id := get(respBody); id != "" {
			return id
		}
		return get(reqBody)
	}
}

// Redactor returns the redaction rules the log applies (the built-in rules
// extended by Config.Redaction), for an application that redacts its own
// logs the same way.
func (l *Log) Redactor() *redact.Redactor { return l.red }

// Record validates, redacts and inserts one record through q and returns it
// as stored (ID, OccurredAt and the redacted data filled in). An invalid
// record is an ErrInvalidRecord (or outbox.ErrInvalidPayload,
// outbox.ErrPayloadTooLarge) *outbox.ValidationError returned before any
// SQL is sent, so q's transaction stays usable.
func (l *Log) Record(ctx context.Context, q outbox.Querier, rec Record) (Record, error) {
	out, err := l.insert(ctx, q, []Record{rec}, l.red)
	if err != nil {
		return Record{}, err
	}
	return out[0], nil
}

// recordBuilt inserts a record whose Request and Response the typed
// Record* calls built redacted already: its error and external id are
// redacted here, and the JSON only validated, so that redaction runs once.
func (l *Log) recordBuilt(ctx context.Context, q outbox.Querier, rec Record) (Record, error) {
	rec.Error = l.red.String(rec.Error)
	rec.ExternalID = l.red.String(rec.ExternalID)
	out, err := l.insert(ctx, q, []Record{rec}, nil)
	if err != nil {
		return Record{}, err
	}
	return out[0], nil
}

// RecordBatch inserts many records in one statement, with Record's
// guarantees: if any record is invalid nothing is sent, and the error names
// its index.
func (l *Log) RecordBatch(ctx context.Context, q outbox.Querier, recs []Record) ([]Record, error) {
	return l.insert(ctx, q, recs, l.red)
}

// RecordAPICall records an API_CALL_MADE. The call succeeded when Error is
// empty and HTTPStatus is 0 or 2xx. request_data holds method, url and
// body; response_data holds body.
func (l *Log) RecordAPICall(ctx context.Context, q outbox.Querier, c APICall) (Record, error) {
	req, err := envelope(l.red, "request_data", map[string]any{"method": c.Method, "url": l.red.URL(c.URL)}, c.Request)
	if err != nil {
		return Record{}, err
	}
	resp, err := envelope(l.red, "response_data", map[string]any{}, c.Response)
	if err != nil {
		return Record{}, err
	}
	return l.recordBuilt(ctx, q, Record{
		Integration: c.Integration, Operation: OpAPICallMade, Request: req, Response: resp,
		HTTPStatus: c.HTTPStatus, Success: c.Error == "" && intrecord.OKStatus(c.HTTPStatus), Error: c.Error,
		ExternalID: c.ExternalID, OccurredAt: c.OccurredAt, Duration: c.Duration,
	})
}

// RecordWebhookReceived records a WEBHOOK_RECEIVED. It succeeded when Error
// is empty and HTTPStatus is 0 or 2xx. request_data holds event_type,
// headers and body.
func (l *Log) RecordWebhookReceived(ctx context.Context, q outbox.Querier, w WebhookReceipt) (Record, error) {
	head := map[string]any{}
	if w.EventType != "" {
		head["event_type"] = w.EventType
	}
	if h := l.red.Headers(w.Headers, nil); h != nil {
		head["headers"] = h
	}
	req, err := envelope(l.red, "request_data", head, w.Payload)
	if err != nil {
		return Record{}, err
	}
	return l.recordBuilt(ctx, q, Record{
		Integration: w.Integration, Operation: OpWebhookReceived, Request: req,
		HTTPStatus: w.HTTPStatus, Success: w.Error == "" && intrecord.OKStatus(w.HTTPStatus), Error: w.Error,
		ExternalID: w.ExternalID, OccurredAt: w.OccurredAt, Duration: w.Duration,
	})
}

// RecordDataSync records a DATA_SYNC. It succeeded when Error is empty and
// Failed is 0. request_data holds entity, direction and details;
// response_data holds processed and failed.
func (l *Log) RecordDataSync(ctx context.Context, q outbox.Querier, d DataSyncRun) (Record, error) {
	if d.Processed < 0 || d.Failed < 0 {
		return Record{}, invalidRecord("response_data", "processed and failed must not be negative")
	}
	head := map[string]any{}
	if d.Entity != "" {
		head["entity"] = d.Entity
	}
	if d.Direction != "" {
		head["direction"] = d.Direction
	}
	req, err := envelopeKey(l.red, "request_data", head, "details", d.Details)
	if err != nil {
		return Record{}, err
	}
	resp, err := jsontext.Marshal(map[string]any{"processed": d.Processed, "failed": d.Failed})
	if err != nil {
		return Record{}, err
	}
	return l.recordBuilt(ctx, q, Record{
		Integration: d.Integration, Operation: OpDataSync, Request: req, Response: resp,
		Success: d.Error == "" && d.Failed == 0, Error: d.Error, ExternalID: d.ExternalID,
		OccurredAt: d.OccurredAt, Duration: d.Duration,
	})
}

// Transport wraps base (http.DefaultTransport when nil) so that every call
// made through it is recorded as an API_CALL_MADE of integration: method,
// URL, headers and body of the request; status, headers and body of the
// response; duration (until the response headers arrived); success (2xx);
// the transport error as error_message. Bodies are captured up to the body
// limit while they stream, and reach the caller intact.
//
// A call that fails is captured when RoundTrip returns; a call that gets a
// response is captured when the caller reads its body to the end or closes
// it (every caller must close it). The capture is handed to the log's
// buffer and the call goes on: redaction and the INSERT happen on the
// background writer, and a call never waits on the database (see Close for
// what that guarantees and what can be lost). A failure to record never
// fails the call. Transport panics if integration is not a valid name.
func (l *Log) Transport(integration string, base http.RoundTripper, opts *HTTPOptions) http.RoundTripper {
	if err := intrecord.CheckName(integration); err != nil {
		panic(recordError(err))
	}
	s := l.newSink(integration, OpAPICallMade, opts)
	return httprecord.Transport(base, l.captureConfig(), s.handOff)
}

// Middleware returns HTTP middleware that records every request it serves
// as a WEBHOOK_RECEIVED of integration: method, URL, headers and body of
// the request, and the status, headers and body the next handler wrote.
// The next handler reads the body intact. A panic in the next handler is
// recorded (status 500) and re-raised. Records go through the log's buffer
// as Transport's do: the response never waits on the database. A failure
// to record is never seen by the sender. Middleware panics if integration
// is not a valid name.
func (l *Log) Middleware(integration string, opts *HTTPOptions) func(http.Handler) http.Handler {
	if err := intrecord.CheckName(integration); err != nil {
		panic(recordError(err))
	}
	s := l.newSink(integration, OpWebhookReceived, opts)
	return func(next http.Handler) http.Handler {
		return httprecord.Handler(next, l.captureConfig(), s.handOff)
	}
}

// List returns records matching f, newest first, one page at a time
// (keyset pagination: stable while new records arrive). An unknown
// operation, a bad cursor or a negative limit is an
// outbox.ErrInvalidFilter *outbox.ValidationError.
func (l *Log) List(ctx context.Context, f Filter) (Page, error) {
	limit, err := page.Limit(f.Limit, page.LimitDefault, page.LimitMax)
	if err != nil {
		return Page{}, filterError(err)
	}
	if f.Operation != "" && !f.Operation.valid() {
		return Page{}, invalidFilter("operation", "unknown operation %q", f.Operation)
	}
	curAt, curID, err := page.DecodeCursor(f.Cursor)
	if err != nil {
		return Page{}, filterError(err)
	}
	var success any
	if f.Success != nil {
		success = *f.Success
	}
	rows, err := l.core.DB.QueryContext(ctx, l.core.Store.Integration.List, f.Integration, string(f.Operation), success, f.ExternalID,
		page.TimeArg(f.Since), page.TimeArg(f.Until), curAt, curID, limit+1)
	var out Page
	out.Records, out.Next, err = page.Read(rows, err, limit,
		func(rows *sql.Rows) (Record, error) { r, err := intrecord.Scan(rows); return fromInternal(r), err },
		func(r Record) (time.Time, uuid.UUID) { return r.OccurredAt, r.ID })
	if err != nil {
		return Page{}, fmt.Errorf("integrationlog: list integration records: %w", err)
	}
	return out, nil
}

// Stats aggregates the records of a window per integration, ordered by
// integration name. An unknown operation or an empty window is an
// outbox.ErrInvalidFilter *outbox.ValidationError.
func (l *Log) Stats(ctx context.Context, w Window) ([]Stats, error) {
	if w.Operation != "" && !w.Operation.valid() {
		return nil, invalidFilter("operation", "unknown operation %q", w.Operation)
	}
	if w.Until.IsZero() {
		w.Until = l.core.Store.Now()
	}
	if w.Since.IsZero() {
		w.Since = w.Until.Add(-statsWindowDefault)
	}
	if !w.Since.Before(w.Until) {
		return nil, invalidFilter("since", "must be before until")
	}
	rows, err := l.core.DB.QueryContext(ctx, l.core.Store.Integration.Stats, w.Since.UTC(), w.Until.UTC(), w.Integration, string(w.Operation))
	if err != nil {
		return nil, fmt.Errorf("integrationlog: integration stats: %w", err)
	}
	defer rows.Close()
	var out []Stats
	for rows.Next() {
		var s Stats
		var p50, p95 sql.NullFloat64
		if err := rows.Scan(&s.Integration, &s.Calls, &s.Failures, &p50, &p95); err != nil {
			return nil, fmt.Errorf("integrationlog: integration stats: %w", err)
		}
		if s.Calls > 0 {
			s.SuccessRate = float64(s.Calls-s.Failures) / float64(s.Calls)
		}
		s.P50 = time.Duration(p50.Float64 * float64(time.Millisecond))
		s.P95 = time.Duration(p95.Float64 * float64(time.Millisecond))
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("integrationlog: integration stats: %w", err)
	}
	return out, nil
}

// captureConfig keeps one byte over the body limit, so that the redactor
// sees which bodies it cuts.
func (l *Log) captureConfig() httprecord.Config {
	return httprecord.Config{Limit: l.red.MaxBodyBytes() + 1, Now: l.core.Store.Now}
}

// insert is the one write path of the Record* calls: it prepares
// (validates and, with red, redacts) recs and inserts them through q.
func (l *Log) insert(ctx context.Context, q outbox.Querier, recs []Record, red *redact.Redactor) ([]Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	out := make([]intrecord.Record, len(recs))
	index := make(map[uuid.UUID]int, len(recs))
	for i, rec := range recs {
		r, err := intrecord.Prepare(rec.internal(), red, l.core.MaxPayloadBytes)
		if err != nil {
			if len(recs) > 1 {
				return nil, fmt.Errorf("record %d: %w", i, recordError(err))
			}
			return nil, recordError(err)
		}
		if _, dup := index[r.ID]; dup {
			return nil, fmt.Errorf("record %d: %w", i, invalidRecord("id", "repeats record %d's id", index[r.ID]))
		}
		out[i], index[r.ID] = r, i
	}
	if err := intrecord.Insert(ctx, q, l.core.Store, out); err != nil {
		return nil, fmt.Errorf("integrationlog: record: %w", err)
	}
	stored := make([]Record, len(out))
	for i, r := range out {
		stored[i] = fromInternal(r)
	}
	return stored, nil
}

// internal is r as the record path takes it.
func (r Record) internal() intrecord.Record {
	return intrecord.Record{ID: r.ID, Integration: r.Integration, Operation: string(r.Operation), Request: r.Request,
		Response: r.Response, HTTPStatus: r.HTTPStatus, Success: r.Success, Error: r.Error, ExternalID: r.ExternalID,
		OccurredAt: r.OccurredAt, Duration: r.Duration}
}

// fromInternal is a stored record as the API shows it.
func fromInternal(r intrecord.Record) Record {
	return Record{ID: r.ID, Integration: r.Integration, Operation: Operation(r.Operation), Request: r.Request,
		Response: r.Response, HTTPStatus: r.HTTPStatus, Success: r.Success, Error: r.Error, ExternalID: r.ExternalID,
		OccurredAt: r.OccurredAt, Duration: r.Duration}
}

func (op Operation) valid() bool { return intrecord.ValidOperation(string(op)) }
