// Package intrecord is the one path of an integration_log row: the record
// as stored, its validation, the redaction of an HTTP exchange into its
// request and response data, and the insert. The integration log's calls
// (package integrationlog) and the dispatcher's webhook attempts
// (internal/webhooksend, written by internal/dispatch with their outcomes)
// both build records here, each from a typed value built once.
package intrecord

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/redact"
)

// The operations (the integration_operation enum).
const (
	OpWebhookReceived = "WEBHOOK_RECEIVED"
	OpAPICallMade     = "API_CALL_MADE"
	OpDataSync        = "DATA_SYNC"
)

// Limits of the stored columns.
const (
	MaxNameChars       = 100  // integration_name
	MaxExternalIDChars = 255  // external_id
	MaxErrorChars      = 2000 // error_message is cut there
)

// Record is one integration_log row.
type Record struct {
	ID          uuid.UUID
	Integration string
	Operation   string
	Request     json.RawMessage
	Response    json.RawMessage
	HTTPStatus  int
	Success     bool
	Error       string
	ExternalID  string
	OccurredAt  time.Time
	Duration    time.Duration
}

// Classes of a *FieldError.
var (
	ErrInvalid  = errors.New("invalid record")   // a value the column cannot take
	ErrJSON     = errors.New("invalid JSON")     // request or response data jsonb refuses
	ErrTooLarge = errors.New("record too large") // request or response data over the limit
)

// FieldError describes one rejected value; Err is its class.
type FieldError struct {
	Field  string // the column, such as "integration_name"
	Reason string
	Err    error
}

// Error says which column and why.
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns the class.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldError(class error, field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Err: class}
}

// CheckName validates an integration name.
func CheckName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > MaxNameChars {
		return fieldError(ErrInvalid, "integration_name", "must be 1 to %d characters", MaxNameChars)
	}
	if !utf8.ValidString(name) || jsontext.HasControl(name) {
		return fieldError(ErrInvalid, "integration_name", "must be valid UTF-8 without control characters")
	}
	return nil
}

// ValidOperation reports whether op is one of the operations.
func ValidOperation(op string) bool {
	return op == OpWebhookReceived || op == OpAPICallMade || op == OpDataSync
}

// OKStatus reports whether an HTTP status counts as a success: none, or 2xx.
func OKStatus(s int) bool { return s == 0 || (s >= 200 && s < 300) }

// Prepare validates r and makes it storable: its external id and error
// redacted by red and sanitised (one line, cut), its JSON redacted by red
// and checked against what jsonb stores and maxJSON bytes, an id assigned.
// A nil red means the record was redacted when it was built: it is
// validated and sanitised only, so that redaction runs once.
func Prepare(r Record, red *redact.Redactor, maxJSON int) (Record, error) {
	if err := CheckName(r.Integration); err != nil {
		return r, err
	}
	if !ValidOperation(r.Operation) {
		return r, fieldError(ErrInvalid, "operation", "unknown operation %q", r.Operation)
	}
	if r.HTTPStatus != 0 && (r.HTTPStatus < 100 || r.HTTPStatus > 599) {
		return r, fieldError(ErrInvalid, "http_status_code", "must be 0 or 100-599, got %d", r.HTTPStatus)
	}
	if r.Duration < 0 || r.Duration.Milliseconds() > math.MaxInt32 {
		return r, fieldError(ErrInvalid, "duration_ms", "must be between 0 and %d ms, got %s", math.MaxInt32, r.Duration)
	}
	if r.Duration > 0 {
		r.Duration = r.Duration.Truncate(time.Millisecond)
	}
	if red != nil {
		r.ExternalID, r.Error = red.String(r.ExternalID), red.String(r.Error)
	}
	r.ExternalID = jsontext.CleanLine(r.ExternalID)
	if utf8.RuneCountInString(r.ExternalID) > MaxExternalIDChars {
		return r, fieldError(ErrInvalid, "external_id", "is longer than %d characters", MaxExternalIDChars)
	}
	r.Error = jsontext.CutRunes(jsontext.CleanLine(r.Error), MaxErrorChars)
	var err error
	if r.Request, err = storableJSON(r.Request, "request_data", red, maxJSON); err != nil {
		return r, err
	}
	if r.Response, err = storableJSON(r.Response, "response_data", red, maxJSON); err != nil {
		return r, err
	}
	if r.ID == uuid.Nil {
		if r.ID, err = uuid.NewV7(); err != nil {
			return r, fmt.Errorf("record id: %w", err)
		}
	}
	return r, nil
}

