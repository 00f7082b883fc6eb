"""The JSON API of the log views: volume by severity, the lines around a line, and the live tail."""

from __future__ import annotations

from fastapi import APIRouter

from store.backend import Backend


def router(backend: Backend) -> APIRouter:
    """The log-view endpoints over ``backend``."""
    return APIRouter()
