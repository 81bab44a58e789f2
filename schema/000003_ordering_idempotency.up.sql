-- outboxkit schema, version 3: per-key FIFO ordering and idempotent enqueue
-- (run with search_path set to the schema).

-- ext: rows with the same ordering key are delivered one at a time, in
-- order_seq order, per subscription. order_seq is taken from a sequence at
-- insert, only for rows that have a key.
CREATE SEQUENCE event_queue_order_seq;
ALTER TABLE event_queue ADD COLUMN ordering_key varchar(255) NULL;
ALTER TABLE event_queue ADD COLUMN order_seq bigint NULL;
ALTER TABLE event_queue ADD CONSTRAINT event_queue_ordering_pair
    CHECK ((ordering_key IS NULL) = (order_seq IS NULL));
-- The claim's "is an earlier row of this key still open?" probe.
CREATE INDEX event_queue_ordering_idx ON event_queue (subscription_id, ordering_key, order_seq)
    WHERE ordering_key IS NOT NULL AND status IN ('PENDING', 'PROCESSING', 'FAILED');

-- ext: an event enqueued twice with the same idempotency key exists once.
ALTER TABLE system_event ADD COLUMN idempotency_key varchar(255) NULL;
CREATE UNIQUE INDEX system_event_idempotency_key_idx ON system_event (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
