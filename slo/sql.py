"""SQL of the SLI queries (``slo/sli.py``): per-minute total and bad events of one SLO.

Every value from an SLO (service, operation, attribute keys and values, thresholds) is a
``{name:Type}`` parameter. The statements are assembled once, at import, from the fragments below;
only our own constants and placeholder names are formatted in (the log queries add one placeholder
per body token, ``{t_token_0:String}``, so that the token index sees ``hasToken(body, constant)``).

Every statement returns ``grp`` (``Array(String)``, the group_by values), ``minute_s`` (UInt32 unix
seconds of the minute) and ``n_total``/``n_bad`` (or ``n`` for one metric selector).

Filters arrive as parallel arrays per filter group, ``{P_keys}`` ... with ``P`` a prefix:
``P_keys Array(Array(String))`` (the attribute names to try, in order: one, or an old/new
semantic-convention pair), ``P_ops Array(String)`` (=, !=, >, >=, <, <=, in, not in),
``P_text Array(String)``, ``P_num Array(Float64)`` and ``P_sets Array(Array(String))`` (the operand
as text, number and set; the unused ones are ignored). Against ``red_1m`` a filter names a roll-up
column by its 1-based position in :data:`RED_DIMENSIONS` (``P_cols Array(UInt8)``) instead of keys.
"""

from __future__ import annotations

import re
from functools import cache

from store.sql.metrics import HISTOGRAM_INCREASE_COLUMNS

NS_PER_MINUTE = 60_000_000_000
ZERO_SPAN = "toFixedString('', 8)"

#: red_1m's dimension columns, in the order ``P_cols``/``g_cols`` number them (from 1).
RED_DIMENSIONS = (
    "http_route",
    "http_status_class",
    "rpc_method",
    "service_version",
    "deployment_environment",
)
_RED_VALUES = "[" + ", ".join(f"toString({c})" for c in RED_DIMENSIONS) + "]"


def _value(keys: str) -> str:
    """The text of the first of ``keys`` the item has, else the first its resource has, else ''.

    '' for a missing attribute, as Prometheus reads a missing label: ``!=`` and ``not in`` match
    it, and so does ``= ''``; as a number it is NaN, which no comparison matches.
    """
    has_item = f"arrayExists(k -> mapContains(attributes, k), {keys})"
    has_resource = f"arrayExists(k -> mapContains(resource_attributes, k), {keys})"
    return (
        f"if({has_item}, attributes[arrayFirst(k -> mapContains(attributes, k), {keys})], "
        f"if({has_resource}, resource_attributes[arrayFirst(k -> mapContains(resource_attributes, k), {keys})], ''))"
    )


def _raw_values(prefix: str) -> str:
    return f"arrayMap(ks -> {_value('ks')}, {{{prefix}_keys:Array(Array(String))}})"


def _red_values(prefix: str) -> str:
    return f"arrayMap(c -> {_RED_VALUES}[c], {{{prefix}_cols:Array(UInt8)}})"


# One filter: fx the attribute's text; a text that is not a number compares as NaN (never true).
_MATCH = """multiIf(
        fop = '=', fx = ftext, fop = '!=', fx != ftext,
        fop = 'in', has(fset, fx), fop = 'not in', NOT has(fset, fx),
        fop = '>', ifNull(toFloat64OrNull(fx), nan) > fnum, fop = '>=', ifNull(toFloat64OrNull(fx), nan) >= fnum,
        fop = '<', ifNull(toFloat64OrNull(fx), nan) < fnum, fop = '<=', ifNull(toFloat64OrNull(fx), nan) <= fnum,
        false)"""


def _filters(combine: str, prefix: str, values: str) -> str:
    """``arrayAll`` (every filter holds; true without filters) or ``arrayExists`` (any holds)."""
    return (
        f"{combine}((fx, fop, ftext, fnum, fset) -> {_MATCH},\n        {values}, {{{prefix}_ops:Array(String)}}, "
        f"{{{prefix}_text:Array(String)}}, {{{prefix}_num:Array(Float64)}}, {{{prefix}_sets:Array(Array(String))}})"
    )


def _minute_of(ns: str) -> str:
    return f"toUInt32(intDiv({ns}, {NS_PER_MINUTE}) * 60)"


_NS_RANGE = (
    "timestamp >= fromUnixTimestamp64Nano({start_ns:Int64}) "
    "AND timestamp < fromUnixTimestamp64Nano({end_ns:Int64})"
)
_SERVICE = "service_name = {service:String}"
_OPERATION = "({{any_operation:UInt8}} = 1 OR {op_column} = {{operation:String}})"

