-- The sentinel's tables (it is their single writer): read models of the alert
-- events in the log. `alerts` holds each alert's latest state; what the
-- sentinel decides from is a fold of the same events, so a restarted sentinel
-- neither raises what already fires nor forgets its cooldowns.
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint      text PRIMARY KEY,
    kind             text NOT NULL,
    subject          text NOT NULL,
    severity         text NOT NULL,
    summary          text NOT NULL,
    labels           jsonb NOT NULL,
    -- firing or resolved.
    status           text NOT NULL,
    notified         boolean NOT NULL,
    muted            text,
    raised_at        timestamptz NOT NULL,
    resolved_at      timestamptz,
    last_notified_at timestamptz,
    times_raised     integer NOT NULL DEFAULT 1,
    -- The last delivery that failed for good: sink, attempts, error.
    undelivered      text,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status, raised_at DESC);

CREATE TABLE IF NOT EXISTS alert_silences (
    id          text PRIMARY KEY,
    matchers    jsonb NOT NULL,
    until       timestamptz NOT NULL,
    reason      text NOT NULL,
    silenced_by text NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Alert events already applied (a redelivery changes nothing).
CREATE TABLE IF NOT EXISTS alerts_applied (
    event_id   text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
