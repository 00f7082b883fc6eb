"""Read queries of the log views (``store/logs.py``): volume by severity, the lines around a line, and
the live tail.

The matching logs are those of the log search (``store/sql/explore.py`` LOG_MATCH and its filters),
so that a histogram counts exactly what the search lists. Only our own fragments are formatted in,
never request data. Times are unix ns (Int64).
"""

from store.sql.explore import LOG_COLUMNS, LOG_MATCH

# Severity classes: 1..6 = TRACE, DEBUG, INFO, WARN, ERROR, FATAL (OpenTelemetry's ranges of four
# numbers); 0 = unspecified, or a number outside 1..24 (a malformed record still counts somewhere).
SEVERITY_CLASS = "if(severity_number BETWEEN 1 AND 24, intDiv(severity_number - 1, 4) + 1, 0)"

# Histogram: HISTOGRAM_HEAD + ' AND '-joined filters + HISTOGRAM_TAIL. Buckets are multiples of
# {step:Int64} ns since the epoch (round steps fall on round clock times).
HISTOGRAM_HEAD = f"""
SELECT intDiv(toUnixTimestamp64Nano(timestamp), {{step:Int64}}) * {{step:Int64}} AS bucket_ns,
    toUInt8({SEVERITY_CLASS}) AS sev_class, count() AS n
{LOG_MATCH}"""
HISTOGRAM_TAIL = """
GROUP BY bucket_ns, sev_class
ORDER BY bucket_ns, sev_class
"""

# -- context -----------------------------------------------------------------------------------
# The lines around {at} of one service (the table's first sort key: a range read) or one trace (the
# trace-id bloom filter), each side bounded in time so that only a day's partitions are read.
# LIMIT n WITH TIES returns every line sharing the time of the n-th, so that the next page (time
# strictly before the oldest, or after the newest shown) skips none; the outer LIMIT bounds a
# pathological pile of lines at one nanosecond.
CONTEXT_SCOPES = {
    "service": "service_name = {service:String}",
    "trace": "trace_id = unhex({trace_id:String})",
}


def _context(scope: str, low_op: str, direction: str) -> str:
    return f"""
SELECT * FROM (
    SELECT {LOG_COLUMNS}, toUnixTimestamp64Nano(timestamp) AS t_ns
    FROM logs
    PREWHERE timestamp >= fromUnixTimestamp64Nano({{lo:Int64}}) AND timestamp <= fromUnixTimestamp64Nano({{hi:Int64}})
      AND timestamp {low_op} fromUnixTimestamp64Nano({{at:Int64}})
    WHERE {CONTEXT_SCOPES[scope]}
    ORDER BY timestamp {direction}
    LIMIT {{n:UInt32}} WITH TIES
)
ORDER BY t_ns, service_name, span_hex, trace_hex, body
LIMIT {{cap:UInt32}}
"""


#: Per scope: the newest n lines with time <= at, read over [lo, at] (lo = at - lookback).
CONTEXT_BEFORE = {scope: _context(scope, "<=", "DESC") for scope in CONTEXT_SCOPES}
#: Per scope: the oldest n lines with time > at, read over (at, hi] (hi = at + lookback).
CONTEXT_AFTER = {scope: _context(scope, ">", "ASC") for scope in CONTEXT_SCOPES}

# -- live tail ---------------------------------------------------------------------------------
# A line's identity for the tail's cursor: every stored field but the tenant. Two lines with the same
# hash at the same nanosecond are told apart by their count (nth), so that even exact duplicates are
# each delivered once.
ROW_HASH = """cityHash64(service_name, trace_id, span_id, flags, severity_text, severity_number, body,
    event_name, scope_name, scope_version, attributes, resource_attributes, correlation_id,
    toUnixTimestamp64Nano(observed_timestamp))"""

# TAIL_HEAD + ' AND '-joined filters + TAIL_TAIL: the matching lines after the cursor, newest first.
# The cursor is {after} (unix ns) and the multiset of lines at exactly {after} already delivered:
# {seen_hashes} with {seen_counts}. A line at {after} is new if it is the k-th line with its hash there
# and k exceeds the count seen (indexOf is 0 for an unseen hash, and arr[0] is 0). The range read is
# [{start}, {end}] with {start} = {after} (or later) and {end} = now minus the settling delay.
# total: how many lines are new, before the LIMIT (the rest are skipped).
TAIL_HEAD = f"""
SELECT {LOG_COLUMNS}, hex(row_hash) AS row_key, toUnixTimestamp64Nano(timestamp) AS t_ns,
    count() OVER () AS total
FROM (
    SELECT *, {ROW_HASH} AS row_hash,
        -- Only lines at the cursor's time need their count; one partition for all others keeps the
        -- sort cheap (a stale cursor's hour of 83,000 lines: 130 ms instead of 360 ms).
        timestamp = fromUnixTimestamp64Nano({{after:Int64}}) AS at_cursor,
        row_number() OVER (PARTITION BY at_cursor, if(at_cursor, row_hash, 0)) AS nth
    {LOG_MATCH}"""
TAIL_TAIL = """)
WHERE timestamp > fromUnixTimestamp64Nano({after:Int64})
   OR at_cursor AND nth > arrayElement({seen_counts:Array(UInt32)}, indexOf({seen_hashes:Array(UInt64)}, row_hash))
ORDER BY timestamp DESC, row_hash DESC, nth DESC
LIMIT {limit:UInt32}
"""
