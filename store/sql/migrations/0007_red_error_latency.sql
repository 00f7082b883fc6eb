-- What red_1m lacks for exact latency SLIs (slo/sli.py, docs/slo-sli.md). The old columns keep their
-- meaning; the view is dropped and created again with the new ones (run at start-up, before ingest).
--
-- error_latency: the ERROR requests' durations in latency's buckets (store/red.py), so that "error OR
--   slower than X" = errors + slow - slow errors is exact.
-- latency_at_bound / error_latency_at_bound: per bucket, the requests (errors) whose duration is exactly
--   the bucket's lower bound. Buckets are [lower, upper), but a latency SLI's "slower than X" is
--   duration > X: with X a bucket bound, slow = requests in buckets >= X's bucket - those exactly at X.
--   Measured durations rarely sit on a bound, so these maps are nearly always empty.
-- detailed_requests: requests rolled up by this view. Rows written before it have 0 (and a row merged
--   from both kinds less than requests): a reader takes the new columns of a minute only where
--   detailed_requests = requests, and reads raw spans for the other minutes.
ALTER TABLE red_1m
    ADD COLUMN IF NOT EXISTS error_latency SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64))) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS latency_at_bound SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64))) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS error_latency_at_bound SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64))) CODEC(ZSTD(1)),
    ADD COLUMN IF NOT EXISTS detailed_requests SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1));

DROP VIEW IF EXISTS red_1m_mv;

-- Migration 0004's view plus the new columns; the per-span bucket arithmetic is unchanged (tests check
-- it against store/red.py). on_bound: the duration is its bucket's lower bound (bucket 0's is 0, the
-- overflow bucket's 10^12 ns; otherwise origin + k * step of the bucket's slice of the decade).
CREATE MATERIALIZED VIEW IF NOT EXISTS red_1m_mv TO red_1m AS
SELECT
    minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
    deployment_environment,
    sum(n) AS requests,
    sum(n_err) AS errors,
    sum(dur_sum) AS duration_sum,
    (groupArray(bucket), groupArray(n)) AS latency,
    (groupArrayIf(bucket, n_err > 0), groupArrayIf(n_err, n_err > 0)) AS error_latency,
    (groupArrayIf(bucket, n_at > 0), groupArrayIf(n_at, n_at > 0)) AS latency_at_bound,
    (groupArrayIf(bucket, n_err_at > 0), groupArrayIf(n_err_at, n_err_at > 0)) AS error_latency_at_bound,
    sum(n) AS detailed_requests
FROM (
    SELECT
        minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
        deployment_environment, bucket,
        count() AS n,
        countIf(is_error) AS n_err,
        sum(duration) AS dur_sum,
        countIf(on_bound) AS n_at,
        countIf(on_bound AND is_error) AS n_err_at
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
                    50 + intDiv(duration - 5 * dec_base, intDiv(dec_base, 4))))) AS bucket,
            multiIf(
                duration < 1000, duration = 0,
                duration >= 1000000000000, duration = 1000000000000,
                duration < 2 * dec_base, (duration - dec_base) % intDiv(dec_base, 20) = 0,
                duration < 5 * dec_base, (duration - 2 * dec_base) % intDiv(dec_base, 10) = 0,
                (duration - 5 * dec_base) % intDiv(dec_base, 4) = 0) AS on_bound
        FROM spans
        WHERE kind IN ('SERVER', 'CONSUMER') OR parent_span_id = toFixedString('', 8)
    )
    GROUP BY minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
             deployment_environment, bucket
)
GROUP BY minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
         deployment_environment;
