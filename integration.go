package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/httprecord"
	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/page"
	"github.com/outboxkit/outbox/internal/store"
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

// Limits and defaults of the integration log.
const (
	// MaxIntegrationNameChars is the longest integration name.
	MaxIntegrationNameChars = 100
	// MaxExternalIDChars is the longest external id.
	MaxExternalIDChars = 255
	// MaxErrorMessageChars is where a stored error message is cut.
	MaxErrorMessageChars = 2000
	// ListLimitDefault is the page size of List calls that leave Limit 0.
	ListLimitDefault = page.LimitDefault
	// ListLimitMax is the largest page size.
	ListLimitMax = page.LimitMax
	// StatsWindowDefault is the window IntegrationLog.Stats covers when
	// Since is zero: the last 24 hours.
	StatsWindowDefault = 24 * time.Hour
)

// IntegrationRecord is one row of integration_log: one call to or from a
// third party. Request and Response are JSON; they are redacted before they
// are stored, whoever built the record.
type IntegrationRecord struct {
	// ID identifies the record. Left zero, a UUIDv7 is assigned.
	ID uuid.UUID
	// Integration names the third party, such as "stripe": free text of 1
	// to MaxIntegrationNameChars characters without control characters.
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
	// MaxErrorMessageChars.
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

// IntegrationLogConfig configures NewIntegrationLog. The zero value means
// defaults.
type IntegrationLogConfig struct {
	// Redaction extends the built-in redaction rules and sets the body
	// limit (default redact.MaxBodyBytesDefault).
	Redaction redact.Rules

	// The buffer between Transport and Middleware and the database (the
	// Record* calls do not use it): see [IntegrationLog.Close].

	// BufferRecords bounds the records waiting to be written, the batch
	// being written included. Default RecordBufferDefault.
	BufferRecords int
	// BufferBytes bounds the bytes those records hold (their captured
	// bodies, URLs and headers). Default RecordBufferBytesDefault.
	BufferBytes int64
	// BatchSize is the most records one INSERT writes. Default
	// RecordBatchSizeDefault.
	BatchSize int
	// FlushInterval is the longest a record waits for its batch to fill
	// before a partial batch is written. Default RecordFlushIntervalDefault.
	FlushInterval time.Duration
	// WhenFull is what a recorded call does when the buffer is full:
	// DropWhenFull (the default) or BlockWhenFull.
	WhenFull BufferFullPolicy
	// BlockTimeout is the longest a call waits for room under
	// BlockWhenFull before its record is dropped. Default
	// RecordBlockTimeoutDefault.
	BlockTimeout time.Duration
	// WriteTimeout bounds each attempt to write a batch. Default
	// RecordWriteTimeoutDefault.
	WriteTimeout time.Duration
	// MaxRetryTime bounds how long the records of one destination (the
	// handle's pool, or an HTTPRecordOptions.DB) are retried while its
	// writes keep failing, counted from its first failure after its last
	// successful write. When it is reached, the records waiting for that
	// destination are given up (counted in BufferStats().Lost, logged,
	// reported by Flush and Close), and until a write to it succeeds
	// again each later batch for it is tried once. Other destinations are
	// written meanwhile. Default RecordMaxRetryTimeDefault (one minute).
	MaxRetryTime time.Duration
}

// IntegrationLog records calls to and from third parties in
// integration_log, redacted, through the caller's transaction or any
// Querier, and queries them. Transport and Middleware record through a
// background writer: Flush writes what they recorded so far, and Close
// must be called when shutting down. It is safe for concurrent use.
type IntegrationLog struct {
	o   *Outbox
	red *redact.Redactor
	sql *store.IntegrationStatements
	cfg IntegrationLogConfig

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

// HTTPRecordOptions tunes what Transport and Middleware record. A nil
// *HTTPRecordOptions means defaults.
type HTTPRecordOptions struct {
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
	// retried for up to IntegrationLogConfig.MaxRetryTime, then given up;
	// records it refuses for good (a finished transaction, data the
	// database rejects) are given up at once. Given-up records are counted
	// as Lost. Either way the records of other destinations are written
	// meanwhile: recorders given the same DB share its retries, and never
	// hold back those of another DB or of the Outbox's own. To record in
	// your own transaction, use the Record* calls.
	DB Querier
}

// IntegrationFilter selects records for IntegrationLog.List. Zero fields
// do not filter.
type IntegrationFilter struct {
	Integration string    // only this integration
	Operation   Operation // only this operation
	Success     *bool     // only successes (true) or failures (false)
	ExternalID  string    // only this external id
	Since       time.Time // occurred at or after
	Until       time.Time // occurred before
	Limit       int       // page size: default ListLimitDefault, at most ListLimitMax
	Cursor      string    // IntegrationPage.Next of the previous page
}

// IntegrationPage is one page of records, newest first.
type IntegrationPage struct {
	Records []IntegrationRecord
	// Next is the cursor of the following page, "" when this page is the
	// last one.
	Next string
}

// IntegrationWindow selects the records IntegrationLog.Stats aggregates.
type IntegrationWindow struct {
	Since       time.Time // default Until minus StatsWindowDefault
	Until       time.Time // exclusive; default now
	Integration string    // only this integration, if set
	Operation   Operation // only this operation, if set
}

// IntegrationStats summarises one integration over a window.
type IntegrationStats struct {
	Integration string
	Calls       int64         // records in the window
	Failures    int64         // records with success false
	SuccessRate float64       // (Calls-Failures)/Calls, in [0, 1]
	P50         time.Duration // median duration of the records that have one
	P95         time.Duration // 95th percentile duration
}

// NewIntegrationLog returns the integration recorder of o.
func (o *Outbox) NewIntegrationLog(cfg IntegrationLogConfig) (*IntegrationLog, error) {
	red, err := redact.New(cfg.Redaction)
	if err != nil {
		return nil, err
	}
	if err := cfg.checkBuffer(); err != nil {
		return nil, err
	}
	return &IntegrationLog{o: o, red: red, sql: &o.st.Integration, cfg: cfg}, nil
}

// ExternalIDFromJSON returns an HTTPRecordOptions.ExternalID func that takes
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

// Redactor returns the redaction rules the log applies.
func (l *IntegrationLog) Redactor() *redact.Redactor { return l.red }

// Record validates, redacts and inserts one record through q and returns it
// as stored (ID, OccurredAt and the redacted data filled in). An invalid
// record is an ErrInvalidRecord (or ErrInvalidPayload, ErrPayloadTooLarge)
// *ValidationError returned before any SQL is sent, so q's transaction
// stays usable.
func (l *IntegrationLog) Record(ctx context.Context, q Querier, rec IntegrationRecord) (IntegrationRecord, error) {
	out, err := l.o.insertIntegrations(ctx, q, []IntegrationRecord{rec}, l.red)
	if err != nil {
		return IntegrationRecord{}, err
	}
	return out[0], nil
}

// recordBuilt inserts a record whose Request and Response the typed
// Record* calls built redacted already: its error and external id are
// redacted here, and the JSON only validated, so that redaction runs once.
func (l *IntegrationLog) recordBuilt(ctx context.Context, q Querier, rec IntegrationRecord) (IntegrationRecord, error) {
	rec.Error = l.red.String(rec.Error)
	rec.ExternalID = l.red.String(rec.ExternalID)
	out, err := l.o.insertIntegrations(ctx, q, []IntegrationRecord{rec}, nil)
	if err != nil {
		return IntegrationRecord{}, err
	}
	return out[0], nil
}

// RecordBatch inserts many records in one statement, with Record's
// guarantees: if any record is invalid nothing is sent, and the error names
// its index.
func (l *IntegrationLog) RecordBatch(ctx context.Context, q Querier, recs []IntegrationRecord) ([]IntegrationRecord, error) {
	return l.o.insertIntegrations(ctx, q, recs, l.red)
}

// RecordAPICall records an API_CALL_MADE. The call succeeded when Error is
// empty and HTTPStatus is 0 or 2xx. request_data holds method, url and
// body; response_data holds body.
func (l *IntegrationLog) RecordAPICall(ctx context.Context, q Querier, c APICall) (IntegrationRecord, error) {
	req, err := envelope(l.red, "request_data", map[string]any{"method": c.Method, "url": l.red.URL(c.URL)}, c.Request)
	if err != nil {
		return IntegrationRecord{}, err
	}
	resp, err := envelope(l.red, "response_data", map[string]any{}, c.Response)
	if err != nil {
		return IntegrationRecord{}, err
	}
	return l.recordBuilt(ctx, q, IntegrationRecord{
		Integration: c.Integration, Operation: OpAPICallMade, Request: req, Response: resp,
		HTTPStatus: c.HTTPStatus, Success: c.Error == "" && okStatus(c.HTTPStatus), Error: c.Error,
		ExternalID: c.ExternalID, OccurredAt: c.OccurredAt, Duration: c.Duration,
	})
}

// RecordWebhookReceived records a WEBHOOK_RECEIVED. It succeeded when Error
// is empty and HTTPStatus is 0 or 2xx. request_data holds event_type,
// headers and body.
func (l *IntegrationLog) RecordWebhookReceived(ctx context.Context, q Querier, w WebhookReceipt) (IntegrationRecord, error) {
	head := map[string]any{}
	if w.EventType != "" {
		head["event_type"] = w.EventType
	}
	if h := l.red.Headers(w.Headers, nil); h != nil {
		head["headers"] = h
	}
	req, err := envelope(l.red, "request_data", head, w.Payload)
	if err != nil {
		return IntegrationRecord{}, err
	}
	return l.recordBuilt(ctx, q, IntegrationRecord{
		Integration: w.Integration, Operation: OpWebhookReceived, Request: req,
		HTTPStatus: w.HTTPStatus, Success: w.Error == "" && okStatus(w.HTTPStatus), Error: w.Error,
		ExternalID: w.ExternalID, OccurredAt: w.OccurredAt, Duration: w.Duration,
	})
}

// RecordDataSync records a DATA_SYNC. It succeeded when Error is empty and
// Failed is 0. request_data holds entity, direction and details;
// response_data holds processed and failed.
func (l *IntegrationLog) RecordDataSync(ctx context.Context, q Querier, d DataSyncRun) (IntegrationRecord, error) {
	if d.Processed < 0 || d.Failed < 0 {
		return IntegrationRecord{}, invalid(ErrInvalidRecord, "response_data", "processed and failed must not be negative")
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
		return IntegrationRecord{}, err
	}
	resp, err := jsontext.Marshal(map[string]any{"processed": d.Processed, "failed": d.Failed})
	if err != nil {
		return IntegrationRecord{}, err
	}
	return l.recordBuilt(ctx, q, IntegrationRecord{
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
func (l *IntegrationLog) Transport(integration string, base http.RoundTripper, opts *HTTPRecordOptions) http.RoundTripper {
	if err := checkIntegrationName(integration); err != nil {
		panic(err)
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
func (l *IntegrationLog) Middleware(integration string, opts *HTTPRecordOptions) func(http.Handler) http.Handler {
	if err := checkIntegrationName(integration); err != nil {
		panic(err)
	}
	s := l.newSink(integration, OpWebhookReceived, opts)
	return func(next http.Handler) http.Handler {
		return httprecord.Handler(next, l.captureConfig(), s.handOff)
	}
}

// List returns records matching f, newest first, one page at a time
// (keyset pagination: stable while new records arrive).
func (l *IntegrationLog) List(ctx context.Context, f IntegrationFilter) (IntegrationPage, error) {
	limit, err := page.Limit(f.Limit, ListLimitDefault, ListLimitMax)
	if err != nil {
		return IntegrationPage{}, filterError(err)
	}
	if f.Operation != "" && !f.Operation.valid() {
		return IntegrationPage{}, invalid(ErrInvalidFilter, "operation", "unknown operation %q", f.Operation)
	}
	curAt, curID, err := page.DecodeCursor(f.Cursor)
	if err != nil {
		return IntegrationPage{}, filterError(err)
	}
	var success any
	if f.Success != nil {
		success = *f.Success
	}
	rows, err := l.o.db.QueryContext(ctx, l.sql.List, f.Integration, string(f.Operation), success, f.ExternalID,
		page.TimeArg(f.Since), page.TimeArg(f.Until), curAt, curID, limit+1)
	var out IntegrationPage
	out.Records, out.Next, err = page.Read(rows, err, limit,
		func(rows *sql.Rows) (IntegrationRecord, error) { return scanIntegrationRecord(rows) },
		func(r IntegrationRecord) (time.Time, uuid.UUID) { return r.OccurredAt, r.ID })
	if err != nil {
		return IntegrationPage{}, fmt.Errorf("outbox: list integration records: %w", err)
	}
	return out, nil
}

// Stats aggregates records per integration over a window, by integration
// name.
func (l *IntegrationLog) Stats(ctx context.Context, w IntegrationWindow) ([]IntegrationStats, error) {
	if w.Operation != "" && !w.Operation.valid() {
		return nil, invalid(ErrInvalidFilter, "operation", "unknown operation %q", w.Operation)
	}
	if w.Until.IsZero() {
		w.Until = l.o.now()
	}
	if w.Since.IsZero() {
		w.Since = w.Until.Add(-StatsWindowDefault)
	}
	if !w.Since.Before(w.Until) {
		return nil, invalid(ErrInvalidFilter, "since", "must be before until")
	}
	rows, err := l.o.db.QueryContext(ctx, l.sql.Stats, w.Since.UTC(), w.Until.UTC(), w.Integration, string(w.Operation))
	if err != nil {
		return nil, fmt.Errorf("outbox: integration stats: %w", err)
	}
	defer rows.Close()
	var out []IntegrationStats
	for rows.Next() {
		var s IntegrationStats
		var p50, p95 sql.NullFloat64
		if err := rows.Scan(&s.Integration, &s.Calls, &s.Failures, &p50, &p95); err != nil {
			return nil, fmt.Errorf("outbox: integration stats: %w", err)
		}
		if s.Calls > 0 {
			s.SuccessRate = float64(s.Calls-s.Failures) / float64(s.Calls)
		}
		s.P50 = time.Duration(p50.Float64 * float64(time.Millisecond))
		s.P95 = time.Duration(p95.Float64 * float64(time.Millisecond))
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: integration stats: %w", err)
	}
	return out, nil
}

// captureConfig keeps one byte over the body limit, so that the redactor
// sees which bodies it cuts.
func (l *IntegrationLog) captureConfig() httprecord.Config {
	return httprecord.Config{Limit: l.red.MaxBodyBytes() + 1, Now: l.o.now}
}

// redactor returns the redaction rules of records written outside an
// IntegrationLog (webhook delivery attempts): Config.Redaction, or the
// built-in rules.
func (o *Outbox) redactor() *redact.Redactor {
	if o.red != nil {
		return o.red
	}
	return redact.Default()
}

// insertIntegrations is the one write path of integration records: it
// prepares (validates and redacts) recs and inserts them.
func (o *Outbox) insertIntegrations(ctx context.Context, q Querier, recs []IntegrationRecord, red *redact.Redactor) ([]IntegrationRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	out := make([]IntegrationRecord, len(recs))
	index := make(map[uuid.UUID]int, len(recs))
	for i, rec := range recs {
		r, err := o.prepareIntegration(rec, red)
		if err != nil {
			if len(recs) > 1 {
				return nil, fmt.Errorf("record %d: %w", i, err)
			}
			return nil, err
		}
		if _, dup := index[r.ID]; dup {
			return nil, fmt.Errorf("record %d: %w", i, invalid(ErrInvalidRecord, "id", "repeats record %d's id", index[r.ID]))
		}
		out[i], index[r.ID] = r, i
	}
	return out, o.insertPrepared(ctx, q, out)
}

// insertPrepared inserts records prepareIntegration returned (distinct ids)
// in one statement, and sets each one's OccurredAt to the stored time.
func (o *Outbox) insertPrepared(ctx context.Context, q Querier, recs []IntegrationRecord) error {
	if len(recs) == 0 {
		return nil
	}
	rows, err := q.QueryContext(ctx, o.st.Integration.Insert, o.integrationArgs(recs)...)
	if err != nil {
		return fmt.Errorf("outbox: record integration: %w", err)
	}
	defer rows.Close()
	index := make(map[uuid.UUID]int, len(recs))
	for i, r := range recs {
		index[r.ID] = i
	}
	for rows.Next() {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return fmt.Errorf("outbox: record integration: %w", err)
		}
		recs[index[id]].OccurredAt = at
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("outbox: record integration: %w", err)
	}
	return nil
}

// integrationArgs are the parameters of the insert statements for recs.
func (o *Outbox) integrationArgs(recs []IntegrationRecord) []any {
	n := len(recs)
	var (
		ids      = make([]string, n)
		names    = make([]string, n)
		ops      = make([]string, n)
		reqs     = make([]sql.NullString, n)
		resps    = make([]sql.NullString, n)
		statuses = make([]sql.NullInt64, n)
		oks      = make([]bool, n)
		errs     = make([]sql.NullString, n)
		exts     = make([]sql.NullString, n)
		ats      = make([]sql.NullString, n)
		durs     = make([]sql.NullInt64, n)
	)
	for i, r := range recs {
		ids[i], names[i], ops[i], oks[i] = r.ID.String(), r.Integration, string(r.Operation), r.Success
		if r.Request != nil {
			reqs[i] = sql.NullString{String: string(r.Request), Valid: true}
		}
		if r.Response != nil {
			resps[i] = sql.NullString{String: string(r.Response), Valid: true}
		}
		if r.HTTPStatus != 0 {
			statuses[i] = sql.NullInt64{Int64: int64(r.HTTPStatus), Valid: true}
		}
		if r.Error != "" {
			errs[i] = sql.NullString{String: r.Error, Valid: true}
		}
		if r.ExternalID != "" {
			exts[i] = sql.NullString{String: r.ExternalID, Valid: true}
		}
		if !r.OccurredAt.IsZero() {
			ats[i] = sql.NullString{String: r.OccurredAt.UTC().Format(time.RFC3339Nano), Valid: true}
		}
		if r.Duration > 0 {
			durs[i] = sql.NullInt64{Int64: r.Duration.Milliseconds(), Valid: true}
		}
	}
	return []any{pq.Array(ids), pq.Array(names), pq.Array(ops), pq.Array(reqs), pq.Array(resps), pq.Array(statuses),
		pq.Array(oks), pq.Array(errs), pq.Array(exts), pq.Array(ats), o.nowArg(), pq.Array(durs)}
}

// prepareIntegration validates and redacts one record. A nil red means that
// the record was redacted already (the HTTP recorders' records): it is
// validated and sanitised only, so that redaction runs once per record.
func (o *Outbox) prepareIntegration(r IntegrationRecord, red *redact.Redactor) (IntegrationRecord, error) {
	if err := checkIntegrationName(r.Integration); err != nil {
		return r, err
	}
	if !r.Operation.valid() {
		return r, invalid(ErrInvalidRecord, "operation", "unknown operation %q", r.Operation)
	}
	if r.HTTPStatus != 0 && (r.HTTPStatus < 100 || r.HTTPStatus > 599) {
		return r, invalid(ErrInvalidRecord, "http_status_code", "must be 0 or 100-599, got %d", r.HTTPStatus)
	}
	if r.Duration < 0 || r.Duration.Milliseconds() > math.MaxInt32 {
		return r, invalid(ErrInvalidRecord, "duration_ms", "must be between 0 and %d ms, got %s", math.MaxInt32, r.Duration)
	}
	if r.Duration > 0 {
		r.Duration = r.Duration.Truncate(time.Millisecond)
	}
	if red != nil {
		r.ExternalID = red.String(r.ExternalID)
	}
	r.ExternalID = jsontext.CleanLine(r.ExternalID)
	if utf8.RuneCountInString(r.ExternalID) > MaxExternalIDChars {
		return r, invalid(ErrInvalidRecord, "external_id", "is longer than %d characters", MaxExternalIDChars)
	}
	if red != nil {
		r.Error = red.String(r.Error)
	}
	r.Error = jsontext.CutRunes(jsontext.CleanLine(r.Error), MaxErrorMessageChars)
	var err error
	if r.Request, err = o.recordJSON(r.Request, "request_data", red); err != nil {
		return r, err
	}
	if r.Response, err = o.recordJSON(r.Response, "response_data", red); err != nil {
		return r, err
	}
	if r.ID == uuid.Nil {
		if r.ID, err = uuid.NewV7(); err != nil {
			return r, fmt.Errorf("outbox: record id: %w", err)
		}
	}
	return r, nil
}

// recordJSON redacts a JSON value and checks that jsonb stores it.
func (o *Outbox) recordJSON(b json.RawMessage, field string, red *redact.Redactor) (json.RawMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 || string(bytes.TrimSpace(b)) == "null" {
		return nil, nil
	}
	out := json.RawMessage(b)
	if red != nil {
		var err error
		if out, err = red.JSON(b); err != nil {
			return nil, invalid(ErrInvalidRecord, field, "%v", err)
		}
	}
	return encodeJSON(out, field, o.cfg.MaxPayloadBytes)
}

func checkIntegrationName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > MaxIntegrationNameChars {
		return invalid(ErrInvalidRecord, "integration_name", "must be 1 to %d characters", MaxIntegrationNameChars)
	}
	if !utf8.ValidString(name) || jsontext.HasControl(name) {
		return invalid(ErrInvalidRecord, "integration_name", "must be valid UTF-8 without control characters")
	}
	return nil
}

func (op Operation) valid() bool {
	switch op {
	case OpWebhookReceived, OpAPICallMade, OpDataSync:
		return true
	}
	return false
}

func okStatus(s int) bool { return s == 0 || (s >= 200 && s < 300) }

func scanIntegrationRecord(row store.Scanner) (IntegrationRecord, error) {
	var r IntegrationRecord
	var req, resp string
	var dur sql.NullInt64
	if err := row.Scan(&r.ID, &r.Integration, &r.Operation, &req, &resp, &r.HTTPStatus, &r.Success, &r.Error,
		&r.ExternalID, &r.OccurredAt, &dur); err != nil {
		return IntegrationRecord{}, err
	}
	if req != "" {
		r.Request = json.RawMessage(req)
	}
	if resp != "" {
		r.Response = json.RawMessage(resp)
	}
	r.Duration = time.Duration(dur.Int64) * time.Millisecond
	return r, nil
}
