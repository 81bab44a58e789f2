package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/subconfig"
)

// outcome is the result of one attempt, written by the completer.
type outcome struct {
	id     uuid.UUID
	token  string
	status Status
	inc    int           // added to retry_count
	delay  time.Duration // before the next attempt, when status is PENDING
	reason string        // failure_reason, or "" to keep the previous one
	// keepPlace, with status PENDING, gives the row back at the due time
	// it was claimed at (delay is ignored): a row handed back without a
	// failure of its own resumes its place in line.
	keepPlace bool
	// attempt, when set, is written to integration_log in the transaction
	// that writes the outcome.
	attempt *intrecord.Record
	// keyed marks a row with an ordering key: finishing it may make the
	// next row of its key claimable.
	keyed bool
}

// process hands one row to its target and its outcome to the completer.
func (e *Engine) process(handlerCtx, bgCtx context.Context, c *Row) {
	defer func() {
		e.mu.Lock()
		delete(e.inflight, c.Delivery.ID)
		e.mu.Unlock()
		e.busy.Add(-1)
		e.workers.Done()
		select {
		case e.freed <- struct{}{}:
		default:
		}
	}()
	if e.refused() != nil {
		// Fenced after the claim: no delivery starts, and no outcome is
		// written; the lease runs out and an admitted process takes it.
		return
	}
	log := rowLogger{e.log, &c.Delivery}
	var cfgErr error
	c.Config, cfgErr = e.subscriptionConfig(c)
	var target Target
	if c.WebhookURL != "" {
		if e.cfg.Webhooks == nil {
			// The subscription became a webhook after the claim read it:
			// leave the row to a dispatcher that delivers webhooks.
			e.submit(outcome{id: c.Delivery.ID, token: c.Token, status: StatusPending, keepPlace: true})
			return
		}
		target = e.cfg.Webhooks
	} else if target = e.cfg.Targets[c.CallbackMethod]; target == nil {
		err := fmt.Errorf("outbox: no handler registered for %q", c.CallbackMethod)
		e.settle(bgCtx, log, decide(c, e.cfg.Backoff, err), err)
		return
	}
	if cfgErr != nil {
		// Fail closed: a setting or a secret this release cannot read (a
		// newer release's stored form, a hand-written key) is never
		// replaced by defaults, which would send a webhook unsigned or
		// without its credentials. The row is retried on the default
		// schedule and named at Error.
		err := fmt.Errorf("outbox: subscription_config of subscription %s is not readable by this release, so the row is not delivered "+
			"(a newer release may have stored a form this one does not know): %w", c.Delivery.Subscription, cfgErr)
		log.ErrorContext(bgCtx, "subscription config unreadable; row not delivered", slog.Any("error", err))
		e.settle(bgCtx, log, decide(c, e.cfg.Backoff, err), err)
		return
	}
	res := target.Deliver(handlerCtx, c)
	switch {
	case res.Skip > 0:
		// Nothing was attempted: the row waits a little, no attempt counted.
		log.DebugContext(bgCtx, "endpoint busy; row deferred", slog.Duration("retry_in", res.Skip))
		e.submit(outcome{id: c.Delivery.ID, token: c.Token, status: StatusPending, delay: res.Skip})
		e.dueIn(res.Skip)
	case res.Completed:
		log.DebugContext(bgCtx, "delivered", res.Attrs...)
		if c.Keyed {
			e.poke()
		}
	case res.Err != nil && handlerCtx.Err() != nil:
		e.release(bgCtx, log, c, res.Err, res.Attempt)
	default:
		oc := decide(c, e.cfg.Backoff, res.Err)
		oc.attempt = res.Attempt
		e.settle(bgCtx, log, oc, res.Err, res.Attrs...)
	}
}

// release gives back a row whose attempt was cut off by shutdown, without
// counting the attempt and at its place in line (the due time it was
// claimed at), so that it goes ahead of the rows enqueued after it; a, if
// set, records the attempt all the same.
func (e *Engine) release(ctx context.Context, log rowLogger, c *Row, err error, a *intrecord.Record) {
	log.WarnContext(ctx, "attempt cut off by shutdown; row released", slog.Any("error", err))
	e.submit(outcome{id: c.Delivery.ID, token: c.Token, status: StatusPending, keepPlace: true,
		reason: TruncateReason("released at shutdown: " + err.Error()), attempt: a})
}

// settle logs an attempt's outcome, looks again when a retry falls due
// before the next poll, and hands the outcome to the completer. attrs are
// added to the log record.
func (e *Engine) settle(ctx context.Context, log rowLogger, oc outcome, err error, attrs ...any) {
	switch oc.status {
	case StatusCompleted:
		log.DebugContext(ctx, "delivered", attrs...)
	case StatusFailed:
		log.WarnContext(ctx, "delivery failed for good", append(attrs, slog.Any("error", err))...)
	default:
		log.InfoContext(ctx, "delivery failed; will retry", append(attrs, slog.Any("error", err), slog.Duration("retry_in", oc.delay))...)
		e.dueIn(oc.delay)
	}
	e.submit(oc)
}

func (e *Engine) submit(oc outcome) { e.outcomes <- oc }

type cachedConfig struct {
	updatedAt time.Time
	raw       string // the config's text, as the claim read it
	cfg       subconfig.Config
	err       error // why the text does not parse
}

// subscriptionConfig parses a claimed row's subscription config strictly
// (subconfig.Parse: an unknown key, at any depth, or a value out of range
// is an error), cached per subscription until the subscription changes.
func (e *Engine) subscriptionConfig(c *Row) (subconfig.Config, error) {
	id := c.Delivery.SubscriptionID
	e.cfgMu.Lock()
	defer e.cfgMu.Unlock()
	// The config text is compared too: sealing and rotating secrets rewrite
	// it without touching updated_at (endpoint health counts from that).
	if cc, ok := e.cfgCache[id]; ok && cc.updatedAt.Equal(c.subUpdatedAt) && cc.raw == c.configJSON {
		return cc.cfg, cc.err
	}
	cfg, err := subconfig.Parse([]byte(c.configJSON))
	e.cfgCache[id] = cachedConfig{updatedAt: c.subUpdatedAt, raw: c.configJSON, cfg: cfg, err: err}
	return cfg, err
}

// rowLogger logs about one delivery, adding the delivery's attributes only
// to records that are emitted (a With per row would allocate on every
// delivery, logged or not).
type rowLogger struct {
	l  *slog.Logger
	dl *Delivery
}

func (rl rowLogger) log(ctx context.Context, level slog.Level, msg string, args ...any) {
	if !rl.l.Enabled(ctx, level) {
		return
	}
	attrs := append([]any{slog.String("event_id", rl.dl.EventID.String()), slog.String("subscription", rl.dl.Subscription),
		slog.Int("attempt", rl.dl.Attempt)}, args...)
	rl.l.Log(ctx, level, msg, attrs...)
}

func (rl rowLogger) DebugContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelDebug, msg, args...)
}

func (rl rowLogger) InfoContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelInfo, msg, args...)
}

func (rl rowLogger) WarnContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelWarn, msg, args...)
}

func (rl rowLogger) ErrorContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelError, msg, args...)
}
