"""The web UI's shared machinery: the Jinja2 environment, hashed static URLs, time ranges and the
formatting filters every page uses. Pages live in ``ui/pages_*.py``; each is a plain GET URL that
works without JavaScript and links its JSON twin under ``/api/v1``.

Templates follow Datasette's layout: ``base.html`` with blocks, ``_``-prefixed partials. Autoescape
is on for every template: telemetry values are shown as text, never as markup.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ui.identity import CSRF_FIELD, csrf_token, principal
from ui.params import parse_time

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

#: The ranges of the time-range picker: label -> seconds back from now.
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400}
DEFAULT_RANGE = "1h"
#: Latest time a page's range may end: the roll-ups' DateTime holds seconds up to 2106-02-07.
MAX_TIME_NS = (2**32 - 61) * 10**9


@cache
def _digest(relative: str) -> str:
    return hashlib.sha256((STATIC / relative).read_bytes()).hexdigest()[:12]


def static_url(relative: str) -> str:
    """``/static/<path>?v=<content hash>``: browsers cache a file until its content changes."""
    return f"/static/{relative}?v={_digest(relative)}"


@dataclass(frozen=True)
class Range:
    """The page's time range: a named one (``last=1h``) or absolute ``start``/``end``."""

    start_ns: int
    end_ns: int
    label: str  # '1h', or 'custom'
    query: dict[str, str]  # what reproduces it in a URL

    @property
    def start_s(self) -> int:
        return self.start_ns // 10**9

    @property
    def end_s(self) -> int:
        return self.end_ns // 10**9


class PageError(Exception):
    """An error a page shows as an HTML error page (the JSON API keeps its JSON errors)."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.title, self.message = status_code, title, message


def time_range(request: Request, default: str = DEFAULT_RANGE) -> Range:
    """The range of ``?last=1h`` or ``?start=&end=`` (RFC 3339 or unix ms); 400 on bad values."""
    params = request.query_params
    start, end = params.get("start"), params.get("end")
    if start or end:
        try:
            end_ns = parse_time(end, "end") if end else time.time_ns()
            start_ns = parse_time(start, "start") if start else end_ns - RANGES[default] * 10**9
        except HTTPException as exc:
            raise PageError(400, "Bad time range", str(exc.detail)) from None
        if start_ns >= end_ns:
            raise PageError(400, "Bad time range", "start must be before end")
        if start_ns < 0 or end_ns > MAX_TIME_NS:
            # The store's per-minute roll-ups hold 1970 to 2106; later dates cannot even be shown.
            raise PageError(400, "Bad time range", "start and end must lie between 1970 and 2106")
        query = {k: v for k, v in (("start", start), ("end", end)) if v}
        return Range(start_ns, end_ns, "custom", query)
    last = params.get("last") or default
    if last not in RANGES:
        raise PageError(400, "Bad time range", f"last: {last!r} must be one of {', '.join(RANGES)}")
    now = time.time_ns()
    return Range(now - RANGES[last] * 10**9, now, last, {"last": last})


def _when(seconds: float | int | None, tz: str = "utc") -> str:
    if seconds is None:
        return "–"
    moment = datetime.fromtimestamp(float(seconds), UTC)
    # 'browser': the page's script rewrites <time> elements into the browser's zone.
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if tz == "utc" else "")


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 1 else f"{value * 1000:.0f} µs"


def _percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _rate(value: float | None) -> str:
    return "–" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(static_url=static_url, ranges=list(RANGES))
    env.filters.update(when=_when, ms=_ms, percent=_percent, rate=_rate, urlencode=urlencode)
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: ``template`` with the request's range, time zone setting and path in its context, the
    signed-in ``user`` and the CSRF token every form carries (``csrf_field``, ``csrf_token``)."""
    tz = request.cookies.get("tz", "utc")
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            path=request.url.path,
            tz="browser" if tz == "browser" else "utc",
            user=principal(request),
            csrf_field=CSRF_FIELD,
            csrf_token=csrf_token(request),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code)


def with_query(request: Request, **changes: str | None) -> str:
    """The current URL with some query parameters changed (None removes one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return request.url.path + ("?" + urlencode(params) if params else "")
