-- outboxkit schema, version 10: the version fence (run with search_path set
-- to the schema).
--
-- One row says which releases may run against this schema. A release is
-- counted by the number of the last migration it ships: v0.2 is 9, v0.3
-- is 10. Every process of v0.3 or later reads the row when it starts
-- (Migrate, Dispatcher.Run, the first Enqueue of a handle) and again while
-- it runs (on the NOTIFY below, and every 30 s), and stops, with an error
-- saying why, when its release is below min_release, or when the schema is
-- older than it needs.
--
-- Every later migration sets schema_version to its own number, raises
-- min_release when older readers would misread what it changes (never
-- lowers it), and ends with the same NOTIFY. This one changes nothing that
-- v0.2 reads, so v0.2 stays admitted: the two run side by side during a
-- rolling deploy.
CREATE TABLE outboxkit_fence (
  singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT outboxkit_fence_one_row CHECK (singleton),
  schema_version integer NOT NULL,
  min_release integer NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT outboxkit_fence_range CHECK (min_release BETWEEN 1 AND schema_version)
);

COMMENT ON TABLE outboxkit_fence IS 'outboxkit version fence: releases below min_release (counted by their last migration) must not run against this schema';

INSERT INTO outboxkit_fence (schema_version, min_release) VALUES (10, 9);

-- Running dispatchers re-read the fence when this arrives (on commit), on
-- the channel their LISTEN connection already follows.
SELECT pg_notify(left('outboxkit_' || current_schema(), 63), 'fence');
