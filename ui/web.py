"""The web UI's shared machinery: the Jinja2 environment, hashed static URLs, time ranges and the
formatting filters every page uses. Pages live in ``ui/pages_*.py``; each is a plain GET URL that
works without JavaScript and links its JSON twin under ``/api/v1``.

Templates follow Datasette's layout: ``base.html`` with blocks, ``_``-prefixed partials. Autoescape
is on for every template: telemetry values are shown as text, never as markup.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from store.backend import StoreError, StoreUnavailable
from ui.identity import CSRF_FIELD, csrf_token, principal
from ui.params import parse_time

log = logging.getLogger(__name__)
T = TypeVar("T")
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

    @property
    def api_query(self) -> dict[str, str]:
        """The range for a JSON API URL (unix milliseconds): the API knows no ``last=``."""
        return {"start": str(self.start_ns // 10**6), "end": str(self.end_ns // 10**6)}


class PageError(Exception):
    """An error a page shows as an HTML error page (the JSON API keeps its JSON errors)."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.title, self.message = status_code, title, message


def call_store(compute: Callable[[], T]) -> T:
    """A store call for a page: its errors become HTML error pages that say what went wrong."""
    try:
        return compute()
    except ValueError as exc:
        raise PageError(400, "Bad request", str(exc)) from None
    except StoreUnavailable as exc:
        raise PageError(503, "The store is unavailable", f"sloscope cannot reach its store: {exc}") from None
    except StoreError as exc:
        log.exception("query failed")
        raise PageError(500, "A query failed", f"the store refused a query: {exc}") from None


def iso(seconds: float | None) -> str:
    """RFC 3339 in UTC for ``<time datetime>`` (the browser time-zone setting rewrites those)."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _open_incident_count(request: Request) -> int | None:
    """How many open incidents the user may see, for the navigation; None when unknown (no store
    wired, as in a bare test app, or the store failing: the page itself says what went wrong)."""
    count = getattr(request.app.state, "open_incident_count", None)
    if count is None:
        return None
    try:
        return count(request)
    except StoreError:
        log.warning("could not count open incidents for the navigation", exc_info=True)
        return None


#: Pages with the header's auto-refresh toggle: lists and charts, which change as telemetry arrives (a
#: trace, a runbook or a search result's single item does not). Exact paths, and prefixes ending in
#: "/" for the pages of one item.
AUTOREFRESH = ("/", "/traces", "/logs", "/slos", "/incidents", "/map", "/services/", "/slos/", "/incidents/")


def autorefreshes(path: str) -> bool:
    """Whether the page at ``path`` offers auto-refresh (:data:`AUTOREFRESH`)."""
    return any(path == p or (p != "/" and p.endswith("/") and path.startswith(p)) for p in AUTOREFRESH)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: ``template`` with the request's range, time zone setting and path in its context, the
    signed-in ``user``, the CSRF token every form carries (``csrf_field``, ``csrf_token``) and the
    count of open incidents the navigation shows (``nav_open_incidents``)."""
    tz = request.cookies.get("tz", "utc")
    # Not on an error page: reloading it every 30 s shows nothing new.
    context.setdefault("autorefresh", status_code == 200 and autorefreshes(request.url.path))
    user = principal(request)
    if "nav_open_incidents" not in context:  # a page that lists them passes their count itself
        anonymous = user.via == "anonymous"
        context["nav_open_incidents"] = None if anonymous else _open_incident_count(request)
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            path=request.url.path,
            tz="browser" if tz == "browser" else "utc",
            user=user,
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
