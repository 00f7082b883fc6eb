"""The SLO pages of the web UI (the incident pages are ``ui/pages_incidents.py``).

* ``GET /slos``: every SLO instance with its SLI, objective, budget left, burn rates and alert state.
* ``GET /slos/{name}?group=&last=``: one SLO: the budget burn-down over its window, a burn-rate chart
  per alert rule with the rule's factor drawn, the alert windows, the top contributors to the burn
  in the last hour with example failing traces, the SLO's open incidents, and the previous (closed)
  period's final SLI, budget consumed and whether it was met.

Charts are drawn by uPlot from JSON embedded with ``tojson``; each chart's data is also a table,
which is what a browser without JavaScript shows. The JSON twin is ``/api/v1/slos``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from alerts import store
from alerts.attribution import attribute
from alerts.links import LINK_ANNOTATIONS, server_href
from slo import evaluator, sli
from slo.model import MINUTE_S, Slo, format_duration
from slo.series import MinuteCounts
from slo.windows import floor_minute, previous_period, window_bounds
from store.backend import Backend, StoreError
from ui import web
from ui.scoping import SloCatalog, open_incidents

#: The burn-down chart's resolution: about this many evaluations over the SLO window.
BURN_DOWN_STEPS = 200
#: The burn-rate charts' resolution over the chosen time range.
BURN_RATE_STEPS = 300
#: The burn-rate charts' default range: long enough to show a 6h/30m pair's history.
DEFAULT_RANGE = "6h"
#: Burn attribution on the SLO page looks at the last hour.
ATTRIBUTION_S = 3600

# -- small helpers ---------------------------------------------------------------------------------


def link_url(value: str) -> str | None:
    """``value`` if it is an absolute http(s) URL, else None: only those become links (a
    ``javascript:`` annotation stays text)."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # "http://[x": an annotation's text, not a link
        return None
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _series(values: np.ndarray, scale: float = 1.0) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) * scale for v in values.tolist()]


def _step(span_s: int, points: int) -> int:
    """A whole number of minutes giving about ``points`` steps over ``span_s``."""
    return max(MINUTE_S, math.ceil(span_s / points / MINUTE_S) * MINUTE_S)


def slo_href(name: str, group: Sequence[tuple[str, str]] = ()) -> str:
    """The SLO page of one instance: ``/slos/{name}?group={"route":"/pay"}``."""
    path = f"/slos/{quote(name, safe='')}"
    if not group:
        return path
    return (
        path + "?" + urlencode({"group": json.dumps(dict(group), separators=(",", ":"), ensure_ascii=False)})
    )


def _budget_class(remaining: float | None) -> str:
    if remaining is None:
        return ""
    return "out" if remaining <= 0 else ("low" if remaining < 0.25 else "")


def _bar_width(remaining: float | None) -> float:
    """The budget bar's fill in percent: a spent or overspent budget is a full (red) bar, since an
    empty bar reads as "no data" rather than "exhausted"."""
    if remaining is None:
        return 0.0
    return 100.0 if remaining <= 0 else min(1.0, remaining) * 100


