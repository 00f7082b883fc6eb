"""Exploring stored telemetry: the service map, trace summaries, logs and correlations.

Every read is bounded by a time range and a row limit. Request values reach the engine only as
bound parameters (``store/sql/explore.py``); a malformed filter raises :class:`ValueError`.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from typing import Any

from store import service_map
from store.backend import Backend
from store.search import MAX_DURATION_NS
from store.service_map import PARENT_SLACK_NS
from store.sql import explore as sql
from store.traces import TRACE_ID, typed_attributes

#: Logs of a trace are looked for this far before its first span and after its last span ends.
TRACE_LOG_MARGIN_NS = 5 * 60 * 10**9
#: Most logs returned with one trace.
TRACE_LOG_LIMIT = 10_000
#: Most free-text tokens in a log query; longest text of a filter value.
MAX_TOKENS = 16
MAX_TEXT = 1024

#: OpenTelemetry severity numbers of the severity names (the first of each range of four).
SEVERITIES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}
_SEVERITY_NAME = re.compile(r"^([A-Z]+)([1-4]?)$")
STATUSES = {"error": "ERROR", "ok": "OK", "unset": "UNSET"}

# KEY=VALUE, KEY>N, KEY>=N, KEY<N, KEY<=N; the key is everything before the first operator.
_ATTR = re.compile(r"^([^=<>]+?)(>=|<=|=|>|<)(.*)$", re.DOTALL)
# What ClickHouse's token index counts as a token: runs of ASCII letters and digits or non-ASCII.
_TOKEN = re.compile(r"[0-9A-Za-z\u0080-\U0010ffff]+")


@dataclass(frozen=True)
class AttrFilter:
    """One ``attr`` filter: equality on the text, or a numeric comparison."""

    key: str
    op: str  # '=', '>', '>=', '<', '<='
    value: str | float


def bounded_text(value: str, name: str) -> str:
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is longer than {MAX_TEXT} characters")
    return value


def parse_attr(text: str) -> AttrFilter:
    """``KEY=VALUE`` (text equality) or ``KEY>N``, ``KEY>=N``, ``KEY<N``, ``KEY<=N`` (numbers)."""
    match = _ATTR.match(text)
    if not match or not match.group(1).strip():
        raise ValueError(f"attr: {text!r} must look like KEY=VALUE, KEY>NUMBER or KEY<NUMBER")
    key, op, value = match.group(1), match.group(2), match.group(3)
    bounded_text(key, "attr key")
    bounded_text(value, "attr value")
    if op == "=":
        return AttrFilter(key, op, value)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"attr: {text!r} compares with {value!r}, which is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"attr: {text!r} compares with a number that is not finite")
    return AttrFilter(key, op, number)


def attr_params(filters: list[AttrFilter]) -> dict[str, Any]:
    eq = [f for f in filters if f.op == "="]
    num = [f for f in filters if f.op != "="]
    return {
        "eq_keys": [f.key for f in eq],
        "eq_values": [str(f.value) for f in eq],
        "num_keys": [f.key for f in num],
        "num_ops": [f.op for f in num],
        "num_values": [float(f.value) for f in num],
    }


def parse_severity(text: str) -> int:
    """A severity number 1-24, or a name (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; INFO2 ... too)."""
    value = text.strip().upper()
    if value.isdigit():
        number = int(value)
        if not 1 <= number <= 24:
            raise ValueError(f"severity_min: {text!r} must be from 1 to 24")
        return number
    match = _SEVERITY_NAME.match(value)
    if not match or match.group(1) not in SEVERITIES:
        raise ValueError(
            f"severity_min: {text!r} must be a number from 1 to 24 or one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"
        )
    return SEVERITIES[match.group(1)] + max(0, int(match.group(2) or 1) - 1)


def tokens(text: str) -> list[str]:
    """The words of a free-text log query, as the body's token index splits them (unique, in order)."""
    found = list(dict.fromkeys(_TOKEN.findall(text)))
    if text.strip() and not found:
        raise ValueError(f"q: {text[:64]!r} has no words to search for (letters or digits)")
    if len(found) > MAX_TOKENS:
        raise ValueError(f"q: at most {MAX_TOKENS} words, got {len(found)}")
    return found


