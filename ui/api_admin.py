"""JSON API for admins: reload the SLO specs, list the ingest tokens.

* ``POST /api/v1/admin/slos/reload``: re-read the SLO specs (the ``slos`` setting) and use them for
  every page and endpoint of this process, and for its evaluations; if they have errors, nothing
  changes and the answer (400) lists them. Needs an admin of every tenant.
* ``GET /api/v1/admin/tokens``: the ingest tokens' names and tenants (never their digests); an admin
  bound to a tenant sees that tenant's tokens.

The server supplies both through :class:`AdminHooks` (``sloscope/app.py``): the UI does not own the
SLO files or the token set, it asks whoever does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from slo.model import Slo
from ui.auth import require
from ui.identity import principal
from ui.scoping import SloCatalog

#: The fields of a token the API shows; anything else a token set holds (digests) never leaves.
TOKEN_FIELDS = ("name", "tenant")


@dataclass(frozen=True)
class AdminHooks:
    """What the admin endpoints call. ``reload_slos`` re-reads the specs and returns the new SLOs, or
    raises ValueError whose message lists the problems; ``tokens`` returns one mapping per ingest
    token with at least ``name`` and ``tenant``. None: this process has no such thing (404, saying so)."""

    reload_slos: Callable[[], Sequence[Slo]] | None = None
    tokens: Callable[[], Sequence[Mapping[str, Any]]] | None = None


def router(catalog: SloCatalog, hooks: AdminHooks) -> APIRouter:
    """The admin endpoints; ``catalog`` is replaced by a successful reload."""
    api = APIRouter(tags=["admin"], dependencies=[Depends(require("admin"))])

    @api.post("/api/v1/admin/slos/reload")
    async def reload_slos(request: Request) -> Any:
        """Re-read the SLO specs; on errors keep the loaded SLOs and list the errors."""
        if principal(request).tenant is not None:
            raise HTTPException(
                403, "forbidden: reloading SLOs changes every tenant's; it needs an admin without a tenant"
            )
        if hooks.reload_slos is None:
            raise HTTPException(404, "this server does not load SLO specs (no slos setting in this role)")
        try:
            slos = await run_in_threadpool(hooks.reload_slos)
        except ValueError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            return JSONResponse(
                {
                    "detail": "the SLO specs have errors; the loaded SLOs are unchanged",
                    "errors": lines[1:] or lines,
                },
                status_code=400,
            )
        catalog.replace(slos)
        return {"reloaded": True, "count": len(slos), "slos": sorted(s.name for s in slos)}

    @api.get("/api/v1/admin/tokens")
    async def tokens(request: Request) -> dict[str, Any]:
        """Ingest tokens: name and tenant of each (the digests stay on the server)."""
        if hooks.tokens is None:
            raise HTTPException(404, "this server has no ingest tokens configured")
        tenant = principal(request).tenant
        found = await run_in_threadpool(hooks.tokens)
        shown = [
            {key: token.get(key) for key in TOKEN_FIELDS}
            for token in found
            if tenant is None or (token.get("tenant") or "") == tenant
        ]
        return {"tokens": sorted(shown, key=lambda t: str(t["name"]))}

    return api
