"""Web pages for traces, logs and correlations: trace search, the trace view (waterfall), log search
and the correlation timeline. Each is a plain GET URL that works without JavaScript; the JSON twin of
each page is the explore API (``ui/api_explore.py``, docs/api.md).

The waterfall is computed here, not in the browser: tree order, depth, bar offsets, service colours
and the critical path are in the HTML, so a 10,000-span trace needs no script to be readable and the
script (``static/trace.js``) only collapses rows and filters them.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from store import explore, search, traces
from store.backend import Backend
from ui import api_explore
from ui.params import call_store, parse_limit
from ui.web import RANGES, PageError, Range, render, time_range

T = TypeVar("T")

#: Service colours: a fixed palette, picked by a hash of the service name (same colour on every page).
PALETTE_SIZE = 12
#: Deeper spans are not indented further (a 10,000-span chain would push names off the page).
MAX_INDENT = 24
#: Narrowest bar drawn, in percent of the trace's duration, so that instant spans stay visible.
MIN_BAR = 0.15

RANGE_PARAMS = {"last", "start", "end"}
TRACE_PARAMS = {"service", "operation", "attr", "min_duration_ms", "max_duration_ms", "status", "limit"}
LOG_PARAMS = {"service", "severity_min", "q", "trace_id", "correlation_id", "attr", "limit"}
SEVERITY_NAMES = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


# -- helpers -----------------------------------------------------------------------------------


def colour(service: str) -> int:
    """The palette index of ``service`` (stable across pages and processes: CRC-32, not hash())."""
    return zlib.crc32(service.encode("utf-8", "surrogatepass")) % PALETTE_SIZE


def typed(value: Any) -> tuple[str, str]:
    """(text, OTLP kind) of an attribute value as ``store.traces.typed_attributes`` returns it."""
    if value is None:
        return "", "empty"
    if isinstance(value, bool):
        return ("true" if value else "false"), "bool"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, float):
        return repr(value), "double"
    if isinstance(value, str):
        return value, "string"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False), "array"
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return str(value["bytes"]), "bytes"
    return json.dumps(value, ensure_ascii=False), "map"


def attribute_rows(attributes: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, text, kind) rows, sorted by key."""
    return [(key, *typed(value)) for key, value in sorted(attributes.items())]


def _store(compute: Callable[[], T]) -> T:
    """A store call for a page: the API's 400/404/503/500 become HTML error pages."""
    try:
        return call_store(compute)
    except HTTPException as exc:
        titles = {400: "Bad request", 404: "Not found", 503: "Store unavailable"}
        raise PageError(
            exc.status_code, titles.get(exc.status_code, "Query failed"), str(exc.detail)
        ) from None


def _parse(compute: Callable[[], T]) -> T:
    """A parameter parser of the JSON API: its 400 becomes a PageError naming the parameter."""
    try:
        return compute()
    except HTTPException as exc:
        raise PageError(400, "Bad search", str(exc.detail)) from None


