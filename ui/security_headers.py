"""Security headers on every response of the UI and API app (also its error pages).

* ``Content-Security-Policy``: scripts only from this site's files (no inline script, no ``eval``,
  no ``on*=`` attributes), no plugins, no ``<base>``, no framing, forms post only here.
  Styles: stylesheets only from this site; inline ``<style>`` elements are refused
  (``style-src-elem 'self'``), inline ``style`` *attributes* are allowed (``style-src-attr``),
  because the waterfall, the timelines and the budget bars place bars by percentages computed on the
  server, which are attributes. An attribute can restyle an element but neither run script nor load
  anything from elsewhere (``default-src 'self'``). Browsers without CSP level 3 fall back to
  ``style-src 'self' 'unsafe-inline'``.
* ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (for browsers predating
  ``frame-ancestors``), ``Referrer-Policy: same-origin`` (trace ids and searches in URLs stay here),
  ``Cross-Origin-Opener-Policy: same-origin``; ``Strict-Transport-Security`` over TLS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "style-src-elem 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)

#: Over TLS only (a header on plain http would be ignored, and must not pin a site that has no TLS):
#: browsers then refuse plain http to this host for a year.
HSTS: tuple[tuple[bytes, bytes], ...] = ((b"strict-transport-security", b"max-age=31536000"),)


class SecurityHeadersMiddleware:
    """Adds :data:`HEADERS` to every HTTP response that does not set them itself."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                extra = HSTS if scope.get("scheme") == "https" else ()
                raw += [(name, value) for name, value in (*HEADERS, *extra) if name not in present]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)
