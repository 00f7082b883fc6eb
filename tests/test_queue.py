"""The durable queue against the real engine: replay without duplicates, refused data, backpressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from collector.queue import DurableQueue, QueueFull, QueueLimits, frame, tenant_token, unframe
from collector.telemetry import CollectorMetrics
from store import migrations
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    b = EmbeddedBackend(tmp_path_factory.mktemp("queue-store"))
    migrations.migrate(b)
    yield b
    b.close()


def request(service: str, n: int, first: int, pad: int = 0) -> bytes:
    """``n`` spans of ``service`` with ids from ``first``, each with a ``pad``-byte attribute if any."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for i in range(first, first + n):
        spans.add(
            trace_id=(i + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"op{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
        if pad:
            spans[-1].attributes.add(key="pad").value.string_value = "x" * pad
    return req.SerializeToString()


def count(backend: EmbeddedBackend, service: str) -> tuple[int, int]:
    row = backend.query_arrow(
        "SELECT count() AS n, uniqExact(span_id) AS u FROM spans WHERE service_name = {s:String}",
        {"s": service},
    ).to_pylist()[0]
    return row["n"], row["u"]


def metrics() -> CollectorMetrics:
    return CollectorMetrics.create(CollectorRegistry())


def wait_drained(queue: DurableQueue, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while queue.pending_rows:
        assert time.monotonic() < deadline, "queue did not drain"
        time.sleep(0.02)


class DiesAfterInsert:
    """Writes for real, then never returns: a process killed between the insert and the checkpoint."""

    def __init__(self, writer: OtlpWriter) -> None:
        self.writer = writer
        self.inserted = threading.Event()
        self.release = threading.Event()

    def write(self, signal: str, messages: list[bytes], token: str, tenant: str = "") -> None:
        self.writer.write(signal, messages, token, tenant)
        self.inserted.set()
        self.release.wait()
        raise RuntimeError("this process is gone")


def test_replay_after_crash_between_insert_and_checkpoint_stores_once(backend, tmp_path: Path) -> None:  # noqa: ANN001
    writer = OtlpWriter(backend, [])
    dying = DiesAfterInsert(writer)
    # Written in two parts at once; restarted with another setting, the replay must cut it the same way.
    first = DurableQueue(
        "traces", tmp_path, dying, metrics(), QueueLimits(max_batch_delay=0.05, parallelism=2)
    )
    first.start()
    for i in range(5):
        first.submit(request("replay", 10, i * 10), 10).result()
    assert dying.inserted.wait(10)
    assert count(backend, "replay")[0] > 0  # the rows are in, the checkpoint is not
    assert first.checkpoint.pending is not None and first.checkpoint.pending[2] == 2

    second = DurableQueue("traces", tmp_path, writer, metrics(), QueueLimits(max_batch_delay=0.05))
    assert second.pending_rows == 50
    second.start()
    wait_drained(second)
    assert count(backend, "replay") == (50, 50)
    second.stop()
    first._abort.set()
    dying.release.set()


def test_request_the_engine_refuses_is_quarantined_and_the_rest_stored(backend, tmp_path: Path) -> None:  # noqa: ANN001
    # Two parts: the refused request is in the second; the first part must not be written twice.
    queue = DurableQueue(
        "traces",
        tmp_path,
        OtlpWriter(backend, []),
        metrics(),
        QueueLimits(max_batch_delay=0.2, refusals_before_split=1, parallelism=2),
    )
    good = [queue.submit(request("poison", 5, i * 5), 5) for i in range(3)]
    bad = queue.submit(b"\x0a\xff\xff\xff\xff\x0fnot protobuf", 1)  # passes no decoder, as if bypassed
    for future in (*good, bad):
        future.result()
    queue.start()
    wait_drained(queue)
    assert count(backend, "poison") == (15, 15)
    quarantined = list((tmp_path / "quarantine").iterdir())
    assert [p.read_bytes() for p in quarantined] == [b"\x0a\xff\xff\xff\xff\x0fnot protobuf"]
    queue.stop()


def test_full_queue_refuses_instead_of_growing(backend, tmp_path: Path) -> None:  # noqa: ANN001
    payload = request("full", 20, 0)
    queue = DurableQueue(
        "traces", tmp_path, OtlpWriter(backend, []), metrics(), QueueLimits(max_queue_bytes=len(payload) * 2)
    )
    queue.submit(payload, 20).result()
    queue.submit(payload, 20).result()
    with pytest.raises(QueueFull):
        queue.submit(payload, 20)
    assert queue.pending_bytes == len(payload) * 2
    queue.start()  # once the flusher catches up there is room again
    wait_drained(queue)
    queue.submit(request("full", 20, 100), 20).result()
    wait_drained(queue)
    assert count(backend, "full") == (60, 40)  # the same payload twice is two exports of the same spans
    queue.stop()


def test_backlog_left_at_stop_is_written_at_next_start(backend, tmp_path: Path) -> None:  # noqa: ANN001
    writer = OtlpWriter(backend, [])
    queue = DurableQueue("traces", tmp_path, writer, metrics())
    for i in range(4):
        queue.submit(request("backlog", 3, i * 3), 3).result()
    queue.wal.close()  # stopped before the flusher ever ran
    again = DurableQueue("traces", tmp_path, writer, metrics(), QueueLimits(max_batch_delay=0.05))
    assert (again.pending_rows, again.checkpoint.flushed) == (12, 0)
    again.start()
    wait_drained(again)
    assert count(backend, "backlog") == (12, 12)
    assert again.checkpoint.flushed == 4
    again.stop()


def test_tenants_ride_the_log_and_land_in_their_rows_once(backend, tmp_path: Path) -> None:  # noqa: ANN001
    """Requests of three tenants interleaved in one batch: each row carries its request's tenant, and
    a tenant's part written again under its token adds nothing."""
    queue = DurableQueue(
        "traces", tmp_path, OtlpWriter(backend, []), metrics(), QueueLimits(max_batch_delay=0.05)
    )
    queue.start()
    for i, tenant in enumerate(["", "acme", "globex", "acme", ""]):
        queue.submit(request("tenants", 3, i * 3), 3, tenant=tenant).result()
    wait_drained(queue)
    queue.stop()
    sql = "SELECT tenant, count() AS n FROM spans WHERE service_name = 'tenants' GROUP BY tenant ORDER BY tenant"
    expected = {"tenant": ["", "acme", "globex"], "n": [6, 6, 3]}
    assert backend.query_arrow(sql).to_pydict() == expected

    writer = OtlpWriter(backend, [])
    for _ in range(2):  # a replay after a crash writes the same tenant's part under the same token
        writer.write("traces", [request("tenants-replay", 2, 0)], tenant_token("t:0-4:0/1", "acme"), "acme")
    sql = "SELECT tenant, count() AS n FROM spans WHERE service_name = 'tenants-replay' GROUP BY tenant"
    assert backend.query_arrow(sql).to_pydict() == {"tenant": ["acme"], "n": [2]}


def test_a_record_frames_its_tenant_and_old_records_read_as_the_default_tenant() -> None:
    plain = request("frame", 1, 0)
    assert frame(plain, "") == plain and unframe(plain) == ("", plain)
    assert unframe(frame(plain, "acme")) == ("acme", plain)
    with pytest.raises(ValueError, match="not a tenant name"):
        frame(plain, "no spaces")


def _poisoned(service: str, n: int, bad: int) -> bytes:
    """``n`` spans, span ``bad`` with an attribute whose value has the wrong wire type: its string
    field (1) arrives as a varint. Only the engine, decoding the values, finds it."""
    req = ExportTraceServiceRequest.FromString(request(service, n, 0))
    for i, span in enumerate(req.resource_spans[0].scope_spans[0].spans):
        span.attributes.add(key="k").value.string_value = "POISON" if i == bad else "fine"
    wire = req.SerializeToString()
    good_value = b"\x0a\x06POISON"  # AnyValue{string_value: "POISON"}
    assert wire.count(good_value) == 1
    return wire.replace(good_value, b"\x08\x05\x08\x05\x08\x05\x08\x05")  # same length, varints


def test_of_a_refused_request_every_item_the_engine_takes_is_stored(backend, tmp_path: Path) -> None:  # noqa: ANN001
    registry = CollectorRegistry()
    queue = DurableQueue(
        "traces",
        tmp_path,
        OtlpWriter(backend, []),
        CollectorMetrics.create(registry),
        QueueLimits(max_batch_delay=0.2, refusals_before_split=1),
    )
    queue.submit(_poisoned("half-poisoned", 7, bad=4), 7).result()
    queue.start()
    wait_drained(queue)
    assert count(backend, "half-poisoned") == (6, 6)
    (quarantined,) = (tmp_path / "quarantine").iterdir()
    kept = ExportTraceServiceRequest.FromString(
        quarantined.read_bytes().replace(b"\x08\x05" * 4, b"\x0a\x06POISON")
    )
    assert [s.name for s in kept.resource_spans[0].scope_spans[0].spans] == ["op4"]
    refused = registry.get_sample_value(
        "sloscope_items_rejected_total", {"signal": "traces", "reason": "store_refused"}
    )
    assert refused == 1
    queue.stop()

    # A replay of the same record (a crash before the checkpoint) splits it the same way: nothing twice.
    again = DurableQueue(
        "traces",
        tmp_path / "again",
        OtlpWriter(backend, []),
        metrics(),
        QueueLimits(max_batch_delay=0.2, refusals_before_split=1),
    )
    again._token = queue._token  # the same incarnation's tokens, as after a restart of this log
    again.submit(_poisoned("half-poisoned", 7, bad=4), 7).result()
    again.start()
    wait_drained(again)
    assert count(backend, "half-poisoned") == (6, 6)
    again.stop()


def test_a_batch_read_in_several_input_blocks_is_stored_once_when_written_again(backend: EmbeddedBackend) -> None:
    """The engine decodes a statement's requests in blocks of INPUT_BLOCK_BYTES; a replay of the same
    batch under the same token still adds nothing, in spans and in the RED roll-up."""
    from store.sql.ingest import INPUT_BLOCK_BYTES

    batch = [request("blocks", 2000, i * 2000, pad=400) for i in range(20)]
    assert sum(map(len, batch)) > 3 * INPUT_BLOCK_BYTES
    writer = OtlpWriter(backend, [])
    for _ in range(2):
        writer.write("traces", batch, "blocks:0-19:0/1")
    assert count(backend, "blocks") == (40_000, 40_000)
    red = "SELECT sum(requests) AS n FROM red_1m WHERE service_name = 'blocks'"
    assert backend.query_arrow(red).to_pylist() == [{"n": 40_000}]  # root spans are requests
    writer.write("traces", batch, "blocks:20-39:0/1")  # another batch of the same requests counts again
    assert count(backend, "blocks") == (80_000, 40_000)
