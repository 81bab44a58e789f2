package store

// Queue statements. $now parameters are NULL when the handle has no clock,
// and the statement then uses the database's now().
const (
	// EnqueueOne inserts one event and fans it out to every active
	// subscription whose pattern matches, in one statement. %s is the final
	// SELECT's extra column: a pg_notify call, or NULL. It returns the rows
	// fanned out and whether the event was inserted (0 when its idempotency
	// key already exists).
	// $1 event id, $2 topic, $3 payload, $4 metadata, $5 now, $6 max retries,
	// $7 run at, $8 delay in microseconds, $9 ordering key, $10 idempotency key.
	EnqueueOne = `WITH ev AS (
	INSERT INTO {s}.system_event (id, event_type, payload, metadata, occurred_at, idempotency_key)
	VALUES ($1, $2::text, $3::jsonb, $4::jsonb, COALESCE($5::timestamptz, now()), $10::text)
	ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING id, occurred_at
), q AS (
	INSERT INTO {s}.event_queue (event_id, subscription_id, topic, payload, metadata, max_retries, next_retry_at,
		created_at, ordering_key, order_seq)
	SELECT ev.id, s.id, $2::text, $3::jsonb, $4::jsonb,
		COALESCE($6::int, (s.subscription_config->>'max_retries')::int, CASE WHEN s.webhook_url IS NULL THEN 3 ELSE 9 END),
		COALESCE($7::timestamptz, ev.occurred_at + $8::bigint * interval '1 microsecond'),
		ev.occurred_at,
		$9::text, CASE WHEN $9::text IS NOT NULL THEN nextval('{s}.event_queue_order_seq') END
	FROM ev, {s}.event_subscription s
	WHERE s.is_active AND ('.' || $2::text) ~ s.pattern_regex
	RETURNING 1
)
SELECT (SELECT count(*) FROM q), (SELECT count(*) FROM ev), %s`

	// EnqueueBatch is EnqueueOne over arrays: $1 ids, $2 topics, $3 payloads
	// (one JSON array of them: no per-element quoting on either side),
	// $4 metadata, $5 now, $6 max retries, $7 run at, $8 delays (µs),
	// $9 ordering keys, $10 idempotency keys. It returns one row per input
	// event: (event id, inserted, rows fanned out).
	EnqueueBatch = `WITH input AS MATERIALIZED (
	SELECT u.*, CASE WHEN u.ordering_key IS NOT NULL THEN nextval('{s}.event_queue_order_seq') END AS order_seq
	FROM ROWS FROM (unnest($1::uuid[]), unnest($2::text[]), jsonb_array_elements($3::jsonb), unnest($4::jsonb[]),
			unnest($6::int[]), unnest($7::timestamptz[]), unnest($8::bigint[]), unnest($9::text[]), unnest($10::text[]))
		WITH ORDINALITY AS u(id, topic, payload, metadata, max_retries, run_at, delay_us, ordering_key, idempotency_key, ord)
), ev AS (
	INSERT INTO {s}.system_event (id, event_type, payload, metadata, occurred_at, idempotency_key)
	SELECT id, topic, payload, metadata, COALESCE($5::timestamptz, now()), idempotency_key FROM input ORDER BY ord
	ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING id
), q AS (
	INSERT INTO {s}.event_queue (event_id, subscription_id, topic, payload, metadata, max_retries, next_retry_at,
		created_at, ordering_key, order_seq)
	SELECT i.id, s.id, i.topic, i.payload, i.metadata,
		COALESCE(i.max_retries, (s.subscription_config->>'max_retries')::int, CASE WHEN s.webhook_url IS NULL THEN 3 ELSE 9 END),
		COALESCE(i.run_at, COALESCE($5::timestamptz, now()) + i.delay_us * interval '1 microsecond'),
		COALESCE($5::timestamptz, now()),
		i.ordering_key, i.order_seq
	FROM input i JOIN ev ON ev.id = i.id
	JOIN {s}.event_subscription s ON s.is_active AND ('.' || i.topic) ~ s.pattern_regex
	RETURNING event_id
)
SELECT i.id, ev.id IS NOT NULL, count(q.event_id), %s
FROM input i LEFT JOIN ev ON ev.id = i.id LEFT JOIN q ON q.event_id = i.id
GROUP BY i.id, ev.id`

	// EventsByIdempotencyKey finds the events that hold idempotency keys $1.
	EventsByIdempotencyKey = `SELECT idempotency_key, id FROM {s}.system_event WHERE idempotency_key = ANY($1::text[])`

	// Claim moves up to $4 claimable rows of the served subscriptions to
	// PROCESSING under claim token $5 with a lease of $6 µs.
	// $1 now, $2 callback methods served, $3 whether webhooks are served.
	// A row's metadata is its own; JSON false (the column default, which
	// only a process older than migration 7 leaves) means "read the event's".
	Claim = `WITH c AS (
	SELECT q.id FROM {s}.event_queue q
	WHERE q.status = 'PENDING'
		AND COALESCE(q.next_retry_at, q.created_at) <= COALESCE($1::timestamptz, now())
		AND q.subscription_id = ANY (ARRAY(
			SELECT s.id FROM {s}.event_subscription s
			WHERE s.is_active AND (s.callback_method = ANY($2::text[]) OR ($3::bool AND s.webhook_url IS NOT NULL))))
		-- Per-key FIFO: a keyed row waits while another row of its key is
		-- running, or an earlier one is pending (or FAILED, unless the
		-- subscription sets skip_failed). The advisory lock closes the race
		-- between two concurrent claims that each see the other's row as
		-- still PENDING.
		AND (q.ordering_key IS NULL OR (
			NOT EXISTS (
				SELECT 1 FROM {s}.event_queue p
				WHERE p.subscription_id = q.subscription_id AND p.ordering_key = q.ordering_key
					AND p.status IN ('PENDING', 'PROCESSING', 'FAILED') AND p.id <> q.id
					AND (p.status = 'PROCESSING' OR (p.order_seq < q.order_seq AND (p.status = 'PENDING'
						OR NOT COALESCE((SELECT (s.subscription_config->>'skip_failed')::boolean
							FROM {s}.event_subscription s WHERE s.id = q.subscription_id), false)))))
			AND pg_try_advisory_xact_lock(1868718700, hashtext(q.subscription_id::text || '/' || q.ordering_key))))
	ORDER BY COALESCE(q.next_retry_at, q.created_at)
	LIMIT $4
	FOR UPDATE OF q SKIP LOCKED
)
UPDATE {s}.event_queue q
SET status = 'PROCESSING', locked_by = $5,
	locked_until = COALESCE($1::timestamptz, now()) + $6::bigint * interval '1 microsecond'
FROM {s}.event_subscription s
WHERE q.id = ANY (ARRAY(SELECT id FROM c)) AND s.id = q.subscription_id
RETURNING q.id, q.event_id, q.subscription_id, s.subscriber_name, COALESCE(s.callback_method, ''),
	COALESCE(s.webhook_url, ''), COALESCE(s.subscription_config::text, ''), s.updated_at,
	q.topic, q.payload::text, COALESCE(CASE WHEN q.metadata = 'false'::jsonb
		THEN (SELECT e.metadata FROM {s}.system_event e WHERE e.id = q.event_id) ELSE q.metadata END::text, ''), q.retry_count, q.max_retries, q.created_at,
	q.ordering_key IS NOT NULL`

	// Heartbeat extends the leases of rows still held: $1 now, $2 ids,
	// $3 their claim tokens, $4 lease in µs. Fenced on the token alone, as
	// Outcomes is (see there). It skips rows another statement has locked:
	// those are being finished by an outcome write, and waiting for them
	// (while that write waits for rows this one locked first) deadlocked.
	Heartbeat = `UPDATE {s}.event_queue q
SET locked_until = COALESCE($1::timestamptz, now()) + $4::bigint * interval '1 microsecond'
FROM (
	SELECT l.id FROM {s}.event_queue l
	JOIN unnest($2::uuid[], $3::text[]) AS h(id, token) ON l.id = h.id AND l.locked_by = h.token
	FOR UPDATE OF l SKIP LOCKED
) held
WHERE q.id = held.id`

	// Outcomes writes a batch of outcomes, each fenced on its claim token.
	// $1 now, $2 ids, $3 tokens, $4 statuses, $5 retry-count increments,
	// $6 delays before the next attempt (µs; NULL keeps the row's due time,
	// which a claim never changes: a row given back without a failure of
	// its own keeps its place in line), $7 failure reasons.
	//
	// The fence is the token alone: locked_by is set only by a claim (with
	// status PROCESSING and a token no other claim uses) and every write that
	// ends PROCESSING clears it, so locked_by = token implies PROCESSING.
	// Writing "AND q.status = 'PROCESSING'" here as well made the planner,
	// whose statistics rarely hold a PROCESSING row, read every entry of
	// event_queue_lease_idx (dead ones included, until vacuum) instead of
	// looking the batch up by primary key: half the drain's database time.
	Outcomes = `UPDATE {s}.event_queue q
SET status = u.status::{s}.event_status,
	retry_count = q.retry_count + u.inc,
	next_retry_at = CASE WHEN u.status = 'PENDING'
		THEN COALESCE(COALESCE($1::timestamptz, now()) + u.delay_us * interval '1 microsecond', q.next_retry_at)
		ELSE q.next_retry_at END,
	failure_reason = COALESCE(u.reason, q.failure_reason),
	processed_at = CASE WHEN u.status IN ('COMPLETED', 'FAILED') THEN COALESCE($1::timestamptz, now()) END,
	locked_by = NULL, locked_until = NULL
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[])
	AS u(id, token, status, inc, delay_us, reason)
WHERE q.id = u.id AND q.locked_by = u.token`

	// CompleteMany is Outcomes for a batch of successes only (the common
	// case), without the per-row status, retry and reason arrays:
	// $1 now, $2 ids, $3 tokens.
	CompleteMany = `UPDATE {s}.event_queue q
SET status = 'COMPLETED', processed_at = COALESCE($1::timestamptz, now()), locked_by = NULL, locked_until = NULL
FROM unnest($2::uuid[], $3::text[]) AS u(id, token)
WHERE q.id = u.id AND q.locked_by = u.token`

	// CompleteOne marks one held row COMPLETED (used inside HandleTx's
	// transaction): $1 now, $2 id, $3 token.
	CompleteOne = `UPDATE {s}.event_queue
SET status = 'COMPLETED', processed_at = COALESCE($1::timestamptz, now()), locked_by = NULL, locked_until = NULL
WHERE id = $2 AND locked_by = $3 AND status = 'PROCESSING'`

	// Rescue returns up to $2 rows whose lease expired to PENDING (or FAILED
	// when their retries are spent), counting the lost attempt. A rescued
	// row keeps its due time (next_retry_at, which a claim never changes,
	// or created_at): it resumes its place in line, ahead of the rows
	// enqueued after it, instead of queueing behind the whole backlog (and,
	// by per-key ordering, holding its key behind it). A row that kills its
	// process on every attempt is still retried at most once per lease, and
	// ends FAILED when its retries are spent.
	Rescue = `WITH r AS (
	SELECT id FROM {s}.event_queue
	WHERE status = 'PROCESSING' AND locked_until < COALESCE($1::timestamptz, now())
	ORDER BY locked_until
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE {s}.event_queue q
SET status = CASE WHEN q.retry_count + 1 > q.max_retries THEN 'FAILED' ELSE 'PENDING' END::{s}.event_status,
	retry_count = q.retry_count + 1,
	failure_reason = 'lease expired: dispatcher ' || COALESCE(q.locked_by, '?') || ' stopped renewing it',
	processed_at = CASE WHEN q.retry_count + 1 > q.max_retries THEN COALESCE($1::timestamptz, now()) END,
	locked_by = NULL, locked_until = NULL
FROM r WHERE q.id = r.id`

	// NeedsFirstAnalyze reports whether the queue table was ever analyzed
	// (by hand or by autovacuum), and how many rows changed since. $1 is the
	// schema name.
	NeedsFirstAnalyze = `SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL, n_mod_since_analyze
FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'event_queue'`

	// Analyze collects the queue table's statistics.
	Analyze = `ANALYZE {s}.event_queue`

	// DeleteFinished deletes up to $3 rows of status $2 finished before $1.
	DeleteFinished = `DELETE FROM {s}.event_queue WHERE id IN (
	SELECT id FROM {s}.event_queue
	WHERE status = $2::{s}.event_status AND processed_at < $1::timestamptz
	LIMIT $3 FOR UPDATE SKIP LOCKED)`

	// DeleteEvents deletes up to $2 events older than $1 that no queue row
	// refers to any more. $3 is an id bound (the smallest UUIDv7 of $1's
	// millisecond, or the largest UUID when the handle has its own clock):
	// ids are time-ordered, so the old events are a primary-key range.
	DeleteEvents = `DELETE FROM {s}.system_event WHERE id IN (
	SELECT e.id FROM {s}.system_event e
	WHERE e.id < $3::uuid AND e.occurred_at < $1::timestamptz
		AND NOT EXISTS (SELECT 1 FROM {s}.event_queue q WHERE q.event_id = e.id)
	LIMIT $2 FOR UPDATE SKIP LOCKED)`

	// StatsByStatus counts rows per subscription and status.
	StatsByStatus = `SELECT COALESCE(s.subscriber_name, ''), q.status::text, count(*)
FROM {s}.event_queue q LEFT JOIN {s}.event_subscription s ON s.id = q.subscription_id
GROUP BY 1, 2 ORDER BY 1, 2`

	// BlockedKeys counts the (subscription, key) pairs whose pending rows
	// wait behind a FAILED row, and the creation time of the oldest such row.
	BlockedKeys = `SELECT count(DISTINCT (f.subscription_id, f.ordering_key)), min(w.created_at)
FROM {s}.event_queue f
JOIN {s}.event_subscription s ON s.id = f.subscription_id
JOIN {s}.event_queue w ON w.subscription_id = f.subscription_id AND w.ordering_key = f.ordering_key
	AND w.status = 'PENDING' AND w.order_seq > f.order_seq
WHERE f.status = 'FAILED' AND f.ordering_key IS NOT NULL
	AND NOT COALESCE((s.subscription_config->>'skip_failed')::boolean, false)`

	// OldestClaimable returns the due time of the oldest claimable row.
	OldestClaimable = `SELECT min(COALESCE(next_retry_at, created_at)) FROM {s}.event_queue
WHERE status = 'PENDING' AND COALESCE(next_retry_at, created_at) <= COALESCE($1::timestamptz, now())`

	// ListFailed pages through FAILED rows, newest id first after $2.
	// $1 subscriber name or '', $2 id to start after or NULL, $3 limit.
	ListFailed = `SELECT q.id, q.event_id, COALESCE(s.subscriber_name, ''), q.topic, q.payload::text,
	q.retry_count, q.max_retries, COALESCE(q.failure_reason, ''), q.created_at, q.processed_at
FROM {s}.event_queue q LEFT JOIN {s}.event_subscription s ON s.id = q.subscription_id
WHERE q.status = 'FAILED' AND ($1 = '' OR s.subscriber_name = $1) AND ($2::uuid IS NULL OR q.id < $2::uuid)
ORDER BY q.id DESC LIMIT $3`

	// RetryFailed puts FAILED rows back to PENDING with a fresh retry budget:
	// $1 now, $2 ids (NULL for all of the subscription), $3 subscriber name or ''.
	RetryFailed = `UPDATE {s}.event_queue q
SET status = 'PENDING', retry_count = 0, next_retry_at = COALESCE($1::timestamptz, now()), processed_at = NULL
FROM {s}.event_subscription s
WHERE s.id = q.subscription_id AND q.status = 'FAILED'
	AND ($2::uuid[] IS NULL OR q.id = ANY($2::uuid[]))
	AND ($3 = '' OR s.subscriber_name = $3)`

	// DiscardFailed deletes FAILED rows: $1 ids (NULL for all of the
	// subscription), $2 subscriber name or ''.
	DiscardFailed = `DELETE FROM {s}.event_queue q
WHERE q.status = 'FAILED'
	AND ($1::uuid[] IS NULL OR q.id = ANY($1::uuid[]))
	AND ($2 = '' OR q.subscription_id = (SELECT id FROM {s}.event_subscription WHERE subscriber_name = $2))`
)
