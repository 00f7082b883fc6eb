"""The canary page: a candidate version of a service against its baseline (``slo/canary.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from slo import canary
from store import red
from store.backend import Backend
from ui import web
from ui.api_canary import find_slos
from ui.pages_services import service_url
from ui.scoping import SloCatalog


def router(backend: Backend, catalog: SloCatalog) -> APIRouter:
    """``GET /canary?service=&baseline=&candidate=&slo=`` with the page's time range."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/canary", response_class=HTMLResponse)
    def canary_page(request: Request) -> HTMLResponse:
        """The form, and with service, baseline and candidate given, the verdict and its metrics."""
        params = request.query_params
        form = {name: params.get(name, "").strip() for name in ("service", "baseline", "candidate")}
        rng = web.time_range(request)
        slos = [s for s in catalog.visible(request) if s.service == form["service"]]
        chosen = params.getlist("slo")
        report = None
        seen = []
        if form["service"]:
            # The versions to choose from: the service's busiest in the range, with their shares.
            seen = web.call_store(
                lambda: red.versions(backend, form["service"], rng.start_ns, rng.end_ns, limit=20).versions
            )
        if form["service"] and form["baseline"] and form["candidate"]:
            report = web.call_store(
                lambda: canary.compare(
                    backend,
                    form["service"],
                    form["baseline"],
                    form["candidate"],
                    rng.start_ns,
                    rng.end_ns,
                    find_slos(chosen, catalog, request),
                )
            )
        return web.render(
            request,
            "canary.html",
            form=form,
            range=rng,
            report=report,
            slos=slos,
            chosen=chosen,
            versions=seen,
            extra_query={k: v for k, v in form.items() if v},
            service_href=service_url(form["service"]),
            min_requests=canary.MIN_REQUESTS,
        )

    return pages
