"""Authentication, roles, CSRF protection and tenant scoping of the web UI and the API.

One pure ASGI middleware (:class:`AuthMiddleware`) runs before every route:

1. It works out the client's address and whether the request came over TLS (directly, or from a
   proxy in ``trusted_proxies`` saying ``X-Forwarded-Proto: https``).
2. It finds the user: a trusted reverse proxy's user header (only from ``auth_proxy_trusted``
   addresses; from anywhere else the header is ignored and logged), HTTP Basic credentials, or the
   login session cookie (``ui/sessions.py``). Without one, a browser asking for a page is sent to
   ``/login?next=...`` (303) and anything else gets 401 with ``WWW-Authenticate``. Health, readiness,
   metrics (unless ``metrics_auth``), static files and the login page stay open.
3. Every POST, PUT, PATCH and DELETE must pass the CSRF check (also with authentication off): the
   double-submit token (cookie ``sloscope_csrf`` echoed in the form field ``csrf_token`` or the header
   ``X-CSRF-Token``), or, for a request that is not authenticated by the session cookie (HTTP Basic, a
   proxy, or no authentication), a header a cross-site page cannot send without the browser asking
   first: ``X-Requested-By`` (any value) or ``Content-Type: application/json``.
4. For a user bound to a tenant it runs the rest of the request inside
   ``store.tenancy.tenant_scope(tenant)``: a context variable, so every store read of the handler, in
   the event loop or in the thread pool (which copies the context), is filtered to that tenant.

Roles are checked by the routes themselves (:func:`require`), which name the role they need.
Authentication is on when users are configured (``users_file`` or ``SLOSCOPE_USERS``) or a proxy
header is; otherwise everyone is an admin of every tenant, as in the embedded demo.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import anyio.to_thread
from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response

from store.tenancy import tenant_scope
from ui import web
from ui.identity import (
    ANONYMOUS,
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    OPEN,
    ROLE_PURPOSE,
    ROLES,
    Principal,
    csrf_state,
    principal,
    set_principal,
)
from ui.sessions import DEFAULT_MAX_AGE_S, SESSION_COOKIE, SessionSigner, random_secret
from ui.throttle import LoginThrottle, ThrottlePolicy
from ui.users import MAX_PASSWORD_BYTES, User, dummy_hash, verify_password

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths answered without a user: probes, Prometheus, the login page and what it needs.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout", "/settings/tz"})
OPEN_PREFIXES = ("/static/",)
REQUESTED_BY_HEADER = "x-requested-by"
#: Largest urlencoded form body read for its CSRF field.
MAX_FORM_BYTES = 64 * 1024
#: Password checks running at once: argon2 takes ~64 MiB and a core each, on purpose.
HASHING_CONCURRENCY = 2
BASIC_CACHE_ENTRIES = 1024
#: At most one log line per this many seconds per address about an ignored proxy header.
IGNORED_HEADER_LOG_S = 60.0


def parse_networks(values: Iterable[str], setting: str) -> tuple[Network, ...]:
    """Addresses and CIDR blocks (``10.0.0.0/8``, ``::1``); ValueError naming ``setting``."""
    out = []
    for text in values:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{setting}: {text!r} is not an IP address or CIDR block like 10.0.0.0/8"
            ) from None
    return tuple(out)


def _in(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``: a redirect to a ``next`` parameter must
    never leave the site (``//evil.example``, ``/\\evil.example`` and ``https://...`` do)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if "\\" in target or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def require(role: str) -> Callable[[Request], None]:
    """A route dependency refusing (403, naming the role) principals weaker than ``role``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def check(request: Request) -> None:
        who = principal(request)
        if not who.can(role):
            raise HTTPException(
                403,
                f"forbidden: this needs the {role} role (to {ROLE_PURPOSE[role]}); "
                f"user {who.name!r} has the {who.role} role",
            )

    return check


