"""Zipkin v2 receiver: the shared samples and hand-built spans stored as mapped, every bad input's
status and message, gzip and its bomb guard, and back-pressure.

Real parts throughout: chDB, the write-ahead log and flusher, uvicorn on loopback ports.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from collector import zipkin
from collector.intake import Intake
from collector.queue import DurableQueue, QueueLimits
from collector.telemetry import CollectorMetrics
from store import migrations, traces
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter
from tests.conftest import DATA, free_port

SAMPLES = DATA / "zipkin"
SAMPLE_TRACE = "4d1e00c0db9010db86154a4ba6e91385"
LIMIT = 1 << 20  # the receiver's body limit in these tests: small, so the bomb test stays cheap
JSON_HEADERS = {"Content-Type": "application/json"}
NOW_US = time.time_ns() // 1000


@dataclass
class Harness:
    url: str
    full_url: str
    backend: EmbeddedBackend
    queue: DurableQueue
    registry: CollectorRegistry

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything acknowledged is in the store."""
        deadline = time.monotonic() + timeout
        while self.queue.pending_rows:
            if time.monotonic() > deadline:
                raise TimeoutError("queue did not drain")
            time.sleep(0.05)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        self.drain()
        return traces.get_trace(self.backend, trace_id)

    def post(self, spans: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v2/spans", content=json.dumps(spans), headers=JSON_HEADERS, **kwargs
        )

    def rejected(self, reason: str) -> float:
        labels = {"signal": "traces", "reason": reason}
        return self.registry.get_sample_value("sloscope_items_rejected_total", labels) or 0.0


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"zipkin test server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def zipkin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One store for the module (chDB holds one data directory per process at a time)."""
    root = tmp_path_factory.mktemp("zipkin")
    backend = EmbeddedBackend(root / "store")
    queues: list[DurableQueue] = []
    try:
        migrations.migrate(backend)
        migrations.ensure_retention(backend, 7300)  # the shared samples are from 2016
        writer = OtlpWriter(backend, ["correlation.id"])
        registry = CollectorRegistry()
        metrics = CollectorMetrics.create(registry)
        queue = DurableQueue("traces", root / "wal", writer, metrics, QueueLimits(max_batch_delay=0.1))
        queues.append(queue)
        queue.start()
        # A second queue over the same store whose flusher never runs: its backlog only grows.
        full_metrics = CollectorMetrics.create(CollectorRegistry())
        full_queue = DurableQueue(
            "traces", root / "wal-full", writer, full_metrics, QueueLimits(max_queue_bytes=600)
        )
        queues.append(full_queue)
        app = zipkin.create_app(Intake({"traces": queue}, metrics), max_body_bytes=LIMIT)
        full_app = zipkin.create_app(Intake({"traces": full_queue}, full_metrics), retry_after_seconds=7)
        with _serve(app) as url, _serve(full_app) as full_url:
            yield Harness(url, full_url, backend, queue, registry)
    finally:
        for q in queues:
            q.stop()
        backend.close()


def _span(trace_id: str, span_id: str, **fields: Any) -> dict[str, Any]:
    return {"traceId": trace_id, "id": span_id, "name": "op", "timestamp": NOW_US, "duration": 1500, **fields}


def _assert_still_serving(h: Harness) -> None:
    trace_id = f"{time.time_ns():032x}"
    assert h.post([_span(trace_id, "00000000000000a1")]).status_code == 202
    assert [s["span_id"] for s in h.trace(trace_id)] == ["00000000000000a1"]


