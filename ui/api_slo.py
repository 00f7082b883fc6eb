"""JSON API of the SLOs: budgets and burn rates at any instant, and the stored evaluation history.

* ``GET /api/v1/slos?at=&period=``: every SLO instance evaluated at ``at`` (default now).
* ``GET /api/v1/slos/{name}?at=&period=``: the instances of one SLO (its group values).
* ``GET /api/v1/slos/{name}/history?start=&end=&group=&limit=``: stored evaluations (default: the
  last 24 hours), oldest first per group; ``group`` is the group's JSON (``{"tenant":"a"}``).

``at``/``start``/``end`` are RFC 3339 or unix milliseconds; evaluation times are whole minutes.
``period`` is ``current`` (default: the window at ``at``) or ``previous``: the period that closed
before it, evaluated at the instant it closed (each result's ``at``), with ``met`` its verdict.
The answers are those of ``sloscope slo report --format json [--period]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from slo import evaluator, history
from slo.model import Slo
from store.backend import Backend
from ui.params import bad_request, call_store, parse_limit, parse_range, parse_time
from ui.scoping import SloCatalog

HISTORY_RANGE_NS = 24 * 3600 * 10**9
HISTORY_LIMIT = (10_000, 100_000)  # default, maximum


#: Times in the store are DateTime (UInt32 seconds): nothing after 2106-02-07 can be read.
MAX_AT_S = 2**32 - 1


def _instant_ns(value: str, name: str) -> int:
    """``parse_time``, with digits too many for a float (``int(inf)``) a 400 as well."""
    try:
        return parse_time(value, name)
    except OverflowError:
        raise bad_request(f"{name}: {value!r} is out of range") from None


def _period(period: str | None) -> str:
    """``period`` checked: current (the default) or previous."""
    if period is None or period == "":
        return "current"
    if period not in evaluator.PERIODS:
        raise bad_request(f"period: {period!r} must be one of {', '.join(evaluator.PERIODS)}")
    return period


def _at_s(at: str | None, slos: Sequence[Slo], period: str = "current") -> int:
    """``at`` in unix seconds (default now), refused when the store cannot answer for it: past 2106, or
    so early that an SLO's windows would reach before 1970 (the store's times start there)."""
    if not at:
        return time.time_ns() // 10**9
    at_s = _instant_ns(at, "at") // 10**9
    if not 0 <= at_s <= MAX_AT_S:
        raise bad_request(f"at: {at!r} is out of range (1970-01-01 to 2106-02-07)")
    for slo in slos:
        if evaluator.period_reach_s(slo, at_s, period) < 0:
            raise bad_request(f"at: {at!r} is too early: SLO {slo.name!r} would read data from before 1970")
    return at_s


def router(backend: Backend, catalog: SloCatalog) -> APIRouter:
    """The SLO endpoints over ``backend`` for the SLOs of ``catalog`` the request's user may see."""
    api = APIRouter()

    def find(request: Request, name: str) -> Slo:
        by_name = catalog.by_name(request)
        slo = by_name.get(name)
        if slo is None:
            raise HTTPException(404, f"no SLO named {name!r} (known: {', '.join(sorted(by_name)) or 'none'})")
        return slo

    @api.get("/api/v1/slos")
    def list_slos(request: Request, at: str | None = None, period: str | None = None) -> dict[str, Any]:
        """Every SLO instance: SLI, budget, burn rates and alert rules at ``at`` (or of the period
        that closed before it)."""
        which = _period(period)
        slos = catalog.visible(request)
        at_s = _at_s(at, slos, which)
        results = call_store(lambda: evaluator.evaluate_period(backend, slos, at_s, which))
        return {"at": at_s - at_s % 60, "period": which, "slos": [evaluator.as_dict(r) for r in results]}

    @api.get("/api/v1/slos/{name}")
    def get_slo(request: Request, name: str, at: str | None = None, period: str | None = None) -> dict[str, Any]:
        """One SLO's instances at ``at`` (or of the period that closed before it)."""
        which = _period(period)
        slo = find(request, name)
        at_s = _at_s(at, [slo], which)
        results = call_store(lambda: evaluator.evaluate_period(backend, [slo], at_s, which))
        return {
            "at": at_s - at_s % 60,
            "period": which,
            "slo": name,
            "instances": [evaluator.as_dict(r) for r in results],
        }

    @api.get("/api/v1/slos/{name}/history")
    def get_history(
        request: Request,
        name: str,
        start: str | None = None,
        end: str | None = None,
        group: str | None = None,
        limit: str | None = None,
    ) -> dict[str, Any]:
        """Stored evaluations of one SLO in ``[start, end)``."""
        find(request, name)
        for value, parameter in ((start, "start"), (end, "end")):
            if value:
                _instant_ns(value, parameter)  # parse_range's own parsing would overflow
        time_range = parse_range(start, end, HISTORY_RANGE_NS)
        # Evaluation times are DateTime (UInt32 seconds): the store refuses a query outside 1970-2106.
        start_s, end_s = max(0, time_range.start_ns // 10**9), time_range.end_ns // 10**9
        if (start and time_range.start_ns < 0) or not 0 <= end_s <= MAX_AT_S:
            raise bad_request(f"start/end: out of range (1970-01-01 to 2106-02-07; got start={start}, end={end})")
        key = ""
        if group:
            try:
                labels = json.loads(group)
            except json.JSONDecodeError:
                raise bad_request(f'group: {group!r} is not JSON like {{"tenant": "a"}}') from None
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise bad_request("group: must be a JSON object of strings")
            key = history.group_key(list(labels.items()))
        n = parse_limit(limit, *HISTORY_LIMIT)
        rows = call_store(
            lambda: history.read(backend, name, start_s, end_s, key, n)
        )
        return {"slo": name, "evaluations": rows}

    return api
