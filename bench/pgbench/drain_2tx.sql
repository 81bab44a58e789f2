WITH claimed AS (
    UPDATE outbox_bench
       SET status = 'PROCESSING'
     WHERE id IN (SELECT id
                    FROM outbox_bench
                   WHERE status = 'PENDING'
                     AND (next_retry_at IS NULL OR next_retry_at <= now())
                   ORDER BY created_at
                   LIMIT 100
                     FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT coalesce(array_agg(id), '{}') AS ids FROM claimed \gset
UPDATE outbox_bench
   SET status = 'COMPLETED', processed_at = now()
 WHERE id = ANY (:ids::uuid[]);
