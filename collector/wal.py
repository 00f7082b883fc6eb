"""A write-ahead log with group commit.

Records are appended by request handlers and acknowledged only once they are on disk: one writer
thread takes everything queued since its last write, writes it and calls fsync once, so many
concurrent exports share one fsync. The flusher reads records back from the files (recent ones come
from the page cache), which keeps memory bounded however far the store falls behind, and makes
normal operation and crash recovery one code path.

On disk: ``<first seq:020d>.wal`` segments of records ``header | payload`` where the header is
``seq u64, rows u32, length u32, crc32 u32`` (little endian) and the CRC covers seq, rows, length
and payload. A torn record at the end of the newest segment (a crash mid-write) is cut off at open.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<QIII")


class WalClosed(RuntimeError):
    """The log no longer accepts records (the server is stopping)."""


@dataclass(frozen=True)
class Record:
    seq: int
    rows: int
    payload: bytes


def _crc(seq: int, rows: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QII", seq, rows, len(payload))))


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.wal"


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a created, renamed or deleted file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_segment(path: Path) -> Iterator[tuple[Record, int]]:
    """Yield each valid record of a segment with the offset just past it; stop at the first bad one."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            seq, rows, length, crc = _HEADER.unpack(header)
            payload = f.read(length)
            if len(payload) < length or _crc(seq, rows, payload) != crc:
                return
            offset += _HEADER.size + length
            yield Record(seq, rows, payload), offset


@dataclass
class _Pending:
    payload: bytes
    rows: int
    future: Future[int] = field(default_factory=Future)


