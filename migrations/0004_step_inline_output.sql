-- Output of quick steps travels in their result events (not the object store);
-- the read model keeps it so it is retrievable per step like stored output.
ALTER TABLE steps ADD COLUMN stdout TEXT, ADD COLUMN stderr TEXT;