# -- spans -------------------------------------------------------------------------------------
# Requests: SERVER, CONSUMER and root spans (red_1m's rows), or only spans of {kinds}. The error is
# red_1m's: status ERROR, or an HTTP status >= 500 (new name, else the old one) on a SERVER span.
# Slow: duration > {latency_ns} (integer ns; a fractional threshold is floored, the same for integers).
# Public fragments of the span statements, for queries that need the SLI's exact definitions with
# another grouping (burn attribution, alerts/sql.py): the group values, whether a request is bad,
# and which spans or roll-up rows are the SLI's requests. Same parameters as the statements.
#: ``Array(String)``: the group_by values of a span, log record or metric point ({g_keys}).
RAW_GROUP = _raw_values("g")
#: ``Array(String)``: the group_by values of a red_1m row ({g_cols}).
ROLL_UP_GROUP = _red_values("g")
#: Service and time range of raw spans and log records ({service}, {start_ns}, {end_ns}).
RAW_SERVICE_RANGE = f"{_SERVICE} AND {_NS_RANGE}"
#: Whether a span is a bad request of the SLI ({use_error}, {s_*}, {use_latency}, {latency_ns}).
SPAN_IS_BAD = f"""({{use_error:UInt8}} = 1 AND (status_code = 'ERROR' OR (kind = 'SERVER' AND toUInt16OrZero(
            if(mapContains(attributes, 'http.response.status_code'), attributes['http.response.status_code'],
               attributes['http.status_code'])) >= 500)))
        OR {_filters("arrayExists", "s", _raw_values("s"))}
        OR ({{use_latency:UInt8}} = 1 AND duration > {{latency_ns:UInt64}})"""
#: Whether a span is one of the SLI's requests ({kinds}, {any_operation}, {operation}, {f_*}).
SPAN_IS_REQUEST = f"""if(empty({{kinds:Array(String)}}), kind IN ('SERVER', 'CONSUMER') OR parent_span_id = {ZERO_SPAN},
             has({{kinds:Array(String)}}, toString(kind)))
      AND {_OPERATION.format(op_column="name")}
      AND {_filters("arrayAll", "f", _raw_values("f"))}"""

SPANS_RAW = f"""
SELECT grp, minute_s, count() AS n_total, countIf(is_bad) AS n_bad
FROM (
    SELECT {RAW_GROUP} AS grp,
        {_minute_of("toUnixTimestamp64Nano(timestamp)")} AS minute_s,
        {SPAN_IS_BAD} AS is_bad
    FROM spans
    PREWHERE {RAW_SERVICE_RANGE}
    WHERE {SPAN_IS_REQUEST}
)
GROUP BY grp, minute_s
"""


def _count_from(histogram: str, at_bound: str) -> str:
    """Durations > the lower bound of bucket {bucket}: buckets from it on, less those exactly at it."""
    return (
        f"toInt64(arraySum(arrayMap((i, n) -> if(i >= {{bucket:UInt16}}, n, 0), "
        f"tupleElement({histogram}, 1), tupleElement({histogram}, 2)))) - "
        f"toInt64(arraySum(arrayMap((i, n) -> if(i = {{bucket:UInt16}}, n, 0), "
        f"tupleElement({at_bound}, 1), tupleElement({at_bound}, 2))))"
    )


# Per roll-up row: every request is bad if a status filter holds for the row (its status class);
# else bad = errors + slow - slow errors (migration 0007's columns). n_detailed < n_total marks a
# minute rolled up before migration 0007 (without those columns): the caller reads it from spans.
#: Columns ``slow``, ``slow_err`` and ``row_bad`` (the bad requests) of a red_1m row.
ROLL_UP_BAD_COLUMNS = f"""if({{use_latency:UInt8}} = 1, {_count_from("latency", "latency_at_bound")}, 0) AS slow,
        if({{use_latency:UInt8}} = 1 AND {{use_error:UInt8}} = 1,
           {_count_from("error_latency", "error_latency_at_bound")}, 0) AS slow_err,
        if({_filters("arrayExists", "s", _red_values("s"))}, toInt64(requests),
           if({{use_error:UInt8}} = 1, toInt64(errors), 0) + slow - slow_err) AS row_bad"""
