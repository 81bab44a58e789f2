-- Reverts 000008_drop_event_time_index.up.sql.
CREATE INDEX IF NOT EXISTS system_event_occurred_at_idx ON system_event (occurred_at);
