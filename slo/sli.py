"""SLI queries: per-minute total and bad events of an SLO, from spans, logs or metrics.

:func:`minute_counts` is the one entry point. It answers a span SLI from the RED roll-up ``red_1m``
whenever the roll-up holds everything the SLI asks about (:func:`uses_roll_up`; the cost then
depends on the number of roll-up rows, not on span volume), and from raw spans grouped by minute
otherwise: the same answers, slower. Conventions (which minute an event or a metric point belongs
to, how filters read attributes, how log bodies match) are in ``docs/slo-sli.md``.

Bad SLOs (an unknown filter operator, a text where a number is needed, a histogram threshold that
is not a bucket bound) raise :class:`ValueError` naming the SLO and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, get_args

import numpy as np
import pyarrow as pa

from slo import sql
from slo.model import (
    MINUTE_S,
    Filter,
    FilterOp,
    LogFilter,
    LogSli,
    MetricSelector,
    MetricSli,
    Slo,
    SpanKind,
    SpanSli,
)
from slo.series import MinuteCounts
from store import red
from store.backend import Backend, StoreError, StoreUnavailable
from store.explore import tokens
from store.tenancy import check_tenant, tenant_scope

NS = 10**9
#: How far before the range a metric stream's previous point is looked for: a cumulative stream
#: whose last point before the range is older than this starts the range with a baseline only.
METRIC_LOOKBACK_S = 3600
# OpenTelemetry renamed these; instrumentations of both generations are in use.
_ALIAS_GROUPS = (
    ("http.response.status_code", "http.status_code"),
    ("http.request.method", "http.method"),
    ("deployment.environment.name", "deployment.environment"),
    ("rpc.system.name", "rpc.system"),
)
#: Attribute names read as one: the current semantic-convention name first, then the older one.
ALIASES: Mapping[str, tuple[str, ...]] = {name: group for group in _ALIAS_GROUPS for name in group}

#: Span attributes red_1m keeps as text dimensions, by their position in ``sql.RED_DIMENSIONS``.
_RED_TEXT_COLUMNS = {
    "http.route": 1,
    "rpc.method": 3,
    "service.version": 4,
    "deployment.environment.name": 5,
    "deployment.environment": 5,
}
_RED_STATUS_COLUMN = 2
_STATUS_KEYS = ALIASES["http.status_code"]
#: Span kinds that red_1m holds every span of (of the other kinds, only root spans).
_RED_KINDS = frozenset({"SERVER", "CONSUMER"})
_OPS = frozenset(get_args(FilterOp))
_SPAN_KINDS = frozenset(get_args(SpanKind))
_MAX_NS = 2**64 - 1


# -- public -------------------------------------------------------------------------------------


def minute_counts(
    backend: Backend, slo: Slo, start_s: int, end_s: int, roll_up: bool = True
) -> dict[tuple[str, ...], MinuteCounts]:
    """Total and bad events of ``slo`` per minute of ``[start_s, end_s)`` (unix seconds, whole minutes).

    One entry per value of ``slo.group_by`` seen in the range (the key is the tuple of the group
    attributes' values, '' where missing); without ``group_by`` exactly one entry, ``()``, also when
    there are no events. Every minute is present, zero where nothing happened.
    ``roll_up=False`` reads raw spans even where ``red_1m`` could answer (for checks and tests).
    """
    _check_range(start_s, end_s)
    sli = slo.sli
    # An SLO of a tenant counts only that tenant's events; one without a tenant counts every tenant's.
    with tenant_scope(slo.tenant or None):
        if isinstance(sli, SpanSli):
            plan = _roll_up_plan(slo, sli)
            if roll_up and isinstance(plan, dict):
                return _spans_roll_up(backend, slo, sli, plan, start_s, end_s)
            return _spans_raw(backend, slo, sli, start_s, end_s)
        if isinstance(sli, LogSli):
            return _logs(backend, slo, sli, start_s, end_s)
        if isinstance(sli, MetricSli):
            return _metrics(backend, slo, sli, start_s, end_s)
    raise TypeError(f"SLO {slo.name!r}: unknown SLI type {type(sli).__name__}")


#: One read of :func:`minute_counts_many`: an SLO and its range ``[start_s, end_s)``.
Read = tuple[Slo, int, int]
Counts = dict[tuple[str, ...], MinuteCounts]
#: SLOs per batched statement: bounds the statement's parameters and the rows of one answer.
BATCH_SLOS = 256  # at most 65,535 (``_split`` sorts 16-bit indexes)


def minute_counts_many(backend: Backend, reads: Sequence[Read]) -> list[Counts | ValueError | StoreError]:
    """:func:`minute_counts` of every read, in order: the counts, or the ``ValueError`` or
    ``StoreError`` that read alone raises (:class:`StoreUnavailable` is raised).

    The span SLIs that ``red_1m`` answers are read with one statement per tenant
    (``sql.SPANS_ROLL_UP_MANY``), each SLO over its own range; the others one by one. The counts are
    exactly :func:`minute_counts`'s: the batched statement runs the same fragments per SLO.
    """
    out: list[Counts | ValueError | StoreError | None] = [None] * len(reads)
    batches: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for n, (slo, start_s, end_s) in enumerate(reads):
        try:
            _check_range(start_s, end_s)
            if slo.tenant:
                check_tenant(slo.tenant)  # as tenant_scope would, for this SLO alone
            plan = _roll_up_plan(slo, slo.sli) if isinstance(slo.sli, SpanSli) else None
        except ValueError as exc:
            out[n] = exc
            continue
        if isinstance(plan, dict):
            batches.setdefault(slo.tenant, []).append((n, {**plan, "start_s": start_s, "end_s": end_s}))
        else:
            out[n] = _one(backend, slo, start_s, end_s)
    for tenant, batch in batches.items():
        for first in range(0, len(batch), BATCH_SLOS):
            chunk = batch[first : first + BATCH_SLOS]
            with tenant_scope(tenant or None):
                for n, counts in zip((n for n, _ in chunk), _roll_up_many(backend, reads, chunk), strict=True):
                    out[n] = counts
    assert None not in out  # every read was answered, in its place
    return out  # type: ignore[return-value]


def _one(backend: Backend, slo: Slo, start_s: int, end_s: int) -> Counts | ValueError | StoreError:
    try:
        return minute_counts(backend, slo, start_s, end_s)
    except StoreUnavailable:
        raise
    except (ValueError, StoreError) as exc:
        return exc


def _roll_up_many(
    backend: Backend, reads: Sequence[Read], batch: Sequence[tuple[int, dict[str, Any]]]
) -> list[Counts | ValueError | StoreError]:
    """The counts of SLOs of one tenant that ``red_1m`` answers (``batch``: read index, parameters)."""
    if len(batch) == 1:  # nothing to share: the single-SLO statement
        n, _ = batch[0]
        return [_one(backend, *reads[n])]
    services = sorted({params["service"] for _, params in batch})
    service_slos: list[list[int]] = [[] for _ in services]
    for i, (_, params) in enumerate(batch, start=1):
        service_slos[services.index(params["service"])].append(i)
    batched = _batched_params([params for _, params in batch])
    batched |= {
        "services": services,
        "service_slos": service_slos,
        "min_start_s": min(batched["start_s"]),
        "max_end_s": max(batched["end_s"]),
    }
    try:
        table = backend.query_arrow(sql.SPANS_ROLL_UP_MANY, batched)
    except StoreUnavailable:
        raise
    except StoreError:
        # One SLO's failure must not fail the others: read them one by one, each with its own error.
        return [_one(backend, *reads[n]) for n, _ in batch]
    out: list[Counts | ValueError | StoreError] = []
    grouped = [bool(reads[n][0].group_by) for n, _ in batch]
    for i, share in enumerate(_split(table, grouped), start=1):
        slo, start_s, end_s = reads[batch[i - 1][0]]
        assert isinstance(slo.sli, SpanSli)  # only span SLIs have a roll-up plan
        try:
            out.append(_roll_up_counts(backend, slo, slo.sli, share, start_s, end_s))
        except StoreUnavailable:
            raise
        except (ValueError, StoreError) as exc:
            out.append(exc)
    return out


def _batched_params(each: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters of ``sql.per_slo`` fragments from each SLO's own: scalars as one array, arrays
    concatenated with each SLO's slice as ``NAME_at`` (1-based) and ``NAME_n``."""
    out: dict[str, Any] = {}
    for name in each[0]:
        values = [params[name] for params in each]
        if not isinstance(values[0], list):
            out[name] = values
            continue
        out[name], out[f"{name}_at"], out[f"{name}_n"] = [], [], []
        for value in values:
            out[f"{name}_at"].append(len(out[name]) + 1)
            out[f"{name}_n"].append(len(value))
            out[name].extend(value)
    return out


def _split(table: pa.Table, grouped: Sequence[bool]) -> list[pa.Table]:
    """The rows of each ``slo_i`` from 1 to ``len(grouped)``, in the order the statement returned them;
    with ``grp`` only where the SLO is grouped (the rest never read it).

    A cold cycle returns millions of rows: the numeric columns are reordered once with numpy (a
    radix sort on 16-bit indexes) rather than taking every row of the table, list column included.
    """
    if table.num_rows == 0:
        return [table] * len(grouped)
    index = table.column("slo_i").to_numpy().astype(np.uint16)  # BATCH_SLOS fits
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(1, len(grouped) + 2))
    columns = {name: table.column(name).to_numpy()[order] for name in ("minute_s", "n_total", "n_bad", "n_detailed")}
    out = []
    for i, with_group in enumerate(grouped):
        rows = slice(bounds[i], bounds[i + 1])
        share = {name: values[rows] for name, values in columns.items()}
        if with_group:
            share["grp"] = table.column("grp").take(pa.array(order[rows]))
        out.append(pa.table(share))
    return out


