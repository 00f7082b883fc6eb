"""A `sloscope serve` process killed with SIGKILL mid-export loses nothing it acknowledged and stores
nothing twice, also when the real SDK exporter retries through several kills; a retried request is
logged once; a full queue answers 429 with Retry-After.

The long version (20 kills, HTTP and gRPC exporters): bench/crash_loop.py."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from collector.dedup import RecentRequests, digest
from store.embedded import EmbeddedBackend
from tests.conftest import free_port, start_subprocess, wait_until

PROTOBUF = {"Content-Type": "application/x-protobuf"}
SPANS_PER_REQUEST = 50


def _request(batch: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "crash"
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for i in range(SPANS_PER_REQUEST):
        n = batch * SPANS_PER_REQUEST + i + 1
        spans.add(
            trace_id=(batch + 1).to_bytes(16, "big"),
            span_id=n.to_bytes(8, "big"),
            name="op",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 10,
        )
    return req.SerializeToString()


class Exporter(threading.Thread):
    """Exports numbered batches until told to stop or the server goes away; remembers the acks."""

    def __init__(self, url: str, first_batch: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.first_batch = first_batch
        self.acked: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            for batch in range(self.first_batch, self.first_batch + 2000):
                if self.stop.is_set():
                    return
                try:
                    reply = client.post(f"{self.url}/v1/traces", content=_request(batch), headers=PROTOBUF)
                except httpx.TransportError:
                    return
                if reply.status_code == 200:
                    self.acked.append(batch)


def _queued_rows(api: str) -> float:
    text = httpx.get(f"{api}/metrics").text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("sloscope_queue_rows{")
    )


def _stored_batches(data: Path, service: str) -> dict[int, tuple[int, int]]:
    """{batch: (spans stored, distinct span ids)} of ``service`` in a stopped server's store."""
    backend = EmbeddedBackend(data / "store")
    try:
        rows = backend.query_arrow(
            "SELECT intDiv(reinterpretAsUInt64(reverse(span_id)) - 1, {n:UInt64}) AS batch, count() AS spans, "
            "uniqExact(span_id) AS distinct_spans FROM spans WHERE service_name = {service:String} GROUP BY batch",
            {"n": SPANS_PER_REQUEST, "service": service},
        ).to_pylist()
    finally:
        backend.close()
    return {r["batch"]: (r["spans"], r["distinct_spans"]) for r in rows}


def test_sigkill_while_exporting_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_subprocess(data, "--batch-delay", "0.05")
    exporters = [Exporter(server.otlp, n * 10_000) for n in range(3)]
    for exporter in exporters:
        exporter.start()
    deadline = time.monotonic() + 30
    while sum(len(e.acked) for e in exporters) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL: no shutdown code runs
    for exporter in exporters:
        exporter.stop.set()
        exporter.join(10)
    acked = sorted(b for e in exporters for b in e.acked)
    assert len(acked) >= 60

    restarted = start_subprocess(data)
    deadline = time.monotonic() + 60
    while _queued_rows(restarted.api) > 0:
        assert time.monotonic() < deadline, "replay did not finish"
        time.sleep(0.1)
    assert restarted.stop() == 0

    stored = _stored_batches(data, "crash")
    missing = [b for b in acked if b not in stored]
    assert not missing, f"acknowledged batches lost: {missing[:10]}"
    duplicated = {b: v for b, v in stored.items() if v != (SPANS_PER_REQUEST, SPANS_PER_REQUEST)}
    assert not duplicated, f"batches stored more than once or in part: {duplicated}"


def test_full_queue_answers_429_with_retry_after_and_keeps_what_it_took(tmp_path: Path) -> None:
    data = tmp_path / "data"
    body = _request(0)
    # Room for two requests, and a flusher that waits long enough for the queue to stay full.
    server = start_subprocess(data, "--max-queue-bytes", str(len(body) * 2 + 100), "--batch-delay", "30")
    try:
        codes = []
        for batch in range(4):
            reply = httpx.post(f"{server.otlp}/v1/traces", content=_request(batch), headers=PROTOBUF)
            codes.append(reply.status_code)
        assert codes == [200, 200, 429, 429]
        assert reply.headers["Retry-After"] == "1"
        status = status_pb2.Status()
        status.ParseFromString(reply.content)
        assert status.code == 8  # RESOURCE_EXHAUSTED
        assert "retry later" in status.message
        metrics = httpx.get(f"{server.api}/metrics").text
        # A queue without room for the request refuses it before the body is read and decoded
        # (collector/admission.py): counted as requests, not items, since nothing was decoded.
        assert 'sloscope_admission_refused_total{reason="queue_full",signal="traces"} 2.0' in metrics
        assert 'sloscope_items_rejected_total{reason="queue_full"' not in metrics
    finally:
        assert server.stop() == 0  # a clean stop drains the queue into the store
    backend = EmbeddedBackend(data / "store")
    try:
        assert backend.query_arrow("SELECT count() AS n FROM spans").to_pylist() == [
            {"n": 2 * SPANS_PER_REQUEST}
        ]
    finally:
        backend.close()


# -- the real SDK exporter through several kills ---------------------------------------------------


