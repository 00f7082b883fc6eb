"""ServerBackend against a ClickHouse HTTP endpoint backed by the real engine (tests/chshim.py).

Everything here goes through clickhouse-connect over a real socket: the SQL, parameters, settings,
Arrow and Protobuf bodies reach the ClickHouse engine exactly as the backend sends them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from store import migrations
from store.backend import StoreError, StoreUnavailable
from store.otlp_writer import OtlpWriter
from store.server import ServerBackend
from tests.chshim import ChShim


@pytest.fixture
def shim(tmp_path) -> Iterator[tuple[ChShim, str]]:
    shim = ChShim(tmp_path / "shim")
    url = shim.start()
    try:
        yield shim, url
    finally:
        shim.stop()


@pytest.fixture
def backend(shim) -> Iterator[ServerBackend]:
    _, url = shim
    backend = ServerBackend(url + "/default")
    try:
        yield backend
    finally:
        backend.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def count(backend: ServerBackend, table: str) -> int:
    return backend.query_arrow(f"SELECT count() AS n FROM {table}").column("n")[0].as_py()


def red_requests(backend: ServerBackend) -> int:
    return backend.query_arrow("SELECT sum(requests) AS n FROM red_1m").column("n")[0].as_py()


def test_migrate_twice_second_is_noop(backend):
    applied = migrations.migrate(backend)
    assert applied == [m.version for m in migrations.load_migrations()]
    assert migrations.migrate(backend) == []
    tables = (
        backend.query_arrow("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .column("name")
        .to_pylist()
    )
    assert {"schema_migrations", "spans", "logs", "red_1m"} <= set(tables)


def test_query_arrow_sends_server_side_parameters(shim, backend):
    shim_obj, _ = shim
    table = backend.query_arrow(
        "SELECT {s:String} AS s, {n:UInt32} + 1 AS n, {xs:Array(String)} AS xs",
        {"s": "it's a\ttab", "n": 41, "xs": ["a", "b'c"]},
    )
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"s": "it's a\ttab", "n": 42, "xs": ["a", "b'c"]}]
    # The values travelled as param_* request parameters, not spliced into the SQL by the client.
    sent = shim_obj.log[-1]
    assert "{s:String}" in sent.sql and "tab" not in sent.sql
    assert sent.params["param_n"] == "41"
    assert "tab" in sent.params["param_s"]


def test_long_parameters_travel_as_form_fields(shim, backend):
    # Past 4 KiB of parameters clickhouse-connect switches to a multipart/form-data body.
    value = "x" * 10_000 + "'\\"
    table = backend.query_arrow("SELECT length({v:String}) AS n, right({v:String}, 2) AS tail", {"v": value})
    assert table.to_pylist() == [{"n": len(value), "tail": "'\\"}]
    sent = shim[0].log[-1]
    assert sent.params.get("query", "").startswith("SELECT length(")  # a form field, not the body
    assert len(sent.params["param_v"]) > 10_000


def test_command_with_parameters(backend):
    backend.command("CREATE TABLE kv (k String, v UInt64) ENGINE = MergeTree ORDER BY k")
    backend.command("INSERT INTO kv VALUES ({k:String}, {v:UInt64})", {"k": "a", "v": 7})
    rows = backend.query_arrow("SELECT k, v FROM kv WHERE k = {k:String}", {"k": "a"}).to_pylist()
    assert rows == [{"k": "a", "v": 7}]


def test_insert_arrow_dedup_token_keeps_one_copy(backend):
    backend.command(
        "CREATE TABLE t (id UInt64, name String, ts DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY id "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.uint64()),
            "name": ["a", "b", "c"],
            "ts": pa.array([1_700_000_000_000 + i for i in range(3)], pa.timestamp("ms", "UTC")),
        }
    )
    backend.insert_arrow("t", data, dedup_token="batch-1")
    backend.insert_arrow("t", data, dedup_token="batch-1")
    assert count(backend, "t") == 3
    backend.insert_arrow("t", data, dedup_token="batch-2")
    assert count(backend, "t") == 6
    names = backend.query_arrow("SELECT DISTINCT name FROM t ORDER BY name").column("name").to_pylist()
    assert names == ["a", "b", "c"]


def _span(name: str, trace_id: bytes, span_id: bytes, start: int) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 5_000_000,
        attributes=[KeyValue(key="http.route", value=AnyValue(string_value=f"/{name}"))],
    )


def test_otlp_writer_through_server_is_deduplicated(shim, backend):
    migrations.migrate(backend)
    now = time.time_ns()  # recent: the tables drop rows older than their 7-day TTL
    trace_id = bytes(range(16))
    spans = [_span(f"op-{i}", trace_id, bytes([i + 1] * 8), now + i * 1000) for i in range(3)]
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value="checkout"))]
                ),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    writer = OtlpWriter(backend, ["correlation.id"])
    writer.write("traces", [request.SerializeToString()], "tok1")
    # The statement reached the server as INSERT ... SELECT ... FROM input(...) FORMAT Protobuf with
    # the schema and dedup token as request settings, the raw request as the body.
    sent = shim[0].log[-1]
    assert "FROM input('resource_spans Array(" in sent.sql and sent.sql.endswith("FORMAT Protobuf")
    assert sent.params["format_schema_message_name"] == "ExportTraceServiceRequest"
    assert sent.params["insert_deduplication_token"] == "tok1:spans"

    rows = backend.query_arrow(
        "SELECT name, service_name, hex(trace_id) AS trace_id, hex(span_id) AS span_id, "
        "attributes['http.route'] AS route FROM spans ORDER BY name"
    ).to_pylist()
    assert rows == [
        {
            "name": f"op-{i}",
            "service_name": "checkout",
            "trace_id": trace_id.hex().upper(),
            "span_id": (bytes([i + 1]) * 8).hex().upper(),
            "route": f"/op-{i}",
        }
        for i in range(3)
    ]
    # The RED view filled its roll-up in the same insert; a replay counts in neither table twice.
    assert red_requests(backend) == 3

    writer.write("traces", [request.SerializeToString()], "tok1")  # a replay of the same batch
    assert count(backend, "spans") == 3
    assert red_requests(backend) == 3
    writer.write("traces", [request.SerializeToString()], "tok2")  # a new batch is stored
    assert count(backend, "spans") == 6
    assert red_requests(backend) == 6


def test_url_names_user_password_and_database(shim, backend):
    shim_obj, url = shim
    backend.command("CREATE DATABASE other")
    other = ServerBackend(url.replace("http://", "http://alice:s%40cr%3Aet@") + "/other")
    try:
        db = other.query_arrow("SELECT currentDatabase() AS db").column("db").to_pylist()
        assert db == ["other"]
        other.command("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
        other.command("INSERT INTO t VALUES (1)")
        assert count(backend, "other.t") == 1  # the table landed in database "other"
        assert count(backend, "system.tables WHERE database = 'default' AND name = 't'") == 0
    finally:
        other.close()
    sent = [s for s in shim_obj.log if s.sql.startswith("CREATE TABLE t")][0]
    assert (sent.user, sent.password, sent.params["database"]) == ("alice", "s@cr:et", "other")
    assert "***" in other.url and "s%40cr" not in other.url
    assert shim_obj.log[0].user == "default"


def test_concurrent_use_from_threads(backend):
    # The app shares one backend between the flusher and API threads; an HTTP session id would make
    # clickhouse-connect refuse overlapping requests.
    def run(i: int) -> int:
        return backend.query_arrow("SELECT {i:UInt32} * 2 AS v", {"i": i}).column("v")[0].as_py()

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(run, range(64))) == [i * 2 for i in range(64)]


def test_bad_sql_raises_store_error(backend):
    with pytest.raises(StoreError, match="SYNTAX_ERROR|Syntax error"):
        backend.query_arrow("SELEC 1")
    with pytest.raises(StoreError, match="UNKNOWN_TABLE|does not exist"):
        backend.command("INSERT INTO no_such_table VALUES (1)")


def test_long_error_messages_are_truncated(backend):
    with pytest.raises(StoreError) as caught:
        backend.query_arrow("SELECT " + " + ".join(f"no_such_column_{i}" for i in range(400)))
    assert len(str(caught.value)) < 700


def test_closed_port_raises_store_unavailable():
    with pytest.raises(StoreUnavailable):
        ServerBackend(f"http://127.0.0.1:{free_port()}/default", connect_timeout=2)


def test_stopped_server_raises_store_unavailable(tmp_path):
    shim = ChShim(tmp_path / "shim")
    url = shim.start()
    try:
        backend = ServerBackend(url)
        assert backend.query_arrow("SELECT 1 AS one").column("one").to_pylist() == [1]
    finally:
        shim.stop()
    try:
        with pytest.raises(StoreUnavailable):
            backend.query_arrow("SELECT 1 AS one")
    finally:
        backend.close()


def test_url_parsing_rejects_other_schemes():
    with pytest.raises(ValueError):
        ServerBackend("tcp://localhost:9000/default")
