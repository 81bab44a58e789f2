package webhooksend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/subconfig"
)

// Reasons of a Disabled endpoint.
const (
	DisabledGone    = "gone"    // the endpoint answered 410 Gone
	DisabledFailing = "failing" // every attempt failed for too long
)

// Disabled describes a webhook subscription the sender paused: its
// endpoint answered 410 Gone, or failed every attempt for
// Config.DisableAfter. Config.Disabled publishes it.
type Disabled struct {
	Subscription   string
	SubscriptionID uuid.UUID
	URL            string // the endpoint, redacted
	Reason         string // DisabledGone or DisabledFailing
	FailingSince   time.Time
	Failures       int64
	LastError      string // redacted
}

// Deliver makes one delivery attempt of a webhook row, without waiting for
// a slot of its endpoint (a worker blocked on a slow endpoint would be a
// worker taken from every other endpoint: the row is skipped instead). It
// pauses the subscription when the endpoint is gone or has failed for too
// long, and returns the attempt's record with the result.
func (s *Sender) Deliver(ctx context.Context, row *dispatch.Row) dispatch.Result {
	dl := &row.Delivery
	cfg, err := s.withSecrets(ctx, row)
	if err != nil {
		// Not the endpoint's fault, and not for good: a key may be added
		// back. The row is retried on its schedule with this reason, no
		// request is sent, and endpoint health is left alone.
		if ctx.Err() == nil {
			s.cfg.Logger.ErrorContext(ctx, "webhook secrets unusable; row not sent", slog.String("subscription", dl.Subscription),
				slog.String("event_id", dl.EventID.String()), slog.Any("error", err))
		}
		return dispatch.Result{Err: err}
	}
	a := s.sendMode(ctx, row.WebhookURL, cfg, dl, false)
	if a.busy {
		// About BusyDelay, ±BackoffJitter, so that rows that met a full
		// endpoint together do not come back together.
		wait := dispatch.Jitter(s.cfg.BusyDelay, 1-dispatch.BackoffJitter, 1+dispatch.BackoffJitter, mrand.Float64())
		return dispatch.Result{Skip: max(wait, time.Nanosecond)}
	}
	redactSecretHeaders(a.reqHeader, cfg)
	rec := s.attemptRecord(ctx, dl, &a)
	res := dispatch.Result{Err: a.err, Attempt: rec,
		Attrs: []any{slog.Int("http_status", a.status), slog.Duration("duration", a.duration)}}
	if a.err == nil || ctx.Err() != nil {
		return res // delivered, or cut off by shutdown: no health verdict
	}
	bg := context.WithoutCancel(ctx)
	reason := dispatch.TruncateReason(a.err.Error())
	if a.gone {
		s.disableEndpoint(bg, row, DisabledGone, s.cfg.Store.Now(), 1, reason)
	} else {
		s.checkEndpointHealth(bg, row, reason)
	}
	return res
}

// attemptRecord is what the attempt log keeps of a, prepared for the
// outcome's transaction: an API_CALL_MADE with integration name =
// subscriber name and external id = event id (the webhook-id), headers and
// bodies redacted like every other HTTP record. A record the log cannot
// store (a response body with a number jsonb cannot hold...) is dropped
// with a log line: it never holds back the outcome it rides with.
func (s *Sender) attemptRecord(ctx context.Context, d *dispatch.Delivery, a *attempt) *intrecord.Record {
	h := &intrecord.HTTP{
		Method: a.method, URL: a.url, RequestHeader: a.reqHeader, RequestBody: a.reqBody, RequestBytes: int64(len(a.reqBody)),
		Status: a.status, ResponseHeader: a.respHeader, ResponseBody: a.respBody, ResponseBytes: int64(len(a.respBody)),
		Err: a.err, Start: s.cfg.Store.Now().Add(-a.duration), Duration: a.duration,
	}
	if a.respTruncated {
		h.ResponseBytes++ // more followed what was kept
	}
	rec := intrecord.FromHTTP(s.cfg.Redactor, d.Subscription, intrecord.OpAPICallMade, h, nil)
	rec.ExternalID = d.EventID.String()
	if a.duration > 0 && a.duration < time.Millisecond {
		// duration_ms keeps whole milliseconds, and 0 stores none: a
		// request that was made shows as 1 ms rather than no duration.
		rec.Duration = time.Millisecond
	}
	out, err := intrecord.Prepare(rec, nil, s.cfg.MaxRecordBytes)
	if err != nil {
		s.cfg.Logger.ErrorContext(ctx, "integration record of a webhook attempt refused; its outcome is written without it",
			slog.String("integration", d.Subscription), slog.String("external_id", d.EventID.String()), slog.Any("error", err))
		return nil
	}
	return &out
}