def check_range(start_ns: int, end_ns: int) -> None:
    if end_ns < start_ns:
        raise ValueError(f"end ({end_ns}) is before start ({start_ns})")


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


# -- service map -------------------------------------------------------------------------------


def dependencies(
    backend: Backend,
    start_ns: int,
    end_ns: int,
    limit: int = 1000,
    step_ns: int | None = None,
    stored: bool = True,
) -> list[dict[str, Any]]:
    """Caller -> callee edges of child spans starting in [start_ns, end_ns], with call and error counts
    and the callees' latency; with ``step_ns`` (whole seconds) each edge also has a ``series``.

    Whole minutes rolled up and still exact (no span arrived for them since: ``store/service_map.py``)
    are read from ``service_edges_1m``; the rest of the range (partial minutes at its ends, recent
    minutes, minutes with late spans) is joined from spans, and both are added up: the answer is the
    join of the whole range, late spans included. ``stored=False`` joins the whole range (the
    reference the roll-up is tested against); so does a step that is not a whole number of minutes,
    as a stored minute cannot be split.
    """
    check_range(start_ns, end_ns)
    _check_limit(limit)
    step_s = None
    if step_ns is not None:
        if step_ns < 10**9 or step_ns % 10**9:
            raise ValueError("step must be a whole number of seconds")
        step_s = step_ns // 10**9
    use_stored = stored and (step_s is None or step_s % 60 == 0)
    current = service_map.current_minutes(backend, start_ns, end_ns) if use_stored else {}
    cover = service_map.coverage(start_ns, end_ns, current)
    joins = [service_map.join_params(lo, hi) for lo, hi in cover.gaps]
    # Each part's first `limit` edges by (caller, callee) hold the first `limit` of their sum.
    totals: dict[tuple[str, str], service_map.EdgeSums] = {}
    rows = service_map.stored_edges(backend, cover.stored, limit)
    for params in joins:
        rows += backend.query_arrow(sql.DEPENDENCY_EDGES, {**params, "limit": limit}).to_pylist()
    for r in rows:
        totals.setdefault((r["caller"], r["callee"]), service_map.EdgeSums()).add(r)
    keys = sorted(totals)[:limit]
    edges = {key: {"caller": key[0], "callee": key[1], **totals[key].stats()} for key in keys}
    if step_s is not None:
        points: dict[tuple[str, str, int], service_map.EdgeSums] = {}
        rows = service_map.stored_series(backend, cover.stored, step_s)
        for params in joins:
            rows += backend.query_arrow(sql.DEPENDENCY_SERIES, {**params, "step_s": step_s}).to_pylist()
        for r in rows:
            if (r["caller"], r["callee"]) in edges:
                points.setdefault((r["caller"], r["callee"], r["bucket_s"]), service_map.EdgeSums()).add(r)
        for edge in edges.values():
            edge["series"] = []
        for caller, callee, bucket_s in sorted(points):
            edges[caller, callee]["series"].append(
                {"time_unix_nano": str(bucket_s * 10**9), **points[caller, callee, bucket_s].stats()}
            )
    return list(edges.values())


# -- traces ------------------------------------------------------------------------------------


#: The orders of a trace search: name -> (key, descending). Ties go by trace id (ascending) in every
#: order, so that each is total and a cursor's place in it is exact.
TRACE_SORTS = {
    "newest": ("start", True),
    "oldest": ("start", False),
    "longest": ("duration", True),
    "shortest": ("duration", False),
}


@dataclass(frozen=True)
class TraceSearch:
    """A trace search; a trace matches if ONE of its spans meets every criterion."""

    start_ns: int
    end_ns: int
    service: str = ""
    operation: str = ""
    attrs: list[AttrFilter] = field(default_factory=list)
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    status: str = ""  # 'error', 'ok', 'unset' or '' for any
    limit: int = 20
    cursor: str = ""  # a previous page's next_cursor: the page after it; '' for the first page
    sort: str = "newest"  # one of TRACE_SORTS


@dataclass(frozen=True)
class TracePage:
    """One page of a trace search: summaries, how many traces match in all, how many of them come
    before this page in the order, and the next page's cursor ('' after the last page)."""

    traces: list[dict[str, Any]]
    total: int
    next_cursor: str
    offset: int


