package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/store"
)

// Sentinel errors of the recorders.
var (
	// ErrInvalidRecord reports an integration record or security event
	// that fails validation; nothing was written.
	ErrInvalidRecord = errors.New("outbox: invalid record")
	// ErrInvalidFilter reports a query filter or cursor that cannot be used.
	ErrInvalidFilter = errors.New("outbox: invalid filter")
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

// Well-known integration names. Any name of 1 to 100 characters without
// control characters is accepted.
const (
	IntegrationStripe        = "STRIPE"
	IntegrationPayPal        = "PAYPAL"
	IntegrationEmailProvider = "EMAIL_PROVIDER"
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
	ListLimitDefault = 100
	// ListLimitMax is the largest page size.
	ListLimitMax = 1000
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
	// Integration names the third party, such as IntegrationStripe.
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
	// Stripe charge id ("" for none). It is sanitised like Error (not
	// redacted) before its length is checked.
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
	// limit (default MaxBodyBytesDefault).
	Redaction RedactionRules
}

// IntegrationLog records calls to and from third parties in
// integration_log, redacted, through the caller's transaction or any
// Querier, and queries them. It is safe for concurrent use.
type IntegrationLog struct {
	o   *Outbox
	red *Redactor
	sql *integrationSQL
}

// NewIntegrationLog returns the integration recorder of o.
func NewIntegrationLog(o *Outbox, cfg IntegrationLogConfig) (*IntegrationLog, error) {
	if o == nil {
		return nil, invalid(ErrInvalidConfig, "outbox", "is nil")
	}
	red, err := NewRedactor(cfg.Redaction)
	if err != nil {
		return nil, err
	}
	return &IntegrationLog{o: o, red: red, sql: integrationStatements(o.cfg.Schema)}, nil
}

// Redactor returns the redaction rules the log applies.
func (l *IntegrationLog) Redactor() *Redactor { return l.red }

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

// RecordBatch inserts many records in one statement, with Record's
// guarantees: if any record is invalid nothing is sent, and the error names
// its index.
func (l *IntegrationLog) RecordBatch(ctx context.Context, q Querier, recs []IntegrationRecord) ([]IntegrationRecord, error) {
	return l.o.insertIntegrations(ctx, q, recs, l.red)
}

// APICall describes one call we made to a third party.
type APICall struct {
	Integration string        // the third party, such as IntegrationStripe
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

// RecordAPICall records an API_CALL_MADE. The call succeeded when Error is
// empty and HTTPStatus is 0 or 2xx. request_data holds method, url and
// body; response_data holds body.
func (l *IntegrationLog) RecordAPICall(ctx context.Context, q Querier, c APICall) (IntegrationRecord, error) {
	req, err := l.red.envelope("request_data", map[string]any{"method": c.Method, "url": l.red.URL(c.URL)}, c.Request)
	if err != nil {
		return IntegrationRecord{}, err
	}
	resp, err := l.red.envelope("response_data", map[string]any{}, c.Response)
	if err != nil {
		return IntegrationRecord{}, err
	}
	return l.Record(ctx, q, IntegrationRecord{
		Integration: c.Integration, Operation: OpAPICallMade, Request: req, Response: resp,
		HTTPStatus: c.HTTPStatus, Success: c.Error == "" && okStatus(c.HTTPStatus), Error: c.Error,
		ExternalID: c.ExternalID, OccurredAt: c.OccurredAt, Duration: c.Duration,
	})
}

// WebhookReceipt describes one webhook a third party sent us.
type WebhookReceipt struct {
	Integration string        // the sender, such as IntegrationStripe
	EventType   string        // the sender's event type, such as "charge.succeeded"
	Headers     http.Header   // the request headers, redacted before storage
	Payload     any           // the body: JSON-marshalled, []byte as a body
	HTTPStatus  int           // the status we answered, 0 for none
	Error       string        // "" when we processed it
	ExternalID  string        // the sender's event id
	OccurredAt  time.Time     // zero: now
	Duration    time.Duration // how long we took
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
	req, err := l.red.envelope("request_data", head, w.Payload)
	if err != nil {
		return IntegrationRecord{}, err
	}
	return l.Record(ctx, q, IntegrationRecord{
		Integration: w.Integration, Operation: OpWebhookReceived, Request: req,
		HTTPStatus: w.HTTPStatus, Success: w.Error == "" && okStatus(w.HTTPStatus), Error: w.Error,
		ExternalID: w.ExternalID, OccurredAt: w.OccurredAt, Duration: w.Duration,
	})
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
	req, err := l.red.envelopeKey("request_data", head, "details", d.Details)
	if err != nil {
		return IntegrationRecord{}, err
	}
	resp, err := marshalJSONValue(map[string]any{"processed": d.Processed, "failed": d.Failed})
	if err != nil {
		return IntegrationRecord{}, err
	}
	return l.Record(ctx, q, IntegrationRecord{
		Integration: d.Integration, Operation: OpDataSync, Request: req, Response: resp,
		Success: d.Error == "" && d.Failed == 0, Error: d.Error, ExternalID: d.ExternalID,
		OccurredAt: d.OccurredAt, Duration: d.Duration,
	})
}

// HTTPRecordOptions tunes what Transport and Middleware record. A nil
// *HTTPRecordOptions means defaults.
type HTTPRecordOptions struct {
	// Headers, when set, are the only request and response headers
	// recorded (still redacted). Default: every header, redacted.
	Headers []string
	// ExternalID, when set, picks the external id from the exchange; resp
	// is nil when the call failed. ExternalIDFromJSON covers the common
	// case.
	ExternalID func(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) string
	// DB is where records are written. Default: the Outbox's *sql.DB, each
	// record in its own statement.
	DB Querier
}

// ExternalIDFromJSON returns an HTTPRecordOptions.ExternalID func that takes
// the string (or number) under key in the top-level JSON object of the
// response body, else of the request body.
func ExternalIDFromJSON(key string) func(*http.Request, []byte, *http.Response, []byte) string {
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
			return s
		}
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
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

// Transport wraps base (http.DefaultTransport when nil) so that every call
// made through it is recorded as an API_CALL_MADE of integration: method,
// URL, headers and body of the request; status, headers and body of the
// response; duration (until the response headers arrived); success (2xx);
// the transport error as error_message. Bodies are captured up to the body
// limit while they stream, and reach the caller intact.
//
// A call that fails is recorded when RoundTrip returns; a call that gets a
// response is recorded when the caller reads its body to the end or closes
// it (every caller must close it). A failure to record never fails the
// call: it is logged. Transport panics if integration is not a valid name.
func (l *IntegrationLog) Transport(integration string, base http.RoundTripper, opts *HTTPRecordOptions) http.RoundTripper {
	if err := checkIntegrationName(integration); err != nil {
		panic(err)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	t := &recordingTransport{l: l, integration: integration, base: base}
	if opts != nil {
		t.opts = *opts
	}
	if t.opts.DB == nil {
		t.opts.DB = l.o.db
	}
	return t
}

// Middleware returns HTTP middleware that records every request it serves
// as a WEBHOOK_RECEIVED of integration: method, URL, headers and body of
// the request, and the status, headers and body the next handler wrote.
// The next handler reads the body intact. A panic in the next handler is
// recorded (status 500) and re-raised. A failure to record is logged, never
// seen by the sender. Middleware panics if integration is not a valid name.
func (l *IntegrationLog) Middleware(integration string, opts *HTTPRecordOptions) func(http.Handler) http.Handler {
	if err := checkIntegrationName(integration); err != nil {
		panic(err)
	}
	var o HTTPRecordOptions
	if opts != nil {
		o = *opts
	}
	if o.DB == nil {
		o.DB = l.o.db
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.serveRecorded(w, r, next, integration, &o)
		})
	}
}

func (l *IntegrationLog) serveRecorded(w http.ResponseWriter, r *http.Request, next http.Handler, integration string, o *HTTPRecordOptions) {
	start, began := l.o.now(), time.Now()
	limit := l.red.maxBody + 1
	var reqBody []byte
	var counted *countingReader
	if r.Body != nil && r.Body != http.NoBody {
		// Read up to the limit now (the next handler may never read the
		// body), and give the next handler those bytes and the rest.
		buf, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)))
		reqBody = buf
		orig := r.Body
		rest := io.Reader(orig)
		if err != nil {
			rest = errReader{err}
		}
		counted = &countingReader{r: io.MultiReader(bytes.NewReader(buf), rest)}
		r.Body = readCloser{Reader: counted, Closer: orig}
	}
	rw := &recordingWriter{ResponseWriter: w, limit: limit}
	var panicked any
	func() {
		defer func() {
			if p := recover(); p != nil {
				panicked = p
			}
		}()
		next.ServeHTTP(rw, r)
	}()
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	var callErr error
	if panicked != nil {
		status, callErr = http.StatusInternalServerError, fmt.Errorf("panic: %v", panicked)
	}
	resp := &http.Response{StatusCode: status, Header: w.Header()}
	ext := ""
	if o.ExternalID != nil {
		ext = o.ExternalID(r, reqBody, resp, rw.body.Bytes())
	}
	total := max(r.ContentLength, int64(len(reqBody)))
	if counted != nil {
		total = max(total, counted.n)
	}
	rec := l.red.httpRecord(integration, OpWebhookReceived, r, reqBody, total, resp, rw.body.Bytes(), rw.total, callErr, time.Since(began), o.Headers)
	rec.OccurredAt, rec.ExternalID = start, ext
	l.write(context.WithoutCancel(r.Context()), o.DB, rec)
	if panicked != nil {
		panic(panicked)
	}
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

