"""One span on its own page: /traces/{trace_id}/spans/{span_id}."""

from __future__ import annotations

from fastapi import APIRouter

from store.backend import Backend


def router(backend: Backend) -> APIRouter:
    """The span page over ``backend``."""
    return APIRouter(include_in_schema=False)
