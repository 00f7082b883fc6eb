"""Read queries of the explore API (``store/explore.py``): service map, trace and log search, correlations.

Parameters use the engine's ``{name:Type}`` placeholders; request values are never formatted into SQL.
A few statements are assembled from the fixed fragments below (``LOG_*_FILTER``, ``TOKEN_FILTER``) so
that an index sees a plain ``column = constant`` / ``hasToken(body, constant)`` condition; only our own
placeholder names (``{token_3:String}``) are formatted in, never request data.
Times are unix nanoseconds (Int64).
"""

from store.sql.queries import TRACE_IN

ZERO_SPAN = "toFixedString('', 8)"
ZERO_TRACE = "toFixedString('', 16)"

# -- service map -------------------------------------------------------------------------------
# A call is a child span whose parent span is in another service. A materialized view cannot join a
# parent and a child that arrive in different batches, so edges come from a self-join bounded by time
# on both sides, run when asked for (recent minutes, minutes with late spans) and per finished minute
# by the roll-up, again whenever spans arrive for it (store/service_map.py, store/sql/service_map.py).
# The child side is [start, end] and non-root spans only. A parent counts if it started at most
# {slack} ns before its child or {skew} ns after it (clock skew between hosts): a rule on the pair
# alone, never on the range asked for, so that every range, stored minute and joined stretch agree
# and a wider range never has fewer calls. The parent side reads [parent_start, parent_end] =
# [start - slack, end + skew], the most that rule can need (store/service_map.py join_params). The
# join is hash-join first and falls back to a merge join when it passes max_bytes_in_join ('auto'),
# so a wide range costs time rather than unbounded memory.
# Latency is that of the child (callee) spans, as a caller-side client span may be missing, counted in
# red_1m's histogram buckets (LATENCY_BUCKET) so that stored and joined minutes merge exactly.

# The bucket of a duration: the same arithmetic as red_1m_mv (migration 0004); store/red.py holds the
# bounds and tests/test_service_map.py checks that both agree. Aliases are not spans column names.
LATENCY_BUCKET = """least(greatest(toInt32(floor(log10(toFloat64(greatest(duration, 1))))), 3), 11) AS dec_guess,
        -- log10 is a float: correct it by one either way with exact integer powers of ten.
        dec_guess - toInt32(intExp10(dec_guess) > duration) + toInt32(intExp10(dec_guess + 1) <= duration) AS dec,
        intExp10(dec) AS dec_base,
        toUInt16(multiIf(
            duration < 1000, 0,
            duration >= 1000000000000, 631,
            1 + 70 * (dec - 3) + multiIf(
                duration < 2 * dec_base, intDiv(duration - dec_base, intDiv(dec_base, 20)),
                duration < 5 * dec_base, 20 + intDiv(duration - 2 * dec_base, intDiv(dec_base, 10)),
                50 + intDiv(duration - 5 * dec_base, intDiv(dec_base, 4))))) AS lat_bucket"""

