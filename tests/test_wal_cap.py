"""The write-ahead log's disk budget: a size cap and a free-space reserve answered with 503, disk-full
and quota errors that neither kill the writer nor leave a torn or unacknowledged record behind, and
a server whose store is down that acknowledges up to the cap, sheds with 503 and says why on /readyz,
then drains once the store is back, losing nothing it acknowledged.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from collector import decode
from collector.intake import Intake, Unavailable
from collector.queue import DurableQueue, QueueFull, QueueLimits
from collector.telemetry import CollectorMetrics
from collector.wal import WalFull, WriteAheadLog, read_segment, record_bytes
from store.backend import StoreUnavailable
from store.server import ServerBackend
from tests.chshim import ChShim
from tests.conftest import in_process, wait_until
from tests.tcp_proxy import TcpProxy
from tests.test_queue import request

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _payloads(wal: WriteAheadLog) -> list[tuple[int, bytes]]:
    return [(r.seq, r.payload) for r in wal.cursor(0).read(1 << 30, 1 << 30)]


# -- the cap ------------------------------------------------------------------------------------


def test_cap_refuses_before_writing_and_frees_with_the_flushed_segments(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=4096)
    assert wal.segment_bytes == 4096  # an eighth of a small cap would be under the smallest segment
    record = b"r" * 980  # 1000 bytes on disk
    for i in range(4):
        assert wal.append(record, 1) == i
    assert wal.disk_bytes == 4000
    with pytest.raises(WalFull, match=r"^write-ahead log full: 4000 of 4096 bytes$"):
        wal.submit(record, 1)
    assert wal.problem() == "write-ahead log full: 4000 of 4096 bytes"
    assert wal.disk_bytes == 4000 and len(_payloads(wal)) == 4  # nothing of it was written
    # Everything is stored: the log holding nothing unstored takes a record again.
    wal.drop_before(4)
    assert wal.problem() == ""
    assert wal.append(record, 1) == 4
    wal.close()


def test_segments_shrink_under_a_cap_so_drained_space_is_given_back(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=64 << 10)
    assert wal.segment_bytes == 8 << 10
    payload = b"p" * 1004  # 1 KiB records
    n = 0
    with pytest.raises(WalFull):
        while True:
            wal.append(payload, 1)
            n += 1
    assert n == 64 and len(wal.segments()) == 8  # no segment grew past its size
    assert all(p.stat().st_size <= wal.segment_bytes for _, p in wal.segments())
    wal.drop_before(n)  # the store took them all: only the newest segment is left
    assert wal.disk_bytes == wal.segments()[-1][1].stat().st_size <= wal.segment_bytes
    for _ in range(40):
        wal.append(payload, 1)
    wal.close()


def test_an_empty_log_takes_one_record_larger_than_the_cap(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=4096)
    assert wal.append(b"x" * 10_000, 1) == 0
    with pytest.raises(WalFull):
        wal.submit(b"y", 1)
    wal.close()


def test_free_space_reserve_refuses_with_the_numbers(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, min_free_bytes=1 << 60)  # more than any disk has
    with pytest.raises(WalFull, match=r"^write-ahead log's disk nearly full: .* free, 1073741824\.0 GiB"):
        wal.submit(b"z", 1)
    assert "min_free_disk_bytes" in wal.problem()
    wal.min_free_bytes = 1  # as if space had been freed: /readyz must notice without a new record
    assert wal.problem() == ""
    assert wal.append(b"z", 1) == 0
    wal.close()


def test_queue_sheds_with_wal_full_while_the_store_takes_nothing(tmp_path: Path) -> None:
    """The backlog limit (429) asks clients to slow down for a store that is behind; a store that
    takes nothing gets the log's cap (503) instead, and the limit comes back while it drains."""

    class Outage:
        def __init__(self) -> None:
            self.down = True
            self.written: list[bytes] = []

        def write(self, signal: str, messages: list[bytes], token: str, tenant: str = "") -> None:
            if self.down:
                raise StoreUnavailable("connection refused")
            self.written += messages

    store = Outage()
    limits = QueueLimits(max_batch_delay=0.01, max_queue_bytes=3000, max_wal_bytes=8000)
    queue = DurableQueue("traces", tmp_path, store, CollectorMetrics.create(CollectorRegistry()), limits)
    queue.start()
    queue.submit(b"\x0a" + b"a" * 999, 1).result()
    wait_until(lambda: not queue.healthy, timeout=10)
    acked, refused = [], []
    for i in range(20):
        payload = b"\x0a" + bytes([i]) * 999
        try:
            queue.submit(payload, 1).result()
            acked.append(payload)
        except WalFull as exc:
            refused.append(str(exc))
    assert len(acked) == 6  # 7 records of 1020 bytes fit in 8000; past the 3000 of max_queue_bytes
    assert refused[0] == "traces write-ahead log full: 7140 of 8000 bytes; the store is not taking data"
    assert queue.problems() == [
        "traces flusher cannot write to the store (write-ahead log 7140 of 8000 bytes)",
        "traces write-ahead log full: 7140 of 8000 bytes; the store is not taking data",
    ]
    store.down = False
    wait_until(lambda: queue.pending_rows == 0, timeout=20)
    assert queue.problems() == []
    assert store.written[1:] == acked  # every acknowledged record, once, in order
    # Healthy again: a burst past the backlog limit is a 429 before the log could fill.
    queue.stop()
    again = DurableQueue("traces", tmp_path, store, CollectorMetrics.create(CollectorRegistry()), limits)
    futures: list[Future[int]] = []
    with pytest.raises(QueueFull):
        for _ in range(5):
            futures.append(again.submit(b"\x0a" + b"b" * 999, 1))
    assert len(futures) == 3
    again.stop()


