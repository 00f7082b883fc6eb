"""The trace-search page: filters and order in the URL, a count of every match, cursor paging, a
Trace ID box that opens a trace, a scatter of duration over start time and the list of traces. The
JSON twin is ``/api/v1/traces``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import QueryParams

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
    service_colours,
    url_with,
)
from ui.web import PageError, Range, render, time_range

#: The search's parameters a page keeps in its links (the cursor is the one page's own).
TRACE_PARAMS = (api_explore.TRACE_SEARCH_PARAMS - {"cursor"}) | {"limit"}
#: What the page says of each order of store.explore.TRACE_SORTS.
SORT_LABELS = {
    "newest": "newest first",
    "oldest": "oldest first",
    "longest": "longest first",
    "shortest": "shortest first",
}
_TRACE_ID = re.compile(r"^(?:[0-9a-f]{16}){1,2}$")

#: Steps of the scatter's time axis, in ns: 1-2-5 from a nanosecond to half a second, then steps a
#: clock reads well (seconds, minutes, hours, days). The smallest one giving at most MAX_X_TICKS ticks
#: over the results is used.
_CLOCK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200)
_TIME_STEPS_NS = [m * 10**e for e in range(9) for m in (1, 2, 5)] + [
    s * 10**9 for s in (*_CLOCK_STEPS_S, 86_400, 2 * 86_400, 7 * 86_400, 30 * 86_400)
]
MAX_X_TICKS = 6
#: The time axis's width when every result starts at the same instant (one trace, say).
ONE_INSTANT_NS = 10**9
DAY_NS = 86_400 * 10**9


def lookup_trace_id(text: str) -> str:
    """The trace id typed into the Trace ID box, as the trace view's 32 lower-case hex digits: 32 hex
    digits, or 16 (a 64-bit Jaeger or Zipkin id, the low half: left-padded with zeros, as the
    collector stores it), in either case, surrounding whitespace ignored. ValueError naming
    ``trace_id`` otherwise."""
    value = text.strip().lower()
    if not _TRACE_ID.fullmatch(value):
        raise ValueError(
            f"trace_id: {text.strip()[:64]!r} is not a trace id (32 hex digits, or 16 for a 64-bit id)"
        )
    if not value.strip("0"):
        raise ValueError("trace_id: all zeros is the invalid trace id, no trace has it")
    return value.rjust(32, "0")


def _time_label(ns: int, step_ns: int, with_date: bool) -> str:
    """``ns`` (UTC) with as many digits as ticks ``step_ns`` apart need to differ."""
    seconds, fraction = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(seconds, UTC)
    if step_ns >= DAY_NS:
        return moment.strftime("%Y-%m-%d")
    text = moment.strftime("%m-%d %H:%M" if with_date else "%H:%M")
    if step_ns % (60 * 10**9):
        text += moment.strftime(":%S")
    if step_ns % 10**9:
        digits = 3 if step_ns % 10**6 == 0 else 6 if step_ns % 10**3 == 0 else 9
        text += f".{fraction:09d}"[: digits + 1]
    return text


def time_ticks(lo_ns: int, hi_ns: int) -> tuple[list[tuple[int, str]], str]:
    """(time, label) ticks at round times within [lo_ns, hi_ns], and the date they share ('' when
    they do not, and the labels carry it). One instant gets one tick, to the millisecond."""
    span = hi_ns - lo_ns
    if span <= 0:
        step = 10**6
        times = [lo_ns]
    else:
        gaps = MAX_X_TICKS - 1
        step = next((s for s in _TIME_STEPS_NS if s * gaps >= span), -(-span // gaps))
        times = list(range(-(-lo_ns // step) * step, hi_ns + 1, step))
    dates = {datetime.fromtimestamp(t // 10**9, UTC).date() for t in times}
    shared = len(dates) == 1 and step < DAY_NS
    labels = [(t, _time_label(t, step, with_date=not shared)) for t in times]
    return labels, (dates.pop().isoformat() if shared else "")


def _scatter(found: list[dict[str, Any]]) -> dict[str, Any]:
    """A server-side SVG scatter of duration over start time (a log scale when durations vary a lot).
    The time axis fits the results' start times (plus a twentieth each side), not the search range,
    so that the points spread over the chart."""
    width, height, pad_l, pad_b, pad_t, pad_r = 900, 220, 64, 28, 10, 12
    durations = [max(t["duration_ms"], 0.001) for t in found]
    top = max(durations, default=1.0)
    low = min(durations, default=1.0)
    log_scale = top / low > 50
    if log_scale:
        y_lo, y_hi = math.log10(low) - 0.1, math.log10(top) + 0.1
    else:
        y_lo, y_hi = 0.0, top * 1.1
    starts = [int(t["start_time_unix_nano"]) for t in found]
    first, last = min(starts, default=0), max(starts, default=0)
    margin = (last - first) // 20 if last > first else ONE_INSTANT_NS // 2
    x_lo, x_hi = first - margin, last + margin

    def x_of(ns: int) -> float:
        return round(pad_l + (width - pad_l - pad_r) * (ns - x_lo) / ((x_hi - x_lo) or 1), 1)

    def y_of(ms: float) -> float:
        v = math.log10(ms) if log_scale else ms
        return pad_t + (height - pad_t - pad_b) * (1 - (v - y_lo) / ((y_hi - y_lo) or 1))

    points = [
        {
            "x": x_of(ns),
            "y": round(y_of(d), 1),
            "r": round(3 + min(6, math.log2(1 + t["span_count"]) / 2), 1),
            "error": t["error_count"] > 0,
            "trace": t,
        }
        for t, d, ns in zip(found, durations, starts, strict=True)
    ]
    ticks = []
    for i in range(5):
        v = y_lo + (y_hi - y_lo) * i / 4
        ms = 10**v if log_scale else v
        ticks.append({"y": round(y_of(ms), 1), "label": ms})
    labels, date = time_ticks(first, last)
    return {
        "width": width,
        "height": height,
        "pad_l": pad_l,
        "pad_b": pad_b,
        "pad_t": pad_t,
        "pad_r": pad_r,
        "points": points,
        "y_ticks": ticks,
        "x_ticks": [{"x": x_of(ns), "ns": ns, "label": label} for ns, label in labels],
        "date": date,
        "log": log_scale,
    }


@dataclass
class TraceResults:
    """What the trace-search page shows: the form, range, order, page of traces (None when the search
    is refused), the JSON twin's URL, and the URLs of the next page ('' after the last page) and of
    the first page ('' on the first page)."""

    form: SearchForm
    window: Range
    sort: str
    page: explore.TracePage | None
    json_url: str
    next_url: str
    first_url: str


def _trace_search(backend: Backend, request: Request) -> TraceResults:
    """The search of the page's URL; a refused one is the form's error, not an error page."""
    form = search_form(request, TRACE_PARAMS)
    window = time_range(request)
    params = request.query_params
    query: explore.TraceSearch | None = None
    page: explore.TracePage | None = None
    try:
        check_known(request, TRACE_PARAMS | RANGE_PARAMS | {"cursor", "trace_id"})
        # A GET form sends its empty fields too: they are not filters (the API refuses an empty attr).
        given = QueryParams([(k, v) for k, v in params.multi_items() if v.strip()])
        query = parse_param(lambda: api_explore.trace_search(given, window.start_ns, window.end_ns))
        page = page_store(lambda: explore.search_trace_page(backend, query))
    except PageError as exc:
        if exc.status_code != 400:
            raise
        form.error = exc.message
    search = [*filled(request, TRACE_PARAMS), *api_range(window)]
    cursor = [("cursor", v) for v in params.getlist("cursor")[:1] if v.strip()]
    # The other pages keep this page's range as exact times: with `last=1h` it would move with the
    # clock, and the count and the cursor's place would belong to another range.
    next_url = (
        url_with("/traces", [*search, ("cursor", page.next_cursor)]) if page and page.next_cursor else ""
    )
    first_url = url_with("/traces", search) if page and query and query.cursor else ""
    return TraceResults(
        form,
        window,
        query.sort if query else "newest",
        page,
        url_with("/api/v1/traces", [*search, *cursor]),
        next_url,
        first_url,
    )


def router(backend: Backend) -> APIRouter:
    """The trace-search page over ``backend``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/traces", response_class=HTMLResponse)
    def trace_search(request: Request) -> Response:
        """Trace search: filters in the URL, results as a list and a duration-over-time scatter. With
        ``trace_id`` (the Trace ID box) it is a lookup: 303 to that trace's view, whatever else the
        URL holds; a malformed id shows this page again with 400 and what is wrong with it."""
        lookup = request.query_params.getlist("trace_id")
        lookup_error = ""
        if lookup:
            try:
                if len(lookup) > 1:
                    raise ValueError("trace_id may be given once")
                return RedirectResponse(f"/traces/{lookup_trace_id(lookup[0])}", status_code=303)
            except ValueError as exc:
                lookup_error = str(exc)
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
            400 if found is None or lookup_error else 200,
            form=form,
            range=window,
            found=found,
            total=page.total if page else 0,
            offset=page.offset if page else 0,
            sort=results.sort,
            sorts=SORT_LABELS,
            next_url=results.next_url,
            first_url=results.first_url,
            lookup=lookup[0] if lookup else "",
            lookup_error=lookup_error,
            scatter=_scatter(found) if found else None,
            services=services,
            operations=operations,
            statuses=list(explore.STATUSES),
            range_links=range_links(request, keep),
            permalink=url_with("/traces", [*keep, *filled(request, RANGE_PARAMS)]),
            json_url=results.json_url,
            # A distinct colour for every service on the page (the hash palette repeats after twelve).
            **{**HELPERS, "colour": service_colours(s for t in found or [] for s in t["services"]).get},
        )

    return pages
