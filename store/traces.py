"""Fetching whole traces from the store."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from store.backend import Backend
from store.sql import queries

TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
#: Longest text a find in a trace looks for.
MAX_FIND = 256


def typed_attributes(values: list[tuple[str, str]] | dict[str, str], types: Any) -> dict[str, Any]:
    """Give attribute values their OTLP kinds back (stored as text plus a kind for non-strings). A
    value that does not read as its kind (bad data, or a value cut short) is the text it is: no
    stored value may break a read."""
    kinds = dict(types or [])
    out: dict[str, Any] = {}
    for key, text in dict(values or []).items():
        try:
            out[key] = _typed(text, kinds.get(key, "string"))
        except (ValueError, TypeError):
            out[key] = text
    return out


def _typed(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "double":
        return float(text)
    if kind == "bool":
        return text == "true"
    if kind in ("array", "kvlist"):
        return json.loads(text)
    if kind == "bytes":
        return {"bytes": text}  # base64, kept distinct from a string
    if kind == "empty":
        return None
    return text


def span_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The store's one span shape, from a row of ``queries.TRACE_SPANS``."""
    start = int(row["start_time_unix_nano"])
    return {
        "trace_id": row["trace_hex"],
        "span_id": row["span_hex"],
        "parent_span_id": row["parent_hex"],
        "trace_state": row["trace_state"],
        "flags": row["flags"],
        "name": row["name"],
        "kind": row["kind"],
        "service_name": row["service_name"],
        "start_time_unix_nano": str(start),
        "end_time_unix_nano": str(start + row["duration"]),
        "duration_ns": row["duration"],
        "status": {"code": row["status_code"], "message": row["status_message"]},
        "resource": {
            "attributes": typed_attributes(row["resource_attributes"], row["resource_kinds"]),
            "schema_url": row["resource_schema_url"],
        },
        "scope": {
            "name": row["scope_name"],
            "version": row["scope_version"],
            "attributes": typed_attributes(row["scope_attributes"], row["scope_kinds"]),
            "schema_url": row["scope_schema_url"],
        },
        "attributes": typed_attributes(row["attributes"], row["kinds"]),
        "events": [
            {"time_unix_nano": t, "name": n, "attributes": typed_attributes(a, k)}
            for t, n, a, k in zip(
                row["event_times"],
                row["event_names"],
                row["event_attributes"],
                row["event_kinds"],
                strict=True,
            )
        ],
        "links": [
            {"trace_id": t, "span_id": s, "trace_state": ts, "flags": f, "attributes": typed_attributes(a, k)}
            for t, s, ts, f, a, k in zip(
                row["link_trace_ids"],
                row["link_span_ids"],
                row["link_trace_states"],
                row["link_flags"],
                row["link_attributes"],
                row["link_kinds"],
                strict=True,
            )
        ],
        "dropped_attributes_count": row["dropped_attributes_count"],
        "dropped_events_count": row["dropped_events_count"],
        "dropped_links_count": row["dropped_links_count"],
        "correlation_id": row["correlation_id"],
    }


def get_trace(backend: Backend, trace_id: str) -> list[dict[str, Any]]:
    """Every stored span of ``trace_id`` (32 hex digits), in start-time order; [] if unknown.

    Raises ValueError unless ``trace_id`` is 32 hex digits.
    """
    if not TRACE_ID.match(trace_id):
        raise ValueError(f"trace id must be 32 hex digits, got {trace_id!r}")
    rows = backend.query_arrow(queries.TRACE_SPANS, {"trace_id": trace_id.lower()}).to_pylist()
    return [span_from_row(row) for row in rows]


def trace_time_range(spans: list[dict[str, Any]]) -> tuple[int, int]:
    """(first start, last end) in unix ns of a non-empty list of span dicts."""
    return (
        min(int(s["start_time_unix_nano"]) for s in spans),
        max(int(s["end_time_unix_nano"]) for s in spans),
    )


