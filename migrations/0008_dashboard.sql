-- The dashboard follows changed jobs by the log sequence of their last event
-- (monotonic as the projector applies the log in order): rows past a cursor.
CREATE INDEX IF NOT EXISTS jobs_last_seq ON jobs (last_seq);
