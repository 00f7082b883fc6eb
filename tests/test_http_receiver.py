"""OTLP/HTTP receiver: JSON payloads, every bad input's status and message, partial success."""

from __future__ import annotations

import gzip
import json
import time

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import DATA

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
FIXTURES = DATA / "otlp"


def _spans(n: int, service: str, bad_ids: dict[int, tuple[bytes, bytes]] | None = None) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for i in range(n):
        tid, sid = (bad_ids or {}).get(
            i, (now.to_bytes(16, "big")[:-2] + i.to_bytes(2, "big"), (i + 1).to_bytes(8, "big"))
        )
        spans.add(
            trace_id=tid,
            span_id=sid,
            name=f"{service}-{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
        )
    return req.SerializeToString()


def _assert_still_serving(otlp: str) -> None:
    reply = httpx.post(f"{otlp}/v1/traces", content=_spans(2, "alive"), headers=PROTOBUF)
    assert reply.status_code == 200


def _status(reply: httpx.Response) -> status_pb2.Status:
    status = status_pb2.Status()
    if reply.headers["content-type"].startswith("application/json"):
        body = reply.json()
        status.code, status.message = body.get("code", 0), body["message"]
    else:
        status.ParseFromString(reply.content)
    return status


@pytest.mark.parametrize(
    "name,signal,table",
    [
        ("trace.json", "traces", "spans"),
        ("logs.json", "logs", "logs"),
        ("events.json", "logs", "logs"),
        ("metrics.json", "metrics", None),
    ],
)
def test_shared_otlp_json_examples_are_stored(sloscope, name: str, signal: str, table: str | None) -> None:  # noqa: ANN001
    payload = json.loads((FIXTURES / name).read_text())
    _shift_times_to_now(payload)  # the examples are dated 2018; retention would drop them at once
    reply = httpx.post(f"{sloscope.otlp}/v1/{signal}", content=json.dumps(payload), headers=JSON)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {}
    sloscope.drain()
    if name == "trace.json":
        span = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        rows = sloscope.rows(
            "SELECT name, lower(hex(span_id)) AS sid, service_name, kind, attributes "
            "FROM spans WHERE trace_id = unhex({t:String})",
            {"t": span["traceId"].lower()},
        )
        assert [(r["name"], r["sid"]) for r in rows] == [(span["name"], span["spanId"].lower())]
        assert rows[0]["service_name"] == "my.service" and rows[0]["kind"] == "SERVER"
        assert dict(rows[0]["attributes"])["my.span.attr"] == "some value"
    elif table == "logs":
        records = [r for rl in payload["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
        for record in records:
            body = record["body"]
            stored = sloscope.rows(
                "SELECT body, severity_text, event_name FROM logs WHERE severity_text = "
                "{s:String} AND event_name = {e:String}",
                {"s": record.get("severityText", ""), "e": record.get("eventName", "")},
            )
            assert stored, record
            if "stringValue" in body:
                assert body["stringValue"] in {r["body"] for r in stored}
    else:
        for kind, table_name in [
            ("gauge", "metrics_gauge"),
            ("sum", "metrics_sum"),
            ("histogram", "metrics_histogram"),
            ("exponentialHistogram", "metrics_exponential_histogram"),
        ]:
            names = [
                m["name"]
                for rm in payload["resourceMetrics"]
                for sm in rm["scopeMetrics"]
                for m in sm["metrics"]
                if kind in m
            ]
            assert names, kind
            stored = {
                r["metric_name"] for r in sloscope.rows(f"SELECT DISTINCT metric_name FROM {table_name}")
            }
            assert set(names) <= stored, (kind, names, stored)


def _shift_times_to_now(node: object, now: int | None = None) -> None:
    now = now or time.time_ns()
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("UnixNano") and value not in (0, "0"):
                node[key] = str(now - 1_000_000_000 + int(value) % 1_000_000_000)
            else:
                _shift_times_to_now(value, now)
    elif isinstance(node, list):
        for item in node:
            _shift_times_to_now(item, now)


def test_partial_success_names_the_invalid_span(sloscope) -> None:  # noqa: ANN001
    body = _spans(4, "partial", bad_ids={1: (b"\x01" * 8, b"\x02" * 8), 3: (b"\x01" * 16, b"")})
    reply = httpx.post(f"{sloscope.otlp}/v1/traces", content=body, headers=PROTOBUF)
    assert reply.status_code == 200
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(reply.content)
    assert answer.partial_success.rejected_spans == 2
    assert "spans[1]: trace_id must be 16 bytes, got 8" in answer.partial_success.error_message
    sloscope.drain()
    names = {r["name"] for r in sloscope.rows("SELECT name FROM spans WHERE service_name = 'partial'")}
    assert names == {"partial-0", "partial-2"}
    text = httpx.get(f"{sloscope.api}/metrics").text
    assert 'sloscope_items_rejected_total{reason="invalid",signal="traces"} 2.0' in text


def test_partial_success_in_json(sloscope) -> None:  # noqa: ANN001
    payload = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0102030405060708090a0b0c0d0e0f10",
                                "spanId": "0102030405060708",
                                "name": "ok",
                                "startTimeUnixNano": str(time.time_ns()),
                                "endTimeUnixNano": str(time.time_ns()),
                            },
                            {
                                "traceId": "00000000000000000000000000000000",
                                "spanId": "0102030405060708",
                                "name": "zero",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    reply = httpx.post(f"{sloscope.otlp}/v1/traces", json=payload)
    assert reply.status_code == 200
    assert reply.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "all zeros" in reply.json()["partialSuccess"]["errorMessage"]


@pytest.mark.parametrize(
    "body,headers,status,fragment",
    [
        (b"\xff\xff\xff\x7f garbage", PROTOBUF, 400, "invalid OTLP protobuf traces request"),
        (b"{not json", JSON, 400, "invalid OTLP/JSON traces request"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON, 400, "traceId"),
        (b"[1, 2]", JSON, 400, "invalid OTLP/JSON"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "unsupported content type 'text/plain'"),
        (b"hello", {}, 415, "unsupported content type"),
        (b"\x1f\x8b\x08\x00garbage", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (b"abc", {**PROTOBUF, "Content-Encoding": "br"}, 415, "unsupported content encoding 'br'"),
    ],
)
def test_bad_input_gets_its_status_and_a_message(sloscope, body, headers, status, fragment) -> None:  # noqa: ANN001
    reply = httpx.post(f"{sloscope.otlp}/v1/traces", content=body, headers=headers)
    assert reply.status_code == status
    assert fragment in _status(reply).message
    _assert_still_serving(sloscope.otlp)


def test_body_over_the_limit_is_413_before_and_after_decompression(sloscope) -> None:  # noqa: ANN001
    limit = sloscope.server.settings.max_body_bytes
    big = b"\x00" * (limit + 1)
    reply = httpx.post(f"{sloscope.otlp}/v1/traces", content=big, headers=PROTOBUF)
    assert reply.status_code == 413 and "exceeds the limit" in _status(reply).message
    bomb = gzip.compress(b"\x00" * (limit * 4))  # ~65 KB that would inflate to 64 MiB
    assert len(bomb) < limit // 100
    reply = httpx.post(
        f"{sloscope.otlp}/v1/traces", content=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert reply.status_code == 413 and "decompressed body exceeds" in _status(reply).message
    _assert_still_serving(sloscope.otlp)


def test_wrong_method_and_unknown_signal(sloscope) -> None:  # noqa: ANN001
    assert httpx.get(f"{sloscope.otlp}/v1/traces").status_code == 405
    assert httpx.post(f"{sloscope.otlp}/v1/profiles", content=b"", headers=PROTOBUF).status_code == 404


def test_empty_request_is_accepted(sloscope) -> None:  # noqa: ANN001
    reply = httpx.post(f"{sloscope.otlp}/v1/logs", content=b"", headers=PROTOBUF)
    assert reply.status_code == 200 and reply.content == b""


def test_api_trace_lookup_errors(sloscope) -> None:  # noqa: ANN001
    assert httpx.get(f"{sloscope.api}/api/v1/traces/not-hex").status_code == 400
    missing = httpx.get(f"{sloscope.api}/api/v1/traces/{'ab' * 16}")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    assert httpx.get(f"{sloscope.api}/healthz").text == "ok\n"
    assert httpx.get(f"{sloscope.api}/api").json()["endpoints"]["trace"] == "/api/v1/traces/{trace_id}"
    assert httpx.get(f"{sloscope.api}/readyz").json() == {"ready": True, "problems": []}
