"""OTLP/gRPC receiver: the real SDK's gRPC exporters end to end, and every refusal's status and trailers.

The harness is built here from its parts (store, queues, intake) so that tests can give the receiver
small limits, full queues and closed logs; the gRPC servers run on their own event loop thread.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from collector import otlp_grpc
from collector.decode import SIGNALS
from collector.intake import Intake
from collector.queue import DurableQueue, QueueLimits
from collector.telemetry import CollectorMetrics
from store import traces
from store.embedded import EmbeddedBackend
from store.migrations import migrate
from store.otlp_writer import OtlpWriter
from tests.conftest import wait_until
from tests.otel_scenarios import (
    check_logs,
    check_metrics,
    check_trace,
    send_logs,
    send_metrics,
    send_trace,
)

T = TypeVar("T")

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PATHS = {
    "traces": TRACES,
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
SMALL_LIMIT = 64 << 10
OVERLOAD_RETRY_SECONDS = 3  # not the SDK's own first backoff (0.8-1.2 s), so its use is visible


def _spans_request(
    service: str, n: int, attribute_bytes: int = 0, first_id: int = 1
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for i in range(first_id, first_id + n):
        span = spans.add(
            trace_id=now.to_bytes(16, "big")[:-4] + i.to_bytes(4, "big"),
            span_id=i.to_bytes(8, "big"),
            name=f"{service}-{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
        if attribute_bytes:
            span.attributes.add(key="padding").value.string_value = "x" * attribute_bytes
    return request


@dataclass
class Harness:
    backend: EmbeddedBackend
    registry: CollectorRegistry
    queues: dict[str, DurableQueue]
    loop: asyncio.AbstractEventLoop
    port: int  #: default limits
    small_port: int  #: max message size SMALL_LIMIT
    overload_port: int  #: traces queue full until its flusher starts
    overload_queue: DurableQueue
    overload_filler: bytes  #: the request that fills the overload queue
    unavailable_port: int  #: every log closed

    def on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything acknowledged has been written into the store."""
        deadline = time.monotonic() + timeout
        while any(q.pending_rows for q in [*self.queues.values(), self.overload_queue]):
            assert time.monotonic() < deadline, "queues did not drain"
            time.sleep(0.05)

    def rows(self, sql: str, params: dict | None = None) -> list[dict]:
        return self.backend.query_arrow(sql, params).to_pylist()

    def requests(self, signal: str, code: str) -> float:
        labels = {"signal": signal, "transport": "grpc", "code": code}
        return self.registry.get_sample_value("sloscope_export_requests_total", labels) or 0.0


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Store, queues and four receivers; module scope because chDB holds one data directory per process."""
    tmp = tmp_path_factory.mktemp("grpc")
    backend = EmbeddedBackend(tmp / "store")
    queues: list[DurableQueue] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True)
    thread.start()
    servers: list[grpc.aio.Server] = []

    def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    def queue(signal: str, directory: Path, **limits: Any) -> DurableQueue:
        q = DurableQueue(signal, directory, writer, metrics, QueueLimits(max_batch_delay=0.1, **limits))
        queues.append(q)
        return q

    async def serve(intake: Intake, **options: Any) -> int:
        server = otlp_grpc.create_server(intake, **options)  # on the loop that runs it
        servers.append(server)
        return await otlp_grpc.start(server, "127.0.0.1", 0)

    try:
        migrate(backend)
        writer = OtlpWriter(backend, ["correlation.id"])
        registry = CollectorRegistry()
        metrics = CollectorMetrics.create(registry)
        main = {s: queue(s, tmp / "wal" / s) for s in SIGNALS}
        for q in main.values():
            q.start()
        intake = Intake(main, metrics)

        filler = _spans_request("overload-filler", 5, attribute_bytes=400).SerializeToString()
        # Room for the filler and not one byte more; its flusher starts only in the overload test.
        overload_queue = queue("traces", tmp / "overload", max_queue_bytes=len(filler))
        overload = Intake({**main, "traces": overload_queue}, metrics)

        closed = {s: queue(s, tmp / "closed" / s) for s in SIGNALS}
        for q in closed.values():
            q.wal.close()
        unavailable = Intake(closed, metrics)

        yield Harness(
            backend=backend,
            registry=registry,
            queues=main,
            loop=loop,
            port=on_loop(serve(intake)),
            small_port=on_loop(serve(intake, max_message_bytes=SMALL_LIMIT)),
            overload_port=on_loop(serve(overload, retry_after_seconds=OVERLOAD_RETRY_SECONDS)),
            overload_queue=overload_queue,
            overload_filler=filler,
            unavailable_port=on_loop(serve(unavailable)),
        )
    finally:
        for server in servers:
            on_loop(server.stop(None))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        for q in queues:
            q.stop()
        backend.close()


def _call(port: int, path: str, body: bytes, compression: grpc.Compression | None = None) -> bytes:
    """One unary call with raw bytes both ways (no client-side (de)serialisation)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        return method(body, timeout=20, compression=compression)


