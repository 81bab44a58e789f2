package store

// Integration log statements.
const (
	// IntegrationColumns is the column list every integration_log read
	// returns, in IntegrationRecord's order.
	integrationColumns = `id, integration_name, operation::text, COALESCE(request_data::text, ''),
	COALESCE(response_data::text, ''), COALESCE(http_status_code, 0), success, COALESCE(error_message, ''),
	COALESCE(external_id, ''), occurred_at, duration_ms`

	// IntegrationInsert inserts a batch of records in one statement.
	// $1 ids, $2 names, $3 operations, $4 request data, $5 response data,
	// $6 status codes, $7 success flags, $8 error messages, $9 external ids,
	// $10 occurred-at times (NULL: now), $11 now, $12 durations in ms.
	IntegrationInsert = `INSERT INTO {s}.integration_log (id, integration_name, operation, request_data,
	response_data, http_status_code, success, error_message, external_id, occurred_at, duration_ms)
SELECT r.id, r.name, r.op::{s}.integration_operation, r.req, r.resp, r.status, r.ok, r.err, r.ext,
	COALESCE(r.at, $11::timestamptz, now()), r.dur
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::int[], $7::bool[], $8::text[],
	$9::text[], $10::timestamptz[], $12::int[]) AS r(id, name, op, req, resp, status, ok, err, ext, at, dur)
RETURNING id, occurred_at`

	// IntegrationInsertOnce is IntegrationInsert for a batch that may be
	// sent again after an attempt whose outcome is unknown (the buffered
	// recorders' retries): a record whose id is already stored is skipped.
	// Same parameters; returns nothing.
	IntegrationInsertOnce = `INSERT INTO {s}.integration_log (id, integration_name, operation, request_data,
	response_data, http_status_code, success, error_message, external_id, occurred_at, duration_ms)
SELECT r.id, r.name, r.op::{s}.integration_operation, r.req, r.resp, r.status, r.ok, r.err, r.ext,
	COALESCE(r.at, $11::timestamptz, now()), r.dur
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::int[], $7::bool[], $8::text[],
	$9::text[], $10::timestamptz[], $12::int[]) AS r(id, name, op, req, resp, status, ok, err, ext, at, dur)
ON CONFLICT DO NOTHING`

	// IntegrationList lists records newest first with optional filters:
	// $1 name, $2 operation, $3 success, $4 external id, $5 since
	// (inclusive), $6 until (exclusive), $7 and $8 the keyset cursor
	// (occurred_at, id) to continue after, $9 limit.
	IntegrationList = `SELECT ` + integrationColumns + `
FROM {s}.integration_log
WHERE ($1::text = '' OR integration_name = $1::text)
	AND ($2::text = '' OR operation::text = $2::text)
	AND ($3::bool IS NULL OR success = $3::bool)
	AND ($4::text = '' OR external_id = $4::text)
	AND ($5::timestamptz IS NULL OR occurred_at >= $5::timestamptz)
	AND ($6::timestamptz IS NULL OR occurred_at < $6::timestamptz)
	AND ($7::timestamptz IS NULL OR (occurred_at, id) < ($7::timestamptz, $8::uuid))
ORDER BY occurred_at DESC, id DESC
LIMIT $9`

	// IntegrationStats aggregates records per integration over
	// [$1, $2), optionally for one integration ($3) and operation ($4).
	IntegrationStats = `SELECT integration_name, count(*), count(*) FILTER (WHERE NOT success),
	percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
	percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
FROM {s}.integration_log
WHERE occurred_at >= $1::timestamptz AND occurred_at < $2::timestamptz
	AND ($3::text = '' OR integration_name = $3::text)
	AND ($4::text = '' OR operation::text = $4::text)
GROUP BY integration_name
ORDER BY integration_name`
)
