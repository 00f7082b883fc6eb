"""JSON API over OTLP metrics: ``/api/v1/metrics`` and ``/api/v1/metrics/{name}/series``.

Mount with ``app.include_router(api_metrics.router(backend))``. Formulas and examples:
docs/metrics-api.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from store import metrics_query
from store.backend import Backend
from ui.params import bad_request, call_store, parse_limit, parse_range, parse_step

log = logging.getLogger(__name__)

_LIST_PARAMS = {"start", "end", "service", "limit"}
_SERIES_PARAMS = {"start", "end", "service", "attr", "step", "agg", "group_by", "type", "limit"}
MAX_SERIES = 1000


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise bad_request(f"{name}: given {len(values)} times, expected at most once")
    return values[0] if values else None


def _check_known(request: Request, known: set[str]) -> None:
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise bad_request(f"unknown parameter {unknown[0]!r} (expected one of {', '.join(sorted(known))})")


def _attrs(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise bad_request(f"attr: {text!r} must look like KEY=VALUE")
        pairs.append((key.strip(), value))
    return tuple(pairs)


async def _run(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a store call off the event loop, with the API's error answers."""
    return await run_in_threadpool(call_store, compute)


def router(backend: Backend) -> APIRouter:
    """The metrics API over ``backend`` (paths start with ``/api/v1/metrics``)."""
    api = APIRouter(tags=["metrics"])

    @api.get("/api/v1/metrics")
    async def list_metrics(request: Request) -> dict[str, Any]:
        """Metric names with points in the range: type, unit, description, services, series count."""
        _check_known(request, _LIST_PARAMS)
        window = parse_range(_single(request, "start"), _single(request, "end"))
        limit = parse_limit(_single(request, "limit"), default=1000)
        service = _single(request, "service") or None

        def compute() -> dict[str, Any]:
            found, truncated = metrics_query.list_metrics(
                backend, window.start_ns, window.end_ns, service, limit
            )
            return {"metrics": found, "limit": limit, "truncated": truncated}

        return await _run(compute)

    # ``path``: OpenTelemetry instrument names may contain "/".
    @api.get("/api/v1/metrics/{name:path}/series")
    async def metric_series(name: str, request: Request) -> dict[str, Any]:
        """One series per attribute set (or group_by values), with points every ``step``."""
        _check_known(request, _SERIES_PARAMS)
        window = parse_range(_single(request, "start"), _single(request, "end"))
        step = parse_step(_single(request, "step"), window.end_ns - window.start_ns)
        query = metrics_query.SeriesQuery(
            name=name,
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            step_ns=step,
            agg=_single(request, "agg") or None,
            service=_single(request, "service") or None,
            attrs=_attrs(request.query_params.getlist("attr")),
            group_by=tuple(k.strip() for k in request.query_params.getlist("group_by")),
            type=_single(request, "type") or None,
            limit=parse_limit(_single(request, "limit"), default=100, maximum=MAX_SERIES),
        )
        return await _run(lambda: metrics_query.series(backend, query))

    return api