def _refusal(port: int, path: str, body: bytes, compression: grpc.Compression | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(port, path, body, compression)
    return info.value


def _stored_span_counts(harness: Harness, service: str) -> dict[str, int]:
    rows = harness.rows(
        "SELECT lower(hex(span_id)) AS sid, count() AS n FROM spans "
        "WHERE service_name = {s:String} GROUP BY sid",
        {"s": service},
    )
    return {row["sid"]: row["n"] for row in rows}


# -- the real SDK ---------------------------------------------------------------------------------


def _endpoint(port: int) -> str:
    return f"127.0.0.1:{port}"


def test_sdk_traces_round_trip_every_field(harness: Harness) -> None:
    ok_before = harness.requests("traces", "OK")
    exporter = OTLPSpanExporter(endpoint=_endpoint(harness.port), insecure=True)
    sent = send_trace(exporter, "grpc-roundtrip", "correlation.id")
    # SimpleSpanProcessor exports each span on its own; all five were acknowledged.
    assert harness.requests("traces", "OK") - ok_before == 5
    harness.drain()
    check_trace(traces.get_trace(harness.backend, sent.trace_id), sent, "grpc-roundtrip")


def test_sdk_logs_round_trip(harness: Harness) -> None:
    exporter = OTLPLogExporter(endpoint=_endpoint(harness.port), insecure=True)
    trace_id, span_id = send_logs(exporter, "grpc-roundtrip")
    harness.drain()
    check_logs(harness.rows, "grpc-roundtrip", trace_id, span_id)


def test_sdk_metrics_round_trip_all_point_kinds(harness: Harness) -> None:
    ok_before = harness.requests("metrics", "OK")
    send_metrics(OTLPMetricExporter(endpoint=_endpoint(harness.port), insecure=True), "grpc-roundtrip")
    assert harness.requests("metrics", "OK") - ok_before == 1
    harness.drain()
    check_metrics(harness.rows, "grpc-roundtrip")


def _finished_spans(service: str, n: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("grpc.test")
    for i in range(n):
        with tracer.start_as_current_span(f"{service}-{i}", attributes={"i": i}):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_sdk_gzip_export_lands(harness: Harness) -> None:
    spans = _finished_spans("grpc-gzip", 20)
    exporter = OTLPSpanExporter(
        endpoint=_endpoint(harness.port), insecure=True, compression=grpc.Compression.Gzip
    )
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    harness.drain()
    assert _stored_span_counts(harness, "grpc-gzip") == {format(s.context.span_id, "016x"): 1 for s in spans}


# -- sizes and compression --------------------------------------------------------------------------


def test_request_over_grpc_default_4mib_is_accepted(harness: Harness) -> None:
    """The default limit is 16 MiB, not grpc's 4 MiB; large bodies are decoded off the event loop."""
    request = _spans_request("grpc-large", 5000, attribute_bytes=1000)
    body = request.SerializeToString()
    assert 4 << 20 < len(body) < 16 << 20
    reply = ExportTraceServiceResponse.FromString(_call(harness.port, TRACES, body))
    assert not reply.HasField("partial_success")
    harness.drain()
    counts = _stored_span_counts(harness, "grpc-large")
    assert len(counts) == 5000 and set(counts.values()) == {1}


def test_oversized_message_is_resource_exhausted_naming_the_limit(harness: Harness) -> None:
    body = _spans_request("grpc-oversized", 1, attribute_bytes=SMALL_LIMIT).SerializeToString()
    error = _refusal(harness.small_port, TRACES, body)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # grpc's own wording (Go's grpc says the same): the size received and the limit.
    assert error.details() == f"SERVER: Received message larger than max ({len(body)} vs. {SMALL_LIMIT})"
    # The server keeps serving.
    small = _spans_request("grpc-after-oversized", 2).SerializeToString()
    assert ExportTraceServiceResponse.FromString(_call(harness.small_port, TRACES, small)) == (
        ExportTraceServiceResponse()
    )


def test_gzip_that_inflates_past_the_limit_is_resource_exhausted(harness: Harness) -> None:
    body = _spans_request("grpc-gzip-bomb", 1, attribute_bytes=4 * SMALL_LIMIT).SerializeToString()
    compressed = gzip.compress(body)
    assert len(compressed) < SMALL_LIMIT < len(body)
    before = harness.requests("traces", "RESOURCE_EXHAUSTED")
    # Sent as a message compressed by the channel, and as an application that gzips itself would.
    for payload, compression in ((body, grpc.Compression.Gzip), (compressed, None)):
        error = _refusal(harness.small_port, TRACES, payload, compression)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == (
            f"request exceeds the maximum message size of {SMALL_LIMIT} bytes after gzip decompression"
        )
        assert otlp_grpc.RETRY_INFO_KEY not in dict(error.trailing_metadata())  # retrying cannot help
    assert harness.requests("traces", "RESOURCE_EXHAUSTED") - before == 2
    fits = _spans_request("grpc-gzip-fits", 3, attribute_bytes=SMALL_LIMIT // 8).SerializeToString()
    _call(harness.small_port, TRACES, fits, grpc.Compression.Gzip)
    harness.drain()
    assert len(_stored_span_counts(harness, "grpc-gzip-fits")) == 3


def test_broken_gzip_and_deflate_are_refused(harness: Harness) -> None:
    error = _refusal(harness.port, TRACES, b"\x1f\x8b\x08\x00garbage")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("request is not valid gzip")
    truncated = gzip.compress(_spans_request("grpc-truncated", 2).SerializeToString())[:-12]
    error = _refusal(harness.port, TRACES, truncated)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "request is not valid gzip: truncated stream",
    )
    body = _spans_request("grpc-deflate", 2).SerializeToString()
    error = _refusal(harness.port, TRACES, body, grpc.Compression.Deflate)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "deflate" in error.details()


# -- refusals and partial success -------------------------------------------------------------------


def _status_details(error: grpc.RpcError) -> status_pb2.Status:
    return status_pb2.Status.FromString(dict(error.trailing_metadata())[otlp_grpc.STATUS_DETAILS_KEY])


@pytest.mark.parametrize("signal", SIGNALS)
def test_malformed_bytes_are_invalid_argument(harness: Harness, signal: str) -> None:
    before = harness.requests(signal, "INVALID_ARGUMENT")
    error = _refusal(harness.port, PATHS[signal], b"\x0a\xff\xff\xff\xff not protobuf")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"invalid OTLP protobuf {signal} request: ")
    status = _status_details(error)
    assert (status.code, status.message) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], error.details())
    assert harness.requests(signal, "INVALID_ARGUMENT") - before == 1


