-- Reverts 000005_claim_indexes.up.sql.
DROP INDEX IF EXISTS event_queue_failed_idx;
CREATE INDEX event_queue_subscription_status_idx ON event_queue (subscription_id, status);
