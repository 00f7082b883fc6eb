-- Spans, one row each. Ordered for "this service over this time range"; a trace-id bloom filter and
-- the trace_index table below serve "this trace".
-- min_bytes_for_wide_part: inserted batches (tens of MB) stay compact parts, one file instead of one
-- per column, until merges make them large; measured 5-8% more ingest (docs/ingest.md).
CREATE TABLE IF NOT EXISTS spans (
    timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    trace_id FixedString(16) CODEC(ZSTD(1)),
    span_id FixedString(8) CODEC(ZSTD(1)),
    parent_span_id FixedString(8) CODEC(ZSTD(1)),
    trace_state String CODEC(ZSTD(1)),
    flags UInt32 CODEC(ZSTD(1)),
    name LowCardinality(String) CODEC(ZSTD(1)),
    kind LowCardinality(String) CODEC(ZSTD(1)),
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    resource_attribute_types Map(LowCardinality(String), Enum8('empty' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, 'bytes' = 7)) CODEC(ZSTD(1)),
    scope_name LowCardinality(String) CODEC(ZSTD(1)),
    scope_version LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    attribute_types Map(LowCardinality(String), Enum8('empty' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, 'bytes' = 7)) CODEC(ZSTD(1)),
    duration UInt64 CODEC(T64, ZSTD(1)),
    status_code LowCardinality(String) CODEC(ZSTD(1)),
    status_message String CODEC(ZSTD(1)),
    events Nested (
        timestamp DateTime64(9, 'UTC'),
        name LowCardinality(String),
        attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    links Nested (
        trace_id FixedString(16),
        span_id FixedString(8),
        trace_state String,
        attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    dropped_attributes_count UInt32 CODEC(ZSTD(1)),
    dropped_events_count UInt32 CODEC(ZSTD(1)),
    dropped_links_count UInt32 CODEC(ZSTD(1)),
    correlation_id String CODEC(ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration duration TYPE minmax GRANULARITY 1,
    INDEX idx_correlation_id correlation_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, timestamp)
TTL toDateTime(timestamp) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;

-- trace_id -> time bounds, so one trace is fetched from the few parts and days that hold it.
CREATE TABLE IF NOT EXISTS trace_index (
    trace_id FixedString(16) CODEC(ZSTD(1)),
    start DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    end DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(start)
ORDER BY (trace_id, start)
TTL toDateTime(start) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_index_mv TO trace_index AS
SELECT trace_id, min(timestamp) AS start, max(timestamp + toIntervalNanosecond(duration)) AS end
FROM spans
GROUP BY trace_id;