def test_shared_samples_are_stored_as_mapped(zipkin_server: Harness) -> None:
    h = zipkin_server
    for name in ("sample3.json", "sample4.json"):
        reply = httpx.post(
            f"{h.url}/api/v2/spans", content=(SAMPLES / name).read_bytes(), headers=JSON_HEADERS
        )
        assert reply.status_code == 202, reply.text
        assert reply.content == b""
    spans = h.trace(SAMPLE_TRACE)
    assert len(spans) == 2  # both samples carry the same ids
    by_sample = {("sample3" if "service.peer.name" in s["attributes"] else "sample4"): s for s in spans}
    for span in spans:
        assert span["span_id"] == "4d1e00c0db9010db"
        assert span["parent_span_id"] == "86154a4ba6e91385"
        assert span["name"] == "get"
        assert span["kind"] == "CLIENT"
        assert span["start_time_unix_nano"] == "1472470996199000000"
        assert span["duration_ns"] == 207_000_000
        # no local service name: no service.name on the resource, and the store's fallback
        assert span["service_name"] == "unknown_service"
        assert "service.name" not in span["resource"]["attributes"]
        assert span["events"] == [
            {"time_unix_nano": "1472470996238000000", "name": "foo", "attributes": {}},
            {"time_unix_nano": "1472470996403000000", "name": "bar", "attributes": {}},
        ]
        attrs = span["attributes"]
        assert attrs["http.path"] == "/api"
        assert attrs["clnt/finagle.version"] == "6.45.0"
        assert attrs["network.local.address"] == "7::80:807f"  # the IPv6 endpoint, normalised
        assert attrs["network.peer.address"] == "192.168.99.101"
        assert attrs["network.peer.port"] == 9000  # an int, not the text "9000"
    sample3, sample4 = by_sample["sample3"], by_sample["sample4"]
    assert sample3["attributes"]["service.peer.name"] == "backend"
    assert sample3["status"] == {"code": "ERROR", "message": "Something failed"}
    assert not {"otel.status_code", "otel.status_description", "error"} & set(sample3["attributes"])
    # a free-text error tag: error status, the text as its message, and the tag kept
    assert sample4["status"] == {"code": "ERROR", "message": "Non-basic error message"}
    assert sample4["attributes"]["error"] == "Non-basic error message"