def test_invalid_span_is_reported_in_partial_success(harness: Harness) -> None:
    request = _spans_request("grpc-partial", 3)
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = bytes(range(1, 9))
    reply = ExportTraceServiceResponse.FromString(_call(harness.port, TRACES, request.SerializeToString()))
    assert reply.partial_success.rejected_spans == 1
    assert reply.partial_success.error_message == (
        "1 of 3 spans rejected; first: resource_spans[0].scope_spans[0].spans[1]: "
        "trace_id must be 16 bytes, got 8"
    )
    harness.drain()
    valid = [s.span_id.hex() for i, s in enumerate(request.resource_spans[0].scope_spans[0].spans) if i != 1]
    assert _stored_span_counts(harness, "grpc-partial") == {sid: 1 for sid in valid}


def _retry_delay(error: grpc.RpcError) -> tuple[float, float]:
    """The retry delay as the Python exporter reads it, and as a google.rpc.Status detail says it."""
    raw = dict(error.trailing_metadata())[otlp_grpc.RETRY_INFO_KEY]
    exporter_view = error_details_pb2.RetryInfo.FromString(raw).retry_delay.ToTimedelta().total_seconds()
    status = _status_details(error)
    assert (status.code, status.message) == (error.code().value[0], error.details())
    [detail] = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return exporter_view, info.retry_delay.ToTimedelta().total_seconds()


