"""Admission control (collector/admission.py): over its memory bound the collector refuses exports
with 429 + Retry-After (OTLP/HTTP, Zipkin) and RESOURCE_EXHAUSTED + RetryInfo (OTLP/gRPC), and the
SDK exporters' retries are stored once the pressure is gone.

The pressure is real: the receivers run in this process, with a bound a little above its resident
memory, and the test allocates (then frees) a ballast of touched pages. The long version, three
times the sustainable load against `sloscope serve`: bench/overload.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import httpx
import pytest
import uvicorn
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from prometheus_client import CollectorRegistry

from collector import otlp_grpc, otlp_http, zipkin
from collector.admission import (
    SHED_AT,
    UNBOUNDED_BATCH_BYTES,
    Admission,
    AdmissionLimits,
    ReadAdmission,
    flush_batch_bytes,
    otlp_refusal,
    read_rss,
    text_refusal,
)
from collector.decode import SIGNALS
from collector.intake import Intake, Overloaded
from collector.queue import DurableQueue, QueueLimits
from collector.telemetry import CollectorMetrics
from sloscope import settings as settings_mod
from store.embedded import EmbeddedBackend
from store.migrations import migrate
from store.otlp_writer import OtlpWriter
from tests.conftest import free_port, wait_until

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#: The bound sheds from this far above the resident memory measured when the harness starts ...
HEADROOM = 192 << 20
#: ... and the ballast takes the process this far past the shedding point.
OVERSHOOT = 160 << 20


# -- the logic, with a scripted RSS ------------------------------------------------------------------


class FakeRss:
    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_memory_bound_sheds_from_its_threshold_and_counts_refusals() -> None:
    rss = FakeRss(800 << 20)
    registry = CollectorRegistry()
    admission = Admission(AdmissionLimits(max_memory_bytes=1000 << 20), registry, rss_reader=rss)
    with admission.admit("traces", 100):
        pass
    rss.value = int((1000 << 20) * SHED_AT)
    admission.sample()
    message = r"850 MiB, over 85% of its bound of 1000 MiB \(max_memory_bytes\); retry later"
    with pytest.raises(Overloaded, match=message):
        with admission.admit("logs", 100):
            pass
    labels = {"signal": "logs", "reason": "memory"}
    assert registry.get_sample_value("sloscope_admission_refused_total", labels) == 1.0
    assert registry.get_sample_value("sloscope_memory_rss_bytes") == rss.value
    assert registry.get_sample_value("sloscope_memory_limit_bytes") == 1000 << 20
    # No bound: never sheds, whatever the RSS.
    unbounded = Admission(AdmissionLimits(max_memory_bytes=0), rss_reader=FakeRss(1 << 40))
    assert not unbounded.shedding
    with unbounded.admit("traces", 1):
        pass


def test_a_full_queue_is_refused_before_decoding() -> None:
    registry = CollectorRegistry()

    def full(signal: str, size: int) -> str | None:
        return "logs queue holds 600 bytes not yet stored" if signal == "logs" and size > 10 else None

    admission = Admission(AdmissionLimits(), registry, rss_reader=FakeRss(0), backlog_full=full)
    with admission.admit("traces", 100), admission.admit("logs", 10):
        pass
    with pytest.raises(Overloaded, match="logs queue holds 600 bytes not yet stored; retry later"):
        with admission.admit("logs", 100):
            pass
    labels = {"signal": "logs", "reason": "queue_full"}
    assert registry.get_sample_value("sloscope_admission_refused_total", labels) == 1.0


def test_inflight_cap_lets_one_request_in_and_releases_on_exit() -> None:
    registry = CollectorRegistry()
    admission = Admission(AdmissionLimits(max_inflight_bytes=1000), registry, rss_reader=FakeRss(0))
    with admission.admit("traces", 5000):  # larger than the cap, but nothing else in flight
        assert registry.get_sample_value("sloscope_admission_inflight_bytes") == 5000
        with pytest.raises(Overloaded, match="max_inflight_bytes"):
            with admission.admit("traces", 1):
                pass
    with admission.admit("traces", 600), admission.admit("traces", 400):
        with pytest.raises(Overloaded):
            with admission.admit("traces", 1):
                pass
    with contextlib.suppress(ValueError), admission.admit("traces", 700):
        raise ValueError("a failed request releases its bytes too")
    assert registry.get_sample_value("sloscope_admission_inflight_bytes") == 0
    labels = {"signal": "traces", "reason": "inflight"}
    assert registry.get_sample_value("sloscope_admission_refused_total", labels) == 2.0


def test_high_memory_asks_the_engine_for_its_free_pages_at_most_once_per_interval() -> None:
    rss = FakeRss(500 << 20)
    released: list[float] = []

    def release() -> None:
        released.append(time.monotonic())
        rss.value = 300 << 20

    limits = AdmissionLimits(max_memory_bytes=1000 << 20, purge_interval=3600)
    admission = Admission(limits, release_memory=release, rss_reader=rss)
    assert admission.sample() == 500 << 20
    admission.close()  # waits for a purge in progress
    assert not released  # under PURGE_AT: nothing to do
    rss.value = 700 << 20
    admission.sample()
    wait_until(lambda: admission.rss == 300 << 20)  # purged in the background, and the RSS read again
    rss.value = 700 << 20
    assert admission.sample() == 700 << 20
    admission.close()
    assert len(released) == 1  # not again within the interval


def test_the_first_purge_does_not_wait_for_the_host_to_have_been_up_an_interval() -> None:
    # A monotonic clock a minute after boot, against an hour's interval: the first high sample purges.
    clock = [60.0]
    rss = FakeRss(700 << 20)
    released: list[float] = []

    def release() -> None:
        released.append(clock[0])
        rss.value = 300 << 20

    limits = AdmissionLimits(max_memory_bytes=1000 << 20, purge_interval=3600)
    admission = Admission(limits, release_memory=release, rss_reader=rss, clock=lambda: clock[0])
    admission.sample()
    admission.close()
    assert released == [60.0]
    rss.value = 700 << 20
    clock[0] = 60.0 + 3599
    admission.sample()
    admission.close()
    assert released == [60.0]  # within the interval: not again
    clock[0] = 60.0 + 3600
    admission.sample()
    admission.close()
    assert released == [60.0, 3660.0]


def test_flush_batches_are_a_share_of_the_room_the_bound_leaves() -> None:
    resting = 345 << 20
    assert flush_batch_bytes(1 << 30, resting) == (int((1 << 30) * SHED_AT) - resting) // 10  # 52.6 MiB
    assert flush_batch_bytes(2 << 30, resting) > 2 * flush_batch_bytes(1 << 30, resting)
    assert flush_batch_bytes(0, resting) == UNBOUNDED_BATCH_BYTES
    assert flush_batch_bytes(64 << 30, resting) == UNBOUNDED_BATCH_BYTES
    assert flush_batch_bytes(256 << 20, resting) == 1 << 20  # no room at all: the smallest batches


class _Receiver:
    """An ASGI app standing for a receiver: reads the body, notes the bytes in flight meanwhile."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.calls: list[tuple[float, float, int]] = []

    def inflight(self) -> float:
        return self.registry.get_sample_value("sloscope_admission_inflight_bytes") or 0.0

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        before = self.inflight()
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.calls.append((before, self.inflight(), len(body)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _post(app, path: str, body: bytes, content_type: str) -> httpx.Response:  # noqa: ANN001
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            return await client.post(path, content=body, headers={"Content-Type": content_type})

    return asyncio.run(post())


def test_http_exports_are_refused_before_their_body_is_read() -> None:
    rss = FakeRss(0)
    registry = CollectorRegistry()
    metrics = CollectorMetrics.create(registry)
    backlog = {"room": 10_000}

    def full(signal: str, size: int) -> str | None:
        return f"{signal} queue holds 9 bytes not yet stored" if size > backlog["room"] else None

    limits = AdmissionLimits(max_memory_bytes=1000 << 20, max_inflight_bytes=1500)
    admission = Admission(limits, registry, rss_reader=rss, backlog_full=full)
    inner = _Receiver(registry)
    otlp = ReadAdmission(inner, admission, otlp_refusal, metrics.requests, "http")
    assert _post(otlp, "/v1/traces", b"x" * 600, "application/x-protobuf").status_code == 200
    # Over the memory bound: 429 with Retry-After, a Status in the request's encoding; the
    # receiver never sees the request.
    rss.value = 900 << 20
    admission.sample()
    reply = _post(otlp, "/v1/traces", b"x" * 600, "application/x-protobuf")
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    status = status_pb2.Status()
    status.ParseFromString(reply.content)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED and "max_memory_bytes" in status.message
    reply = _post(otlp, "/v1/logs", b"{}", "application/json")
    assert reply.status_code == 429 and reply.json()["code"] == code_pb2.RESOURCE_EXHAUSTED
    zipkin_app = ReadAdmission(inner, admission, text_refusal, metrics.requests, "zipkin")
    reply = _post(zipkin_app, "/api/v2/spans", b"[]", "application/json")
    assert reply.status_code == 429 and "max_memory_bytes" in reply.text
    assert len(inner.calls) == 1
    # Other paths and methods pass through untouched.
    assert _post(otlp, "/other", b"", "text/plain").status_code == 200
    # A queue without room for the declared length: refused before the body is read.
    rss.value = 0
    admission.sample()
    backlog["room"] = 500
    reply = _post(otlp, "/v1/traces", b"x" * 600, "application/x-protobuf")
    assert reply.status_code == 429 and "traces queue holds 9 bytes" in _status_message(reply)
    backlog["room"] = 10_000
    # The in-flight cap waits until the body is read (the receiver's Intake applies it): a declared
    # length alone, from a client that may never send it, holds nothing.
    with admission.admit("traces", 1000):
        assert _post(otlp, "/v1/traces", b"x" * 600, "application/x-protobuf").status_code == 200
    assert [call[0] for call in inner.calls] == [0.0, 0.0, 1000.0]
    sample = registry.get_sample_value
    assert (
        sample("sloscope_export_requests_total", {"signal": "traces", "transport": "http", "code": "429"})
        == 2
    )
    assert (
        sample("sloscope_export_requests_total", {"signal": "traces", "transport": "zipkin", "code": "429"})
        == 1
    )
    assert sample("sloscope_admission_inflight_bytes") == 0


def test_a_refused_body_that_never_ends_does_not_hold_the_connection() -> None:
    rss = FakeRss(900 << 20)  # over the bound: every export is refused before its body is read
    registry = CollectorRegistry()
    metrics = CollectorMetrics.create(registry)
    admission = Admission(AdmissionLimits(max_memory_bytes=1000 << 20), registry, rss_reader=rss)
    app = ReadAdmission(
        _Receiver(registry), admission, otlp_refusal, metrics.requests, "http", body_timeout=0.2
    )
    sent: list[dict] = []
    chunks = iter([{"type": "http.request", "body": b"xx", "more_body": True}])

    async def receive() -> dict:
        # Two bytes of a declared thousand, then nothing more, ever.
        return next(chunks, None) or await asyncio.Event().wait()  # type: ignore[return-value]

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/traces",
        "headers": [(b"content-length", b"1000"), (b"content-type", b"application/x-protobuf")],
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=10))
    assert sent[0]["status"] == 429
    assert (b"connection", b"close") in sent[0]["headers"]


