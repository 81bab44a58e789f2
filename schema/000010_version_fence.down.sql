-- Reverts version 10: the fence goes, and nothing else changes (no data
-- lives in it). v0.2 runs on version 9; v0.3 runs on it too (it reads the
-- fence only where there is one), so v0.3 processes keep working while they
-- are replaced. Running dispatchers re-read the fence on the NOTIFY.
DROP TABLE outboxkit_fence;

SELECT pg_notify(left('outboxkit_' || current_schema(), 63), 'fence');
