-- Span storage (issue 18): fewer bytes per span. Measured by bench/disk.py on realistic traces
-- (bench/realistic.py: ~20 spans over 6 services, ~10 attributes each), merged: 113 B/span before,
-- of which 69 were the by_trace projection (migration 0005, a full second copy of every row); 37
-- after, and inserts ~1.5x as fast (docs/benchmarks.md "Disk", docs/ingest.md section 5).
--
-- Every statement returns at once (mutations_sync / alter_sync = 0; chDB's default waits): the
-- work on parts stored before runs in the background, so start-up does not wait for a whole store
-- to be rewritten. Until a part has been converted it is read as the new type, and until it has
-- the new projection it is scanned for a trace id.
--
-- 1. by_trace_offset replaces by_trace: inside every part, only the trace id and the row's position
--    in the part (_part_offset), ordered by trace id. For `trace_id = ...` and `trace_id IN (...)`
--    the engine finds the positions there and reads just the granules that hold them
--    (optimize_use_projection_filtering, on by default; from 1M rows on,
--    min_table_rows_to_use_projection_index: a smaller table is scanned as fast). Trace ids repeat
--    ~20 times in a row there: 5 B/span (20 for ids that never repeat) against 69, and an insert writes
--    two small columns instead of every column a second time. The price: a trace's spans sit in one
--    8192-row granule per service it touched, so a lookup reads a few granules of every column where
--    the copy read one of 1024 rows: at 10M spans, trace by id 26-34 ms against 14-15 ms.
ALTER TABLE spans ADD PROJECTION IF NOT EXISTS by_trace_offset (SELECT _part_offset ORDER BY trace_id);

ALTER TABLE spans MATERIALIZE PROJECTION by_trace_offset SETTINGS mutations_sync = 0, alter_sync = 0;

ALTER TABLE spans DROP PROJECTION IF EXISTS by_trace SETTINGS mutations_sync = 0, alter_sync = 0;

-- 2. Attribute values as LowCardinality: instrumentation repeats a few values per key (methods,
--    routes, status codes, hosts, versions), which a part's dictionary stores once; unique values
--    (ids in URLs) cost about what they cost as String. attributes 14.9 -> 6.9 B/span,
--    resource_attributes 5.5 -> 0.6, and less to compress on insert. Readers see the same strings.
ALTER TABLE spans MODIFY COLUMN IF EXISTS attributes Map(LowCardinality(String), LowCardinality(String)) CODEC(ZSTD(1))
    SETTINGS alter_sync = 0;

ALTER TABLE spans MODIFY COLUMN IF EXISTS resource_attributes Map(LowCardinality(String), LowCardinality(String)) CODEC(ZSTD(1))
    SETTINGS alter_sync = 0;
