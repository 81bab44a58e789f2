-- outboxkit schema, version 5 (run with search_path set to the schema).
--
-- event_queue_subscription_status_idx (subscription_id, status) covered the
-- claim's filter so well that, on a table without statistics, the planner
-- read every PENDING row of the subscriptions through it and sorted them
-- instead of walking event_queue_claim_idx in due order and stopping at the
-- batch size. It also cost a write per enqueued row. Operations that look up a
-- subscription's rows by status mostly want its FAILED rows (list, retry and
-- discard dead letters): a partial index serves them, and is written only when
-- a row fails.
DROP INDEX IF EXISTS event_queue_subscription_status_idx;
CREATE INDEX event_queue_failed_idx ON event_queue (subscription_id, id) WHERE status = 'FAILED';