def _check_range(start_s: int, end_s: int) -> None:
    if start_s % MINUTE_S or end_s % MINUTE_S:
        raise ValueError(f"start_s and end_s must be whole minutes, got {start_s} and {end_s}")
    if end_s < start_s:
        raise ValueError(f"end_s ({end_s}) is before start_s ({start_s})")


def uses_roll_up(slo: Slo) -> bool:
    """Whether :func:`minute_counts` reads ``slo`` from ``red_1m`` (only span SLIs can)."""
    return isinstance(slo.sli, SpanSli) and isinstance(_roll_up_plan(slo, slo.sli), dict)


def roll_up_blocker(slo: Slo) -> str | None:
    """Why the span SLI of ``slo`` is read from raw spans; None if it is read from ``red_1m``
    (and for log and metric SLIs, which have no roll-up)."""
    if not isinstance(slo.sli, SpanSli):
        return None
    plan = _roll_up_plan(slo, slo.sli)
    return plan if isinstance(plan, str) else None


def span_params(slo: Slo, roll_up: bool) -> dict[str, Any]:
    """The parameters, without the time range, of the span SLI of ``slo`` for the fragments in
    ``slo/sql.py``: red_1m's (``ROLL_UP_*``, ``ROLL_UP_GROUP``) if ``roll_up`` (which needs
    :func:`uses_roll_up`), else raw spans' (``SPAN_IS_*``, ``RAW_GROUP``). For queries that need
    exactly the SLI's requests and bad events with another grouping (burn attribution)."""
    if not isinstance(slo.sli, SpanSli):
        raise TypeError(f"SLO {slo.name!r} does not have a spans SLI")
    _check_span_sli(slo, slo.sli)
    if not roll_up:
        return _raw_params(slo, slo.sli)
    plan = _roll_up_plan(slo, slo.sli)
    if isinstance(plan, str):
        raise ValueError(f"SLO {slo.name!r} cannot be read from red_1m: {plan}")
    return plan


