package outbox

import (
	"context"
	"database/sql"

	"github.com/outboxkit/outbox/internal/dispatch"
)

// Delivery is one attempt to deliver an event to one subscription: what a
// handler receives. The same EventID reaches every attempt and every
// subscription, so receivers can deduplicate on it.
type Delivery = dispatch.Delivery

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
