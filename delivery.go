package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/store"
)

// Delivery is one attempt to deliver an event to one subscription: what a
// handler receives. The same EventID reaches every attempt and every
// subscription, so receivers can deduplicate on it.
type Delivery struct {
	ID             uuid.UUID         // the queue row (event_queue.id)
	EventID        uuid.UUID         // the event (system_event.id), stable across retries
	SubscriptionID uuid.UUID         // the subscription the row belongs to
	Subscription   string            // its subscriber_name
	Topic          string            // the event's topic
	Payload        json.RawMessage   // the event's JSON payload
	Metadata       map[string]string // metadata given at Enqueue, or nil
	Attempt        int               // 1 for the first attempt
	MaxRetries     int               // retries allowed after the first attempt
	CreatedAt      time.Time         // when the row was enqueued
}

// HandlerFunc handles one delivery. Returning nil completes the row; an error
// schedules a retry with backoff, or fails the row once its retries are
// spent. Wrap the error with Permanent to fail at once, or with RetryAfter to
// choose the delay. A panic is recovered and counts as an error.
type HandlerFunc func(ctx context.Context, d *Delivery) error

// TxHandlerFunc handles one delivery inside a transaction that also marks the
// row COMPLETED: the handler's writes through tx and the completion commit
// together or not at all (exactly-once effects within this database). The
// handler must not commit or roll back tx.
type TxHandlerFunc func(ctx context.Context, tx *sql.Tx, d *Delivery) error

// PanicError is the error a recovered handler panic becomes; its text, with
// the stack cut to 2 KiB, is stored as failure_reason.
type PanicError struct {
	Value any    // what the handler panicked with
	Stack []byte // the goroutine's stack, cut to 2 KiB
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

// handlerTarget delivers claimed rows to a Go handler: fn, or txFn inside a
// transaction that also completes the row (exactly one is set). One call is
// bounded by the subscription's timeout, else by timeout (zero: no bound).
type handlerTarget struct {
	st      *store.Store
	log     *slog.Logger
	fn      HandlerFunc
	txFn    TxHandlerFunc
	timeout time.Duration
}

// Deliver runs the handler on the row's Delivery.
func (h *handlerTarget) Deliver(ctx context.Context, row *dispatch.Row) dispatch.Result {
	timeout := time.Duration(row.Config.Timeout)
	if timeout == 0 {
		timeout = h.timeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := newDelivery(&row.Delivery)
	if h.txFn == nil {
		return dispatch.Result{Err: safeCall(func() error { return h.fn(ctx, d) })}
	}
	completed, err := h.runTx(ctx, row, d)
	return dispatch.Result{Err: err, Completed: completed}
}

// newDelivery is the handler's copy of the engine's delivery.
func newDelivery(r *dispatch.Delivery) *Delivery {
	return &Delivery{
		ID: r.ID, EventID: r.EventID, SubscriptionID: r.SubscriptionID, Subscription: r.Subscription,
		Topic: r.Topic, Payload: r.Payload, Metadata: r.Metadata, Attempt: r.Attempt, MaxRetries: r.MaxRetries,
		CreatedAt: r.CreatedAt,
	}
}

// runTx runs a HandleTx handler and, if it succeeds, completes the row in
// the same transaction. completed reports that the row is COMPLETED, or
// belongs to another claim.
func (h *handlerTarget) runTx(ctx context.Context, row *dispatch.Row, d *Delivery) (completed bool, err error) {
	tx, err := h.st.DB.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("outbox: begin handler transaction: %w", err)
	}
	if err := safeCall(func() error { return h.txFn(ctx, tx, d) }); err != nil {
		_ = tx.Rollback()
		return false, err
	}
	res, err := h.st.Stmt(tx, h.st.Queue.CompleteOne).Exec(ctx, h.st.NowArg(), d.ID, row.Token)
	if err != nil {
		_ = tx.Rollback()
		return false, fmt.Errorf("outbox: complete in handler transaction: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		_ = tx.Rollback()
		h.log.WarnContext(context.WithoutCancel(ctx), "lease lost before completion; handler effects rolled back",
			slog.String("event_id", d.EventID.String()))
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

// safeCall runs call and turns a panic into a *PanicError.
func safeCall(call func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			stack := debug.Stack()
			if len(stack) > 2048 {
				stack = append(stack[:2048:2048], "\n..."...)
			}
			err = &PanicError{Value: v, Stack: stack}
		}
	}()
	return call()
}
