"""The trace view (waterfall) and the correlation timeline. Each is a plain GET URL that works
without JavaScript; the JSON twin of each page is the explore API (``ui/api_explore.py``, docs/api.md).

The trace view's cost follows the screen, not the trace: the page carries the header, the legend and
one page of rows; ``static/trace.js`` reads the whole tree as columns (``/api/v1/traces/{id}/outline``,
no attributes) and draws only the rows in view, and a span's details come from its own page
(``/traces/{id}/spans/{span_id}``, ui/pages_span.py) when it is opened.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from store import explore, trace_tree, traces
from store.backend import Backend
from ui import api_explore
from ui.explore_pages import (
    HELPERS,
    RANGE_PARAMS,
    api_range,
    check_known,
    colour,
    log_view,
    page_store,
    parse_param,
    range_links,
    service_colours,
    url_with,
)
from ui.params import call_store
from ui.web import PageError, render, time_range

#: Rows of the waterfall per page without JavaScript (with it, only the rows in view are drawn).
ROWS_PER_PAGE = 500
#: Logs listed under the waterfall (all of them are a search away).
PAGE_LOGS = 200
#: Services named in the legend before "and N more".
LEGEND_SIZE = 12
#: Deeper spans are not indented further (a 10,000-span chain would push names off the page).
MAX_INDENT = 24
#: Narrowest bar drawn, in percent of the trace's duration, so that instant spans stay visible.
MIN_BAR = 0.15


# -- the trace view ----------------------------------------------------------------------------


@dataclass
class TraceView:
    """What the trace page shows: the outline laid out as a tree, the services with their colours
    (by span count), and the span ids a server-side find matched (None: no find)."""

    spans: traces.TraceOutline
    tree: trace_tree.TraceTree
    services: list[tuple[str, str, int]]  # name, colour, span count
    colours: dict[str, str]
    matched: set[str] | None

    @property
    def duration_ms(self) -> float:
        return (self.tree.end_ns - self.tree.start_ns) / 1e6

    @property
    def root(self) -> int:
        """The outline index of the root span the page is named after (the critical path's first)."""
        return self.tree.critical[0]

    def colour_of(self, service: str) -> str:
        """The service's colour in this trace (a log's service may have no span here)."""
        return self.colours.get(service) or colour(service)


def trace_view_data(spans: traces.TraceOutline, matched: set[str] | None = None) -> TraceView:
    """The tree and the per-trace service colours of a non-empty outline."""
    counts = Counter(spans.services)
    colours = service_colours(counts)
    services = sorted(((name, colours[name], n) for name, n in counts.items()), key=lambda s: (-s[2], s[0]))
    return TraceView(spans, trace_tree.build(spans), services, colours, matched)


def _bar(view: TraceView, i: int) -> tuple[str, str, bool]:
    """(style of the bar, style of its duration label, label inside the bar) of outline index ``i``,
    in percent of the trace; static/trace.js places them the same way."""
    total = max(view.tree.end_ns - view.tree.start_ns, 1)
    left = min(100 * (view.spans.starts[i] - view.tree.start_ns) / total, 100 - MIN_BAR)
    width = min(max(MIN_BAR, 100 * view.spans.durations[i] / total), 100 - left)
    end = left + width
    # The duration goes after the bar, else before it, else inside its right end.
    if end < 75:
        return f"left:{left:.3f}%;width:{width:.3f}%", f"left:{end:.3f}%", False
    if left >= 25:
        return f"left:{left:.3f}%;width:{width:.3f}%", f"right:{100 - left:.3f}%", False
    return f"left:{left:.3f}%;width:{width:.3f}%", f"right:{100 - end:.3f}%", True


def page_rows(view: TraceView, offset: int, limit: int, logs_of: Counter[str]) -> list[dict[str, Any]]:
    """The rows ``offset`` .. ``offset + limit`` of the page without JavaScript (matches only after a
    find), as the template draws them."""
    spans, tree = view.spans, view.tree
    critical = set(tree.critical)
    rows = [
        r for r in range(len(tree)) if view.matched is None or spans.span_ids[tree.order[r]] in view.matched
    ]
    out = []
    for r in rows[offset : offset + limit]:
        i = tree.order[r]
        bar, label, inside = _bar(view, i)
        out.append(
            {
                "span_id": spans.span_ids[i],
                "service": spans.services[i],
                "colour": view.colour_of(spans.services[i]),
                "name": spans.names[i],
                "depth": tree.depth[r],
                "indent": min(tree.depth[r], MAX_INDENT),
                "bar": bar,
                "label": label,
                "label_inside": inside,
                "duration_ms": spans.durations[i] / 1e6,
                "error": spans.statuses[i] == "ERROR",
                "critical": i in critical,
                "logs": logs_of[spans.span_ids[i]],
            }
        )
    return out


def outline_json(trace_id: str, view: TraceView, logs_of: Counter[str]) -> dict[str, Any]:
    """The waterfall's data for ``static/trace.js``, as columns in row order (compact: a 100,000-span
    trace is a few MB of JSON before compression). ``start`` and ``duration`` are ns from the trace
    start (exact in a JavaScript number for traces up to 104 days); ``flags``: 1 error, 2 critical
    path, 4 has children, 8 parent not stored."""
    spans, tree = view.spans, view.tree
    service_index = {name: n for n, (name, _, _) in enumerate(view.services)}
    names: dict[str, int] = {}
    critical = set(tree.critical)
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "span_id",
            "parent",
            "depth",
            "service",
            "name",
            "start",
            "duration",
            "flags",
            "logs",
            "events",
        )
    }
    for r, i in enumerate(tree.order):
        rows["span_id"].append(spans.span_ids[i])
        rows["parent"].append(tree.parent_row[r])
        rows["depth"].append(tree.depth[r])
        rows["service"].append(service_index[spans.services[i]])
        rows["name"].append(names.setdefault(spans.names[i], len(names)))
        rows["start"].append(spans.starts[i] - tree.start_ns)
        rows["duration"].append(spans.durations[i])
        rows["flags"].append(
            (spans.statuses[i] == "ERROR")
            | (i in critical) << 1
            | tree.has_children[r] << 2
            | tree.orphan[r] << 3
        )
        rows["logs"].append(logs_of[spans.span_ids[i]])
        rows["events"].append(spans.event_counts[i])
    return {
        "trace_id": trace_id,
        "start_time_unix_nano": str(tree.start_ns),
        "duration_ns": tree.end_ns - tree.start_ns,
        "services": [name for name, _, _ in view.services],
        "colours": [c for _, c, _ in view.services],
        "names": list(names),
        "rows": rows,
    }


