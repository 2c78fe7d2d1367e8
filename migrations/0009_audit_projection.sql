-- The audit table becomes a projection of its own, with its own checkpoint, so
-- it and the job/step tables are written in parallel. Until now both were
-- written in the same transaction as the 'read_models' checkpoint: the audit
-- table is exactly as far along, and starts from there.
INSERT INTO projection_checkpoint (projection, last_seq, updated_at)
SELECT 'audit', last_seq, now() FROM projection_checkpoint WHERE projection = 'read_models'
ON CONFLICT (projection) DO NOTHING;
