"""Trace statistics and trace comparison pages."""

from __future__ import annotations

from fastapi import APIRouter

from store.backend import Backend


def router(backend: Backend) -> APIRouter:
    """The trace statistics and compare pages over ``backend``."""
    return APIRouter(include_in_schema=False)
