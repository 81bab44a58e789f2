package securitylog

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
)

// Sentinel errors of the security log. Its other errors belong to the
// outbox package's classes: outbox.ErrNotFound, outbox.ErrInvalidFilter,
// outbox.ErrInvalidConfig, outbox.ErrInvalidPayload and
// outbox.ErrPayloadTooLarge.
var (
	// ErrInvalidEvent reports a security event, review or IP address that
	// fails validation; nothing was written and no SQL was sent. The error
	// is an *outbox.ValidationError naming the column (ip_address,
	// event_type, severity, event_details, ...).
	ErrInvalidEvent = errors.New("securitylog: invalid event")
	// ErrAlreadyReviewed reports a MarkReviewed of an event that was
	// already reviewed; the event was left as it was. The error is an
	// *AlreadyReviewedError.
	ErrAlreadyReviewed = errors.New("securitylog: event already reviewed")
)

// AlreadyReviewedError is the error of a second MarkReviewed: it carries
// the first review and matches ErrAlreadyReviewed.
type AlreadyReviewedError struct {
	ID         uuid.UUID
	ReviewedBy uuid.UUID
	ReviewedAt time.Time
}

// Error names the event and its earlier review.
func (e *AlreadyReviewedError) Error() string {
	return fmt.Sprintf("%v: %s by %s at %s", ErrAlreadyReviewed, e.ID, e.ReviewedBy, e.ReviewedAt.Format(time.RFC3339))
}

// Unwrap returns ErrAlreadyReviewed.
func (e *AlreadyReviewedError) Unwrap() error { return ErrAlreadyReviewed }

// invalidEvent rejects one field of an event or review.
func invalidEvent(field, reason string) error {
	return &outbox.ValidationError{Field: field, Reason: reason, Err: ErrInvalidEvent}
}

// invalidConfig rejects one field of a Config or ClientIPConfig.
func invalidConfig(field, reason string) error {
	return &outbox.ValidationError{Field: field, Reason: reason, Err: outbox.ErrInvalidConfig}
}

// invalidFilter rejects one field of a Filter.
func invalidFilter(field, reason string) error {
	return &outbox.ValidationError{Field: field, Reason: reason, Err: outbox.ErrInvalidFilter}
}
