"""The durable queue of one signal: write-ahead log in front, a flusher thread into the store behind.

An export is acknowledged once its record is in the log. The flusher moves records to ClickHouse in
large batches and then checkpoints. Before each batch it records the batch's exact range in the
checkpoint, so that after a crash the same range is written again with the same deduplication token
and the store keeps one copy.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from collector import split
from collector.dedup import RecentRequests, digest
from collector.telemetry import CollectorMetrics
from collector.wal import Record, WalFull, WriteAheadLog, fsync_dir
from store.backend import StoreUnavailable
from store.tenancy import check_tenant

log = logging.getLogger(__name__)


class BatchWriter(Protocol):
    def write(self, signal: str, messages: list[bytes], token: str, tenant: str = "") -> None: ...


# A record of a tenant other than the default one starts with 0x00, the tenant's length and name. An
# OTLP request never starts with 0x00 (field number 0 does not exist), so records written before
# tenants existed read as the default tenant's.
_TENANT_MARK = 0


def frame(payload: bytes, tenant: str) -> bytes:
    """The log record of ``payload`` sent by ``tenant`` (the payload itself for the default tenant)."""
    if not tenant:
        return payload
    name = check_tenant(tenant).encode()
    return bytes((_TENANT_MARK, len(name))) + name + payload


def unframe(record: bytes) -> tuple[str, bytes]:
    """(tenant, payload) of a log record written by ``frame``."""
    if not record or record[0] != _TENANT_MARK:
        return "", record
    end = 2 + record[1]
    return record[2:end].decode(), record[end:]


def by_tenant(records: list[Record]) -> dict[str, list[Record]]:
    """``records`` grouped by tenant, each group in log order (and the groups in order of appearance,
    so a replay cuts a batch into the same statements)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(unframe(record.payload)[0], []).append(record)
    return groups


def tenant_token(token: str, tenant: str) -> str:
    """The deduplication token of ``tenant``'s part of a write (the default tenant's is unchanged)."""
    return f"{token}:tenant={tenant}" if tenant else token


class QueueFull(RuntimeError):
    """The backlog of acknowledged but unflushed data is at its limit; the client should retry later."""


@dataclass(frozen=True)
class QueueLimits:
    max_batch_rows: int = 200_000
    max_batch_delay: float = 1.0
    max_batch_bytes: int = 128 << 20
    #: Acknowledged but not yet stored, while the store takes data: beyond it exports get 429.
    max_queue_bytes: int = 512 << 20
    #: The log's segments on disk (0: no cap): beyond it exports get 503, whatever the store does.
    max_wal_bytes: int = 2 << 30
    #: Free space the log leaves on its filesystem (0: none): below it exports get 503.
    min_free_bytes: int = 0
    segment_bytes: int = 64 << 20
    refusals_before_split: int = 3
    #: parts of a batch written at once, each by its own statements (the store must allow as many)
    parallelism: int = 1
    #: the newest requests remembered so that a client's retry of one is not logged twice
    #: (collector/dedup.py; the server uses dedup.DEFAULT_CAPACITY); 0: none
    dedup_window: int = 0


@dataclass
class Checkpoint:
    """``flushed``: every record before it is in the store.

    ``pending``: the batch being written, as (first seq, last seq, parts it was cut into).
    """

    flushed: int = 0
    pending: tuple[int, int, int] | None = None

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        pending = data.get("pending")
        return cls(int(data["flushed"]), tuple(pending) if pending else None)  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"flushed": self.flushed, "pending": list(self.pending) if self.pending else None}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)


