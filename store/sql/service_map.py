"""Queries of the stored service map (``service_edges_1m``, migration 0006; ``store/service_map.py``).

Parameters use the engine's ``{name:Type}`` placeholders; request values are never formatted into SQL.
Minutes are whole unix seconds (UInt32, minute-aligned by the caller); span times are unix
nanoseconds (Int64). Stored reads return the same columns as the query-time join
(``store/sql/explore.py`` ``EDGE_SUMS``), so both merge row by row.
"""

from store.sql.explore import TENANT_DEPENDENCY_BUCKETS, ZERO_SPAN

# One minute's edges: the query-time join over [minute, minute + 60 s) (children; parents from
# {parent_start}), stored under {minute}. The caller appends the SETTINGS clause (join settings and
# the minute's deduplication token); ORDER BY keeps the written block the same on every attempt, and
# a minute's few rows stay one block, so a repeat under the same token is dropped as a whole.
# Aliases differ from the table's columns (INSERT ... SELECT maps columns by position).
ROLL_UP_MINUTE = f"""
INSERT INTO service_edges_1m (minute, caller, callee, tenant, calls, errors, duration_sum, latency)
SELECT toDateTime({{minute:UInt32}}, 'UTC') AS edge_minute, caller, callee, edge_tenant,
    sum(n) AS n_calls, sum(n_err) AS n_errors, sum(dur) AS dur_sum,
    sumMap([lat_bucket], [n]) AS histogram
FROM ({TENANT_DEPENDENCY_BUCKETS})
GROUP BY caller, callee, edge_tenant
ORDER BY caller, callee, edge_tenant
"""

# Minutes in [start, end) that have child spans at all; the others are recorded without a join.
MINUTES_WITH_CHILDREN = f"""
SELECT DISTINCT toUInt32(toStartOfMinute(timestamp)) AS busy_minute
FROM spans
PREWHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}})
     AND timestamp < fromUnixTimestamp64Nano({{end:Int64}})
     AND parent_span_id != {ZERO_SPAN}
ORDER BY busy_minute
"""

RECORD_MINUTES = """
INSERT INTO service_edges_progress (minute)
SELECT toDateTime(arrayJoin({minutes:Array(UInt32)}), 'UTC')
"""

# Rolled-up minutes in [start, end) (a minute may be listed twice: two writers, or a retry).
ROLLED_MINUTES = """
SELECT DISTINCT toUInt32(minute) AS rolled_minute
FROM service_edges_progress
WHERE minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')
ORDER BY rolled_minute
"""

# Stored minutes in any of the runs [run_starts[i], run_ends[i]); [start, end) bounds them all, for
# the primary key. Names of sums differ from the table's columns (WHERE would see the aliases).
_STORED_WHERE = """minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')
  AND arrayExists((a, b) -> toUInt32(minute) >= a AND toUInt32(minute) < b,
                  {run_starts:Array(UInt32)}, {run_ends:Array(UInt32)})"""

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
