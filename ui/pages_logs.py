"""The log-search page: severity, service, attributes, words, trace id and correlation id. The JSON
twin is ``/api/v1/logs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from store import explore, search
from store.backend import Backend
from ui import api_explore
from ui.explore_pages import (
    HELPERS,
    RANGE_PARAMS,
    SEVERITY_NAMES,
    api_range,
    check_known,
    filled,
    log_view,
    page_store,
    parse_param,
    range_links,
    search_form,
    url_with,
)
from ui.params import parse_limit
from ui.web import PageError, render, time_range

LOG_PARAMS = {"service", "severity_min", "q", "trace_id", "correlation_id", "attr", "limit"}


def router(backend: Backend) -> APIRouter:
    """The log-search page over ``backend``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/logs", response_class=HTMLResponse)
    def log_search(request: Request) -> HTMLResponse:
        """Log search: severity, service, attributes, words, trace id and correlation id."""
        form = search_form(request, LOG_PARAMS)
        window = time_range(request)
        params = request.query_params
        found: list[dict[str, Any]] | None = None
        try:
            check_known(request, LOG_PARAMS | RANGE_PARAMS)
            severity_text = parse_param(lambda: api_explore._single(params, "severity_min")).strip()
            query = explore.LogSearch(
                start_ns=window.start_ns,
                end_ns=window.end_ns,
                service=parse_param(lambda: api_explore._single(params, "service")).strip(),
                severity_min=explore.parse_severity(severity_text) if severity_text else 0,
                q=parse_param(lambda: api_explore._single(params, "q")).strip(),
                trace_id=parse_param(lambda: api_explore._single(params, "trace_id")).strip(),
                correlation_id=parse_param(lambda: api_explore._single(params, "correlation_id")).strip(),
                attrs=[explore.parse_attr(a) for a in form.attrs],
                limit=parse_param(
                    lambda: parse_limit(params.get("limit", "").strip() or None, *api_explore.LOG_LIMIT)
                ),
            )
            found = page_store(lambda: explore.search_logs(backend, query))
        except ValueError as exc:
            form.error = str(exc)
        except PageError as exc:
            if exc.status_code != 400:
                raise
            form.error = exc.message
        keep = filled(request, LOG_PARAMS)
        services = page_store(lambda: search.services(backend, window.start_ns, window.end_ns))
        return render(
            request,
            "logs.html",
            400 if found is None else 200,
            form=form,
            range=window,
            logs=None if found is None else [log_view(entry) for entry in found],
            services=services,
            severities=SEVERITY_NAMES,
            range_links=range_links(request, keep),
            permalink=url_with("/logs", [*keep, *filled(request, RANGE_PARAMS)]),
            json_url=url_with("/api/v1/logs", [*keep, *api_range(window)]),
            **HELPERS,
        )

    return pages
