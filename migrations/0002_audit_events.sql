-- Every event in the log, one row each, keyed by its stream sequence.
-- Read model: written only by the projector, rebuilt from the log at will.
CREATE TABLE audit_events (
    seq           BIGINT PRIMARY KEY,
    event_id      TEXT NOT NULL,
    type          TEXT NOT NULL,
    source        TEXT NOT NULL,
    subject       TEXT,
    nats_subject  TEXT NOT NULL,
    time          TIMESTAMPTZ NOT NULL,
    data          JSONB NOT NULL
);
CREATE INDEX audit_events_subject_seq ON audit_events (subject, seq);
CREATE INDEX audit_events_type ON audit_events (type);