def log_params(slo: Slo) -> tuple[dict[str, Any], int, int]:
    """The parameters, without the time range, of the log SLI of ``slo`` for ``sql.LOG_TOTAL_PREWHERE``,
    ``sql.log_total_where`` and ``sql.log_is_bad``, with the numbers of total and bad body tokens."""
    if not isinstance(slo.sli, LogSli):
        raise TypeError(f"SLO {slo.name!r} does not have a logs SLI")
    total, n_total = _log_params(slo, "t", slo.sli.total)
    bad, n_bad = _log_params(slo, "b", slo.sli.bad)
    return {**total, **bad, **_group_params(slo), "service": slo.service}, n_total, n_bad


def metric_params(slo: Slo, selector: MetricSelector, start_s: int, end_s: int) -> dict[str, Any]:
    """The parameters of ``sql.METRIC_POINTS`` (and ``RAW_GROUP``) for one selector of ``slo``'s
    metric SLI over ``[start_s, end_s)``: the points the SLI reads, with its lookback."""
    return _MetricRange(start_s, end_s).params(slo, selector)


# -- filters -------------------------------------------------------------------------------------


def _text(value: object) -> str:
    """A filter operand as stored attribute text: integral numbers without '.0', booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(slo: Slo, f: Filter) -> float:
    try:
        number = float(f.value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"SLO {slo.name!r}: filter {f.key} {f.op} {f.value!r} needs a number") from None
    if math.isnan(number):
        raise ValueError(f"SLO {slo.name!r}: filter {f.key} {f.op} compares with NaN")
    return number


def _operands(slo: Slo, f: Filter) -> tuple[str, float, list[str]]:
    """(text, number, set) operands of one filter, checked against its operator."""
    if f.op not in _OPS:
        raise ValueError(f"SLO {slo.name!r}: filter on {f.key!r}: unknown operator {f.op!r}")
    if not f.key:
        raise ValueError(f"SLO {slo.name!r}: a filter has an empty attribute name")
    if f.op in ("in", "not in"):
        if isinstance(f.value, (str, bytes)) or not isinstance(f.value, Iterable):
            raise ValueError(f"SLO {slo.name!r}: filter {f.key} {f.op} needs a list of values")
        return "", 0.0, [_text(v) for v in f.value]
    if f.op in ("=", "!="):
        if isinstance(f.value, tuple):
            raise ValueError(f"SLO {slo.name!r}: filter {f.key} {f.op} needs one value, not a list")
        return _text(f.value), 0.0, []
    return "", _number(slo, f), []


def _filter_params(
    slo: Slo, prefix: str, filters: Sequence[Filter], columns: Sequence[int] | None = None
) -> dict[str, Any]:
    """Parameters of one filter group; by attribute names, or by red_1m ``columns`` (1-based)."""
    operands = [_operands(slo, f) for f in filters]
    params: dict[str, Any] = {
        f"{prefix}_ops": [f.op for f in filters],
        f"{prefix}_text": [o[0] for o in operands],
        f"{prefix}_num": [o[1] for o in operands],
        f"{prefix}_sets": [o[2] for o in operands],
    }
    if columns is None:
        params[f"{prefix}_keys"] = [list(ALIASES.get(f.key, (f.key,))) for f in filters]
    else:
        params[f"{prefix}_cols"] = list(columns)
    return params


def _group_params(slo: Slo) -> dict[str, Any]:
    if any(not key for key in slo.group_by):
        raise ValueError(f"SLO {slo.name!r}: group_by has an empty attribute name")
    return {"g_keys": [list(ALIASES.get(key, (key,))) for key in slo.group_by]}


# -- results -------------------------------------------------------------------------------------


def _arrays(
    rows: Iterable[Mapping[str, Any]] | pa.Table, start_s: int, end_s: int, grouped: bool, *columns: str
) -> dict[tuple[str, ...], list[np.ndarray]]:
    """Per group, one dense per-minute array per result column (minutes outside the range dropped).

    Columnar: a 30-day window is 43,200 minutes per group, too many for a loop per row.
    """
    n = (end_s - start_s) // MINUTE_S
    out: dict[tuple[str, ...], list[np.ndarray]] = {} if grouped else {(): [np.zeros(n) for _ in columns]}
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    if table.num_rows == 0:
        return out
    index = (table.column("minute_s").to_numpy().astype(np.int64) - start_s) // MINUTE_S
    inside = (index >= 0) & (index < n)
    codes = np.zeros(table.num_rows, dtype=np.int64)
    keys: dict[tuple[str, ...], int] = {(): 0}
    if grouped:
        keys = {}
        group_of = [keys.setdefault(tuple(g), len(keys)) for g in table.column("grp").to_pylist()]
        codes = np.asarray(group_of, dtype=np.int64)
    values = [table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns]
    for key, code in keys.items():
        chosen = inside & (codes == code)
        if grouped and not chosen.any():
            continue
        arrays = out.setdefault(key, [np.zeros(n) for _ in columns])
        for array, column_values in zip(arrays, values, strict=True):
            np.add.at(array, index[chosen], column_values[chosen])
    return out


def _counts(
    arrays: dict[tuple[str, ...], list[np.ndarray]], start_s: int
) -> dict[tuple[str, ...], MinuteCounts]:
    return {key: MinuteCounts(start_s, total, bad) for key, (total, bad) in sorted(arrays.items())}


# -- spans ---------------------------------------------------------------------------------------


def _latency_ns(slo: Slo, sli: SpanSli) -> Fraction | None:
    if sli.bad_latency_ms is None:
        return None
    ms = sli.bad_latency_ms
    if not (math.isfinite(ms) and ms >= 0):
        raise ValueError(f"SLO {slo.name!r}: bad_latency_ms must be a non-negative number, got {ms}")
    # The decimal the user wrote (0.1 ms is 100000 ns, not 100000.00000000001).
    return Fraction(repr(float(ms))) * 1_000_000


def _check_span_sli(slo: Slo, sli: SpanSli) -> None:
    if not (sli.bad_error or sli.bad_status or sli.bad_latency_ms is not None):
        raise ValueError(f"SLO {slo.name!r}: a spans SLI needs bad_error, bad_status or bad_latency_ms")
    for kind in sli.kinds:
        if kind not in _SPAN_KINDS:
            raise ValueError(f"SLO {slo.name!r}: unknown span kind {kind!r}")


def _common_span_params(slo: Slo, sli: SpanSli) -> dict[str, Any]:
    return {
        "service": slo.service,
        "kinds": list(sli.kinds),
        "any_operation": int(sli.operation is None),
        "operation": sli.operation or "",
        "use_error": int(sli.bad_error),
        "use_latency": int(sli.bad_latency_ms is not None),
    }


def _status_classes(f: Filter) -> list[str] | None:
    """The HTTP status classes a numeric comparison of a status code selects, if whole classes do.

    ``>= 500`` is exactly class 5xx, ``< 400`` 1xx-3xx; ``>= 503`` splits a class: None.
    """
    if f.op not in (">", ">=", "<", "<="):
        return None
    try:
        value = float(f.value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not value.is_integer():
        return None
    bound = int(value) + (1 if f.op in (">", "<=") else 0)  # codes are integers: > 499 is >= 500
    if bound % 100 or not 100 <= bound <= 600:
        return None
    upper = f.op in (">", ">=")
    return [f"{c}xx" for c in range(1, 6) if (c * 100 >= bound) == upper]


def _red_filters(filters: Sequence[Filter]) -> tuple[list[Filter], list[int]] | str:
    """Filters rewritten onto red_1m's columns, or why they cannot be."""
    rewritten: list[Filter] = []
    columns: list[int] = []
    for f in filters:
        if f.key in _STATUS_KEYS:
            classes = _status_classes(f)
            if classes is None:
                return f"{f.key} {f.op} {f.value!r} does not select whole status classes (1xx-5xx)"
            rewritten.append(Filter(f.key, "in", tuple(classes)))
            columns.append(_RED_STATUS_COLUMN)
        elif f.key in _RED_TEXT_COLUMNS:
            rewritten.append(f)
            columns.append(_RED_TEXT_COLUMNS[f.key])
        else:
            return f"red_1m does not keep attribute {f.key!r}"
    return rewritten, columns


