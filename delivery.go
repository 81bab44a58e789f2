package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/google/uuid"
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
