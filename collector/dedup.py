"""Retried exports are logged once: a request identical to one already in the write-ahead log is
acknowledged without being written again.

OTLP has no request ids, and its exporters retry whatever they did not see acknowledged. When the
collector dies (or answers too slowly) after a request is durable but before the client has read
the 200, the retry carries the same bytes again: the OpenTelemetry SDK sends the very same
serialized request on each attempt (HTTP) or serializes the same spans again, which protobuf does
byte for byte (gRPC). Without this the store would hold those spans twice
(bench/crash_loop.py found two duplicated exports in three SIGKILLs before it existed).

Each queue keeps the first 128 bits of the SHA-256 digests of its most recent log records (``capacity`` of them;
a record carries its tenant, so two tenants' identical requests stay apart). At start-up the digests
are read back from the records still on disk, which include every record whose acknowledgement a
crash can have swallowed: a record leaves the disk only once it is in the store and its whole
segment is behind the checkpoint. A retry that arrives while the original is still being written
waits for the same write. A write that fails forgets its digest, so the retry is written.

Identical bytes mean identical items (the same span ids and timestamps): dropping the second copy
loses nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future

#: Digests kept per queue: minutes of requests at hundreds per second, far beyond any exporter's
#: retry window (the SDK gives up after 6 attempts or its timeout, 10 s by default). ~10 MB.
DEFAULT_CAPACITY = 65_536


def digest(record: bytes) -> bytes:
    """The digest identifying a log record (SHA-256 runs at ~1.6 GB/s here, with the CPU's SHA
    instructions: 0.1 ms for a 512-span request; and a collision cannot be made on purpose)."""
    return hashlib.sha256(record).digest()[:16]


class RecentRequests:
    """The digests of the newest log records of one queue, each with the write that made it durable."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        # digest -> the future of its write (resolved once durable), newest last
        self._writes: OrderedDict[bytes, Future[int]] = OrderedDict()
        #: requests found identical to a logged one (not written again)
        self.duplicates = 0

    def claim(self, key: bytes) -> Future[int] | None:
        """The write of an earlier identical record, to wait for instead of writing again; or None,
        and the caller must now write it and report the outcome with ``settle``."""
        with self._lock:
            earlier = self._writes.get(key)
            if earlier is not None:
                self._writes.move_to_end(key)
                self.duplicates += 1
                return earlier
            self._writes[key] = Future()
            while len(self._writes) > self.capacity:
                self._writes.popitem(last=False)
            return None

    def settle(self, key: bytes, write: Future[int] | BaseException) -> None:
        """The outcome of the write ``claim`` asked for: its future, or the exception that kept it
        from being queued (then the digest is forgotten and a retry is written)."""
        with self._lock:
            placeholder = self._writes.get(key)
        if isinstance(write, BaseException):
            self._forget(key, placeholder)
            if placeholder is not None:
                placeholder.set_exception(write)
            return

        def done(result: Future[int]) -> None:
            error = result.exception()
            if error is not None:
                self._forget(key, placeholder)
            if placeholder is not None:
                if error is None:
                    placeholder.set_result(result.result())
                else:
                    placeholder.set_exception(error)

        write.add_done_callback(done)

    def _forget(self, key: bytes, placeholder: Future[int] | None) -> None:
        with self._lock:
            if placeholder is not None and self._writes.get(key) is placeholder:
                del self._writes[key]

    def seed(self, records: Iterable[bytes]) -> None:
        """Remember records already durable in the log (oldest first), as at start-up."""
        with self._lock:
            for record in records:
                written: Future[int] = Future()
                written.set_result(-1)  # durable; no caller needs its sequence number
                key = digest(record)
                self._writes[key] = written
                self._writes.move_to_end(key)
                while len(self._writes) > self.capacity:
                    self._writes.popitem(last=False)

    def __len__(self) -> int:
        return len(self._writes)
