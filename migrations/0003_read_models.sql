-- Read models of jobs, their steps, approvals, artifacts, executors and refused
-- submissions. Written only by the projector, in the same transaction as its
-- checkpoint; dropped and rebuilt from the log by `skynet rebuild`.

CREATE TABLE jobs (
    id                 UUID PRIMARY KEY,
    status             TEXT NOT NULL,
    intent             TEXT NOT NULL,
    requested_by       TEXT,
    project            TEXT,
    working_dir        TEXT,
    request_source     TEXT NOT NULL,
    request_id         TEXT NOT NULL,
    planner            TEXT,
    plan_summary       TEXT,
    fallback_reason    TEXT,
    artifacts_expected JSONB,
    risk               TEXT,
    requires_approval  BOOLEAN,
    approvals_required SMALLINT,
    approvers          JSONB NOT NULL,
    policy_reasons     JSONB,
    provider           TEXT,
    executor           TEXT,
    lease              BIGINT,
    error              TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    planned_at         TIMESTAMPTZ,
    decided_at         TIMESTAMPTZ,
    approved_at        TIMESTAMPTZ,
    dispatched_at      TIMESTAMPTZ,
    scheduled_at       TIMESTAMPTZ,
    started_at         TIMESTAMPTZ,
    finished_at        TIMESTAMPTZ,
    duration_ms        BIGINT,
    last_seq           BIGINT NOT NULL,
    event_count        INTEGER NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status ON jobs (status, created_at DESC);
CREATE INDEX jobs_requested_by ON jobs (requested_by, created_at DESC);
CREATE INDEX jobs_project ON jobs (project, created_at DESC);

CREATE TABLE steps (
    job_id        UUID NOT NULL,
    idx           INTEGER NOT NULL,
    title         TEXT NOT NULL,
    action        TEXT,
    params        JSONB,
    risk          TEXT,
    status        TEXT NOT NULL,
    exit_code     INTEGER,
    duration_ms   BIGINT,
    error         TEXT,
    output_ref    TEXT,
    output_chunks INTEGER NOT NULL,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE approvals (
    seq      BIGINT PRIMARY KEY,
    job_id   UUID NOT NULL,
    decision TEXT NOT NULL,
    actor    TEXT NOT NULL,
    comment  TEXT,
    at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX approvals_job ON approvals (job_id, seq);

CREATE TABLE artifacts (
    job_id       UUID NOT NULL,
    name         TEXT NOT NULL,
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE TABLE executors (
    id           TEXT PRIMARY KEY,
    jobs_started BIGINT NOT NULL,
    last_job     UUID,
    last_seen    TIMESTAMPTZ NOT NULL
);

CREATE TABLE rejections (
    seq            BIGINT PRIMARY KEY,
    code           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    job_id         UUID,
    request_source TEXT,
    request_id     TEXT,
    at             TIMESTAMPTZ NOT NULL
);