// storableJSON redacts a JSON value (when red is set) and checks that jsonb
// stores it within maxJSON bytes, its numbers written out.
func storableJSON(b json.RawMessage, field string, red *redact.Redactor, maxJSON int) (json.RawMessage, error) {
	if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	out := b
	if red != nil {
		var err error
		if out, err = red.JSON(b); err != nil {
			return nil, fieldError(ErrInvalid, field, "%v", err)
		}
	}
	if maxJSON > 0 && len(out) > maxJSON {
		return nil, fieldError(ErrTooLarge, field, "is %d bytes, over the limit of %d", len(out), maxJSON)
	}
	printed, err := jsontext.CheckPrinted(out)
	if err != nil {
		return nil, fieldError(ErrJSON, field, "%v", err)
	}
	if maxJSON > 0 && printed > maxJSON {
		return nil, fieldError(ErrTooLarge, field, "is %d bytes with its numbers written out, over the limit of %d", printed, maxJSON)
	}
	return out, nil
}

// Querier runs a statement: a transaction or a pool.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Insert writes prepared records (distinct ids) through q in one statement
// and sets each one's OccurredAt to the stored time.
func Insert(ctx context.Context, q Querier, st *store.Store, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	rows, err := q.QueryContext(ctx, st.Integration.Insert, Args(recs, st.NowArg())...)
	if err != nil {
		return err
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
			return err
		}
		recs[index[id]].OccurredAt = at
	}
	return rows.Err()
}

// InsertOnce writes prepared records through q, skipping those whose id is
// stored already: a batch may be sent again after an attempt whose outcome
// is unknown.
func InsertOnce(ctx context.Context, q Querier, st *store.Store, recs []Record) error {
	_, err := q.ExecContext(ctx, st.Integration.InsertOnce, Args(recs, st.NowArg())...)
	return err
}

// Args are the parameters of the insert statements for recs; now is the
// time of records without one (nil: the database's now()).
func Args(recs []Record, now any) []any {
	n := len(recs)
	var (
		ids, names, ops = make([]string, n), make([]string, n), make([]string, n)
		reqs, resps     = make([]sql.NullString, n), make([]sql.NullString, n)
		errs, exts, ats = make([]sql.NullString, n), make([]sql.NullString, n), make([]sql.NullString, n)
		statuses, durs  = make([]sql.NullInt64, n), make([]sql.NullInt64, n)
		oks             = make([]bool, n)
	)
	str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
	for i, r := range recs {
		ids[i], names[i], ops[i], oks[i] = r.ID.String(), r.Integration, r.Operation, r.Success
		reqs[i], resps[i] = str(string(r.Request)), str(string(r.Response))
		errs[i], exts[i] = str(r.Error), str(r.ExternalID)
		if r.HTTPStatus != 0 {
			statuses[i] = sql.NullInt64{Int64: int64(r.HTTPStatus), Valid: true}
		}
		if !r.OccurredAt.IsZero() {
			ats[i] = str(r.OccurredAt.UTC().Format(time.RFC3339Nano))
		}
		if r.Duration > 0 {
			durs[i] = sql.NullInt64{Int64: r.Duration.Milliseconds(), Valid: true}
		}
	}
	return []any{pq.Array(ids), pq.Array(names), pq.Array(ops), pq.Array(reqs), pq.Array(resps), pq.Array(statuses),
		pq.Array(oks), pq.Array(errs), pq.Array(exts), pq.Array(ats), now, pq.Array(durs)}
}

// Scan reads a record in the column order of the store's integration reads.
func Scan(row interface{ Scan(...any) error }) (Record, error) {
	var r Record
	var req, resp string
	var dur sql.NullInt64
	if err := row.Scan(&r.ID, &r.Integration, &r.Operation, &req, &resp, &r.HTTPStatus, &r.Success, &r.Error,
		&r.ExternalID, &r.OccurredAt, &dur); err != nil {
		return Record{}, err
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
