package outbox

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/webhooksend"
	"github.com/outboxkit/outbox/redact"
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
// event. ResumeSubscription delivers to the endpoint again.
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
	// LastError describes the attempt that disabled the endpoint, redacted.
	LastError string `json:"last_error"`
}

// publishDisabled enqueues the WebhookEndpointDisabledTopic event of d in
// tx, the transaction that paused the subscription.
func (o *Outbox) publishDisabled(ctx context.Context, tx *sql.Tx, d webhooksend.Disabled) error {
	_, err := o.Enqueue(ctx, tx, WebhookEndpointDisabledTopic, WebhookEndpointDisabled{
		Subscription: d.Subscription, SubscriptionID: d.SubscriptionID, URL: d.URL, Reason: d.Reason,
		FailingSince: d.FailingSince, Failures: d.Failures, LastError: d.LastError,
	}, nil)
	return err
}

// attemptSink stores the dispatcher's webhook attempts in integration_log,
// redacted by the handle's rules, in the transaction of their outcomes.
type attemptSink struct{ o *Outbox }

// Prepare is the API_CALL_MADE record of one delivery attempt:
// integration name = subscriber name, external id = event id (the
// webhook-id), headers and bodies redacted like every other HTTP record,
// validated as IntegrationLog.Record validates.
func (s attemptSink) Prepare(a *dispatch.Attempt) (dispatch.StoredAttempt, error) {
	red := s.o.redactor()
	return s.o.prepareIntegration(s.o.webhookAttemptRecord(a, red), red)
}

// Insert writes prepared records in tx.
func (s attemptSink) Insert(ctx context.Context, tx *sql.Tx, recs []dispatch.StoredAttempt) error {
	out := make([]IntegrationRecord, len(recs))
	for i, r := range recs {
		out[i] = r.(IntegrationRecord)
	}
	return s.o.insertPrepared(ctx, tx, out)
}

// webhookAttemptRecord is the integration record of a webhook attempt.
func (o *Outbox) webhookAttemptRecord(a *dispatch.Attempt, red *redact.Redactor) IntegrationRecord {
	u, _ := url.Parse(a.URL)
	req := &http.Request{Method: a.Method, URL: u, Header: a.RequestHeader}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	var resp *http.Response
	respTotal := int64(len(a.ResponseBody))
	if a.Status != 0 {
		resp = &http.Response{StatusCode: a.Status, Header: a.ResponseHeader}
		if resp.Header == nil {
			resp.Header = http.Header{}
		}
		if a.ResponseTruncated {
			respTotal++ // more followed what was kept
		}
	}
	rec := httpRecord(red, a.Integration, OpAPICallMade, req, a.RequestBody, int64(len(a.RequestBody)),
		resp, a.ResponseBody, respTotal, a.Err, a.Duration, nil)
	rec.ExternalID = a.EventID.String()
	rec.OccurredAt = a.OccurredAt
	if a.Duration > 0 && a.Duration < time.Millisecond {
		// duration_ms keeps whole milliseconds, and 0 stores none: a
		// request that was made shows as 1 ms rather than no duration.
		rec.Duration = time.Millisecond
	}
	return rec
}
