-- Tenants (store/tenancy.py): every data row carries the tenant of the ingest token that sent it ('' for
-- the default tenant), set by the collector and never read from the payload. Reads of a tenant-bound
-- user filter each of these tables by it (additional_table_filters).
--
-- The roll-ups keep tenants apart: tenant joins the sorting keys of red_1m and service_edges_1m (a
-- column added in the same ALTER, without a default expression, may be appended to the key), so rows
-- of two tenants never merge, and red_1m_mv is created again with tenant as its first dimension. Rows
-- written before this migration belong to the default tenant.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE logs ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE metrics_gauge ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE metrics_sum ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE metrics_histogram ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE metrics_exponential_histogram ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE metrics_summary ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE red_1m
    ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) CODEC(ZSTD(1)),
    MODIFY ORDER BY (service_name, minute, operation, kind, http_route, http_status_class, rpc_method,
                     service_version, deployment_environment, tenant);

ALTER TABLE service_edges_1m
    ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) CODEC(ZSTD(1)),
    MODIFY ORDER BY (minute, caller, callee, tenant);

DROP VIEW IF EXISTS red_1m_mv;

-- Migration 0007's view with tenant as the first dimension; the per-span bucket arithmetic is unchanged
-- (tests check it against store/red.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS red_1m_mv TO red_1m AS
SELECT
    tenant, minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
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
        tenant, minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
        deployment_environment, bucket,
        count() AS n,
        countIf(is_error) AS n_err,
        sum(duration) AS dur_sum,
        countIf(on_bound) AS n_at,
        countIf(on_bound AND is_error) AS n_err_at
    FROM (
        SELECT
            tenant,
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
    GROUP BY tenant, minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
             deployment_environment, bucket
)
GROUP BY tenant, minute, service_name, operation, kind, http_route, http_status_class, rpc_method, service_version,
         deployment_environment;