#: The SLI's red_1m rows of {service} in minutes [{start_s}, {end_s}).
ROLL_UP_ROWS = f"""{_SERVICE}
      AND minute >= toDateTime({{start_s:UInt32}}, 'UTC') AND minute < toDateTime({{end_s:UInt32}}, 'UTC')
      AND {_OPERATION.format(op_column="operation")}
      AND (empty({{kinds:Array(String)}}) OR has({{kinds:Array(String)}}, toString(kind)))
      AND {_filters("arrayAll", "f", _red_values("f"))}"""

SPANS_ROLL_UP = f"""
SELECT grp, minute_s, sum(requests) AS n_total, sum(row_bad) AS n_bad, sum(detailed_requests) AS n_detailed
FROM (
    SELECT {ROLL_UP_GROUP} AS grp, toUInt32(minute) AS minute_s, requests, detailed_requests,
        {ROLL_UP_BAD_COLUMNS}
    FROM red_1m
    WHERE {ROLL_UP_ROWS}
)
GROUP BY grp, minute_s
"""


# -- many SLOs in one statement ------------------------------------------------------------------
# A cycle evaluates every SLO at the same instant; each statement costs a fixed planning time of
# several ms to tens of ms, which for a 100-SLO cycle dwarfed reading a few new minutes. The batched
# statement runs the fragments above unchanged, once per (red_1m row, SLO of the row's service):
# ARRAY JOIN pairs each row with the indexes of its service's SLOs, and every parameter is read for
# the row's SLO ``slo_i`` (1-based). A scalar ``{name:T}`` becomes ``{name:Array(T)}[slo_i]``. An
# array ``{name:Array(T)}`` keeps its type: the SLOs' arrays are concatenated and each SLO reads its
# slice, from ``{name_at:Array(UInt32)}[slo_i]`` (1-based), ``{name_n:Array(UInt32)}[slo_i]`` long
# (a literal of empty arrays loses its depth: ``[[], []]`` cannot be cast to Array(Array(Array(String)))).
_PARAM = re.compile(r"\{(\w+):([^{}]+)\}")


def _per_slo_param(match: re.Match[str]) -> str:
    name, kind = match.group(1), match.group(2)
    if kind.startswith("Array("):
        return (
            f"arraySlice({{{name}:{kind}}}, {{{name}_at:Array(UInt32)}}[slo_i], {{{name}_n:Array(UInt32)}}[slo_i])"
        )
    return f"{{{name}:Array({kind})}}[slo_i]"


def per_slo(fragment: str) -> str:
    """``fragment`` with each parameter read for the row's SLO ``slo_i`` (see above)."""
    return _PARAM.sub(_per_slo_param, fragment)


# {services}: the distinct services; {service_slos}: per service, the (1-based) indexes of its SLOs.
# {min_start_s}/{max_end_s} bound every SLO's range, so that the primary key prunes what no SLO reads.
SPANS_ROLL_UP_MANY = f"""
SELECT slo_i, grp, minute_s, sum(requests) AS n_total, sum(row_bad) AS n_bad, sum(detailed_requests) AS n_detailed
FROM (
    SELECT slo_i, {per_slo(ROLL_UP_GROUP)} AS grp, toUInt32(minute) AS minute_s, requests, detailed_requests,
        {per_slo(ROLL_UP_BAD_COLUMNS)}
    FROM red_1m
    ARRAY JOIN {{service_slos:Array(Array(UInt32))}}[indexOf({{services:Array(String)}}, service_name)] AS slo_i
    WHERE service_name IN {{services:Array(String)}}
      AND minute >= toDateTime({{min_start_s:UInt32}}, 'UTC') AND minute < toDateTime({{max_end_s:UInt32}}, 'UTC')
      AND {per_slo(ROLL_UP_ROWS)}
)
GROUP BY slo_i, grp, minute_s
"""


# -- logs --------------------------------------------------------------------------------------
def _tokens(prefix: str, count: int) -> str:
    return "".join(f" AND hasToken(body, {{{prefix}_token_{i}:String}})" for i in range(count))


#: Log records of {service} in [{start_ns}, {end_ns}) at or above the total filter's severity.
LOG_TOTAL_PREWHERE = f"{_SERVICE} AND {_NS_RANGE} AND severity_number >= {{t_severity:UInt8}}"


def log_total_where(total_tokens: int) -> str:
    """The rest of the total filter ({t_*}, ``total_tokens`` body tokens {t_token_N}): with
    :data:`LOG_TOTAL_PREWHERE`, whether a log record is an event of the SLI."""
    return f"{_filters('arrayAll', 't', _raw_values('t'))}{_tokens('t', total_tokens)}"


