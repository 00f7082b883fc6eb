"""The Services pages of the web UI.

* ``GET /``: what is burning. The open incidents (severity, SLO, since when, acknowledged by whom),
  the SLOs burning or out of budget (their newest stored evaluations), then every service with rate
  over the range and over its last minutes, error ratio, p50/p95/p99 and a sparkline of its request
  rate (inline SVG drawn here, so it shows without JavaScript), worst error ratio first; the headers
  sort (``?sort=&dir=``) and a filter box keeps the names that contain ``?q=``. JSON twin
  ``/api/v1/services``. Five store queries whatever the number of services (the page of services,
  every sparkline in one grouped query, open incidents, their acknowledgements, the SLOs' newest
  evaluations); ``PAGE_SIZE`` services a page, ``?page=2`` and on with previous/next links.
* ``GET /services/{name}``: RED charts (uPlot over data embedded as JSON, an HTML table without
  JavaScript), its versions (``service.version``) side by side with their share of the traffic,
  operations, upstream and downstream services from the service map, the service's SLOs and its open
  incidents; JSON twin ``/api/v1/red?service=`` (``&group_by=version`` for the versions).

Both take the time-range picker's ``last=`` or ``start=``/``end=``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from alerts import store as alert_store
from slo import evaluator, history
from slo.model import Slo
from store import explore, red
from store.backend import Backend
from ui import web
from ui.pages_slos import slo_href
from ui.scoping import SloCatalog, open_incidents

#: At most this many services in the JSON twin's link and in the service page's lookup of its totals.
SERVICES_LIMIT = 500
#: Services per page of ``/``: past this many, ``?page=`` pages through the rest.
PAGE_SIZE = 200
#: The "current" rate column: requests per second over the last minutes of the range.
CURRENT_S = 300
#: The default order of the services table: the worst error ratio first.
DEFAULT_SORT = "error_ratio"
#: Longest ``?q=`` filter text kept.
MAX_FILTER = 200
#: An SLO instance counts on the home page if the evaluator stored a result this recently.
SLO_FRESH_S = 900
#: Points of a sparkline and of a service page chart (steps are whole minutes, so fewer on short ranges).
SPARK_POINTS = 30
CHART_POINTS = 120
SPARK_WIDTH, SPARK_HEIGHT = 120, 28
#: How far back a service with no requests in the range still counts as known: red_1m's TTL.
KNOWN_LOOKBACK_NS = 7 * 86_400 * 10**9
#: Versions listed on a service page, busiest first; the rest are counted.
VERSIONS_LIMIT = 50


def service_url(name: str) -> str:
    """The service page's path; ``/`` and other reserved characters of the name are escaped."""
    return "/services/" + quote(name, safe="")


def _step_ns(window_ns: int, points: int) -> int:
    """A whole number of minutes giving about ``points`` steps over ``window_ns``."""
    return max(1, math.ceil(window_ns / points / red.MINUTE_NS)) * red.MINUTE_NS


@dataclass(frozen=True)
class Sparkline:
    """An SVG sparkline: polyline point lists in a ``SPARK_WIDTH`` x ``SPARK_HEIGHT`` box."""

    rate: str
    errors: str
    area: str
    peak: float
    has_errors: bool
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT


def sparkline(points: Sequence[red.RatePoint]) -> Sparkline:
    """Request rate (and error rate, on the same scale) per step, scaled to the box."""
    rates = [p.rate for p in points]
    errors = [p.error_rate for p in points]
    peak = max(rates, default=0.0)
    scale = peak or 1.0
    n = len(rates)

    def points(values: list[float]) -> str:
        top, usable = 2, SPARK_HEIGHT - 4
        coords = []
        for i, v in enumerate(values):
            x = SPARK_WIDTH * i / (n - 1) if n > 1 else SPARK_WIDTH / 2
            y = top + usable * (1 - v / scale)
            coords.append(f"{x:.1f},{y:.1f}")
        return " ".join(coords)

    line = points(rates)
    area = f"0,{SPARK_HEIGHT} {line} {SPARK_WIDTH},{SPARK_HEIGHT}" if n > 1 else ""
    return Sparkline(line, points(errors), area, peak, any(errors))


