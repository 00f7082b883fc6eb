"""JSON API of canary verdicts (``slo/canary.py``, ``docs/canary.md``).

``GET /api/v1/canary?service=&baseline=&candidate=&start=&end=&slo=&min_requests=``: the candidate
version compared with the baseline over ``[start, end)`` (RFC 3339 or unix ms; default the last
hour), with the SLI of each ``slo`` (repeatable) too. Bad parameters are 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from slo import canary
from slo.model import Slo
from store.backend import Backend
from ui.params import bad_request, call_store, parse_range
from ui.scoping import SloCatalog


def find_slos(names: list[str], catalog: SloCatalog, request: Request) -> list[Slo]:
    """The SLOs named ``names`` the request's user may see; ValueError naming the unknown ones."""
    by_name = catalog.by_name(request)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"slo: no SLO named {', '.join(map(repr, unknown))} (known: {', '.join(sorted(by_name)) or 'none'})"
        )
    return [by_name[n] for n in names]


def router(backend: Backend, catalog: SloCatalog) -> APIRouter:
    """The canary endpoint over ``backend``, with the SLOs of ``catalog`` the user may see."""
    api = APIRouter()

    @api.get("/api/v1/canary")
    def get_canary(
        request: Request,
        service: str = "",
        baseline: str | None = None,
        candidate: str | None = None,
        start: str | None = None,
        end: str | None = None,
        slo: list[str] = Query(default=[]),  # noqa: B008
        min_requests: str | None = None,
    ) -> dict[str, Any]:
        """The verdict and every metric's comparison, as ``sloscope canary --format json``."""
        for name, value in (("service", service), ("baseline", baseline), ("candidate", candidate)):
            if value is None or (name == "service" and not value):
                raise bad_request(f"{name} is required")
        assert baseline is not None and candidate is not None
        time_range = parse_range(start, end)
        minimum = canary.MIN_REQUESTS
        if min_requests is not None:
            if not min_requests.isdigit() or not 1 <= int(min_requests) <= 10**9:
                raise bad_request(f"min_requests: {min_requests!r} is not a whole number from 1 to 10^9")
            minimum = int(min_requests)
        try:
            slos = find_slos(slo, catalog, request)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        report = call_store(
            lambda: canary.compare(
                backend, service, baseline, candidate, time_range.start_ns, time_range.end_ns, slos, minimum
            )
        )
        return report.to_dict()

    return api
