"""Read queries of the RED roll-up (``red_1m``, migration 0004; ``store/red.py``).

Parameters use the engine's ``{name:Type}`` placeholders; request values are never formatted into SQL.
Times are whole unix seconds (UInt32, minute-aligned by the caller), because ``red_1m.minute`` is a
``DateTime``: ``[start, end)`` selects the minutes that start in the range.
The latency histogram comes back as two arrays (bucket indexes, counts), merged by ``sumMap``.
"""

_RANGE = "minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')"

# An operation filter that can also mean "any": {any_operation} = 1 ignores {operation}.
_OPERATION = "({any_operation:UInt8} = 1 OR operation = {operation:String})"

# Aliases never reuse red_1m column names (ClickHouse would substitute them in WHERE too).
_STATS = """sum(requests) AS n_requests,
    sum(errors) AS n_errors,
    tupleElement(sumMap(latency), 1) AS bucket_ids,
    tupleElement(sumMap(latency), 2) AS bucket_counts"""

SERVICES = f"""
SELECT service_name AS service, {_STATS}
FROM red_1m
WHERE {_RANGE}
GROUP BY service
ORDER BY n_requests DESC, service
LIMIT {{limit:UInt32}}
"""

# One page of the services list (busiest first, then by name: a total order, so pages neither overlap
# nor skip), with n_services, the number of services in the range counted before the page is cut out.
SERVICES_PAGE = f"""
SELECT service, n_requests, n_errors, bucket_ids, bucket_counts, n_services
FROM (
    SELECT service_name AS service, {_STATS}, count() OVER () AS n_services
    FROM red_1m
    WHERE {_RANGE}
    GROUP BY service
)
ORDER BY n_requests DESC, service
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}
"""

OPERATIONS = f"""
SELECT operation AS op_name, kind AS op_kind, {_STATS}
FROM red_1m
WHERE service_name = {{service:String}} AND {_RANGE}
GROUP BY op_name, op_kind
ORDER BY n_requests DESC, op_name, op_kind
LIMIT {{limit:UInt32}}
"""

# Points are [t, t + step) with t a multiple of {step} seconds since the epoch.
SERIES = f"""
SELECT intDiv(toUInt32(minute), {{step:UInt32}}) * {{step:UInt32}} AS point, {_STATS}
FROM red_1m
WHERE service_name = {{service:String}} AND {_OPERATION} AND {_RANGE}
GROUP BY point
ORDER BY point
"""

TOTAL = f"""
SELECT {_STATS}
FROM red_1m
WHERE service_name = {{service:String}} AND {_OPERATION} AND {_RANGE}
"""

# Requests and errors per step of many services at once (the home page's sparklines): one grouped
# pass over the roll-up instead of one SERIES query per service. No histogram: a sparkline draws
# rates only, and merging latency maps for every service and step would be most of the cost.
SERVICES_RATES = f"""
SELECT service_name AS service, intDiv(toUInt32(minute), {{step:UInt32}}) * {{step:UInt32}} AS point,
    sum(requests) AS n_requests, sum(errors) AS n_errors
FROM red_1m
WHERE service_name IN {{services:Array(String)}} AND {_RANGE}
GROUP BY service, point
ORDER BY service, point
"""