def _roll_up_plan(slo: Slo, sli: SpanSli) -> dict[str, Any] | str:
    """red_1m parameters for ``sli`` (without the range), or why it must read raw spans."""
    _check_span_sli(slo, sli)
    if not set(sli.kinds) <= _RED_KINDS:
        return "red_1m holds only root spans of kinds other than SERVER and CONSUMER"
    filters = _red_filters(sli.filters)
    if isinstance(filters, str):
        return f"filter: {filters}"
    status = _red_filters(sli.bad_status)
    if isinstance(status, str):
        return f"bad_status: {status}"
    group_columns = []
    for key in slo.group_by:
        if key not in _RED_TEXT_COLUMNS:
            return f"group_by: red_1m does not keep attribute {key!r}"
        group_columns.append(_RED_TEXT_COLUMNS[key])
    bucket = 0
    threshold = _latency_ns(slo, sli)
    if threshold is not None:
        if threshold.denominator != 1 or int(threshold) not in red.LOWER_BOUNDS_NS:
            return (
                f"bad_latency_ms {sli.bad_latency_ms:g} is not a bound of red_1m's latency buckets "
                "(1, 2, 2.5, 3, 5, 7.5, 10 ... ms; store/red.py)"
            )
        bucket = red.LOWER_BOUNDS_NS.index(int(threshold))
    return {
        **_common_span_params(slo, sli),
        **_filter_params(slo, "f", filters[0], filters[1]),
        **_filter_params(slo, "s", status[0], status[1]),
        "g_cols": group_columns,
        "bucket": bucket,
    }


