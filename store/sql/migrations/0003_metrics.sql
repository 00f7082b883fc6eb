-- One table per OTLP point type; every row is one data point with its metric's identity.
CREATE TABLE IF NOT EXISTS metrics_gauge (
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name LowCardinality(String) CODEC(ZSTD(1)),
    scope_version LowCardinality(String) CODEC(ZSTD(1)),
    metric_name LowCardinality(String) CODEC(ZSTD(1)),
    metric_description String CODEC(ZSTD(1)),
    metric_unit LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    start_timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    flags UInt32 CODEC(ZSTD(1)),
    value Float64 CODEC(ZSTD(1)),
    exemplars Nested (
        filtered_attributes Map(LowCardinality(String), String),
        timestamp DateTime64(9, 'UTC'),
        value Float64,
        span_id FixedString(8),
        trace_id FixedString(16)
    ) CODEC(ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, metric_name, timestamp)
TTL toDateTime(timestamp) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;

CREATE TABLE IF NOT EXISTS metrics_sum (
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name LowCardinality(String) CODEC(ZSTD(1)),
    scope_version LowCardinality(String) CODEC(ZSTD(1)),
    metric_name LowCardinality(String) CODEC(ZSTD(1)),
    metric_description String CODEC(ZSTD(1)),
    metric_unit LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    start_timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    flags UInt32 CODEC(ZSTD(1)),
    value Float64 CODEC(ZSTD(1)),
    aggregation_temporality Int8 CODEC(ZSTD(1)),
    is_monotonic Bool CODEC(ZSTD(1)),
    exemplars Nested (
        filtered_attributes Map(LowCardinality(String), String),
        timestamp DateTime64(9, 'UTC'),
        value Float64,
        span_id FixedString(8),
        trace_id FixedString(16)
    ) CODEC(ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, metric_name, timestamp)
TTL toDateTime(timestamp) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;

CREATE TABLE IF NOT EXISTS metrics_histogram (
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name LowCardinality(String) CODEC(ZSTD(1)),
    scope_version LowCardinality(String) CODEC(ZSTD(1)),
    metric_name LowCardinality(String) CODEC(ZSTD(1)),
    metric_description String CODEC(ZSTD(1)),
    metric_unit LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    start_timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    flags UInt32 CODEC(ZSTD(1)),
    count UInt64 CODEC(Delta, ZSTD(1)),
    sum Float64 CODEC(ZSTD(1)),
    bucket_counts Array(UInt64) CODEC(ZSTD(1)),
    explicit_bounds Array(Float64) CODEC(ZSTD(1)),
    min Float64 CODEC(ZSTD(1)),
    max Float64 CODEC(ZSTD(1)),
    aggregation_temporality Int8 CODEC(ZSTD(1)),
    exemplars Nested (
        filtered_attributes Map(LowCardinality(String), String),
        timestamp DateTime64(9, 'UTC'),
        value Float64,
        span_id FixedString(8),
        trace_id FixedString(16)
    ) CODEC(ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, metric_name, timestamp)
TTL toDateTime(timestamp) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;

CREATE TABLE IF NOT EXISTS metrics_exponential_histogram (
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name LowCardinality(String) CODEC(ZSTD(1)),
    scope_version LowCardinality(String) CODEC(ZSTD(1)),
    metric_name LowCardinality(String) CODEC(ZSTD(1)),
    metric_description String CODEC(ZSTD(1)),
    metric_unit LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    start_timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    flags UInt32 CODEC(ZSTD(1)),
    count UInt64 CODEC(Delta, ZSTD(1)),
    sum Float64 CODEC(ZSTD(1)),
    scale Int32 CODEC(ZSTD(1)),
    zero_count UInt64 CODEC(ZSTD(1)),
    zero_threshold Float64 CODEC(ZSTD(1)),
    positive_offset Int32 CODEC(ZSTD(1)),
    positive_bucket_counts Array(UInt64) CODEC(ZSTD(1)),
    negative_offset Int32 CODEC(ZSTD(1)),
    negative_bucket_counts Array(UInt64) CODEC(ZSTD(1)),
    min Float64 CODEC(ZSTD(1)),
    max Float64 CODEC(ZSTD(1)),
    aggregation_temporality Int8 CODEC(ZSTD(1)),
    exemplars Nested (
        filtered_attributes Map(LowCardinality(String), String),
        timestamp DateTime64(9, 'UTC'),
        value Float64,
        span_id FixedString(8),
        trace_id FixedString(16)
    ) CODEC(ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, metric_name, timestamp)
TTL toDateTime(timestamp) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;

CREATE TABLE IF NOT EXISTS metrics_summary (
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name LowCardinality(String) CODEC(ZSTD(1)),
    scope_version LowCardinality(String) CODEC(ZSTD(1)),
    metric_name LowCardinality(String) CODEC(ZSTD(1)),
    metric_description String CODEC(ZSTD(1)),
    metric_unit LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    start_timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    timestamp DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    flags UInt32 CODEC(ZSTD(1)),
    count UInt64 CODEC(Delta, ZSTD(1)),
    sum Float64 CODEC(ZSTD(1)),
    quantiles Array(Float64) CODEC(ZSTD(1)),
    quantile_values Array(Float64) CODEC(ZSTD(1))
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, metric_name, timestamp)
TTL toDateTime(timestamp) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 268435456;
