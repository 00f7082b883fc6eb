-- "This trace" is served by a projection: inside every part of `spans`, a second copy of its rows
-- ordered by trace id, which the engine picks by itself for `trace_id = ...` and `trace_id IN (...)`.
-- Measured over 10M spans (docs/benchmarks.md): trace by id and trace summaries read one small
-- granule per part instead of a granule per service, and need no time bounds first, so the
-- trace_index table, its view and the trace-id bloom filter that served them are dropped.
-- index_granularity 1024 (8192 in the table): a lookup decompresses an eighth of the rows.
ALTER TABLE spans ADD PROJECTION IF NOT EXISTS by_trace (SELECT * ORDER BY trace_id)
    WITH SETTINGS (index_granularity = 1024);

-- Spans stored before this migration get the projection in the background; until then they are
-- found by a scan, as a projection is used part by part.
ALTER TABLE spans MATERIALIZE PROJECTION by_trace;

DROP VIEW IF EXISTS trace_index_mv;

DROP TABLE IF EXISTS trace_index;

ALTER TABLE spans DROP INDEX IF EXISTS idx_trace_id;
