"""A write-ahead log with group commit.

Records are appended by request handlers and acknowledged only once they are on disk: one writer
thread takes everything queued since its last write, writes it and calls fsync once, so many
concurrent exports share one fsync. The flusher reads records back from the files (recent ones come
from the page cache), which keeps memory bounded however far the store falls behind, and makes
normal operation and crash recovery one code path.

On disk: ``<first seq:020d>.wal`` segments of records ``header | payload`` where the header is
``seq u64, rows u32, length u32, crc32 u32`` (little endian) and the CRC covers seq, rows, length
and payload. A torn record at the end of the newest segment (a crash mid-write) is cut off at open.

Disk budget (docs/reliability/wal-and-outage.md): the segments may take at most ``max_bytes`` and
the filesystem must keep ``min_free_bytes`` free; a record that does not fit is refused with
:class:`WalFull` before anything is written. A write that fails (ENOSPC, EDQUOT, EIO) is undone: the
files are cut back to where the group started, so a torn or unacknowledged record is never read
back, and the log takes records again as soon as the disk does.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<QIII")
#: The smallest segment a size cap may shrink segments to.
_MIN_SEGMENT_BYTES = 4096
#: Bytes a probe writes (and deletes) to find out whether a full disk has room again.
_PROBE_BYTES = 64 << 10
#: Seconds between probes while the last write failed.
_PROBE_INTERVAL_S = 1.0


class WalClosed(RuntimeError):
    """The log no longer accepts records (the server is stopping)."""


class WalFull(OSError):
    """The record does not fit: the log is at its size cap, or its filesystem at its free-space
    reserve. Nothing was written; the client should retry once the store has taken the backlog."""


@dataclass(frozen=True)
class Record:
    seq: int
    rows: int
    payload: bytes


def _crc(seq: int, rows: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QII", seq, rows, len(payload))))


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.wal"


def record_bytes(payload: bytes) -> int:
    """What a record of ``payload`` takes on disk."""
    return _HEADER.size + len(payload)


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


def _size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


@dataclass
class _Pending:
    payload: bytes
    rows: int
    future: Future[int] = field(default_factory=Future)


@dataclass(frozen=True)
class _Undo:
    """Where a group's write started: the segment it appended to and that segment's size then."""

    path: Path
    size: int


class WriteAheadLog:
    """Append-only, segmented, group-committed log of opaque payloads.

    ``max_bytes`` caps the segments' total size (0: no cap) and ``min_free_bytes`` is free space the
    log leaves on its filesystem (0: none kept). With a cap, segments are at most an eighth of it,
    so the flushed part of the newest segment (deleted only with the segment) never holds much.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_bytes: int = 64 << 20,
        max_bytes: int = 0,
        min_free_bytes: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        if max_bytes:
            segment_bytes = min(segment_bytes, max(max_bytes // 8, _MIN_SEGMENT_BYTES))
        self.segment_bytes = segment_bytes
        self._lock = threading.Condition()
        self._queue: list[_Pending] = []
        self._queued_bytes = 0
        self._closed = False
        self._next_seq = self._recover()
        self.durable_seq = self._next_seq  # every record with seq < durable_seq is on disk
        #: Every record before it is stored elsewhere (the last ``drop_before``).
        self._released_seq = 0
        self.appended_bytes = 0
        self.fsyncs = 0
        #: The segments' total size, kept up to date by the writer and ``drop_before``.
        self.disk_bytes = 0
        #: (first seq, unix time): the records from ``seq`` on became durable at about that time (to
        #: a second; for recovered segments, their last write).
        self._marks: list[tuple[int, float]] = []
        for first, path in self.segments():
            stat = path.stat()
            self.disk_bytes += stat.st_size
            self._marks.append((first, stat.st_mtime))
        #: Why the last record was refused (cap or free space); cleared once one is taken or space freed.
        self.full = ""
        self._full_kind = ""
        #: The last failed write; cleared by the next write, or probe, that succeeds.
        self.write_error = ""
        self._undo: _Undo | None = None  # a failed group whose files could not be cut back yet
        self._path, self._fd, self._size = self._open_segment_for_append()
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

    def _open_segment_for_append(self) -> tuple[Path, int, int]:
        segments = self.segments()
        if segments and segments[-1][1].stat().st_size < self.segment_bytes:
            path = segments[-1][1]
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            return path, fd, os.fstat(fd).st_size
        return self._create_segment(self._next_seq)

    def _create_segment(self, first_seq: int) -> tuple[Path, int, int]:
        path = self.directory / _segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return path, fd, os.fstat(fd).st_size

    # -- appending ----------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes available to this process on the log's filesystem."""
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def _low_space(self, free: int) -> str:
        # No path: this text reaches clients and /readyz, which must not reveal the server's layout.
        return (
            f"write-ahead log's disk nearly full: {_size_text(free)} free, "
            f"{_size_text(self.min_free_bytes)} are kept free (min_free_disk_bytes)"
        )

    def submit(self, payload: bytes, rows: int) -> Future[int]:
        """Queue a record; the future resolves to its sequence number once it is on disk.

        Raises :class:`WalFull` if it does not fit within ``max_bytes`` or ``min_free_bytes``. A log
        holding nothing unstored takes any one record, or one larger than the cap could never land.
        """
        pending = _Pending(payload, rows)
        size = record_bytes(payload)
        free = self.free_bytes() if self.min_free_bytes else 0
        with self._lock:
            if self._closed:
                raise WalClosed("write-ahead log is closed")
            used = self.disk_bytes + self._queued_bytes
            # Nothing queued, being written or unstored (``_queued_bytes`` covers a group in flight).
            empty = not self._queued_bytes and self.durable_seq <= self._released_seq
            if self.max_bytes and used + size > self.max_bytes and not empty:
                self.full, self._full_kind = f"write-ahead log full: {used} of {self.max_bytes} bytes", "cap"
                raise WalFull(self.full)
            if self.min_free_bytes and free - self._queued_bytes - size < self.min_free_bytes:
                self.full, self._full_kind = self._low_space(free), "free"
                raise WalFull(self.full)
            self.full = ""
            self._queue.append(pending)
            self._queued_bytes += size
            self._lock.notify_all()
        return pending.future

    def append(self, payload: bytes, rows: int) -> int:
        """Append and wait until durable; return the record's sequence number."""
        return self.submit(payload, rows).result()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    if not self.write_error:
                        self._lock.wait()
                    elif not self._lock.wait(_PROBE_INTERVAL_S) and not self._queue:
                        break  # no record came: find out whether the disk has room again
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue, []
                size = sum(record_bytes(p.payload) for p in batch)
            if not batch:
                self._probe()
                continue
            try:
                seqs = self._write(batch)
            except Exception as exc:  # disk full, quota, I/O error: nothing in this group is acknowledged
                log.error("write-ahead log write failed", extra={"error": str(exc)})
                with self._lock:
                    self._queued_bytes -= size
                    self.write_error = _os_error_text(exc)
                for pending in batch:
                    pending.future.set_exception(exc)
                continue
            with self._lock:
                self._queued_bytes -= size
                self.write_error = ""
            for pending, seq in zip(batch, seqs, strict=True):
                pending.future.set_result(seq)

    # The two system calls a write makes, as attributes so a test can make them fail like a full disk.
    _os_write = staticmethod(os.write)
    _os_fsync = staticmethod(os.fsync)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            done = self._os_write(self._fd, view)
            self._size += done
            view = view[done:]

    def _write(self, batch: list[_Pending]) -> list[int]:
        """Write and fsync ``batch``; on failure cut the files back to where it started and raise."""
        if self._undo is not None:
            self._roll_back(self._undo)  # an earlier failure left bytes behind; raises if still stuck
        undo = _Undo(self._path, self._size)
        seqs: list[int] = []
        try:
            chunks: list[bytes] = []
            pending_bytes = 0
            for pending in batch:
                seq = self._next_seq + len(seqs)
                header = _HEADER.pack(
                    seq, pending.rows, len(pending.payload), _crc(seq, pending.rows, pending.payload)
                )
                size = len(header) + len(pending.payload)
                filled = self._size + pending_bytes
                if filled > 0 and filled + size > self.segment_bytes:
                    # Rotate before the record that would overfill the segment: a segment passes its
                    # size only when one record alone is larger.
                    if chunks:
                        self._write_all(b"".join(chunks))
                        self._os_fsync(self._fd)
                        chunks, pending_bytes = [], 0
                    os.close(self._fd)
                    self._fd = -1
                    self._path, self._fd, self._size = self._create_segment(seq)
                chunks += (header, pending.payload)
                pending_bytes += size
                seqs.append(seq)
            self._write_all(b"".join(chunks))
            self._os_fsync(self._fd)
        except BaseException:
            try:
                self._roll_back(undo)
            except OSError as exc:
                log.error("cannot undo a failed write-ahead log write yet", extra={"error": str(exc)})
                self._undo = undo
            raise
        self.fsyncs += 1
        self._next_seq += len(seqs)
        now = time.time()
        with self._lock:
            self.durable_seq = self._next_seq
            written = sum(record_bytes(p.payload) for p in batch)
            self.appended_bytes += written
            self.disk_bytes += written
            if not self._marks or now - self._marks[-1][1] >= 1.0:
                self._marks.append((seqs[0], now))
            self._lock.notify_all()
        return seqs

    def _roll_back(self, undo: _Undo) -> None:
        """Cut the log back to ``undo``: what a failed group wrote (whole records or a torn one) is
        gone before anything else is written, so it is never read back nor acknowledged."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # Segments after the one the group started in were all created by the group.
        later = [path for first, path in self.segments() if first > int(undo.path.stem)]
        for path in later:
            path.unlink(missing_ok=True)
        if later:
            fsync_dir(self.directory)
        if undo.path.exists():
            fd = os.open(undo.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.ftruncate(fd, undo.size)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._path, self._fd, self._size = undo.path, fd, undo.size
        else:
            # The flusher stored every record of it and deleted it meanwhile: start a fresh segment.
            self._path, self._fd, self._size = self._create_segment(self._next_seq)
        self._undo = None
        with self._lock:
            self.disk_bytes = sum(p.stat().st_size for _, p in self.segments() if p.exists())

    def _probe(self) -> None:
        """After a failed write with nothing to write: does the disk take data again? (Then the
        error is cleared and /readyz stops reporting it.)"""
        path = self.directory / ".probe"
        try:
            if self._undo is not None:
                self._roll_back(self._undo)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(bytes(_PROBE_BYTES))
                while view:
                    view = view[self._os_write(fd, view) :]
                self._os_fsync(fd)
            finally:
                os.close(fd)
                path.unlink(missing_ok=True)
        except OSError as exc:
            with self._lock:
                self.write_error = _os_error_text(exc)
            return
        with self._lock:
            self.write_error = ""

    # -- state --------------------------------------------------------------------------------

    def problem(self) -> str:
        """Why records are refused now ('' when they are not): full, below the free-space floor (at
        once, before any record is refused), or the last write failed."""
        with self._lock:
            free = self.free_bytes() if self.min_free_bytes else 0
            if self.full and self._full_kind == "free":
                # space freed by others (no record may come to find out)
                self.full = "" if free - self.min_free_bytes >= _PROBE_BYTES else self._low_space(free)
            if self.min_free_bytes and not self.full and free < self.min_free_bytes:
                return self._low_space(free)
            if self.full:
                return self.full
            if self.write_error:
                return f"write-ahead log cannot write: {self.write_error}"
        return ""

    def written_at(self, seq: int) -> float | None:
        """About when record ``seq`` became durable (unix seconds, to a second); None if unknown."""
        with self._lock:
            found = None
            for first, at in self._marks:
                if first > seq:
                    break
                found = at
            return found

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
        """Delete segments whose records all precede ``seq`` (they are stored elsewhere now); return
        how many were deleted."""
        segments = self.segments()
        deleted = 0
        freed = 0
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first <= seq:
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
                freed += size
                deleted += 1
        with self._lock:
            self._released_seq = max(self._released_seq, seq)
            self.disk_bytes -= freed
            while len(self._marks) > 1 and self._marks[1][0] <= seq:
                self._marks.pop(0)
            if freed or (self.durable_seq <= self._released_seq and not self._queue):
                self.full = ""  # space was freed, or nothing is left to store: try again
        return deleted

    def close(self) -> None:
        """Stop accepting records, finish the queued ones and close the file."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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


def _os_error_text(exc: OSError) -> str:
    """An OSError without its file name: the text reaches clients and /readyz."""
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else type(exc).__name__
