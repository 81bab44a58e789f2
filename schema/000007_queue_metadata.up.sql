-- outboxkit schema, version 7 (run with search_path set to the schema).
--
-- The claim joined system_event for every claimed row only to return the
-- event's metadata (an index lookup and a heap visit per row, about a sixth
-- of the drain's database time). The queue row now carries the metadata, as
-- it already carries the payload; Enqueue writes both. Rows that may still be
-- delivered take theirs from their event.
ALTER TABLE event_queue ADD COLUMN metadata jsonb NULL;
UPDATE event_queue q SET metadata = e.metadata
FROM system_event e
WHERE e.id = q.event_id AND e.metadata IS NOT NULL AND q.status IN ('PENDING', 'PROCESSING', 'FAILED');
-- During a rolling upgrade, processes of an older version still insert queue
-- rows without this column. They get the default, JSON false (metadata is
-- otherwise NULL or an object), and the claim reads their metadata from the
-- event, as it did before.
ALTER TABLE event_queue ALTER COLUMN metadata SET DEFAULT 'false'::jsonb;
