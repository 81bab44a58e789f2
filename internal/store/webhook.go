package store

// Webhook delivery statements (endpoint health).
const (
	// WebhookFailureRun describes the run of failed attempts an endpoint is
	// on: how many API_CALL_MADE records of integration $1 failed (counted
	// up to $2), and the earliest of them, since its last successful one
	// and since the subscription of that name last changed (ResumeSubscription starts
	// afresh).
	WebhookFailureRun = `WITH since AS (
	SELECT GREATEST(
		(SELECT updated_at FROM {s}.event_subscription WHERE subscriber_name = $1),
		(SELECT max(occurred_at) FROM {s}.integration_log
			WHERE integration_name = $1 AND operation = 'API_CALL_MADE' AND success)) AS at
), run AS NOT MATERIALIZED (
	SELECT l.occurred_at FROM {s}.integration_log l, since
	WHERE l.integration_name = $1 AND l.operation = 'API_CALL_MADE' AND NOT l.success
		AND (since.at IS NULL OR l.occurred_at > since.at)
)
SELECT (SELECT count(*) FROM (SELECT 1 FROM run LIMIT $2) c), (SELECT min(occurred_at) FROM run)`

	// WebhookPause pauses the webhook subscription $1 if it is active, and
	// returns its id and URL (no row when it was already paused).
	// $2 now.
	WebhookPause = `UPDATE {s}.event_subscription
SET is_active = false, updated_at = COALESCE($2::timestamptz, now())
WHERE subscriber_name = $1 AND is_active AND webhook_url IS NOT NULL
RETURNING id, webhook_url`
)