def test_hand_built_spans_cover_kinds_tags_annotations_and_errors(zipkin_server: Harness) -> None:
    h = zipkin_server
    short_trace = "A1B2C3D4E5F60718"  # 64 bits, upper case
    trace_id = "0000000000000000a1b2c3d4e5f60718"
    start = NOW_US - 5_000_000
    payload = [
        _span(
            short_trace,
            "0000000000000001",
            name="GET /checkout",
            kind="SERVER",
            timestamp=start,
            duration=250_000,
            localEndpoint={"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080},
            remoteEndpoint={"ipv6": "::ffff:10.0.0.9", "port": 51234},
            tags={"http.method": "GET", "http.status_code": "200", "correlation.id": "order-77"},
            annotations=[{"timestamp": start + 10, "value": "wr"}, {"timestamp": start + 20, "value": "ws"}],
            debug=True,
        ),
        _span(
            short_trace,
            "0000000000000002",
            parentId="0000000000000001",
            name="reserve",
            kind="CLIENT",
            timestamp=start + 1000,
            localEndpoint={"serviceName": "frontend"},
            remoteEndpoint={"serviceName": "inventory"},
            tags={"error": "true", "otel.library.name": "brave", "otel.library.version": "5.16"},
        ),
        _span(
            short_trace,
            "0000000000000003",
            parentId="0000000000000002",
            name="reserve",
            kind="SERVER",
            shared=True,
            timestamp=start + 2000,
            localEndpoint={"serviceName": "inventory"},
            tags={"otel.status_code": "OK", "retries": 2, "cached": False},
        ),
        _span(short_trace, "0000000000000004", kind="producer", localEndpoint={"serviceName": "inventory"}),
        _span(short_trace, "0000000000000005", kind="CONSUMER", localEndpoint={"serviceName": "billing"}),
        _span(short_trace, "0000000000000006", tags={"span.kind": "internal"}),
        _span(short_trace, "0000000000000007", parentId="0000000000000007"),  # its own parent: a root
    ]
    reply = h.post(payload)
    assert reply.status_code == 202, reply.text
    spans = {s["span_id"][-1]: s for s in h.trace(trace_id)}
    assert sorted(spans) == list("1234567")
    assert all(s["trace_id"] == trace_id for s in spans.values())

    server = spans["1"]
    assert (server["name"], server["kind"], server["service_name"]) == ("GET /checkout", "SERVER", "frontend")
    assert server["resource"]["attributes"] == {"service.name": "frontend"}
    assert server["start_time_unix_nano"] == str(start * 1000)
    assert server["duration_ns"] == 250_000_000
    assert server["parent_span_id"] == ""
    assert server["status"] == {"code": "UNSET", "message": ""}
    assert server["attributes"] == {
        "http.method": "GET",
        "http.status_code": "200",  # tags stay strings
        "correlation.id": "order-77",
        "network.local.address": "10.0.0.1",
        "network.local.port": 8080,
        "network.peer.address": "10.0.0.9",  # IPv4-mapped IPv6 written as IPv4
        "network.peer.port": 51234,
        "zipkin.debug": True,
    }
    assert server["correlation_id"] == "order-77"
    assert [(e["name"], e["time_unix_nano"]) for e in server["events"]] == [
        ("wr", str((start + 10) * 1000)),
        ("ws", str((start + 20) * 1000)),
    ]

    client = spans["2"]
    assert (client["kind"], client["parent_span_id"]) == ("CLIENT", "0000000000000001")
    assert client["status"] == {"code": "ERROR", "message": ""}  # error=true: status only, tag dropped
    assert client["attributes"] == {"service.peer.name": "inventory"}
    assert client["scope"] == {"name": "brave", "version": "5.16", "attributes": {}, "schema_url": ""}

    shared = spans["3"]
    assert (shared["kind"], shared["service_name"]) == ("SERVER", "inventory")
    assert shared["status"]["code"] == "OK"
    assert shared["attributes"] == {"retries": "2", "cached": "false", "zipkin.shared": True}

    assert (spans["4"]["kind"], spans["4"]["service_name"]) == ("PRODUCER", "inventory")
    assert (spans["5"]["kind"], spans["5"]["service_name"]) == ("CONSUMER", "billing")
    assert (spans["6"]["kind"], spans["6"]["service_name"]) == ("INTERNAL", "unknown_service")
    assert spans["6"]["attributes"] == {}
    assert (spans["7"]["kind"], spans["7"]["parent_span_id"]) == ("UNSPECIFIED", "")


def test_spans_are_grouped_by_service_and_scope() -> None:
    request = zipkin.to_request(
        [
            _span("1" * 16, "1" * 16, localEndpoint={"serviceName": "a"}),
            _span("1" * 16, "2" * 16, localEndpoint={"serviceName": "b"}),
            _span("1" * 16, "3" * 16, localEndpoint={"serviceName": "a"}, tags={"otel.scope.name": "lib"}),
            _span("1" * 16, "4" * 16, localEndpoint={"serviceName": "a"}),
        ]
    )
    services = [rs.resource.attributes[0].value.string_value for rs in request.resource_spans]
    assert services == ["a", "b"]
    scopes = [(ss.scope.name, len(ss.spans)) for ss in request.resource_spans[0].scope_spans]
    assert scopes == [("", 2), ("lib", 1)]


def test_a_parent_of_zeros_or_the_span_itself_makes_a_root() -> None:
    # The store renders an empty and an all-zero parent alike, so this is checked on the request.
    request = zipkin.to_request(
        [_span("1" * 32, "2" * 16, parentId=parent) for parent in ("0" * 16, "2" * 16)]
    )
    assert [s.parent_span_id for s in request.resource_spans[0].scope_spans[0].spans] == [b"", b""]


def test_span_without_timestamp_starts_at_the_epoch_and_says_so() -> None:
    span = zipkin.to_request([{"traceId": "1" * 32, "id": "2" * 16, "duration": 7}]).resource_spans[0]
    mapped = span.scope_spans[0].spans[0]
    assert (mapped.start_time_unix_nano, mapped.end_time_unix_nano) == (0, 7000)
    assert [(kv.key, kv.value.bool_value) for kv in mapped.attributes] == [(zipkin.START_ABSENT, True)]


def test_gzip_body_and_missing_content_type_are_accepted(zipkin_server: Harness) -> None:
    h = zipkin_server
    gz_trace, plain_trace = f"{time.time_ns():032x}", f"{time.time_ns() + 1:032x}"
    body = gzip.compress(json.dumps([_span(gz_trace, "00000000000000b1")]).encode())
    reply = httpx.post(
        f"{h.url}/api/v2/spans", content=body, headers={**JSON_HEADERS, "Content-Encoding": "gzip"}
    )
    assert reply.status_code == 202, reply.text
    reply = httpx.post(f"{h.url}/api/v2/spans", content=json.dumps([_span(plain_trace, "00000000000000b2")]))
    assert "content-type" not in reply.request.headers
    assert reply.status_code == 202, reply.text
    assert [s["span_id"] for s in h.trace(gz_trace)] == ["00000000000000b1"]
    assert [s["span_id"] for s in h.trace(plain_trace)] == ["00000000000000b2"]


def test_empty_list_is_accepted(zipkin_server: Harness) -> None:
    assert zipkin_server.post([]).status_code == 202


def test_body_over_the_limit_is_413_before_and_after_decompression(zipkin_server: Harness) -> None:
    h = zipkin_server
    bomb = gzip.compress(b" " * (LIMIT * 8))  # ~8 KB inflating to 8 MiB of JSON whitespace
    assert len(bomb) < LIMIT // 100
    reply = httpx.post(
        f"{h.url}/api/v2/spans", content=bomb, headers={**JSON_HEADERS, "Content-Encoding": "gzip"}
    )
    assert reply.status_code == 413
    assert "decompressed body exceeds the limit" in reply.text
    reply = httpx.post(f"{h.url}/api/v2/spans", content=b" " * (LIMIT + 1), headers=JSON_HEADERS)
    assert reply.status_code == 413
    assert "exceeds the limit" in reply.text
    _assert_still_serving(h)


GOOD_TRACE = "5" * 32
BAD_INPUTS = [
    (b"{not json", {}, 400, "not valid JSON"),
    (b"\xff\xfe\x00", {}, 400, "not valid JSON"),
    (b"", {}, 400, "not valid JSON"),
    (b'{"traceId": "1"}', {}, 400, "must be a JSON list of spans, got an object"),
    (b"[1]", {}, 400, "spans[0] must be an object"),
    (b"[null]", {}, 400, "spans[0] must be an object"),
    ([_span(GOOD_TRACE, "1" * 16), {"id": "1" * 16}], {}, 400, "spans[1].traceId is required"),
    ([_span("zz" * 16, "1" * 16)], {}, 400, "spans[0].traceId is not hexadecimal"),
    ([_span("1" * 20, "1" * 16)], {}, 400, "spans[0].traceId must be 16 or 32 hex digits, got 20"),
    ([_span(GOOD_TRACE, 12)], {}, 400, "spans[0].id must be a hex string"),
    ([_span(GOOD_TRACE, "1" * 15)], {}, 400, "spans[0].id must be 16 hex digits"),
    (
        [_span(GOOD_TRACE, "1" * 16, parentId="12 34567890abcde")],
        {},
        400,
        "spans[0].parentId is not hexadecimal",
    ),
    ([_span(GOOD_TRACE, "1" * 16, timestamp=-1)], {}, 400, "spans[0].timestamp is out of range"),
    ([_span(GOOD_TRACE, "1" * 16, timestamp=1.5)], {}, 400, "spans[0].timestamp must be an integer"),
    ([_span(GOOD_TRACE, "1" * 16, duration="5")], {}, 400, "spans[0].duration must be an integer"),
    ([_span(GOOD_TRACE, "1" * 16, kind="SIDEWAYS")], {}, 400, "spans[0].kind must be one of"),
    ([_span(GOOD_TRACE, "1" * 16, tags=["a"])], {}, 400, "spans[0].tags must be an object"),
    ([_span(GOOD_TRACE, "1" * 16, tags={"a": {"b": 1}})], {}, 400, "spans[0].tags['a'] must be a string"),
    (
        [_span(GOOD_TRACE, "1" * 16, annotations=[{"value": "x"}])],
        {},
        400,
        "annotations[0].timestamp is required",
    ),
    (
        [_span(GOOD_TRACE, "1" * 16, localEndpoint={"ipv4": "300.1.1.1"})],
        {},
        400,
        "spans[0].localEndpoint.ipv4 is not an IPv4 address",
    ),
    (
        [_span(GOOD_TRACE, "1" * 16, remoteEndpoint={"port": 70000})],
        {},
        400,
        "spans[0].remoteEndpoint.port must be an integer from 0 to 65535",
    ),
    ([_span(GOOD_TRACE, "1" * 16, shared="yes")], {}, 400, "spans[0].shared must be true or false"),
    (b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    (b"[]", {"Content-Type": "application/x-protobuf"}, 415, "only Zipkin v2 JSON"),
    (b"[]", {"Content-Type": "application/x-thrift"}, 415, "only Zipkin v2 JSON"),
    (b"[]", {"Content-Encoding": "br"}, 415, "unsupported content encoding 'br'"),
]


@pytest.mark.parametrize("body,headers,status,fragment", BAD_INPUTS)
def test_bad_input_gets_its_status_and_a_message(
    zipkin_server: Harness, body: Any, headers: dict[str, str], status: int, fragment: str
) -> None:
    h = zipkin_server
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = httpx.post(f"{h.url}/api/v2/spans", content=content, headers={**JSON_HEADERS, **headers})
    assert reply.status_code == status, reply.text
    assert fragment in reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    _assert_still_serving(h)


def test_zipkin_v1_is_refused_with_an_explanation(zipkin_server: Harness) -> None:
    reply = httpx.post(f"{zipkin_server.url}/api/v1/spans", content=b"[]", headers=JSON_HEADERS)
    assert reply.status_code == 415
    assert "send Zipkin v2 JSON to /api/v2/spans" in reply.text
    assert httpx.get(f"{zipkin_server.url}/api/v2/spans").status_code == 405


def test_spans_with_invalid_ids_are_counted_and_the_rest_stored(zipkin_server: Harness) -> None:
    h = zipkin_server
    trace_id = f"{time.time_ns():032x}"
    before = h.rejected("invalid")
    payload = [
        _span("0" * 32, "00000000000000c1"),  # all-zero trace id: the shared check drops it
        _span(trace_id, "0" * 16),  # all-zero span id
        _span(trace_id, "00000000000000c3"),
    ]
    reply = h.post(payload)
    assert reply.status_code == 202  # Zipkin has no partial success
    assert h.rejected("invalid") == before + 2
    assert [s["span_id"] for s in h.trace(trace_id)] == ["00000000000000c3"]


def test_full_queue_is_429_with_retry_after(zipkin_server: Harness) -> None:
    h = zipkin_server
    payload = [_span(f"{time.time_ns():032x}", "00000000000000d1", tags={"pad": "x" * 300})]
    first = httpx.post(f"{h.full_url}/api/v2/spans", content=json.dumps(payload), headers=JSON_HEADERS)
    assert first.status_code == 202, first.text  # the backlog grows: the flusher never runs
    second = httpx.post(f"{h.full_url}/api/v2/spans", content=json.dumps(payload), headers=JSON_HEADERS)
    assert second.status_code == 429
    assert second.headers["retry-after"] == "7"
    assert "retry later" in second.text
    _assert_still_serving(h)
