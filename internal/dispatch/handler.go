package dispatch

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/outboxkit/outbox/internal/store"
)

// HandlerFunc and TxHandlerFunc are the root's handler types, unnamed.
type (
	HandlerFunc   = func(ctx context.Context, d *Delivery) error
	TxHandlerFunc = func(ctx context.Context, tx *sql.Tx, d *Delivery) error
)

// HandlerTarget delivers rows to a Go handler: fn, or txFn inside a
// transaction that also completes the row (exactly one is set). A panic
// becomes a *PanicError. One call is bounded by the subscription's timeout,
// else by timeout (zero: no bound).
func HandlerTarget(st *store.Store, log *slog.Logger, fn HandlerFunc, txFn TxHandlerFunc, timeout time.Duration) Target {
	return &handlerTarget{st: st, log: log, fn: fn, txFn: txFn, timeout: timeout}
}

type handlerTarget struct {
	st      *store.Store
	log     *slog.Logger
	fn      HandlerFunc
	txFn    TxHandlerFunc
	timeout time.Duration
}

// Deliver runs the handler.
func (h *handlerTarget) Deliver(ctx context.Context, c *Row) Result {
	timeout := time.Duration(c.Config.Timeout)
	if timeout == 0 {
		timeout = h.timeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if h.txFn == nil {
		return Result{Err: safeCall(ctx, h.fn, &c.Delivery)}
	}
	completed, err := h.runTx(ctx, c)
	return Result{Err: err, Completed: completed}
}

// runTx runs a HandleTx handler and, if it succeeds, completes the row in
// the same transaction. completed reports that the row is COMPLETED, or
// belongs to another claim.
func (h *handlerTarget) runTx(ctx context.Context, c *Row) (completed bool, err error) {
	tx, err := h.st.DB.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("outbox: begin handler transaction: %w", err)
	}
	if err := safeCallTx(ctx, h.txFn, tx, &c.Delivery); err != nil {
		_ = tx.Rollback()
		return false, err
	}
	res, err := h.st.Stmt(tx, h.st.Queue.CompleteOne).Exec(ctx, h.st.NowArg(), c.Delivery.ID, c.Token)
	if err != nil {
		_ = tx.Rollback()
		return false, fmt.Errorf("outbox: complete in handler transaction: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		_ = tx.Rollback()
		h.log.WarnContext(context.WithoutCancel(ctx), "lease lost before completion; handler effects rolled back",
			slog.String("event_id", c.Delivery.EventID.String()))
		return true, nil // nothing to write: the row belongs to another claim
	}
	if err := tx.Commit(); err != nil {
		// Whether it committed is unknown; the outcome write is fenced on
		// the claim token (cleared by a commit), so a retry outcome cannot
		// undo a commit.
		return false, fmt.Errorf("outbox: commit handler transaction: %w", err)
	}
	return true, nil
}

func safeCall(ctx context.Context, fn HandlerFunc, d *Delivery) (err error) {
	defer recoverInto(&err)
	return fn(ctx, d)
}

func safeCallTx(ctx context.Context, fn TxHandlerFunc, tx *sql.Tx, d *Delivery) (err error) {
	defer recoverInto(&err)
	return fn(ctx, tx, d)
}