def _status_message(reply: httpx.Response) -> str:
    status = status_pb2.Status()
    status.ParseFromString(reply.content)
    return status.message


def test_settings_name_a_memory_bound_too_small_to_run() -> None:
    assert settings_mod.load({}, environ={}).max_memory_bytes == 1 << 30
    assert settings_mod.load({}, environ={"SLOSCOPE_MAX_MEMORY_BYTES": "0"}).max_memory_bytes == 0
    with pytest.raises(settings_mod.SettingsError, match="max_memory_bytes: 1000 is too small"):
        settings_mod.load({"max_memory_bytes": 1000}, environ={})
    with pytest.raises(settings_mod.SettingsError, match="max_inflight_bytes"):
        settings_mod.load({"max_inflight_bytes": -1}, environ={})


# -- real receivers under real memory pressure -------------------------------------------------------


@dataclass
class Harness:
    backend: EmbeddedBackend
    registry: CollectorRegistry
    admission: Admission
    queues: dict[str, DurableQueue]
    otlp: str
    grpc: str
    zipkin: str

    def refused(self, reason: str = "memory") -> float:
        labels = {"signal": "traces", "reason": reason}
        return self.registry.get_sample_value("sloscope_admission_refused_total", labels) or 0.0

    def drain(self) -> None:
        wait_until(lambda: not any(q.pending_rows for q in self.queues.values()), timeout=30)