def _sdk_spans(batch: int) -> list[ReadableSpan]:
    """SDK spans numbered as ``_request`` numbers them (batch * 50 + i + 1), of service crash-sdk."""
    resource = Resource({"service.name": "crash-sdk"})
    scope = InstrumentationScope("tests.crash")
    now = time.time_ns()
    return [
        ReadableSpan(
            name="op",
            context=SpanContext(batch + 1, batch * SPANS_PER_REQUEST + i + 1, False, TraceFlags(1)),
            resource=resource,
            attributes={"batch": batch, "i": i},
            kind=SpanKind.INTERNAL,
            start_time=now,
            end_time=now + 10,
            instrumentation_scope=scope,
        )
        for i in range(SPANS_PER_REQUEST)
    ]


class SdkExporter(threading.Thread):
    """The SDK's OTLP/HTTP exporter exporting numbered batches; remembers what it started and what
    export() acknowledged. Its own retries (connection refused, reset) carry it through a kill."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        # Long enough to outlast a restart: backoff 1, 2, 4, 8 s fits in it.
        self.exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=30)
        self.sent: list[int] = []
        self.acked: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        batch = 0
        while not self.stop.is_set():
            self.sent.append(batch)
            if self.exporter.export(_sdk_spans(batch)) is SpanExportResult.SUCCESS:
                self.acked.append(batch)
            batch += 1
        self.exporter.shutdown()


def test_sdk_exporter_through_seeded_sigkills_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()  # every incarnation listens here, so the exporter finds it again
    server = start_subprocess(data, "--batch-delay", "0.05", otlp_port=port)
    exporter = SdkExporter(server.otlp)
    exporter.start()
    rng = random.Random(9)
    kills = 0
    try:
        for _ in range(3):
            # Each incarnation takes some exports, then dies at a seeded moment mid-stream.
            floor = len(exporter.acked) + 5
            wait_until(lambda floor=floor: len(exporter.acked) >= floor, timeout=60)
            time.sleep(rng.uniform(0.0, 0.4))
            server.kill()
            kills += 1
            server = start_subprocess(data, "--batch-delay", "0.05", otlp_port=port)
        floor = len(exporter.acked) + 5
        wait_until(lambda: len(exporter.acked) >= floor, timeout=60)
    finally:
        exporter.stop.set()
        exporter.join(60)
        assert server.stop() == 0  # a clean stop drains the log into the store
    assert kills == 3 and not exporter.is_alive()

    stored = _stored_batches(data, "crash-sdk")
    acked = set(exporter.acked)
    lost = [b for b in acked if stored.get(b, (0, 0))[1] != SPANS_PER_REQUEST]
    assert not lost, f"acknowledged batches lost: {lost[:10]}"
    duplicated = {b: v for b, v in stored.items() if v[0] != v[1]}
    assert not duplicated, f"batches stored more than once: {duplicated}"
    assert set(stored) <= set(exporter.sent)  # unacknowledged ones at most once (checked above)
    assert len(acked) >= 20


def test_a_retry_after_a_lost_answer_is_stored_once(tmp_path: Path) -> None:
    """The answer to an export is lost in a crash after the request was logged; the client sends the
    same bytes again to the restarted server: the store holds it once, and the metric says why."""
    data = tmp_path / "data"
    body = _request(7)
    # A flusher waiting 30 s: the request is in the log, not yet in the store, when the server dies.
    server = start_subprocess(data, "--batch-delay", "30")
    assert httpx.post(f"{server.otlp}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    server.kill()
    server = start_subprocess(data, "--batch-delay", "0.05")
    try:
        for _ in range(2):  # the retry after the crash, and one more while the original is logged
            assert httpx.post(f"{server.otlp}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        metrics = httpx.get(f"{server.api}/metrics").text
        assert 'sloscope_duplicate_requests_total{signal="traces"} 2.0' in metrics
        # A different request is logged as usual.
        assert httpx.post(f"{server.otlp}/v1/traces", content=_request(8), headers=PROTOBUF).status_code == 200
    finally:
        assert server.stop() == 0
    assert _stored_batches(data, "crash") == {
        7: (SPANS_PER_REQUEST, SPANS_PER_REQUEST),
        8: (SPANS_PER_REQUEST, SPANS_PER_REQUEST),
    }


def test_recent_requests_wait_for_the_first_write_and_forget_failed_ones() -> None:
    recent = RecentRequests(capacity=2)
    key = digest(b"request")
    assert recent.claim(key) is None  # the first: the caller writes it
    retry = recent.claim(key)
    assert retry is not None and not retry.done()  # a retry waits for that write
    write: Future[int] = Future()
    recent.settle(key, write)
    write.set_result(41)
    assert retry.result(1) == 41
    # A request that could not even be queued is forgotten: its next attempt is written.
    other = digest(b"other")
    assert recent.claim(other) is None
    recent.settle(other, OSError("disk full"))
    assert recent.claim(other) is None
    # A retry waiting for a write that fails gets the failure, and the request is forgotten.
    waiting = recent.claim(other)
    assert waiting is not None
    failing: Future[int] = Future()
    recent.settle(other, failing)
    failing.set_exception(OSError("I/O error"))
    with pytest.raises(OSError):
        waiting.result(1)
    assert recent.claim(other) is None
    # Only the newest `capacity` are kept; seeded ones (the log's records at start-up) are durable.
    recent.seed([b"old-1", b"old-2"])
    assert len(recent) == 2
    seeded = recent.claim(digest(b"old-2"))
    assert seeded is not None and seeded.done()
    assert recent.claim(key) is None  # pushed out by the seeded ones