def _raw_params(slo: Slo, sli: SpanSli) -> dict[str, Any]:
    threshold = _latency_ns(slo, sli)
    return {
        **_common_span_params(slo, sli),
        **_filter_params(slo, "f", sli.filters),
        **_filter_params(slo, "s", sli.bad_status),
        **_group_params(slo),
        # duration > floor(t) is duration > t for integer durations, whole t or not.
        "latency_ns": min(_MAX_NS, math.floor(threshold)) if threshold is not None else 0,
    }


def _raw_rows(backend: Backend, slo: Slo, sli: SpanSli, start_s: int, end_s: int) -> list[dict[str, Any]]:
    params = {**_raw_params(slo, sli), "start_ns": start_s * NS, "end_ns": end_s * NS}
    return backend.query_arrow(sql.SPANS_RAW, params).to_pylist()


def _spans_raw(
    backend: Backend, slo: Slo, sli: SpanSli, start_s: int, end_s: int
) -> dict[tuple[str, ...], MinuteCounts]:
    _check_span_sli(slo, sli)
    rows = _raw_rows(backend, slo, sli, start_s, end_s)
    return _counts(_arrays(rows, start_s, end_s, bool(slo.group_by), "n_total", "n_bad"), start_s)


def _spans_roll_up(
    backend: Backend, slo: Slo, sli: SpanSli, plan: dict[str, Any], start_s: int, end_s: int
) -> dict[tuple[str, ...], MinuteCounts]:
    table = backend.query_arrow(sql.SPANS_ROLL_UP, {**plan, "start_s": start_s, "end_s": end_s})
    return _roll_up_counts(backend, slo, sli, table, start_s, end_s)


