package integrationlog

import (
	"errors"
	"fmt"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/page"
)

var (
	// ErrInvalidRecord reports a record (or a Record* call's input) that
	// fails validation: nothing was written. The error is an
	// *outbox.ValidationError naming the field.
	ErrInvalidRecord = errors.New("integrationlog: invalid record")
	// ErrRecordsNotWritten reports records of Transport or Middleware
	// that Flush or Close could not write before its context ended, or
	// that were given up; the error says how many.
	ErrRecordsNotWritten = errors.New("integrationlog: records not written")
)

func invalidRecord(field, format string, args ...any) error {
	return &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidRecord}
}

func invalidConfig(field, format string, args ...any) error {
	return &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...), Err: outbox.ErrInvalidConfig}
}

func invalidFilter(field, format string, args ...any) error {
	return &outbox.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...), Err: outbox.ErrInvalidFilter}
}

// filterError turns a page size or cursor the pager rejects into an
// outbox.ErrInvalidFilter *outbox.ValidationError.
func filterError(err error) error {
	return page.Translate(err, func(field, reason string) error { return invalidFilter(field, "%s", reason) })
}

// recordError turns the record path's *intrecord.FieldError into the
// *outbox.ValidationError of its class: ErrInvalidRecord, or
// outbox.ErrInvalidPayload / outbox.ErrPayloadTooLarge for request and
// response data that jsonb refuses or that is over the handle's
// MaxPayloadBytes.
func recordError(err error) error {
	var fe *intrecord.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	class := ErrInvalidRecord
	switch {
	case errors.Is(fe.Err, intrecord.ErrJSON):
		class = outbox.ErrInvalidPayload
	case errors.Is(fe.Err, intrecord.ErrTooLarge):
		class = outbox.ErrPayloadTooLarge
	}
	return &outbox.ValidationError{Field: fe.Field, Reason: fe.Reason, Err: class}
}
