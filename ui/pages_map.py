"""The service map page: ``GET /map`` draws the services and their calls as a graph.

The graph is laid out here (``ui/map_layout.py``) and drawn as inline SVG, so it shows without
JavaScript: services are boxes coloured by their error ratio, each a link to its service page;
calls are arrows as wide as their rate, coloured and dashed by their errors, each a link to the
callee's traces (with ``status=error`` when the edge has errors: the traces search has no caller
filter, and the callee's failing spans are where a failing call shows). The same edges follow as a
table, the text alternative of the drawing.

* ``?focus=NAME``: that service and its neighbours, callers and callees alike; ``&depth=2`` also
  their neighbours.
* Past ``MAX_NODES`` services the drawing is unreadable (Jaeger and Kiali have the same problem), so
  the map without a focus shows the most significant ones, those with the most errors first, then the
  busiest, and says how many it left out; a focus is picked from a list of every service.

Takes the time-range picker's ``last=`` or ``start=``/``end=``; the JSON twin is
``/api/v1/dependencies``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from store import explore, red
from store.backend import Backend
from ui import map_layout, web
from ui.pages_services import service_url

#: Most services drawn at once: past this a layered graph needs more than a screen and its edges blur.
MAX_NODES = 40
#: Of those, at most this many are picked for their errors before the busiest fill the rest.
MAX_BY_ERRORS = 10
#: Most edges read (the JSON API's largest limit) and most services whose totals are read.
EDGE_LIMIT = 10_000
SERVICES_LIMIT = 5_000
#: Error ratios from which a service or call is shown as degraded and as failing.
WARN_RATIO = 0.01
BAD_RATIO = 0.05
#: Stroke widths of the quietest and the busiest edge (px), on a logarithmic scale of the call rate.
MIN_EDGE_WIDTH, MAX_EDGE_WIDTH = 1.5, 8.0
DEPTHS = ("1", "2")


def health(error_ratio: float | None) -> str:
    """``ok``, ``warn`` or ``bad`` by the thresholds above; ``idle`` without requests."""
    if error_ratio is None:
        return "idle"
    if error_ratio >= BAD_RATIO:
        return "bad"
    return "warn" if error_ratio >= WARN_RATIO else "ok"


def neighbourhood(edges: list[dict[str, Any]], focus: str, depth: int) -> set[str]:
    """``focus`` and the services within ``depth`` calls of it, either way."""
    near: dict[str, set[str]] = {}
    for e in edges:
        near.setdefault(e["caller"], set()).add(e["callee"])
        near.setdefault(e["callee"], set()).add(e["caller"])
    seen, frontier = {focus}, {focus}
    for _ in range(depth):
        frontier = {w for v in frontier for w in near.get(v, ())} - seen
        seen |= frontier
    return seen


@dataclass(frozen=True)
class Activity:
    """What ranks a service for the unfocused map: its requests and errors as a callee or server
    (RED totals, else the calls it received), and the calls it made."""

    requests: int
    errors: int
    calls: int


def significant(activity: dict[str, Activity], limit: int) -> list[str]:
    """The ``limit`` services to draw: the ``MAX_BY_ERRORS`` with most errors, then the busiest
    (requests plus calls made), ties by name."""
    by_errors = sorted((n for n, a in activity.items() if a.errors), key=lambda n: (-activity[n].errors, n))
    chosen = by_errors[: min(MAX_BY_ERRORS, limit)]
    busiest = sorted(activity, key=lambda n: (-(activity[n].requests + activity[n].calls), n))
    for name in busiest:
        if len(chosen) >= limit:
            break
        if name not in chosen:
            chosen.append(name)
    return chosen


def _edge_width(rate: float, peak: float) -> float:
    if peak <= 0:
        return MIN_EDGE_WIDTH
    share = math.log1p(rate) / math.log1p(peak)
    return round(MIN_EDGE_WIDTH + (MAX_EDGE_WIDTH - MIN_EDGE_WIDTH) * share, 2)


def _depth(request: Request) -> int:
    raw = request.query_params.get("depth") or "1"
    if raw not in DEPTHS:
        raise web.PageError(400, "Bad request", f"depth: {raw!r} must be 1 or 2")
    return int(raw)


def router(backend: Backend) -> APIRouter:
    """The service map page over ``backend``; a sync handler (thread pool)."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/map", response_class=HTMLResponse)
    def map_page(request: Request) -> HTMLResponse:
        """Services and the calls between them over the range, as a graph and as a table."""
        rng = web.time_range(request)
        focus = (request.query_params.get("focus") or "").strip()
        depth = _depth(request)
        seconds = max(1e-9, (rng.end_ns - rng.start_ns) / 1e9)
        edges = web.call_store(lambda: explore.dependencies(backend, rng.start_ns, rng.end_ns, EDGE_LIMIT))
        edges = [e for e in edges if e["caller"] != e["callee"]]
        totals = {
            row.service: row.stats
            for row in web.call_store(lambda: red.services_overview(backend, rng.start_ns, rng.end_ns, SERVICES_LIMIT))
        }
        received: dict[str, tuple[int, int]] = {}
        made: dict[str, int] = {}
        for e in edges:
            calls, errors = received.get(e["callee"], (0, 0))
            received[e["callee"]] = (calls + e["calls"], errors + e["errors"])
            made[e["caller"]] = made.get(e["caller"], 0) + e["calls"]
        # Every service that served requests or took part in a call.
        activity = {
            name: Activity(
                totals[name].requests if name in totals else received.get(name, (0, 0))[0],
                totals[name].errors if name in totals else received.get(name, (0, 0))[1],
                made.get(name, 0),
            )
            for name in sorted(set(totals) | set(received) | set(made))
        }
        connected = set(received) | set(made)

        if focus:
            shown = neighbourhood(edges, focus, depth) if focus in activity else set()
            if len(shown) > MAX_NODES:
                # A hub: its busiest neighbours (the focus itself always stays).
                ranked = significant({n: activity[n] for n in shown - {focus}}, MAX_NODES - 1)
                shown = {focus, *ranked}
            candidates = len(neighbourhood(edges, focus, depth)) if focus in activity else 0
        else:
            # Services with no call to or from another are the services list's business, not the map's.
            pool = {n: a for n, a in activity.items() if n in connected}
            shown = set(significant(pool, MAX_NODES))
            candidates = len(pool)
        drawn_edges = sorted(
            (e for e in edges if e["caller"] in shown and e["callee"] in shown),
            key=lambda e: (e["caller"], e["callee"]),
        )
        placed = map_layout.layout(shown, [(e["caller"], e["callee"]) for e in drawn_edges])
        routes = {(r.caller, r.callee): r for r in placed.routes}
        peak = max((e["calls"] / seconds for e in drawn_edges), default=0.0)
        range_query = urlencode(rng.query)

        nodes = []
        for name, box in sorted(placed.boxes.items()):
            stats = totals.get(name)
            ratio = stats.error_ratio if stats else None
            rate = stats.rate if stats else None
            nodes.append(
                {
                    "name": name,
                    "url": f"{service_url(name)}?{range_query}",
                    "focus_url": "/map?" + urlencode({"focus": name, **rng.query}),
                    "box": box,
                    "health": health(ratio),
                    "rate": rate,
                    "ratio": ratio,
                    "requests": stats.requests if stats else 0,
                    "errors": stats.errors if stats else 0,
                    "is_focus": name == focus,
                }
            )
        drawn = []
        for e in drawn_edges:
            rate = e["calls"] / seconds
            ratio = e["errors"] / e["calls"] if e["calls"] else None
            traces = {"service": e["callee"], **({"status": "error"} if e["errors"] else {}), **rng.query}
            drawn.append(
                {
                    **e,
                    "rate": rate,
                    "ratio": ratio,
                    "health": health(ratio),
                    "width": _edge_width(rate, peak),
                    "path": routes[e["caller"], e["callee"]].path(),
                    "reversed": routes[e["caller"], e["callee"]].reversed,
                    "traces_url": "/traces?" + urlencode(traces),
                    "all_traces_url": "/traces?" + urlencode({"service": e["callee"], **rng.query}),
                    "caller_url": f"{service_url(e['caller'])}?{range_query}",
                    "callee_url": f"{service_url(e['callee'])}?{range_query}",
                }
            )
        extra_query = {"focus": focus, **({"depth": str(depth)} if depth != 1 else {})} if focus else {}
        return web.render(
            request,
            "map.html",
            range=rng,
            period=(web.iso(rng.start_s), web.iso(rng.end_s)),
            focus=focus,
            focus_known=focus in activity,
            depth=depth,
            nodes=nodes,
            edges=drawn,
            width=math.ceil(placed.width),
            height=math.ceil(placed.height),
            candidates=candidates,
            hidden=max(0, candidates - len(shown)),
            isolated=len(activity) - len(connected),
            max_nodes=MAX_NODES,
            services=sorted(activity),
            extra_query=extra_query,
            warn_ratio=WARN_RATIO,
            bad_ratio=BAD_RATIO,
            json_url="/api/v1/dependencies?" + urlencode(rng.api_query),
        )

    return pages