def test_settings_check_the_cap_against_the_largest_export() -> None:
    from sloscope import settings

    assert settings.load(environ={}).max_wal_bytes == 2 << 30
    loaded = settings.load(environ={"SLOSCOPE_MAX_WAL_BYTES": "0", "SLOSCOPE_MIN_FREE_DISK_BYTES": "0"})
    assert (loaded.max_wal_bytes, loaded.min_free_disk_bytes) == (0, 0)
    with pytest.raises(settings.SettingsError, match=r"^max_wal_bytes: 1048576 is smaller than max_body_bytes"):
        settings.load({"max_wal_bytes": 1 << 20}, environ={})


# -- disk full and quota at the file level -------------------------------------------------------


def test_torn_write_on_enospc_is_cut_and_never_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = WriteAheadLog(tmp_path)
    assert wal.append(b"before", 1) == 0
    ((_, segment),) = wal.segments()
    good = segment.stat().st_size
    real_write = os.write
    calls = []

    def half_then_enospc(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            real_write(fd, bytes(data[: len(data) // 2]))  # part of the group reaches the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal, "_os_write", half_then_enospc)
    futures = [wal.submit(b"lost-%d" % i * 50, 1) for i in range(3)]
    for future in futures:
        with pytest.raises(OSError) as caught:
            future.result(10)
        assert caught.value.errno == errno.ENOSPC
    assert segment.stat().st_size == good  # the torn part is gone
    assert wal.problem() == "write-ahead log cannot write: [Errno 28] No space left on device"
    monkeypatch.setattr(wal, "_os_write", real_write)
    # Space is back: the writer is alive, numbering goes on where the acknowledged records end,
    # and the probe clears the error even without a record.
    wait_until(lambda: wal.problem() == "", timeout=10)
    assert wal.append(b"after", 1) == 1
    assert _payloads(wal) == [(0, b"before"), (1, b"after")]
    wal.close()
    reopened = WriteAheadLog(tmp_path)
    assert _payloads(reopened) == [(0, b"before"), (1, b"after")]
    assert [r.seq for r, _ in read_segment(segment)] == [0, 1]
    reopened.close()


def test_quota_error_on_fsync_after_rotation_undoes_the_whole_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=300)
    for i in range(2):
        wal.append(bytes([i]) * 100, 1)
    before = [(first, p.stat().st_size) for first, p in wal.segments()]
    real_fsync = os.fsync
    failing = {"n": 0}

    def quota_on_second(fd: int) -> None:
        failing["n"] += 1
        if failing["n"] == 2:  # the first segment was synced, the new one fails
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real_fsync(fd)

    monkeypatch.setattr(wal, "_os_fsync", quota_on_second)
    # One group big enough to rotate into a new segment mid-group.
    futures = [wal.submit(bytes([10 + i]) * 100, 1) for i in range(4)]
    outcomes = []
    for f in futures:
        try:
            outcomes.append(f.result(10))
        except OSError as exc:
            outcomes.append(exc.errno)
    monkeypatch.setattr(wal, "_os_fsync", real_fsync)
    failed = [o for o in outcomes if o == errno.EDQUOT]
    assert failed, outcomes
    # Whatever failed left nothing behind: the log holds exactly the acknowledged records.
    acked = [o for o in outcomes if o != errno.EDQUOT]
    assert [s for s, _ in _payloads(wal)] == [0, 1, *acked]
    assert wal.append(b"next", 1) == 2 + len(acked)
    wal.close()
    reopened = WriteAheadLog(tmp_path)
    assert [s for s, _ in _payloads(reopened)] == list(range(3 + len(acked)))
    reopened.close()
    assert before  # the segments of the first two records were there throughout


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that really fills (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_answers_503_and_the_log_recovers(tiny_disk: Path) -> None:
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(bytes(600 << 10))
    metrics = CollectorMetrics.create(CollectorRegistry())
    # No cap, no reserve: only the filesystem says no.
    limits = QueueLimits(max_wal_bytes=0, segment_bytes=256 << 10)
    queue = DurableQueue("traces", tiny_disk / "wal", _NeverWrites(), metrics, limits)
    intake = Intake({"traces": queue}, metrics)
    request = _request(200)
    decoded = decode.check("traces", decode.parse("traces", request, False), request)
    acked: list[int] = []
    errors: list[str] = []

    async def send(n: int) -> None:
        for _ in range(n):
            try:
                await intake.accept("traces", decoded)
                acked.append(1)
            except Unavailable as exc:
                errors.append(str(exc))

    asyncio.run(send(60))
    assert acked and errors, (len(acked), errors[:1])
    assert errors[0] == "cannot store data durably: [Errno 28] No space left on device"
    assert queue.problems(store=False) == ["traces write-ahead log cannot write: [Errno 28] No space left on device"]
    segments = queue.wal.segments()
    on_disk = sum(p.stat().st_size for _, p in segments)
    assert on_disk == len(acked) * record_bytes(decoded.payload)  # no torn record left behind
    ballast.unlink()  # space is back
    wait_until(lambda: queue.problems(store=False) == [], timeout=10)
    before, refusals = len(acked), len(errors)
    asyncio.run(send(5))
    assert (len(acked), len(errors)) == (before + 5, refusals)
    total = len(acked)
    queue.wal.close()
    reopened = WriteAheadLog(tiny_disk / "wal" / "segments")
    assert len(_payloads(reopened)) == total
    reopened.close()


class _NeverWrites:
    def write(self, signal: str, messages: list[bytes], token: str, tenant: str = "") -> None:
        raise AssertionError("the flusher is not started in this test")


def _request(n: int, first: int = 0, service: str = "capped") -> bytes:
    return request(service, n, first)


# -- a real collector whose store goes away -------------------------------------------------------

CAP = 64 << 10
SPANS = 50  # a request of 50 spans is about 2.4 KiB


def test_collector_acknowledges_up_to_the_cap_then_503_and_drains_when_the_store_returns(
    tmp_path: Path,
) -> None:
    shim = ChShim(tmp_path / "clickhouse")
    shim_url = shim.start()
    proxy = TcpProxy(("127.0.0.1", int(shim_url.rsplit(":", 1)[1]))).start()
    try:
        with in_process(
            tmp_path / "collector",
            role="collector",
            clickhouse_url=f"{proxy.url}/default",
            max_body_bytes=CAP // 4,
            max_wal_bytes=CAP,
        ) as server:
            grpc_port = server.server.settings.otlp_grpc_port
            with httpx.Client(timeout=10) as client:

                def post(first: int) -> httpx.Response:
                    body = _request(SPANS, first)
                    return client.post(f"{server.otlp}/v1/traces", content=body, headers=PROTOBUF)

                assert post(0).status_code == 200
                server.drain()
                proxy.cut("reset")
                queue = server.server.queues["traces"]
                assert post(SPANS).status_code == 200
                wait_until(lambda: not queue.healthy)  # the flusher found the store gone
                # A collector with room in its logs is still ready: it does its job, durably.
                assert client.get(f"{server.api}/readyz").json() == {"ready": True, "problems": []}
                acked, refused, replies = [0, 1], [], []
                for k in range(2, 80):
                    reply = post(k * SPANS)
                    (acked if reply.status_code == 200 else refused).append(k)
                    replies.append(reply)
                assert acked == list(range(len(acked))), "a request was refused before the cap"
                assert len(acked) > 10 and refused
                rejected = next(r for r in replies if r.status_code != 200)
                assert rejected.status_code == 503 and rejected.headers["retry-after"] == "1"
                assert not queue.healthy
                used = queue.wal.disk_bytes
                assert CAP - 3000 < used <= CAP
                message = f"traces write-ahead log full: {used} of {CAP} bytes; the store is not taking data"
                status = _status_message(rejected)
                assert status == f"cannot store data durably: {message}"
                ready = client.get(f"{server.api}/readyz")
                assert ready.status_code == 503 and ready.json()["problems"] == [message]
                # gRPC: UNAVAILABLE with the same message.
                with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                    export = channel.unary_unary(
                        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                        request_serializer=None,
                        response_deserializer=None,
                    )
                    with pytest.raises(grpc.RpcError) as caught:
                        export(_request(SPANS, 10_000), timeout=10)
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert message in caught.value.details()

                proxy.restore()
                server.drain(timeout=60)
                wait_until(lambda: client.get(f"{server.api}/readyz").status_code == 200, timeout=20)
                assert post(100 * SPANS).status_code == 200
                server.drain()
        backend = ServerBackend(f"{shim_url}/default")
        try:
            ids = backend.query_arrow(
                "SELECT reinterpretAsUInt64(reverse(span_id)) AS id FROM spans WHERE service_name = 'capped'"
            ).column("id").to_pylist()
        finally:
            backend.close()
        expected = sorted(
            i + 1 for k in [*acked, 100] for i in range(k * SPANS, (k + 1) * SPANS)
        )
        assert sorted(ids) == expected  # every acknowledged span once; nothing refused was stored
    finally:
        proxy.stop()
        shim.stop()


def _status_message(reply: httpx.Response) -> str:
    from google.rpc import status_pb2

    status = status_pb2.Status()
    status.ParseFromString(reply.content)
    return status.message


def test_readiness_reflects_the_disk_floor_at_once_and_shows_no_path(tmp_path: Path) -> None:
    data_dir = tmp_path / "floor"
    with in_process(data_dir) as server:
        for queue in server.server.queues.values():
            queue.wal.min_free_bytes = 1 << 60  # as if the disk had filled up: more than any disk has
        ready = httpx.get(f"{server.api}/readyz")  # before any export was refused
        assert ready.status_code == 503
        assert "disk nearly full" in ready.text and "min_free_disk_bytes" in ready.text
        refused = httpx.post(
            f"{server.otlp}/v1/traces", content=_request(1), headers={"Content-Type": "application/x-protobuf"}
        )
        assert refused.status_code == 503
        assert "disk nearly full" in refused.text and "store is behind" not in refused.text
        for answer in (ready.text, refused.text, httpx.get(f"{server.api}/readyz").text):
            assert str(tmp_path) not in answer and str(data_dir.resolve()) not in answer
