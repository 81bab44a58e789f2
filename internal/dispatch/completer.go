package dispatch

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/store"
)

// outcomeWriteAttempts is how often a batch of outcomes is tried (waiting
// 50 ms, 200 ms, 800 ms in between) before it is left to the lease.
const outcomeWriteAttempts = 4

// complete writes outcomes in batches until stop is closed and every
// submitted outcome is written.
func (e *Engine) complete(ctx context.Context, stop <-chan struct{}) {
	batch := make([]outcome, 0, 512)
	for {
		select {
		case oc := <-e.outcomes:
			batch = append(batch, oc)
		case <-stop:
			for {
				select {
				case oc := <-e.outcomes:
					batch = append(batch, oc)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				e.flush(ctx, batch)
			}
			return
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case oc := <-e.outcomes:
				batch = append(batch, oc)
			default:
				break drain
			}
		}
		e.flush(ctx, batch)
		batch = batch[:0]
	}
}

// flush writes one batch of outcomes in one statement, retrying briefly on
// error; nothing once the version fence refuses this process. When outcomes carry attempt records, the outcomes and the records
// (one statement each) commit in one transaction. A batch that cannot be
// written is dropped: its rows keep their lease, which is no longer
// renewed, and are rescued after it expires.
func (e *Engine) flush(ctx context.Context, batch []outcome) {
	n := len(batch)
	if fenced := e.refused(); fenced != nil {
		e.log.ErrorContext(ctx, "version fence: outcomes not written; their rows return to the queue when their leases expire",
			slog.Int("rows", n), slog.Any("error", fenced))
		return
	}
	// Rows are locked in id order, as the heartbeat and other writers
	// of several rows lock them.
	slices.SortFunc(batch, func(a, b outcome) int { return compareIDs(a.id, b.id) })
	w, recs := outcomeArgs(batch)
	var err error
	for attempt, wait := 0, 50*time.Millisecond; attempt < outcomeWriteAttempts; attempt, wait = attempt+1, wait*4 {
		var written int
		written, err = e.writeOutcomes(ctx, recs, w)
		if err == nil {
			if written < n {
				e.log.WarnContext(ctx, "outcomes of rows whose lease was lost were not written",
					slog.Int("lost", n-written), slog.Int("batch", n))
			}
			for _, oc := range batch {
				if oc.keyed && oc.status != StatusPending {
					// The next row of its key may be claimable now: look
					// rather than wait for the next poll.
					e.poke()
					break
				}
			}
			return
		}
		if ctx.Err() != nil || attempt == outcomeWriteAttempts-1 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	e.log.ErrorContext(ctx, "writing outcomes failed; rows return to the queue when their lease expires",
		slog.Int("rows", n), slog.Any("error", err))
}

// outcomeWrite is one batch of outcomes as the statement that writes it.
type outcomeWrite struct {
	completed bool  // every outcome is a success: the lean CompleteMany statement
	args      []any // its parameters after the time parameter
}

// outcomeArgs returns the write of batch and the attempt records it
// carries (prepared by their targets: a record never holds back the
// outcomes it rides with).
func outcomeArgs(batch []outcome) (w outcomeWrite, attempts []intrecord.Record) {
	n := len(batch)
	ids, tokens := make([]string, n), make([]string, n)
	w.completed = true
	for i, oc := range batch {
		if oc.attempt != nil {
			attempts = append(attempts, *oc.attempt)
		}
		ids[i], tokens[i] = oc.id.String(), oc.token
		w.completed = w.completed && oc.status == StatusCompleted && oc.inc == 0 && oc.reason == ""
	}
	if w.completed {
		w.args = []any{pq.Array(ids), pq.Array(tokens)}
		return w, attempts
	}
	statuses := make([]string, n)
	incs := make([]int64, n)
	delays := make([]sql.NullInt64, n) // NULL: the row keeps its due time
	reasons := make([]sql.NullString, n)
	for i, oc := range batch {
		statuses[i], incs[i] = string(oc.status), int64(oc.inc)
		delays[i] = sql.NullInt64{Int64: oc.delay.Microseconds(), Valid: !oc.keepPlace}
		reasons[i] = sql.NullString{String: oc.reason, Valid: oc.reason != ""}
	}
	w.args = []any{pq.Array(ids), pq.Array(tokens), pq.Array(statuses), pq.Array(incs), pq.Array(delays), pq.Array(reasons)}
	return w, attempts
}

// writeOutcomes writes w and recs: in autocommit when recs is empty, else in
// one transaction. It returns how many rows were still held (and written).
func (e *Engine) writeOutcomes(ctx context.Context, recs []intrecord.Record, w outcomeWrite) (n int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	text := e.st.Queue.Outcomes
	if w.completed {
		text = e.st.Queue.CompleteMany
	}
	full := append([]any{e.st.NowArg()}, w.args...)
	if len(recs) == 0 {
		return store.RowsAffected(e.st.Stmt(nil, text).Exec(ctx, full...))
	}
	tx, err := e.st.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, rbErr)
			}
		}
	}()
	if n, err = store.RowsAffected(e.st.Stmt(tx, text).Exec(ctx, full...)); err != nil {
		return 0, err
	}
	if err = intrecord.Insert(ctx, tx, e.st, recs); err != nil {
		return 0, err
	}
	if err = tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}
