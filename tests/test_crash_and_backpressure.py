"""A `sloscope serve` process killed with SIGKILL mid-export loses nothing it acknowledged and stores
nothing twice; a full queue answers 429 with Retry-After."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from store.embedded import EmbeddedBackend
from tests.conftest import start_subprocess

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

    backend = EmbeddedBackend(data / "store")
    try:
        rows = backend.query_arrow(
            "SELECT intDiv(reinterpretAsUInt64(reverse(span_id)) - 1, {n:UInt64}) AS batch, count() AS spans, "
            "uniqExact(span_id) AS distinct_spans FROM spans WHERE service_name = 'crash' GROUP BY batch",
            {"n": SPANS_PER_REQUEST},
        ).to_pylist()
    finally:
        backend.close()
    stored = {r["batch"]: (r["spans"], r["distinct_spans"]) for r in rows}
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
        assert 'sloscope_items_rejected_total{reason="queue_full",signal="traces"} 100.0' in metrics
    finally:
        assert server.stop() == 0  # a clean stop drains the queue into the store
    backend = EmbeddedBackend(data / "store")
    try:
        assert backend.query_arrow("SELECT count() AS n FROM spans").to_pylist() == [
            {"n": 2 * SPANS_PER_REQUEST}
        ]
    finally:
        backend.close()
