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
    """Give attribute values their OTLP kinds back (stored as text plus a kind for non-strings)."""
    kinds = dict(types or [])
    out: dict[str, Any] = {}
    for key, text in dict(values or []).items():
        kind = kinds.get(key, "string")
        if kind == "int":
            out[key] = int(text)
        elif kind == "double":
            out[key] = float(text)
        elif kind == "bool":
            out[key] = text == "true"
        elif kind in ("array", "kvlist"):
            out[key] = json.loads(text)
        elif kind == "bytes":
            out[key] = {"bytes": text}  # base64, kept distinct from a string
        elif kind == "empty":
            out[key] = None
        else:
            out[key] = text
    return out


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
