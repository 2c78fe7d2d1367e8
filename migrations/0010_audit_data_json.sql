-- An audit row keeps its event's data as the event carried it: `json` holds
-- the text as written (key order and all) and costs Postgres only a syntax
-- check on the way in, where `jsonb` parsed, key-sorted and rebuilt every
-- event (about half of the audit table's share of a rebuild). JSON operators
-- (`->`, `->>`, `#>`) work on it as before; cast to jsonb (`data::jsonb`) for
-- containment and the other jsonb-only ones.
ALTER TABLE audit_events ALTER COLUMN data TYPE json USING data::json;
