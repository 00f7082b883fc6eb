"""Queries of the stored service map (``service_edges_1m``, migrations 0006 and 0012; ``store/service_map.py``).

Parameters use the engine's ``{name:Type}`` placeholders; request values are never formatted into SQL.
Minutes are whole unix seconds (UInt32, minute-aligned by the caller); span times are unix
nanoseconds (Int64). Stored reads return the same columns as the query-time join
(``store/sql/explore.py`` ``EDGE_SUMS``), so both merge row by row.
"""

from store.sql.explore import TENANT_DEPENDENCY_BUCKETS, ZERO_SPAN

# One minute's edges: the query-time join of children starting in [minute, minute + 60 s) (parents
# from {parent_start} to {parent_end}: store/service_map.py join_params), stored under {minute} and
# {version}. The caller appends the SETTINGS clause (join settings and the deduplication token of the
# minute and version); ORDER BY keeps the written block the same on every attempt, and a minute's few
# rows stay one block, so a repeat under the same token is dropped as a whole.
# Aliases differ from the table's columns (INSERT ... SELECT maps columns by position).
ROLL_UP_MINUTE = f"""
INSERT INTO service_edges_1m (minute, caller, callee, tenant, version, calls, errors, duration_sum, latency)
SELECT toDateTime({{minute:UInt32}}, 'UTC') AS edge_minute, caller, callee, edge_tenant,
    {{version:UInt64}} AS edge_version,
    sum(n) AS n_calls, sum(n_err) AS n_errors, sum(dur) AS dur_sum,
    sumMap([lat_bucket], [n]) AS histogram
FROM ({TENANT_DEPENDENCY_BUCKETS})
GROUP BY caller, callee, edge_tenant
ORDER BY caller, callee, edge_tenant
"""

# Spans and their hash sum, stored per minute of their start in [start, end) (migration 0012: counted
# on insert, so this reads a few rows per minute, never the spans).
MINUTE_COUNTS = """
SELECT toUInt32(minute) AS count_minute, sum(spans) AS n_spans, sum(span_hash) AS hash_sum
FROM span_counts_1m
WHERE minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')
GROUP BY count_minute
ORDER BY count_minute
"""

# The spans a roll-up can see in a minute's window [start, end), counted and hashed as span_counts_1m
# counts them, and the spans with a parent in the minute itself [minute_start, minute_end).
SEEN_IN_WINDOW = f"""
SELECT count() AS n_spans, sum(cityHash64(trace_id, span_id)) AS hash_sum,
    countIf(parent_span_id != {ZERO_SPAN}
            AND timestamp >= fromUnixTimestamp64Nano({{minute_start:Int64}})
            AND timestamp < fromUnixTimestamp64Nano({{minute_end:Int64}})) AS n_children
FROM spans
PREWHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}})
     AND timestamp < fromUnixTimestamp64Nano({{end:Int64}})
"""

# {minutes}[i] rolled up under {versions}[i].
RECORD_MINUTES = """
INSERT INTO service_edges_progress (minute, version)
SELECT toDateTime(tupleElement(rolled, 1), 'UTC'), tupleElement(rolled, 2)
FROM (SELECT arrayJoin(arrayZip({minutes:Array(UInt32)}, {versions:Array(UInt64)})) AS rolled)
"""

# Versions rolled up per minute in [start, end) (one may be listed twice: two writers, or a retry).
# Version 0 marks rows written before migration 0012: never read.
ROLLED_VERSIONS = """
SELECT DISTINCT toUInt32(minute) AS rolled_minute, version AS rolled_version
FROM service_edges_progress
WHERE minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')
  AND version > 0
ORDER BY rolled_minute, rolled_version
"""

# The stored minutes {minutes}[i] at their current version {versions}[i]; [start, end) bounds them
# all, for the primary key. Names of sums differ from the table's columns (WHERE would see the aliases).
_STORED_WHERE = """minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')
  AND (toUInt32(minute), version) IN arrayZip({minutes:Array(UInt32)}, {versions:Array(UInt64)})"""

_STORED_SUMS = """sum(calls) AS n_calls, sum(errors) AS n_errors, sum(duration_sum) AS dur_sum,
    tupleElement(sumMap(latency), 1) AS bucket_ids,
    tupleElement(sumMap(latency), 2) AS bucket_counts"""

STORED_EDGES = f"""
SELECT caller, callee, {_STORED_SUMS}
FROM service_edges_1m
WHERE {_STORED_WHERE}
GROUP BY caller, callee
ORDER BY caller, callee
LIMIT {{limit:UInt32}}
"""

# Per {step_s} seconds (a whole number of minutes): the same buckets as the join's bucket_s.
STORED_SERIES = f"""
SELECT caller, callee, intDiv(toUInt32(minute), {{step_s:UInt32}}) * {{step_s:UInt32}} AS bucket_s,
    {_STORED_SUMS}
FROM service_edges_1m
WHERE {_STORED_WHERE}
GROUP BY caller, callee, bucket_s
ORDER BY caller, callee, bucket_s
"""
