-- The memory service's tables (it is their single writer). Every table but
-- memory_usage is a read model of the log: drop them and the service rebuilds
-- them (`skynet memory rebuild`). memory_usage (how often a record was
-- retrieved) is operational state and survives a rebuild.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE IF NOT EXISTS memory_records (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    -- What similarity searches.
    text        text NOT NULL,
    content     jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- For importance: true, false, or unknown (preferences and facts).
    success     boolean,
    working_dir text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- English: stop words dropped and words stemmed, so "nginx on web1" finds
    -- "web1 restarts nginx nightly" (every remaining query word must match).
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX IF NOT EXISTS memory_records_tsv ON memory_records USING gin (tsv);
-- The operator class named with the extension's schema: this migration also
-- runs under another search_path (the projector's shadow rebuild), where an
-- unqualified gin_trgm_ops is not found.
DO $$
DECLARE ext_schema text;
BEGIN
    SELECT n.nspname INTO ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    EXECUTE format('CREATE INDEX IF NOT EXISTS memory_records_trgm ON memory_records USING gin (text %I.gin_trgm_ops)', ext_schema);
END $$;
CREATE INDEX IF NOT EXISTS memory_records_kind ON memory_records (kind, updated_at DESC);

-- Each failure-pattern occurrence (one failed step of one job): counts per
-- pattern and per directory, and the jobs involved.
CREATE TABLE IF NOT EXISTS memory_failures (
    pattern_id  text NOT NULL,
    job_id      uuid NOT NULL,
    step        integer NOT NULL,
    working_dir text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL,
    PRIMARY KEY (pattern_id, job_id, step)
);
CREATE INDEX IF NOT EXISTS memory_failures_dir ON memory_failures (working_dir, at DESC);

-- Each finished run of a plan shape.
CREATE TABLE IF NOT EXISTS memory_strategy_runs (
    strategy_id text NOT NULL,
    job_id      uuid NOT NULL,
    succeeded   boolean NOT NULL,
    duration_ms bigint,
    at          timestamptz NOT NULL,
    PRIMARY KEY (strategy_id, job_id)
);

-- Events already applied (a redelivery changes nothing).
CREATE TABLE IF NOT EXISTS memory_applied (
    event_id   text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS memory_usage (
    id              text PRIMARY KEY,
    retrieval_count bigint NOT NULL DEFAULT 0,
    last_retrieved  timestamptz
);
