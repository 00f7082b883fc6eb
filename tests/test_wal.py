"""The write-ahead log: group commit, torn tails, segments."""

from __future__ import annotations

import threading
from pathlib import Path

from collector.wal import WriteAheadLog, read_segment


def test_group_commit_shares_fsyncs_between_concurrent_appends(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    seqs: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(25):
            seq = wal.append(f"{n}-{i}".encode(), 1)
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    assert sorted(seqs) == list(range(200))
    assert wal.fsyncs < 200, "every append paid its own fsync"
    records = wal.cursor(0).read(1000, 1 << 20)
    assert [r.seq for r in records] == list(range(200))
    assert {r.payload for r in records} == {f"{n}-{i}".encode() for n in range(8) for i in range(25)}


def test_torn_tail_is_cut_and_numbering_continues(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for i in range(3):
        wal.append(b"x" * 100 + bytes([i]), 2)
    wal.close()
    ((_, segment),) = wal.segments()
    good_size = segment.stat().st_size
    with open(segment, "ab") as f:  # a crash in the middle of writing a record
        f.write(b"\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\xff\x00\x00\x00partial")
    reopened = WriteAheadLog(tmp_path)
    assert segment.stat().st_size == good_size
    assert reopened.append(b"after", 1) == 3
    reopened.close()
    assert [r.payload[-1:] for r, _ in read_segment(segment)][:3] == [b"\x00", b"\x01", b"\x02"]
    assert [r.seq for r in reopened.cursor(0).read(100, 1 << 20)] == [0, 1, 2, 3]


def test_corrupt_record_is_not_returned(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append(b"first", 1)
    wal.append(b"second", 1)
    wal.close()
    ((_, segment),) = wal.segments()
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # flip a bit in the last payload: its CRC no longer matches
    segment.write_bytes(bytes(data))
    reopened = WriteAheadLog(tmp_path)
    assert [r.payload for r in reopened.cursor(0).read(10, 1 << 20)] == [b"first"]
    reopened.close()


def test_segments_rotate_are_read_across_and_dropped(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=300)
    for i in range(20):
        wal.append(bytes([i]) * 100, 1)
    assert len(wal.segments()) > 3
    cursor = wal.cursor(5)
    first = cursor.read(4, 1 << 20)
    rest = cursor.read(1000, 1 << 20)
    assert [r.seq for r in first] == [5, 6, 7, 8]
    assert [r.seq for r in rest] == list(range(9, 20))
    assert cursor.read(10, 1 << 20) == []
    assert [r.seq for r in wal.cursor(5).read(100, 1 << 20, stop_before=8)] == [5, 6, 7]
    wal.append(b"late", 1)
    assert [r.payload for r in cursor.read(10, 1 << 20)] == [b"late"]
    deleted = wal.drop_before(15)
    assert deleted > 0
    assert min(first for first, _ in wal.segments()) <= 15
    assert [r.seq for r in wal.cursor(15).read(100, 1 << 20)] == list(range(15, 21))
    wal.close()


def test_byte_budget_limits_a_read_but_never_to_nothing(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for _ in range(3):
        wal.append(b"y" * 1000, 10)
    assert len(wal.cursor(0).read(1000, 10)) == 1
    assert len(wal.cursor(0).read(15, 1 << 20)) == 1
    assert len(wal.cursor(0).read(20, 1 << 20)) == 2
    wal.close()
