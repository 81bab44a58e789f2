-- Reverts 000009_seed_schema.up.sql (run with search_path set to the schema).
-- Placeholder addresses go back to NULL; empty details stay the empty object,
-- which version 8 reads as well.
DROP INDEX IF EXISTS event_queue_subscription_id_idx;
ALTER TABLE event_queue DROP CONSTRAINT IF EXISTS event_queue_subscription_id_fkey;
ALTER TABLE event_queue DROP CONSTRAINT IF EXISTS event_queue_event_id_fkey;
ALTER TABLE security_event ALTER COLUMN ip_address DROP NOT NULL;
UPDATE security_event SET ip_address = NULL WHERE ip_address = '::';
ALTER TABLE security_event ALTER COLUMN event_details DROP NOT NULL;
ALTER TABLE integration_log ALTER COLUMN external_id TYPE varchar(255);
ALTER TABLE integration_log RENAME COLUMN operation TO operation_type;
ALTER TABLE event_subscription RENAME COLUMN topic_pattern TO event_pattern;