class DurableQueue:
    """Write-ahead log plus flusher for one signal."""

    def __init__(
        self,
        signal: str,
        directory: Path,
        writer: BatchWriter,
        metrics: CollectorMetrics,
        limits: QueueLimits = QueueLimits(),
    ) -> None:
        self.signal = signal
        self.directory = directory
        self.writer = writer
        self.metrics = metrics
        self.limits = limits
        directory.mkdir(parents=True, exist_ok=True)
        self._checkpoint_path = directory / "checkpoint.json"
        self._incarnation = self._load_incarnation()
        self.wal = WriteAheadLog(
            directory / "segments",
            segment_bytes=limits.segment_bytes,
            max_bytes=limits.max_wal_bytes,
            min_free_bytes=limits.min_free_bytes,
        )
        self.checkpoint = Checkpoint.load(self._checkpoint_path)
        self.wal.drop_before(self.checkpoint.flushed)  # the log learns what is stored already
        self._lock = threading.Lock()
        self.pending_rows = 0
        self.pending_bytes = 0
        self._reserved = 0
        self._count_backlog()
        #: digests of the newest records, so that a client's retry is not logged twice (collector/dedup.py)
        self.recent = RecentRequests(limits.dedup_window) if limits.dedup_window else None
        self._remember_logged()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flush-{signal}", daemon=True)
        self._pool = ThreadPoolExecutor(limits.parallelism, thread_name_prefix=f"insert-{signal}")
        self.healthy = True
        metrics.queue_rows.labels(signal).set_function(lambda: self.pending_rows)
        metrics.queue_bytes.labels(signal).set_function(lambda: self.pending_bytes)
        metrics.wal_bytes.labels(signal).set_function(self._wal_size)

    def _load_incarnation(self) -> str:
        # Sequence numbers restart when a log directory is recreated; the store remembers old tokens,
        # so tokens also carry an id of this log's lifetime.
        path = self.directory / "incarnation"
        if not path.exists():
            path.write_text(uuid.uuid4().hex)
        return path.read_text().strip()

    def _count_backlog(self) -> None:
        cursor = self.wal.cursor(self.checkpoint.flushed)
        while batch := cursor.read(1 << 30, 64 << 20):
            self.pending_rows += sum(r.rows for r in batch)
            self.pending_bytes += sum(len(r.payload) for r in batch)

    def _remember_logged(self) -> None:
        # Every record still on disk, flushed or not: an acknowledgement lost in a crash belongs to
        # one of them, and its client's retry must find it.
        segments = self.wal.segments()
        if self.recent is None or not segments:
            return
        cursor = self.wal.cursor(segments[0][0])
        while batch := cursor.read(1 << 30, 64 << 20):
            self.recent.seed(r.payload for r in batch)

    def _wal_size(self) -> int:
        return sum(path.stat().st_size for _, path in self.wal.segments() if path.exists())

    def start(self) -> None:
        self._thread.start()

    # -- producer side ---------------------------------------------------------------------

    def submit(self, payload: bytes, rows: int, tenant: str = "") -> Future[int]:
        """Queue a request of ``tenant`` for the log; raises QueueFull when the backlog is at its limit.

        A request identical to one logged recently (a client's retry) is not logged again: the
        future is that of the earlier write (collector/dedup.py)."""
        payload = frame(payload, tenant)
        if self.recent is None:
            return self._submit(payload, rows)
        key = digest(payload)
        earlier = self.recent.claim(key)
        if earlier is not None:
            self.metrics.duplicates.labels(self.signal).inc()
            return earlier
        try:
            future = self._submit(payload, rows)
        except BaseException as exc:
            self.recent.settle(key, exc)
            raise
        self.recent.settle(key, future)
        return future

    def _submit(self, payload: bytes, rows: int) -> Future[int]:
        size = len(payload)
        with self._lock:
            backlog = self.pending_bytes + self._reserved
            # An empty queue takes any one request, or one larger than the limit could never land.
            # The backlog limit asks clients to slow down for a store that is behind; against a store
            # that takes nothing, slowing down does not help: the log rides the outage out up to its
            # own cap (max_wal_bytes, 503), and the limit applies again while the backlog drains.
            if backlog and backlog + size > self.limits.max_queue_bytes and self.healthy:
                raise QueueFull(f"{self.signal} queue holds {self.pending_bytes} bytes not yet stored")
            self._reserved += size
        try:
            future = self.wal.submit(payload, rows)
        except WalFull as exc:
            with self._lock:
                self._reserved -= size
            # Only a log full to its cap is the store's doing; a full disk is the disk's.
            state = f"; {self._store_state()}" if str(exc).startswith("write-ahead log full") else ""
            raise WalFull(f"{self.signal} {exc}{state}") from None
        except BaseException:
            with self._lock:
                self._reserved -= size
            raise

        def account(done: Future[int]) -> None:
            with self._lock:
                self._reserved -= size
                if done.exception() is None:
                    self.pending_rows += rows
                    self.pending_bytes += size

        future.add_done_callback(account)
        return future

    # -- state -------------------------------------------------------------------------------

    def _store_state(self) -> str:
        return "the store is not taking data" if not self.healthy else "the store is behind"

    def problems(self, store: bool = True) -> list[str]:
        """Why this queue cannot take data now, and with ``store`` also why it cannot store it, for
        /readyz (empty when it can)."""
        out = []
        if store and not self.healthy:
            out.append(
                f"{self.signal} flusher cannot write to the store "
                f"(write-ahead log {self.wal.disk_bytes} of {self.limits.max_wal_bytes or 'unlimited'} bytes)"
            )
        problem = self.wal.problem()
        if problem.startswith("write-ahead log full"):
            out.append(f"{self.signal} {problem}; {self._store_state()}")
        elif problem:
            out.append(f"{self.signal} {problem}")
        return out

    def unflushed_since(self) -> float | None:
        """About when (unix seconds) the oldest acknowledged record not yet in the store was
        acknowledged; None when everything acknowledged is stored."""
        flushed = self.checkpoint.flushed
        if flushed >= self.wal.durable_seq:
            return None
        return self.wal.written_at(flushed) or time.time()

    # -- flusher side ------------------------------------------------------------------------

    def _token(self, first: int, last: int) -> str:
        return f"{self._incarnation}:{self.signal}:{first}-{last}"

    def _run(self) -> None:
        if self.checkpoint.pending:
            first, last, parts = self.checkpoint.pending
            replay = self.wal.cursor(first).read(1 << 62, 1 << 62, stop_before=last + 1)
            if not self._flush(replay, parts):
                return
        cursor = self.wal.cursor(self.checkpoint.flushed)
        batch: list[Record] = []
        rows = size = 0
        deadline = 0.0
        while True:
            stopping = self._stop.is_set()
            got = cursor.read(
                max(1, self.limits.max_batch_rows - rows), max(1, self.limits.max_batch_bytes - size)
            )
            if got:
                if not batch:
                    deadline = time.monotonic() + self.limits.max_batch_delay
                batch += got
                rows += sum(r.rows for r in got)
                size += sum(len(r.payload) for r in got)
            full = rows >= self.limits.max_batch_rows or size >= self.limits.max_batch_bytes
            if batch and (full or stopping or time.monotonic() >= deadline):
                if not self._flush(batch):
                    return
                batch, rows, size = [], 0, 0
                continue
            if stopping and not got:
                return
            wait = deadline - time.monotonic() if batch else 0.5
            self.wal.wait_for(cursor.next_seq, max(0.005, min(wait, 0.5)))

    def _flush(self, batch: list[Record], parts: int | None = None) -> bool:
        """Write ``batch`` into the store and checkpoint; False if the queue was stopped first.

        The batch is cut by position into ``parts`` written at once, each under its own token. The
        cut is recorded before writing, so a replay after a crash cuts it the same way and every
        part, written or not, is either stored now or recognised as stored.
        """
        if not batch:
            return True
        first, last = batch[0].seq, batch[-1].seq
        parts = parts or max(1, min(self.limits.parallelism, len(batch)))
        self.checkpoint = Checkpoint(self.checkpoint.flushed, (first, last, parts))
        self.checkpoint.save(self._checkpoint_path)
        started = time.monotonic()
        size = -(-len(batch) // parts)
        chunks = [batch[i * size : (i + 1) * size] for i in range(parts)]
        tokens = [f"{self._token(first, last)}:{i}/{parts}" for i in range(parts)]
        if parts == 1:
            results = [self._write_part(chunks[0], tokens[0])]
        else:
            results = list(self._pool.map(self._write_part, chunks, tokens))
        if not all(results):
            return False
        rows = sum(r.rows for r in batch)
        elapsed = time.monotonic() - started
        self.metrics.flush_seconds.labels(self.signal).observe(elapsed)
        self.metrics.flush_rows.labels(self.signal).inc(rows)
        log.debug("flushed", extra={"signal": self.signal, "rows": rows, "seconds": round(elapsed, 3)})
        self.checkpoint = Checkpoint(last + 1, None)
        self.checkpoint.save(self._checkpoint_path)
        with self._lock:
            self.pending_rows -= rows
            self.pending_bytes -= sum(len(r.payload) for r in batch)
        self.wal.drop_before(last + 1)
        return True

    def _write_part(self, records: list[Record], token: str) -> bool:
        """Write one part, one statement group per tenant in it; if the engine refuses a group, write
        its requests one by one, and of a refused request every item the engine takes (their tokens
        are deterministic too). False if the queue was stopped first."""
        for tenant, group in by_tenant(records).items():
            payloads = [unframe(r.payload)[1] for r in group]
            outcome = self._write(payloads, tenant_token(token, tenant), tenant)
            if outcome is None:
                return False
            if not outcome:
                for record, payload in zip(group, payloads, strict=True):
                    single_token = tenant_token(self._token(record.seq, record.seq), tenant)
                    single = self._write([payload], single_token, tenant)
                    if single is None or (
                        not single and not self._isolate(record.seq, payload, single_token, tenant)
                    ):
                        return False
        return True

    def _isolate(self, seq: int, payload: bytes, token: str, tenant: str, part: str = "") -> bool:
        """Store what the engine takes of a refused request: write its halves, halve the refused ones
        again, and quarantine the items refused on their own. A replay splits the same way under the
        same tokens, so nothing is stored twice. False if the queue was stopped first."""
        split_in_two = split.halves(self.signal, payload)
        if split_in_two is None:
            self._quarantine(seq, tenant, payload, part)
            return True
        for i, half in enumerate(split_in_two):
            # Refused as a whole several times already: a refusal of a half is its data, not a hiccup.
            written = self._write([half], f"{token}.{i}", tenant, refusals_allowed=1)
            if written is None:
                return False
            if not written and not self._isolate(seq, half, f"{token}.{i}", tenant, f"{part}.{i}"):
                return False
        return True

    def _write(
        self, payloads: list[bytes], token: str, tenant: str, refusals_allowed: int | None = None
    ) -> bool | None:
        """True: written. False: refused by the engine ``refusals_allowed`` times (by default the
        limits'). None: stopped while retrying. ``payloads`` are all ``tenant``'s."""
        delay = 0.1
        refusals = 0
        allowed = refusals_allowed or self.limits.refusals_before_split
        while True:
            try:
                self.writer.write(self.signal, payloads, token, tenant)
                self.healthy = True
                return True
            except (StoreUnavailable, OSError) as exc:
                error = exc
            except (
                Exception
            ) as exc:  # the engine refused: bad data, or a transient limit such as too many parts
                error = exc
                refusals += 1
            self.healthy = False
            self.metrics.flush_errors.labels(self.signal).inc()
            log.error("flush failed, will retry", extra={"signal": self.signal, "error": str(error)[:500]})
            if refusals >= allowed:
                return False
            if self._abort.wait(delay):
                return None
            delay = min(delay * 2, 5.0)

    def _quarantine(self, seq: int, tenant: str, payload: bytes, part: str) -> None:
        """Keep what the store refuses (one item, or a request that cannot be split) out of the way,
        on disk, for a person to look at. ``part`` names the halves that led to it."""
        folder = self.directory / "quarantine"
        folder.mkdir(exist_ok=True)
        (folder / f"{seq:020d}{part}{'.' + tenant if tenant else ''}.pb").write_bytes(payload)
        rows = split.count(self.signal, payload)
        self.metrics.rejected.labels(self.signal, "store_refused").inc(rows)
        log.error(
            "store refused data; kept in quarantine",
            extra={
                "signal": self.signal,
                "seq": seq,
                "part": part,
                "rows": rows,
                "tenant": tenant,
                "folder": str(folder),
            },
        )

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop accepting, flush what is queued for up to ``drain_timeout`` seconds, then stop.

        Whatever is not flushed by then stays in the log and is written at the next start.
        """
        self.wal.close()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(drain_timeout)
            self._abort.set()
            self._thread.join()
        self._pool.shutdown()