// List returns records matching f, newest first, one page at a time
// (keyset pagination: stable while new records arrive).
func (l *IntegrationLog) List(ctx context.Context, f IntegrationFilter) (IntegrationPage, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return IntegrationPage{}, err
	}
	if f.Operation != "" && !f.Operation.valid() {
		return IntegrationPage{}, invalid(ErrInvalidFilter, "operation", "unknown operation %q", f.Operation)
	}
	curAt, curID, err := decodeCursor(f.Cursor)
	if err != nil {
		return IntegrationPage{}, err
	}
	var success any
	if f.Success != nil {
		success = *f.Success
	}
	rows, err := l.o.db.QueryContext(ctx, l.sql.list, f.Integration, string(f.Operation), success, f.ExternalID,
		nullTime(f.Since), nullTime(f.Until), curAt, curID, limit+1)
	var page IntegrationPage
	page.Records, page.Next, err = keysetPage(rows, err, limit, scanIntegrationRecord,
		func(r IntegrationRecord) (time.Time, uuid.UUID) { return r.OccurredAt, r.ID })
	if err != nil {
		return IntegrationPage{}, fmt.Errorf("outbox: list integration records: %w", err)
	}
	return page, nil
}

func scanIntegrationRecord(row rowScanner) (IntegrationRecord, error) {
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
	rows, err := l.o.db.QueryContext(ctx, l.sql.stats, w.Since.UTC(), w.Until.UTC(), w.Integration, string(w.Operation))
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

// redactor returns the redaction rules of records written outside an
// IntegrationLog (webhook delivery attempts): Config.Redaction, or the
// built-in rules.
func (o *Outbox) redactor() *Redactor {
	if o.red != nil {
		return o.red
	}
	return defaultRedactor
}

// insertIntegrations is the one write path of integration records: it
// prepares (validates and redacts) recs and inserts them.
func (o *Outbox) insertIntegrations(ctx context.Context, q Querier, recs []IntegrationRecord, red *Redactor) ([]IntegrationRecord, error) {
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
		index    = make(map[uuid.UUID]int, n)
	)
	for i, r := range recs {
		index[r.ID] = i
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
	rows, err := q.QueryContext(ctx, integrationStatements(o.cfg.Schema).insert, pq.Array(ids), pq.Array(names), pq.Array(ops),
		pq.Array(reqs), pq.Array(resps), pq.Array(statuses), pq.Array(oks), pq.Array(errs), pq.Array(exts), pq.Array(ats),
		o.nowArg(), pq.Array(durs))
	if err != nil {
		return fmt.Errorf("outbox: record integration: %w", err)
	}
	defer rows.Close()
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

// prepareIntegration validates and redacts one record.
func (o *Outbox) prepareIntegration(r IntegrationRecord, red *Redactor) (IntegrationRecord, error) {
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
	r.ExternalID = cleanLine(r.ExternalID)
	if utf8.RuneCountInString(r.ExternalID) > MaxExternalIDChars {
		return r, invalid(ErrInvalidRecord, "external_id", "is longer than %d characters", MaxExternalIDChars)
	}
	r.Error = truncateRunes(cleanLine(red.String(r.Error)), MaxErrorMessageChars)
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
func (o *Outbox) recordJSON(b json.RawMessage, field string, red *Redactor) (json.RawMessage, error) {
	if len(bytes.TrimSpace(b)) == 0 || string(bytes.TrimSpace(b)) == "null" {
		return nil, nil
	}
	out, err := red.JSON(b)
	if err != nil {
		return nil, invalid(ErrInvalidRecord, field, "%v", err)
	}
	return encodeJSON(out, field, o.cfg.MaxPayloadBytes)
}

func checkIntegrationName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > MaxIntegrationNameChars {
		return invalid(ErrInvalidRecord, "integration_name", "must be 1 to %d characters", MaxIntegrationNameChars)
	}
	if !utf8.ValidString(name) || hasControl(name) {
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

// envelope builds a request or response object from head plus a body.
func (r *Redactor) envelope(field string, head map[string]any, body any) (json.RawMessage, error) {
	return r.envelopeKey(field, head, "body", body)
}

func (r *Redactor) envelopeKey(field string, head map[string]any, key string, body any) (json.RawMessage, error) {
	if body != nil {
		v, truncated, err := r.anyBody(body)
		if err != nil {
			return nil, invalid(ErrInvalidRecord, field, "%v", err)
		}
		if v != nil {
			head[key] = v
		}
		if truncated {
			head[key+"_truncated"] = true
		}
	}
	if len(head) == 0 {
		return nil, nil
	}
	return marshalJSONValue(head)
}

// anyBody encodes a caller's request or response value: []byte and
// json.RawMessage as an HTTP body, anything else marshalled to JSON.
func (r *Redactor) anyBody(v any) (json.RawMessage, bool, error) {
	switch x := v.(type) {
	case []byte:
		b, t := r.Body(x, "")
		return b, t, nil
	case json.RawMessage:
		b, t := r.Body(x, "")
		return b, t, nil
	}
	b, err := r.Value(v)
	if err != nil {
		return nil, false, err
	}
	b, t := r.limitJSON(b)
	return b, t, nil
}

// httpRecord builds a redacted record of one HTTP exchange. reqTotal and
// respTotal are the bodies' full sizes (the slices may hold a prefix).
func (r *Redactor) httpRecord(integration string, op Operation, req *http.Request, reqBody []byte, reqTotal int64,
	resp *http.Response, respBody []byte, respTotal int64, callErr error, duration time.Duration, only []string) IntegrationRecord {
	rec := IntegrationRecord{Integration: integration, Operation: op, Duration: max(duration, 0)}
	if req != nil {
		u := ""
		if req.URL != nil {
			u = req.URL.String()
			if req.URL.Host == "" && req.Host != "" {
				// A server request: rebuild the URL the sender used.
				scheme := "http"
				if req.TLS != nil {
					scheme = "https"
				}
				u = scheme + "://" + req.Host + req.URL.RequestURI()
			}
		}
		head := map[string]any{"method": req.Method, "url": r.URL(u)}
		if h := r.Headers(req.Header, only); h != nil {
			head["headers"] = h
		}
		r.putBody(head, reqBody, reqTotal, req.Header.Get("Content-Type"))
		rec.Request, _ = marshalJSONValue(head)
	}
	if resp != nil {
		rec.HTTPStatus = resp.StatusCode
		head := map[string]any{}
		if h := r.Headers(resp.Header, only); h != nil {
			head["headers"] = h
		}
		r.putBody(head, respBody, respTotal, resp.Header.Get("Content-Type"))
		if len(head) > 0 {
			rec.Response, _ = marshalJSONValue(head)
		}
	}
	switch {
	case callErr != nil:
		rec.Error = r.errorText(callErr)
	case resp == nil:
		rec.Error = "no response"
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		rec.Error = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	default:
		rec.Success = true
	}
	if rec.HTTPStatus < 100 || rec.HTTPStatus > 599 {
		rec.HTTPStatus = 0
	}
	return rec
}

func (r *Redactor) putBody(head map[string]any, body []byte, total int64, contentType string) {
	if len(body) == 0 {
		return
	}
	total = max(total, int64(len(body)))
	partial := total > int64(r.maxBody)
	if len(body) > r.maxBody {
		body = []byte(truncateUTF8(string(body), r.maxBody))
	}
	v, truncated := r.Body(body, contentType)
	if partial && !truncated {
		// Only a prefix was kept: store it as text ending in the marker.
		s, ok := jsonStringValue(v)
		if !ok {
			s = string(v)
		}
		v, truncated = mustJSONString(s+TruncatedMarker), true
	}
	head["body"] = v
	if truncated {
		head["body_truncated"] = true
		head["body_bytes"] = total
	}
}

func jsonStringValue(v json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// errorText renders a call error with the URL inside a *url.Error redacted.
func (r *Redactor) errorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s %q: %s", ue.Op, r.URL(ue.URL), r.String(errString(ue.Err)))
	}
	return r.String(err.Error())
}

// write inserts one record for Transport or Middleware, logging a failure.
func (l *IntegrationLog) write(ctx context.Context, db Querier, rec IntegrationRecord) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.o.insertIntegrations(ctx, db, []IntegrationRecord{rec}, l.red); err != nil {
		l.o.log.WarnContext(ctx, "integration record not written", slog.String("integration", rec.Integration),
			slog.String("operation", string(rec.Operation)), slog.Any("error", err))
	}
}

// recordingTransport is the http.RoundTripper of IntegrationLog.Transport.
type recordingTransport struct {
	l           *IntegrationLog
	integration string
	base        http.RoundTripper
	opts        HTTPRecordOptions
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start, began := t.l.o.now(), time.Now()
	limit := t.l.red.maxBody + 1
	out := req
	var capReq *capture
	var reqBody []byte
	var reqTotal int64
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody != nil {
			// A replayable body: read a copy, never the caller's stream.
			if rc, err := req.GetBody(); err == nil {
				reqBody, _ = io.ReadAll(io.LimitReader(rc, int64(limit)))
				_ = rc.Close()
				reqTotal = max(req.ContentLength, int64(len(reqBody)))
			}
		} else {
			capReq = &capture{limit: limit}
			out = req.Clone(req.Context())
			out.Body = &teeBody{rc: req.Body, c: capReq}
		}
	}
	resp, err := t.base.RoundTrip(out)
	duration := time.Since(began)
	if capReq != nil {
		reqBody, reqTotal = capReq.snapshot()
	}
	ctx := context.WithoutCancel(req.Context())
	if err != nil {
		rec := t.l.red.httpRecord(t.integration, OpAPICallMade, req, reqBody, reqTotal, nil, nil, 0, err, duration, t.opts.Headers)
		rec.OccurredAt = start
		if t.opts.ExternalID != nil {
			rec.ExternalID = t.opts.ExternalID(req, reqBody, nil, nil)
		}
		t.l.write(ctx, t.opts.DB, rec)
		return resp, err
	}
	c := &capture{limit: limit}
	finish := func() {
		respBody, respTotal := c.snapshot()
		if capReq != nil {
			reqBody, reqTotal = capReq.snapshot()
		}
		rec := t.l.red.httpRecord(t.integration, OpAPICallMade, req, reqBody, reqTotal, resp, respBody, respTotal, nil, duration, t.opts.Headers)
		rec.OccurredAt = start
		if t.opts.ExternalID != nil {
			rec.ExternalID = t.opts.ExternalID(req, reqBody, resp, respBody)
		}
		t.l.write(ctx, t.opts.DB, rec)
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		finish()
		return resp, nil
	}
	resp.Body = &recordingBody{rc: resp.Body, c: c, finish: finish}
	return resp, nil
}

// capture keeps the first limit bytes written to it and counts them all.
type capture struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	total int64
}

