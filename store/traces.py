"""Fetching whole traces from the store."""

from __future__ import annotations

import json
import re
from typing import Any

from store.backend import Backend
from store.sql import queries

TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


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
