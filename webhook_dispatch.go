package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
)

// WebhookEndpointDisabledTopic is the topic of the event enqueued when a
// webhook subscription is paused by the dispatcher: its endpoint answered
// 410 Gone, or failed every attempt for WebhookOptions.DisableAfter. The
// payload is a WebhookEndpointDisabled. Subscribe a handler or another
// endpoint to it to alert whoever owns the endpoint.
const WebhookEndpointDisabledTopic = "webhook.endpoint_disabled"

// Reasons of WebhookEndpointDisabled.
const (
	// WebhookDisabledGone: the endpoint answered 410 Gone.
	WebhookDisabledGone = "gone"
	// WebhookDisabledFailing: every attempt failed for too long.
	WebhookDisabledFailing = "failing"
)

// WebhookEndpointDisabled is the payload of a WebhookEndpointDisabledTopic
// event. Resume the subscription to deliver to the endpoint again.
type WebhookEndpointDisabled struct {
	Subscription   string    `json:"subscription"`
	SubscriptionID uuid.UUID `json:"subscription_id"`
	// URL is the endpoint, with credentials in its query redacted.
	URL string `json:"url"`
	// Reason is WebhookDisabledGone or WebhookDisabledFailing.
	Reason string `json:"reason"`
	// FailingSince is the first failed attempt of the run that disabled the
	// endpoint; Failures counts the attempts of that run.
	FailingSince time.Time `json:"failing_since"`
	Failures     int64     `json:"failures"`
	// LastError describes the attempt that disabled the endpoint.
	LastError string `json:"last_error"`
}

// webhookBusyDelay is how long a webhook row waits before it is claimed
// again when every delivery slot of its endpoint was taken. No attempt is
// counted.
const webhookBusyDelay = time.Second

// deliverWebhook makes one delivery attempt of a webhook row and hands its
// outcome, with the attempt's integration record, to the completer.
func (r *run) deliverWebhook(handlerCtx, bgCtx context.Context, c *claimedRow, sub SubscriptionConfig) {
	dl := &c.delivery
	log := rowLogger{r.d.log, dl}
	a := r.sender.sendMode(handlerCtx, c.webhookURL, sub, dl, false)
	if a.busy {
		// Nothing was sent: the row waits a little, no attempt counted.
		delay := jitter(r.d.busyDelay, mrand.Float64())
		log.DebugContext(bgCtx, "endpoint busy; row deferred", slog.Duration("retry_in", delay))
		r.submit(outcome{id: dl.ID, token: c.token, status: StatusPending, delay: delay})
		r.dueIn(delay)
		return
	}
	rec := r.o.webhookAttemptRecord(dl, &a)
	err := a.err
	if err != nil && handlerCtx.Err() != nil {
		r.release(bgCtx, log, c, err, &rec)
		return
	}
	oc := r.d.decide(c, sub, err)
	oc.record = &rec
	switch {
	case a.gone:
		r.d.disableEndpoint(bgCtx, c, WebhookDisabledGone, r.o.now(), 1, oc.reason)
	case err != nil:
		r.d.checkEndpointHealth(bgCtx, c, oc.reason)
	}
	r.settle(bgCtx, log, oc, err, slog.Int("http_status", a.status), slog.Duration("duration", a.duration))
}

// webhookAttemptRecord is the API_CALL_MADE record of one delivery attempt:
// integration name = subscriber name, external id = event id (the
// webhook-id), headers and bodies redacted like every other HTTP record.
func (o *Outbox) webhookAttemptRecord(d *Delivery, a *webhookAttempt) IntegrationRecord {
	u, _ := url.Parse(a.url)
	req := &http.Request{Method: a.method, URL: u, Header: a.reqHeader}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	var resp *http.Response
	respTotal := int64(len(a.respBody))
	if a.status != 0 {
		resp = &http.Response{StatusCode: a.status, Header: a.respHeader}
		if resp.Header == nil {
			resp.Header = http.Header{}
		}
		if a.respTruncated {
			respTotal++ // more followed what was kept
		}
	}
	rec := o.redactor().httpRecord(d.Subscription, OpAPICallMade, req, a.reqBody, int64(len(a.reqBody)),
		resp, a.respBody, respTotal, a.err, a.duration, nil)
	rec.ExternalID = d.EventID.String()
	rec.OccurredAt = o.now().Add(-a.duration)
	if a.duration > 0 && a.duration < time.Millisecond {
		// duration_ms keeps whole milliseconds, and 0 stores none: a
		// request that was made shows as 1 ms rather than no duration.
		rec.Duration = time.Millisecond
	}
	return rec
}

// checkEndpointHealth pauses the row's subscription when its endpoint has
// failed every attempt, this one included, for DisableAfter and at least
// DisableMinFailures times. Attempts still waiting in the completer are
// not seen yet: the count lags by at most one batch.
func (d *Dispatcher) checkEndpointHealth(ctx context.Context, c *claimedRow, lastErr string) {
	opts := d.webhooks
	if opts.DisableAfter < 0 {
		return
	}
	var n int64
	var first sql.NullTime
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := d.o.db.QueryRowContext(qctx, d.o.st.Webhook.FailureRun, c.delivery.Subscription, opts.DisableMinFailures).Scan(&n, &first)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "endpoint health check failed", slog.String("subscription", c.delivery.Subscription),
				slog.Any("error", err))
		}
		return
	}
	now := d.o.now()
	since := now
	if first.Valid && first.Time.Before(now) {
		since = first.Time
	}
	n++ // this attempt, not written yet
	if n < int64(opts.DisableMinFailures) || now.Sub(since) < opts.DisableAfter {
		return
	}
	d.disableEndpoint(ctx, c, WebhookDisabledFailing, since, n, lastErr)
}

// disableEndpoint pauses the row's subscription and, in the same
// transaction, enqueues a WebhookEndpointDisabledTopic event; it does
// nothing if the subscription is already paused (so concurrent attempts
// enqueue one event).
func (d *Dispatcher) disableEndpoint(ctx context.Context, c *claimedRow, reason string, since time.Time, failures int64, lastErr string) {
	name := c.delivery.Subscription
	err := d.disableEndpointTx(ctx, c, reason, since, failures, lastErr)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		if ctx.Err() == nil {
			d.log.ErrorContext(ctx, "pausing webhook subscription failed", slog.String("subscription", name), slog.Any("error", err))
		}
	default:
		d.log.WarnContext(ctx, "webhook subscription paused", slog.String("subscription", name), slog.String("reason", reason),
			slog.Int64("failures", failures), slog.Time("failing_since", since))
	}
}

func (d *Dispatcher) disableEndpointTx(ctx context.Context, c *claimedRow, reason string, since time.Time, failures int64, lastErr string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := d.o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, rbErr)
			}
		}
	}()
	ev := WebhookEndpointDisabled{
		Subscription: c.delivery.Subscription, Reason: reason, FailingSince: since.UTC(), Failures: failures,
		LastError: d.o.redactor().String(lastErr),
	}
	var rawURL string
	if err = tx.QueryRowContext(ctx, d.o.st.Webhook.Pause, ev.Subscription, d.o.nowArg()).Scan(&ev.SubscriptionID, &rawURL); err != nil {
		return err
	}
	ev.URL = d.o.redactor().URL(rawURL)
	if _, err = d.o.Enqueue(ctx, tx, WebhookEndpointDisabledTopic, ev); err != nil {
		return fmt.Errorf("enqueue %s: %w", WebhookEndpointDisabledTopic, err)
	}
	return tx.Commit()
}
