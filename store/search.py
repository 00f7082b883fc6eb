"""Searching stored spans: traces by criteria, services, operations and service dependencies.

Every query is bounded by a time range: spans are partitioned by day and ordered by service and
time, so a narrow range reads a few granules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store.backend import Backend
from store.sql import queries
from store.traces import TRACE_ID, span_from_row

#: Largest duration bound the engine accepts (UInt64 nanoseconds).
MAX_DURATION_NS = 2**64 - 1

#: Most service map edges one Jaeger dependencies answer holds (Jaeger has no limit parameter).
MAX_EDGES = 100_000

#: Stored span kinds (``spans.kind``).
SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")


@dataclass(frozen=True)
class TraceQuery:
    """What a trace search asks for; a trace matches if ONE of its spans meets every criterion."""

    service: str | None
    operation: str | None
    tags: dict[str, str]
    start_ns: int
    end_ns: int
    min_duration_ns: int | None
    max_duration_ns: int | None
    limit: int = 20


def _range(start_ns: int, end_ns: int) -> dict[str, int]:
    if end_ns < start_ns:
        raise ValueError(f"end ({end_ns}) is before start ({start_ns})")
    return {"start": start_ns, "end": end_ns}


def find_trace_ids(backend: Backend, q: TraceQuery) -> list[str]:
    """Ids (32 lower-case hex digits) of the traces matching ``q``, newest matching span first."""
    if q.limit < 1:
        raise ValueError(f"limit must be at least 1, got {q.limit}")
    params: dict[str, Any] = {
        **_range(q.start_ns, q.end_ns),
        "service": q.service or "",
        "operation": q.operation or "",
        "min_duration": max(0, q.min_duration_ns or 0),
        "max_duration": MAX_DURATION_NS if q.max_duration_ns is None else max(0, q.max_duration_ns),
        "tag_keys": sorted(q.tags),
        "tag_values": [q.tags[k] for k in sorted(q.tags)],
        "limit": q.limit,
    }
    rows = backend.query_arrow(queries.SEARCH_TRACE_IDS, params).to_pylist()
    return [row["trace_hex"] for row in rows]


def get_traces(backend: Backend, trace_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The spans of each known trace in ``trace_ids`` (start-time order), in one read.

    Span dicts have the shape of :func:`store.traces.get_trace`; unknown ids are absent.
    """
    ids = []
    for trace_id in trace_ids:
        if not TRACE_ID.match(trace_id):
            raise ValueError(f"trace id must be 32 hex digits, got {trace_id!r}")
        ids.append(trace_id.lower())
    if not ids:
        return {}
    params = {"trace_ids": list(dict.fromkeys(ids))}
    out: dict[str, list[dict[str, Any]]] = {}
    for row in backend.query_arrow(queries.TRACES_SPANS, params).to_pylist():
        out.setdefault(row["trace_hex"], []).append(span_from_row(row))
    return out


def services(backend: Backend, start_ns: int, end_ns: int) -> list[str]:
    """Names of the services with spans starting in [start_ns, end_ns], sorted."""
    rows = backend.query_arrow(queries.SERVICES, _range(start_ns, end_ns)).to_pylist()
    return [row["service_name"] for row in rows]


def operations(
    backend: Backend, service: str, span_kind: str | None, start_ns: int, end_ns: int
) -> list[tuple[str, str]]:
    """(span name, stored kind) pairs of ``service`` in the range; ``span_kind`` ('SERVER', ...) filters."""
    if span_kind and span_kind not in SPAN_KINDS:
        raise ValueError(f"unknown span kind {span_kind!r}")
    params = {**_range(start_ns, end_ns), "service": service, "kind": span_kind or ""}
    rows = backend.query_arrow(queries.OPERATIONS, params).to_pylist()
    return [(row["name"], row["kind"]) for row in rows]


def dependencies(backend: Backend, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
    """(parent service, child service, calls) for parent/child spans in different services: the
    service map of ``/api/v1/dependencies`` (:func:`store.explore.dependencies`: stored minutes, late
    spans included), so that both APIs give the same calls for the same range."""
    # store.explore imports this module: imported here, when first called.
    from store.explore import dependencies as edges

    _range(start_ns, end_ns)
    return [(e["caller"], e["callee"], e["calls"]) for e in edges(backend, start_ns, end_ns, MAX_EDGES)]
