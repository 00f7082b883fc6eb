"""Span details kept since migration 0011: kinds of event and link attribute values, scope attributes,
scope and resource schema URLs, link flags. Hand-built OTLP requests decoded by the real engine, read
back through the store's trace read and the Jaeger model; rows stored before the migration still read.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from store import migrations, search, traces
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter
from store.sql import queries
from ui.jaeger import to_jaeger_trace

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
NOW = time.time_ns()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[EmbeddedBackend]:
    b = EmbeddedBackend(tmp_path)
    yield b
    b.close()


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _request() -> bytes:
    """Two resources; the first has two scopes with different attributes and schema URLs."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.4.0")
    rs.resource.attributes.append(kv("service.name", AnyValue(string_value="shop")))
    first = rs.scope_spans.add(schema_url="https://example.com/scope/1")
    first.scope.name, first.scope.version = "shop.http", "1.0"
    first.scope.attributes.extend(
        [
            kv("scope.int", AnyValue(int_value=-3)),
            kv(
                "scope.map", AnyValue(kvlist_value=KeyValueList(values=[kv("a", AnyValue(bool_value=False))]))
            ),
            kv("scope.blob", AnyValue(bytes_value=b"\x00\xff")),
        ]
    )
    span = first.spans.add(
        trace_id=TRACE,
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="GET /cart",
        kind=2,
        start_time_unix_nano=NOW,
        end_time_unix_nano=NOW + 10**6,
    )
    nested = ArrayValue(values=[AnyValue(int_value=1), AnyValue(array_value=ArrayValue(values=[AnyValue()]))])
    event = span.events.add(time_unix_nano=NOW + 10, name="exception")
    event.attributes.extend(
        [
            kv("big", AnyValue(int_value=2**53 + 1)),
            kv("ratio", AnyValue(double_value=0.25)),
            kv("blob", AnyValue(bytes_value=b"\x01\x02")),
            kv("map", AnyValue(kvlist_value=KeyValueList(values=[kv("k", AnyValue(string_value="v"))]))),
            kv("nested", AnyValue(array_value=nested)),
            kv("unset", AnyValue()),
            kv("text", AnyValue(string_value="true")),
        ]
    )
    span.events.add(time_unix_nano=NOW + 20, name="no-attributes")
    link = span.links.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), flags=0x301)
    link.attributes.extend(
        [kv("n", AnyValue(int_value=7)), kv("opentracing.ref_type", AnyValue(string_value="x"))]
    )
    span.links.add(trace_id=bytes(range(2, 18)), span_id=bytes(range(2, 10)))  # flags 0, no attributes
    second = rs.scope_spans.add()  # no scope attributes, no schema URL
    second.scope.name = "shop.db"
    second.spans.add(
        trace_id=TRACE,
        span_id=bytes.fromhex("00f067aa0ba902b8"),
        parent_span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="SELECT",
        start_time_unix_nano=NOW + 100,
        end_time_unix_nano=NOW + 200,
    )
    other = request.resource_spans.add()  # no schema URL
    other.resource.attributes.append(kv("service.name", AnyValue(string_value="db")))
    scope = other.scope_spans.add(schema_url="https://example.com/scope/2")
    scope.scope.attributes.append(kv("scope.int", AnyValue(int_value=9)))
    scope.spans.add(
        trace_id=TRACE,
        span_id=bytes.fromhex("00f067aa0ba902b9"),
        parent_span_id=bytes.fromhex("00f067aa0ba902b8"),
        name="query",
        start_time_unix_nano=NOW + 300,
        end_time_unix_nano=NOW + 400,
    )
    return request.SerializeToString()


def test_event_and_link_kinds_scope_attributes_schema_urls_and_link_flags(backend: EmbeddedBackend) -> None:
    migrations.migrate(backend)
    OtlpWriter(backend, []).write("traces", [_request()], "details")
    spans = {s["name"]: s for s in traces.get_trace(backend, TRACE.hex())}
    assert set(spans) == {"GET /cart", "SELECT", "query"}

    cart = spans["GET /cart"]
    assert cart["resource"]["schema_url"] == "https://opentelemetry.io/schemas/1.4.0"
    assert cart["scope"] == {
        "name": "shop.http",
        "version": "1.0",
        "attributes": {"scope.int": -3, "scope.map": {"a": False}, "scope.blob": {"bytes": "AP8="}},
        "schema_url": "https://example.com/scope/1",
    }
    # Each span gets its own scope's details, each scope its own resource's.
    assert spans["SELECT"]["scope"] == {"name": "shop.db", "version": "", "attributes": {}, "schema_url": ""}
    assert spans["SELECT"]["resource"]["schema_url"] == "https://opentelemetry.io/schemas/1.4.0"
    assert spans["query"]["resource"]["schema_url"] == ""
    assert spans["query"]["scope"]["attributes"] == {"scope.int": 9}
    assert spans["query"]["scope"]["schema_url"] == "https://example.com/scope/2"

    exception, empty = cart["events"]
    inner = base64.b64encode(ArrayValue(values=[AnyValue()]).SerializeToString()).decode()
    assert exception["attributes"] == {
        "big": 2**53 + 1,
        "ratio": 0.25,
        "blob": {"bytes": "AQI="},
        "map": {"k": "v"},
        "nested": [1, inner],  # the engine decodes two levels, as for span attributes
        "unset": None,
        "text": "true",
    }
    assert empty == {"time_unix_nano": str(NOW + 20), "name": "no-attributes", "attributes": {}}
    assert [(ln["flags"], ln["attributes"]) for ln in cart["links"]] == [
        (0x301, {"n": 7, "opentracing.ref_type": "x"}),
        (0, {}),
    ]

    # The Jaeger model: typed log fields; scope attributes, schema URLs and link flags have no place in it.
    (jaeger,) = [
        s
        for s in to_jaeger_trace(search.get_traces(backend, [TRACE.hex()])[TRACE.hex()])["spans"]
        if s["operationName"] == "GET /cart"
    ]
    assert jaeger["logs"][0]["fields"] == [
        {"key": "event", "type": "string", "value": "exception"},
        {"key": "big", "type": "int64", "value": str(2**53 + 1)},
        {"key": "ratio", "type": "float64", "value": 0.25},
        {"key": "blob", "type": "binary", "value": "AQI="},
        {"key": "map", "type": "string", "value": '{"k":"v"}'},
        {"key": "nested", "type": "string", "value": f'[1,"{inner}"]'},
        {"key": "unset", "type": "string", "value": ""},
        {"key": "text", "type": "string", "value": "true"},
    ]
    assert [t["key"] for t in jaeger["tags"]] == ["otel.scope.name", "otel.scope.version", "span.kind"]
    assert jaeger["logs"][1] == {
        "timestamp": (NOW + 20) // 1000,
        "fields": [{"key": "event", "type": "string", "value": "no-attributes"}],
    }


