package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/reredact"
	"github.com/outboxkit/outbox/redact"
)

// ReredactOptions tune Reredact; nil means the defaults.
type ReredactOptions struct {
	// Redactor holds the rules to apply. Default: the handle's
	// (Config.Redaction, or the built-in rules). Pass the rules the logs
	// record with when they extend the handle's (the Redaction of
	// IntegrationLogConfig and SecurityLogConfig).
	Redactor *redact.Redactor
	// IntegrationLog and SecurityEvent choose the tables; both false means
	// both.
	IntegrationLog, SecurityEvent bool
	// BatchSize is the number of rows each transaction re-redacts. Default
	// 500.
	BatchSize int
	// Resume continues an interrupted run: the Cursor of its result.
	Resume ReredactCursor
}

// ReredactCursor says how far a Reredact run got: the last id done in
// each table (uuid.Nil: not started).
type ReredactCursor struct {
	IntegrationLog, SecurityEvent uuid.UUID
}

// ReredactCount counts one table of a Reredact run.
type ReredactCount struct {
	Scanned int64 // rows read
	Changed int64 // rows rewritten because the rules masked more of them
}

// ReredactResult counts a Reredact run and says where it got to.
type ReredactResult struct {
	IntegrationLog, SecurityEvent ReredactCount
	// Cursor is where the run stopped: pass it as ReredactOptions.Resume
	// to go on after an error or a cancelled context.
	Cursor ReredactCursor
}

// Reredact applies the redaction rules again to the rows integration_log
// and security_event already hold, so that history follows rules changed
// to mask more: request and response data, error messages and external
// ids; event details and user agents. Redaction only ever masks more of a
// value, never restores one, and is idempotent.
//
// It is safe beside live traffic: it walks each table in id order, in
// short transactions of BatchSize rows that lock only their own rows
// (recorders insert on; a review of a locked event waits for one batch),
// and rewrites only the rows whose values change. It is resumable: after
// an error or a cancelled ctx, the result's Cursor continues the run
// (ReredactOptions.Resume). Deploy the new rules to every process that
// records before running it: rows written meanwhile by a process still on
// the old rules are not revisited. docs/redaction.md gives its rate.
func (o *Outbox) Reredact(ctx context.Context, opts *ReredactOptions) (ReredactResult, error) {
	var op ReredactOptions
	if opts != nil {
		op = *opts
	}
	if op.BatchSize < 0 {
		return ReredactResult{}, invalid(ErrInvalidConfig, "batch_size", "must not be negative, got %d", op.BatchSize)
	}
	if op.Redactor == nil {
		op.Redactor = o.redactor()
	}
	if !op.IntegrationLog && !op.SecurityEvent {
		op.IntegrationLog, op.SecurityEvent = true, true
	}
	res := ReredactResult{Cursor: op.Resume}
	if err := o.allow(ctx, nil, "re-redact"); err != nil {
		return res, err
	}
	start := time.Now()
	for _, t := range []struct {
		on     bool
		table  reredact.Table
		count  *ReredactCount
		cursor *uuid.UUID
	}{
		{op.IntegrationLog, reredact.IntegrationLog, &res.IntegrationLog, &res.Cursor.IntegrationLog},
		{op.SecurityEvent, reredact.SecurityEvent, &res.SecurityEvent, &res.Cursor.SecurityEvent},
	} {
		if !t.on {
			continue
		}
		r, err := reredact.Run(ctx, o.st, t.table, reredact.Options{Redactor: op.Redactor, BatchSize: op.BatchSize, After: *t.cursor})
		t.count.Scanned, t.count.Changed, *t.cursor = r.Scanned, r.Changed, r.Last
		if err != nil {
			return res, err
		}
	}
	o.log.InfoContext(ctx, "stored log rows re-redacted",
		slog.Int64("integration_scanned", res.IntegrationLog.Scanned), slog.Int64("integration_changed", res.IntegrationLog.Changed),
		slog.Int64("security_scanned", res.SecurityEvent.Scanned), slog.Int64("security_changed", res.SecurityEvent.Changed),
		slog.Duration("took", time.Since(start)))
	return res, nil
}
