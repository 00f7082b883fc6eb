"""The JSON API of the log views: volume by severity, the lines around a line, and the live tail.

Filters are those of ``/api/v1/logs`` (``ui/api_explore.py``); bad parameters are answered with 400
and ``{"detail": message}`` naming the parameter. See docs/api.md.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import QueryParams

from store import explore, logs
from store.backend import Backend
from ui.api_explore import LOG_LIMIT, _only_known, _single
from ui.params import bad_request, call_store, parse_limit, parse_range

#: The filters of the log search, shared by the histogram and the tail.
FILTERS = {"service", "severity_min", "q", "trace_id", "correlation_id", "attr"}
CONTEXT_PARAMS = {"at", "by", "service", "trace_id", "span_id", "anchor", "n"}


def log_search(params: QueryParams, start_ns: int, end_ns: int, limit: int = 100) -> explore.LogSearch:
    """The log search of ``params``' filters over [start_ns, end_ns]; 400 naming a bad parameter."""
    severity_text = _single(params, "severity_min").strip()
    try:
        severity = explore.parse_severity(severity_text) if severity_text else 0
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return explore.LogSearch(
        start_ns=start_ns,
        end_ns=end_ns,
        service=_single(params, "service").strip(),
        severity_min=severity,
        q=_single(params, "q").strip(),
        trace_id=_single(params, "trace_id").strip(),
        correlation_id=_single(params, "correlation_id").strip(),
        attrs=_attrs(params, skip_empty=True),
        limit=limit,
    )


def _attrs(params: QueryParams, skip_empty: bool = False) -> list[explore.AttrFilter]:
    """The ``attr`` filters; an empty one (a search form's blank field) is no filter."""
    try:
        return [explore.parse_attr(text) for text in params.getlist("attr") if text.strip() or not skip_empty]
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def parse_whole(params: QueryParams, name: str, low: int, high: int) -> int | None:
    """A whole number from ``low`` to ``high``, or None when absent; 400 naming ``name``."""
    text = _single(params, name).strip()
    if not text:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"{name}: {text[:64]!r} must be a whole number from {low} to {high}")
    return int(text)


def context_query(params: QueryParams) -> logs.ContextQuery:
    """The context query of ``params`` (at, by, service, trace_id, span_id, anchor, n); 400 naming a
    bad or missing parameter. ``by`` defaults to trace when a trace id is given, else service."""
    at = parse_whole(params, "at", 0, logs.INT64_MAX)
    if at is None:
        raise bad_request("at is needed: the time of the line, in unix nanoseconds")
    trace_id = _single(params, "trace_id").strip()
    query = logs.ContextQuery(
        at_ns=at,
        by=_single(params, "by").strip() or ("trace" if trace_id else "service"),
        service=_single(params, "service"),
        trace_id=trace_id,
        span_id=_single(params, "span_id").strip(),
        anchor_ns=parse_whole(params, "anchor", 0, logs.INT64_MAX),
        n=parse_whole(params, "n", 1, logs.CONTEXT_MAX_N) or logs.CONTEXT_DEFAULT_N,
    )
    try:
        logs.check_context(query)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return query


def histogram_json(found: logs.Histogram) -> dict[str, Any]:
    """The histogram as the API answers it (times as decimal strings of unix ns, like the log API)."""
    return {
        "start_unix_nano": str(found.start_ns),
        "end_unix_nano": str(found.end_ns),
        "step_seconds": found.step_ns // 10**9,
        "severities": logs.SEVERITY_CLASSES,
        "total": found.total,
        "buckets": [
            {
                "start_unix_nano": str(b.start_ns),
                "end_unix_nano": str(b.end_ns),
                "total": b.total,
                "counts": dict(zip(logs.SEVERITY_CLASSES, b.counts, strict=True)),
            }
            for b in found.buckets
        ],
    }


def router(backend: Backend) -> APIRouter:
    """The log-view endpoints over ``backend``."""
    api = APIRouter(tags=["logs"])

    @api.get("/api/v1/logs/histogram")
    def log_histogram(request: Request) -> dict[str, Any]:
        """Matching logs per time bucket and severity class over the range (all of them, not a page)."""
        params = request.query_params
        _only_known(params, FILTERS | {"start", "end", "limit", "step"})
        window = parse_range(_single(params, "start") or None, _single(params, "end") or None)
        parse_limit(_single(params, "limit") or None, *LOG_LIMIT)  # accepted (same URL as the search)
        step_s = parse_whole(params, "step", 1, 366 * 86400)
        query = log_search(params, window.start_ns, window.end_ns)
        step_ns = None if step_s is None else step_s * 10**9
        return histogram_json(call_store(lambda: logs.histogram(backend, query, step_ns)))

    @api.get("/api/v1/logs/context")
    def log_context(request: Request) -> dict[str, Any]:
        """The lines around one line, of the same service or trace, in time order."""
        params = request.query_params
        _only_known(params, CONTEXT_PARAMS)
        query = context_query(params)
        found = call_store(lambda: logs.context(backend, query))
        return {
            "at_unix_nano": str(query.at_ns),
            "by": query.by,
            "n": query.n,
            "lines": found.lines,
            "earlier_anchor": None if found.earlier_anchor_ns is None else str(found.earlier_anchor_ns),
            "later_anchor": None if found.later_anchor_ns is None else str(found.later_anchor_ns),
        }

    @api.get("/api/v1/logs/tail")
    def log_tail(request: Request) -> dict[str, Any]:
        """Matching lines newer than the cursor ``after``, newest first, and the next cursor."""
        params = request.query_params
        _only_known(params, FILTERS | {"after", "limit"})
        limit = parse_limit(_single(params, "limit") or None, logs.TAIL_DEFAULT_LIMIT, logs.TAIL_MAX_LIMIT)
        after = _single(params, "after").strip()
        try:
            cursor = logs.decode_tail_cursor(after) if after else None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        now = time.time_ns()
        query = log_search(params, now, now)
        page = call_store(lambda: logs.tail(backend, query, cursor, now, limit))
        return {
            "logs": page.logs,
            "next_cursor": page.next_cursor.encode(),
            "skipped": page.skipped,
            "settle_ms": logs.TAIL_SETTLE_NS // 10**6,
        }

    return api