#: A trace's start is looked for this far before a search's range (see SEARCH_TRACE_PAGE): the bound
#: the service map puts on a parent before its child. An hour cost a 15-minute search twice the time
#: of the search itself (every span of the 75 minutes is read for the trace ids).
TRACE_START_LOOKBACK_NS = PARENT_SLACK_NS
#: A trace's later spans (its end, for its duration) are looked for this far after the range by the
#: duration orders: the same bound the other way (the service map's child starts at most this long
#: after its parent). A search that ends now, the usual one, reads nothing more (no span starts in
#: the future); one in the past reads 5 more minutes of trace ids. A span of the trace starting later
#: still is not counted, as the lookback leaves out one starting earlier.
TRACE_END_LOOKAHEAD_NS = PARENT_SLACK_NS
_INT64 = (-(2**63), 2**63 - 1)
_CURSOR = re.compile(rf"^({'|'.join(TRACE_SORTS)}):(-?\d{{1,19}}):([0-9a-f]{{32}})$")
_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]{1,96}$")  # base64url without padding


def encode_cursor(key: int, trace_id: str, sort: str = "newest") -> str:
    """The opaque cursor after the trace ``trace_id`` whose sort key (its start for ``newest`` and
    ``oldest``, its duration for ``longest`` and ``shortest``) is ``key``: its place in that order."""
    return base64.urlsafe_b64encode(f"{sort}:{key}:{trace_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "newest") -> tuple[int, str]:
    """(sort key, trace id) of a cursor from :func:`encode_cursor` for ``sort``; ValueError naming
    ``cursor`` when it is not one, or belongs to another order."""
    text = cursor.strip()
    try:
        place = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        place = ""
    match = _CURSOR.fullmatch(place) if _CURSOR_TEXT.fullmatch(text) else None
    if not match or not _INT64[0] <= int(match.group(2)) <= _INT64[1]:
        raise ValueError(
            f"cursor: {cursor[:64]!r} is not a cursor of a trace search (pass a page's next_cursor unchanged)"
        )
    if match.group(1) != sort:
        raise ValueError(
            f"cursor: this cursor continues sort={match.group(1)}, not sort={sort} "
            "(a cursor goes with the search and sort of the page that gave it; start again without it)"
        )
    return int(match.group(2)), match.group(3)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "trace_id": row["trace_hex"],
        "root_service": row["root_service"],
        "root_operation": row["root_operation"],
        "root_span_missing": not row["has_root"],
        "start_time_unix_nano": row["start_ns"],
        "duration_ns": row["duration_ns"],
        "duration_ms": row["duration_ns"] / 1e6,
        "span_count": row["span_count"],
        "error_count": row["error_count"],
        "services": list(row["services"]),
    }


