"""What the trace, log and correlation pages share: search forms read from the URL, store calls
whose errors become error pages, typed attribute values, log rows and service colours."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import HTTPException, Request

from store import traces
from ui.params import call_store
from ui.web import RANGES, PageError, Range

T = TypeVar("T")

#: Service colours: twelve that tell apart well on light and dark backgrounds.
PALETTE = (
    "#3182ce", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795",
    "#b7791f", "#5a67d8", "#718096", "#e53e3e", "#2c7a7b", "#97266d",
)  # fmt: skip
RANGE_PARAMS = {"last", "start", "end"}
SEVERITY_NAMES = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def colour(service: str) -> str:
    """The colour of ``service`` on pages listing many traces: one of the palette's by a hash of the
    name (CRC-32, not hash(): the same on every page and in every process)."""
    return PALETTE[zlib.crc32(service.encode("utf-8", "surrogatepass")) % len(PALETTE)]


def service_colours(names: Iterable[str]) -> dict[str, str]:
    """A distinct colour for each of ``names`` (any number): the palette's in the order of the sorted
    names, then hues a golden angle apart at two lightnesses (Jaeger's colours are per trace too)."""
    colours = {}
    for i, name in enumerate(sorted(set(names))):
        if i < len(PALETTE):
            colours[name] = PALETTE[i]
        else:
            n = i - len(PALETTE)
            colours[name] = f"hsl({(n * 137.508) % 360:.1f} 62% {45 if n % 2 else 58}%)"
    return colours


def typed(value: Any) -> tuple[str, str]:
    """(text, OTLP kind) of an attribute value as ``store.traces.typed_attributes`` returns it."""
    if value is None:
        return "", "empty"
    if isinstance(value, bool):
        return ("true" if value else "false"), "bool"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, float):
        return repr(value), "double"
    if isinstance(value, str):
        return value, "string"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False), "array"
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return str(value["bytes"]), "bytes"
    return json.dumps(value, ensure_ascii=False), "map"


def attribute_rows(attributes: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, text, kind) rows, sorted by key."""
    return [(key, *typed(value)) for key, value in sorted(attributes.items())]


def page_store(compute: Callable[[], T]) -> T:
    """A store call for a page: the API's 400/404/503/500 become HTML error pages."""
    try:
        return call_store(compute)
    except HTTPException as exc:
        titles = {400: "Bad request", 404: "Not found", 503: "Store unavailable"}
        raise PageError(
            exc.status_code, titles.get(exc.status_code, "Query failed"), str(exc.detail)
        ) from None


def parse_param(compute: Callable[[], T]) -> T:
    """A parameter parser of the JSON API: its 400 becomes a PageError naming the parameter."""
    try:
        return compute()
    except HTTPException as exc:
        raise PageError(400, "Bad search", str(exc.detail)) from None


def check_known(request: Request, known: set[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        raise PageError(
            400,
            "Bad search",
            f"unknown parameter(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})",
        )


def filled(request: Request, names: Iterable[str]) -> list[tuple[str, str]]:
    """The non-empty query parameters among ``names``, in request order (a GET form sends empty ones)."""
    wanted = set(names)
    return [(k, v) for k, v in request.query_params.multi_items() if k in wanted and v.strip()]


def url_with(path: str, params: list[tuple[str, str]]) -> str:
    return path + ("?" + urlencode(params) if params else "")


def exact_ms(ns: int) -> str:
    """Unix nanoseconds as exact unix milliseconds (decimals when needed), as the API parses them."""
    if ns < 0:
        return "-" + exact_ms(-ns)
    whole, rest = divmod(ns, 10**6)
    return f"{whole}.{rest:06d}" if rest else str(whole)


def api_range(window: Range) -> list[tuple[str, str]]:
    """The page's range as the JSON API takes it (exact unix milliseconds: the same data as the page)."""
    return [("start", exact_ms(window.start_ns)), ("end", exact_ms(window.end_ns))]


def range_links(request: Request, keep: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, URL) of the named ranges, keeping the search (also repeated ``attr``)."""
    return [(name, url_with(request.url.path, [*keep, ("last", name)])) for name in RANGES]


@dataclass
class SearchForm:
    """What a search form shows back: the values given, and the error, if any."""

    values: dict[str, str] = field(default_factory=dict)
    attrs: list[str] = field(default_factory=list)
    error: str = ""


def search_form(request: Request, names: set[str]) -> SearchForm:
    params = request.query_params
    return SearchForm(
        values={name: params.get(name, "") for name in names | RANGE_PARAMS if name != "attr"},
        attrs=[a for a in params.getlist("attr") if a.strip()],
    )


def secs(ns: int | str) -> float:
    return int(ns) / 1e9


def iso(ns: int | str) -> str:
    """An RFC 3339 time for ``<time datetime>`` (app.js rewrites it into the browser's zone)."""
    return (
        datetime.fromtimestamp(int(ns) / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def correlation_url(correlation_id: str) -> str:
    """The correlation view of ``correlation_id`` (any text: quoted as one path segment)."""
    return "/correlations/" + quote(correlation_id, safe="")


def log_view(entry: dict[str, Any], t0: int | None = None) -> dict[str, Any]:
    """A log for a template: body as text, severity class, offset from ``t0`` if given."""
    body = entry["body"]
    text = body if isinstance(body, str) else typed(body)[0]
    number = entry["severity_number"]
    level = "error" if number >= 17 else "warn" if number >= 13 else "info" if number >= 9 else "debug"
    return {
        **entry,
        "body_text": text,
        "level": level,
        "severity": entry["severity_text"] or (severity_name(number) if number else ""),
        "seconds": int(entry["time_unix_nano"]) / 1e9,
        "offset_ms": None if t0 is None else (int(entry["time_unix_nano"]) - t0) / 1e6,
        "attribute_rows": attribute_rows(entry["attributes"]),
        "trace_valid": bool(traces.TRACE_ID.match(entry["trace_id"] or "")),
        "correlation_url": correlation_url(entry["correlation_id"]) if entry["correlation_id"] else "",
        "iso": iso(entry["time_unix_nano"]),
    }


def severity_name(number: int) -> str:
    """TRACE .. FATAL4 for an OpenTelemetry severity number."""
    if not 1 <= number <= 24:
        return str(number)
    name = SEVERITY_NAMES[(number - 1) // 4]
    step = (number - 1) % 4
    return name if step == 0 else f"{name}{step + 1}"


#: Functions every template of these pages calls.
HELPERS = {"colour": colour, "secs": secs, "iso": iso, "corr_url": correlation_url}
