-- Removes everything 000003_ordering_idempotency.up.sql added.
DROP INDEX IF EXISTS system_event_idempotency_key_idx;
ALTER TABLE system_event DROP COLUMN IF EXISTS idempotency_key;
DROP INDEX IF EXISTS event_queue_ordering_idx;
ALTER TABLE event_queue DROP CONSTRAINT IF EXISTS event_queue_ordering_pair;
ALTER TABLE event_queue DROP COLUMN IF EXISTS order_seq;
ALTER TABLE event_queue DROP COLUMN IF EXISTS ordering_key;
DROP SEQUENCE IF EXISTS event_queue_order_seq;
