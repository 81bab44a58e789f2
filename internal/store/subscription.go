package store

// Subscription statements.
const (
	subscriptionColumns = `id, subscriber_name, topic_pattern, COALESCE(webhook_url, ''), COALESCE(callback_method, ''),
	is_active, COALESCE(subscription_config::text, ''), created_at, updated_at`

	SubscriptionUpsert = `INSERT INTO {s}.event_subscription
	(subscriber_name, topic_pattern, webhook_url, callback_method, subscription_config, created_at, updated_at)
VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), $5::jsonb, COALESCE($6::timestamptz, now()), COALESCE($6::timestamptz, now()))
ON CONFLICT (subscriber_name) DO UPDATE SET
	topic_pattern = EXCLUDED.topic_pattern,
	webhook_url = EXCLUDED.webhook_url,
	callback_method = EXCLUDED.callback_method,
	subscription_config = EXCLUDED.subscription_config,
	updated_at = EXCLUDED.updated_at
RETURNING ` + subscriptionColumns

	SubscriptionGet = `SELECT ` + subscriptionColumns + ` FROM {s}.event_subscription WHERE subscriber_name = $1`

	SubscriptionList = `SELECT ` + subscriptionColumns + ` FROM {s}.event_subscription ORDER BY subscriber_name`

	SubscriptionSetActive = `UPDATE {s}.event_subscription
SET is_active = $2, updated_at = COALESCE($3::timestamptz, now())
WHERE subscriber_name = $1
RETURNING ` + subscriptionColumns

	SubscriptionSetConfig = `UPDATE {s}.event_subscription
SET subscription_config = $2::jsonb, updated_at = COALESCE($3::timestamptz, now())
WHERE subscriber_name = $1
RETURNING ` + subscriptionColumns

	// SubscriptionSetSealed replaces the secret part of subscription $1's
	// config (clear secrets, headers, the sealed block) with $2, keeping
	// every other key, even one a newer version wrote. It leaves updated_at
	// alone: the subscription means the same (endpoint health counts from
	// updated_at).
	SubscriptionSetSealed = `UPDATE {s}.event_subscription
SET subscription_config = (COALESCE(subscription_config, '{}'::jsonb) - 'secrets' - 'headers' - 'encrypted') || $2::jsonb
WHERE id = $1
RETURNING ` + subscriptionColumns

	// SubscriptionConfigByID reads subscription $1's name and config.
	SubscriptionConfigByID = `SELECT subscriber_name, COALESCE(subscription_config::text, '') FROM {s}.event_subscription WHERE id = $1`

	// SubscriptionLockConfigByID is SubscriptionConfigByID, locking the row.
	SubscriptionLockConfigByID = SubscriptionConfigByID + ` FOR UPDATE`

	// SubscriptionIDsAfter pages through subscription ids: up to $2 after $1.
	SubscriptionIDsAfter = `SELECT id FROM {s}.event_subscription WHERE id > $1 ORDER BY id LIMIT $2`

	// SubscriptionLockForDelete locks the row and counts its undelivered rows.
	SubscriptionLockForDelete = `SELECT s.id,
	(SELECT count(*) FROM {s}.event_queue q WHERE q.subscription_id = s.id AND q.status IN ('PENDING', 'PROCESSING'))
FROM {s}.event_subscription s WHERE s.subscriber_name = $1 FOR UPDATE`

	SubscriptionFailUndelivered = `UPDATE {s}.event_queue
SET status = 'FAILED', failure_reason = $2, processed_at = COALESCE($3::timestamptz, now()),
	locked_by = NULL, locked_until = NULL
WHERE subscription_id = $1 AND status IN ('PENDING', 'PROCESSING')`

	// SubscriptionDetachRows keeps a deleted subscription's rows as history,
	// with subscription_id set to NULL.
	SubscriptionDetachRows = `UPDATE {s}.event_queue SET subscription_id = NULL WHERE subscription_id = $1`

	SubscriptionDelete = `DELETE FROM {s}.event_subscription WHERE id = $1`

	// SubscriptionReaders lists the virtual transaction ids of the other
	// transactions holding a lock on event_subscription: every Enqueue
	// holds one (its statement reads the subscriptions) until it commits.
	SubscriptionReaders = `SELECT COALESCE(array_agg(DISTINCT l.virtualtransaction), '{}')
FROM pg_locks l
WHERE l.locktype = 'relation' AND l.relation = '{s}.event_subscription'::regclass AND l.pid <> pg_backend_pid()`

	// TransactionsOpen counts which of the virtual transaction ids $1 are
	// still running.
	TransactionsOpen = `SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[])`
)