def _ago(seconds: int) -> str:
    """A span for people: ``12m``, ``3h 5m``, ``2d 4h`` (the two largest units)."""
    minutes = max(1, seconds // MINUTE_S)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{mins}m"] * bool(mins)
    return " ".join(parts[:2])


# -- the router ---------------------------------------------------------------------------------------


def router(backend: Backend, catalog: SloCatalog) -> APIRouter:
    """The SLO pages over ``backend`` for the SLOs of ``catalog`` the user may see."""
    pages = APIRouter(include_in_schema=False)

    def page(request: Request, template: str, **context: Any) -> Response:
        return web.render(request, template, iso=web.iso, slo_href=slo_href, duration=format_duration, **context)

    def find(request: Request, name: str) -> Slo:
        by_name = catalog.by_name(request)
        slo = by_name.get(name)
        if slo is None:
            known = ", ".join(sorted(by_name)) or "none are loaded"
            raise web.PageError(404, "Not found", f"There is no SLO named {name!r} (known: {known}).")
        return slo

    def annotations(slo: Slo) -> list[dict[str, Any]]:
        # runbook_url and dashboard_url may be relative to this server; other annotations link
        # only when they are absolute URLs (free text stays text).
        return [
            {"key": k, "value": v, "href": server_href(v) if k in LINK_ANNOTATIONS else link_url(v)}
            for k, v in slo.annotations
        ]

    def firing_alerts() -> dict[tuple[str, tuple[tuple[str, str], ...]], list[str]]:
        """(slo, group) -> severities whose stored alert is firing: the alerting engine's state."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
        for record in store.load_alerts(backend).values():
            if record.state == "firing":
                out.setdefault((record.slo, tuple(sorted(record.group))), []).append(record.severity)
        return {k: sorted(v) for k, v in out.items()}

    def row(result: evaluator.InstanceResult, firing: dict) -> dict[str, Any]:
        ev = result.evaluation
        remaining = _finite(ev.remaining) if ev else None
        return {
            "result": result,
            "group": list(result.group),
            "href": slo_href(result.slo.name, result.group),
            "sli": _finite(ev.sli) if ev else None,
            "remaining": remaining,
            "bar_width": _bar_width(remaining),
            "bar_class": _budget_class(remaining),
            "burn": dict(ev.burn_rates) if ev else {},
            "alerting": firing.get((result.slo.name, tuple(sorted(result.group))), []),
            "rules_firing": result.firing,
        }

    # -- SLO list ------------------------------------------------------------------------------

    @pages.get("/slos")
    async def slo_list(request: Request) -> Response:
        now = int(time.time())
        slos = catalog.visible(request)

        def load() -> tuple[list[evaluator.InstanceResult], dict]:
            return evaluator.evaluate(backend, slos, now), firing_alerts()

        results, firing = await run_in_threadpool(load)
        rows = [row(r, firing) for r in results]
        return page(
            request,
            "slos.html",
            rows=rows,
            slos=slos,
            at=floor_minute(now),
            windows=["5m", "1h", "6h", "1d"],
            json_url="/api/v1/slos",
        )

    # -- one SLO -----------------------------------------------------------------------------------

    @pages.get("/slos/{name}")
    async def slo_page(request: Request, name: str) -> Response:
        slo = find(request, name)
        rng = web.time_range(request, DEFAULT_RANGE)
        wanted = _wanted_group(slo, request.query_params.get("group"))
        now = floor_minute(time.time())
        data = await run_in_threadpool(_slo_data, backend, slo, wanted, now, rng)
        open_now = await run_in_threadpool(open_incidents, backend, catalog, request)
        incidents = [i for i in open_now if name in i["slos"]]
        firing = await run_in_threadpool(firing_alerts)
        return page(
            request,
            "slo.html",
            nav_open_incidents=len(open_now),
            slo=slo,
            range=rng,
            extra_query={"group": request.query_params["group"]} if "group" in request.query_params else {},
            rows=[row(r, firing) for r in data["results"]],
            current=row(data["current"], firing) if data["current"] else None,
            previous=data["previous"],
            annotations=annotations(slo),
            runbook=server_href(slo.annotation_map.get("runbook_url", "")),
            dashboard=server_href(slo.annotation_map.get("dashboard_url", "")),
            charts=data["charts"],
            attribution=data["attribution"],
            attribution_error=data["attribution_error"],
            attribution_range=(now - ATTRIBUTION_S, now),
            incidents=incidents,
            window_label=slo.window.label,
            json_url=f"/api/v1/slos/{name}",
        )

    return pages


# -- data of the SLO page ----------------------------------------------------------------------------


def _wanted_group(slo: Slo, text: str | None) -> tuple[tuple[str, str], ...] | None:
    """The ``group`` parameter (``{"route": "/pay"}``) as (name, value) pairs in group_by order."""
    if not text:
        return None
    try:
        labels = json.loads(text)
    except json.JSONDecodeError:
        labels = None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise web.PageError(
            400, "Bad group", f'group: {text!r} must be a JSON object like {{"route": "/pay"}}'
        )
    if set(labels) != set(slo.group_by):
        raise web.PageError(
            400, "Bad group", f"group: SLO {slo.name!r} groups by {list(slo.group_by)}, got {sorted(labels)}"
        )
    return tuple((k, labels[k]) for k in slo.group_by)


def _budget_left(result: evaluator.InstanceResult) -> float:
    left = _finite(result.evaluation.remaining) if result.evaluation else None
    return 2.0 if left is None else left  # no data: after every instance that has some


def _slo_data(
    backend: Backend, slo: Slo, wanted: tuple[tuple[str, str], ...] | None, now: int, rng: web.Range
) -> dict[str, Any]:
    """The SLO's instances now, and for one of them (``wanted``, else the one with the least budget
    left) the chart series and the burn attribution of the last hour."""
    results = evaluator.evaluate_slo(backend, slo, now)
    ok = [r for r in results if r.evaluation is not None]
    current = None
    if wanted is not None:
        current = next((r for r in ok if r.group == wanted), None)
        if current is None:
            raise web.PageError(404, "Not found", f"SLO {slo.name!r} has no data for group {dict(wanted)}.")
    elif ok:
        current = min(ok, key=_budget_left)
    out: dict[str, Any] = {
        "results": results,
        "current": current,
        "previous": _previous_data(backend, slo, wanted or (current.group if current else None), now),
        "charts": None,
        "attribution": None,
        "attribution_error": "",
    }
    if current is None:
        return out

    # The burn-down: a backtest over the part of the window that holds data (rolling: the last W;
    # calendar: the period so far), at about BURN_DOWN_STEPS steps of at least a minute. A young
    # install would otherwise get the whole window at a step of hours and so a single value. The
    # burn rates: one over the page's range. One store read: it reaches back as far as the window's
    # first evaluation needs, which covers every later one (their windows start later).
    window_start = floor_minute(window_bounds(slo.window, now).start_s)
    rng_start, rng_end = floor_minute(rng.start_s), min(now, floor_minute(rng.end_s))
    rng_start = min(rng_start, rng_end)
    rate_times = np.unique(
        np.append(evaluator.steps(rng_start, rng_end, _step(rng_end - rng_start, BURN_RATE_STEPS)), rng_end)
    )
    first = min(evaluator.data_start_s(slo, window_start), evaluator.data_start_s(slo, int(rate_times[0])))
    counts = sli.minute_counts(backend, slo, first, max(now, int(rate_times[-1])))
    key = tuple(v for _, v in current.group)
    mine = {key: counts[key]} if key in counts else {}
    charts: dict[str, Any] = {"burn_down": None, "rules": []}
    if mine:
        data_from = _first_event_s(mine[key])
        # The first step is the minute the data began: nothing is counted yet there ("–"), and it
        # anchors the x axis and the 0% line, so one later value still sits on a drawn axis.
        since_data = data_from is not None and data_from > window_start
        down_from = data_from if since_data else window_start
        down_times = np.unique(
            np.append(evaluator.steps(down_from, now, _step(now - down_from, BURN_DOWN_STEPS)), now)
        )
        down = evaluator.backtest_counts(slo, mine, down_times).groups[0]
        charts["burn_down"] = {
            "x": down_times.tolist(),
            "remaining": _series(down.evaluations.remaining, 100.0),
            "step": format_duration(int(down_times[1] - down_times[0])) if len(down_times) > 1 else "1m",
            "from": int(down_from),
            "to": int(now),
            "window_start": int(window_start),
            "since_data": since_data,
            "span": _ago(now - int(down_from)),
        }
        rates = evaluator.backtest_counts(slo, mine, rate_times).groups[0]
        for arrays in rates.rules:
            charts["rules"].append(
                {
                    "label": evaluator.rule_label(arrays.rule),
                    "severity": arrays.rule.severity,
                    "long": format_duration(arrays.rule.long_s),
                    "short": format_duration(arrays.rule.short_s),
                    "factor": float(arrays.rule.factor),
                    "x": rate_times.tolist(),
                    "long_rate": _series(arrays.long_burn_rate),
                    "short_rate": _series(arrays.short_burn_rate),
                    "firing": [bool(f) for f in arrays.firing.tolist()],
                }
            )
    out["charts"] = charts
    try:
        out["attribution"] = attribute(
            backend, slo, current.group, now - ATTRIBUTION_S, now, top=10, examples=5
        )
    except (ValueError, TypeError, StoreError) as exc:
        # The charts and tables above still stand; say why this part is missing.
        out["attribution_error"] = str(exc)
    return out


def _first_event_s(counts: MinuteCounts) -> int | None:
    """The first minute of ``counts`` with an event, or None when it has none."""
    seen = np.flatnonzero(counts.total > 0)
    return None if not len(seen) else counts.start_s + MINUTE_S * int(seen[0])


def _previous_data(
    backend: Backend, slo: Slo, group: tuple[tuple[str, str], ...] | None, now: int
) -> dict[str, Any]:
    """The period that closed before the current one: its bounds and its final results (of ``group``
    when one is chosen, else of every instance), evaluated at the instant it closed."""
    bounds = previous_period(slo.window, now)
    results = evaluator.evaluate_previous_slo(backend, slo, now)
    if group is not None:
        results = [r for r in results if r.group == group or r.error]
    return {"start": bounds.start_s, "end": bounds.end_s, "results": results}
