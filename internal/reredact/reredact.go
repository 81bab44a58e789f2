// Package reredact applies redaction rules again to the rows the logs
// already hold (integration_log, security_event), so that when the rules
// change to mask more, history follows.
//
// It walks a table in id order, in batches, each in a short transaction of
// its own that locks only the rows of its batch (FOR NO KEY UPDATE: inserts
// go on beside it, a review of a locked event waits at most one batch),
// redacts every stored value the way the recorders redact what they write,
// and rewrites the rows whose values changed (compared by PostgreSQL, jsonb
// as jsonb). Redaction is idempotent: a run can be repeated, or resumed
// after the last id it reports, at no risk. It is the engine of the public
// entry points (outbox.Outbox.Reredact today; the logs' own packages can
// call it the same way).
package reredact

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/redact"
)

// Table is a log table Run re-redacts.
type Table string

// The log tables.
const (
	IntegrationLog Table = "integration_log"
	SecurityEvent  Table = "security_event"
)

// Where the recorders cut the text columns they store (characters).
const (
	externalIDChars   = 255
	errorMessageChars = 2000
	userAgentChars    = 500
)

// BatchSizeDefault is the number of rows one transaction re-redacts when
// Options.BatchSize is zero.
const BatchSizeDefault = 500

// Options tune a Run.
type Options struct {
	// Redactor holds the rules to apply (required).
	Redactor *redact.Redactor
	// BatchSize is the number of rows per transaction. Default
	// BatchSizeDefault.
	BatchSize int
	// After resumes a run: only rows with a greater id are visited
	// (uuid.Nil: every row).
	After uuid.UUID
}

// Result counts a Run.
type Result struct {
	Scanned int64     // rows read
	Changed int64     // rows rewritten
	Last    uuid.UUID // the last id of the last committed batch: resume after it
}

// Run re-redacts table from opts.After on, until every row is done or ctx
// ends. On an error it returns what the committed batches did, so that
// After: res.Last resumes where it stopped.
func Run(ctx context.Context, st *store.Store, table Table, opts Options) (Result, error) {
	if opts.Redactor == nil {
		return Result{}, errors.New("reredact: no redactor")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = BatchSizeDefault
	}
	var batch func(context.Context, *sql.Tx, uuid.UUID, int, *redact.Redactor) (scanned, changed int, last uuid.UUID, err error)
	switch table {
	case IntegrationLog:
		batch = integrationBatch(st)
	case SecurityEvent:
		batch = securityBatch(st)
	default:
		return Result{}, fmt.Errorf("reredact: unknown table %q", table)
	}
	res := Result{Last: opts.After}
	for {
		scanned, changed, last, err := inTx(ctx, st, func(tx *sql.Tx) (int, int, uuid.UUID, error) {
			return batch(ctx, tx, res.Last, opts.BatchSize, opts.Redactor)
		})
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				// lib/pq may report a cancelled statement as a bad connection.
				err = fmt.Errorf("%w (%v)", cerr, err)
			}
			return res, fmt.Errorf("outbox: re-redact %s after %s: %w", table, res.Last, err)
		}
		res.Scanned += int64(scanned)
		res.Changed += int64(changed)
		if scanned > 0 {
			res.Last = last
		}
		if scanned < opts.BatchSize {
			return res, nil
		}
	}
}

// inTx runs one batch in a transaction of its own.
func inTx(ctx context.Context, st *store.Store, fn func(*sql.Tx) (int, int, uuid.UUID, error)) (scanned, changed int, last uuid.UUID, err error) {
	tx, err := st.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, uuid.Nil, err
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, rbErr)
			}
		}
	}()
	if scanned, changed, last, err = fn(tx); err != nil {
		return 0, 0, uuid.Nil, err
	}
	if err = tx.Commit(); err != nil {
		return 0, 0, uuid.Nil, err
	}
	return scanned, changed, last, nil
}

// integrationRow is one integration_log row of a batch: its stored
// values, then their redacted forms.
type integrationRow struct {
	id                      uuid.UUID
	req, resp, msg, ext     sql.NullString
	req2, resp2, msg2, ext2 sql.NullString
	changed                 bool
}