# -- the correlation timeline ------------------------------------------------------------------


def parse_offset(text: str) -> int:
    """The ``offset`` parameter: a row number, 0 if absent."""
    text = text.strip()
    if not text:
        return 0
    if not text.isdigit() or len(text) > 9:
        raise HTTPException(400, f"offset: {text[:32]!r} must be a row number (0 or more)")
    return int(text)


def correlation_timeline(found: dict[str, Any]) -> dict[str, Any]:
    """Spans and logs of a correlation on one time axis, in time order (service colour per row)."""
    spans, logs = found["spans"], found["logs"]
    times = [int(s["start_time_unix_nano"]) for s in spans] + [int(lg["time_unix_nano"]) for lg in logs]
    ends = [int(s["start_time_unix_nano"]) + int(s["duration_ns"]) for s in spans] + times
    if not times:
        return {"items": [], "start_ns": 0, "end_ns": 0, "services": []}
    t0, t1 = min(times), max(ends)
    total = max(t1 - t0, 1)
    colour = service_colours([s["service_name"] for s in spans] + [lg["service_name"] for lg in logs])
    items = []
    for s in spans:
        start = int(s["start_time_unix_nano"])
        left = min(100 * (start - t0) / total, 100 - MIN_BAR)
        width = min(max(MIN_BAR, 100 * int(s["duration_ns"]) / total), 100 - left)
        items.append(
            {
                "type": "span",
                "t": start,
                "service": s["service_name"],
                "colour": colour[s["service_name"]],
                "span": s,
                "bar": f"left:{left:.3f}%;width:{width:.3f}%",
                "offset_ms": (start - t0) / 1e6,
                "duration_ms": int(s["duration_ns"]) / 1e6,
                "error": s["status"]["code"] == "ERROR",
            }
        )
    for entry in logs:
        at = int(entry["time_unix_nano"])
        items.append(
            {
                "type": "log",
                "t": at,
                "service": entry["service_name"],
                "colour": colour[entry["service_name"]],
                "log": log_view(entry, t0),
                "bar": f"left:{min(100 * (at - t0) / total, 99.5):.3f}%",
            }
        )
    items.sort(key=lambda item: (item["t"], item["type"] == "log"))
    names = sorted({item["service"] for item in items})
    return {"items": items, "start_ns": t0, "end_ns": t1, "services": [(n, colour[n]) for n in names]}


# -- routes ------------------------------------------------------------------------------------


