"""The HTTP API on the API port: health, readiness, Prometheus metrics and trace lookup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware

from alerts.silences import parse_matcher
from slo.model import Slo
from store.backend import Backend
from ui import (
    api_admin,
    api_alerts,
    api_canary,
    api_explore,
    api_logs,
    api_metrics,
    api_red,
    api_slo,
    jaeger,
    pages_canary,
    pages_common,
    pages_incidents,
    pages_login,
    pages_logs,
    pages_map,
    pages_services,
    pages_slos,
    pages_span,
    pages_trace_analysis,
    pages_trace_search,
    pages_traces,
)
from ui.api_admin import AdminHooks
from ui.auth import Authenticator, AuthMiddleware
from ui.scoping import SloCatalog, open_incidents
from ui.security_headers import SecurityHeadersMiddleware


class _App(FastAPI):
    """FastAPI with the security headers outside everything, so that they are on every response,
    also on the plain 500 of an unhandled error (which FastAPI's own middleware stack answers)."""

    def build_middleware_stack(self):  # noqa: ANN201
        return SecurityHeadersMiddleware(super().build_middleware_stack())


def _install_ops(app: FastAPI, registry: CollectorRegistry, readiness: Callable[[], list[str]]) -> None:
    """/healthz, /readyz and /metrics: what every role's API port answers."""

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        """The process is up."""
        return "ok\n"

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """The store answers, the schema is current and this role's parts run."""
        problems = await run_in_threadpool(readiness)
        status = 503 if problems else 200
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=status)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        """Prometheus text exposition of sloscope's own metrics."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def create_ops_app(registry: CollectorRegistry, readiness: Callable[[], list[str]]) -> FastAPI:
    """The API port of a role without the web UI (collector, evaluator): health, readiness and
    metrics only; every other path is 404."""
    app = _App(title="sloscope", docs_url=None, openapi_url=None, redoc_url=None)
    _install_ops(app, registry, readiness)
    return app


def create_app(
    backend: Backend,
    registry: CollectorRegistry,
    readiness: Callable[[], list[str]],
    slos: Sequence[Slo] | SloCatalog = (),
    external_url: str = "",
    auth: Authenticator | None = None,
    admin: AdminHooks | None = None,
) -> FastAPI:
    """The API application. ``readiness`` returns the reasons the server is not ready (none: ready);
    ``slos`` are the SLOs the SLO endpoints answer for (a catalog an admin's reload replaces);
    ``external_url`` the base of incident links; ``auth`` the users and how they sign in (None or
    without users: everything open, as in the embedded demo); ``admin`` what the admin endpoints call.

    There is no Swagger UI page: it runs an inline script and loads its code from a CDN, which the
    Content-Security-Policy refuses; ``/api/openapi.json`` describes the API for any OpenAPI viewer."""
    app = _App(title="sloscope", docs_url=None, openapi_url="/api/openapi.json", redoc_url=None)
    catalog = slos if isinstance(slos, SloCatalog) else SloCatalog(slos)
    auth = auth or Authenticator()
    app.state.auth, app.state.slos = auth, catalog
    app.state.open_incident_count = lambda request: len(open_incidents(backend, catalog, request))
    app.add_middleware(AuthMiddleware, auth=auth)
    # Outside authentication, so that its refusals are compressed too; streams pass uncompressed.
    app.add_middleware(GZipMiddleware, minimum_size=1024)

    pages_common.install(app)
    app.include_router(pages_login.router(auth))

    @app.get("/api")
    def index() -> dict[str, Any]:
        """What this server offers: the JSON API's entry points (the web UI is at /)."""
        return {
            "name": "sloscope",
            "endpoints": {
                "health": "/healthz",
                "readiness": "/readyz",
                "prometheus": "/metrics",
                "trace": "/api/v1/traces/{trace_id}",
                "trace_outline": "/api/v1/traces/{trace_id}/outline",
                "trace_find": "/api/v1/traces/{trace_id}/find?q=",
                "span": "/api/v1/traces/{trace_id}/spans/{span_id}",
                "trace_stats": "/api/v1/traces/{trace_id}/stats",
                "trace_compare": "/api/v1/traces/compare?a=&b=",
                "traces": "/api/v1/traces",
                "logs": "/api/v1/logs",
                "logs_histogram": "/api/v1/logs/histogram",
                "logs_context": "/api/v1/logs/context?at=&service=",
                "logs_tail": "/api/v1/logs/tail",
                "correlation": "/api/v1/correlations/{correlation_id}",
                "dependencies": "/api/v1/dependencies",
                "services": "/api/v1/services",
                "red": "/api/v1/red?service=",
                "canary": "/api/v1/canary?service=&baseline=&candidate=",
                "metrics": "/api/v1/metrics",
                "slos": "/api/v1/slos",
                "alerts": "/api/v1/alerts",
                "incidents": "/api/v1/incidents",
                "silences": "/api/v1/silences",
                "openapi": "/api/openapi.json",
                "admin_reload_slos": "POST /api/v1/admin/slos/reload",
                "admin_tokens": "/api/v1/admin/tokens",
                "jaeger": "/jaeger/api/services",
            },
        }

    _install_ops(app, registry, readiness)

    # Jaeger's query API for Grafana's Jaeger data source (URL http://HOST:PORT/jaeger) and the Jaeger UI.
    # Before the explore API and the trace view: /traces/compare is not a trace id.
    app.include_router(pages_trace_analysis.router(backend))
    app.include_router(api_explore.router(backend))
    app.include_router(api_logs.router(backend))
    app.include_router(api_red.router(backend))
    app.include_router(api_canary.router(backend, catalog))
    app.include_router(api_metrics.router(backend))
    app.include_router(api_slo.router(backend, catalog))
    app.include_router(api_alerts.router(backend, catalog, parse_matcher, external_url))
    app.include_router(api_admin.router(catalog, admin or AdminHooks()))
    app.include_router(pages_slos.router(backend, catalog))
    app.include_router(pages_incidents.router(backend, catalog))
    app.include_router(pages_services.router(backend, catalog))
    app.include_router(pages_canary.router(backend, catalog))
    app.include_router(pages_map.router(backend))
    app.include_router(jaeger.router(backend), prefix="/jaeger")
    app.include_router(pages_trace_search.router(backend))
    app.include_router(pages_span.router(backend))
    app.include_router(pages_traces.router(backend))
    app.include_router(pages_logs.router(backend))

    return app
