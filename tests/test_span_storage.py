"""Span storage (migration 0014): the trace-id projection that holds row positions only.

A store written under the old layout (migrations up to 0013: by_trace, a full copy of every row)
is migrated in place; every span stays readable by trace id, before and after the new projection is
materialized, and the trace reads (store/sql/queries.py, store/sql/explore.py) use the projection
(asserted on the query plan) and return what a full scan returns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from store import migrations, traces
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter
from store.sql import explore, queries

SERVICES = ("frontend", "checkout", "cart")
TRACES = 24
SPANS_PER_TRACE = 9
# The engine uses a projection's positions from 1M rows on (min_table_rows_to_use_projection_index).
BIG = 1_100_000


def trace_id(n: int) -> bytes:
    return (0xA0 << 120 | n).to_bytes(16, "big")


def request(first_trace: int, count: int, base_ns: int) -> bytes:
    """``count`` traces of SPANS_PER_TRACE spans, a root and its children, spread over SERVICES."""
    req = ExportTraceServiceRequest()
    by_service = {}
    for service in SERVICES:
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = service
        rs.resource.attributes.add(key="host.name").value.string_value = f"{service}-1"
        by_service[service] = rs.scope_spans.add()
    for t in range(first_trace, first_trace + count):
        for s in range(SPANS_PER_TRACE):
            service = SERVICES[(t + s) % len(SERVICES)]
            start = base_ns + t * 10**9 + s * 10**6
            span = by_service[service].spans.add(
                trace_id=trace_id(t),
                span_id=(t * 100 + s + 1).to_bytes(8, "big"),
                parent_span_id=b"" if s == 0 else (t * 100 + 1).to_bytes(8, "big"),
                name=f"GET /api/item/{s % 3}",
                kind=2 if s == 0 else 3,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 5 * 10**5,
            )
            span.attributes.add(key="http.route").value.string_value = f"/api/item/{s % 3}"
            span.attributes.add(key="http.response.status_code").value.int_value = 200
            span.attributes.add(key="url.path").value.string_value = f"/api/item/{t}-{s}"
            if s == 4:
                span.status.code, span.status.message = 2, "boom"
                span.events.add(time_unix_nano=start + 10, name="exception").attributes.add(
                    key="exception.type"
                ).value.string_value = "ValueError"
    return req.SerializeToString()


def migrate_upto(backend: EmbeddedBackend, last: int) -> None:
    """Apply the migrations up to ``last`` only, recorded as store.migrations.migrate records them."""
    for migration in migrations.load_migrations():
        if migration.version > last:
            break
        for statement in migration.statements:
            backend.command(statement)
        backend.command(queries.RECORD_MIGRATION, {"version": migration.version, "name": migration.name})


def projections(backend: EmbeddedBackend) -> set[str]:
    rows = backend.query_arrow(
        "SELECT name FROM system.projections WHERE database = currentDatabase() AND table = 'spans'"
    )
    return set(rows.column("name").to_pylist())


def scanned(sql: str) -> str:
    """``sql`` forced to read the table itself (no projection): the reference answer."""
    return sql.rstrip() + "\nSETTINGS optimize_use_projections = 0"


def full_scan_trace(backend: EmbeddedBackend, hex_id: str) -> list[dict[str, Any]]:
    rows = backend.query_arrow(scanned(queries.TRACE_SPANS), {"trace_id": hex_id}).to_pylist()
    return [traces.span_from_row(row) for row in rows]


def wait_for_mutations(backend: EmbeddedBackend) -> None:
    """Until the migration's MATERIALIZE/DROP PROJECTION mutations have run (they run in the background)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = backend.query_arrow(
            "SELECT count() AS n FROM system.mutations WHERE database = currentDatabase() AND NOT is_done"
        )
        if left.column("n")[0].as_py() == 0:
            return
        time.sleep(0.1)
    raise AssertionError("mutations still running after 60 s")