def _page_number(request: Request) -> int:
    """``?page=`` of ``/``: a whole number from 1 (the default); anything else is a 400 page."""
    raw = request.query_params.get("page") or "1"
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 2**32 // PAGE_SIZE:
        raise web.PageError(400, "Bad request", f"page: {raw!r} must be a whole number from 1")
    return int(raw)


def _sort(request: Request) -> tuple[str, bool]:
    """``?sort=`` (a column key, worst error ratio by default) and ``?dir=asc|desc`` (the column's
    natural direction by default: names A to Z, numbers largest first); anything else is a 400."""
    sort = request.query_params.get("sort") or DEFAULT_SORT
    if sort not in red.SERVICE_SORTS:
        raise web.PageError(
            400, "Bad request", f"sort: {sort!r} must be one of {', '.join(red.SERVICE_SORTS)}"
        )
    direction = request.query_params.get("dir") or ""
    if direction not in ("", "asc", "desc"):
        raise web.PageError(400, "Bad request", f"dir: {direction!r} must be asc or desc")
    return sort, red.SERVICE_SORTS[sort] if not direction else direction == "desc"


#: The services table's columns: (sort key, header, numeric); the sparkline column is not sortable.
COLUMNS = (
    ("service", "Service", False),
    ("rate", "Rate", True),
    ("current", "Now", True),
    ("requests", "Requests", True),
    ("errors", "Errors", True),
    ("error_ratio", "Error ratio", True),
    ("p50", "p50", True),
    ("p95", "p95", True),
    ("p99", "p99", True),
)


def _columns(request: Request, sort: str, descending: bool) -> list[dict[str, Any]]:
    """Each column's header: its link sorts by it (again: the other way), from page 1."""
    out = []
    flip = "asc" if descending else "desc"
    for key, label, numeric in COLUMNS:
        current = key == sort
        natural = "desc" if red.SERVICE_SORTS[key] else "asc"
        out.append(
            {
                "label": label,
                "numeric": numeric,
                "href": web.with_query(request, sort=key, dir=flip if current else natural, page=None),
                "aria_sort": ("descending" if descending else "ascending") if current else None,
            }
        )
    return out


def _chart_data(series: red.RedSeries) -> dict[str, Any]:
    """Columns for uPlot: times in seconds and one list per measure (None: no requests in the step)."""
    pts = series.points
    return {
        "step": series.step_s,
        "time": [p.time_s for p in pts],
        "rate": [p.stats.rate for p in pts],
        "error_rate": [p.stats.error_rate for p in pts],
        "error_ratio": [p.stats.error_ratio for p in pts],
        "p50": [p.stats.p50_ms for p in pts],
        "p95": [p.stats.p95_ms for p in pts],
        "p99": [p.stats.p99_ms for p in pts],
    }


