"""The trace-search page: filters in the URL, a count of every match, cursor paging, a scatter of
duration over start time and the list of traces. The JSON twin is ``/api/v1/traces``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from store import explore, search
from store.backend import Backend
from ui import api_explore
from ui.explore_pages import (
    HELPERS,
    RANGE_PARAMS,
    SearchForm,
    api_range,
    check_known,
    filled,
    page_store,
    parse_param,
    range_links,
    search_form,
    url_with,
)
from ui.params import parse_limit
from ui.web import PageError, Range, render, time_range

TRACE_PARAMS = {"service", "operation", "attr", "min_duration_ms", "max_duration_ms", "status", "limit"}


def _scatter(found: list[dict[str, Any]], window: Range) -> dict[str, Any]:
    """A server-side SVG scatter of duration over start time (a log scale when durations vary a lot)."""
    width, height, pad_l, pad_b, pad_t, pad_r = 900, 220, 64, 28, 10, 12
    durations = [max(t["duration_ms"], 0.001) for t in found]
    top = max(durations, default=1.0)
    low = min(durations, default=1.0)
    log_scale = top / low > 50
    if log_scale:
        y_lo, y_hi = math.log10(low) - 0.1, math.log10(top) + 0.1
    else:
        y_lo, y_hi = 0.0, top * 1.1
    x_lo, x_hi = window.start_ns, window.end_ns

    def y_of(ms: float) -> float:
        v = math.log10(ms) if log_scale else ms
        return pad_t + (height - pad_t - pad_b) * (1 - (v - y_lo) / ((y_hi - y_lo) or 1))

    points = []
    for t, d in zip(found, durations, strict=True):
        x = pad_l + (width - pad_l - pad_r) * (int(t["start_time_unix_nano"]) - x_lo) / ((x_hi - x_lo) or 1)
        points.append(
            {
                "x": round(min(max(x, pad_l), width - pad_r), 1),
                "y": round(y_of(d), 1),
                "r": round(3 + min(6, math.log2(1 + t["span_count"]) / 2), 1),
                "error": t["error_count"] > 0,
                "trace": t,
            }
        )
    ticks = []
    for i in range(5):
        v = y_lo + (y_hi - y_lo) * i / 4
        ms = 10**v if log_scale else v
        ticks.append({"y": round(y_of(ms), 1), "label": ms})
    x_ticks = []
    for i in range(5):
        ns = x_lo + (x_hi - x_lo) * i // 4
        x_ticks.append({"x": round(pad_l + (width - pad_l - pad_r) * i / 4, 1), "s": ns / 1e9})
    return {
        "width": width,
        "height": height,
        "pad_l": pad_l,
        "pad_b": pad_b,
        "pad_t": pad_t,
        "pad_r": pad_r,
        "points": points,
        "y_ticks": ticks,
        "x_ticks": x_ticks,
        "log": log_scale,
    }


@dataclass
class TraceResults:
    """What the trace-search page shows: the form, range, page of traces (None when the search is
    refused), the JSON twin's URL and the next page's URL ('' after the last page)."""

    form: SearchForm
    window: Range
    page: explore.TracePage | None
    json_url: str
    next_url: str


def _trace_search(backend: Backend, request: Request) -> TraceResults:
    """The search of the page's URL; a refused one is the form's error, not an error page."""
    form = search_form(request, TRACE_PARAMS)
    window = time_range(request)
    params = request.query_params
    page: explore.TracePage | None = None
    try:
        check_known(request, TRACE_PARAMS | RANGE_PARAMS | {"cursor"})
        attrs = [explore.parse_attr(a) for a in form.attrs] if form.attrs else []
        query = explore.TraceSearch(
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            service=parse_param(lambda: api_explore._single(params, "service")).strip(),
            operation=parse_param(lambda: api_explore._single(params, "operation")).strip(),
            attrs=attrs,
            min_duration_ns=parse_param(lambda: api_explore._duration_ms(params, "min_duration_ms")),
            max_duration_ns=parse_param(lambda: api_explore._duration_ms(params, "max_duration_ms")),
            status=parse_param(lambda: api_explore._single(params, "status")).strip().lower(),
            limit=parse_param(
                lambda: parse_limit(params.get("limit", "").strip() or None, *api_explore.TRACE_LIMIT)
            ),
            cursor=parse_param(lambda: api_explore._single(params, "cursor")).strip(),
        )
        page = page_store(lambda: explore.search_trace_page(backend, query))
    except ValueError as exc:  # parse_attr
        form.error = str(exc)
    except PageError as exc:
        if exc.status_code != 400:
            raise
        form.error = exc.message
    search = [*filled(request, TRACE_PARAMS), *api_range(window)]
    cursor = [("cursor", v) for v in params.getlist("cursor")[:1] if v.strip()]
    # The next page keeps this page's range as exact times: with `last=1h` it would move with the clock,
    # and the count and the cursor's place would belong to another range.
    next_url = (
        url_with("/traces", [*search, ("cursor", page.next_cursor)]) if page and page.next_cursor else ""
    )
    return TraceResults(form, window, page, url_with("/api/v1/traces", [*search, *cursor]), next_url)


def router(backend: Backend) -> APIRouter:
    """The trace-search page over ``backend``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/traces", response_class=HTMLResponse)
    def trace_search(request: Request) -> HTMLResponse:
        """Trace search: filters in the URL, results as a list and a duration-over-time scatter."""
        results = _trace_search(backend, request)
        form, window, page = results.form, results.window, results.page
        found = page.traces if page else None
        keep = filled(request, TRACE_PARAMS)
        services = page_store(lambda: search.services(backend, window.start_ns, window.end_ns))
        service = form.values.get("service", "").strip()
        operations = (
            sorted(
                {
                    name
                    for name, _ in page_store(
                        lambda: search.operations(backend, service, None, window.start_ns, window.end_ns)
                    )
                }
            )
            if service
            else []
        )
        return render(
            request,
            "traces.html",
            400 if found is None else 200,
            form=form,
            range=window,
            found=found,
            total=page.total if page else 0,
            next_url=results.next_url,
            scatter=_scatter(found, window) if found else None,
            services=services,
            operations=operations,
            statuses=list(explore.STATUSES),
            range_links=range_links(request, keep),
            permalink=url_with("/traces", [*keep, *filled(request, RANGE_PARAMS)]),
            json_url=results.json_url,
            **HELPERS,
        )

    return pages