def log_is_bad(bad_tokens: int) -> str:
    """Whether an event of the SLI is a bad one (the bad filter, {b_*}, {b_token_N})."""
    return (
        f"severity_number >= {{b_severity:UInt8}} AND {_filters('arrayAll', 'b', _raw_values('b'))}\n"
        f"            {_tokens('b', bad_tokens)}"
    )


@cache
def log_counts(total_tokens: int, bad_tokens: int) -> str:
    """Logs matching the total filter, and of those the ones matching the bad filter, per minute.

    ``total_tokens``/``bad_tokens``: how many body tokens each filter has (``{t_token_N}``,
    ``{b_token_N}``); the total's are in WHERE, where the body's token index prunes granules.
    """
    return f"""
SELECT grp, minute_s, count() AS n_total, countIf(is_bad) AS n_bad
FROM (
    SELECT {RAW_GROUP} AS grp,
        {_minute_of("toUnixTimestamp64Nano(timestamp)")} AS minute_s,
        {log_is_bad(bad_tokens)} AS is_bad
    FROM logs
    PREWHERE {LOG_TOTAL_PREWHERE}
    WHERE {log_total_where(total_tokens)}
)
GROUP BY grp, minute_s
"""


# -- metrics -----------------------------------------------------------------------------------
# A point's increase belongs to the minute holding (timestamp - 1 ns): a point at 12:01:00.000 reports
# what happened before it. Points are read from {read_start_ns} (a lookback, for each cumulative
# stream's previous point) to {end_ns} inclusive; minutes outside [start_s, end_s) are dropped after
# the increases are computed. Filters read point attributes, then resource attributes.
_METRIC_POINTS = f"""{_SERVICE} AND metric_name = {{name:String}}
          AND timestamp >= fromUnixTimestamp64Nano({{read_start_ns:Int64}})
          AND timestamp <= fromUnixTimestamp64Nano({{end_ns:Int64}})
          AND {_filters("arrayAll", "f", _raw_values("f"))}"""


#: The points of metric {name} of {service} that an SLI reads ({f_*}, {read_start_ns}, {end_ns}).
METRIC_POINTS = _METRIC_POINTS


def _sorted_pairs(column: str) -> str:
    # Sorted, so that equal maps written in a different key order are one stream.
    return f"arraySort(arrayZip(arrayMap(k -> toString(k), mapKeys({column})), mapValues({column})))"


# One stream (OTLP's identity of a time series) of the one service: scope, resource and attributes.
_WINDOW = (
    f"WINDOW w AS (PARTITION BY cityHash64(scope_name, {_sorted_pairs('resource_attributes')}, "
    f"{_sorted_pairs('attributes')}), aggregation_temporality "
    "ORDER BY timestamp ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
)
_IN_RANGE = "minute_s >= {start_s:UInt32} AND minute_s < {end_s:UInt32}"

# Increase per point, as store/sql/metrics.py computes it: delta -> the value; cumulative -> value
# minus the stream's previous value, or the value itself after a reset (value dropped or start time
# changed); a stream's first point read counts in full only if the stream started inside what was
# read (else it is only the baseline, NaN).
SUM_INCREASE = f"""
SELECT grp, minute_s, sum(inc) AS n
FROM (
    SELECT grp, {_minute_of("ts - 1")} AS minute_s,
        multiIf(
            aggregation_temporality = 1, value,
            rn = 1, if(start_ns >= {{read_start_ns:Int64}} AND start_ns > 0, value, nan),
            start_ns != prev_start OR value < prev_value, value,
            value - prev_value) AS inc
    FROM (
        SELECT {_raw_values("g")} AS grp, toUnixTimestamp64Nano(timestamp) AS ts,
            toUnixTimestamp64Nano(start_timestamp) AS start_ns, value, aggregation_temporality,
            row_number() OVER w AS rn,
            lagInFrame(value) OVER w AS prev_value,
            lagInFrame(toUnixTimestamp64Nano(start_timestamp)) OVER w AS prev_start
        FROM metrics_sum
        WHERE {_METRIC_POINTS}
          AND is_monotonic
        {_WINDOW}
    )
)
WHERE {_IN_RANGE} AND NOT isNaN(inc)
GROUP BY grp, minute_s
"""

