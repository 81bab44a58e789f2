package dispatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/outboxkit/outbox/internal/store"
)

// Fence is the schema's version fence as the engine sees it (package
// fence's Guard). The engine claims only once a reading admits this
// process; once one refuses it, the engine claims nothing more, starts no
// delivery, writes no outcome, heartbeat, rescue or cleanup, cancels the
// running deliveries and returns the verdict from Run. The rows it held go
// back to the queue when their leases expire, for a process the schema
// admits.
type Fence interface {
	// Check reads the fence through q (nil: the pool) and records the
	// verdict: fenced is nil while the schema admits this process; err
	// reports a fence that could not be read (the last verdict stands).
	Check(ctx context.Context, q store.Querier) (fenced, err error)
	// Verdict returns the last verdict without SQL; known is false until
	// a reading succeeded.
	Verdict() (known bool, fenced error)
	// Interval is how often the engine reads the fence again.
	Interval() time.Duration
}

// refused returns the fence's last verdict when it refuses this process,
// nil otherwise (no fence, no verdict yet, or admitted). It sends no SQL:
// workers, the completer and maintenance ask it for every row or batch.
func (e *Engine) refused() error {
	if e.cfg.Fence == nil {
		return nil
	}
	_, fenced := e.cfg.Fence.Verdict()
	return fenced
}

// gate is asked before each claim. It returns the verdict that refuses
// this process (stop), or err when no verdict is known yet and the fence
// could not be read (the claim waits as after a failed one).
func (e *Engine) gate(ctx context.Context) (fenced, err error) {
	if e.cfg.Fence == nil {
		return nil, nil
	}
	if known, fenced := e.cfg.Fence.Verdict(); known {
		return fenced, nil
	}
	return e.cfg.Fence.Check(ctx, nil)
}

// watchFence reads the fence every Interval and when a migration's NOTIFY
// arrives (fenceWake), until ctx ends or a reading refuses this process.
func (e *Engine) watchFence(ctx context.Context) {
	t := time.NewTicker(e.cfg.Fence.Interval())
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.fenceWake:
		}
		fenced, err := e.cfg.Fence.Check(ctx, nil)
		switch {
		case err != nil:
			if !failing && ctx.Err() == nil {
				e.log.WarnContext(ctx, "version fence not readable; the last verdict stands", slog.Any("error", err))
			}
			failing = true
		case fenced != nil:
			e.fenceStop(ctx, fenced)
			return
		default:
			failing = false
		}
	}
}

// fenceStop ends the fetch loop and cancels the running deliveries, once,
// after the fence refused this process.
func (e *Engine) fenceStop(ctx context.Context, fenced error) {
	e.fenceOnce.Do(func() {
		e.fenceErr = fenced
		e.log.ErrorContext(ctx, "version fence: this release may not run against the schema; dispatcher stops "+
			"(no claim, no outcome, no webhook; the rows it holds return to the queue when their leases expire)",
			slog.Int("running", int(e.busy.Load())), slog.Any("error", fenced))
		e.stopFetch()
		e.cancelHandlers()
	})
}

// wakeFence asks the watcher to read the fence now.
func (e *Engine) wakeFence() {
	select {
	case e.fenceWake <- struct{}{}:
	default:
	}
}