# Per caller, callee, {bucket} (our own fragment: nothing, or a time bucket with its comma) and
# latency bucket: calls, errors, duration sum. Grouping by latency bucket first keeps sumMap's work
# proportional to distinct buckets, not spans.
_DEPENDENCY_BUCKETS = f"""
SELECT parent.service_name AS caller, child.service_name AS callee, {{bucket}} lat_bucket,
    count() AS n, countIf(child.status_code = 'ERROR') AS n_err, sum(child.duration) AS dur
FROM (
    SELECT trace_id, span_id, service_name, tenant, timestamp
    FROM spans
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{{{parent_start:Int64}}}})
         AND timestamp <= fromUnixTimestamp64Nano({{{{parent_end:Int64}}}})
) AS parent
INNER JOIN (
    SELECT trace_id, parent_span_id, service_name, tenant, timestamp, duration, status_code,
        {LATENCY_BUCKET}
    FROM spans
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{{{start:Int64}}}})
         AND timestamp <= fromUnixTimestamp64Nano({{{{end:Int64}}}})
         AND parent_span_id != {ZERO_SPAN}
) AS child ON child.trace_id = parent.trace_id AND child.parent_span_id = parent.span_id
    AND child.tenant = parent.tenant
WHERE parent.service_name != child.service_name
  AND toUnixTimestamp64Nano(parent.timestamp) - toUnixTimestamp64Nano(child.timestamp)
      BETWEEN -{{{{slack:Int64}}}} AND {{{{skew:Int64}}}}
GROUP BY caller, callee, {{bucket_key}} lat_bucket
"""
#: Edge sums per latency bucket over the whole range.
DEPENDENCY_BUCKETS = _DEPENDENCY_BUCKETS.format(bucket="", bucket_key="")
#: The same per tenant (a call never crosses tenants): the roll-up's source, store/sql/service_map.py.
TENANT_DEPENDENCY_BUCKETS = _DEPENDENCY_BUCKETS.format(
    bucket="child.tenant AS edge_tenant,", bucket_key="edge_tenant,"
)
# Per {step_s}-second bucket of the child's start: bucket_s is unix seconds, a multiple of the step
# since the epoch, as store/sql/service_map.py buckets stored minutes.
_STEP_BUCKETS = _DEPENDENCY_BUCKETS.format(
    bucket="intDiv(toUnixTimestamp(child.timestamp), {step_s:UInt32}) * {step_s:UInt32} AS bucket_s,",
    bucket_key="bucket_s,",
)

#: Settings of every edge join (the roll-up adds its deduplication token to them).
JOIN_SETTINGS: dict[str, str | int] = {"join_algorithm": "auto", "max_bytes_in_join": 268435456}
_JOIN_SETTINGS = "SETTINGS " + ", ".join(f"{k} = {v!r}" for k, v in JOIN_SETTINGS.items())

#: What every edge read returns (also the stored reads of store/sql/service_map.py): sums, and the
#: latency histogram as bucket ids and counts.
EDGE_SUMS = """sum(n) AS n_calls, sum(n_err) AS n_errors, sum(dur) AS dur_sum,
    tupleElement(sumMap([lat_bucket], [n]), 1) AS bucket_ids,
    tupleElement(sumMap([lat_bucket], [n]), 2) AS bucket_counts"""

DEPENDENCY_EDGES = f"""
SELECT caller, callee, {EDGE_SUMS}
FROM ({DEPENDENCY_BUCKETS})
GROUP BY caller, callee
ORDER BY caller, callee
LIMIT {{limit:UInt32}}
{_JOIN_SETTINGS}
"""

DEPENDENCY_SERIES = f"""
SELECT caller, callee, bucket_s, {EDGE_SUMS}
FROM ({_STEP_BUCKETS})
GROUP BY caller, callee, bucket_s
ORDER BY caller, callee, bucket_s
{_JOIN_SETTINGS}
"""

# -- trace and log search ----------------------------------------------------------------------
# Attribute filters of both searches. The item's own attribute decides when it has the key; only
# then its resource's: a span attribute deployment.environment=canary hides the resource's =prod.
# {eq_keys}/{eq_values}: text equality. {num_keys}/{num_ops}/{num_values}: numeric comparisons
# ('>', '>=', '<', '<=') of the value read as a number; a missing or non-numeric value is NaN, which
# compares false.
ATTR_FILTERS = """arrayAll(
      (k, v) -> multiIf(mapContains(attributes, k), attributes[k] = v,
                        mapContains(resource_attributes, k), resource_attributes[k] = v, false),
      {eq_keys:Array(String)}, {eq_values:Array(String)})
  AND arrayAll(
      (op, v, x) -> multiIf(op = '>', x > v, op = '>=', x >= v, op = '<', x < v, op = '<=', x <= v, false),
      {num_ops:Array(String)}, {num_values:Array(Float64)},
      arrayMap(k -> ifNull(toFloat64OrNull(
          if(mapContains(attributes, k), attributes[k], resource_attributes[k])), nan),
        {num_keys:Array(String)}))"""