def trace_summaries(backend: Backend, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    """A summary of each known trace in ``trace_ids`` (lower-case hex), read in one pass."""
    if not trace_ids:
        return {}
    rows = backend.query_arrow(sql.TRACE_SUMMARIES, {"trace_ids": trace_ids}).to_pylist()
    return {row["trace_hex"]: _summary(row) for row in rows}


def search_trace_page(backend: Backend, q: TraceSearch) -> TracePage:
    """One page of the traces matching ``q`` in the order ``q.sort`` (:data:`TRACE_SORTS`, ties by
    trace id), from the first page or after ``q.cursor``. Following ``next_cursor`` visits every match
    exactly once.

    A trace's start and duration here are those of its spans from ``TRACE_START_LOOKBACK_NS`` before
    the range to ``TRACE_END_LOOKAHEAD_NS`` after it: the summaries' for every trace within those
    bounds (a trace that began earlier or ends later is placed by its spans inside them).
    """
    check_range(q.start_ns, q.end_ns)
    _check_limit(q.limit)
    if q.status and q.status not in STATUSES:
        raise ValueError(f"status: {q.status!r} must be one of {', '.join(STATUSES)}")
    if q.sort not in TRACE_SORTS:
        raise ValueError(f"sort: {q.sort[:64]!r} must be one of {', '.join(TRACE_SORTS)}")
    min_d, max_d = q.min_duration_ns, q.max_duration_ns
    if min_d is not None and max_d is not None and max_d < min_d:
        raise ValueError("max_duration_ms is below min_duration_ms")
    after_key, after_trace = decode_cursor(q.cursor, q.sort) if q.cursor else (0, "")
    key, descending = TRACE_SORTS[q.sort]
    params: dict[str, Any] = {
        "start": q.start_ns,
        "end": q.end_ns,
        "lookback": max(q.start_ns - TRACE_START_LOOKBACK_NS, _INT64[0]),  # stays an Int64
        # Later spans change a trace's end, never its start: only the duration orders read them.
        "lookahead": min(q.end_ns + (TRACE_END_LOOKAHEAD_NS if key == "duration" else 0), _INT64[1]),
        "service": bounded_text(q.service, "service"),
        "operation": bounded_text(q.operation, "operation"),
        "min_duration": max(0, min_d or 0),
        "max_duration": MAX_DURATION_NS if max_d is None else max(0, max_d),
        "status": STATUSES.get(q.status, ""),
        "by_duration": key == "duration",
        "descending": descending,
        "after": bool(q.cursor),
        "after_key": after_key,
        "after_trace": after_trace,
        "limit": q.limit + 1,  # one more than asked: is there a next page?
        **attr_params(q.attrs),
    }
    rows = backend.query_arrow(sql.SEARCH_TRACE_PAGE, params).to_pylist()
    if rows:
        total, offset = rows[0]["total"], rows[0]["total"] - rows[0]["remaining"]
    elif q.cursor:  # past the last match: no row carries the count
        total = offset = backend.query_arrow(sql.COUNT_TRACES, params).to_pylist()[0]["total"]
    else:
        total = offset = 0
    page = rows[: q.limit]
    last = page[-1] if len(rows) > q.limit else None
    summaries = trace_summaries(backend, [row["trace_hex"] for row in page])
    return TracePage(
        traces=[summaries[row["trace_hex"]] for row in page if row["trace_hex"] in summaries],
        total=total,
        next_cursor=encode_cursor(last["sort_key"], last["trace_hex"], q.sort) if last else "",
        offset=offset,
    )


def search_traces(backend: Backend, q: TraceSearch) -> list[dict[str, Any]]:
    """Summaries of the traces of one page of ``q`` (:func:`search_trace_page`), in ``q.sort``'s order."""
    return search_trace_page(backend, q).traces


# -- logs --------------------------------------------------------------------------------------


def log_row(row: dict[str, Any]) -> dict[str, Any]:
    body = typed_attributes({"body": row["body"]}, {"body": row["body_kind"]})["body"]
    return {
        "time_unix_nano": row["time_unix_nano"],
        "observed_time_unix_nano": row["observed_time_unix_nano"],
        "severity_number": row["severity_number"],
        "severity_text": row["severity_text"],
        "body": body,
        "event_name": row["event_name"],
        "service_name": row["service_name"],
        "trace_id": row["trace_hex"],
        "span_id": row["span_hex"],
        "flags": row["flags"],
        "attributes": typed_attributes(row["attributes"], row["kinds"]),
        "resource": {"attributes": typed_attributes(row["resource_attributes"], row["resource_kinds"])},
        "scope": {"name": row["scope_name"], "version": row["scope_version"]},
        "correlation_id": row["correlation_id"],
    }


def trace_logs(backend: Backend, trace_id: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """Logs of one trace (lower-case hex), in time order, from around its spans' time range."""
    params = {
        "trace_id": trace_id,
        "start": max(0, start_ns - TRACE_LOG_MARGIN_NS),
        "end": end_ns + TRACE_LOG_MARGIN_NS,
        "limit": TRACE_LOG_LIMIT,
    }
    return [log_row(row) for row in backend.query_arrow(sql.TRACE_LOGS, params).to_pylist()]


@dataclass(frozen=True)
class LogSearch:
    """A log search; every given criterion must hold."""

    start_ns: int
    end_ns: int
    service: str = ""
    severity_min: int = 0
    q: str = ""
    trace_id: str = ""
    correlation_id: str = ""
    attrs: list[AttrFilter] = field(default_factory=list)
    limit: int = 100


def log_filters(q: LogSearch) -> tuple[str, dict[str, Any]]:
    """The conditions (' AND '-prefixed, our own fragments of ``store/sql/explore.py``) and parameters
    that ``q`` adds to LOG_MATCH beyond the range: the log search's, which the histogram and the live
    tail (``store/logs.py``) share, so that they count and list the very lines the search finds."""
    if not 0 <= q.severity_min <= 24:
        raise ValueError(f"severity_min must be from 0 to 24, got {q.severity_min}")
    params: dict[str, Any] = {
        "service": bounded_text(q.service, "service"),
        "severity_min": q.severity_min,
        **attr_params(q.attrs),
    }
    filters: list[str] = []
    if q.trace_id:
        if not TRACE_ID.match(q.trace_id):
            raise ValueError(f"trace_id must be 32 hex digits, got {q.trace_id[:64]!r}")
        filters.append(sql.LOG_TRACE_FILTER)
        params["trace_id"] = q.trace_id.lower()
    if q.correlation_id:
        filters.append(sql.LOG_CORRELATION_FILTER)
        params["correlation_id"] = bounded_text(q.correlation_id, "correlation_id")
    for n, token in enumerate(tokens(bounded_text(q.q, "q"))):
        filters.append(sql.TOKEN_FILTER.format(n=n))
        params[f"token_{n}"] = token
    return "".join(f"  AND {f}\n" for f in filters), params


def search_logs(backend: Backend, q: LogSearch) -> list[dict[str, Any]]:
    """Logs matching ``q``, newest first."""
    check_range(q.start_ns, q.end_ns)
    _check_limit(q.limit)
    filters, params = log_filters(q)
    params.update(start=q.start_ns, end=q.end_ns, limit=q.limit)
    statement = sql.LOG_SEARCH_HEAD + filters + sql.LOG_SEARCH_TAIL
    return [log_row(row) for row in backend.query_arrow(statement, params).to_pylist()]


def span_logs(
    backend: Backend, trace_id: str, span_id: str, start_ns: int, end_ns: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` logs of one span (ids in lower-case hex), in time order, from around
    [start_ns, end_ns] (its trace's bounds) widened as for :func:`trace_logs`."""
    params = {
        "trace_id": trace_id,
        "span_id": span_id,
        "start": max(0, start_ns - TRACE_LOG_MARGIN_NS),
        "end": min(end_ns + TRACE_LOG_MARGIN_NS, _INT64[1]),
        "limit": limit,
    }
    return [log_row(row) for row in backend.query_arrow(sql.SPAN_LOGS, params).to_pylist()]


# -- correlations ------------------------------------------------------------------------------


def correlation(
    backend: Backend, correlation_id: str, start_ns: int, end_ns: int, limit: int = 1000
) -> dict[str, Any]:
    """Every span, trace and log carrying ``correlation_id`` in [start_ns, end_ns], in time order.

    ``traces`` are the summaries of the traces those spans belong to (whole traces, also spans
    without the id), oldest first; ``spans`` and ``logs`` are those that carry the id.
    """
    check_range(start_ns, end_ns)
    _check_limit(limit)
    if not correlation_id:
        raise ValueError("correlation id must not be empty")
    params = {
        "correlation_id": bounded_text(correlation_id, "correlation id"),
        "start": start_ns,
        "end": end_ns,
        "limit": limit,
    }
    spans = [
        {
            "trace_id": r["trace_hex"],
            "span_id": r["span_hex"],
            "parent_span_id": r["parent_hex"],
            "service_name": r["service_name"],
            "name": r["name"],
            "kind": r["kind"],
            "start_time_unix_nano": r["start_time_unix_nano"],
            "duration_ns": r["duration"],
            "status": {"code": r["status_code"], "message": r["status_message"]},
        }
        for r in backend.query_arrow(sql.CORRELATION_SPANS, params).to_pylist()
    ]
    logs = [log_row(row) for row in backend.query_arrow(sql.CORRELATION_LOGS, params).to_pylist()]
    summaries = trace_summaries(backend, list(dict.fromkeys(s["trace_id"] for s in spans)))
    traces = sorted(summaries.values(), key=lambda s: (int(s["start_time_unix_nano"]), s["trace_id"]))
    return {"correlation_id": correlation_id, "traces": traces, "spans": spans, "logs": logs}
