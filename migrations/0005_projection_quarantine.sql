-- Events the projector could not store in the read models, each with the
-- reason, so one poisoned event never stops the ones after it. Written only by
-- the projector in the same transaction as the checkpoint that moves past the
-- event; like every read model, emptied and refilled by a rebuild.
CREATE TABLE projection_quarantine (
    seq            BIGINT PRIMARY KEY,
    nats_subject   TEXT NOT NULL,
    reason         TEXT NOT NULL,
    -- The event as it was read (raw bytes when it did not even decode).
    payload        BYTEA NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