# Histogram points' increases as the metrics API reads them (HISTOGRAM_INCREASE_COLUMNS). Good: the
# observations in buckets whose upper bound is <= {threshold}, i.e. the buckets up to the threshold's
# position among the bounds (sli.py checked that every point has it as a bound).
HISTOGRAM_INCREASE = f"""
SELECT grp, minute_s, sum(inc_count) AS n_total, sum(inc_good) AS n_good
FROM (
    SELECT grp, {_minute_of("ts - 1")} AS minute_s,
        {HISTOGRAM_INCREASE_COLUMNS.format(read_start="read_start_ns")},
        arraySum(arraySlice(inc_counts, 1, indexOf(bounds, {{threshold:Float64}}))) AS inc_good
    FROM (
        SELECT {_raw_values("g")} AS grp, toUnixTimestamp64Nano(timestamp) AS ts,
            toUnixTimestamp64Nano(start_timestamp) AS start_ns, aggregation_temporality,
            explicit_bounds AS bounds, arrayMap(x -> toFloat64(x), bucket_counts) AS counts_f,
            toFloat64(count) AS cnt,
            row_number() OVER w AS rn,
            lagInFrame(toUnixTimestamp64Nano(start_timestamp)) OVER w AS prev_start,
            lagInFrame(explicit_bounds) OVER w AS prev_bounds,
            lagInFrame(arrayMap(x -> toFloat64(x), bucket_counts)) OVER w AS prev_counts,
            lagInFrame(toFloat64(count)) OVER w AS prev_cnt
        FROM metrics_histogram
        WHERE {_METRIC_POINTS}
        {_WINDOW}
    )
)
WHERE mode > 0 AND {_IN_RANGE}
GROUP BY grp, minute_s
"""

#: The distinct explicit bounds of the histogram points an SLI would read.
HISTOGRAM_BOUNDS = f"""
SELECT DISTINCT explicit_bounds AS bounds
FROM metrics_histogram
WHERE {_METRIC_POINTS}
ORDER BY bounds
"""


# -- evaluation history (slo/history.py, table slo_evaluations of migration 0008) -----------------

# FINAL: a minute evaluated twice (retry, second evaluator) has two rows until a merge replaces one.
# {group_key}: '' for any group.
HISTORY = """
SELECT toUInt32(evaluated_at) AS at_s, slo, service, group_key, group_labels, objective, window, budgeting,
       toUInt32(window_start) AS window_start_s, total, bad, sli, budget, consumed, remaining,
       time_to_exhaustion_s, burn_rates, alert_rules, error
FROM slo_evaluations FINAL
WHERE slo = {slo:String}
  AND evaluated_at >= toDateTime({start_s:UInt32}, 'UTC') AND evaluated_at < toDateTime({end_s:UInt32}, 'UTC')
  AND ({group_key:String} = '' OR group_key = {group_key:String})
ORDER BY group_key, evaluated_at
LIMIT {limit:UInt32}
"""

# The newest evaluation of every instance of the given SLOs since {since_s}: the home page's "SLOs
# burning". LIMIT BY keeps one row per instance without FINAL (a duplicate row is the same result).
LATEST = """
SELECT toUInt32(evaluated_at) AS at_s, slo, service, group_key, group_labels, objective, window,
       sli, remaining, burn_rates, alert_rules, error
FROM slo_evaluations
WHERE slo IN {slos:Array(String)} AND evaluated_at >= toDateTime({since_s:UInt32}, 'UTC')
ORDER BY slo, group_key, evaluated_at DESC
LIMIT 1 BY slo, group_key
"""

# -- canary (slo/canary.py) ----------------------------------------------------------------------
# Per version of the service ({versions}): the requests and bad requests of an SLI's definition
# (the RED error's, or an SLO's, by their SPAN_IS_* parameters), and the exact latency quantiles.
# A version is the resource's service.version, as red_1m's view and burn attribution read it.
_VERSION = "resource_attributes['service.version']"
CANARY_COUNTS = f"""
SELECT {_VERSION} AS version, count() AS n_total, countIf({SPAN_IS_BAD}) AS n_bad,
    quantilesExact(0.5, 0.95, 0.99)(duration) AS quantiles_ns
FROM spans
PREWHERE {RAW_SERVICE_RANGE}
WHERE {SPAN_IS_REQUEST} AND has({{versions:Array(String)}}, {_VERSION})
GROUP BY version
"""
# Up to {sample} request durations per version for the rank tests, chosen by a hash of the span id:
# a uniform sample, the same on every run over the same data.
CANARY_DURATIONS = f"""
SELECT {_VERSION} AS version, duration
FROM spans
PREWHERE {RAW_SERVICE_RANGE}
WHERE {SPAN_IS_REQUEST} AND has({{versions:Array(String)}}, {_VERSION})
ORDER BY cityHash64(span_id), duration
LIMIT {{sample:UInt32}} BY version
"""
