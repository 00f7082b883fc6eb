"""Read queries over the OTLP metrics tables (``store/metrics_query.py``).

Every value from a request is a ``{name:Type}`` parameter. The statements are assembled once, at
import, from the fragments below; table names and type labels are our constants.

Common parameters: ``name`` (metric name), ``service`` ('' for any), ``attr_keys``/``attr_values``
(equal-length ``Array(String)``: every key must have its value), ``group_by`` (``Array(String)``;
empty: one series per service and attribute set), times as unix nanoseconds (``Int64``).

See docs/metrics-api.md for the formulas.
"""

from __future__ import annotations

#: Type label -> table.
TABLES = {
    "gauge": "metrics_gauge",
    "sum": "metrics_sum",
    "histogram": "metrics_histogram",
    "exponential_histogram": "metrics_exponential_histogram",
    "summary": "metrics_summary",
}


def _lookup(key: str) -> str:
    """A label's value: the point's attribute, else the resource's, else the service column."""
    return (
        f"multiIf(mapContains(attributes, {key}), attributes[{key}], "
        f"mapContains(resource_attributes, {key}), resource_attributes[{key}], "
        f"{key} = 'service.name', toString(service_name), '')"
    )


def _sorted_pairs(column: str) -> str:
    # Sorted, so that equal maps written in a different key order are one series.
    return f"arraySort(arrayZip(arrayMap(k -> toString(k), mapKeys({column})), mapValues({column})))"


# One output series: service plus attributes, or the group_by keys' values.
_LABELS = (
    "if(empty({group_by:Array(String)}), "
    f"arraySort(arrayConcat([('service.name', toString(service_name))], {_sorted_pairs('attributes')})), "
    f"arrayMap(g -> (g, {_lookup('g')}), {{group_by:Array(String)}}))"
)

# One stream (OTLP's identity of a time series): resource, scope and attributes.
_STREAM = f"cityHash64(service_name, scope_name, {_sorted_pairs('resource_attributes')}, {_sorted_pairs('attributes')})"

_FILTER = f"""metric_name = {{name:String}}
      AND ({{service:String}} = '' OR service_name = {{service:String}})
      AND timestamp >= fromUnixTimestamp64Nano({{read_start:Int64}})
      AND timestamp < fromUnixTimestamp64Nano({{end:Int64}})
      AND arrayAll((ak, av) -> {_lookup("ak")} = av, {{attr_keys:Array(String)}}, {{attr_values:Array(String)}})"""

_WINDOW = (
    f"WINDOW w AS (PARTITION BY {_STREAM}, aggregation_temporality "
    "ORDER BY timestamp ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
)


def _limit_series(inner: str) -> str:
    """At most ``series_limit`` series (one more tells the caller the answer was cut)."""
    return f"""SELECT * FROM (
    SELECT *, dense_rank() OVER (ORDER BY labels) AS series_rank FROM ({inner})
)
WHERE series_rank <= {{series_limit:UInt32}}
ORDER BY labels, bucket"""


# -- monotonic sums: increase per step -------------------------------------------------------------
# Per point: delta -> its value; cumulative -> value - previous value of the stream, or the value
# itself after a reset (value dropped or start time changed); the first point of a stream counts
# in full only if the stream started inside what was read (else it is only the baseline: NaN).
SUM_INCREASE = _limit_series(f"""
SELECT labels, bucket, sum(inc) AS increase, toFloat64(nan) AS v_avg, toFloat64(nan) AS v_min,
       toFloat64(nan) AS v_max, toFloat64(nan) AS v_last
FROM (
    SELECT labels, intDiv(ts, {{step:Int64}}) * {{step:Int64}} AS bucket,
        multiIf(
            aggregation_temporality = 1, value,
            rn = 1, if(start_ns >= {{read_start:Int64}} AND start_ns > 0, value, nan),
            start_ns != prev_start OR value < prev_value, value,
            value - prev_value) AS inc
    FROM (
        SELECT {_LABELS} AS labels, toUnixTimestamp64Nano(timestamp) AS ts,
            toUnixTimestamp64Nano(start_timestamp) AS start_ns, value, aggregation_temporality,
            row_number() OVER w AS rn,
            lagInFrame(value) OVER w AS prev_value,
            lagInFrame(toUnixTimestamp64Nano(start_timestamp)) OVER w AS prev_start
        FROM metrics_sum
        WHERE {_FILTER}
          AND is_monotonic
        {_WINDOW}
    )
)
WHERE bucket >= {{start:Int64}} AND NOT isNaN(inc)
GROUP BY labels, bucket""")


