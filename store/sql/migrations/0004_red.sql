-- RED roll-up: requests, errors and a latency histogram per minute, service, operation, span kind and a
-- few dimensions, written by a materialized view on every insert into spans (docs/red.md).
--
-- Requests are SERVER and CONSUMER spans and root spans (no parent) of any kind. An error is a
-- request with status ERROR, or a SERVER request whose HTTP status (http.response.status_code, else
-- the old http.status_code) is 500 or more.
--
-- latency: sparse histogram of durations as (bucket indexes, counts), summed by key (sumMap). Bucket
-- 0 is [0, 1 us), 631 is [1000 s, inf); bucket 1 + 70*(e-3) + r covers a slice of [10^e, 10^(e+1)) ns:
-- 20 slices of 0.05*10^e up to 2*10^e, 30 of 0.1*10^e up to 5*10^e, 20 of 0.25*10^e up to 10^(e+1).
-- Every bucket is at most 5% of its lower bound wide, and 1, 2, 2.5, 3, 5, 7.5 (...) ms are bounds.
-- store/red.py holds the same bounds; change both together (tests/test_red.py checks them).
CREATE TABLE IF NOT EXISTS red_1m (
    minute DateTime('UTC') CODEC(Delta(4), ZSTD(1)),
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    operation LowCardinality(String) CODEC(ZSTD(1)),
    kind LowCardinality(String) CODEC(ZSTD(1)),
    http_route LowCardinality(String) CODEC(ZSTD(1)),
    http_status_class LowCardinality(String) CODEC(ZSTD(1)),
    rpc_method LowCardinality(String) CODEC(ZSTD(1)),
    service_version LowCardinality(String) CODEC(ZSTD(1)),
    deployment_environment LowCardinality(String) CODEC(ZSTD(1)),
    requests SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    errors SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    duration_sum SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    latency SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64))) CODEC(ZSTD(1))
) ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (service_name, minute, operation, kind, http_route, http_status_class, rpc_method, service_version,
          deployment_environment)
TTL toDateTime(minute) + toIntervalDay(7)
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- Three steps: per span (bucket, error flag), per (dimensions, bucket) counts, per dimensions sums.
-- Grouping by bucket first keeps sumMap's work proportional to distinct buckets, not spans.
-- Aliases never equal a spans column name (ClickHouse would substitute them in WHERE as well).
CREATE MATERIALIZED VIEW IF NOT EXISTS red_1m_mv TO red_1m AS
SELECT
    minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
    deployment_environment,
    sum(n) AS requests,
    sum(n_err) AS errors,
    sum(dur_sum) AS duration_sum,
    (groupArray(bucket), groupArray(n)) AS latency
FROM (
    SELECT
        minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
        deployment_environment, bucket,
        count() AS n,
        countIf(is_error) AS n_err,
        sum(duration) AS dur_sum
    FROM (
        SELECT
            toStartOfMinute(timestamp) AS minute,
            service_name,
            name AS operation,
            kind,
            attributes['http.route'] AS http_route,
            toUInt16OrZero(if(mapContains(attributes, 'http.response.status_code'),
                              attributes['http.response.status_code'],
                              attributes['http.status_code'])) AS http_code,
            if(http_code BETWEEN 100 AND 599, concat(toString(intDiv(http_code, 100)), 'xx'), '') AS http_status_class,
            attributes['rpc.method'] AS rpc_method,
            resource_attributes['service.version'] AS service_version,
            if(mapContains(resource_attributes, 'deployment.environment.name'),
               resource_attributes['deployment.environment.name'],
               resource_attributes['deployment.environment']) AS deployment_environment,
            status_code = 'ERROR' OR (kind = 'SERVER' AND http_code >= 500) AS is_error,
            duration,
            least(greatest(toInt32(floor(log10(toFloat64(greatest(duration, 1))))), 3), 11) AS dec_guess,
            -- log10 is a float: correct it by one either way with exact integer powers of ten.
            dec_guess - toInt32(intExp10(dec_guess) > duration) + toInt32(intExp10(dec_guess + 1) <= duration) AS dec,
            intExp10(dec) AS dec_base,
            toUInt16(multiIf(
                duration < 1000, 0,
                duration >= 1000000000000, 631,
                1 + 70 * (dec - 3) + multiIf(
                    duration < 2 * dec_base, intDiv(duration - dec_base, intDiv(dec_base, 20)),
                    duration < 5 * dec_base, 20 + intDiv(duration - 2 * dec_base, intDiv(dec_base, 10)),
                    50 + intDiv(duration - 5 * dec_base, intDiv(dec_base, 4))))) AS bucket
        FROM spans
        WHERE kind IN ('SERVER', 'CONSUMER') OR parent_span_id = toFixedString('', 8)
    )
    GROUP BY minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
             deployment_environment, bucket
)
GROUP BY minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
         deployment_environment;
