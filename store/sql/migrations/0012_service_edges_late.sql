-- Late and back-filled spans in the service map (store/service_map.py, docs/api.md).
--
-- span_counts_1m counts the spans stored per minute of their start, by a materialized view on every
-- insert into spans. The edges of a minute m can change only through spans starting in
-- [m - 5 min, m + 2 min) (its children, and parents up to 5 minutes before or 1 minute after them):
-- the sum of those counts is the minute's "window". A roll-up reads the window, then joins, and writes
-- the edges and its progress row under version = window + 1. A stored minute is read only while its
-- window still equals the version it was written under (minus one); any span that arrives later for
-- the window changes the count, and the minute is joined from spans until it is rolled up again.
--
-- span_hash: the sum (modulo 2^64) of cityHash64(trace_id, span_id) of the spans counted. An insert's
-- rows become visible in spans and in this table at different moments, in either order, so before it
-- joins, a roll-up checks that the spans it can see in the window are the ones counted (same count and
-- hash sum); otherwise it leaves the minute for a later pass.
-- non_replicated_deduplication_window: a replayed batch (docs/ingest.md) is not counted twice
-- (deduplicate_blocks_in_dependent_materialized_views).
CREATE TABLE IF NOT EXISTS span_counts_1m (
    minute DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    spans SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    span_hash SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1))
) ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY minute
TTL toDateTime(minute) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS span_counts_1m_mv TO span_counts_1m AS
SELECT toStartOfMinute(timestamp) AS minute, count() AS spans, sum(cityHash64(trace_id, span_id)) AS span_hash
FROM spans
GROUP BY minute;

-- version: 1 + the window counted before the roll-up joined. Rows written before this migration
-- have version 0, which is never read (their minutes are rolled up again or joined). The column is
-- added without a default expression so that it may join the sorting key (versions never merge).
ALTER TABLE service_edges_1m
    ADD COLUMN IF NOT EXISTS version UInt64 CODEC(T64, ZSTD(1)),
    MODIFY ORDER BY (minute, caller, callee, tenant, version);

ALTER TABLE service_edges_progress
    ADD COLUMN IF NOT EXISTS version UInt64 CODEC(T64, ZSTD(1)),
    MODIFY ORDER BY (minute, version);
