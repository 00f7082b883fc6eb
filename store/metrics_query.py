"""Reading OTLP metrics: what exists, and series aligned to a step (rates, increases, quantiles).

Used by the JSON API (``ui/api_metrics.py``) and meant for the SLO engine. Bad arguments raise
``ValueError`` (the API answers 400); a metric with no points at all raises :class:`MetricNotFound`.
Formulas: docs/metrics-api.md.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from store import exp_histogram
from store.backend import Backend
from store.sql import metrics as sql

#: How far before the first step a cumulative stream's previous point is looked for.
MIN_LOOKBACK_NS = 10 * 60 * 10**9
#: A name with no points in the range is still "known" (an empty answer, not 404) if it has points
#: within this long of now (the default retention).
KNOWN_WINDOW_NS = 7 * 24 * 3600 * 10**9
MAX_NAME_LENGTH = 1024
#: Times the engine's Int64 nanoseconds hold with room for the lookback: 1970 to 2200.
MAX_TIME_NS = 7_258_118_400 * 10**9
TYPES = tuple(sql.TABLES)
_TEMPORALITY = {0: "unspecified", 1: "delta", 2: "cumulative"}
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_VALUE_AGGS = ("avg", "min", "max", "last")
#: For the histogram-like types (explicit, exponential, summary): observations and their sum.
_OBSERVATION_AGGS = ("avg", "count", "rate", "sum_increase", "sum_rate")
#: Two reported summary quantiles closer than this are the same ("p99.9" is 0.9990000000000001).
QUANTILE_TOLERANCE = 1e-9


class MetricNotFound(LookupError):
    """No point of this metric (with the given service) is stored near the range."""


@dataclass(frozen=True)
class Agg:
    """A parsed ``agg``: ``kind`` is rate, increase, avg, min, max, last, count, sum_increase, sum_rate
    or quantile."""

    kind: str
    q: float = 0.5

    @property
    def label(self) -> str:
        return f"quantile:{self.q:g}" if self.kind == "quantile" else self.kind


def parse_agg(text: str) -> Agg:
    """``rate``, ``increase``, ``avg``, ``min``, ``max``, ``last``, ``count``, ``sum_increase``, ``sum_rate``,
    ``p50``…``p99.9``, ``quantile:0.x``."""
    value = text.strip().lower()
    if value in ("rate", "increase", "count", "sum_increase", "sum_rate", *_VALUE_AGGS):
        return Agg(value)
    match = _PERCENTILE.fullmatch(value)
    if match:
        return Agg("quantile", float(match.group(1)) / 100)
    if value.startswith("quantile:"):
        try:
            q = float(value.removeprefix("quantile:"))
        except ValueError:
            q = math.nan
        if not 0 <= q <= 1:  # also refuses nan
            raise ValueError(f"agg: {text!r}: the quantile must be a number from 0 to 1")
        return Agg("quantile", q)
    raise ValueError(
        f"agg: {text!r} is not one of rate, increase, avg, min, max, last, count, sum_increase, sum_rate, "
        "p50, p90, p95, p99, quantile:0.x"
    )


def _check_times(start_ns: int, end_ns: int) -> None:
    for label, value in (("start", start_ns), ("end", end_ns)):
        if not 0 <= value <= MAX_TIME_NS:
            raise ValueError(f"{label} must lie between 1970 and 2200")
    if start_ns >= end_ns:
        raise ValueError("start must be before end")


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"metric name must have 1 to {MAX_NAME_LENGTH} characters")


def _temporality(values: list[int] | None) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        return "mixed"
    return _TEMPORALITY.get(values[0], str(values[0]))


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def list_metrics(
    backend: Backend, start_ns: int, end_ns: int, service: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], bool]:
    """Metrics with points in [start, end), by name then type, and whether ``limit`` cut the list."""
    _check_times(start_ns, end_ns)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    params = {"start": start_ns, "end": end_ns, "service": service or "", "limit": limit + 1}
    rows = backend.query_arrow(sql.LIST_METRICS, params).to_pylist()
    out = []
    for row in rows[:limit]:
        item: dict[str, Any] = {
            "name": row["name"],
            "type": row["type"],
            "unit": row["unit"],
            "description": row["description"],
            "services": row["services"],
            "series": row["series_count"],
        }
        if row["type"] == "sum":
            item["monotonic"] = bool(row["monotonic"])
            item["temporality"] = _temporality(row["temporalities"])
        out.append(item)
    return out, len(rows) > limit


@dataclass(frozen=True)
class SeriesQuery:
    """One metric's series over [start, end) in steps of ``step_ns`` (aligned to multiples of it)."""

    name: str
    start_ns: int
    end_ns: int
    step_ns: int
    agg: str | None = None
    service: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()
    group_by: tuple[str, ...] = ()
    type: str | None = None
    limit: int = 100


