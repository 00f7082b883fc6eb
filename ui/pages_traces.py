"""The trace view (waterfall) and the correlation timeline. Each is a plain GET URL that works
without JavaScript; the JSON twin of each page is the explore API (``ui/api_explore.py``, docs/api.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from store import explore, traces
from store.backend import Backend
from ui import api_explore
from ui.explore_pages import (
    HELPERS,
    RANGE_PARAMS,
    api_range,
    attribute_rows,
    check_known,
    colour,
    log_view,
    page_store,
    range_links,
    typed,
    url_with,
)
from ui.web import PageError, render, time_range

#: Deeper spans are not indented further (a 10,000-span chain would push names off the page).
MAX_INDENT = 24
#: Narrowest bar drawn, in percent of the trace's duration, so that instant spans stay visible.
MIN_BAR = 0.15


# -- the trace view ----------------------------------------------------------------------------


@dataclass
class Waterfall:
    """A trace laid out for the waterfall: rows in tree order, and what the page says about them."""

    rows: list[dict[str, Any]]
    start_ns: int
    end_ns: int
    critical: list[str]
    resources: list[dict[str, Any]]
    services: list[tuple[str, int, int]]  # name, colour, span count
    root: dict[str, Any] | None


def _matches(span: dict[str, Any], needle: str) -> bool:
    haystack = [span["service_name"], span["name"], span["span_id"], span["status"]["message"]]
    for key, value in span["attributes"].items():
        haystack += [key, typed(value)[0]]
    haystack += [e["name"] for e in span["events"]]
    return any(needle in text.casefold() for text in haystack)


def layout(spans: list[dict[str, Any]], logs: list[dict[str, Any]], q: str = "") -> Waterfall:
    """Rows in tree order (children by start time), depth, bar geometry, and the critical path:
    from the root that ends last, repeatedly the child that ends last.

    A span whose parent is not stored is shown as another root; spans in a parent cycle (bad data)
    are appended as roots too, so every stored span has exactly one row.
    """
    n = len(spans)
    index: dict[str, int] = {}
    for i, s in enumerate(spans):
        index.setdefault(s["span_id"], i)
    children: list[list[int]] = [[] for _ in range(n)]
    roots: list[int] = []
    for i, s in enumerate(spans):  # spans come in start order: children lists are in start order
        parent = index.get(s["parent_span_id"]) if s["parent_span_id"] else None
        if parent is None or parent == i:
            roots.append(i)
        else:
            children[parent].append(i)
    starts = [int(s["start_time_unix_nano"]) for s in spans]
    ends = [int(s["end_time_unix_nano"]) for s in spans]
    t0, t1 = min(starts), max(ends)
    total = max(t1 - t0, 1)

    order: list[tuple[int, int]] = []
    seen = [False] * n

    def walk(start: int) -> None:
        stack = [(start, 0)]
        while stack:
            i, depth = stack.pop()
            if seen[i]:
                continue
            seen[i] = True
            order.append((i, depth))
            stack.extend((c, depth + 1) for c in reversed(children[i]))

    for r in roots:
        walk(r)
    for i in range(n):  # unreachable: a cycle of parents
        if not seen[i]:
            roots.append(i)
            walk(i)

    critical: set[int] = set()
    chain: list[str] = []
    real_roots = [r for r in roots if not spans[r]["parent_span_id"]] or roots
    current: int | None = max(real_roots, key=lambda r: (ends[r], -starts[r]))
    while current is not None and current not in critical:
        critical.add(current)
        chain.append(spans[current]["span_id"])
        kids = children[current]
        current = max(kids, key=lambda c: (ends[c], -starts[c])) if kids else None

    logs_of: dict[str, list[dict[str, Any]]] = {}
    for entry in logs:
        if entry["span_id"]:
            logs_of.setdefault(entry["span_id"], []).append(entry)

    resources: dict[str, int] = {}
    resource_list: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    needle = q.strip().casefold()
    rows = []
    for i, depth in order:
        s = spans[i]
        key = json.dumps(s["resource"]["attributes"], sort_keys=True, default=str)
        if key not in resources:
            resources[key] = len(resource_list)
            resource_list.append(
                {
                    "n": len(resource_list),
                    "service": s["service_name"],
                    "attributes": attribute_rows(s["resource"]["attributes"]),
                }
            )
        counts[s["service_name"]] = counts.get(s["service_name"], 0) + 1
        left = 100 * (starts[i] - t0) / total
        width = max(MIN_BAR, 100 * (ends[i] - starts[i]) / total)
        left = min(left, 100 - MIN_BAR)
        width = min(width, 100 - left)
        end = left + width
        rows.append(
            {
                "span": s,
                "depth": depth,
                "indent": min(depth, MAX_INDENT),
                "has_children": bool(children[i]),
                "colour": colour(s["service_name"]),
                "bar": f"left:{left:.3f}%;width:{width:.3f}%",
                "label": _label(left, end),
                "label_inside": end >= 75 and left < 25,
                "offset_ms": (starts[i] - t0) / 1e6,
                "duration_ms": (ends[i] - starts[i]) / 1e6,
                "critical": i in critical,
                "orphan": bool(s["parent_span_id"]) and s["parent_span_id"] not in index,
                "error": s["status"]["code"] == "ERROR",
                "attributes": attribute_rows(s["attributes"]),
                "resource": resources[key],
                "events": [
                    {
                        "offset_ms": (int(e["time_unix_nano"]) - starts[i]) / 1e6,  # from the span start
                        "name": e["name"],
                        "attributes": [(k, typed(v)[0]) for k, v in sorted(e["attributes"].items())],
                    }
                    for e in s["events"]
                ],
                "links": [
                    {
                        **link,
                        "valid": bool(traces.TRACE_ID.match(link["trace_id"])),
                        "attributes": [(k, typed(v)[0]) for k, v in sorted(link["attributes"].items())],
                    }
                    for link in s["links"]
                ],
                "logs": logs_of.get(s["span_id"], []),
                "hidden": bool(needle) and not _matches(s, needle),
            }
        )
    services = sorted(((name, colour(name), c) for name, c in counts.items()), key=lambda x: x[0])
    root = spans[real_roots[0]] if real_roots else None
    return Waterfall(rows, t0, t1, chain, resource_list, services, root)


def _label(left: float, end: float) -> str:
    """Where a bar's duration goes: after the bar, else before it, else inside its right end."""
    if end < 75:
        return f"left:{end:.3f}%"
    if left >= 25:
        return f"right:{100 - left:.3f}%"
    return f"right:{100 - end:.3f}%"