def _values(table: str) -> str:
    return _limit_series(f"""
SELECT labels, bucket, toFloat64(nan) AS increase, avg(value) AS v_avg, min(value) AS v_min,
       max(value) AS v_max, argMax(value, ts) AS v_last
FROM (
    SELECT {_LABELS} AS labels, toUnixTimestamp64Nano(timestamp) AS ts,
        intDiv(ts, {{step:Int64}}) * {{step:Int64}} AS bucket, value
    FROM {table}
    WHERE {_FILTER}
)
WHERE bucket >= {{start:Int64}}
GROUP BY labels, bucket""")


#: avg/min/max/last of the point values per step, for gauges and sums.
GAUGE_VALUES = _values("metrics_gauge")
SUM_VALUES = _values("metrics_sum")


# Increases of explicit-bucket histogram points, given per stream ordered by time with the previous
# point's values (prev_*, window w): mode 0 a baseline (skipped), 1 the point counts in full (delta; the
# first point of a stream that started in the read window; a reset: start time changed, count or a
# bucket went down, bounds changed), 2 the difference to the previous point. Shared with the SLI
# queries (slo/sql.py); {read_start} names the parameter holding the read window's start (ns).
HISTOGRAM_INCREASE_COLUMNS = """multiIf(
    aggregation_temporality = 1, 1,
    rn = 1, if(start_ns >= {{{read_start}:Int64}} AND start_ns > 0, 1, 0),
    start_ns != prev_start OR cnt < prev_cnt OR bounds != prev_bounds
        OR arrayExists((x, y) -> x < y, counts_f, arrayResize(prev_counts, length(counts_f))), 1,
    2) AS mode,
    if(mode = 2, arrayMap((x, y) -> x - y, counts_f, arrayResize(prev_counts, length(counts_f))),
       counts_f) AS inc_counts,
    if(mode = 2, cnt - prev_cnt, cnt) AS inc_count"""

# -- explicit-bucket histograms ---------------------------------------------------------------------
# Increases per point as HISTOGRAM_INCREASE_COLUMNS above, merged per series and step.
HISTOGRAM = _limit_series(f"""
SELECT labels, bucket, n, s, b, c, cum, arrayElement(cum, -1) AS total,
    {{q:Float64}} * total AS rank_, arrayFirstIndex(x -> x >= rank_, cum) AS i_, length(b) AS nb,
    if(i_ > 1, b[greatest(i_ - 1, 1)], 0) AS lo,
    multiIf(
        nb = 0 OR total = 0 OR i_ = 0, nan,
        i_ > nb, b[nb],
        i_ = 1 AND b[1] <= 0, b[1],
        lo + (b[i_] - lo) * if(c[i_] = 0, 0, (rank_ - if(i_ > 1, cum[greatest(i_ - 1, 1)], 0)) / c[i_])
    ) AS quantile
FROM (
    SELECT labels, bucket, sum(n1) AS n, sum(s1) AS s,
        -- Points with other bounds cannot be merged: the bound set with most observations wins.
        argMax((bounds, counts), n1) AS bc, bc.1 AS b, bc.2 AS c, arrayCumSum(c) AS cum
    FROM (
        SELECT labels, bucket, bounds, sumForEach(inc_counts) AS counts, sum(inc_count) AS n1,
            sum(inc_sum) AS s1
        FROM (
            SELECT labels, intDiv(ts, {{step:Int64}}) * {{step:Int64}} AS bucket, bounds,
                {HISTOGRAM_INCREASE_COLUMNS.format(read_start="read_start")},
                if(mode = 2, total_sum - prev_sum, total_sum) AS inc_sum
            FROM (
                SELECT {_LABELS} AS labels, toUnixTimestamp64Nano(timestamp) AS ts,
                    toUnixTimestamp64Nano(start_timestamp) AS start_ns, aggregation_temporality,
                    explicit_bounds AS bounds, arrayMap(x -> toFloat64(x), bucket_counts) AS counts_f,
                    toFloat64(count) AS cnt, sum AS total_sum,
                    row_number() OVER w AS rn,
                    lagInFrame(toUnixTimestamp64Nano(start_timestamp)) OVER w AS prev_start,
                    lagInFrame(explicit_bounds) OVER w AS prev_bounds,
                    lagInFrame(arrayMap(x -> toFloat64(x), bucket_counts)) OVER w AS prev_counts,
                    lagInFrame(toFloat64(count)) OVER w AS prev_cnt,
                    lagInFrame(sum) OVER w AS prev_sum
                FROM metrics_histogram
                WHERE {_FILTER}
                {_WINDOW}
            )
        )
        WHERE mode > 0 AND bucket >= {{start:Int64}}
        GROUP BY labels, bucket, bounds
    )
    GROUP BY labels, bucket
)""")