def test_full_queue_is_resource_exhausted_with_retry_info_and_the_sdk_retries(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    queue = harness.overload_queue
    _call(harness.overload_port, TRACES, harness.overload_filler)  # fills the queue to its limit
    refused = _spans_request("grpc-refused", 1).SerializeToString()
    error = _refusal(harness.overload_port, TRACES, refused)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        error.details()
        == f"traces queue holds {len(harness.overload_filler)} bytes not yet stored; retry later"
    )
    assert _retry_delay(error) == (OVERLOAD_RETRY_SECONDS, OVERLOAD_RETRY_SECONDS)

    # The real exporter meets the full queue, waits as told and succeeds once the queue drains.
    spans = _finished_spans("grpc-overload-sdk", 3)
    # Alone, the exporter's request fits in the queue: it is refused only while the filler is queued.
    assert len(encode_spans(spans).SerializeToString()) <= queue.limits.max_queue_bytes
    exporter = OTLPSpanExporter(endpoint=_endpoint(harness.overload_port), insecure=True)
    refusals = harness.requests("traces", "RESOURCE_EXHAUSTED")
    outcome: list[SpanExportResult] = []
    started = time.monotonic()
    sender = threading.Thread(target=lambda: outcome.append(exporter.export(spans)))
    with caplog.at_level(logging.WARNING, logger="opentelemetry.exporter.otlp.proto.grpc.exporter"):
        sender.start()
        wait_until(lambda: harness.requests("traces", "RESOURCE_EXHAUSTED") > refusals, timeout=10)
        queue.start()
        sender.join(20)
    exporter.shutdown()
    assert outcome == [SpanExportResult.SUCCESS]
    assert harness.requests("traces", "RESOURCE_EXHAUSTED") - refusals == 1
    assert time.monotonic() - started >= OVERLOAD_RETRY_SECONDS - 0.1
    assert f"retrying in {OVERLOAD_RETRY_SECONDS:.2f}s" in caplog.text  # the delay it read from us
    harness.drain()
    assert _stored_span_counts(harness, "grpc-overload-sdk") == {
        format(s.context.span_id, "016x"): 1 for s in spans
    }
    filler = ExportTraceServiceRequest.FromString(harness.overload_filler)
    assert _stored_span_counts(harness, "overload-filler") == {
        s.span_id.hex(): 1 for s in filler.resource_spans[0].scope_spans[0].spans
    }
    assert _stored_span_counts(harness, "grpc-refused") == {}


def test_closed_log_is_unavailable_with_retry_info(harness: Harness) -> None:
    before = harness.requests("logs", "UNAVAILABLE")
    body = _spans_request("grpc-unavailable", 1).SerializeToString()
    error = _refusal(harness.unavailable_port, TRACES, body)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith("cannot store data durably: ")
    assert _retry_delay(error) == (1, 1)
    # An empty request has nothing to store, so it is answered even now.
    assert _call(harness.unavailable_port, PATHS["logs"], b"") == b""
    assert harness.requests("logs", "UNAVAILABLE") == before


# -- binding ----------------------------------------------------------------------------------------


def _start_on(harness: Harness, port: int) -> None:
    async def attempt() -> None:
        server = otlp_grpc.create_server(Intake(harness.queues, CollectorMetrics.create(CollectorRegistry())))
        try:
            await otlp_grpc.start(server, "127.0.0.1", port)
        finally:
            await server.stop(None)

    harness.on_loop(attempt())


def test_start_names_an_address_it_cannot_bind(harness: Harness) -> None:
    # Another gRPC server on the port (a second sloscope): grpc's default SO_REUSEPORT would let
    # both listen and split the connections between them.
    port = harness.port
    with pytest.raises(OSError, match=rf"^cannot listen for OTLP/gRPC on 127\.0\.0\.1:{port}: .*in use"):
        _start_on(harness, port)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"^cannot listen for OTLP/gRPC on 127\.0\.0\.1:{port}: .*in use"):
            _start_on(harness, port)
    # The first server still answers.
    assert _call(harness.port, PATHS["metrics"], b"") == b""
