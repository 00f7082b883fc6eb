"""The HTTP API on the API port: health, readiness, Prometheus metrics and trace lookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from store import traces
from store.backend import Backend
from ui import jaeger


def create_app(
    backend: Backend,
    registry: CollectorRegistry,
    readiness: Callable[[], list[str]],
) -> FastAPI:
    """The API application. ``readiness`` returns the reasons the server is not ready (none: ready)."""
    app = FastAPI(title="sloscope", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)

    @app.get("/")
    def index() -> dict[str, Any]:
        """What this server offers (the web UI arrives in a later release)."""
        return {
            "name": "sloscope",
            "endpoints": {
                "health": "/healthz",
                "readiness": "/readyz",
                "metrics": "/metrics",
                "trace": "/api/v1/traces/{trace_id}",
                "api_docs": "/api/docs",
                "jaeger": "/jaeger/api/services",
            },
        }

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        """The process is up."""
        return "ok\n"

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """The store answers and the schema is current."""
        problems = await run_in_threadpool(readiness)
        status = 503 if problems else 200
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=status)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        """Prometheus text exposition of sloscope's own metrics."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/traces/{trace_id}")
    def get_trace(trace_id: str) -> dict[str, Any]:
        """Every stored span of one trace, with all stored fields."""
        try:
            spans = traces.get_trace(backend, trace_id)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        if not spans:
            raise HTTPException(404, f"trace {trace_id.lower()} not found")
        return {"trace_id": trace_id.lower(), "spans": spans}

    # Jaeger's query API for Grafana's Jaeger data source (URL http://HOST:PORT/jaeger) and the Jaeger UI.
    app.include_router(jaeger.router(backend), prefix="/jaeger")

    return app