# -- exponential histograms ------------------------------------------------------------------------
def _sparse(offset: str, counts: str) -> str:
    """A dense OTLP bucket run as ``(indices Array(Int64), counts Array(Float64))``."""
    return (
        f"(arrayMap(k -> toInt64({offset}) + toInt64(k), range(length({counts}))), "
        f"arrayMap(x -> toFloat64(x), {counts}))"
    )


def _minus(current: str, previous: str, shift: str) -> str:
    """``current - previous`` per bucket index, ``previous`` first downscaled by ``shift`` (i >> shift).

    ``sumMap`` adds up the counts of equal indices (the downscaling merges neighbours) and drops the
    buckets whose difference is 0.
    """
    return (
        f"arrayReduce('sumMap', [arrayConcat({current}.1, arrayMap(k -> bitShiftRight(k, {shift}), {previous}.1))], "
        f"[arrayConcat({current}.2, arrayMap(x -> -x, {previous}.2))])"
    )


def _downscaled(buckets: str, shift: str) -> str:
    return f"arrayMap(k -> bitShiftRight(k, {shift}), {buckets}.1)"


# Per point, increases as for explicit histograms (mode 0 baseline, 1 in full, 2 difference to the
# previous point). A cumulative stream only ever lowers its scale (an SDK downscales as the range of
# values grows), so the previous point is downscaled to this one's scale before subtracting. Reset
# (Prometheus' rules for native histograms): start time changed, the scale went up, the zero
# threshold went down, count or zero count went down, or any bucket went down.
# Per output series and step, every point is downscaled to the smallest scale among them
# (s_min: index i at scale s becomes i >> (s - s_min)) and the buckets are added by index (sumMap).
# The quantile itself is computed from the merged buckets in store/exp_histogram.py.
EXP_HISTOGRAM = _limit_series(f"""
SELECT labels, bucket, sum(inc_count) AS n, sum(inc_sum) AS s, sum(inc_zero) AS zero_count,
    any(s_min) AS scale, max(zt) AS zero_threshold,
    sumMap({_downscaled("inc_pos", "sc - s_min")}, inc_pos.2) AS pos, pos.1 AS pos_index, pos.2 AS pos_count,
    sumMap({_downscaled("inc_neg", "sc - s_min")}, inc_neg.2) AS neg, neg.1 AS neg_index, neg.2 AS neg_count
FROM (
    SELECT *, min(sc) OVER (PARTITION BY labels, bucket) AS s_min
    FROM (
        SELECT labels, intDiv(ts, {{step:Int64}}) * {{step:Int64}} AS bucket, sc, zt,
            {_sparse("pos_o", "pos_c")} AS cur_pos, {_sparse("neg_o", "neg_c")} AS cur_neg,
            greatest(prev_sc - sc, 0) AS shift,
            {_minus("cur_pos", _sparse("prev_pos_o", "prev_pos_c"), "shift")} AS diff_pos,
            {_minus("cur_neg", _sparse("prev_neg_o", "prev_neg_c"), "shift")} AS diff_neg,
            multiIf(
                aggregation_temporality = 1, 1,
                rn = 1, if(start_ns >= {{read_start:Int64}} AND start_ns > 0, 1, 0),
                start_ns != prev_start OR sc > prev_sc OR zt < prev_zt OR cnt < prev_cnt OR zc < prev_zc
                    OR arrayExists(x -> x < 0, diff_pos.2) OR arrayExists(x -> x < 0, diff_neg.2), 1,
                2) AS mode,
            if(mode = 2, diff_pos, cur_pos) AS inc_pos,
            if(mode = 2, diff_neg, cur_neg) AS inc_neg,
            if(mode = 2, zc - prev_zc, zc) AS inc_zero,
            if(mode = 2, cnt - prev_cnt, cnt) AS inc_count,
            if(mode = 2, total_sum - prev_sum, total_sum) AS inc_sum
        FROM (
            SELECT {_LABELS} AS labels, toUnixTimestamp64Nano(timestamp) AS ts,
                toUnixTimestamp64Nano(start_timestamp) AS start_ns, aggregation_temporality,
                scale AS sc, zero_threshold AS zt, toFloat64(zero_count) AS zc, toFloat64(count) AS cnt,
                sum AS total_sum,
                positive_offset AS pos_o, positive_bucket_counts AS pos_c,
                negative_offset AS neg_o, negative_bucket_counts AS neg_c,
                row_number() OVER w AS rn,
                lagInFrame(toUnixTimestamp64Nano(start_timestamp)) OVER w AS prev_start,
                lagInFrame(scale) OVER w AS prev_sc,
                lagInFrame(zero_threshold) OVER w AS prev_zt,
                lagInFrame(toFloat64(zero_count)) OVER w AS prev_zc,
                lagInFrame(toFloat64(count)) OVER w AS prev_cnt,
                lagInFrame(sum) OVER w AS prev_sum,
                lagInFrame(positive_offset) OVER w AS prev_pos_o,
                lagInFrame(positive_bucket_counts) OVER w AS prev_pos_c,
                lagInFrame(negative_offset) OVER w AS prev_neg_o,
                lagInFrame(negative_bucket_counts) OVER w AS prev_neg_c
            FROM metrics_exponential_histogram
            WHERE {_FILTER}
            {_WINDOW}
        )
    )
    WHERE mode > 0 AND bucket >= {{start:Int64}}
)
GROUP BY labels, bucket""")


