"""The JSON explore API: service map, trace search and lookup, log search, correlations.

Paths are absolute (``/api/v1/...``): include the router without a prefix. Times are ``now``,
``now-2h``, RFC 3339 or unix milliseconds, read exactly; bad parameters are answered with 400 and
``{"detail": message}``. See docs/api.md.
"""

from __future__ import annotations

import logging
import math
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from starlette.datastructures import QueryParams

from store import explore, traces
from store.backend import Backend
from ui.params import bad_request, call_store, parse_limit, parse_range, parse_step

log = logging.getLogger(__name__)

CORRELATION_RANGE_NS = 24 * 3600 * 10**9  # a correlation without start/end: the last 24 hours
TRACE_LIMIT = (20, 1000)  # default, maximum
LOG_LIMIT = (100, 10_000)
EDGE_LIMIT = (1000, 10_000)
CORRELATION_LIMIT = (1000, 10_000)

T = TypeVar("T")


def _only_known(params: QueryParams, known: set[str]) -> None:
    """A misspelt parameter would silently widen a search: refuse it."""
    unknown = sorted(set(params.keys()) - known)
    if unknown:
        raise bad_request(f"unknown parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _single(params: QueryParams, name: str) -> str:
    values = params.getlist(name)
    if len(values) > 1:
        raise bad_request(f"{name} may be given once")
    return values[0] if values else ""


def _duration_ms(params: QueryParams, name: str) -> int | None:
    text = _single(params, name).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"{name}: {text[:64]!r} is not a number of milliseconds") from None
    if not math.isfinite(value) or value < 0 or value > 2**63 / 1e6:
        raise bad_request(f"{name}: {text[:64]!r} must be a non-negative number of milliseconds")
    return int(value * 1_000_000)


def _attrs(params: QueryParams) -> list[explore.AttrFilter]:
    try:
        return [explore.parse_attr(text) for text in params.getlist("attr")]
    except ValueError as exc:
        raise bad_request(str(exc)) from None


#: The trace search's own parameters (besides start, end and limit).
TRACE_SEARCH_PARAMS = {
    "service",
    "operation",
    "attr",
    "min_duration_ms",
    "max_duration_ms",
    "status",
    "cursor",
    "sort",
}


def trace_search(params: QueryParams, start_ns: int, end_ns: int) -> explore.TraceSearch:
    """The trace search of ``params`` over [start_ns, end_ns]; 400 naming a malformed parameter (the
    store names a bad status, sort or cursor when it runs)."""
    return explore.TraceSearch(
        start_ns=start_ns,
        end_ns=end_ns,
        service=_single(params, "service").strip(),
        operation=_single(params, "operation").strip(),
        attrs=_attrs(params),
        min_duration_ns=_duration_ms(params, "min_duration_ms"),
        max_duration_ns=_duration_ms(params, "max_duration_ms"),
        status=_single(params, "status").strip().lower(),
        limit=parse_limit(_single(params, "limit").strip() or None, *TRACE_LIMIT),
        cursor=_single(params, "cursor").strip(),
        sort=_single(params, "sort").strip().lower() or "newest",
    )


def router(backend: Backend) -> APIRouter:
    """The explore API over ``backend``; its paths start with ``/api/v1/``."""
    api = APIRouter(tags=["explore"])

    @api.get("/api/v1/dependencies")
    def dependencies(request: Request) -> dict[str, Any]:
        """Service map: caller -> callee edges with calls, errors and callee latency over the range."""
        params = request.query_params
        _only_known(params, {"start", "end", "limit", "step"})
        window = parse_range(_single(params, "start") or None, _single(params, "end") or None)
        limit = parse_limit(_single(params, "limit") or None, *EDGE_LIMIT)
        step_text = _single(params, "step")
        step = parse_step(step_text, window.end_ns - window.start_ns) if step_text else None
        edges = call_store(lambda: explore.dependencies(backend, window.start_ns, window.end_ns, limit, step))
        return {
            "start_unix_nano": str(window.start_ns),
            "end_unix_nano": str(window.end_ns),
            "step_seconds": step // 10**9 if step else None,
            "edges": edges,
        }

    @api.get("/api/v1/traces")
    def find_traces(request: Request) -> dict[str, Any]:
        """One page of trace summaries in the order ``sort`` (newest, oldest, longest, shortest; ties
        by trace id), the number of matching traces, the order used and the cursor of the next page;
        a trace matches if one span matches every filter."""
        params = request.query_params
        _only_known(params, TRACE_SEARCH_PARAMS | {"start", "end", "limit"})
        window = parse_range(_single(params, "start") or None, _single(params, "end") or None)
        query = trace_search(params, window.start_ns, window.end_ns)
        page = call_store(lambda: explore.search_trace_page(backend, query))
        return {
            "traces": page.traces,
            "total": page.total,
            "next_cursor": page.next_cursor or None,
            "sort": query.sort,
        }

    @api.get("/api/v1/traces/{trace_id}")
    def get_trace(trace_id: str) -> dict[str, Any]:
        """Every stored span of one trace, with all stored fields, and the trace's logs in time order."""
        spans = call_store(lambda: traces.get_trace(backend, trace_id))
        if not spans:
            raise HTTPException(404, f"trace {trace_id.lower()} not found")
        logs = call_store(
            lambda: explore.trace_logs(backend, trace_id.lower(), *traces.trace_time_range(spans))
        )
        return {"trace_id": trace_id.lower(), "spans": spans, "logs": logs}

    @api.get("/api/v1/logs")
    def find_logs(request: Request) -> dict[str, Any]:
        """Logs, newest first; every given filter must hold."""
        params = request.query_params
        known = {"service", "severity_min", "q", "trace_id", "correlation_id", "attr"}
        _only_known(params, known | {"start", "end", "limit"})
        window = parse_range(_single(params, "start") or None, _single(params, "end") or None)
        severity_text = _single(params, "severity_min")
        try:
            severity = explore.parse_severity(severity_text) if severity_text else 0
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        query = explore.LogSearch(
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            service=_single(params, "service"),
            severity_min=severity,
            q=_single(params, "q"),
            trace_id=_single(params, "trace_id"),
            correlation_id=_single(params, "correlation_id"),
            attrs=_attrs(params),
            limit=parse_limit(_single(params, "limit") or None, *LOG_LIMIT),
        )
        return {"logs": call_store(lambda: explore.search_logs(backend, query))}

    @api.get("/api/v1/correlations/{correlation_id}")
    def get_correlation(correlation_id: str, request: Request) -> dict[str, Any]:
        """Traces, spans and logs carrying one correlation id (default range: the last 24 hours)."""
        params = request.query_params
        _only_known(params, {"start", "end", "limit"})
        window = parse_range(
            _single(params, "start") or None, _single(params, "end") or None, CORRELATION_RANGE_NS
        )
        limit = parse_limit(_single(params, "limit") or None, *CORRELATION_LIMIT)
        return call_store(
            lambda: explore.correlation(backend, correlation_id, window.start_ns, window.end_ns, limit)
        )

    return api
