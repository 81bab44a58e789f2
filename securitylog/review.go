package securitylog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/page"
)

// The review workflow: reading events, listing those that await review,
// and marking them reviewed.

// Filter selects events for Log.List and Log.AwaitingReview. Zero fields
// do not filter.
type Filter struct {
	AwaitingReview bool      // only events that require review and have none
	Type           EventType // only this type
	MinSeverity    Severity  // only this severity and above
	UserID         uuid.UUID // only this user
	IP             string    // only this IP (any form ParseIP accepts)
	Since          time.Time // occurred at or after
	Until          time.Time // occurred before
	Limit          int       // page size: default 100, at most 1000
	Cursor         string    // Page.Next of the previous page
}

// Page is one page of events, newest first.
type Page struct {
	Events []Event
	// Next is the cursor of the following page, "" when this page is the
	// last one.
	Next string
}

// MarkReviewed records, through q, that reviewer reviewed event id, and
// returns the event. reviewed_by and reviewed_at are set together, once: a
// second review (even a concurrent one) returns an *AlreadyReviewedError
// and changes nothing; an unknown id returns outbox.ErrNotFound. Neither
// error aborts q's transaction. A nil id or reviewer is an ErrInvalidEvent
// *outbox.ValidationError.
func (l *Log) MarkReviewed(ctx context.Context, q outbox.Querier, id, reviewer uuid.UUID) (Event, error) {
	if id == uuid.Nil {
		return Event{}, invalidEvent("id", "is the nil UUID")
	}
	if reviewer == uuid.Nil {
		return Event{}, invalidEvent("reviewed_by", "is the nil UUID")
	}
	ev, err := scanEvent(q.QueryRowContext(ctx, l.core.Store.Security.Review, id, reviewer, l.core.Store.NowArg()))
	if err == nil {
		return ev, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("securitylog: mark reviewed: %w", err)
	}
	cur, err := scanEvent(q.QueryRowContext(ctx, l.core.Store.Security.Get, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, notFound(id)
	}
	if err != nil {
		return Event{}, fmt.Errorf("securitylog: mark reviewed: %w", err)
	}
	return Event{}, &AlreadyReviewedError{ID: id, ReviewedBy: cur.ReviewedBy, ReviewedAt: cur.ReviewedAt}
}

// Get returns one event, or outbox.ErrNotFound.
func (l *Log) Get(ctx context.Context, id uuid.UUID) (Event, error) {
	ev, err := scanEvent(l.core.DB.QueryRowContext(ctx, l.core.Store.Security.Get, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, notFound(id)
	}
	if err != nil {
		return Event{}, fmt.Errorf("securitylog: get event: %w", err)
	}
	return ev, nil
}

// List returns events matching f, newest first, one page at a time (keyset
// pagination: stable while new events arrive). A filter that cannot be used
// is an outbox.ErrInvalidFilter *outbox.ValidationError.
func (l *Log) List(ctx context.Context, f Filter) (Page, error) {
	limit, err := page.Limit(f.Limit, page.LimitDefault, page.LimitMax)
	if err != nil {
		return Page{}, page.Translate(err, invalidFilter)
	}
	if f.Type != "" && !f.Type.valid() {
		return Page{}, invalidFilter("event_type", fmt.Sprintf("unknown type %q", f.Type))
	}
	if f.MinSeverity != "" && !f.MinSeverity.valid() {
		return Page{}, invalidFilter("severity", fmt.Sprintf("unknown severity %q", f.MinSeverity))
	}
	ip := ""
	if f.IP != "" {
		if ip, err = ParseIP(f.IP); err != nil {
			return Page{}, invalidFilter("ip_address", "is not an IP address")
		}
	}
	curAt, curID, err := page.DecodeCursor(f.Cursor)
	if err != nil {
		return Page{}, page.Translate(err, invalidFilter)
	}
	var user any
	if f.UserID != uuid.Nil {
		user = f.UserID
	}
	rows, err := l.core.DB.QueryContext(ctx, l.core.Store.Security.List, f.AwaitingReview, string(f.Type), string(f.MinSeverity), user, ip,
		page.TimeArg(f.Since), page.TimeArg(f.Until), curAt, curID, limit+1)
	var out Page
	out.Events, out.Next, err = page.Read(rows, err, limit,
		func(rows *sql.Rows) (Event, error) { return scanEvent(rows) },
		func(ev Event) (time.Time, uuid.UUID) { return ev.OccurredAt, ev.ID })
	if err != nil {
		return Page{}, fmt.Errorf("securitylog: list events: %w", err)
	}
	return out, nil
}

// AwaitingReview lists the events that require review and have none yet:
// List with f.AwaitingReview set.
func (l *Log) AwaitingReview(ctx context.Context, f Filter) (Page, error) {
	f.AwaitingReview = true
	return l.List(ctx, f)
}

// notFound is the error of an unknown event id.
func notFound(id uuid.UUID) error {
	return fmt.Errorf("%w: security event %s", outbox.ErrNotFound, id)
}
