"""Strings that are not UTF-8: stored as sent, read back with U+FFFD, and no read path breaks.

Protobuf libraries refuse to build such a message, but the wire allows it and real exporters send it
(a truncated multi-byte character, a Latin-1 header copied into an attribute). The requests here are
built with placeholders of the same length and the bytes swapped in afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import InProcess, in_process

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
# Placeholders and what replaces them on the wire: same lengths, so the framing stays right.
SWAPS = {b"svc-X": b"svc-\xff", b"op-XX": b"op-\xc3(", b"key-X": b"key-\xfe", b"val-XX": b"val-\xe2\x82"}
SERVICE = "svc-\ufffd"


def _wire(message: bytes) -> bytes:
    for placeholder, raw in SWAPS.items():
        assert placeholder in message
        message = message.replace(placeholder, raw)
    return message


def _trace_request(now: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc-X"
    span = rs.scope_spans.add().spans.add(
        trace_id=TRACE_ID,
        span_id=bytes.fromhex("eee19b7ec3c1b174"),
        name="op-XX",
        kind=2,
        start_time_unix_nano=now - 5_000_000,
        end_time_unix_nano=now,
    )
    span.attributes.add(key="key-X").value.string_value = "val-XX"
    span.events.add(time_unix_nano=now - 1_000_000, name="ev")
    return _wire(req.SerializeToString())


def _logs_request(now: int) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc-X"
    record = rl.scope_logs.add().log_records.add(
        time_unix_nano=now, severity_number=17, severity_text="ERROR", trace_id=TRACE_ID
    )
    record.body.string_value = "op-XX failed"
    record.attributes.add(key="key-X").value.string_value = "val-XX"
    return _wire(req.SerializeToString())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(Path(tmp_path_factory.mktemp("utf8"))) as app:
        now = time.time_ns()
        for path, body in (("/v1/traces", _trace_request(now)), ("/v1/logs", _logs_request(now))):
            reply = httpx.post(f"{app.otlp}{path}", content=body, headers=PROTOBUF)
            assert reply.status_code == 200, reply.text
        app.drain()
        yield app


def test_other_strings_are_stored_as_sent_and_the_service_name_made_valid(server: InProcess) -> None:
    (row,) = server.backend.query_arrow("SELECT hex(name) AS n, service_name AS s FROM spans").to_pylist()
    assert bytes.fromhex(row["n"]) == b"op-\xc3("
    assert row["s"] == SERVICE  # what the pages group and filter by: a name shown finds its data


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/services",
        "/api/v1/traces?service=" + SERVICE,
        "/api/v1/traces",
        f"/api/v1/traces/{TRACE_ID.hex()}",
        "/api/v1/logs",
        f"/api/v1/red?service={SERVICE}",
        "/api/v1/dependencies",
        "/jaeger/api/services",
        f"/jaeger/api/traces/{TRACE_ID.hex()}",
        "/",
        "/traces",
        f"/traces/{TRACE_ID.hex()}",
        "/logs",
        f"/services/{SERVICE}",
    ],
)
def test_every_read_answers_with_the_replacement_character(server: InProcess, path: str) -> None:
    reply = httpx.get(f"{server.api}{path}", timeout=30)
    assert reply.status_code == 200, reply.text[:500]
    if path != "/api/v1/dependencies":
        assert "\ufffd" in reply.text or "&#xfffd;" in reply.text.lower() or "\\ufffd" in reply.text


def test_the_trace_reads_back_with_each_invalid_sequence_replaced(server: InProcess) -> None:
    trace = httpx.get(f"{server.api}/api/v1/traces/{TRACE_ID.hex()}").json()
    (span,) = trace["spans"]
    assert span["service_name"] == SERVICE
    assert span["name"] == "op-\ufffd("
    assert span["attributes"]["key-\ufffd"] == "val-\ufffd"
    services = httpx.get(f"{server.api}/jaeger/api/services").json()["data"]
    assert SERVICE in services
    found = httpx.get(f"{server.api}/api/v1/traces", params={"service": SERVICE}).json()
    assert [t["trace_id"] for t in found["traces"]] == [TRACE_ID.hex()]
    (log,) = httpx.get(f"{server.api}/api/v1/logs", params={"service": SERVICE}).json()["logs"]
    assert log["body"] == "op-\ufffd( failed"
    assert log["attributes"]["key-\ufffd"] == "val-\ufffd"