def _migrate_to(backend: EmbeddedBackend, last: int) -> None:
    """Apply the migrations up to ``last`` only, as an older build did."""
    for migration in migrations.load_migrations():
        if migration.version <= last:
            for statement in migration.statements:
                backend.command(statement)
            backend.command(queries.RECORD_MIGRATION, {"version": migration.version, "name": migration.name})


# A span as builds before migration 0011 stored it: event and link attributes as text, without kinds.
OLD_SPAN = f"""
INSERT INTO spans (timestamp, trace_id, span_id, name, kind, service_name, scope_name, scope_version,
    duration, status_code, `events.timestamp`, `events.name`, `events.attributes`, `links.trace_id`,
    `links.span_id`, `links.trace_state`, `links.attributes`)
VALUES (fromUnixTimestamp64Nano({NOW}), unhex('{TRACE.hex()}'), unhex('00000000000000a1'), 'old', 'SERVER',
    'shop', 'shop.http', '0.9', 1000, 'UNSET',
    [fromUnixTimestamp64Nano({NOW + 1}), fromUnixTimestamp64Nano({NOW + 2})], ['retry', 'done'],
    [map('attempt', '2'), map()], [unhex('{bytes(range(1, 17)).hex()}')], [unhex('0102030405060708')], ['k=v'],
    [map('n', '7')])
"""


def test_rows_stored_before_the_migration_read_with_empty_details(backend: EmbeddedBackend) -> None:
    _migrate_to(backend, 10)
    backend.command(OLD_SPAN)
    assert 11 in migrations.migrate(backend)

    def old_span() -> dict:
        (span,) = [s for s in traces.get_trace(backend, TRACE.hex()) if s["name"] == "old"]
        return span

    expected = {
        "resource": {"attributes": {}, "schema_url": ""},
        "scope": {"name": "shop.http", "version": "0.9", "attributes": {}, "schema_url": ""},
        "events": [
            {"time_unix_nano": str(NOW + 1), "name": "retry", "attributes": {"attempt": "2"}},
            {"time_unix_nano": str(NOW + 2), "name": "done", "attributes": {}},
        ],
        "links": [
            {
                "trace_id": bytes(range(1, 17)).hex(),
                "span_id": "0102030405060708",
                "trace_state": "k=v",
                "flags": 0,
                "attributes": {"n": "7"},
            }
        ],
    }
    assert {k: old_span()[k] for k in expected} == expected
    old_jaeger = to_jaeger_trace([old_span()])["spans"][0]
    assert old_jaeger["logs"][0]["fields"] == [
        {"key": "event", "type": "string", "value": "retry"},
        {"key": "attempt", "type": "string", "value": "2"},
    ]

    # A new span of the same trace, then one merged part of old and new rows: both still read.
    OtlpWriter(backend, []).write("traces", [_request()], "after-migration")
    backend.command("OPTIMIZE TABLE spans FINAL")
    parts = backend.query_arrow("SELECT count() AS n FROM system.parts WHERE table = 'spans' AND active")
    assert parts.column("n")[0].as_py() == 1
    assert {k: old_span()[k] for k in expected} == expected
    (cart,) = [s for s in traces.get_trace(backend, TRACE.hex()) if s["name"] == "GET /cart"]
    assert cart["links"][0]["flags"] == 0x301 and cart["events"][0]["attributes"]["ratio"] == 0.25


def test_details_that_are_not_what_the_store_writes_read_as_none(backend: EmbeddedBackend) -> None:
    migrations.migrate(backend)
    OtlpWriter(backend, []).write("traces", [_request()], "details")
    assert backend.query_arrow("SELECT countIf(details = '') AS plain FROM spans").to_pylist() != [{"plain": 3}]
    for garbage in ("not json", '{"link_flags": [1, 2, 3, 4, 5], "scope_attributes": 7}', "{"):
        backend.command(
            "ALTER TABLE spans UPDATE details = {d:String} WHERE 1 SETTINGS mutations_sync = 1", {"d": garbage}
        )
        spans = traces.get_trace(backend, TRACE.hex())
        assert len(spans) == 3
        for span in spans:
            assert span["scope"]["attributes"] == {} and span["resource"]["schema_url"] == ""
            assert all(link["flags"] in (0, 1, 2, 3, 4, 5) for link in span["links"])
        assert to_jaeger_trace(spans)["spans"]
