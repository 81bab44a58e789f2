package store

// Re-redaction statements (package reredact): one batch of a log's rows
// after an id, locked for the short transaction that rewrites them, and the
// rewrite of those whose redacted form differs. $1 the id to start after,
// $2 the batch size.
const (
	ReredactIntegrationBatch = `SELECT id, request_data::text, response_data::text, error_message, external_id
FROM {s}.integration_log WHERE id > $1::uuid ORDER BY id LIMIT $2 FOR NO KEY UPDATE`

	// ReredactIntegrationUpdate: $1 ids, $2 request data, $3 response
	// data, $4 error messages, $5 external ids. It changes only the rows
	// whose stored values differ (jsonb compared as jsonb).
	ReredactIntegrationUpdate = `UPDATE {s}.integration_log l
SET request_data = u.req::jsonb, response_data = u.resp::jsonb, error_message = u.err, external_id = u.ext
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, req, resp, err, ext)
WHERE l.id = u.id AND (l.request_data IS DISTINCT FROM u.req::jsonb OR l.response_data IS DISTINCT FROM u.resp::jsonb
	OR l.error_message IS DISTINCT FROM u.err OR l.external_id IS DISTINCT FROM u.ext)`

	ReredactSecurityBatch = `SELECT id, event_details::text, user_agent
FROM {s}.security_event WHERE id > $1::uuid ORDER BY id LIMIT $2 FOR NO KEY UPDATE`

	// ReredactSecurityUpdate: $1 ids, $2 details, $3 user agents.
	ReredactSecurityUpdate = `UPDATE {s}.security_event e
SET event_details = u.details::jsonb, user_agent = u.ua
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, details, ua)
WHERE e.id = u.id AND (e.event_details IS DISTINCT FROM u.details::jsonb OR e.user_agent IS DISTINCT FROM u.ua)`
)
