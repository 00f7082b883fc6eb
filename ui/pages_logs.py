"""The log pages: search (severity, service, attributes, words, trace id, correlation id) with a volume
histogram by severity and a live tail, and the lines around one line. The JSON twins are
``/api/v1/logs``, ``/api/v1/logs/histogram``, ``/api/v1/logs/tail`` and ``/api/v1/logs/context``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from store import explore, logs, search
from store.backend import Backend
from ui import api_explore, api_logs
from ui.explore_pages import (
    HELPERS,
    RANGE_PARAMS,
    SEVERITY_NAMES,
    api_range,
    check_known,
    colour,
    exact_ms,
    filled,
    log_view,
    page_store,
    parse_param,
    range_links,
    search_form,
    url_with,
)
from ui.params import parse_limit
from ui.web import PageError, Range, render, time_range

LOG_PARAMS = {"service", "severity_min", "q", "trace_id", "correlation_id", "attr", "limit"}

# The volume chart's drawing box (SVG user units; the SVG scales to the page's width).
CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 720, 150, 40, 6, 8, 20
X_TICKS = 8  # at most


@dataclass(frozen=True)
class Segment:
    """One severity class's part of a bar."""

    severity: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One bucket of the volume chart: its stacked segments, its link and its accessible name."""

    x: float
    width: float
    slot_x: float
    slot_width: float
    segments: list[Segment]
    total: int
    href: str
    label: str


@dataclass(frozen=True)
class VolumeChart:
    """The volume histogram drawn for the page."""

    bars: list[Bar]
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, str]]
    legend: list[tuple[str, int]]
    step: str
    total: int
    width: int = CHART_W
    height: int = CHART_H
    pad_l: int = PAD_L
    pad_r: int = PAD_R
    base_y: int = CHART_H - PAD_B


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 ... at least ``value`` (1 for nothing)."""
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale >= value:
                return m * scale
        scale *= 10


def step_text(step_ns: int) -> str:
    """``30 s``, ``5 min``, ``3 h``, ``1 d``."""
    s = step_ns // 10**9
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    return f"{s} s"


def clock(ns: int, step_ns: int, span_ns: int) -> str:
    """A bucket time in UTC, as precise as the step needs (with the date when the range spans days)."""
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    if step_ns >= 86400 * 10**9:
        return moment.strftime("%Y-%m-%d")
    text = moment.strftime("%H:%M:%S" if step_ns < 60 * 10**9 else "%H:%M")
    return moment.strftime("%m-%d ") + text if span_ns > 86400 * 10**9 else text


