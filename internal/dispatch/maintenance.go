package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/store"
)

const maintenanceBatch = 1000

// firstAnalyzeRows is how many changed rows make a never-analyzed queue
// table worth analyzing.
const firstAnalyzeRows = 1000

// heartbeat extends the leases of running rows until ctx ends.
func (e *Engine) heartbeat(ctx context.Context) {
	t := time.NewTicker(e.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		held := make([]uuid.UUID, 0, len(e.inflight))
		for id := range e.inflight {
			held = append(held, id)
		}
		slices.SortFunc(held, compareIDs) // rows are locked in one order
		ids := make([]string, len(held))
		tokens := make([]string, len(held))
		for i, id := range held {
			ids[i], tokens[i] = id.String(), e.inflight[id]
		}
		e.mu.Unlock()
		if len(ids) == 0 || e.refused() != nil {
			// Fenced: the leases run out, and an admitted process
			// rescues the rows.
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, e.cfg.HeartbeatInterval)
		_, err := e.st.Stmt(nil, e.st.Queue.Heartbeat).Exec(hctx, e.st.NowArg(), pq.Array(ids), pq.Array(tokens),
			e.cfg.LeaseDuration.Microseconds())
		cancel()
		if err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "heartbeat failed", slog.Int("rows", len(ids)), slog.Any("error", err))
		}
	}
}

// maintain rescues expired leases and deletes finished rows past their
// retention, until ctx ends.
func (e *Engine) maintain(ctx context.Context) {
	rescue := time.NewTicker(e.cfg.RescueInterval)
	defer rescue.Stop()
	cleanup := time.NewTicker(e.cfg.CleanupInterval)
	defer cleanup.Stop()
	analyzed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
			if e.refused() != nil {
				continue
			}
			if !analyzed {
				analyzed = e.firstAnalyze(ctx)
			}
			if n, err := e.rescue(ctx); err != nil && ctx.Err() == nil {
				e.log.WarnContext(ctx, "lease rescue failed", slog.Any("error", err))
			} else if n > 0 {
				e.log.WarnContext(ctx, "rows with expired leases returned to the queue", slog.Int64("rows", n))
				e.poke()
			}
		case <-cleanup.C:
			if e.refused() != nil {
				continue
			}
			if n, err := e.cleanup(ctx); err != nil && ctx.Err() == nil {
				e.log.WarnContext(ctx, "retention cleanup failed", slog.Any("error", err))
			} else if n > 0 {
				e.log.InfoContext(ctx, "finished rows deleted", slog.Int64("rows", n))
			}
		}
	}
}

// firstAnalyze analyzes the queue table if it has never been analyzed but
// already holds a backlog: without statistics the planner may read every
// PENDING row and sort them on each claim instead of walking the claim index
// (autovacuum, where it runs, soon does the same). It reports true once the
// table has statistics, so the check stops.
func (e *Engine) firstAnalyze(ctx context.Context) bool {
	var analyzed bool
	var changed int64
	if err := e.st.DB.QueryRowContext(ctx, e.st.Queue.NeedsFirstAnalyze, e.st.Schema).Scan(&analyzed, &changed); err != nil {
		return false
	}
	if analyzed || changed < firstAnalyzeRows {
		return analyzed
	}
	if _, err := e.st.DB.ExecContext(ctx, e.st.Queue.Analyze); err != nil {
		e.log.WarnContext(ctx, "analyze of the queue table failed", slog.Any("error", err))
		return false
	}
	e.log.InfoContext(ctx, "queue table had no statistics: analyzed it")
	return true
}

// rescue returns every row whose lease expired to the queue, in batches.
func (e *Engine) rescue(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := e.execCount(ctx, "rescue", e.st.Queue.Rescue, e.st.NowArg(), maintenanceBatch)
		total += n
		if err != nil || n < maintenanceBatch {
			return total, err
		}
	}
}

// cleanup deletes finished rows past their retention, and events no row
// refers to any more, in small batches (at most 100 per kind per call).
func (e *Engine) cleanup(ctx context.Context) (int64, error) {
	now := e.st.Now()
	var total int64
	type job struct {
		status    Status
		retention time.Duration
	}
	for _, j := range []job{{StatusCompleted, e.cfg.CompletedRetention}, {StatusFailed, e.cfg.FailedRetention}} {
		if j.retention < 0 {
			continue
		}
		for range 100 {
			n, err := e.execCount(ctx, "cleanup", e.st.Queue.DeleteFinished, now.Add(-j.retention).UTC(), string(j.status), maintenanceBatch)
			total += n
			if err != nil {
				return total, err
			}
			if n < maintenanceBatch {
				break
			}
		}
	}
	eventRetention := e.cfg.CompletedRetention
	if eventRetention >= 0 {
		for range 100 {
			cutoff := now.Add(-eventRetention)
			// Event ids are UUIDv7 of the process's wall clock; with a
			// clock of its own the store cannot bound them by time.
			bound := uuid.Max
			if !e.st.HasClock() {
				bound = UUIDV7Floor(cutoff)
			}
			n, err := e.execCount(ctx, "cleanup events", e.st.Queue.DeleteEvents, cutoff.UTC(), maintenanceBatch, bound)
			total += n
			if err != nil {
				return total, err
			}
			if n < maintenanceBatch {
				break
			}
		}
	}
	return total, nil
}

func (e *Engine) execCount(ctx context.Context, op, stmt string, args ...any) (int64, error) {
	n, err := store.RowsAffected(e.st.DB.ExecContext(ctx, stmt, args...))
	if err != nil {
		return 0, fmt.Errorf("outbox: %s: %w", op, err)
	}
	return int64(n), nil
}

// compareIDs orders UUIDs as PostgreSQL's uuid type does (bytewise).
func compareIDs(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }

// UUIDV7Floor is the smallest UUIDv7 of t's millisecond: every UUIDv7 made
// at or after t sorts at or above it.
func UUIDV7Floor(t time.Time) uuid.UUID {
	var u uuid.UUID
	ms := uint64(max(t.UnixMilli(), 0))
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	u[6] = 0x70 // version 7
	u[8] = 0x80 // RFC 9562 variant
	return u
}