class WriteAheadLog:
    """Append-only, segmented, group-committed log of opaque payloads."""

    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int = 64 << 20) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Condition()
        self._queue: list[_Pending] = []
        self._closed = False
        self._next_seq = self._recover()
        self.durable_seq = self._next_seq  # every record with seq < durable_seq is on disk
        self.appended_bytes = 0
        self.fsyncs = 0
        self._file = self._open_segment_for_append()
        self._thread = threading.Thread(target=self._run, name=f"wal-{self.directory.name}", daemon=True)
        self._thread.start()

    # -- recovery -----------------------------------------------------------------------------

    def segments(self) -> list[tuple[int, Path]]:
        """(first seq, path) of every segment, oldest first."""
        found = []
        for path in self.directory.glob("*.wal"):
            try:
                found.append((int(path.stem), path))
            except ValueError:
                continue
        return sorted(found)

    def _recover(self) -> int:
        segments = self.segments()
        if not segments:
            return 0
        first, last = segments[-1]
        next_seq, good_end = first, 0
        for record, end in read_segment(last):
            next_seq, good_end = record.seq + 1, end
        if last.stat().st_size > good_end:
            log.warning(
                "truncating torn tail of write-ahead log", extra={"segment": last.name, "at": good_end}
            )
            with open(last, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
        return next_seq

    def _open_segment_for_append(self):  # noqa: ANN202 - a binary file object
        segments = self.segments()
        if segments and segments[-1][1].stat().st_size < self.segment_bytes:
            return open(segments[-1][1], "ab")
        path = self.directory / _segment_name(self._next_seq)
        f = open(path, "ab")
        fsync_dir(self.directory)
        return f

    # -- appending ----------------------------------------------------------------------------

    def submit(self, payload: bytes, rows: int) -> Future[int]:
        """Queue a record; the future resolves to its sequence number once it is on disk."""
        pending = _Pending(payload, rows)
        with self._lock:
            if self._closed:
                raise WalClosed("write-ahead log is closed")
            self._queue.append(pending)
            self._lock.notify_all()
        return pending.future

    def append(self, payload: bytes, rows: int) -> int:
        """Append and wait until durable; return the record's sequence number."""
        return self.submit(payload, rows).result()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue, []
            try:
                seqs = self._write(batch)
            except OSError as exc:  # disk full, I/O error: nothing in this group is acknowledged
                log.error("write-ahead log write failed", extra={"error": str(exc)})
                for pending in batch:
                    pending.future.set_exception(exc)
                self._reopen_after_error()
                continue
            for pending, seq in zip(batch, seqs, strict=True):
                pending.future.set_result(seq)

    def _write(self, batch: list[_Pending]) -> list[int]:
        seqs = []
        written = 0
        chunks = []
        for pending in batch:
            seq = self._next_seq + len(seqs)
            header = _HEADER.pack(
                seq, pending.rows, len(pending.payload), _crc(seq, pending.rows, pending.payload)
            )
            chunks += (header, pending.payload)
            written += len(header) + len(pending.payload)
            seqs.append(seq)
        self._file.write(b"".join(chunks))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.fsyncs += 1
        self._next_seq += len(seqs)
        with self._lock:
            self.durable_seq = self._next_seq
            self.appended_bytes += written
            self._lock.notify_all()
        if self._file.tell() >= self.segment_bytes:
            self._file.close()
            self._file = open(self.directory / _segment_name(self._next_seq), "ab")
            fsync_dir(self.directory)
        return seqs

    def _reopen_after_error(self) -> None:
        # A failed write may have left a partial record: cut back to the last durable record.
        try:
            self._file.close()
        except OSError:
            pass
        self._next_seq = self._recover()
        self._file = self._open_segment_for_append()

    # -- reading ------------------------------------------------------------------------------

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until record ``seq`` is durable."""
        with self._lock:
            return self._lock.wait_for(lambda: self.durable_seq > seq or self._closed, timeout) and (
                self.durable_seq > seq
            )

    def cursor(self, start_seq: int) -> WalCursor:
        """A reader positioned at the first record with seq >= ``start_seq``."""
        return WalCursor(self, start_seq)

    def drop_before(self, seq: int) -> int:
        """Delete segments whose records all precede ``seq``; return how many were deleted."""
        segments = self.segments()
        deleted = 0
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first <= seq:
                path.unlink()
                deleted += 1
        return deleted

    def close(self) -> None:
        """Stop accepting records, finish the queued ones and close the file."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()
        self._file.close()


class WalCursor:
    """Reads durable records in order, remembering its file position between reads."""

    def __init__(self, wal: WriteAheadLog, start_seq: int) -> None:
        self.wal = wal
        self.next_seq = start_seq
        self._path: Path | None = None
        self._offset = 0
        self._seek(start_seq)

    def _seek(self, seq: int) -> None:
        # The segment holding ``seq`` is the last one starting at or before it.
        candidates = [(first, path) for first, path in self.wal.segments() if first <= seq]
        if not candidates:
            self._path, self._offset = None, 0
            return
        self._path = candidates[-1][1]
        self._offset = 0
        for record, end in read_segment(self._path):
            if record.seq >= seq:
                break
            self._offset = end

    def read(self, max_rows: int, max_bytes: int, stop_before: int | None = None) -> list[Record]:
        """Durable records from the cursor on, within the row and byte budgets (at least one), and
        before sequence number ``stop_before`` if given."""
        limit = self.wal.durable_seq if stop_before is None else min(self.wal.durable_seq, stop_before)
        records: list[Record] = []
        rows = size = 0
        while self.next_seq < limit:
            if self._path is None or not self._path.exists():
                self._seek(self.next_seq)
                if self._path is None:
                    break
            progressed = False
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                while self.next_seq < limit:
                    header = f.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        break
                    seq, nrows, length, crc = _HEADER.unpack(header)
                    if records and (rows + nrows > max_rows or size + length > max_bytes):
                        return records
                    payload = f.read(length)
                    if len(payload) < length or _crc(seq, nrows, payload) != crc:
                        raise RuntimeError(f"corrupt write-ahead log record at {self._path}:{self._offset}")
                    self._offset += _HEADER.size + length
                    if seq < self.next_seq:
                        continue
                    records.append(Record(seq, nrows, payload))
                    rows += nrows
                    size += length
                    self.next_seq = seq + 1
                    progressed = True
            if self.next_seq < limit and not progressed:
                # End of this segment: the next record starts the following one.
                nxt = self.wal.directory / _segment_name(self.next_seq)
                if not nxt.exists():
                    break
                self._path, self._offset = nxt, 0
        return records