@dataclass(frozen=True)
class TraceOutline:
    """The spans of one trace as columns, in start-time order: what a waterfall, the trace statistics
    and a trace comparison need, without attributes, events or links (read with ``get_span``)."""

    span_ids: list[str]
    parent_ids: list[str]  # '' for a root
    services: list[str]
    names: list[str]
    kinds: list[str]
    starts: list[int]  # unix ns
    durations: list[int]  # ns
    statuses: list[str]  # 'OK', 'ERROR', 'UNSET'
    event_counts: list[int]

    def __len__(self) -> int:
        return len(self.span_ids)


def outline(backend: Backend, trace_id: str) -> TraceOutline:
    """The outline of ``trace_id`` (32 hex digits); empty if unknown. ValueError for a malformed id."""
    if not TRACE_ID.match(trace_id):
        raise ValueError(f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
    columns = backend.query_arrow(queries.TRACE_OUTLINE, {"trace_id": trace_id.lower()}).to_pydict()
    return TraceOutline(
        span_ids=columns["span_hex"],
        parent_ids=columns["parent_hex"],
        services=columns["service_name"],
        names=columns["name"],
        kinds=columns["kind_name"],
        starts=columns["start_ns"],
        durations=columns["duration"],
        statuses=columns["status"],
        event_counts=columns["event_count"],
    )


def find_spans(backend: Backend, trace_id: str, needle: str) -> set[str]:
    """Ids of the spans of ``trace_id`` with ``needle`` (case-insensitive) in their service, name, id,
    status message, an attribute key or value (span or resource) or an event name."""
    if not TRACE_ID.match(trace_id):
        raise ValueError(f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
    text = needle.strip()
    if not text:
        return set()
    if len(text) > MAX_FIND:
        raise ValueError(f"find: at most {MAX_FIND} characters")
    rows = backend.query_arrow(queries.TRACE_FIND, {"trace_id": trace_id.lower(), "needle": text.lower()})
    return set(rows.column("span_hex").to_pylist())


# -- one span ----------------------------------------------------------------------------------

SPAN_ID = re.compile(r"^[0-9a-fA-F]{16}$")
#: Longest attribute value or status message a capped read returns whole, in characters.
VALUE_LIMIT = 2000
#: Most events and most links a capped read returns.
ITEM_LIMIT = 100
#: "No cap" for the engine's UInt32 limits.
_UNCAPPED = 2**32 - 1


@dataclass(slots=True)  # not frozen: a full read makes a million, and frozen ones take twice as long
class Attribute:
    """One attribute value as a page shows it."""

    key: str
    value: Any  # as typed_attributes gives it; the cut text (a str) when ``cut``
    kind: str  # the stored kind ('string', 'int', ...)
    length: int  # characters of the whole stored text
    cut: bool  # only the first VALUE_LIMIT characters were read


@dataclass(frozen=True)
class SpanDetail:
    """One span for its page: the store's span shape (``span_from_row``), capped when read with a
    limit (then its attributes, resource attributes, events and links are the ones read, and a cut
    value or status message is its cut text), with the totals, the cut values' lengths and what the
    page says about the trace and the parent."""

    span: dict[str, Any]
    attributes: list[Attribute]  # by key
    resource_attributes: list[Attribute]  # by key
    attribute_count: int
    resource_attribute_count: int
    event_count: int
    link_count: int
    status_length: int  # characters of the whole status message
    event_cut: list[dict[str, int]]  # per event read: key -> length of each cut attribute value
    link_cut: list[dict[str, int]]  # per link read: likewise
    trace_start_ns: int
    trace_end_ns: int
    parent_service: str  # '' when the span is a root or its parent is not stored
    parent_name: str
    parent_stored: bool
    attr_limit: int | None  # the limit read with (None: everything)
    value_limit: int | None

    @property
    def capped(self) -> bool:
        """Whether anything of the span was left out or cut."""
        return (
            len(self.attributes) < self.attribute_count
            or len(self.resource_attributes) < self.resource_attribute_count
            or len(self.span["events"]) < self.event_count
            or len(self.span["links"]) < self.link_count
            or any(a.cut for a in self.attributes + self.resource_attributes)
            or self.status_length > len(self.span["status"]["message"])
            or any(self.event_cut)
            or any(self.link_cut)
        )


def _attribute_list(
    keys: list[str], texts: list[str], lengths: list[int], kinds: dict[str, str], typed: dict[str, Any]
) -> list[Attribute]:
    return [
        Attribute(key, typed[key], kinds.get(key, "string"), length, length > len(text))
        for key, text, length in zip(keys, texts, lengths, strict=True)
    ]


def get_span(backend: Backend, trace_id: str, span_id: str, attr_limit: int | None) -> SpanDetail | None:
    """Span ``span_id`` (16 hex digits) of trace ``trace_id`` (32 hex digits); None if not stored.

    With ``attr_limit``, the engine returns only the first ``attr_limit`` span and resource attributes
    by key, the first ITEM_LIMIT events and links, and values and the status message cut at
    VALUE_LIMIT characters, with the totals and full lengths: a span with a million attributes costs
    what it shows. Without, everything whole. ValueError names a malformed id or limit.
    """
    if not TRACE_ID.match(trace_id):
        raise ValueError(f"trace id must be 32 hex digits, got {trace_id[:64]!r}")
    if not SPAN_ID.match(span_id):
        raise ValueError(f"span id must be 16 hex digits, got {span_id[:64]!r}")
    if attr_limit is not None and not 0 <= attr_limit < _UNCAPPED:
        raise ValueError(f"attribute limit must be a whole number from 0, got {attr_limit}")
    trace_id, span_id = trace_id.lower(), span_id.lower()
    capped = attr_limit is not None
    params = {
        "trace_id": trace_id,
        "span_id": span_id,
        "attr_limit": attr_limit if capped else _UNCAPPED,
        "item_limit": ITEM_LIMIT if capped else _UNCAPPED,
        "value_limit": VALUE_LIMIT if capped else _UNCAPPED,
    }
    rows = backend.query_arrow(queries.SPAN_DETAIL, params).to_pylist()
    if not rows:
        return None
    row = rows[0]
    attributes = dict(zip(row["attr_keys"], row["attr_values"], strict=True))
    kinds = dict(zip(row["kind_keys"], row["kind_values"], strict=True))
    resource = dict(zip(row["res_keys"], row["res_values"], strict=True))
    res_kinds = dict(zip(row["res_kind_keys"], row["res_kind_values"], strict=True))
    span = span_from_row(
        {
            **row,
            "status_message": row["status_text"],
            "attributes": attributes,
            "kinds": kinds,
            "resource_attributes": resource,
            "resource_kinds": res_kinds,
        }
    )
    context = backend.query_arrow(
        queries.SPAN_TRACE_CONTEXT, {"trace_id": trace_id, "parent_id": row["parent_hex"]}
    ).to_pylist()[0]
    return SpanDetail(
        span=span,
        attributes=_attribute_list(
            row["attr_keys"], row["attr_values"], row["attr_lengths"], kinds, span["attributes"]
        ),
        resource_attributes=_attribute_list(
            row["res_keys"], row["res_values"], row["res_lengths"], res_kinds, span["resource"]["attributes"]
        ),
        attribute_count=row["attribute_count"],
        resource_attribute_count=row["resource_attribute_count"],
        event_count=row["event_count"],
        link_count=row["link_count"],
        status_length=row["status_length"],
        event_cut=[dict(c) for c in row["event_cut"]],
        link_cut=[dict(c) for c in row["link_cut"]],
        trace_start_ns=context["trace_start"],
        trace_end_ns=context["trace_end"],
        parent_service=context["parent_service"] if context["parent_found"] else "",
        parent_name=context["parent_name"] if context["parent_found"] else "",
        parent_stored=bool(context["parent_found"]),
        attr_limit=attr_limit,
        value_limit=VALUE_LIMIT if capped else None,
    )
