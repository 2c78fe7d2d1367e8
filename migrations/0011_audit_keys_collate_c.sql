-- The audit table's indexed text columns hold identifiers (a job's id, an
-- event type), looked up by equality and never sorted for a reader: compared
-- byte by byte (`COLLATE "C"`) instead of by the database's locale. Under a
-- locale (even C.UTF-8, which Postgres 15 compares through strcoll and sorts
-- without abbreviated keys) building `audit_events_subject_seq` was the
-- longest step of a rebuild after the projection itself, and every live
-- insert paid the same comparisons in its B-tree descents. Queries need no
-- change: a column's collation wins over a parameter's. Postgres rebuilds the
-- two indexes (the rows are not rewritten) under an exclusive lock on the
-- table: on a large audit table, the first start after upgrading waits for it.
ALTER TABLE audit_events
    ALTER COLUMN subject TYPE text COLLATE "C",
    ALTER COLUMN type TYPE text COLLATE "C";
