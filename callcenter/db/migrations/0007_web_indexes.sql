-- The web's ticket list is newest first (ORDER BY created_at DESC LIMIT n). Without
-- an index PostgreSQL read and sorted every ticket for each page: about 55 ms with
-- 100,000 tickets, and the list fell over at 200 requests/s (bench/web_load.py).
-- With it the newest rows are read in order: well under a millisecond.
CREATE INDEX tickets_created_idx ON tickets (created_at DESC);
