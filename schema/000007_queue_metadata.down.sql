-- Reverts 000007_queue_metadata.up.sql (the events keep their metadata).
ALTER TABLE event_queue DROP COLUMN IF EXISTS metadata;
