"""The login page and logout.

* ``GET /login?next=/path``: the form (user name, password), CSRF-protected like every form.
* ``POST /login``: checks the password (throttled: 429 with ``Retry-After`` after repeated failures);
  on success sets the session cookie, renews the CSRF token and redirects (303) to ``next`` if it
  is a path on this site, else to ``/``. Unknown users and wrong passwords get the same answer.
* ``POST /logout``: clears the session cookie and redirects to ``/login``.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ui import web
from ui.auth import Authenticator, client_address, is_secure, safe_next, set_csrf_cookie, set_session_cookie
from ui.identity import principal

#: Shown for an unknown user, a user without a password and a wrong password alike.
WRONG = "Wrong user name or password."


def router(auth: Authenticator) -> APIRouter:
    """``/login`` and ``/logout`` for the users of ``auth``."""
    pages = APIRouter(include_in_schema=False)

    def form(request: Request, status: int, next_path: str, username: str = "", error: str = "") -> Response:
        return web.render(request, "login.html", status, next=next_path, username=username, error=error)

    @pages.get("/login")
    def login_page(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if not auth.enabled or principal(request).authenticated:
            return RedirectResponse(next_path, status_code=303)
        return form(request, 200, next_path)

    @pages.post("/login")
    async def login(request: Request) -> Response:
        data = await request.form()
        username = str(data.get("username", "")).strip()[:128]
        password = str(data.get("password", ""))
        next_path = safe_next(str(data.get("next", "")))
        if not auth.enabled:
            return RedirectResponse(next_path, status_code=303)
        if not username or not password:
            return form(request, 400, next_path, username, "Enter a user name and a password.")
        result = await auth.sign_in(username, password, client_address(request))
        if result.retry_after:
            response = form(
                request,
                429,
                next_path,
                username,
                f"Too many failed sign-ins. Try again in {result.retry_after} seconds.",
            )
            response.headers["Retry-After"] = str(result.retry_after)
            return response
        if result.user is None:
            # 200 with the form again, as login forms do: a 401 must carry WWW-Authenticate, which
            # would make the browser ask for HTTP Basic credentials on top of the form.
            return form(request, 200, next_path, username, WRONG)
        response = RedirectResponse(next_path, status_code=303)
        secure = is_secure(request)
        set_session_cookie(response, auth.issue(result.user), auth.signer.max_age_s, secure)
        # A new CSRF token for the new session: one seen before signing in is not carried over.
        set_csrf_cookie(response, secrets.token_urlsafe(32), secure)
        return response

    @pages.post("/logout")
    def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        set_session_cookie(response, "", 0, is_secure(request))
        return response

    return pages