def _kind(backend: Backend, q: SeriesQuery, start_ns: int, read_start: int) -> dict[str, Any]:
    now = time.time_ns()
    params = {
        "name": q.name,
        "service": q.service or "",
        "start": start_ns,
        "lookup_start": min(read_start, now - KNOWN_WINDOW_NS),
        "lookup_end": max(q.end_ns, now + KNOWN_WINDOW_NS),
        "end": q.end_ns,
    }
    kinds = backend.query_arrow(sql.METRIC_KINDS, params).to_pylist()
    if q.type is not None:
        if q.type not in TYPES:
            raise ValueError(f"type: {q.type!r} is not one of {', '.join(TYPES)}")
        kinds = [k for k in kinds if k["type"] == q.type]
    if not kinds:
        where = f" of service {q.service!r}" if q.service else ""
        raise MetricNotFound(f"metric {q.name!r}{where} not found")
    if len(kinds) > 1:
        names = ", ".join(sorted(k["type"] for k in kinds))
        raise ValueError(f"metric {q.name!r} is stored as several types ({names}); choose one with type=")
    return kinds[0]


def _allowed(kind: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(default agg, allowed agg kinds) for a metric kind."""
    if kind["type"] == "sum" and kind["monotonic"]:
        return "rate", ("rate", "increase", *_VALUE_AGGS)
    if kind["type"] in ("sum", "gauge"):
        return "avg", _VALUE_AGGS
    if kind["type"] in ("histogram", "exponential_histogram"):
        return "p50", ("quantile", *_OBSERVATION_AGGS)
    if kind["type"] == "summary":
        # avg, not p50: a summary's quantiles are whichever its client chose to report.
        return "avg", ("quantile", *_OBSERVATION_AGGS)
    return "", ()


def series(backend: Backend, q: SeriesQuery) -> dict[str, Any]:
    """The series of one metric: ``{"series": [{"labels": {...}, "points": [[ms, value], ...]}], ...}``.

    Points are labelled with the start of their step; steps without data are left out.
    """
    _check_name(q.name)
    if q.step_ns <= 0:
        raise ValueError("step must be positive")
    _check_times(q.start_ns, q.end_ns)
    if q.limit < 1:
        raise ValueError("limit must be at least 1")
    for key, _ in q.attrs:
        if not key:
            raise ValueError("attr: the key must not be empty (KEY=VALUE)")
    if any(not key for key in q.group_by):
        raise ValueError("group_by: the key must not be empty")
    start = max(0, q.start_ns // q.step_ns * q.step_ns)
    read_start = max(0, start - max(q.step_ns, MIN_LOOKBACK_NS))
    kind = _kind(backend, q, start, read_start)
    default, allowed = _allowed(kind)
    if not allowed:
        raise ValueError(f"series of {kind['type']} metrics are not supported yet")
    agg = parse_agg(q.agg or default)
    if agg.kind not in allowed:
        shown = ", ".join("p50…p99, quantile:0.x" if a == "quantile" else a for a in allowed)
        raise ValueError(f"agg: {agg.label!r} does not apply to this {kind['type']} metric (use {shown})")

    params: dict[str, Any] = {
        "name": q.name,
        "service": q.service or "",
        "attr_keys": [k for k, _ in q.attrs],
        "attr_values": [v for _, v in q.attrs],
        "group_by": list(q.group_by),
        "start": start,
        "read_start": read_start,
        "end": q.end_ns,
        "step": q.step_ns,
        "series_limit": q.limit + 1,
        "q": agg.q,
    }
    if kind["type"] == "histogram":
        statement = sql.HISTOGRAM
    elif kind["type"] == "exponential_histogram":
        statement = sql.EXP_HISTOGRAM
    elif kind["type"] == "summary" and agg.kind == "quantile":
        statement = sql.SUMMARY_QUANTILE
        params["read_start"] = start  # the latest point of each step, no previous points
    elif kind["type"] == "summary":
        statement = sql.SUMMARY
    elif agg.kind in ("rate", "increase"):
        statement = sql.SUM_INCREASE
    else:
        statement = sql.SUM_VALUES if kind["type"] == "sum" else sql.GAUGE_VALUES
        params["read_start"] = start  # no previous points needed
    rows = backend.query_arrow(statement, params).to_pylist() if kind["in_range"] else []
    if kind["type"] == "summary" and agg.kind == "quantile":
        _check_summary_quantile(q.name, agg, rows)

    step_s = q.step_ns / 10**9
    out: list[dict[str, Any]] = []
    current: tuple | None = None
    truncated = False
    for row in rows:
        labels = _labels(row)
        if labels != current:
            if len(out) == q.limit:
                truncated = True
                break
            current = labels
            out.append({"labels": dict(labels), "points": []})
        out[-1]["points"].append([row["bucket"] // 10**6, _number(_value(row, kind["type"], agg, step_s))])

    result: dict[str, Any] = {
        "name": q.name,
        "type": kind["type"],
        "unit": kind["unit"],
        "description": kind["description"],
        "agg": agg.label,
        "start": start // 10**6,
        "end": q.end_ns // 10**6,
        "step_ms": q.step_ns // 10**6,
        "series": out,
        "truncated": truncated,
    }
    if kind["type"] == "sum":
        result["monotonic"] = bool(kind["monotonic"])
        result["temporality"] = _temporality(kind["temporalities"])
    return result


def _check_summary_quantile(name: str, agg: Agg, rows: list[dict[str, Any]]) -> None:
    """Refuse a quantile no point reports, and series that merge several streams.

    Reported quantiles cannot be combined (the median of two medians is not the median of the union;
    Prometheus cannot aggregate summary quantiles either), so each series must be one stream.
    """
    reported = sorted({x for row in rows for x in row["reported"]})
    if rows and not any(abs(x - agg.q) < QUANTILE_TOLERANCE for x in reported):
        shown = ", ".join(f"{x:g}" for x in reported) or "none"
        raise ValueError(
            f"agg: quantile {agg.q:g} is not reported by summary metric {name!r} "
            f"(it reports {shown}; a summary's quantiles are computed by its client)"
        )
    for row in rows:
        if row["streams"] > 1:
            labels = ", ".join(f"{k}={v}" for k, v in _labels(row))
            raise ValueError(
                f"agg: the series {{{labels}}} merges {row['streams']} streams of summary metric {name!r} "
                "(they differ in resource attributes, scope, or attributes group_by leaves out); "
                "their reported quantiles cannot be combined. Narrow it with attr= or service=, split it "
                "with group_by= keys that tell the streams apart (e.g. group_by=host.name), or use agg=avg"
            )


def _labels(row: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(pair.values()) if isinstance(pair, dict) else tuple(pair) for pair in row["labels"])


def _value(row: dict[str, Any], type_: str, agg: Agg, step_s: float) -> float | None:
    if type_ in ("histogram", "exponential_histogram", "summary"):
        if agg.kind == "quantile" and type_ == "exponential_histogram":
            return exp_histogram.quantile(
                agg.q,
                row["scale"],
                row["zero_count"],
                row["zero_threshold"],
                row["pos_index"],
                row["pos_count"],
                row["neg_index"],
                row["neg_count"],
            )
        if agg.kind == "quantile":
            return row["quantile"]
        if agg.kind == "sum_increase":
            return row["s"]
        if agg.kind == "sum_rate":
            return row["s"] / step_s
        if agg.kind == "count":
            return row["n"]
        if agg.kind == "rate":
            return row["n"] / step_s
        return row["s"] / row["n"] if row["n"] else None  # avg
    if agg.kind == "increase":
        return row["increase"]
    if agg.kind == "rate":
        return row["increase"] / step_s
    return row[f"v_{agg.kind}"]
