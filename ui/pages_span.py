"""One span on its own page: ``/traces/{trace_id}/spans/{span_id}``, and its JSON twin.

The page is also where the trace view's span detail comes from: with JavaScript the waterfall fetches
this URL and moves its ``<section id="span-detail">`` under the clicked row; without, every row links
here. So the page stays fast for any span: it shows the first ATTR_LIMIT attributes by key, the first
events and links, and values cut at ``traces.VALUE_LIMIT`` characters, all capped by the engine
(``traces.get_span``), with the totals and a ``?full=1`` link to everything.

The JSON twin returns the span whole by default (an API does not truncate silently); ``?attr_limit=N``
asks for the page's capped read, and the answer then says what was left out and the cut values' lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from store import explore, traces
from store.backend import Backend
from ui.explore_pages import HELPERS, check_known, log_view, page_store, typed
from ui.params import bad_request, call_store
from ui.web import PageError, render

#: Attributes (span and resource) the page shows without ``?full=1``.
ATTR_LIMIT = 200
#: Logs of the span shown (and returned by the JSON twin).
SPAN_LOG_LIMIT = 100
#: Largest ``attr_limit`` of the JSON twin.
MAX_ATTR_LIMIT = 10_000


@dataclass(slots=True)  # not frozen: a full page makes one per attribute, and frozen ones cost twice
class Row:
    """One attribute as the page shows it: text, kind, and whether (and from what length) it was cut."""

    key: str
    text: str
    kind: str
    length: int
    cut: bool


def _kind_name(kind: str) -> str:
    """The kind as the trace view names it (``typed``: 'map' for an OTLP kvlist)."""
    return "map" if kind == "kvlist" else kind


def _rows(attributes: list[traces.Attribute]) -> list[Row]:
    rows = []
    for a in attributes:
        text, kind = typed(a.value)
        rows.append(Row(a.key, text, _kind_name(a.kind) if a.cut else kind, a.length, a.cut))
    return rows


def _pairs(attributes: dict[str, Any], cut: dict[str, int]) -> list[Row]:
    """An event's or link's attributes by key, with the lengths of the cut ones."""
    rows = []
    for key, value in sorted(attributes.items()):
        text, kind = typed(value)
        rows.append(Row(key, text, kind, cut.get(key, len(text)), key in cut))
    return rows


def _count(n: int) -> str:
    return f"{n:,}"


def span_view(detail: traces.SpanDetail) -> dict[str, Any]:
    """What span.html needs besides the span: times, rows, events and links ready to show."""
    s = detail.span
    start = int(s["start_time_unix_nano"])
    return {
        "start_ns": start,
        "offset_ms": (start - detail.trace_start_ns) / 1e6,
        "duration_ms": s["duration_ns"] / 1e6,
        "attributes": _rows(detail.attributes),
        "resource": _rows(detail.resource_attributes),
        "events": [
            {
                "offset_ms": (int(e["time_unix_nano"]) - start) / 1e6,  # from the span start
                "name": e["name"],
                "attributes": _pairs(e["attributes"], cut),
            }
            for e, cut in zip(s["events"], detail.event_cut, strict=True)
        ],
        "links": [
            {
                **link,
                "trace_valid": bool(traces.TRACE_ID.match(link["trace_id"])),
                "span_valid": bool(traces.SPAN_ID.match(link["span_id"])),
                "attributes": _pairs(link["attributes"], cut),
            }
            for link, cut in zip(s["links"], detail.link_cut, strict=True)
        ],
        "status_cut": detail.status_length > len(s["status"]["message"]),
    }


def _full_param(request: Request) -> bool:
    """``?full=1``: everything uncapped; absent, '' or 0: the capped page."""
    value = request.query_params.get("full", "")
    if value not in ("", "0", "1"):
        raise PageError(400, "Bad request", f"full: {value[:64]!r} must be 1 (everything) or 0")
    return value == "1"


def _attr_limit(text: str | None) -> int | None:
    """The JSON twin's ``attr_limit``: None (everything) when absent, else 1 to MAX_ATTR_LIMIT."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ATTR_LIMIT:
        raise bad_request(f"attr_limit: {text[:64]!r} must be a whole number from 1 to {MAX_ATTR_LIMIT}")
    return int(text)