// checkEndpointHealth pauses the row's subscription when its endpoint has
// failed every attempt, this one included, for DisableAfter and at least
// DisableMinFailures times. Attempts still waiting in the completer are
// not seen yet: the count lags by at most one batch.
func (s *Sender) checkEndpointHealth(ctx context.Context, c *dispatch.Row, lastErr string) {
	if s.cfg.DisableAfter < 0 {
		return
	}
	st := s.cfg.Store
	var n int64
	var first sql.NullTime
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	// Runs after every failed attempt: prepared once, one round trip.
	rows, err := st.Stmt(nil, st.Webhook.FailureRun).Query(qctx, c.Delivery.Subscription, s.cfg.DisableMinFailures)
	if err == nil {
		err = store.ScanOne(rows, &n, &first)
	}
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.WarnContext(ctx, "endpoint health check failed", slog.String("subscription", c.Delivery.Subscription),
				slog.Any("error", err))
		}
		return
	}
	now := st.Now()
	since := now
	if first.Valid && first.Time.Before(now) {
		since = first.Time
	}
	n++ // this attempt, not written yet
	if n < int64(s.cfg.DisableMinFailures) || now.Sub(since) < s.cfg.DisableAfter {
		return
	}
	s.disableEndpoint(ctx, c, DisabledFailing, since, n, lastErr)
}

// disableEndpoint pauses the row's subscription and, in the same
// transaction, publishes the Disabled event (Config.Disabled); it does nothing if
// the subscription is already paused (so concurrent attempts enqueue one
// event).
func (s *Sender) disableEndpoint(ctx context.Context, c *dispatch.Row, reason string, since time.Time, failures int64, lastErr string) {
	name := c.Delivery.Subscription
	err := s.disableEndpointTx(ctx, c, reason, since, failures, lastErr)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		if ctx.Err() == nil {
			s.cfg.Logger.ErrorContext(ctx, "pausing webhook subscription failed", slog.String("subscription", name), slog.Any("error", err))
		}
	default:
		s.cfg.Logger.WarnContext(ctx, "webhook subscription paused", slog.String("subscription", name), slog.String("reason", reason),
			slog.Int64("failures", failures), slog.Time("failing_since", since))
	}
}

func (s *Sender) disableEndpointTx(ctx context.Context, c *dispatch.Row, reason string, since time.Time, failures int64, lastErr string) (err error) {
	st := s.cfg.Store
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := st.DB.BeginTx(ctx, nil)
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
	ev := Disabled{
		Subscription: c.Delivery.Subscription, Reason: reason, FailingSince: since.UTC(), Failures: failures,
		LastError: s.cfg.Redactor.String(lastErr),
	}
	var rawURL string
	if err = tx.QueryRowContext(ctx, st.Webhook.Pause, ev.Subscription, st.NowArg()).Scan(&ev.SubscriptionID, &rawURL); err != nil {
		return err
	}
	ev.URL = s.cfg.Redactor.URL(rawURL)
	if err = s.cfg.Disabled(ctx, tx, ev); err != nil {
		return fmt.Errorf("publish disabled endpoint: %w", err)
	}
	return tx.Commit()
}

// redactedMarker replaces secret header values in attempt records (the
// root's RedactedMarker).
const redactedMarker = "[REDACTED]"

// redactSecretHeaders blanks the values of cfg's secret headers in h, the
// request as recorded: the integration log must not keep what the config
// keeps sealed, whatever the redaction rules say.
func redactSecretHeaders(h http.Header, cfg subconfig.Config) {
	for k := range cfg.Headers {
		if subconfig.SecretHeader(k, cfg.SecretHeaders) && len(h.Values(k)) > 0 {
			h.Set(k, redactedMarker)
		}
	}
}
