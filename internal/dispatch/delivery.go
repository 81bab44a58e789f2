package dispatch

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/subconfig"
)

// Status is the delivery state of a queue row.
type Status string

// The states of a queue row (the event_status enum).
const (
	StatusPending    Status = "PENDING"
	StatusProcessing Status = "PROCESSING"
	StatusCompleted  Status = "COMPLETED"
	StatusFailed     Status = "FAILED"
)

// Delivery is one attempt to deliver an event to one subscription, as the
// engine claimed it. The root copies it into the outbox.Delivery its
// handlers receive.
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

// Row is one claimed queue row, as the engine hands it to a Target.
type Row struct {
	Delivery Delivery
	// Token is the claim token (locked_by): every write about the row is
	// fenced on it.
	Token string
	// CallbackMethod and WebhookURL are the subscription's target; exactly
	// one is set.
	CallbackMethod string
	WebhookURL     string
	// Config is the subscription's config, parsed strictly (a row whose
	// config does not parse never reaches a Target).
	Config subconfig.Config
	// RetryCount is the attempts made before this one.
	RetryCount int
	// Keyed reports an ordering key: finishing the row may make the next
	// row of its key claimable.
	Keyed bool

	configJSON   string
	subUpdatedAt time.Time
}

// Target delivers claimed rows: the one seam between the engine and what a
// row is delivered to. The engine claims rows, picks each one's Target (by
// the subscription's callback method, or the webhook target for webhook
// subscriptions), calls Deliver on one of its workers, and turns the Result
// into the row's outcome: the retry policy (Permanent, RetryAfter, backoff,
// dead-lettering), the lease fence and the batched write are the engine's.
//
// Targets today are the Go handlers (the root adapts a HandlerFunc or TxHandlerFunc registered under a
// callback method) and webhooks (package
// webhooksend). A broker relay is either a HandlerFunc registered under a
// callback method (it publishes, and returns an error to retry), or a Target
// of its own registered under a callback method when it needs what a
// handler cannot do: attempt records written with the outcome, completion in
// its own transaction, or skipping a row without counting an attempt.
//
// Deliver is called concurrently. It must return soon after ctx ends
// (shutdown cancels ctx once ShutdownTimeout has passed).
type Target interface {
	Deliver(ctx context.Context, row *Row) Result
}

// TargetFunc adapts a function to Target.
type TargetFunc func(ctx context.Context, row *Row) Result

// Deliver calls f.
func (f TargetFunc) Deliver(ctx context.Context, row *Row) Result { return f(ctx, row) }

// Result is what a Target reports about one delivery.
type Result struct {
	// Err is nil when the row was delivered. Otherwise the engine retries
	// it with backoff, or fails it at once (Permanent), or after a chosen
	// delay (RetryAfter), or fails it once its retries are spent.
	Err error
	// Completed reports that the target already wrote the row's outcome
	// itself (HandleTx completes the row in the handler's transaction), or
	// that there is none to write (the lease was lost): the engine writes
	// nothing.
	Completed bool
	// Skip, when positive, reports that no attempt was made (a webhook
	// endpoint had no free slot): the row returns to PENDING after about
	// Skip, no attempt counted, nothing recorded.
	Skip time.Duration
	// Attempt, when set, is the integration_log record of the attempt,
	// prepared (validated and redacted) by the target: the engine writes it
	// in the transaction that writes the outcome.
	Attempt *intrecord.Record
	// Attrs are added to the log record of the outcome.
	Attrs []any
}