@contextlib.contextmanager
def _pressure(admission: Admission) -> Iterator[None]:
    """Touched pages taking the process OVERSHOOT past the point where ``admission`` sheds (one
    mapping of its own: freed, it leaves the RSS at once)."""
    shed_at = int(admission.limits.max_memory_bytes * SHED_AT)
    ballast = b"x" * max(OVERSHOOT, shed_at - read_rss() + OVERSHOOT)
    try:
        yield
    finally:
        del ballast


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Store, queues and the three receivers sharing one Admission; module scope because chDB holds
    one data directory per process."""
    tmp = tmp_path_factory.mktemp("admission")
    backend = EmbeddedBackend(tmp / "store")
    migrate(backend)
    registry = CollectorRegistry()
    metrics = CollectorMetrics.create(registry)
    writer = OtlpWriter(backend, ["correlation.id"])
    queues = {
        s: DurableQueue(s, tmp / "wal" / s, writer, metrics, QueueLimits(max_batch_delay=0.1))
        for s in SIGNALS
    }
    for queue in queues.values():
        queue.start()
    # The store is open and has written: what this process holds now is its resting memory.
    bound = int((read_rss() + HEADROOM) / SHED_AT)
    admission = Admission(AdmissionLimits(max_memory_bytes=bound, sample_interval=0.02), registry)
    admission.start()
    intake = Intake(queues, metrics, admission=admission)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="admission-loop", daemon=True)
    thread.start()

    def on_loop(coro):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def start_grpc() -> tuple[grpc.aio.Server, int]:
        server = otlp_grpc.create_server(intake)  # on the loop that runs it
        return server, await otlp_grpc.start(server, "127.0.0.1", 0)

    grpc_server, grpc_port = on_loop(start_grpc())
    servers = []
    urls = []
    # As sloscope/app.py wires them: the HTTP receivers behind the check before their bodies are read.
    requests = metrics.requests
    for app in (
        ReadAdmission(
            otlp_http.create_app(intake, otlp_http.HttpLimits()), admission, otlp_refusal, requests, "http"
        ),
        ReadAdmission(zipkin.create_app(intake), admission, text_refusal, requests, "zipkin"),
    ):
        sock = socket.create_server(("127.0.0.1", free_port()))
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
        asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop)
        servers.append(server)
        urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
    wait_until(lambda: all(s.started for s in servers), timeout=10)
    try:
        yield Harness(backend, registry, admission, queues, urls[0], f"127.0.0.1:{grpc_port}", urls[1])
    finally:
        for server in servers:
            server.should_exit = True
        on_loop(grpc_server.stop(None))
        time.sleep(0.3)  # the uvicorn servers see should_exit
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        admission.close()
        for queue in queues.values():
            queue.stop()
        backend.close()


def _request(service: str, first: int, n: int = 5) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for i in range(first, first + n):
        spans.add(
            trace_id=(1 << 100 | i).to_bytes(16, "big"),
            span_id=i.to_bytes(8, "big"),
            name="op",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
        )
    return request.SerializeToString()


def _grpc_call(address: str, body: bytes) -> grpc.RpcError | bytes:
    with grpc.insecure_channel(address) as channel:
        method = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        try:
            return method(body, timeout=10)
        except grpc.RpcError as exc:
            return exc


def _stored(harness: Harness, service: str) -> int:
    rows = harness.backend.query_arrow(
        "SELECT count() AS n FROM spans WHERE service_name = {s:String}", {"s": service}
    ).to_pylist()
    return rows[0]["n"]


def test_over_the_bound_every_receiver_refuses_with_a_retry_hint(harness: Harness) -> None:
    wait_until(lambda: not harness.admission.shedding)
    before = harness.refused()
    with _pressure(harness.admission):
        wait_until(lambda: harness.admission.shedding)
        reply = httpx.post(f"{harness.otlp}/v1/traces", content=_request("shed", 1), headers=PROTOBUF)
        assert reply.status_code == 429
        assert reply.headers["Retry-After"] == "1"
        status = status_pb2.Status()
        status.ParseFromString(reply.content)
        assert status.code == code_pb2.RESOURCE_EXHAUSTED
        assert "max_memory_bytes" in status.message and "retry later" in status.message

        refusal = _grpc_call(harness.grpc, _request("shed", 10))
        assert isinstance(refusal, grpc.RpcError)
        assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_memory_bytes" in refusal.details()
        trailers = dict(refusal.trailing_metadata())
        retry = error_details_pb2.RetryInfo()
        retry.ParseFromString(trailers[otlp_grpc.RETRY_INFO_KEY])
        assert retry.retry_delay.seconds == 1

        spans = [
            {"traceId": "a" * 32, "id": "b" * 16, "name": "op", "localEndpoint": {"serviceName": "shed"}}
        ]
        reply = httpx.post(f"{harness.zipkin}/api/v2/spans", json=spans)
        assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
        assert "max_memory_bytes" in reply.text
        assert harness.refused() == before + 3
    # The pressure gone, the same requests are taken.
    wait_until(lambda: not harness.admission.shedding)
    assert (
        httpx.post(f"{harness.otlp}/v1/traces", content=_request("shed", 1), headers=PROTOBUF).status_code
        == 200
    )
    assert isinstance(_grpc_call(harness.grpc, _request("shed", 10)), bytes)
    harness.drain()
    assert _stored(harness, "shed") == 10


def _sdk_spans(service: str, first: int, n: int = 20) -> list[ReadableSpan]:
    resource = Resource({"service.name": service})
    scope = InstrumentationScope("tests.admission")
    now = time.time_ns()
    return [
        ReadableSpan(
            name="op",
            context=SpanContext(1 << 90 | i, i, False, TraceFlags(1)),
            resource=resource,
            kind=SpanKind.INTERNAL,
            start_time=now,
            end_time=now + 1,
            instrumentation_scope=scope,
        )
        for i in range(first, first + n)
    ]


def test_sdk_exporters_are_refused_then_stored_once_the_pressure_is_gone(harness: Harness) -> None:
    wait_until(lambda: not harness.admission.shedding)
    http_exporter = HttpSpanExporter(endpoint=f"{harness.otlp}/v1/traces", timeout=30)
    grpc_exporter = GrpcSpanExporter(endpoint=harness.grpc, insecure=True, timeout=30)
    before = harness.refused()
    with ThreadPoolExecutor(2) as pool:
        with _pressure(harness.admission):
            wait_until(lambda: harness.admission.shedding)
            results = [
                pool.submit(http_exporter.export, _sdk_spans("sdk-shed", 1000)),
                pool.submit(grpc_exporter.export, _sdk_spans("sdk-shed", 2000)),
            ]
            # Both exporters were refused at least once; they wait the hinted second and retry.
            wait_until(lambda: harness.refused() >= before + 2)
            assert not any(r.done() for r in results)
        assert [r.result(60) for r in results] == [SpanExportResult.SUCCESS] * 2
    http_exporter.shutdown()
    grpc_exporter.shutdown()
    harness.drain()
    assert _stored(harness, "sdk-shed") == 40