@dataclass(frozen=True)
class AuthConfig:
    """How the UI and the API recognise users (settings ``users_file``, ``session_secret_file``,
    ``auth_proxy_*``, ``trusted_proxies``, ``metrics_auth``)."""

    users: Mapping[str, User] = field(default_factory=dict)
    #: Empty: a random secret per process (sessions end at restart, replicas cannot share them).
    session_secret: bytes = field(default=b"", repr=False)
    session_max_age_s: int = DEFAULT_MAX_AGE_S
    #: A header naming the user, set by an authenticating reverse proxy (``X-Forwarded-User``).
    proxy_header: str = ""
    #: Only requests from these networks may use ``proxy_header``.
    proxy_trusted: tuple[Network, ...] = ()
    #: The role of a proxy user missing from ``users``; empty: such users are refused (403).
    proxy_default_role: str = ""
    #: Proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed.
    trusted_proxies: tuple[Network, ...] = ()
    #: ``/metrics`` needs a user of every tenant (Prometheus: ``basic_auth``); default: open.
    metrics_auth: bool = False
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    #: Seconds a successful HTTP Basic check is remembered (argon2 is slow on purpose).
    basic_cache_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.users) or bool(self.proxy_header)


@dataclass(frozen=True)
class SignIn:
    """The outcome of a password check: the user, or None; ``retry_after`` > 0 when throttled."""

    user: User | None
    retry_after: int = 0


