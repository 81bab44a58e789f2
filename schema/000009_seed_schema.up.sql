-- outboxkit schema, version 9: the seed diagram, column for column
-- (run with search_path set to the schema).
--
-- Stop processes of earlier versions before applying it: two columns are
-- renamed, and their statements name the old columns.

-- Seed names.
ALTER TABLE event_subscription RENAME COLUMN event_pattern TO topic_pattern;
ALTER TABLE integration_log RENAME COLUMN operation_type TO operation;

-- The seed's external_id is a VARCHAR without a length, that is text
-- (binary-compatible with varchar: no rewrite; the index is kept). The
-- library still refuses ids over MaxExternalIDChars.
ALTER TABLE integration_log ALTER COLUMN external_id TYPE text;

-- security_event.event_details is NOT NULL in the seed: an event recorded
-- without details had NULL, which now reads as the empty object.
UPDATE security_event SET event_details = '{}'::jsonb WHERE event_details IS NULL;
ALTER TABLE security_event ALTER COLUMN event_details SET NOT NULL;

-- security_event.ip_address is NOT NULL in the seed. Events recorded without
-- an address get '::', the IPv6 unspecified address, which RFC 4291 (2.5.2)
-- defines as "the absence of an address": no host has it, and the library
-- refuses it (and 0.0.0.0) as the address of a new event, so in this column
-- '::' means exactly "recorded before version 9 without an address". It is
-- not a real address; the down migration turns it back into NULL.
UPDATE security_event SET ip_address = '::' WHERE ip_address IS NULL;
ALTER TABLE security_event ALTER COLUMN ip_address SET NOT NULL;

-- event_queue.event_id references system_event.id, and subscription_id
-- event_subscription.id ON DELETE SET NULL (the seed's two relations), as
-- in version 1; version 6 had dropped both.
--
-- Queue rows whose event is missing: there should be none (Enqueue writes
-- both in one statement; retention deletes an event only once no row refers
-- to it), but a hand-made deletion could leave some. Deleting them would
-- lose deliveries that may still be due, so their event is rebuilt from the
-- row, which carries everything the event had but its idempotency key: the
-- same id (handlers and receivers see the id they would have), the topic,
-- the payload, the metadata (JSON false, written by processes older than
-- version 7, means "the event's", which is gone: NULL), and the row's
-- creation time as the event's time. Finished rows get theirs too, so that
-- they stay history until retention removes both, as for any other row.
INSERT INTO system_event (id, event_type, payload, metadata, occurred_at)
SELECT DISTINCT ON (q.event_id) q.event_id, q.topic, q.payload,
	CASE WHEN q.metadata = 'false'::jsonb THEN NULL ELSE q.metadata END, q.created_at
FROM event_queue q
WHERE NOT EXISTS (SELECT 1 FROM system_event e WHERE e.id = q.event_id)
ORDER BY q.event_id, q.created_at;

-- Queue rows whose subscription is gone get what deleting it does now:
-- undelivered rows become FAILED with a reason (as Delete with
-- DiscardUndelivered does), and every such row keeps its history with
-- subscription_id NULL (as ON DELETE SET NULL does).
UPDATE event_queue q
SET status = 'FAILED', failure_reason = 'subscription deleted (found by schema migration 9)',
	processed_at = now(), locked_by = NULL, locked_until = NULL
WHERE q.status IN ('PENDING', 'PROCESSING') AND q.subscription_id IS NOT NULL
	AND NOT EXISTS (SELECT 1 FROM event_subscription s WHERE s.id = q.subscription_id);
UPDATE event_queue q SET subscription_id = NULL
WHERE q.subscription_id IS NOT NULL
	AND NOT EXISTS (SELECT 1 FROM event_subscription s WHERE s.id = q.subscription_id);

-- Both constraints are checked in full here (no NOT VALID): the table is
-- locked against writes while the check reads it once.
ALTER TABLE event_queue ADD CONSTRAINT event_queue_event_id_fkey
	FOREIGN KEY (event_id) REFERENCES system_event (id);
ALTER TABLE event_queue ADD CONSTRAINT event_queue_subscription_id_fkey
	FOREIGN KEY (subscription_id) REFERENCES event_subscription (id) ON DELETE SET NULL;

-- Deleting a subscription sets subscription_id to NULL on its rows: an index
-- finds them (event_queue_event_id_idx serves retention's deletes of events
-- the same way).
CREATE INDEX event_queue_subscription_id_idx ON event_queue (subscription_id);