# -- summaries --------------------------------------------------------------------------------------
# OTLP summaries are cumulative (count and sum since the start time). Increases of count and sum as
# for a cumulative counter; a reset is a changed start time or a count that went down.
# (The table has no aggregation_temporality to partition by.)
_SUMMARY_WINDOW = (
    f"WINDOW w AS (PARTITION BY {_STREAM} "
    "ORDER BY timestamp ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
)
SUMMARY = _limit_series(f"""
SELECT labels, bucket, sum(inc_count) AS n, sum(inc_sum) AS s
FROM (
    SELECT labels, intDiv(ts, {{step:Int64}}) * {{step:Int64}} AS bucket,
        multiIf(
            rn = 1, if(start_ns >= {{read_start:Int64}} AND start_ns > 0, 1, 0),
            start_ns != prev_start OR cnt < prev_cnt, 1,
            2) AS mode,
        if(mode = 2, cnt - prev_cnt, cnt) AS inc_count,
        if(mode = 2, total_sum - prev_sum, total_sum) AS inc_sum
    FROM (
        SELECT {_LABELS} AS labels, toUnixTimestamp64Nano(timestamp) AS ts,
            toUnixTimestamp64Nano(start_timestamp) AS start_ns, toFloat64(count) AS cnt, sum AS total_sum,
            row_number() OVER w AS rn,
            lagInFrame(toUnixTimestamp64Nano(start_timestamp)) OVER w AS prev_start,
            lagInFrame(toFloat64(count)) OVER w AS prev_cnt,
            lagInFrame(sum) OVER w AS prev_sum
        FROM metrics_summary
        WHERE {_FILTER}
        {_SUMMARY_WINDOW}
    )
)
WHERE mode > 0 AND bucket >= {{start:Int64}}
GROUP BY labels, bucket""")