def _roll_up_counts(
    backend: Backend, slo: Slo, sli: SpanSli, table: pa.Table, start_s: int, end_s: int
) -> dict[tuple[str, ...], MinuteCounts]:
    """The counts of one SLO from its rows of ``SPANS_ROLL_UP`` (or its share of the batched statement)."""
    rows: list[dict[str, Any]] | pa.Table = table
    if sli.bad_latency_ms is not None and table.num_rows:
        # Minutes rolled up before migration 0007 lack the latency details: read them from spans.
        detailed = table.column("n_detailed").to_numpy() == table.column("n_total").to_numpy()
        stale = table.column("minute_s").to_numpy()[~detailed].tolist()
        if stale:
            rows = table.to_pylist()
            lo, hi = min(stale), max(stale) + MINUTE_S
            rows = [r for r in rows if not lo <= r["minute_s"] < hi]
            rows += _raw_rows(backend, slo, sli, lo, hi)
    return _counts(_arrays(rows, start_s, end_s, bool(slo.group_by), "n_total", "n_bad"), start_s)


# -- logs ----------------------------------------------------------------------------------------


def _log_params(slo: Slo, prefix: str, log_filter: LogFilter) -> tuple[dict[str, Any], int]:
    if not 0 <= log_filter.severity_min <= 24:
        raise ValueError(
            f"SLO {slo.name!r}: severity_min must be from 0 to 24, got {log_filter.severity_min}"
        )
    words: list[str] = []
    if log_filter.body is not None:
        try:
            words = tokens(log_filter.body)
        except ValueError as exc:
            raise ValueError(f"SLO {slo.name!r}: body {log_filter.body!r}: {exc}") from None
    params = {
        **_filter_params(slo, prefix, log_filter.filters),
        f"{prefix}_severity": log_filter.severity_min,
        **{f"{prefix}_token_{i}": word for i, word in enumerate(words)},
    }
    return params, len(words)