def _check_known(request: Request, known: set[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        raise PageError(
            400,
            "Bad search",
            f"unknown parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})",
        )


def _filled(request: Request, names: Iterable[str]) -> list[tuple[str, str]]:
    """The non-empty query parameters among ``names``, in request order (a GET form sends empty ones)."""
    wanted = set(names)
    return [(k, v) for k, v in request.query_params.multi_items() if k in wanted and v.strip()]


def _url(path: str, params: list[tuple[str, str]]) -> str:
    return path + ("?" + urlencode(params) if params else "")


def _exact_ms(ns: int) -> str:
    """Unix nanoseconds as exact unix milliseconds (decimals when needed), as the API parses them."""
    if ns < 0:
        return "-" + _exact_ms(-ns)
    whole, rest = divmod(ns, 10**6)
    return f"{whole}.{rest:06d}" if rest else str(whole)


def _api_range(window: Range) -> list[tuple[str, str]]:
    """The page's range as the JSON API takes it (exact unix milliseconds: the same data as the page)."""
    return [("start", _exact_ms(window.start_ns)), ("end", _exact_ms(window.end_ns))]


def _range_links(request: Request, keep: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, URL) of the named ranges, keeping the search (also repeated ``attr``)."""
    return [(name, _url(request.url.path, [*keep, ("last", name)])) for name in RANGES]


@dataclass
class SearchForm:
    """What a search form shows back: the values given, and the error, if any."""

    values: dict[str, str] = field(default_factory=dict)
    attrs: list[str] = field(default_factory=list)
    error: str = ""


def _form(request: Request, names: set[str]) -> SearchForm:
    params = request.query_params
    return SearchForm(
        values={name: params.get(name, "") for name in names | RANGE_PARAMS if name != "attr"},
        attrs=[a for a in params.getlist("attr") if a.strip()],
    )


def _secs(ns: int | str) -> float:
    return int(ns) / 1e9


def _iso(ns: int | str) -> str:
    """An RFC 3339 time for ``<time datetime>`` (app.js rewrites it into the browser's zone)."""
    return (
        datetime.fromtimestamp(int(ns) / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def correlation_url(correlation_id: str) -> str:
    """The correlation view of ``correlation_id`` (any text: quoted as one path segment)."""
    return "/correlations/" + quote(correlation_id, safe="")


#: Functions every template of these pages calls.
HELPERS = {"colour": colour, "secs": _secs, "iso": _iso, "corr_url": correlation_url}


# -- trace search ------------------------------------------------------------------------------


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
    form = _form(request, TRACE_PARAMS)
    window = time_range(request)
    params = request.query_params
    page: explore.TracePage | None = None
    try:
        _check_known(request, TRACE_PARAMS | RANGE_PARAMS | {"cursor"})
        attrs = [explore.parse_attr(a) for a in form.attrs] if form.attrs else []
        query = explore.TraceSearch(
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            service=_parse(lambda: api_explore._single(params, "service")).strip(),
            operation=_parse(lambda: api_explore._single(params, "operation")).strip(),
            attrs=attrs,
            min_duration_ns=_parse(lambda: api_explore._duration_ms(params, "min_duration_ms")),
            max_duration_ns=_parse(lambda: api_explore._duration_ms(params, "max_duration_ms")),
            status=_parse(lambda: api_explore._single(params, "status")).strip().lower(),
            limit=_parse(
                lambda: parse_limit(params.get("limit", "").strip() or None, *api_explore.TRACE_LIMIT)
            ),
            cursor=_parse(lambda: api_explore._single(params, "cursor")).strip(),
        )
        page = _store(lambda: explore.search_trace_page(backend, query))
    except ValueError as exc:  # parse_attr
        form.error = str(exc)
    except PageError as exc:
        if exc.status_code != 400:
            raise
        form.error = exc.message
    search = [*_filled(request, TRACE_PARAMS), *_api_range(window)]
    cursor = [("cursor", v) for v in params.getlist("cursor")[:1] if v.strip()]
    # The next page keeps this page's range as exact times: with `last=1h` it would move with the clock,
    # and the count and the cursor's place would belong to another range.
    next_url = _url("/traces", [*search, ("cursor", page.next_cursor)]) if page and page.next_cursor else ""
    return TraceResults(form, window, page, _url("/api/v1/traces", [*search, *cursor]), next_url)


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


def log_view(entry: dict[str, Any], t0: int | None = None) -> dict[str, Any]:
    """A log for a template: body as text, severity class, offset from ``t0`` if given."""
    body = entry["body"]
    text = body if isinstance(body, str) else typed(body)[0]
    number = entry["severity_number"]
    level = "error" if number >= 17 else "warn" if number >= 13 else "info" if number >= 9 else "debug"
    return {
        **entry,
        "body_text": text,
        "level": level,
        "severity": entry["severity_text"] or (explore_severity_name(number) if number else ""),
        "seconds": int(entry["time_unix_nano"]) / 1e9,
        "offset_ms": None if t0 is None else (int(entry["time_unix_nano"]) - t0) / 1e6,
        "attribute_rows": attribute_rows(entry["attributes"]),
        "trace_valid": bool(traces.TRACE_ID.match(entry["trace_id"] or "")),
        "correlation_url": correlation_url(entry["correlation_id"]) if entry["correlation_id"] else "",
        "iso": _iso(entry["time_unix_nano"]),
    }


def explore_severity_name(number: int) -> str:
    """TRACE .. FATAL4 for an OpenTelemetry severity number."""
    if not 1 <= number <= 24:
        return str(number)
    name = SEVERITY_NAMES[(number - 1) // 4]
    step = (number - 1) % 4
    return name if step == 0 else f"{name}{step + 1}"


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
    """The trace search, trace view, log search and correlation pages over ``backend``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/traces", response_class=HTMLResponse)
    def trace_search(request: Request) -> HTMLResponse:
        """Trace search: filters in the URL, results as a list and a duration-over-time scatter."""
        results = _trace_search(backend, request)
        form, window, page = results.form, results.window, results.page
        found = page.traces if page else None
        keep = _filled(request, TRACE_PARAMS)
        services = _store(lambda: search.services(backend, window.start_ns, window.end_ns))
        service = form.values.get("service", "").strip()
        operations = (
            sorted(
                {
                    name
                    for name, _ in _store(
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
            range_links=_range_links(request, keep),
            permalink=_url("/traces", [*keep, *_filled(request, RANGE_PARAMS)]),
            json_url=results.json_url,
            **HELPERS,
        )

    @pages.get("/traces/{trace_id}", response_class=HTMLResponse)
    def trace_view(trace_id: str, request: Request) -> HTMLResponse:
        """One trace: waterfall, span details, critical path and the trace's logs."""
        _check_known(request, {"q"})
        if not traces.TRACE_ID.match(trace_id):
            raise PageError(400, "Bad trace id", f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
        trace_id = trace_id.lower()
        spans = _store(lambda: traces.get_trace(backend, trace_id))
        if not spans:
            raise PageError(
                404,
                "Trace not found",
                f"No span of trace {trace_id} is stored. It may not have arrived yet, or it is past retention.",
            )
        logs = _store(lambda: explore.trace_logs(backend, trace_id, *traces.trace_time_range(spans)))
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

    @pages.get("/logs", response_class=HTMLResponse)
    def log_search(request: Request) -> HTMLResponse:
        """Log search: severity, service, attributes, words, trace id and correlation id."""
        form = _form(request, LOG_PARAMS)
        window = time_range(request)
        params = request.query_params
        found: list[dict[str, Any]] | None = None
        try:
            _check_known(request, LOG_PARAMS | RANGE_PARAMS)
            severity_text = _parse(lambda: api_explore._single(params, "severity_min")).strip()
            query = explore.LogSearch(
                start_ns=window.start_ns,
                end_ns=window.end_ns,
                service=_parse(lambda: api_explore._single(params, "service")).strip(),
                severity_min=explore.parse_severity(severity_text) if severity_text else 0,
                q=_parse(lambda: api_explore._single(params, "q")).strip(),
                trace_id=_parse(lambda: api_explore._single(params, "trace_id")).strip(),
                correlation_id=_parse(lambda: api_explore._single(params, "correlation_id")).strip(),
                attrs=[explore.parse_attr(a) for a in form.attrs],
                limit=_parse(
                    lambda: parse_limit(params.get("limit", "").strip() or None, *api_explore.LOG_LIMIT)
                ),
            )
            found = _store(lambda: explore.search_logs(backend, query))
        except ValueError as exc:
            form.error = str(exc)
        except PageError as exc:
            if exc.status_code != 400:
                raise
            form.error = exc.message
        keep = _filled(request, LOG_PARAMS)
        services = _store(lambda: search.services(backend, window.start_ns, window.end_ns))
        return render(
            request,
            "logs.html",
            400 if found is None else 200,
            form=form,
            range=window,
            logs=None if found is None else [log_view(entry) for entry in found],
            services=services,
            severities=SEVERITY_NAMES,
            range_links=_range_links(request, keep),
            permalink=_url("/logs", [*keep, *_filled(request, RANGE_PARAMS)]),
            json_url=_url("/api/v1/logs", [*keep, *_api_range(window)]),
            **HELPERS,
        )

    @pages.get("/correlations/{correlation_id:path}", response_class=HTMLResponse)
    def correlation_view(correlation_id: str, request: Request) -> HTMLResponse:
        """Every span, trace and log carrying one correlation id, on one timeline."""
        _check_known(request, RANGE_PARAMS)
        window = time_range(request, default="24h")
        found = _store(
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
            range_links=_range_links(request, []),
            duration_ms=(timeline["end_ns"] - timeline["start_ns"]) / 1e6,
            json_url=_url(f"/api/v1/correlations/{quote(correlation_id, safe='')}", _api_range(window)),
            **HELPERS,
        )

    return pages
