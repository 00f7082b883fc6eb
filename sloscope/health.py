"""``sloscope health``: ask this machine's sloscope whether it is ready, for container health checks.

It reads the same settings as ``serve`` (flags are not needed in an image: the environment is), so
the check follows the API port and TLS without being told: with TLS on it speaks https and trusts
the server's own certificate file, without checking the name (it connects to 127.0.0.1, which a
certificate rarely names).
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from sloscope.settings import Settings
from sloscope.tls import own_certificate_context

TIMEOUT_S = 4.0


def readyz_url(settings: Settings) -> str:
    """Where the local server answers ``/readyz``."""
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://127.0.0.1:{settings.api_port}/readyz"


def _context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert_file:
        return None
    context = own_certificate_context(Path(settings.tls_cert_file))
    context.check_hostname = False
    return context


def check(settings: Settings) -> int:
    """0 when ``/readyz`` answers 200; 1 otherwise, with the reasons on stderr."""
    url = readyz_url(settings)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=_context(settings)) as answer:
            if answer.status == 200:
                return 0
            body = answer.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"sloscope: not healthy: {url}: {exc}", file=sys.stderr)
        return 1
    try:
        problems = json.loads(body).get("problems") or [body.decode(errors="replace")]
    except (ValueError, AttributeError):
        problems = [body.decode(errors="replace")]
    print(f"sloscope: not ready: {'; '.join(str(p) for p in problems)}", file=sys.stderr)
    return 1
