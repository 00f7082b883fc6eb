"""Keeping receivers' secrets out of what alerting reports: delivery errors, logs, the incident page.

A receiver's URL (a Slack or webhook URL is itself the credential), PagerDuty routing key, SMTP
password and bearer token are secrets. The other side's answers can quote them back (a 404 page
naming the path, a proxy echoing the request line), so :mod:`alerts.delivery` passes every error
through :func:`scrub` with its receiver's :func:`receiver_secrets` before logging or storing it.

The pieces of a URL that are searched for, beside the whole URL: the userinfo password (and the
basic-auth credentials made of it), the request target (path and query), each query value, and each
path segment that looks like a token (long and with a digit: a Slack URL's last segment, not
``/services/``). Short pieces are not searched for, so
that ``/v1`` or a one-letter value does not blank out unrelated text.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from alerts.model import ReceiverConfig

MASK = "***"
#: ReceiverConfig settings that hold secrets: every ``secret`` setting of :data:`alerts.policy.SETTINGS`,
#: and ``bearer_token``, which receivers accept from configs built in code.
SECRET_SETTINGS = frozenset({"url", "routing_key", "password", "bearer_token"})
#: Public endpoints that are not secrets (the default PagerDuty Events API URL): masking their path
#: would only blank out ``/v2/enqueue`` everywhere.
PUBLIC_URLS = frozenset({"https://events.pagerduty.com/v2/enqueue"})
#: A whole secret value (password, key) shorter than this is not searched for inside text.
MIN_SECRET_CHARS = 4
#: A piece of a URL (request target, query value) shorter than this is not searched for.
MIN_PIECE_CHARS = 8
#: A path segment is taken for a token when it is at least this long and holds a digit.
MIN_TOKEN_SEGMENT_CHARS = 16


def secret_pieces(value: str) -> tuple[str, ...]:
    """The strings to mask for the secret ``value``: itself and, for an http(s) URL, its secret parts
    (see the module docstring), each also percent-decoded."""
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        return ()
    pieces = {value}
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc:
        if parts.password:
            pieces.add(parts.password)
            # As sent: the basic-auth header a server might quote back (alerts/receivers/transport.py).
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            pieces.add(base64.b64encode(userinfo.encode()).decode())
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(target) >= MIN_PIECE_CHARS:
            pieces.add(target)
        pieces.update(v for _, v in parse_qsl(parts.query) if len(v) >= MIN_PIECE_CHARS)
        pieces.update(
            segment
            for segment in parts.path.split("/")
            if len(segment) >= MIN_TOKEN_SEGMENT_CHARS and any(ch.isdigit() for ch in segment)
        )
    decoded = {unquote(p) for p in pieces}
    return tuple(sorted(p for p in pieces | decoded if len(p) >= MIN_SECRET_CHARS))


def receiver_secrets(config: ReceiverConfig) -> tuple[str, ...]:
    """Every string to mask in what receiver ``config`` reports."""
    found: set[str] = set()
    for key, value in config.settings:
        if key in SECRET_SETTINGS and value not in PUBLIC_URLS:
            found.update(secret_pieces(value))
    return tuple(sorted(found))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``secrets`` replaced by ``***`` (longest first, so a
    secret containing another is masked whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text
