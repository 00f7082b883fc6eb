"""Who a request is (its principal), as the authentication middleware (``ui/auth.py``) found it,
and the request's CSRF token. Pages and routers read these; only the middleware writes them.

Kept apart from ``ui/auth.py`` so that ``ui/web.py`` (which every page imports) can put the user
and the token into templates without importing the middleware.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

#: The roles, weakest first: each may do what the ones before it may.
ROLES = ("viewer", "responder", "admin")
#: What each role is for, in error messages.
ROLE_PURPOSE = {
    "viewer": "read",
    "responder": "acknowledge incidents and silence alerts",
    "admin": "reload SLOs and list ingest tokens",
}

#: The double-submit CSRF token: an HttpOnly SameSite=Strict cookie, echoed by forms in a field and
#: by scripts in a header (they read it from the page's ``<meta name="csrf-token">``).
CSRF_COOKIE = "sloscope_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

_PRINCIPAL = "sloscope.principal"
_CSRF = "sloscope.csrf"


@dataclass(frozen=True)
class Principal:
    """The user behind a request.

    ``tenant`` None: every tenant's data; a text: only that tenant's ("" is the default tenant).
    ``via`` says how the user was recognised: ``session`` (the login cookie), ``basic`` (HTTP Basic),
    ``proxy`` (a trusted reverse proxy's header), ``open`` (authentication is off: everyone is an
    admin of every tenant, as in the embedded demo) or ``anonymous`` (no user, on an open path).
    """

    name: str
    role: str
    tenant: str | None = None
    via: str = "open"

    @property
    def authenticated(self) -> bool:
        return self.via in ("session", "basic", "proxy")

    def can(self, role: str) -> bool:
        """Whether this principal has ``role`` or a stronger one."""
        if self.via == "anonymous":
            return False
        return ROLES.index(self.role) >= ROLES.index(role)


#: Authentication is off: everything is open, as it was before users existed.
OPEN = Principal("", "admin", None, "open")
ANONYMOUS = Principal("", "viewer", None, "anonymous")


def principal(request: HTTPConnection) -> Principal:
    """The request's principal (``OPEN`` when no middleware ran, e.g. an app without users)."""
    return request.scope.get(_PRINCIPAL, OPEN)


def set_principal(scope: dict[str, Any], who: Principal) -> None:
    scope[_PRINCIPAL] = who


@dataclass
class CsrfState:
    """The request's CSRF token: the browser's (from its cookie) or a new one, which the middleware
    sets as a cookie on the response once a page has used it."""

    token: str
    new: bool
    used: bool = False


def csrf_state(scope: dict[str, Any], cookie: str) -> CsrfState:
    """The token for a request whose ``sloscope_csrf`` cookie is ``cookie`` (maybe empty or junk)."""
    state = scope.get(_CSRF)
    if state is None:
        valid = 32 <= len(cookie) <= 128 and all(c.isalnum() or c in "-_" for c in cookie)
        state = CsrfState(cookie, False) if valid else CsrfState(secrets.token_urlsafe(32), True)
        scope[_CSRF] = state
    return state


def csrf_token(request: HTTPConnection) -> str:
    """The token a page puts into its forms (and its ``<meta name="csrf-token">`` for scripts)."""
    state = csrf_state(request.scope, request.cookies.get(CSRF_COOKIE, ""))
    state.used = True
    return state.token