@pytest.fixture
def old_store(tmp_path: Path):  # noqa: ANN201
    """A store under migrations 0000-0013 holding TRACES traces written through the ingest path."""
    backend = EmbeddedBackend(tmp_path / "store")
    try:
        migrate_upto(backend, 13)
        writer = OtlpWriter(backend, ())
        base = time.time_ns() - 3600 * 10**9
        # Three inserts: three parts, each with its by_trace copy.
        for first in range(0, TRACES, TRACES // 3):
            writer.write("traces", [request(first, TRACES // 3, base)], f"old-{first}")
        yield backend
    finally:
        backend.close()


def test_migration_keeps_old_spans_readable(old_store: EmbeddedBackend) -> None:
    backend = old_store
    ids = [trace_id(t).hex() for t in range(TRACES)]
    before = {t: traces.get_trace(backend, t) for t in ids}
    assert all(len(spans) == SPANS_PER_TRACE for spans in before.values())
    assert "by_trace" in projections(backend)

    applied = migrations.migrate(backend)
    assert 14 in applied
    assert "by_trace_offset" in projections(backend)
    assert "by_trace" not in projections(backend)
    types = backend.query_arrow(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'spans' "
        "AND name IN ('attributes', 'resource_attributes')"
    ).to_pylist()
    assert {r["type"] for r in types} == {"Map(LowCardinality(String), LowCardinality(String))"}
    # Readable at once, while the projection is being materialized, and after.
    assert {t: traces.get_trace(backend, t) for t in ids} == before
    wait_for_mutations(backend)
    assert {t: traces.get_trace(backend, t) for t in ids} == before
    parts = backend.query_arrow(
        "SELECT DISTINCT name FROM system.projection_parts WHERE database = currentDatabase() "
        "AND table = 'spans' AND active"
    )
    assert parts.column("name").to_pylist() == ["by_trace_offset"]

    # Spans written under the new layout, and a merge of old and new parts.
    OtlpWriter(backend, ()).write("traces", [request(TRACES, 4, time.time_ns() - 60 * 10**9)], "new")
    backend.command("OPTIMIZE TABLE spans FINAL")
    for t in range(TRACES + 4):
        hex_id = trace_id(t).hex()
        assert traces.get_trace(backend, hex_id) == full_scan_trace(backend, hex_id)
        assert len(traces.get_trace(backend, hex_id)) == SPANS_PER_TRACE
    # Applying the migrations again changes nothing: every statement is idempotent.
    for statement in next(m for m in migrations.load_migrations() if m.version == 14).statements:
        backend.command(statement)
    assert traces.get_trace(backend, ids[0]) == before[ids[0]]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A migrated store past the projection's 1M-row threshold: synthetic filler plus real traces."""
    backend = EmbeddedBackend(tmp_path_factory.mktemp("span-storage") / "store")
    try:
        migrations.migrate(backend)
        backend.command(
            "INSERT INTO spans (timestamp, trace_id, span_id, parent_span_id, name, kind, service_name, duration, "
            "status_code) SELECT now64(9) - toIntervalSecond(number % 3600), "
            "toFixedString(reinterpretAsString(cityHash64(intDiv(number, 10))) || reinterpretAsString(number), 16), "
            "toFixedString(reinterpretAsString(number + 1), 8), toFixedString('', 8), 'filler', 'INTERNAL', "
            "concat('svc-', toString(number % 7)), 1000, 'UNSET' FROM numbers({n:UInt64})",
            {"n": BIG},
        )
        OtlpWriter(backend, ()).write("traces", [request(0, TRACES, time.time_ns() - 3600 * 10**9)], "big")
        backend.command("OPTIMIZE TABLE spans FINAL")
        yield backend
    finally:
        backend.close()


def plan(backend: EmbeddedBackend, sql: str, params: dict[str, Any]) -> str:
    rows = backend.query_arrow("EXPLAIN indexes = 1, projections = 1 " + sql, params)
    return "\n".join(rows.column(0).to_pylist())


TRACE_PARAMS = {
    "trace_id": trace_id(3).hex(),
    "span_id": (301).to_bytes(8, "big").hex(),
    "parent_id": "",
    "needle": "item",
    "attr_limit": 10,
    "item_limit": 10,
    "value_limit": 100,
}


@pytest.mark.parametrize(
    "name", ["TRACE_SPANS", "TRACE_OUTLINE", "TRACE_FIND", "SPAN_DETAIL", "SPAN_TRACE_CONTEXT"]
)
def test_trace_by_id_reads_use_the_offset_projection(big_store: EmbeddedBackend, name: str) -> None:
    text = plan(big_store, getattr(queries, name), TRACE_PARAMS)
    projection = text[text.index("Projections:") :]
    assert "Name: by_trace_offset" in projection, text
    assert "will be applied during reading" in projection, text


def test_trace_read_returns_what_a_full_scan_returns(big_store: EmbeddedBackend) -> None:
    for t in (0, 3, TRACES - 1):
        hex_id = trace_id(t).hex()
        spans = traces.get_trace(big_store, hex_id)
        assert len(spans) == SPANS_PER_TRACE
        assert spans == full_scan_trace(big_store, hex_id)
    assert traces.get_trace(big_store, "ff" * 16) == []


def test_trace_set_reads_return_what_a_full_scan_returns(big_store: EmbeddedBackend) -> None:
    ids = [trace_id(t).hex() for t in (1, 5, 7)] + ["ff" * 16]
    for sql in (queries.TRACES_SPANS, explore.TRACE_SUMMARIES):
        got = big_store.query_arrow(sql, {"trace_ids": ids}).to_pylist()
        want = big_store.query_arrow(scanned(sql), {"trace_ids": ids}).to_pylist()
        assert sorted(got, key=repr) == sorted(want, key=repr)
        assert {row["trace_hex"] for row in got} == set(ids[:3])
