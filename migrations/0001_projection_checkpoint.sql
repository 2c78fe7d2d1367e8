-- Where each projection has got to in the event log. A projection writes its
-- rows and its checkpoint in the same transaction, so a crash never applies an
-- event twice and never skips one.
CREATE TABLE projection_checkpoint (
    projection  TEXT PRIMARY KEY,
    last_seq    BIGINT NOT NULL CHECK (last_seq >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
