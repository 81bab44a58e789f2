package dispatch

import (
	"context"
	"log/slog"
	mrand "math/rand/v2"
	"time"
)

// claimRetryMax caps the wait after a failed claim, and the listener's
// wait between two attempts to reconnect: once the database is back, a
// dispatcher claims again within about this long (sooner when its listener
// reconnects first), whatever the outage's length.
const claimRetryMax = time.Second

// claimRetryMin is the wait after a first failed claim; it doubles with each
// further failure, up to claimRetryMax.
const claimRetryMin = 100 * time.Millisecond

// dueSlack is added to a retry's delay before looking for it: the outcome,
// and so next_retry_at, is written a little after the delivery returns.
const dueSlack = 20 * time.Millisecond

// fetcher is the fetch loop's state: when it looks for due rows next, and
// how many it expects.
type fetcher struct {
	e     *Engine
	poll  *time.Timer // the next poll
	wakes *wakeups    // trailing fetches after notifications, retries falling due
	// backlog reports that the last claim was full: more rows are likely
	// due.
	backlog bool
	// errDelay is the wait after the next failed claim.
	errDelay time.Duration
}

// fetchLoop claims rows for the free workers, then waits for a reason to
// look again (a poll, a notification and its trailing fetch, a retry
// falling due, a freed worker while rows are waiting), until ctx ends or
// the version fence refuses this process (it claims only after a reading
// of the fence admitted it). A failed claim waits a short, capped and
// jittered while, cut short when the database is heard from.
func (e *Engine) fetchLoop(ctx, bgCtx, handlerCtx context.Context) {
	f := &fetcher{e: e, poll: time.NewTimer(0), wakes: newWakeups(), errDelay: claimRetryMin}
	defer f.poll.Stop()
	defer f.wakes.timer.Stop()
	for ctx.Err() == nil {
		if fenced, err := e.gate(ctx); fenced != nil {
			e.fenceStop(ctx, fenced)
			return
		} else if err != nil {
			e.log.WarnContext(ctx, "version fence not readable yet; nothing is claimed until it is", slog.Any("error", err))
			f.waitAfterFailure(ctx)
			continue
		}
		again, err := f.claimFree(bgCtx, handlerCtx)
		switch {
		case err != nil:
			e.log.ErrorContext(ctx, "claim failed", slog.Any("error", err))
			f.waitAfterFailure(ctx)
		case !again:
			f.waitForReason(ctx)
		}
	}
}

// claimFree claims rows for the free workers when enough of them are free.
// again reports a full claim with enough workers still free: claim again at
// once.
func (f *fetcher) claimFree(bgCtx, handlerCtx context.Context) (again bool, err error) {
	cfg := f.e.cfg
	threshold := 1
	if f.backlog {
		// Claim in batches when rows are waiting: a claim per freed slot
		// would cost a statement per row.
		threshold = max(1, min(cfg.BatchSize, cfg.Workers)/2)
	}
	free := cfg.Workers - int(f.e.busy.Load())
	if free < threshold {
		return false, nil
	}
	limit := min(free, cfg.BatchSize)
	n, err := f.e.claim(bgCtx, handlerCtx, limit)
	if err != nil {
		return false, err
	}
	f.errDelay = claimRetryMin
	f.backlog = n == limit
	return f.backlog && cfg.Workers-int(f.e.busy.Load()) >= threshold, nil
}

// waitAfterFailure waits after a failed claim: a short, capped wait, or
// until the database is heard from. Every wake follows a statement that
// succeeded (the listener reconnected, an outcome write, a rescue), and a
// notification was sent through it. An outage then costs about one
// claimRetryMax after the database is back, not a PollInterval.
func (f *fetcher) waitAfterFailure(ctx context.Context) {
	// In [d/2, d): never past the cap, and dispatchers that lost the
	// database together do not retry in step.
	wait := time.NewTimer(Jitter(f.errDelay, 0.5, 1, mrand.Float64()))
	defer wait.Stop()
	select {
	case <-ctx.Done():
	case <-wait.C:
		f.errDelay = min(f.errDelay*2, claimRetryMax, f.e.cfg.PollInterval)
	case <-f.e.wake:
		// The database answered: a failure now (a pooled connection the
		// outage cut) is worth only a short wait.
		f.errDelay = claimRetryMin
	case <-f.e.notified:
		f.errDelay = claimRetryMin
	}
}

// waitForReason waits until there is a reason to look for due rows, or ctx
// ends.
func (f *fetcher) waitForReason(ctx context.Context) {
	for ctx.Err() == nil {
		if f.wakeUp(ctx) {
			return
		}
	}
}

// wakeUp waits for one wake-up and reports whether it is a reason to look
// for due rows.
func (f *fetcher) wakeUp(ctx context.Context) bool {
	e, cfg := f.e, f.e.cfg
	select {
	case <-ctx.Done():
	case <-f.poll.C:
		f.poll.Reset(cfg.PollInterval)
	case <-e.wake:
	case t := <-e.notified:
		// Trailing fetch: an event whose own NOTIFY was suppressed by the
		// enqueuer's cooldown commits within one cooldown of the notify we
		// saw.
		if cfg.NotifyCooldown > 0 {
			f.wakes.add(t.Add(cfg.NotifyCooldown))
		}
	case <-f.wakes.timer.C:
		f.wakes.fired()
	case at := <-e.due:
		// A retry scheduled here falls due before the next poll: look
		// again then rather than a whole poll interval later.
		if time.Until(at) < cfg.PollInterval {
			f.wakes.add(at)
		}
	case <-e.freed:
		// A worker finished: claim again only if rows were waiting when we
		// last looked; otherwise wait for a reason to look.
		return f.backlog
	}
	return true
}

// poke asks the fetch loop to look for due rows now.
func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// dueIn tells the fetch loop that a row this engine released falls due
// after delay.
func (e *Engine) dueIn(delay time.Duration) {
	select {
	case e.due <- time.Now().Add(delay + dueSlack):
	default:
	}
}

// wakeups is a set of future times at which the fetch loop looks again,
// served by one timer set to the earliest.
type wakeups struct {
	timer *time.Timer
	at    []time.Time
}

func newWakeups() *wakeups {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &wakeups{timer: t}
}

func (w *wakeups) add(t time.Time) {
	for _, x := range w.at {
		if x.Sub(t).Abs() < time.Millisecond {
			return // close enough to one already set
		}
	}
	w.at = append(w.at, t)
	w.arm()
}

// fired drops the times that have passed and arms the timer for the next.
func (w *wakeups) fired() {
	now := time.Now()
	keep := w.at[:0]
	for _, x := range w.at {
		if x.After(now) {
			keep = append(keep, x)
		}
	}
	w.at = keep
	w.arm()
}

func (w *wakeups) arm() {
	if len(w.at) == 0 {
		w.timer.Stop()
		return
	}
	next := w.at[0]
	for _, x := range w.at[1:] {
		if x.Before(next) {
			next = x
		}
	}
	w.timer.Reset(max(time.Until(next), 0))
}