func (c *capture) add(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
}

func (c *capture) snapshot() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...), c.total
}

// teeBody copies what the transport reads from a request body.
type teeBody struct {
	rc io.ReadCloser
	c  *capture
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.c.add(p[:n])
	return n, err
}

func (b *teeBody) Close() error { return b.rc.Close() }

// recordingBody copies what the caller reads from a response body and
// records the exchange at EOF or Close, whichever comes first.
type recordingBody struct {
	rc     io.ReadCloser
	c      *capture
	once   sync.Once
	finish func()
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.c.add(p[:n])
	if err == io.EOF {
		b.once.Do(b.finish)
	}
	return n, err
}

func (b *recordingBody) Close() error {
	err := b.rc.Close()
	b.once.Do(b.finish)
	return err
}

// recordingWriter captures the status and the first bytes of the body a
// handler writes.
type recordingWriter struct {
	http.ResponseWriter
	status int
	limit  int
	body   bytes.Buffer
	total  int64
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.total += int64(n)
	if room := w.limit - w.body.Len(); room > 0 {
		w.body.Write(p[:min(room, n)])
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (w *recordingWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// pageLimit applies the List page-size default and bounds.
func pageLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, invalid(ErrInvalidFilter, "limit", "must not be negative, got %d", n)
	case n == 0:
		return ListLimitDefault, nil
	}
	return min(n, ListLimitMax), nil
}

// keysetPage reads a List query's rows (newest first, at most limit+1 of
// them: err is the query's error) with scan, and returns the first limit
// and the cursor of the next page, "" when there is none. key gives a row's
// (occurred_at, id).
func keysetPage[T any](rows *sql.Rows, err error, limit int, scan func(rowScanner) (T, error),
	key func(T) (time.Time, uuid.UUID)) (page []T, next string, _ error) {
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		page = append(page, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(page) > limit {
		page = page[:limit]
		next = encodeCursor(key(page[limit-1]))
	}
	return page, next, nil
}

// encodeCursor makes an opaque keyset cursor of a row's (occurred_at, id).
func encodeCursor(at time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + " " + id.String()))
}

// decodeCursor returns the SQL arguments of a cursor: nil, nil for none.
func decodeCursor(c string) (at, id any, err error) {
	if c == "" {
		return nil, nil, nil
	}
	bad := invalid(ErrInvalidFilter, "cursor", "is not a cursor returned by List")
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, nil, bad
	}
	ts, sid, ok := strings.Cut(string(raw), " ")
	if !ok {
		return nil, nil, bad
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, nil, bad
	}
	u, err := uuid.Parse(sid)
	if err != nil {
		return nil, nil, bad
	}
	return t.UTC(), u, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

type integrationSQL struct{ insert, list, stats string }

var integrationSQLCache sync.Map // schema name → *integrationSQL

// integrationStatements returns the integration_log statements of a
// schema, rendered once per schema.
func integrationStatements(schema string) *integrationSQL {
	if s, ok := integrationSQLCache.Load(schema); ok {
		return s.(*integrationSQL)
	}
	s := &integrationSQL{insert: store.IntegrationInsert, list: store.IntegrationList, stats: store.IntegrationStats}
	store.RenderAll(schema, &s.insert, &s.list, &s.stats)
	v, _ := integrationSQLCache.LoadOrStore(schema, s)
	return v.(*integrationSQL)
}