class Authenticator:
    """Password checks, sessions, throttling and the HTTP Basic cache of one app."""

    def __init__(
        self,
        config: AuthConfig | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or AuthConfig()
        secret = self.config.session_secret or random_secret()
        self.signer = SessionSigner(secret, self.config.session_max_age_s, clock)
        self.throttle = LoginThrottle(self.config.throttle, monotonic)
        self.monotonic = monotonic
        self._cache_key = hmac.new(secret, b"sloscope basic cache", hashlib.sha256).digest()
        self._basic: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()
        self._dummy = dummy_hash(self.config.users) if self.config.enabled else ""
        self._limiter: anyio.CapacityLimiter | None = None
        self._ignored_logged: OrderedDict[str, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # -- passwords -------------------------------------------------------------------------------

    async def sign_in(self, name: str, password: str, address: str) -> SignIn:
        """Check a name and password (throttled). Unknown names, users without a password and wrong
        passwords are checked against a hash of the same cost and refused alike."""
        wait = self.throttle.retry_after(name, address)
        if wait:
            return SignIn(None, wait)
        user = self.config.users.get(name)
        stored = user.password_hash if user is not None and user.password_hash else self._dummy
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(HASHING_CONCURRENCY)
        ok = await anyio.to_thread.run_sync(verify_password, stored, password, limiter=self._limiter)
        if ok and user is not None and user.password_hash:
            self.throttle.succeeded(name)
            return SignIn(user)
        self.throttle.failed(name, address)
        return SignIn(None)

    async def basic(self, header: str, address: str) -> Principal | Response:
        """The user of an ``Authorization: Basic`` header, or the 401/429 answer."""
        encoded = header[6:].strip()
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _unauthorized("malformed HTTP Basic credentials (expected base64 of name:password)")
        name, colon, password = decoded.partition(":")
        if not colon or not name or len(password.encode()) > MAX_PASSWORD_BYTES:
            return _unauthorized("malformed HTTP Basic credentials (expected base64 of name:password)")
        key = hmac.new(self._cache_key, decoded.encode(), hashlib.sha256).digest()
        now = self.monotonic()
        cached = self._basic.get(key)
        if cached is not None:
            cached_name, cached_hash, until = cached
            user = self.config.users.get(cached_name)
            if until > now and user is not None and user.password_hash == cached_hash:
                return _principal(user, "basic")
            del self._basic[key]
        result = await self.sign_in(name, password, address)
        if result.retry_after:
            return _throttled(result.retry_after)
        if result.user is None:
            return _unauthorized("wrong user name or password")
        self._basic[key] = (result.user.name, result.user.password_hash, now + self.config.basic_cache_s)
        while len(self._basic) > BASIC_CACHE_ENTRIES:
            self._basic.popitem(last=False)
        return _principal(result.user, "basic")

    def forget_basic(self) -> None:
        """Forget the remembered HTTP Basic checks: the next request of each is checked again."""
        self._basic.clear()

    # -- sessions --------------------------------------------------------------------------------

    def session_user(self, token: str) -> User | None:
        """The user of a session cookie that is signed, unexpired and issued for the current password."""
        session = self.signer.read(token) if token else None
        if session is None:
            return None
        user = self.config.users.get(session.user)
        if user is None or not self.signer.current(session, user.password_hash):
            return None
        return user

    def issue(self, user: User) -> str:
        return self.signer.issue(user.name, user.password_hash)

    # -- the proxy header ------------------------------------------------------------------------

    def proxy(self, headers: Headers, peer: str) -> Principal | Response | None:
        """The user named by a trusted proxy's header; None when there is none (or it is not trusted)."""
        header = self.config.proxy_header
        if not header or header not in headers:
            return None
        name = headers[header].strip()
        if not _in(peer, self.config.proxy_trusted):
            self._log_ignored(peer, header)
            return None
        user = self.config.users.get(name)
        if user is not None:
            return _principal(user, "proxy")
        if self.config.proxy_default_role and name and len(name) <= 256:
            return Principal(name, self.config.proxy_default_role, None, "proxy")
        return JSONResponse(
            {"detail": f"forbidden: the proxy's user {name[:100]!r} is not a sloscope user"}, status_code=403
        )

    def _log_ignored(self, peer: str, header: str) -> None:
        now = self.monotonic()
        last = self._ignored_logged.get(peer)
        if last is not None and now - last < IGNORED_HEADER_LOG_S:
            return
        self._ignored_logged[peer] = now
        self._ignored_logged.move_to_end(peer)
        while len(self._ignored_logged) > 1000:
            self._ignored_logged.popitem(last=False)
        log.warning(
            "ignored the proxy user header from an address not in auth_proxy_trusted",
            extra={"header": header, "client": peer},
        )

    # -- where the request came from ------------------------------------------------------------

    def client(self, scope: Scope, headers: Headers) -> tuple[str, bool]:
        """(client address, came over TLS): the peer's, or a trusted proxy's forwarded ones."""
        peer = (scope.get("client") or ("", 0))[0] or ""
        secure = scope.get("scheme") in ("https", "wss")
        if self.config.trusted_proxies and _in(peer, self.config.trusted_proxies):
            # The last hop is the one our proxy appended; earlier ones are the client's word.
            forwarded_for = headers.get("x-forwarded-for", "").split(",")[-1].strip()
            try:
                address = str(ipaddress.ip_address(forwarded_for))
            except ValueError:
                address = peer
            return address, secure or _forwarded_https(headers)
        return peer, secure


def _forwarded_https(headers: Headers) -> bool:
    return headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower() == "https"


def _principal(user: User, via: str) -> Principal:
    return Principal(user.name, user.role, user.tenant, via)


def _unauthorized(message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"authentication required: {message}"},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="sloscope", charset="UTF-8"'},
    )


def _throttled(retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"too many failed sign-ins: try again in {retry_after} seconds"},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


def wants_html(scope: Scope, headers: Headers) -> bool:
    """A browser asking for a page (not the JSON API, which answers JSON errors)."""
    path = scope.get("path", "")
    api = path == "/api" or path.startswith(("/api/", "/jaeger/"))
    return not api and "text/html" in headers.get("accept", "")


def set_csrf_cookie(response: Response, token: str, secure: bool) -> None:
    """The CSRF cookie: HttpOnly (no script reads it) and SameSite=Strict (no other site sends it)."""
    response.set_cookie(
        CSRF_COOKIE, token, max_age=30 * 86_400, path="/", secure=secure, httponly=True, samesite="strict"
    )


def set_session_cookie(response: Response, value: str, max_age: int, secure: bool) -> None:
    """The session cookie: HttpOnly, SameSite=Lax (links from other sites keep you signed in, their
    forms and scripts do not carry it), Secure over TLS; ``max_age`` 0 clears it."""
    response.set_cookie(
        SESSION_COOKIE, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
    )


def _csrf_cookie_header(token: str, secure: bool) -> tuple[bytes, bytes]:
    """The raw ``Set-Cookie`` header of :func:`set_csrf_cookie`, for a response already under way."""
    response = Response()
    set_csrf_cookie(response, token, secure)
    return response.raw_headers[-1]


def is_secure(request: Request) -> bool:
    """Whether the request came over TLS (directly or through a trusted proxy)."""
    return bool(request.scope.get("sloscope.secure", request.url.scheme == "https"))


def client_address(request: Request) -> str:
    return str(request.scope.get("sloscope.client", request.client.host if request.client else ""))


class AuthMiddleware:
    """The middleware described in this module's docstring."""

    def __init__(self, app: Callable[..., Awaitable[None]], auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        address, secure = self.auth.client(scope, headers)
        scope["sloscope.client"], scope["sloscope.secure"] = address, secure
        cookies = Request(scope).cookies
        csrf = csrf_state(scope, cookies.get(CSRF_COOKIE, ""))
        path, method = scope.get("path", ""), scope.get("method", "GET")

        who: Principal | Response | None = OPEN
        if self.auth.enabled:
            who = await self._identify(scope, headers, cookies, address)
            if who is None:
                if not self._open(path):
                    await self._unauthenticated(scope, headers)(scope, receive, send)
                    return
                who = ANONYMOUS
        if isinstance(who, Response):
            await who(scope, receive, send)
            return
        set_principal(scope, who)
        if path == "/metrics" and self.auth.config.metrics_auth and who.tenant is not None:
            await JSONResponse(
                {"detail": "forbidden: /metrics covers every tenant; use a user without a tenant"},
                status_code=403,
            )(scope, receive, send)
            return

        if method not in SAFE_METHODS:
            refusal, receive = await self._csrf(
                scope, headers, csrf.token if not csrf.new else "", who, receive
            )
            if refusal is not None:
                await refusal(scope, receive, send)
                return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and csrf.new and csrf.used:
                csrf.new = False
                raw = list(message.get("headers", []))
                raw.append(_csrf_cookie_header(csrf.token, secure))
                message = {**message, "headers": raw}
            await send(message)

        scoped = contextlib.nullcontext() if who.tenant is None else tenant_scope(who.tenant)
        with scoped:
            await self.app(scope, receive, send_with_cookie)

    def _open(self, path: str) -> bool:
        if path == "/metrics":
            return not self.auth.config.metrics_auth
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    async def _identify(
        self, scope: Scope, headers: Headers, cookies: Mapping[str, str], address: str
    ) -> Principal | Response | None:
        peer = (scope.get("client") or ("", 0))[0] or ""
        found = self.auth.proxy(headers, peer)
        if found is not None:
            return found
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            return await self.auth.basic(authorization, address)
        user = self.auth.session_user(cookies.get(SESSION_COOKIE, ""))
        return _principal(user, "session") if user is not None else None

    def _unauthenticated(self, scope: Scope, headers: Headers) -> Response:
        if scope.get("method") in ("GET", "HEAD") and wants_html(scope, headers):
            target = scope.get("path", "/")
            query = scope.get("query_string", b"").decode("latin-1")
            if query:
                target += "?" + query
            return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
        return _unauthorized("sign in at /login, or send HTTP Basic credentials")

    async def _csrf(
        self, scope: Scope, headers: Headers, expected: str, who: Principal, receive: Receive
    ) -> tuple[Response | None, Receive]:
        """(None, receive) when the request passes the CSRF check, else (the 403, receive). A form
        body read for its token is handed on to the route unchanged."""
        sent = headers.get(CSRF_HEADER, "")
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if not sent and media == "application/x-www-form-urlencoded":
            body, receive = await _buffer(receive)
            if body is None:
                return JSONResponse({"detail": "form body larger than 64 KiB"}, status_code=413), receive
            sent = (parse_qs(body.decode("latin-1")).get(CSRF_FIELD) or [""])[0]
        if expected and sent and hmac.compare_digest(sent.encode(), expected.encode()):
            return None, receive
        # Headers a cross-site form cannot send, and a cross-site script only after a CORS
        # preflight this server never answers: enough where no cookie authenticates the request.
        if who.via != "session" and (
            headers.get(REQUESTED_BY_HEADER, "").strip() or media == "application/json"
        ):
            return None, receive
        return self._refusal(scope, headers, who), receive

    def _refusal(self, scope: Scope, headers: Headers, who: Principal) -> Response:
        if wants_html(scope, headers):
            page = web.render(
                Request(scope),
                "error.html",
                403,
                title="Forbidden: the form's security token is missing or wrong",
                message="This form must be sent from sloscope's own page in this browser (its hidden "
                "security token must match this browser's cookie). Nothing was changed. Reload the "
                "page and submit the form again.",
            )
            state = csrf_state(scope, "")
            if state.new:  # the page's own forms carry a token this browser has no cookie of yet
                set_csrf_cookie(page, state.token, bool(scope.get("sloscope.secure")))
            return page
        how = (
            'send the X-CSRF-Token header with the page\'s token (<meta name="csrf-token">, the same as '
            "the sloscope_csrf cookie)"
        )
        if who.via != "session":
            how += (
                ", or from a script an X-Requested-By header (any value) or a JSON body with "
                "Content-Type: application/json"
            )
        where = f"{scope.get('method')} {scope.get('path')}"
        return JSONResponse(
            {"detail": f"forbidden: CSRF check failed for {where}: {how}; nothing was changed"},
            status_code=403,
        )


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole body (None past MAX_FORM_BYTES) and a ``receive`` that replays it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
