DROP TABLE IF EXISTS outbox_bench;
CREATE TABLE outbox_bench (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    topic         varchar(100) NOT NULL,
    payload       jsonb        NOT NULL,
    status        text         NOT NULL DEFAULT 'PENDING',
    retry_count   int          NOT NULL DEFAULT 0,
    max_retries   int          NOT NULL DEFAULT 3,
    next_retry_at timestamptz,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    processed_at  timestamptz
);
CREATE INDEX outbox_bench_pending_idx ON outbox_bench (created_at) WHERE status = 'PENDING';