# -- the correlation timeline ------------------------------------------------------------------


def correlation_timeline(found: dict[str, Any]) -> dict[str, Any]:
    """Spans and logs of a correlation on one time axis, in time order (service colour per row)."""
    spans, logs = found["spans"], found["logs"]
    times = [int(s["start_time_unix_nano"]) for s in spans] + [int(lg["time_unix_nano"]) for lg in logs]
    ends = [int(s["start_time_unix_nano"]) + int(s["duration_ns"]) for s in spans] + times
    if not times:
        return {"items": [], "start_ns": 0, "end_ns": 0, "services": []}
    t0, t1 = min(times), max(ends)
    total = max(t1 - t0, 1)
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
                "colour": colour(s["service_name"]),
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
                "colour": colour(entry["service_name"]),
                "log": log_view(entry, t0),
                "bar": f"left:{min(100 * (at - t0) / total, 99.5):.3f}%",
            }
        )
    items.sort(key=lambda item: (item["t"], item["type"] == "log"))
    names = sorted({item["service"] for item in items})
    return {"items": items, "start_ns": t0, "end_ns": t1, "services": [(n, colour(n)) for n in names]}


# -- routes ------------------------------------------------------------------------------------


def router(backend: Backend) -> APIRouter:
    """The trace view and correlation pages over ``backend``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/traces/{trace_id}", response_class=HTMLResponse)
    def trace_view(trace_id: str, request: Request) -> HTMLResponse:
        """One trace: waterfall, span details, critical path and the trace's logs."""
        check_known(request, {"q"})
        if not traces.TRACE_ID.match(trace_id):
            raise PageError(400, "Bad trace id", f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
        trace_id = trace_id.lower()
        spans = page_store(lambda: traces.get_trace(backend, trace_id))
        if not spans:
            raise PageError(
                404,
                "Trace not found",
                f"No span of trace {trace_id} is stored. It may not have arrived yet, or it is past retention.",
            )
        logs = page_store(lambda: explore.trace_logs(backend, trace_id, *traces.trace_time_range(spans)))
        q = request.query_params.get("q", "")
        waterfall = layout(spans, logs, q)
        return render(
            request,
            "trace.html",
            trace_id=trace_id,
            w=waterfall,
            q=q,
            root_missing=not any(not s["parent_span_id"] for s in spans),
            duration_ms=(waterfall.end_ns - waterfall.start_ns) / 1e6,
            error_count=sum(1 for r in waterfall.rows if r["error"]),
            shown=sum(1 for r in waterfall.rows if not r["hidden"]),
            logs=[log_view(entry, waterfall.start_ns) for entry in logs],
            json_url=f"/api/v1/traces/{trace_id}",
            **HELPERS,
        )

    @pages.get("/correlations/{correlation_id:path}", response_class=HTMLResponse)
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