# The reported quantiles of the latest point per series and step, the value for quantile ``q``
# (compared within 1e-9: "p99.9" parses to 0.9990000000000001), and how many streams the series
# merges in the step (reported quantiles of several streams cannot be combined).
SUMMARY_QUANTILE = _limit_series(f"""
SELECT labels, bucket, uniqExact(stream) AS streams, argMax((quantiles, quantile_values), ts) AS latest,
    latest.1 AS reported, arrayFirstIndex(x -> abs(x - {{q:Float64}}) < 1e-9, reported) AS qi,
    if(qi = 0, nan, latest.2[qi]) AS quantile
FROM (
    SELECT {_LABELS} AS labels, toUnixTimestamp64Nano(timestamp) AS ts,
        intDiv(ts, {{step:Int64}}) * {{step:Int64}} AS bucket, {_STREAM} AS stream, quantiles, quantile_values
    FROM metrics_summary
    WHERE {_FILTER}
)
WHERE bucket >= {{start:Int64}}
GROUP BY labels, bucket""")


# -- what exists ------------------------------------------------------------------------------------
def _catalog(type_: str, table: str, grouped: bool) -> str:
    if table == "metrics_sum":
        sum_cols = "max(is_monotonic) AS monotonic, arraySort(groupUniqArray(aggregation_temporality)) AS temporalities"
    else:
        sum_cols = "CAST(NULL, 'Nullable(Bool)') AS monotonic, CAST([], 'Array(Int8)') AS temporalities"
    if grouped:
        return f"""
SELECT toString(metric_name) AS name, '{type_}' AS type, toString(any(metric_unit)) AS unit,
    max(metric_description) AS description, {sum_cols},
    arraySort(groupUniqArray(toString(service_name))) AS services,
    uniqExact(service_name, {_sorted_pairs("attributes")}) AS series_count
FROM {table}
WHERE timestamp >= fromUnixTimestamp64Nano({{start:Int64}}) AND timestamp < fromUnixTimestamp64Nano({{end:Int64}})
  AND ({{service:String}} = '' OR service_name = {{service:String}})
GROUP BY metric_name"""
    return f"""
SELECT '{type_}' AS type, toString(any(metric_unit)) AS unit, max(metric_description) AS description,
    {sum_cols}, count() AS points,
    countIf(timestamp >= fromUnixTimestamp64Nano({{start:Int64}})
            AND timestamp < fromUnixTimestamp64Nano({{end:Int64}})) AS in_range
FROM {table}
WHERE metric_name = {{name:String}}
  AND ({{service:String}} = '' OR service_name = {{service:String}})
  AND timestamp >= fromUnixTimestamp64Nano({{lookup_start:Int64}})
  AND timestamp < fromUnixTimestamp64Nano({{lookup_end:Int64}})
HAVING points > 0"""


#: Metric names with type, unit, description, services and number of series in [start, end).
LIST_METRICS = (
    "SELECT * FROM ("
    + "\nUNION ALL".join(_catalog(t, table, True) for t, table in TABLES.items())
    + "\n)\nORDER BY name, type\nLIMIT {limit:UInt32}"
)

#: The kinds (tables) holding metric ``name`` in [lookup_start, lookup_end), and whether any point is
#: in [start, end): an unknown name is a 404, a known one without points in range an empty answer.
METRIC_KINDS = "\nUNION ALL".join(_catalog(t, table, False) for t, table in TABLES.items())