func integrationBatch(st *store.Store) func(context.Context, *sql.Tx, uuid.UUID, int, *redact.Redactor) (int, int, uuid.UUID, error) {
	return func(ctx context.Context, tx *sql.Tx, after uuid.UUID, size int, red *redact.Redactor) (scanned, changed int, last uuid.UUID, err error) {
		rows, err := tx.QueryContext(ctx, st.Reredact.IntegrationBatch, after, size)
		if err != nil {
			return 0, 0, uuid.Nil, err
		}
		var batch []integrationRow
		for rows.Next() {
			var r integrationRow
			if err := rows.Scan(&r.id, &r.req, &r.resp, &r.msg, &r.ext); err != nil {
				_ = rows.Close()
				return 0, 0, uuid.Nil, err
			}
			batch = append(batch, r)
		}
		if err := rows.Err(); err != nil {
			return 0, 0, uuid.Nil, err
		}
		if len(batch) == 0 {
			return 0, 0, uuid.Nil, nil
		}
		parallel(len(batch), func(i int) {
			r := &batch[i]
			var c1, c2, c3, c4 bool
			r.req2, c1 = redactJSON(red, r.req)
			r.resp2, c2 = redactJSON(red, r.resp)
			r.msg2, c3 = redactText(red, r.msg, errorMessageChars)
			r.ext2, c4 = redactText(red, r.ext, externalIDChars)
			r.changed = c1 || c2 || c3 || c4
		})
		var ids []uuid.UUID
		var reqs, resps, msgs, exts []sql.NullString
		for _, r := range batch {
			if r.changed {
				ids, reqs, resps, msgs, exts = append(ids, r.id), append(reqs, r.req2), append(resps, r.resp2), append(msgs, r.msg2), append(exts, r.ext2)
			}
		}
		if len(ids) > 0 {
			if changed, err = store.RowsAffected(tx.ExecContext(ctx, st.Reredact.IntegrationUpdate,
				pq.Array(ids), pq.Array(reqs), pq.Array(resps), pq.Array(msgs), pq.Array(exts))); err != nil {
				return 0, 0, uuid.Nil, err
			}
		}
		return len(batch), changed, batch[len(batch)-1].id, nil
	}
}

// securityRow is one security_event row of a batch.
type securityRow struct {
	id            uuid.UUID
	details, ua   sql.NullString
	details2, ua2 sql.NullString
	changed       bool
}

func securityBatch(st *store.Store) func(context.Context, *sql.Tx, uuid.UUID, int, *redact.Redactor) (int, int, uuid.UUID, error) {
	return func(ctx context.Context, tx *sql.Tx, after uuid.UUID, size int, red *redact.Redactor) (scanned, changed int, last uuid.UUID, err error) {
		rows, err := tx.QueryContext(ctx, st.Reredact.SecurityBatch, after, size)
		if err != nil {
			return 0, 0, uuid.Nil, err
		}
		var batch []securityRow
		for rows.Next() {
			var r securityRow
			if err := rows.Scan(&r.id, &r.details, &r.ua); err != nil {
				_ = rows.Close()
				return 0, 0, uuid.Nil, err
			}
			batch = append(batch, r)
		}
		if err := rows.Err(); err != nil {
			return 0, 0, uuid.Nil, err
		}
		if len(batch) == 0 {
			return 0, 0, uuid.Nil, nil
		}
		parallel(len(batch), func(i int) {
			r := &batch[i]
			var c1, c2 bool
			r.details2, c1 = redactJSON(red, r.details)
			r.ua2, c2 = redactText(red, r.ua, userAgentChars)
			r.changed = c1 || c2
		})
		var ids []uuid.UUID
		var details, uas []sql.NullString
		for _, r := range batch {
			if r.changed {
				ids, details, uas = append(ids, r.id), append(details, r.details2), append(uas, r.ua2)
			}
		}
		if len(ids) > 0 {
			if changed, err = store.RowsAffected(tx.ExecContext(ctx, st.Reredact.SecurityUpdate,
				pq.Array(ids), pq.Array(details), pq.Array(uas))); err != nil {
				return 0, 0, uuid.Nil, err
			}
		}
		return len(batch), changed, batch[len(batch)-1].id, nil
	}
}

// parallel calls fn(0) ... fn(n-1) on up to GOMAXPROCS goroutines:
// redaction is CPU-bound, and the batch's rows stay locked meanwhile.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// redactJSON redacts a stored jsonb value (as its text) like the recorders
// redact a JSON document, and reports whether the text changed beyond
// layout (PostgreSQL compares the values as jsonb before writing).
func redactJSON(red *redact.Redactor, v sql.NullString) (sql.NullString, bool) {
	if !v.Valid {
		return v, false
	}
	out, err := red.JSON([]byte(v.String))
	if err != nil {
		return v, false // jsonb always parses; nothing better to store
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(v.String)); err == nil && bytes.Equal(compact.Bytes(), out) {
		return v, false
	}
	return sql.NullString{String: string(out), Valid: true}, true
}

// redactText redacts a stored text value like the recorders redact what
// they store in it: String, then one line, cut to limit characters.
func redactText(red *redact.Redactor, v sql.NullString, limit int) (sql.NullString, bool) {
	if !v.Valid {
		return v, false
	}
	out := jsontext.CutRunes(jsontext.CleanLine(red.String(v.String)), limit)
	return sql.NullString{String: out, Valid: true}, out != v.String
}
