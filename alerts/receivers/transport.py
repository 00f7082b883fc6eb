"""One JSON POST over HTTP(S) with the standard library, its failures sorted into retryable or not.

The standard library rather than an HTTP client package: a receiver sends one small request at a
time from its own worker thread, which is all ``urllib`` needs to do well.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from alerts.model import ReceiverConfig
from alerts.receivers import DeliveryError

USER_AGENT = "sloscope/0.1.0"

#: Response body bytes quoted in an error: enough for the service's reason, never a whole HTML page.
_ERROR_BODY_CHARS = 300


def require_url(config: ReceiverConfig, key: str = "url", default: str | None = None) -> str:
    """The HTTP(S) URL in setting ``key``; ``ValueError`` naming receiver and setting otherwise.

    Other schemes are refused because ``urllib`` would happily open ``file:`` URLs."""
    url = config.setting_map.get(key, default or "").strip()
    if not url:
        raise ValueError(f"receiver {config.name!r} ({config.kind}): setting {key!r} is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # Not quoting the value: the URL is a secret (policy.py names where it came from instead).
        raise ValueError(f"receiver {config.name!r} ({config.kind}): setting {key!r} must be an http(s) URL")
    return url


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def post_json(
    url: str,
    body: Any,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` as JSON; the status and body of a 2xx answer, else :class:`DeliveryError`.

    5xx, 429 and network failures are retryable; any other status is not. The URL is never put into
    an error message, since incoming-webhook URLs (Slack's) are themselves the secret. A
    ``user:password@`` in the URL is sent as HTTP basic authentication (headers given win)."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    # urllib takes ``user:password@`` for part of the host name: send it as basic auth instead.
    request = urllib.request.Request(parts._replace(netloc=host).geturl(), data=data, method="POST")
    if parts.username is not None:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(userinfo.encode()).decode())
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", USER_AGENT)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        text = e.read(_ERROR_BODY_CHARS).decode(errors="replace").strip()
        retryable = e.code == 429 or e.code >= 500
        raise DeliveryError(
            f"HTTP {e.code} from {host}: {text or e.reason}",
            retryable=retryable,
            status=e.code,
            retry_after_s=_retry_after(e.headers.get("Retry-After")) if retryable else None,
        ) from None
    except urllib.error.URLError as e:
        raise DeliveryError(f"cannot reach {host}: {e.reason}", retryable=True) from None
    except TimeoutError as e:
        raise DeliveryError(f"timed out after {timeout_s:g}s talking to {host}", retryable=True) from e
    except (OSError, http.client.HTTPException) as e:
        # A peer that resets the connection, closes mid-response or answers something that is not HTTP.
        raise DeliveryError(f"connection to {host} failed: {e!r}", retryable=True) from None
