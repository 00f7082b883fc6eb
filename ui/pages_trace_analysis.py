"""Trace statistics and trace comparison: Jaeger's other trace views, as pages and their JSON twins.

``/traces/{id}/stats`` lists per service and operation the span count, errors, total and self time
(sortable by link); ``/traces/compare?a=&b=`` merges two traces by their service/operation paths
and shows the differences. Both pages are plain GET URLs that work without JavaScript; the numbers
come from ``store.trace_analysis`` (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import QueryParams

from store import trace_analysis, traces
from store.backend import Backend
from store.trace_analysis import Stat, TraceComparison, TraceStatistics
from store.traces import TraceOutline
from ui.explore_pages import HELPERS, check_known, page_store, url_with
from ui.params import bad_request, call_store
from ui.web import PageError, render

T = TypeVar("T")

#: Deeper nodes are not indented further (a deep chain would push names off the page).
MAX_INDENT = 24
#: Rows of the comparison page, in tree order (two 10,000-span traces of distinct names make 10,000
#: rows and 5 MB of HTML); the JSON twin has every node.
MAX_ROWS = 2000
DEFAULT_SORT = "self"
#: The comparison's two traces: query parameter -> what the page calls it.
SIDES = {"a": "A", "b": "B"}


def _not_found(trace_id: str) -> str:
    return f"No span of trace {trace_id} is stored. It may not have arrived yet, or it is past retention."


def _check_id(value: str, name: str) -> str:
    """``value`` as a lower-case trace id; ValueError naming the parameter ``name`` otherwise."""
    if not value:
        raise ValueError(f"{name}: a trace id is required")
    if not traces.TRACE_ID.match(value):
        raise ValueError(f"{name}: trace id must be 32 hex digits, got {value[:64]!r}")
    return value.lower()


def _single(params: QueryParams, name: str) -> str:
    """The one value of ``name`` (trimmed: ids are pasted), '' if absent; ValueError if repeated."""
    values = params.getlist(name)
    if len(values) > 1:
        raise ValueError(f"{name} may be given once")
    return values[0].strip() if values else ""


def _outline(backend: Backend, trace_id: str, call: Callable[[Callable[[], T]], T]) -> TraceOutline:
    return call(lambda: traces.outline(backend, trace_id))


# -- JSON shapes -------------------------------------------------------------------------------


def stat_json(stat: Stat) -> dict[str, Any]:
    return {
        "count": stat.count,
        "errors": stat.errors,
        "total_ns": stat.total_ns,
        "self_ns": stat.self_ns,
        "avg_ns": stat.avg_ns,
        "min_ns": stat.min_ns,
        "max_ns": stat.max_ns,
    }


def statistics_json(trace_id: str, stats: TraceStatistics) -> dict[str, Any]:
    """The statistics as the API answers them: services by name, each with its operations by name."""
    return {
        "trace_id": trace_id,
        "duration_ns": stats.duration_ns,
        "total": stat_json(stats.total),
        "services": [
            {
                "service": group.service,
                **stat_json(group.stat),
                "operations": [{"operation": op.operation, **stat_json(op.stat)} for op in group.operations],
            }
            for group in stats.services
        ],
    }


def comparison_json(a: str, b: str, found: TraceComparison) -> dict[str, Any]:
    """The comparison as the API answers it: nodes in tree order."""
    return {
        "a": {"trace_id": a, "span_count": found.spans_a, "duration_ns": found.duration_a_ns},
        "b": {"trace_id": b, "span_count": found.spans_b, "duration_ns": found.duration_b_ns},
        "only_a": found.only_a,
        "only_b": found.only_b,
        "nodes": [
            {
                "depth": node.depth,
                "parent": node.parent,
                "service": node.service,
                "operation": node.operation,
                "presence": node.presence,
                "count_a": node.count_a,
                "count_b": node.count_b,
                "count_diff": node.count_diff,
                "total_a_ns": node.total_a_ns,
                "total_b_ns": node.total_b_ns,
                "total_diff_ns": node.total_diff_ns,
                "total_diff_percent": node.total_diff_percent,
            }
            for node in found
        ],
    }


# -- page views --------------------------------------------------------------------------------


def sort_columns(sort: str) -> dict[str, dict[str, str]]:
    """Per sortable column: its link and, for the current order, its aria-sort."""
    return {
        key: {
            "href": f"?sort={key}",
            "aria_sort": ("ascending" if key == "name" else "descending") if key == sort else "",
            "label": label,
        }
        for key, (label, _) in trace_analysis.SORTS.items()
    }


def signed_ms(ns: int) -> tuple[str, float]:
    """(sign, absolute milliseconds) of a difference, for the ``ms`` filter, which knows no sign."""
    return ("+" if ns > 0 else "−" if ns < 0 else "±"), abs(ns) / 1e6


def compare_view(found: TraceComparison, limit: int = MAX_ROWS) -> list[dict[str, Any]]:
    """Rows of the comparison table: the first ``limit`` nodes in tree order."""
    rows = []
    for i in range(min(len(found), limit)):
        node = found.node(i)
        sign, diff_ms = signed_ms(node.total_diff_ns)
        percent = node.total_diff_percent
        rows.append(
            {
                "node": node,
                "indent": min(node.depth, MAX_INDENT),
                "sign": sign,
                "diff_ms": diff_ms,
                "percent": "–" if percent is None else f"{sign}{abs(percent):.1f}%",
                # B slower is worse, B faster better; a path of one trace only is neither.
                "trend": (
                    ""
                    if node.presence != "both" or not node.total_diff_ns
                    else "slower"
                    if node.total_diff_ns > 0
                    else "faster"
                ),
            }
        )
    return rows


# -- routes ------------------------------------------------------------------------------------


def router(backend: Backend) -> APIRouter:
    """The trace statistics and compare pages, and their JSON twins, over ``backend``."""
    pages = APIRouter()

    @pages.get("/traces/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(request: Request) -> HTMLResponse:
        """Two traces side by side: a form, and with both ids the merged tree of their paths."""
        check_known(request, set(SIDES))
        params = request.query_params
        form = {"a": params.get("a", "").strip(), "b": params.get("b", "").strip()}
        missing = [label for name, label in SIDES.items() if not form[name]]
        context: dict[str, Any] = {"form": form, "found": None, "error": "", "missing": missing, **HELPERS}
        ids: dict[str, str] = {}
        try:
            for name in SIDES:
                given = _single(params, name)
                if given:
                    ids[name] = _check_id(given, name)
        except ValueError as exc:
            return render(request, "trace_compare.html", 400, **{**context, "error": str(exc)})
        if missing:  # not an error: the form, with what it has so far (the trace pages link with a=)
            return render(request, "trace_compare.html", **context)
        outlines = {name: _outline(backend, trace_id, page_store) for name, trace_id in ids.items()}
        for name, outline in outlines.items():
            if not len(outline):
                context["error"] = f"{name}: {_not_found(ids[name])}"
                return render(request, "trace_compare.html", 404, **context)
        found = trace_analysis.compare(outlines["a"], outlines["b"])
        return render(
            request,
            "trace_compare.html",
            **{
                **context,
                "ids": ids,
                "found": found,
                "rows": compare_view(found),
                "signed_ms": signed_ms,
                "swap_url": url_with("/traces/compare", [("a", ids["b"]), ("b", ids["a"])]),
                "json_url": url_with("/api/v1/traces/compare", list(ids.items())),
            },
        )

    @pages.get("/traces/{trace_id}/stats", response_class=HTMLResponse, include_in_schema=False)
    def stats_page(trace_id: str, request: Request) -> HTMLResponse:
        """Per service and operation: span count, errors, total, average, min, max and self time."""
        check_known(request, {"sort"})
        if not traces.TRACE_ID.match(trace_id):
            raise PageError(400, "Bad trace id", f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
        sort = request.query_params.get("sort") or DEFAULT_SORT
        if sort not in trace_analysis.SORTS:
            raise PageError(
                400, "Bad sort", f"sort: {sort[:64]!r} must be one of {', '.join(trace_analysis.SORTS)}"
            )
        trace_id = trace_id.lower()
        outline = _outline(backend, trace_id, page_store)
        if not len(outline):
            raise PageError(404, "Trace not found", _not_found(trace_id))
        stats = trace_analysis.sorted_statistics(trace_analysis.statistics(outline), sort)
        return render(
            request,
            "trace_stats.html",
            trace_id=trace_id,
            stats=stats,
            sort=sort,
            columns=sort_columns(sort),
            span_count=len(outline),
            json_url=f"/api/v1/traces/{trace_id}/stats",
            **HELPERS,
        )

    @pages.get("/api/v1/traces/compare", tags=["explore"], include_in_schema=True)
    def compare_api(request: Request) -> dict[str, Any]:
        """Traces ``a`` and ``b`` merged by the path of (service, operation) pairs from each span's
        root, as Jaeger's trace comparison: per node in tree order the span count and total duration
        in A and in B, their differences, and whether the node is in both traces or in one only."""
        params = request.query_params
        unknown = sorted(set(params.keys()) - set(SIDES))
        if unknown:
            raise bad_request(f"unknown parameter(s): {', '.join(unknown)} (known: a, b)")
        try:
            ids = {name: _check_id(_single(params, name), name) for name in SIDES}
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        outlines = {name: _outline(backend, trace_id, call_store) for name, trace_id in ids.items()}
        for name, outline in outlines.items():
            if not len(outline):
                raise HTTPException(404, f"{name}: trace {ids[name]} not found")
        return comparison_json(ids["a"], ids["b"], trace_analysis.compare(outlines["a"], outlines["b"]))

    @pages.get("/api/v1/traces/{trace_id}/stats", tags=["explore"], include_in_schema=True)
    def stats_api(trace_id: str, request: Request) -> dict[str, Any]:
        """Trace statistics: per service and per operation the span count, errors, total, average,
        minimum and maximum duration and self time (duration less the union of the direct children's
        intervals clipped to the span), with per-service subtotals and the trace's total."""
        unknown = sorted(request.query_params.keys())
        if unknown:
            raise bad_request(f"unknown parameter(s): {', '.join(unknown)} (this endpoint takes none)")
        outline = _outline(backend, trace_id, call_store)
        if not len(outline):
            raise HTTPException(404, f"trace {trace_id.lower()} not found")
        return statistics_json(trace_id.lower(), trace_analysis.statistics(outline))

    return pages
