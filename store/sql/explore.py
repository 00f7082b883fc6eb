"""Read queries of the explore API (``store/explore.py``): service map, trace and log search, correlations.

Parameters use the engine's ``{name:Type}`` placeholders; request values are never formatted into SQL.
A few statements are assembled from the fixed fragments below (``LOG_*_FILTER``, ``TOKEN_FILTER``) so
that an index sees a plain ``column = constant`` / ``hasToken(body, constant)`` condition; only our own
placeholder names (``{token_3:String}``) are formatted in, never request data.
Times are unix nanoseconds (Int64).
"""

ZERO_SPAN = "toFixedString('', 8)"
ZERO_TRACE = "toFixedString('', 16)"

# -- service map -------------------------------------------------------------------------------
# A call is a child span whose parent span is in another service. A materialized view cannot join a
# parent and a child that arrive in different batches, so edges are computed when asked for: a
# self-join bounded by time on both sides. The child side is [start, end] and non-root spans only; the
# parent side is [start - {slack}, end], because a parent starts before its child (a parent more than
# the slack earlier is not seen). The join is hash-join first and falls back to a merge join when it
# passes max_bytes_in_join ('auto'), so a wide range costs time rather than unbounded memory.
# Latency is that of the child (callee) spans, as a caller-side client span may be missing.
_DEPENDENCY_JOIN = f"""
FROM (
    SELECT trace_id, span_id, service_name
    FROM spans
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{parent_start:Int64}})
         AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
) AS parent
INNER JOIN (
    SELECT trace_id, parent_span_id, service_name, timestamp, duration, status_code
    FROM spans
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}})
         AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
         AND parent_span_id != {ZERO_SPAN}
) AS child ON child.trace_id = parent.trace_id AND child.parent_span_id = parent.span_id
WHERE parent.service_name != child.service_name
"""

_JOIN_SETTINGS = "SETTINGS join_algorithm = 'auto', max_bytes_in_join = 268435456"

_EDGE_STATS = """count() AS calls,
    countIf(child.status_code = 'ERROR') AS errors,
    toUInt64(quantileTDigest(0.5)(child.duration)) AS p50_ns,
    toUInt64(quantileTDigest(0.95)(child.duration)) AS p95_ns,
    toUInt64(avg(child.duration)) AS avg_ns"""

DEPENDENCY_EDGES = f"""
SELECT parent.service_name AS caller, child.service_name AS callee,
    {_EDGE_STATS}
{_DEPENDENCY_JOIN}
GROUP BY caller, callee
ORDER BY caller, callee
LIMIT {{limit:UInt32}}
{_JOIN_SETTINGS}
"""

# The same edges per {step_s}-second bucket of the child's start time (for a per-minute series).
DEPENDENCY_SERIES = f"""
SELECT parent.service_name AS caller, child.service_name AS callee,
    toUnixTimestamp64Nano(
        toDateTime64(toStartOfInterval(child.timestamp, toIntervalSecond({{step_s:UInt32}})), 9, 'UTC')
    ) AS bucket_ns,
    {_EDGE_STATS}
{_DEPENDENCY_JOIN}
GROUP BY caller, callee, bucket_ns
ORDER BY caller, callee, bucket_ns
{_JOIN_SETTINGS}
"""

# -- trace search ------------------------------------------------------------------------------
# Trace ids with ONE span meeting every criterion (Jaeger's semantics), newest matching span first.
# {eq_keys}/{eq_values}: attribute equality, on the span's attributes or else its resource's.
# {num_keys}/{num_ops}/{num_values}: numeric comparisons ('>', '>=', '<', '<=') of the attribute read
# as a number; a missing or non-numeric value is NaN, which compares false.
# {status}: a stored status code ('ERROR', 'OK', 'UNSET') or '' for any.
SEARCH_TRACE_IDS = """
SELECT lower(hex(trace_id)) AS trace_hex, toUnixTimestamp64Nano(max(timestamp)) AS latest
FROM spans
PREWHERE timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp <= fromUnixTimestamp64Nano({end:Int64})
  AND ({service:String} = '' OR service_name = {service:String})
  AND ({operation:String} = '' OR name = {operation:String})
  AND duration >= {min_duration:UInt64} AND duration <= {max_duration:UInt64}
  AND ({status:String} = '' OR status_code = {status:String})
WHERE arrayAll(
      (k, v) -> (mapContains(attributes, k) AND attributes[k] = v)
        OR (mapContains(resource_attributes, k) AND resource_attributes[k] = v),
      {eq_keys:Array(String)}, {eq_values:Array(String)})
  AND arrayAll(
      (op, v, x) -> multiIf(op = '>', x > v, op = '>=', x >= v, op = '<', x < v, op = '<=', x <= v, false),
      {num_ops:Array(String)}, {num_values:Array(Float64)},
      arrayMap(k -> ifNull(toFloat64OrNull(
          if(mapContains(attributes, k), attributes[k], resource_attributes[k])), nan),
        {num_keys:Array(String)}))
GROUP BY trace_id
ORDER BY latest DESC, trace_hex
LIMIT {limit:UInt32}
"""

