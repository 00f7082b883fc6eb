-- Service map roll-up: caller -> callee calls per minute of the child span's start, written by
-- store/service_map.py (one INSERT ... SELECT per finished minute, with a deduplication token), not by
-- a materialized view: a parent and its child usually arrive in different batches, so an edge can be
-- joined only once both are stored (docs/api.md, "GET /api/v1/dependencies").
--
-- latency: the callee spans' durations in red_1m's histogram (migration 0004; the bounds are in
-- store/red.py): bucket ids and counts, summed by key (sumMap).
-- non_replicated_deduplication_window: a minute written again under the same token (a retry after a
-- crash, or two processes on one server) is dropped instead of counted twice.
CREATE TABLE IF NOT EXISTS service_edges_1m (
    minute DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    caller LowCardinality(String) CODEC(ZSTD(1)),
    callee LowCardinality(String) CODEC(ZSTD(1)),
    calls SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    duration_sum SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    latency SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64))) CODEC(ZSTD(1))
) ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, caller, callee)
TTL toDateTime(minute) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- The minutes already rolled up (also those without edges), written after their edges: a reader
-- takes a minute from service_edges_1m only if it is listed here, and joins spans for the others.
CREATE TABLE IF NOT EXISTS service_edges_progress (
    minute DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    rolled_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(minute)
ORDER BY minute
TTL toDateTime(minute) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1;