def canary_url(service: str, baseline: str, candidate: str, start_ns: int, end_ns: int) -> str:
    """The canary comparison of ``candidate`` against ``baseline`` over the range (unix ms)."""
    query = {
        "service": service,
        "baseline": baseline,
        "candidate": candidate,
        "start": str(start_ns // 10**6),
        "end": str(end_ns // 10**6),
    }
    return "/canary?" + urlencode(query)


def _version_rows(name: str, found: red.ServiceVersions, rng: web.Range) -> list[dict[str, Any]]:
    """The versions table's rows; with two or more versions each but the busiest links to its
    comparison against the busiest. Requests without ``service.version`` get no link: an empty
    ``candidate=`` would read as a missing one."""
    rows = found.versions
    baseline = rows[0].version if len(rows) > 1 else ""
    return [
        {
            "version": row.version,
            "share": row.share,
            "stats": row.stats,
            "canary_url": canary_url(name, baseline, row.version, rng.start_ns, rng.end_ns)
            if baseline and row.version and row.version != baseline
            else None,
        }
        for row in rows
    ]


def _slo_rows(backend: Backend, slos: Sequence[Slo], at_s: int) -> list[dict[str, Any]]:
    rows = []
    for slo in slos:
        for result in web.call_store(lambda slo=slo: evaluator.evaluate_slo(backend, slo, at_s)):
            ev = result.evaluation
            rows.append(
                {
                    "name": slo.name,
                    "url": "/slos/" + quote(slo.name, safe=""),
                    "group": ", ".join(f"{k}={v}" for k, v in result.group),
                    "objective": float(slo.objective),
                    "window": slo.window.label,
                    "sli": ev.sli if ev else None,
                    "remaining": ev.remaining if ev else None,
                    # The bar's filled share: overspent budgets show empty, not negative.
                    "bar_pct": round(min(1.0, max(0.0, ev.remaining)) * 100, 1)
                    if ev and ev.remaining is not None
                    else 0,
                    "burn_1h": ev.burn_rates.get("1h") if ev else None,
                    "firing": result.firing,
                    "error": result.error,
                }
            )
    return rows


def router(backend: Backend, catalog: SloCatalog) -> APIRouter:
    """The Services pages over ``backend``, with the SLOs of ``catalog`` the user may see; sync
    handlers (thread pool)."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/", response_class=HTMLResponse)
    def services_page(request: Request) -> HTMLResponse:
        """What is burning: open incidents, SLOs burning or out of budget, then every service with
        its RED numbers and a sparkline, worst error ratio first (or as ``?sort=&dir=`` asks)."""
        rng = web.time_range(request)
        number = _page_number(request)
        sort, descending = _sort(request)
        match = request.query_params.get("q", "").strip()[:MAX_FILTER]
        offset = (number - 1) * PAGE_SIZE
        listed = web.call_store(
            lambda: red.services_page(
                backend,
                rng.start_ns,
                rng.end_ns,
                PAGE_SIZE,
                offset,
                sort=sort,
                descending=descending,
                match=match,
                recent_s=CURRENT_S,
            )
        )
        if number > 1 and not listed.services:
            raise web.PageError(
                404,
                "No such page",
                f"page {number} is past the last service with requests in this range; the list starts at /.",
            )
        step = _step_ns(rng.end_ns - rng.start_ns, SPARK_POINTS)
        names = [row.service for row in listed.services]
        # One grouped query draws every sparkline of the page: a query per service made `/` take
        # 12-22 s with 200 services (issue 16) while the list alone took 0.13 s. The range picker
        # drops ?page=, so a new range starts on page 1.
        rates = web.call_store(lambda: red.request_rates(backend, names, rng.start_ns, rng.end_ns, step))
        services = [
            {
                "name": row.service,
                "url": service_url(row.service),
                "stats": row.stats,
                "current_rate": row.current_rate,
                "spark": sparkline(rates[row.service]),
            }
            for row in listed.services
        ]
        incidents = web.call_store(lambda: open_incidents(backend, catalog, request))
        acks = web.call_store(lambda: alert_store.acknowledgements(backend)) if incidents else {}
        visible = catalog.visible(request)
        since = int(time.time()) - SLO_FRESH_S
        burning = history.burning(
            web.call_store(lambda: history.latest(backend, [s.name for s in visible], since))
        )
        last = max(1, math.ceil(listed.total / PAGE_SIZE))
        pager = {
            "number": number,
            "last": last,
            "first_row": offset + 1,
            "last_row": offset + len(services),
            # Page 1 is plain /: its URL stays the one people bookmark.
            "prev": web.with_query(request, page=str(number - 1) if number > 2 else None)
            if number > 1
            else None,
            "next": web.with_query(request, page=str(number + 1)) if number < last else None,
        }
        # The range picker keeps the order and the filter.
        kept = {
            k: v
            for k, v in (
                ("sort", request.query_params.get("sort")),
                ("dir", request.query_params.get("dir")),
                ("q", match),
            )
            if v
        }
        return web.render(
            request,
            "services.html",
            range=rng,
            period=(web.iso(rng.start_s), web.iso(rng.end_s)),
            services=services,
            total=listed.total,
            pager=pager,
            columns=_columns(request, sort, descending),
            match=match,
            extra_query=kept,
            incidents=[
                {
                    **i,
                    "url": "/incidents/" + quote(i["id"], safe=""),
                    "opened_iso": web.iso(i["opened_at_s"]),
                    "acknowledged": acks.get(i["id"]),
                }
                for i in incidents
            ],
            nav_open_incidents=len(incidents),
            burning=burning,
            slo_href=slo_href,
            slo_count=len(visible),
            current_minutes=CURRENT_S // 60,
            json_url="/api/v1/services?" + urlencode({**rng.api_query, "limit": SERVICES_LIMIT}),
        )

    @pages.get("/services", response_class=RedirectResponse)
    def services_index(request: Request) -> RedirectResponse:
        """The list of services is the home page."""
        return RedirectResponse("/" + (f"?{request.url.query}" if request.url.query else ""), status_code=307)

    @pages.get("/services/{name:path}", response_class=HTMLResponse)
    def service_page(request: Request, name: str) -> HTMLResponse:
        """One service: RED over the range, operations, neighbours, SLOs and open incidents."""
        rng = web.time_range(request)
        operations = web.call_store(lambda: red.operations(backend, name, rng.start_ns, rng.end_ns, 200))
        visible = catalog.by_name(request)
        own_slos = [slo for slo in visible.values() if slo.service == name]
        if not operations and not own_slos:
            # Known, but quiet in this range? red_1m keeps a week; older services are gone anyway.
            now = time.time_ns()
            seen = web.call_store(lambda: red.operations(backend, name, now - KNOWN_LOOKBACK_NS, now, 1))
            if not seen:
                raise web.PageError(
                    404,
                    "No such service",
                    f"no service named {name!r} has sent spans in the last 7 days, and no SLO names it.",
                )
        step = _step_ns(rng.end_ns - rng.start_ns, CHART_POINTS)
        series = web.call_store(lambda: red.red_series(backend, name, None, rng.start_ns, rng.end_ns, step))
        edges = web.call_store(lambda: explore.dependencies(backend, rng.start_ns, rng.end_ns))
        upstream = [
            {**e, "service": e["caller"], "url": service_url(e["caller"])}
            for e in edges
            if e["callee"] == name and e["caller"] != name
        ]
        downstream = [
            {**e, "service": e["callee"], "url": service_url(e["callee"])}
            for e in edges
            if e["caller"] == name and e["callee"] != name
        ]
        slo_rows = _slo_rows(backend, own_slos, time.time_ns() // 10**9)
        open_now = web.call_store(lambda: open_incidents(backend, catalog, request))
        incidents = [
            {**i, "url": "/incidents/" + quote(i["id"], safe=""), "opened_iso": web.iso(i["opened_at_s"])}
            for i in open_now
            if name in i["services"]
        ]
        overview = web.call_store(
            lambda: red.services_overview(backend, rng.start_ns, rng.end_ns, SERVICES_LIMIT)
        )
        total = next((row.stats for row in overview if row.service == name), None)
        found = web.call_store(
            lambda: red.versions(backend, name, rng.start_ns, rng.end_ns, limit=VERSIONS_LIMIT)
        )
        return web.render(
            request,
            "service.html",
            nav_open_incidents=len(open_now),
            range=rng,
            period=(web.iso(rng.start_s), web.iso(rng.end_s)),
            name=name,
            operations=operations,
            chart=_chart_data(series),
            points=[(p, web.iso(p.time_s)) for p in series.points],
            upstream=upstream,
            downstream=downstream,
            slos=slo_rows,
            incidents=incidents,
            total=total,
            versions=_version_rows(name, found, rng),
            versions_total=found.total,
            json_url="/api/v1/red?"
            + urlencode({"service": name, **rng.api_query, "step": f"{step // red.MINUTE_NS}m"}),
            versions_json="/api/v1/red?"
            + urlencode(
                {"service": name, **rng.api_query, "step": f"{step // red.MINUTE_NS}m", "group_by": "version"}
            ),
            operations_json="/api/v1/services/"
            + quote(name, safe="")
            + "/operations?"
            + urlencode(rng.api_query),
        )

    return pages
