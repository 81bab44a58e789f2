// Package page holds the keyset pagination shared by the recorders' List
// calls: the page-size check, the opaque cursor of a row's (occurred_at,
// id), and the reader that cuts a query's rows into a page and the cursor of
// the next one.
//
// Its errors are *Error values matching ErrInvalid; the caller translates
// them into its own error type.
package page

import (
	"database/sql"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ErrInvalid is matched by every error about a page size or cursor.
var ErrInvalid = errors.New("page: invalid")

// The page sizes of every List call: LimitDefault when the caller leaves
// the limit 0, at most LimitMax.
const (
	LimitDefault = 100
	LimitMax     = 1000
)

// Error rejects one List argument: Field names it (limit or cursor), Reason
// says why. It matches ErrInvalid.
type Error struct {
	Field  string
	Reason string
}

// Error names the field and the reason.
func (e *Error) Error() string { return "page: invalid " + e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Translate returns mk(field, reason) of the *Error in err's chain, and err
// itself when it holds none: how a caller turns a rejected page size or
// cursor into its own error type.
func Translate(err error, mk func(field, reason string) error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return mk(pe.Field, pe.Reason)
	}
	return err
}

// Limit applies the page-size default and bound: 0 means def, anything above
// upTo means upTo, a negative size is an error.
func Limit(n, def, upTo int) (int, error) {
	switch {
	case n < 0:
		return 0, &Error{Field: "limit", Reason: "must not be negative, got " + strconv.Itoa(n)}
	case n == 0:
		return def, nil
	}
	return min(n, upTo), nil
}

// Read reads a List query's rows (newest first, at most limit+1 of them:
// err is the query's error) with scan, and returns the first limit and the
// cursor of the next page, "" when there is none. key gives a row's
// (occurred_at, id). The rows are closed.
func Read[T any](rows *sql.Rows, err error, limit int, scan func(*sql.Rows) (T, error),
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
		next = EncodeCursor(key(page[limit-1]))
	}
	return page, next, nil
}

// EncodeCursor makes an opaque keyset cursor of a row's (occurred_at, id).
func EncodeCursor(at time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + " " + id.String()))
}

// DecodeCursor returns the SQL arguments of a cursor EncodeCursor made:
// nil, nil for "" (the first page).
func DecodeCursor(c string) (at, id any, err error) {
	if c == "" {
		return nil, nil, nil
	}
	bad := &Error{Field: "cursor", Reason: "is not a cursor returned by List"}
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

// TimeArg is the SQL argument of an optional time bound: nil for the zero
// time, else the time in UTC.
func TimeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}
