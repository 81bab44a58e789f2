package store

// Security event statements.
const (
	securityColumns = `id, event_type::text, user_id, ip_address, COALESCE(user_agent, ''),
	event_details::text, severity::text, requires_review, reviewed_by, reviewed_at, occurred_at`

	// SecurityInsert inserts one event. $1 id, $2 type, $3 user id,
	// $4 ip, $5 user agent ('' for none), $6 details,
	// $7 severity, $8 requires review, $9 occurred at (NULL: now), $10 now.
	SecurityInsert = `INSERT INTO {s}.security_event (id, event_type, user_id, ip_address, user_agent, event_details,
	severity, requires_review, occurred_at)
VALUES ($1::uuid, $2::text::{s}.security_event_type, $3::uuid, $4::text, NULLIF($5::text, ''),
	$6::jsonb, $7::text::{s}.security_severity, $8::bool, COALESCE($9::timestamptz, $10::timestamptz, now()))
RETURNING occurred_at`

	// SecurityLock takes transaction-level advisory locks on the keys in
	// $1, in the array's order (callers sort it).
	SecurityLock = `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n`

	// SecurityBruteForce evaluates the brute-force rules for one failed
	// login (already inserted by the same transaction) and inserts one
	// SUSPICIOUS_ACTIVITY event per rule that reached its threshold and has
	// no escalation for the same key within its window.
	// Rules: $1 names, $2 scopes, $3 thresholds, $4 windows (µs), $5 keys,
	// $6 new event ids. The login: $7 account, $8 ip, $9 user id.
	// $10 now (NULL: the database's now()), $11 user agent.
	// It returns the inserted events.
	SecurityBruteForce = `WITH rule AS (
	SELECT r.*, COALESCE($10::timestamptz, now()) - r.window_us * interval '1 microsecond' AS since
	FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::uuid[])
		AS r(name, scope, threshold, window_us, key, new_id)
), counted AS (
	SELECT rule.*, CASE rule.scope
		WHEN 'ACCOUNT_IP' THEN (SELECT count(*) FROM {s}.security_event e
			WHERE e.event_type = 'FAILED_LOGIN' AND e.event_details->>'account' = $7::text
				AND e.ip_address = $8::text AND e.occurred_at > rule.since)
		WHEN 'ACCOUNT' THEN (SELECT count(*) FROM {s}.security_event e
			WHERE e.event_type = 'FAILED_LOGIN' AND e.event_details->>'account' = $7::text
				AND e.occurred_at > rule.since)
		WHEN 'IP' THEN (SELECT count(*) FROM {s}.security_event e
			WHERE e.event_type = 'FAILED_LOGIN' AND e.ip_address = $8::text AND e.occurred_at > rule.since)
		WHEN 'IP_ACCOUNTS' THEN (SELECT count(DISTINCT e.event_details->>'account') FROM {s}.security_event e
			WHERE e.event_type = 'FAILED_LOGIN' AND e.ip_address = $8::text AND e.occurred_at > rule.since)
	END AS failures
	FROM rule
)
INSERT INTO {s}.security_event (id, event_type, user_id, ip_address, user_agent, event_details, severity,
	requires_review, occurred_at)
SELECT c.new_id, 'SUSPICIOUS_ACTIVITY', CASE WHEN c.scope LIKE 'ACCOUNT%' THEN $9::uuid END,
	$8::text, NULLIF($11::text, ''),
	jsonb_build_object('kind', 'brute_force', 'rule', c.name, 'scope', c.scope, 'key', c.key,
		'failures', c.failures, 'threshold', c.threshold, 'window_seconds', c.window_us::float8 / 1e6,
		'account', NULLIF($7::text, ''), 'ip', $8::text),
	'HIGH', true, COALESCE($10::timestamptz, now())
FROM counted c
WHERE c.failures >= c.threshold
	AND NOT EXISTS (SELECT 1 FROM {s}.security_event x
		WHERE x.event_type = 'SUSPICIOUS_ACTIVITY' AND x.event_details->>'kind' = 'brute_force'
			AND x.event_details->>'rule' = c.name AND x.event_details->>'key' = c.key
			AND x.occurred_at > c.since)
RETURNING ` + securityColumns

	// SecurityReview marks event $1 reviewed by $2 at $3 (NULL: now) if it
	// was not reviewed yet, and returns it.
	SecurityReview = `UPDATE {s}.security_event
SET reviewed_by = $2::uuid, reviewed_at = COALESCE($3::timestamptz, now())
WHERE id = $1::uuid AND reviewed_at IS NULL
RETURNING ` + securityColumns

	// SecurityGet reads one event.
	SecurityGet = `SELECT ` + securityColumns + ` FROM {s}.security_event WHERE id = $1::uuid`

	// SecurityList lists events newest first. $1 only those awaiting
	// review, $2 type, $3 minimum severity, $4 user id, $5 ip, $6 since
	// (inclusive), $7 until (exclusive), $8 and $9 the keyset cursor, $10
	// limit.
	SecurityList = `SELECT ` + securityColumns + `
FROM {s}.security_event
WHERE (NOT $1::bool OR (requires_review AND reviewed_at IS NULL))
	AND ($2::text = '' OR event_type::text = $2::text)
	AND severity >= COALESCE(NULLIF($3::text, ''), 'LOW')::{s}.security_severity
	AND ($4::uuid IS NULL OR user_id = $4::uuid)
	AND ($5::text = '' OR ip_address = $5::text)
	AND ($6::timestamptz IS NULL OR occurred_at >= $6::timestamptz)
	AND ($7::timestamptz IS NULL OR occurred_at < $7::timestamptz)
	AND ($8::timestamptz IS NULL OR (occurred_at, id) < ($8::timestamptz, $9::uuid))
ORDER BY occurred_at DESC, id DESC
LIMIT $10`
)