def tick_step_ns(step_ns: int, span_ns: int) -> int:
    """A round multiple of ``step_ns`` giving at most X_TICKS labels over ``span_ns`` (labels on round
    clock times: every 10 min, every hour, ...)."""
    for s in [*logs.STEPS_S, 2 * 86400, 7 * 86400]:
        tick = s * 10**9
        if tick >= step_ns and tick % step_ns == 0 and span_ns // tick <= X_TICKS:
            return tick
    return step_ns * -(-span_ns // (step_ns * X_TICKS))


def volume_chart(found: logs.Histogram, window: Range, keep: list[tuple[str, str]]) -> VolumeChart:
    """Stacked bars of ``found``, each a link to the search narrowed to its bucket (inside ``window``)."""
    buckets = found.buckets
    first, last = buckets[0].start_ns, buckets[-1].end_ns
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    top = nice_ceiling(found.peak)
    span = window.end_ns - window.start_ns
    slot = plot_w / len(buckets)
    bars = []
    for b in buckets:
        x = PAD_L + (b.start_ns - first) / (last - first) * plot_w
        y = float(CHART_H - PAD_B)
        segments = []
        for name, count in zip(logs.SEVERITY_CLASSES, b.counts, strict=True):
            if count:
                height = count / top * plot_h
                y -= height
                segments.append(Segment(name.lower(), round(y, 2), round(height, 2)))
        lo, hi = max(b.start_ns, window.start_ns), min(b.end_ns - 1, window.end_ns)
        parts = ", ".join(f"{c} {n}" for n, c in zip(logs.SEVERITY_CLASSES, b.counts, strict=True) if c)
        when = f"{clock(b.start_ns, found.step_ns, span)} to {clock(b.end_ns, found.step_ns, span)} UTC"
        bars.append(
            Bar(
                x=round(x + slot * 0.1, 2),
                width=round(max(slot * 0.8, 1.0), 2),
                slot_x=round(x, 2),
                slot_width=round(slot, 2),
                segments=segments,
                total=b.total,
                href=url_with("/logs", [*keep, ("start", exact_ms(lo)), ("end", exact_ms(hi))]),
                label=f"{when}: {b.total} log{'s' if b.total != 1 else ''}"
                + (f" ({parts})" if parts else ""),
            )
        )
    ticks_ns = [b.start_ns for b in buckets if b.start_ns % tick_step_ns(found.step_ns, last - first) == 0]
    x_ticks = [
        (round(PAD_L + (t - first) / (last - first) * plot_w, 2), clock(t, found.step_ns, span))
        for t in ticks_ns
    ]
    # A label centred on the right edge would be cut off (on a phone its text is drawn larger).
    x_ticks = [(x, label) for x, label in x_ticks if x <= CHART_W - PAD_R - 28]
    y_ticks = [(float(CHART_H - PAD_B), 0), (float(PAD_T), top)]
    if top % 2 == 0:
        y_ticks.insert(1, (PAD_T + plot_h / 2, top // 2))
    totals = [sum(b.counts[i] for b in buckets) for i in range(len(logs.SEVERITY_CLASSES))]
    legend = [
        (name, n) for name, n in zip(logs.SEVERITY_CLASSES, totals, strict=True) if n or name != "UNSPECIFIED"
    ]
    return VolumeChart(bars, y_ticks, x_ticks, legend, step_text(found.step_ns), found.total)


def context_url(path: str, q: logs.ContextQuery, anchor_ns: int | None) -> str:
    """``path`` for the lines around ``q``'s line, cut at ``anchor_ns`` (None: at the line)."""
    params = [("at", str(q.at_ns)), ("by", q.by)]
    params += [
        (k, v) for k, v in (("service", q.service), ("trace_id", q.trace_id), ("span_id", q.span_id)) if v
    ]
    if anchor_ns is not None:
        params.append(("anchor", str(anchor_ns)))
    if q.n != logs.CONTEXT_DEFAULT_N:
        params.append(("n", str(q.n)))
    return url_with(path, params)


def router(backend: Backend) -> APIRouter:
    """The log pages over ``backend``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/logs", response_class=HTMLResponse)
    def log_search(request: Request) -> HTMLResponse:
        """Log search: severity, service, attributes, words, trace id and correlation id; the volume of
        the matching logs by severity over the range; a live tail (logs.js)."""
        form = search_form(request, LOG_PARAMS)
        window = time_range(request)
        params = request.query_params
        found: list[dict[str, Any]] | None = None
        chart: VolumeChart | None = None
        try:
            check_known(request, LOG_PARAMS | RANGE_PARAMS)
            limit = parse_param(
                lambda: parse_limit(params.get("limit", "").strip() or None, *api_explore.LOG_LIMIT)
            )
            query = parse_param(lambda: api_logs.log_search(params, window.start_ns, window.end_ns, limit))
            found = page_store(lambda: explore.search_logs(backend, query))
            volume = page_store(lambda: logs.histogram(backend, query))
            chart = volume_chart(volume, window, filled(request, LOG_PARAMS))
        except ValueError as exc:
            form.error = str(exc)
        except PageError as exc:
            if exc.status_code != 400:
                raise
            form.error = exc.message
        keep = filled(request, LOG_PARAMS)
        services = page_store(lambda: search.services(backend, window.start_ns, window.end_ns))
        tail_filters = filled(request, LOG_PARAMS - {"limit"})
        return render(
            request,
            "logs.html",
            400 if found is None else 200,
            form=form,
            range=window,
            logs=None if found is None else [log_view(entry) for entry in found],
            chart=chart,
            services=services,
            severities=SEVERITY_NAMES,
            range_links=range_links(request, keep),
            permalink=url_with("/logs", [*keep, *filled(request, RANGE_PARAMS)]),
            json_url=url_with("/api/v1/logs", [*keep, *api_range(window)]),
            histogram_url=url_with("/api/v1/logs/histogram", [*tail_filters, *api_range(window)]),
            # A tail follows "now": not offered for a fixed range.
            tail_url=url_with("/api/v1/logs/tail", tail_filters) if window.label != "custom" else "",
            tail_after=logs.page_cursor(window.end_ns).encode(),
            service_colours={name: colour(name) for name in services},
            **HELPERS,
        )

    @pages.get("/logs/context", response_class=HTMLResponse)
    def log_context(request: Request) -> HTMLResponse:
        """The lines around one line of the same service or trace, the line itself marked."""
        check_known(request, api_logs.CONTEXT_PARAMS)
        query = parse_param(lambda: api_logs.context_query(request.query_params))
        found = page_store(lambda: logs.context(backend, query))
        marked = [line for line in found.lines if line["is_target"]]
        return render(
            request,
            "log_context.html",
            query=query,
            lines=[log_view(line) for line in found.lines],
            marked=len(marked),
            at_iso=HELPERS["iso"](query.at_ns),
            at_seconds=query.at_ns / 1e9,
            before_count=found.before_count,
            after_count=found.after_count,
            lookback_hours=logs.CONTEXT_LOOKBACK_NS // (3600 * 10**9),
            earlier_url=None
            if found.earlier_anchor_ns is None
            else context_url("/logs/context", query, found.earlier_anchor_ns),
            later_url=None
            if found.later_anchor_ns is None
            else context_url("/logs/context", query, found.later_anchor_ns),
            line_url=context_url("/logs/context", query, None),
            other_url=context_url("/logs/context", _other_scope(query), None)
            if _other_scope(query)
            else None,
            search_url=_search_url(query),
            json_url=context_url("/api/v1/logs/context", query, query.anchor_ns),
            n_choices=[10, 25, 50, 100, 500],
            **HELPERS,
        )

    return pages


def _other_scope(q: logs.ContextQuery) -> logs.ContextQuery | None:
    """The same line seen by its trace instead of its service, or the other way round (if it has both)."""
    if not (q.service and q.trace_id):
        return None
    return logs.ContextQuery(
        q.at_ns, "trace" if q.by == "service" else "service", q.service, q.trace_id, q.span_id, n=q.n
    )


def _search_url(q: logs.ContextQuery) -> str:
    """The log search of the line's service or trace over the ten minutes around it."""
    scope = ("service", q.service) if q.by == "service" else ("trace_id", q.trace_id)
    half = 5 * 60 * 10**9
    return url_with(
        "/logs", [scope, ("start", exact_ms(max(0, q.at_ns - half))), ("end", exact_ms(q.at_ns + half))]
    )
