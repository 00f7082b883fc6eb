"""Read queries of the RED roll-up (``red_1m``, migration 0004; ``store/red.py``).

Parameters use the engine's ``{name:Type}`` placeholders; request values are never formatted into SQL.
Times are whole unix seconds (UInt32, minute-aligned by the caller), because ``red_1m.minute`` is a
``DateTime``: ``[start, end)`` selects the minutes that start in the range.
The latency histogram comes back as two arrays (bucket indexes, counts), merged by ``sumMap``.
"""

_RANGE = "minute >= toDateTime({start:UInt32}, 'UTC') AND minute < toDateTime({end:UInt32}, 'UTC')"

# An operation filter that can also mean "any": {any_operation} = 1 ignores {operation}.
_OPERATION = "({any_operation:UInt8} = 1 OR operation = {operation:String})"

# The same for the resource's service.version; {version} = '' selects requests sent without one.
_VERSION = "({any_version:UInt8} = 1 OR service_version = {version:String})"

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


def _quantile_bucket(q: float) -> str:
    """The histogram bucket holding the ``q`` quantile (the rank ``store.red.quantile_ns`` picks):
    buckets grow with duration, so ordering by it orders by latency to within one bucket."""
    return f"bucket_ids[arrayFirstIndex(c -> c > floor({q} * arraySum(bucket_counts)), arrayCumSum(bucket_counts))]"


#: Sort keys of the services list and their ORDER BY expressions.
SERVICES_ORDER = {
    "service": "service",
    "rate": "n_requests",
    "current": "n_recent",
    "requests": "n_requests",
    "errors": "n_errors",
    "error_ratio": "n_errors / n_requests",
    "p50": _quantile_bucket(0.5),
    "p95": _quantile_bucket(0.95),
    "p99": _quantile_bucket(0.99),
}


def services_page(sort: str, descending: bool) -> str:
    """One page of the services list in a total order (``sort``'s key, then busiest, then by name, so
    pages neither overlap nor skip), with n_services, the number of matching services in the range
    counted before the page is cut out, and n_recent, the requests since {recent} (the "current"
    rate). {match} keeps the services whose name holds it (any case; '' keeps all). ``sort`` is a key
    of SERVICES_ORDER: request values choose a clause but never reach the SQL text."""
    order = f"{SERVICES_ORDER[sort]} {'DESC' if descending else 'ASC'}"
    return f"""
SELECT service, n_requests, n_errors, bucket_ids, bucket_counts, n_recent, n_services
FROM (
    SELECT service_name AS service, {_STATS},
        sumIf(requests, minute >= toDateTime({{recent:UInt32}}, 'UTC')) AS n_recent,
        count() OVER () AS n_services
    FROM red_1m
    WHERE {_RANGE} AND positionCaseInsensitiveUTF8(service_name, {{match:String}}) > 0
    GROUP BY service
)
ORDER BY {order}, n_requests DESC, service
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}
"""


OPERATIONS = f"""
SELECT operation AS op_name, kind AS op_kind, {_STATS}
FROM red_1m
WHERE service_name = {{service:String}} AND {_VERSION} AND {_RANGE}
GROUP BY op_name, op_kind
ORDER BY n_requests DESC, op_name, op_kind
LIMIT {{limit:UInt32}}
"""

# Points are [t, t + step) with t a multiple of {step} seconds since the epoch.
SERIES = f"""
SELECT intDiv(toUInt32(minute), {{step:UInt32}}) * {{step:UInt32}} AS point, {_STATS}
FROM red_1m
WHERE service_name = {{service:String}} AND {_OPERATION} AND {_VERSION} AND {_RANGE}
GROUP BY point
ORDER BY point
"""

# Versions of one service, busiest first. n_all (every version's requests: the share's denominator) and
# n_versions are counted over all versions before the outer filter and LIMIT cut rows out, so a share
# stays a part of the whole service whichever versions are shown.
VERSIONS = f"""
SELECT version, n_requests, n_errors, bucket_ids, bucket_counts, n_all, n_versions
FROM (
    SELECT service_version AS version, {_STATS},
        sum(n_requests) OVER () AS n_all,
        count() OVER () AS n_versions
    FROM red_1m
    WHERE service_name = {{service:String}} AND {_OPERATION} AND {_RANGE}
    GROUP BY version
)
WHERE {{any_version:UInt8}} = 1 OR version = {{version:String}}
ORDER BY n_requests DESC, version
LIMIT {{limit:UInt32}}
"""

# SERIES of several versions at once, one pass: points of a version without requests are absent.
VERSIONS_SERIES = f"""
SELECT service_version AS version, intDiv(toUInt32(minute), {{step:UInt32}}) * {{step:UInt32}} AS point,
    {_STATS}
FROM red_1m
WHERE service_name = {{service:String}} AND {_OPERATION} AND service_version IN {{versions:Array(String)}}
    AND {_RANGE}
GROUP BY version, point
ORDER BY version, point
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
