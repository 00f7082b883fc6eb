-- SLO evaluation history: one row per SLO instance (SLO and group value) and evaluation time, written
-- by the evaluator every cycle (slo/history.py). It is what /api/v1/slos/{name}/history and the SLO
-- dashboards chart. ReplacingMergeTree: evaluating a minute again (a retry, a second evaluator on one
-- server) replaces its row instead of adding one. Not subject to retention_days: a row is ~200 bytes
-- before compression, and budget history is worth keeping longer than raw spans.
CREATE TABLE IF NOT EXISTS slo_evaluations (
    evaluated_at DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    slo LowCardinality(String) CODEC(ZSTD(1)),
    service LowCardinality(String) CODEC(ZSTD(1)),
    -- The group_by values as JSON (sorted keys), '' for an SLO without group_by: part of the key.
    group_key String CODEC(ZSTD(1)),
    group_labels Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    objective Float64 CODEC(ZSTD(1)),
    window LowCardinality(String) CODEC(ZSTD(1)),
    budgeting LowCardinality(String) CODEC(ZSTD(1)),
    window_start DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    total Float64 CODEC(ZSTD(1)),
    bad Float64 CODEC(ZSTD(1)),
    sli Nullable(Float64) CODEC(ZSTD(1)),
    budget Nullable(Float64) CODEC(ZSTD(1)),
    consumed Nullable(Float64) CODEC(ZSTD(1)),
    remaining Nullable(Float64) CODEC(ZSTD(1)),
    time_to_exhaustion_s Nullable(Float64) CODEC(ZSTD(1)),
    -- Windows with events only ('5m', ..., '3d' and the SLO window's label).
    burn_rates Map(LowCardinality(String), Float64) CODEC(ZSTD(1)),
    -- Every alert rule ('page 1h/5m') and whether it fired.
    alert_rules Map(LowCardinality(String), Bool) CODEC(ZSTD(1)),
    error String CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (slo, group_key, evaluated_at)
SETTINGS non_replicated_deduplication_window = 1000;