# Spans meeting every criterion of a trace search; a trace matches if ONE of its spans does (Jaeger's
# semantics). {status}: a stored status code ('ERROR', 'OK', 'UNSET') or '' for any.
_MATCHING_SPANS = f"""
    FROM spans
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}})
      AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
      AND ({{service:String}} = '' OR service_name = {{service:String}})
      AND ({{operation:String}} = '' OR name = {{operation:String}})
      AND duration >= {{min_duration:UInt64}} AND duration <= {{max_duration:UInt64}}
      AND ({{status:String}} = '' OR status_code = {{status:String}})
    WHERE {ATTR_FILTERS}"""

# One page of matching traces in one of four orders, ties by trace id: a total order, so that pages
# never overlap and never skip. A trace's start is its earliest span's start, its duration its latest
# span's end minus that, as TRACE_SUMMARIES computes them over the whole trace, here over its spans
# starting from {lookback} (start minus store/explore.py's TRACE_START_LOOKBACK_NS) to {lookahead}
# (end, plus TRACE_END_LOOKAHEAD_NS for the duration orders): the same numbers for every trace within
# those bounds, read in one bounded pass (the whole trace of every match, without time bounds, would
# read whole days of spans).
# {by_duration} picks the key (duration, else start); {descending} its direction. `place` is the key
# negated when descending, so that one ascending ORDER BY and one tuple comparison serve all four.
# total: the number of matching traces, counted before the cursor and the page cut them;
# remaining: those from the cursor on (total - remaining come before this page). {after} with
# {after_key}/{after_trace}: only the traces after that one (the page's cursor, holding the key).
SEARCH_TRACE_PAGE = f"""
SELECT trace_hex, sort_key, total, count() OVER () AS remaining
FROM (
    SELECT lower(hex(trace_id)) AS trace_hex, toUnixTimestamp64Nano(min(timestamp)) AS start_ns,
        max(toUnixTimestamp64Nano(timestamp) + toInt64(duration)) - start_ns AS duration_ns,
        if({{by_duration:Bool}}, duration_ns, start_ns) AS sort_key,
        if({{descending:Bool}}, -sort_key, sort_key) AS place,
        count() OVER () AS total
    FROM spans
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{lookback:Int64}})
      AND timestamp <= fromUnixTimestamp64Nano({{lookahead:Int64}})
      AND trace_id IN (SELECT trace_id {_MATCHING_SPANS})
    GROUP BY trace_id
)
WHERE NOT {{after:Bool}}
   OR (place, trace_hex) > (if({{descending:Bool}}, -{{after_key:Int64}}, {{after_key:Int64}}), {{after_trace:String}})
ORDER BY place, trace_hex
LIMIT {{limit:UInt32}}
"""

# The number of matching traces alone (for a cursor past the last match, where no row carries it).
COUNT_TRACES = f"""
SELECT uniqExact(trace_id) AS total {_MATCHING_SPANS}
"""

# One summary per trace in {trace_ids} (found through the by_trace_offset projection). The root
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
WHERE {TRACE_IN}
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

# Logs of one span, in time order, within its trace's bounds widened by the caller.
SPAN_LOGS = f"""
SELECT {LOG_COLUMNS}
FROM logs
WHERE trace_id = unhex({{trace_id:String}}) AND span_id = unhex({{span_id:String}})
  AND timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
ORDER BY timestamp
LIMIT {{limit:UInt32}}
"""

# The logs a log search matches in [{start}, {end}] (both included): FROM ... WHERE, to which the
# ' AND '-joined filters from below are appended. The search lists them (LOG_SEARCH_HEAD + filters +
# LOG_SEARCH_TAIL); the histogram and the live tail (store/sql/logs.py) count and follow the same.
LOG_MATCH = f"""FROM logs
PREWHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{end:Int64}})
  AND ({{service:String}} = '' OR service_name = {{service:String}})
  AND severity_number >= {{severity_min:UInt8}}
WHERE {ATTR_FILTERS}
"""
LOG_SEARCH_HEAD = f"""
SELECT {LOG_COLUMNS}
{LOG_MATCH}"""
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
