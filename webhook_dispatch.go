package outbox

import (
	"context"
	"database/sql"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/webhooksend"
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
