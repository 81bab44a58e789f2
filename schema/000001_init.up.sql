-- outboxkit schema, version 1.
--
-- Every object is created unqualified: the migration runs with search_path set
-- to the configured schema (outbox by default), so the same file serves any
-- schema name and any migration tool that sets search_path first.

-- uuidv7 returns a time-ordered UUID (RFC 9562, version 7): 48 bits of Unix
-- milliseconds followed by random bits. PostgreSQL 13-17 have no built-in one.
CREATE FUNCTION uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $fn$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$fn$;

-- pattern_regex turns a topic pattern (dot-separated segments of [A-Za-z0-9_-],
-- where * is exactly one segment and # zero or more) into an anchored regular
-- expression over '.' || topic. The Go function MatchTopic implements the same
-- semantics; a fuzz test keeps the two equal.
CREATE FUNCTION pattern_regex(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
  SELECT '^' || string_agg(
           CASE seg
             WHEN '*' THEN '\.[^.]+'
             WHEN '#' THEN '(\.[^.]+)*'
             ELSE '\.' || seg
           END, '' ORDER BY ord) || '$'
    FROM unnest(string_to_array(pattern, '.')) WITH ORDINALITY AS t(seg, ord)
$fn$;

-- topic_matches reports whether topic matches pattern (AMQP topic semantics).
-- Its body repeats pattern_regex's on purpose: a function body is resolved at
-- call time, and runtime SQL never relies on search_path.
CREATE FUNCTION topic_matches(pattern text, topic text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
  SELECT ('.' || topic) ~ ('^' || string_agg(
           CASE seg
             WHEN '*' THEN '\.[^.]+'
             WHEN '#' THEN '(\.[^.]+)*'
             ELSE '\.' || seg
           END, '' ORDER BY ord) || '$')
    FROM unnest(string_to_array(pattern, '.')) WITH ORDINALITY AS t(seg, ord)
$fn$;

CREATE TYPE event_status AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');
CREATE TYPE integration_operation AS ENUM ('WEBHOOK_RECEIVED', 'API_CALL_MADE', 'DATA_SYNC');
CREATE TYPE security_event_type AS ENUM ('FAILED_LOGIN', 'SUSPICIOUS_ACTIVITY', 'PERMISSION_DENIED');
CREATE TYPE security_severity AS ENUM ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL');

-- system_event: the event itself, written once per Enqueue.
CREATE TABLE system_event (
    id          uuid         PRIMARY KEY,
    event_type  varchar(100) NOT NULL,
    payload     jsonb        NOT NULL,
    metadata    jsonb        NULL,
    occurred_at timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX system_event_occurred_at_idx ON system_event (occurred_at);

-- event_subscription: who receives which topics, by Go handler or webhook.
CREATE TABLE event_subscription (
    id                  uuid         PRIMARY KEY DEFAULT uuidv7(),
    subscriber_name     varchar(100) NOT NULL,
    event_pattern       varchar(100) NOT NULL,
    webhook_url         varchar(500) NULL,
    callback_method     varchar(100) NULL,
    is_active           boolean      NOT NULL DEFAULT true,
    subscription_config jsonb        NULL,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    -- ext: the pattern compiled to a regular expression, kept by PostgreSQL.
    pattern_regex       text         GENERATED ALWAYS AS (pattern_regex(event_pattern)) STORED,
    CONSTRAINT event_subscription_subscriber_name_key UNIQUE (subscriber_name),
    CONSTRAINT event_subscription_one_target CHECK ((webhook_url IS NULL) <> (callback_method IS NULL))
);

-- event_queue: one row per (event, subscription), with its own delivery state.
CREATE TABLE event_queue (
    id              uuid         PRIMARY KEY DEFAULT uuidv7(),
    event_id        uuid         NOT NULL REFERENCES system_event (id),
    subscription_id uuid         NULL REFERENCES event_subscription (id) ON DELETE SET NULL,
    topic           varchar(100) NOT NULL,
    payload         jsonb        NOT NULL,
    status          event_status NOT NULL DEFAULT 'PENDING',
    retry_count     int          NOT NULL DEFAULT 0,
    max_retries     int          NOT NULL DEFAULT 3,
    next_retry_at   timestamptz  NULL,
    failure_reason  text         NULL,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    processed_at    timestamptz  NULL,
    locked_until    timestamptz  NULL,
    locked_by       varchar(100) NULL
);
-- Claim: claimable PENDING rows in due order.
CREATE INDEX event_queue_claim_idx ON event_queue ((COALESCE(next_retry_at, created_at)))
    WHERE status = 'PENDING';
-- Lease rescue: PROCESSING rows by lease expiry.
CREATE INDEX event_queue_lease_idx ON event_queue (locked_until) WHERE status = 'PROCESSING';
-- Retention: finished rows by completion time.
CREATE INDEX event_queue_finished_idx ON event_queue (processed_at)
    WHERE status IN ('COMPLETED', 'FAILED');
CREATE INDEX event_queue_event_id_idx ON event_queue (event_id);
-- Operations: a subscription's rows by status (stats, delete, retry).
CREATE INDEX event_queue_subscription_status_idx ON event_queue (subscription_id, status);

-- integration_log: calls to and from third parties.
CREATE TABLE integration_log (
    id               uuid                  PRIMARY KEY DEFAULT uuidv7(),
    integration_name varchar(100)          NOT NULL,
    operation_type   integration_operation NOT NULL,
    request_data     jsonb                 NULL,
    response_data    jsonb                 NULL,
    http_status_code int                   NULL,
    success          boolean               NOT NULL,
    error_message    text                  NULL,
    external_id      varchar(255)          NULL,
    occurred_at      timestamptz           NOT NULL DEFAULT now(),
    -- ext: how long the call took, in milliseconds.
    duration_ms      int                   NULL
);
CREATE INDEX integration_log_name_time_idx ON integration_log (integration_name, occurred_at DESC, id DESC);
CREATE INDEX integration_log_external_id_idx ON integration_log (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX integration_log_failures_idx ON integration_log (occurred_at DESC, id DESC) WHERE NOT success;

-- security_event: failed logins, suspicious activity, permission denials.
-- user_id and reviewed_by refer to the application's user table (see README).
CREATE TABLE security_event (
    id              uuid                PRIMARY KEY DEFAULT uuidv7(),
    event_type      security_event_type NOT NULL,
    user_id         uuid                NULL,
    ip_address      varchar(45)         NULL,
    user_agent      varchar(500)        NULL,
    event_details   jsonb               NULL,
    severity        security_severity   NOT NULL,
    requires_review boolean             NOT NULL DEFAULT false,
    reviewed_by     uuid                NULL,
    reviewed_at     timestamptz         NULL,
    occurred_at     timestamptz         NOT NULL DEFAULT now(),
    CONSTRAINT security_event_review_pair CHECK ((reviewed_by IS NULL) = (reviewed_at IS NULL))
);
CREATE INDEX security_event_unreviewed_idx ON security_event (occurred_at DESC, id DESC)
    WHERE requires_review AND reviewed_at IS NULL;
CREATE INDEX security_event_user_idx ON security_event (user_id, occurred_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX security_event_ip_idx ON security_event (ip_address, occurred_at DESC) WHERE ip_address IS NOT NULL;
CREATE INDEX security_event_type_time_idx ON security_event (event_type, occurred_at DESC);
