"""What every page shares: static files, the time-zone setting, and HTML error pages."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ui import web
from ui.auth import safe_next

#: Runbooks ship in the repository (docs/runbooks/NAME.md); names are plain, no paths.
RUNBOOKS = Path(__file__).resolve().parents[1] / "docs" / "runbooks"
RUNBOOK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,80}")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/jaeger/")) and "text/html" in request.headers.get(
        "accept", ""
    )


def install(app: FastAPI) -> None:
    """Static files at /static, POST /settings/tz, and HTML error pages for browsers."""
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")

    @app.post("/settings/tz", include_in_schema=False)
    def set_tz(tz: str = Form("utc"), next: str = Form("/")) -> Response:  # noqa: A002
        # Only a path on this site: an open redirect would let a link send users anywhere.
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(
            "tz", "browser" if tz == "browser" else "utc", samesite="lax", max_age=365 * 86_400
        )
        return response

    @app.get("/runbooks/{name}", include_in_schema=False)
    def runbook(name: str, request: Request) -> Response:
        """A runbook from docs/runbooks/, shown as text (SLO annotations link here in the demo)."""
        path = RUNBOOKS / f"{name}.md"
        if not RUNBOOK_NAME.fullmatch(name) or not path.is_file():
            raise web.PageError(
                404, "No such runbook", f"there is no runbook named {name!r} in docs/runbooks"
            )
        return web.render(request, "runbook.html", name=name, text=path.read_text(encoding="utf-8"))

    @app.exception_handler(web.PageError)
    async def page_error(request: Request, exc: web.PageError) -> Response:
        return web.render(request, "error.html", exc.status_code, title=exc.title, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request):
            titles = {403: "Forbidden", 404: "Not found"}
            title = titles.get(exc.status_code, "Something went wrong")
            return web.render(request, "error.html", exc.status_code, title=title, message=str(exc.detail))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": exc.errors()}, status_code=422)