def _logs(
    backend: Backend, slo: Slo, sli: LogSli, start_s: int, end_s: int
) -> dict[tuple[str, ...], MinuteCounts]:
    base, n_total, n_bad = log_params(slo)
    params = {**base, "start_ns": start_s * NS, "end_ns": end_s * NS}
    rows = backend.query_arrow(sql.log_counts(n_total, n_bad), params).to_pylist()
    return _counts(_arrays(rows, start_s, end_s, bool(slo.group_by), "n_total", "n_bad"), start_s)


# -- metrics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MetricRange:
    start_s: int
    end_s: int

    def params(self, slo: Slo, selector: MetricSelector) -> dict[str, Any]:
        if not selector.name:
            raise ValueError(f"SLO {slo.name!r}: a metric selector has no name")
        return {
            **_filter_params(slo, "f", selector.filters),
            **_group_params(slo),
            "service": slo.service,
            "name": selector.name,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "read_start_ns": max(0, self.start_s - METRIC_LOOKBACK_S) * NS,
            # A point at end_s reports the minute before it, inside the range.
            "end_ns": self.end_s * NS,
        }


def _metrics(
    backend: Backend, slo: Slo, sli: MetricSli, start_s: int, end_s: int
) -> dict[tuple[str, ...], MinuteCounts]:
    span = _MetricRange(start_s, end_s)
    grouped = bool(slo.group_by)
    if sli.is_histogram:
        if sli.good is not None or sli.bad is not None:
            raise ValueError(f"SLO {slo.name!r}: a histogram SLI has a threshold, not good/bad counters")
        threshold = float(sli.threshold)  # type: ignore[arg-type]
        params = span.params(slo, sli.total)
        _check_bounds(backend, slo, sli.total.name, threshold, params)
        rows = backend.query_arrow(sql.HISTOGRAM_INCREASE, {**params, "threshold": threshold}).to_pylist()
        arrays = _arrays(rows, start_s, end_s, grouped, "n_total", "n_good")
        return {key: _from_good(start_s, total, good) for key, (total, good) in sorted(arrays.items())}
    if (sli.good is None) == (sli.bad is None):
        raise ValueError(f"SLO {slo.name!r}: a counter SLI needs total and exactly one of good or bad")
    total = _arrays(
        backend.query_arrow(sql.SUM_INCREASE, span.params(slo, sli.total)).to_pylist(),
        start_s,
        end_s,
        grouped,
        "n",
    )
    other_selector = sli.good if sli.good is not None else sli.bad
    assert other_selector is not None
    other = _arrays(
        backend.query_arrow(sql.SUM_INCREASE, span.params(slo, other_selector)).to_pylist(),
        start_s,
        end_s,
        grouped,
        "n",
    )
    n = (end_s - start_s) // MINUTE_S
    out = {}
    for key in sorted(total.keys() | other.keys()):
        t = total.get(key, [np.zeros(n)])[0]
        o = other.get(key, [np.zeros(n)])[0]
        out[key] = _from_good(start_s, t, o) if sli.good is not None else _bounded(start_s, t, o)
    return out


def _bounded(start_s: int, total: np.ndarray, bad: np.ndarray) -> MinuteCounts:
    # Two counters are exported separately: a minute may see one's increase before the other's.
    # Keep 0 <= bad <= total so that no minute has a ratio outside [0, 1].
    return MinuteCounts(start_s, total, np.clip(bad, 0.0, total))


def _from_good(start_s: int, total: np.ndarray, good: np.ndarray) -> MinuteCounts:
    return _bounded(start_s, total, total - good)


def _check_bounds(backend: Backend, slo: Slo, name: str, threshold: float, params: dict[str, Any]) -> None:
    """The threshold must be an explicit bound of every histogram point read (good = buckets <= it)."""
    if not math.isfinite(threshold):
        raise ValueError(f"SLO {slo.name!r}: the threshold of histogram {name!r} must be a finite number")
    bound_sets = [tuple(r["bounds"]) for r in backend.query_arrow(sql.HISTOGRAM_BOUNDS, params).to_pylist()]
    missing = [b for b in bound_sets if threshold not in b]
    if missing:
        shown = "; ".join("[" + ", ".join(f"{x:g}" for x in b) + "]" for b in missing)
        raise ValueError(
            f"SLO {slo.name!r}: threshold {threshold:g} is not a bucket bound of histogram {name!r} "
            f"(its bounds: {shown}); use one of them"
        )