def _check_ids(trace_id: str, span_id: str) -> None:
    if not traces.TRACE_ID.match(trace_id):
        raise PageError(400, "Bad trace id", f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
    if not traces.SPAN_ID.match(span_id):
        raise PageError(400, "Bad span id", f"span id must be 16 hex digits, got {span_id[:64]!r}")


def span_json(detail: traces.SpanDetail, logs: list[dict[str, Any]], more_logs: bool) -> dict[str, Any]:
    """The JSON twin's answer: the span in the store's shape, its trace's start, its parent and logs,
    the totals, and with a capped read what was cut."""
    s = detail.span
    answer: dict[str, Any] = {
        "trace_id": s["trace_id"],
        "span": s,
        "trace_start_unix_nano": str(detail.trace_start_ns),
        "parent": (
            {
                "span_id": s["parent_span_id"],
                "service_name": detail.parent_service,
                "name": detail.parent_name,
            }
            if detail.parent_stored
            else None
        ),
        "counts": {
            "attributes": detail.attribute_count,
            "resource_attributes": detail.resource_attribute_count,
            "events": detail.event_count,
            "links": detail.link_count,
        },
        "logs": logs,
        "logs_truncated": more_logs,
    }
    if detail.attr_limit is not None:
        answer["capped"] = {
            "attr_limit": detail.attr_limit,
            "item_limit": traces.ITEM_LIMIT,
            "value_limit": detail.value_limit,
            # Full lengths in characters of the values cut to value_limit.
            "cut": {
                "attributes": {a.key: a.length for a in detail.attributes if a.cut},
                "resource_attributes": {a.key: a.length for a in detail.resource_attributes if a.cut},
                "status_message": detail.status_length if detail.status_length > detail.value_limit else None,
                "events": detail.event_cut,
                "links": detail.link_cut,
            },
        }
    return answer


def _logs_of(backend: Backend, detail: traces.SpanDetail, call: Any) -> tuple[list[dict[str, Any]], bool]:
    """The span's first SPAN_LOG_LIMIT logs, and whether it has more."""
    s = detail.span
    logs = call(
        lambda: explore.span_logs(
            backend,
            s["trace_id"],
            s["span_id"],
            detail.trace_start_ns,
            detail.trace_end_ns,
            SPAN_LOG_LIMIT + 1,
        )
    )
    return logs[:SPAN_LOG_LIMIT], len(logs) > SPAN_LOG_LIMIT


def router(backend: Backend) -> APIRouter:
    """The span page and its JSON twin over ``backend``."""
    pages = APIRouter()

    @pages.get("/traces/{trace_id}/spans/{span_id}", response_class=HTMLResponse, include_in_schema=False)
    def span_page(trace_id: str, span_id: str, request: Request) -> HTMLResponse:
        """One span: facts, attributes, events, links, resource and logs; capped unless ``?full=1``."""
        check_known(request, {"full"})
        _check_ids(trace_id, span_id)
        full = _full_param(request)
        trace_id, span_id = trace_id.lower(), span_id.lower()
        detail = page_store(lambda: traces.get_span(backend, trace_id, span_id, None if full else ATTR_LIMIT))
        if detail is None:
            raise PageError(
                404,
                "Span not found",
                f"No span {span_id} of trace {trace_id} is stored. It may not have arrived yet, "
                "or it is past retention.",
            )
        logs, more_logs = _logs_of(backend, detail, page_store)
        view = span_view(detail)
        window = [
            ("trace_id", trace_id),
            ("start", str(detail.trace_start_ns // 10**6 - explore.TRACE_LOG_MARGIN_NS // 10**6)),
            ("end", str(detail.trace_end_ns // 10**6 + explore.TRACE_LOG_MARGIN_NS // 10**6)),
        ]
        return render(
            request,
            "span.html",
            d=detail,
            s=detail.span,
            v=view,
            full=full,
            logs=[log_view(entry, view["start_ns"]) for entry in logs],
            more_logs=more_logs,
            logs_url="/logs?" + urlencode(window),
            trace_url=f"/traces/{trace_id}",
            span_url=f"/traces/{trace_id}/spans/{span_id}",
            json_url=f"/api/v1/traces/{trace_id}/spans/{span_id}",
            count=_count,
            attr_limit=ATTR_LIMIT,
            **HELPERS,
        )

    @pages.get("/api/v1/traces/{trace_id}/spans/{span_id}", tags=["explore"], include_in_schema=True)
    def span_api(trace_id: str, span_id: str, request: Request) -> dict[str, Any]:
        """One span of one trace with all stored fields, its trace's start, its parent's service and
        name, its first 100 logs and its totals. Whole by default; ``attr_limit=N`` reads the first N
        span and resource attributes by key, the first 100 events and links and values cut at 2,000
        characters, and says what was cut (``capped``)."""
        params = request.query_params
        unknown = sorted(set(params.keys()) - {"attr_limit"})
        if unknown:
            raise bad_request(f"unknown parameter(s): {', '.join(unknown)} (known: attr_limit)")
        attr_limit = _attr_limit(params.get("attr_limit"))
        detail = call_store(lambda: traces.get_span(backend, trace_id, span_id, attr_limit))
        if detail is None:
            raise HTTPException(404, f"span {span_id.lower()} of trace {trace_id.lower()} not found")
        logs, more_logs = _logs_of(backend, detail, call_store)
        return span_json(detail, logs, more_logs)

    return pages