# One summary per trace in {trace_ids}, over [start, end] (store.sql.queries.TRACES_BOUNDS). The root
# is the span without a parent; if it is missing (not yet arrived, or dropped), the earliest span.
TRACE_SUMMARIES = f"""
SELECT
    lower(hex(trace_id)) AS trace_hex,
    toString(min(toUnixTimestamp64Nano(timestamp))) AS start_ns,
    max(toUnixTimestamp64Nano(timestamp) + toInt64(duration)) - min(toUnixTimestamp64Nano(timestamp)) AS duration_ns,
    count() AS span_count,
    countIf(status_code = 'ERROR') AS error_count,
    arraySort(groupUniqArray(service_name)) AS services,
    countIf(parent_span_id = {ZERO_SPAN}) > 0 AS has_root,
    if(has_root, argMinIf(service_name, timestamp, parent_span_id = {ZERO_SPAN}),
       argMin(service_name, timestamp)) AS root_service,
    if(has_root, argMinIf(name, timestamp, parent_span_id = {ZERO_SPAN}), argMin(name, timestamp)) AS root_operation
FROM spans
WHERE has(arrayMap(x -> toFixedString(unhex(x), 16), {{trace_ids:Array(String)}}), trace_id)
  AND timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
GROUP BY trace_id
"""

# -- logs --------------------------------------------------------------------------------------

LOG_COLUMNS = f"""
    toString(toUnixTimestamp64Nano(timestamp)) AS time_unix_nano,
    toString(toUnixTimestamp64Nano(observed_timestamp)) AS observed_time_unix_nano,
    if(trace_id = {ZERO_TRACE}, '', lower(hex(trace_id))) AS trace_hex,
    if(span_id = {ZERO_SPAN}, '', lower(hex(span_id))) AS span_hex,
    flags, severity_text, severity_number, service_name,
    body, CAST(body_type, 'String') AS body_kind, event_name,
    resource_attributes, CAST(resource_attribute_types, 'Map(String, String)') AS resource_kinds,
    scope_name, scope_version, attributes, CAST(attribute_types, 'Map(String, String)') AS kinds,
    correlation_id"""

# Logs of one trace: the trace-id bloom filter plus the trace's time bounds, widened by {margin}.
TRACE_LOGS = f"""
SELECT {LOG_COLUMNS}
FROM logs
WHERE trace_id = unhex({{trace_id:String}})
  AND timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
ORDER BY timestamp, span_hex
LIMIT {{limit:UInt32}}
"""

# Log search: LOG_SEARCH_HEAD + ' AND '-joined filters from below + LOG_SEARCH_TAIL.
LOG_SEARCH_HEAD = f"""
SELECT {LOG_COLUMNS}
FROM logs
PREWHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
  AND ({{service:String}} = '' OR service_name = {{service:String}})
  AND severity_number >= {{severity_min:UInt8}}
WHERE arrayAll(
      (k, v) -> (mapContains(attributes, k) AND attributes[k] = v)
        OR (mapContains(resource_attributes, k) AND resource_attributes[k] = v),
      {{eq_keys:Array(String)}}, {{eq_values:Array(String)}})
  AND arrayAll(
      (op, v, x) -> multiIf(op = '>', x > v, op = '>=', x >= v, op = '<', x < v, op = '<=', x <= v, false),
      {{num_ops:Array(String)}}, {{num_values:Array(Float64)}},
      arrayMap(k -> ifNull(toFloat64OrNull(
          if(mapContains(attributes, k), attributes[k], resource_attributes[k])), nan),
        {{num_keys:Array(String)}}))
"""
LOG_TRACE_FILTER = "trace_id = unhex({trace_id:String})"
LOG_CORRELATION_FILTER = "correlation_id = {correlation_id:String}"
# One per token of the free-text query, {token_N:String}: hasToken is what the tokenbf_v1 index on
# body answers (case-sensitive, as the index is built on the body as stored).
TOKEN_FILTER = "hasToken(body, {{token_{n}:String}})"
LOG_SEARCH_TAIL = """
ORDER BY timestamp DESC, span_hex
LIMIT {limit:UInt32}
"""

# -- correlations ------------------------------------------------------------------------------
# The correlation-id bloom filters of both tables prune granules.

CORRELATION_LOGS = f"""
SELECT {LOG_COLUMNS}
FROM logs
WHERE correlation_id = {{correlation_id:String}}
  AND timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
ORDER BY timestamp, span_hex
LIMIT {{limit:UInt32}}
"""

CORRELATION_SPANS = f"""
SELECT
    lower(hex(trace_id)) AS trace_hex,
    lower(hex(span_id)) AS span_hex,
    if(parent_span_id = {ZERO_SPAN}, '', lower(hex(parent_span_id))) AS parent_hex,
    service_name, name, kind,
    toString(toUnixTimestamp64Nano(timestamp)) AS start_time_unix_nano,
    duration, status_code, status_message
FROM spans
WHERE correlation_id = {{correlation_id:String}}
  AND timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
ORDER BY timestamp, span_hex
LIMIT {{limit:UInt32}}
"""
