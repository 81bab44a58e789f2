-- outboxkit schema, version 4: the last successful call per integration,
-- which webhook endpoint health reads after every failed delivery
-- (run with search_path set to the schema).
CREATE INDEX integration_log_last_success_idx ON integration_log (integration_name, occurred_at DESC)
    WHERE success AND operation_type = 'API_CALL_MADE';