def router(backend: Backend) -> APIRouter:
    """The trace view, its JSON twins for the script (outline, find) and the correlation page."""
    pages = APIRouter()  # the pages set include_in_schema=False themselves: the JSON routes are in it

    def load(trace_id: str, api: bool) -> traces.TraceOutline:
        """The outline of a trace id from a URL: 400 unless 32 hex digits, 404 unless stored."""
        if not traces.TRACE_ID.match(trace_id):
            message = f"trace id must be 32 hex digits, got {trace_id[:64]!r}"
            if api:
                raise HTTPException(400, message)
            raise PageError(400, "Bad trace id", message)
        spans = (call_store if api else page_store)(lambda: traces.outline(backend, trace_id.lower()))
        if not len(spans):
            message = (
                f"No span of trace {trace_id.lower()} is stored. "
                "It may not have arrived yet, or it is past retention."
            )
            if api:
                raise HTTPException(404, message)
            raise PageError(404, "Trace not found", message)
        return spans

    def logs_per_span(logs: list[dict[str, Any]]) -> Counter[str]:
        return Counter(entry["span_id"] for entry in logs if entry["span_id"])

    @pages.get("/traces/{trace_id}", response_class=HTMLResponse, include_in_schema=False)
    def trace_view(trace_id: str, request: Request) -> HTMLResponse:
        """One trace: header, service legend, minimap and waterfall, and the trace's logs. Without
        JavaScript the waterfall is drawn ROWS_PER_PAGE rows a page, each a link to its span's page;
        static/trace.js draws only the rows in view, from /api/v1/traces/{id}/outline."""
        check_known(request, {"q", "offset"})
        spans = load(trace_id, api=False)
        trace_id = trace_id.lower()
        q = request.query_params.get("q", "").strip()
        offset = parse_param(lambda: parse_offset(request.query_params.get("offset", "")))
        matched = page_store(lambda: traces.find_spans(backend, trace_id, q)) if q else None
        view = trace_view_data(spans, matched)
        logs = page_store(lambda: explore.trace_logs(backend, trace_id, view.tree.start_ns, view.tree.end_ns))
        shown = len(spans) if matched is None else len(matched)
        next_offset = offset + ROWS_PER_PAGE if offset + ROWS_PER_PAGE < shown else None

        def page_url(start: int) -> str:
            return url_with(f"/traces/{trace_id}", [*([("q", q)] if q else []), ("offset", str(start))])

        root = view.root
        return render(
            request,
            "trace.html",
            trace_id=trace_id,
            view=view,
            root_service=spans.services[root],
            root_name=spans.names[root],
            q=q,
            rows=page_rows(view, offset, ROWS_PER_PAGE, logs_per_span(logs)),
            offset=offset,
            shown=shown,
            next_url=page_url(next_offset) if next_offset is not None else "",
            previous_url=page_url(max(0, offset - ROWS_PER_PAGE)) if offset else "",
            root_missing=not any(not p for p in spans.parent_ids),
            error_count=spans.statuses.count("ERROR"),
            max_depth=max(view.tree.depth),
            logs=[log_view(entry, view.tree.start_ns) for entry in logs[:PAGE_LOGS]],
            log_count=len(logs),
            legend_size=LEGEND_SIZE,
            json_url=f"/api/v1/traces/{trace_id}",
            **{**HELPERS, "colour": view.colour_of},
        )

    @pages.get("/api/v1/traces/{trace_id}/outline", tags=["explore"])
    def trace_outline(trace_id: str) -> dict[str, Any]:
        """The waterfall of a trace as columns in tree order (docs/api.md): what the trace view's
        script draws, without attributes (read a span's with /api/v1/traces/{id}/spans/{span_id})."""
        spans = load(trace_id, api=True)
        view = trace_view_data(spans)
        logs = call_store(
            lambda: explore.trace_logs(backend, trace_id.lower(), view.tree.start_ns, view.tree.end_ns)
        )
        return outline_json(trace_id.lower(), view, logs_per_span(logs))

    @pages.get("/api/v1/traces/{trace_id}/find", tags=["explore"])
    def trace_find(trace_id: str, q: str = "") -> dict[str, Any]:
        """Ids of the spans of a trace with ``q`` (case-insensitive) in their service, operation, id,
        status message, an attribute key or value (span or resource) or an event name."""
        found = call_store(lambda: traces.find_spans(backend, trace_id.lower(), q))
        return {"trace_id": trace_id.lower(), "q": q, "span_ids": sorted(found)}

    @pages.get("/correlations/{correlation_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def correlation_view(correlation_id: str, request: Request) -> HTMLResponse:
        """Every span, trace and log carrying one correlation id, on one timeline."""
        check_known(request, RANGE_PARAMS)
        window = time_range(request, default="24h")
        found = page_store(
            lambda: explore.correlation(
                backend, correlation_id, window.start_ns, window.end_ns, api_explore.CORRELATION_LIMIT[0]
            )
        )
        timeline = correlation_timeline(found)
        return render(
            request,
            "correlation.html",
            correlation_id=correlation_id,
            found=found,
            timeline=timeline,
            logs=[log_view(entry) for entry in found["logs"]],
            range=window,
            range_links=range_links(request, []),
            duration_ms=(timeline["end_ns"] - timeline["start_ns"]) / 1e6,
            json_url=url_with(f"/api/v1/correlations/{quote(correlation_id, safe='')}", api_range(window)),
            **HELPERS,
        )

    return pages
