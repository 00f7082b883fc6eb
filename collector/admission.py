"""Admission control: exports are refused (429 / RESOURCE_EXHAUSTED, retry later) before the process
runs out of memory, instead of taking everything offered until the kernel kills it.

Two limits, checked when a request is decoded and again when it is handed to the write-ahead log
(``Intake.decode`` and ``Intake.accept``, so every receiver has them); the HTTP receivers also check
the memory bound before the body is read (``ReadAdmission``):

* ``max_memory_bytes``: the resident memory (RSS) of the whole process. The embedded ClickHouse
  engine runs in this process and counts in it: at rest a server holds ~340 MiB, and each flush
  of a batch into the engine briefly adds a few hundred MiB more (docs/reliability/overload.md).
  New exports are refused from ``SHED_AT`` of the bound on, which leaves room for the flush in
  progress; the flusher itself is never stopped, because draining the backlog is what makes room.
* ``max_inflight_bytes``: request bytes being decoded or made durable at the same moment. It bounds
  what a burst of large requests holds between two samples of the RSS. One request is always let
  in when none is in flight, so a request larger than the cap cannot starve.

A third check refuses early what would be refused anyway: a signal whose queue has no room for the
request within ``max_queue_bytes`` (``backlog_full``, the queue's own limit) is answered 429 before the body is
decoded or, over HTTP, read; under overload most refusals are of this kind, and each then costs the
collector a fraction of a decode.

The RSS is read from ``/proc/self/statm`` by a monitor thread every ``sample_interval`` seconds,
so a request costs one comparison, never a system call. Above ``PURGE_AT`` of the bound the monitor
asks the engine's allocator to hand its freed pages back to the kernel (``release_memory``, at
most once per ``purge_interval``): after a flush, jemalloc keeps a few hundred MiB of freed memory
for seconds, which would otherwise count against the bound and shed exports for nothing.

Shedding is normal operation under load, not a fault: it does not make ``/readyz`` fail (a load
balancer would then move the load to the other collectors and overload them in turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.intake import Overloaded

log = logging.getLogger(__name__)

#: New exports are refused once the RSS reaches this fraction of ``max_memory_bytes``.
SHED_AT = 0.85
#: The engine's allocator is asked to release freed memory once the RSS passes this fraction.
PURGE_AT = 0.6

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: The flusher's batch is this fraction of the room the bound leaves (see ``flush_batch_bytes``).
BATCH_SHARE = 10
#: The flusher's batch cap without a memory bound (collector/queue.py's QueueLimits default).
UNBOUNDED_BATCH_BYTES = 128 << 20


def flush_batch_bytes(max_memory_bytes: int, resting_bytes: int) -> int:
    """The largest batch (bytes of requests) the flusher may hand the engine at once, for a process
    holding ``resting_bytes`` before any load.

    Refusing exports cannot bound the flusher: at three times the sustainable load the backlog
    never empties, so every batch is a full one. Writing a batch makes the embedded engine hold
    ~1.3-1.5 KB per span for the moment of the insert (column buffers, the views), ~4.5 times the
    span's protobuf size, now that it decodes requests in 4 MiB blocks (store/sql/ingest.py; a
    batch decoded in one block held ~4.5 KB per span), and its allocator keeps about as much again
    for a while afterwards. So a batch gets a 10th of the room between the resting memory and the
    point where exports are shed: 52 MiB of protobuf (~160,000 spans) for 1 GiB and a resting
    server of 345 MiB.
    """
    if not max_memory_bytes:
        return UNBOUNDED_BATCH_BYTES
    room = int(max_memory_bytes * SHED_AT) - resting_bytes
    return max(1 << 20, min(UNBOUNDED_BATCH_BYTES, room // BATCH_SHARE))


def read_rss() -> int:
    """This process's resident set size in bytes (0 where ``/proc`` is not available)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True)
class AdmissionLimits:
    #: Resident memory of the process that exports must not push it past; 0: no memory check.
    max_memory_bytes: int = 1 << 30
    #: Request bytes being decoded or written to the log at once; 0: no cap.
    max_inflight_bytes: int = 32 << 20
    #: Seconds between two readings of the RSS.
    sample_interval: float = 0.1
    #: Shortest time between two requests to the allocator to release memory, seconds.
    purge_interval: float = 1.0


@dataclass(frozen=True)
class AdmissionMetrics:
    refused: Counter
    rss: Gauge
    limit: Gauge
    inflight: Gauge
    purges: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AdmissionMetrics:
        """Register the admission metrics in ``registry``."""
        return cls(
            refused=Counter(
                "sloscope_admission_refused",
                "Export requests refused before being decoded (429 / RESOURCE_EXHAUSTED), by reason",
                ["signal", "reason"],
                registry=registry,
            ),
            rss=Gauge(
                "sloscope_memory_rss_bytes",
                "Resident memory of the process (the embedded engine included), at the last sample",
                registry=registry,
            ),
            limit=Gauge(
                "sloscope_memory_limit_bytes",
                "max_memory_bytes: exports are refused from 85% of it on (0: no memory bound)",
                registry=registry,
            ),
            inflight=Gauge(
                "sloscope_admission_inflight_bytes",
                "Request bytes being decoded or written to the write-ahead log now",
                registry=registry,
            ),
            purges=Counter(
                "sloscope_memory_purges",
                "Times the engine's allocator was asked to return freed memory to the kernel",
                registry=registry,
            ),
        )


class Admission:
    """Decides whether a request may be taken now; see the module docstring."""

    def __init__(
        self,
        limits: AdmissionLimits,
        registry: CollectorRegistry | None = None,
        release_memory: Callable[[], None] | None = None,
        rss_reader: Callable[[], int] = read_rss,
        backlog_full: Callable[[str, int], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._backlog_full = backlog_full
        self.metrics = AdmissionMetrics.create(registry or CollectorRegistry())
        self._release_memory = release_memory
        self._read_rss = rss_reader
        self._shed_bytes = int(limits.max_memory_bytes * SHED_AT)
        self._purge_bytes = int(limits.max_memory_bytes * PURGE_AT)
        self._lock = threading.Lock()
        self._inflight = 0
        # Minus infinity, not 0: the monotonic clock starts near 0 at boot, and the first purge must
        # not wait for the host to have been up for a whole purge interval.
        self._last_purge = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._purging: threading.Thread | None = None
        #: the RSS at the last sample, bytes
        self.rss = rss_reader()
        self.metrics.limit.set(limits.max_memory_bytes)
        self.metrics.rss.set_function(lambda: self.rss)
        self.metrics.inflight.set_function(lambda: self._inflight)

    # -- the monitor ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling the RSS in the background (idempotent)."""
        if self._thread is None:
            if self.shedding:
                log.warning(
                    "max_memory_bytes is below what this process holds at rest: every export will be "
                    "refused until it is raised",
                    extra={"rss_bytes": self.sample(), "max_memory_bytes": self.limits.max_memory_bytes},
                )
            self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the monitor thread (and wait for a purge in progress: it uses the store)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._purging is not None:
            self._purging.join()

    def _run(self) -> None:
        while not self._stop.wait(self.limits.sample_interval):
            self.sample()

    def sample(self) -> int:
        """Read the RSS now (and, when it is high, ask for memory back in the background); return it."""
        self.rss = self._read_rss()
        bound = self.limits.max_memory_bytes
        if bound and self._release_memory is not None and self.rss >= self._purge_bytes:
            now = self._clock()
            idle = self._purging is None or not self._purging.is_alive()
            if idle and now - self._last_purge >= self.limits.purge_interval:
                self._last_purge = now
                # Its own thread: the purge waits for the store's statement session, and sampling
                # must not stop meanwhile.
                self._purging = threading.Thread(target=self._purge, name="memory-purge", daemon=True)
                self._purging.start()
        return self.rss

    def _purge(self) -> None:
        assert self._release_memory is not None
        try:
            self._release_memory()
            self.metrics.purges.inc()
        except Exception:  # a failed purge only means memory is returned later
            log.exception("releasing the engine's free memory failed")
        self.rss = self._read_rss()

    # -- the request path ------------------------------------------------------------------------

    @property
    def shedding(self) -> bool:
        """The RSS is at or over the point where new exports are refused."""
        return bool(self.limits.max_memory_bytes) and self.rss >= self._shed_bytes

    def check(self, signal: str, size: int) -> None:
        """Raise Overloaded when a request of ``size`` bytes cannot be taken now: the process is over
        its memory bound, or ``backlog_full`` says the signal's queue has no room for it (then it
        would be refused after decoding: this refuses it before, for a fraction of the cost)."""
        full = self._backlog_full(signal, size) if self._backlog_full is not None else None
        if full:
            self.metrics.refused.labels(signal, "queue_full").inc()
            raise Overloaded(f"{full}; retry later")
        if self.shedding:
            self.metrics.refused.labels(signal, "memory").inc()
            raise Overloaded(
                f"memory: the collector holds {self.rss >> 20} MiB, over {SHED_AT:.0%} of its bound of "
                f"{self.limits.max_memory_bytes >> 20} MiB (max_memory_bytes); retry later"
            )

    def reserve(self, signal: str, size: int) -> Reservation:
        """``check``, then count ``size`` bytes in flight until the reservation is released; raises
        Overloaded also when that would pass the in-flight cap."""
        self.check(signal, size)
        cap = self.limits.max_inflight_bytes
        with self._lock:
            inflight = self._inflight
            refused = bool(cap) and inflight > 0 and inflight + size > cap
            if not refused:
                self._inflight += size
        if refused:
            self.metrics.refused.labels(signal, "inflight").inc()
            raise Overloaded(
                f"memory: {inflight} bytes of requests are being processed, the cap is {cap} "
                "(max_inflight_bytes); retry later"
            )
        return Reservation(self, size)

    def _release(self, size: int) -> None:
        with self._lock:
            self._inflight -= size

    @contextlib.contextmanager
    def admit(self, signal: str, size: int) -> Iterator[None]:
        """``reserve`` for the ``with`` block."""
        reservation = self.reserve(signal, size)
        try:
            yield
        finally:
            reservation.release()


class Reservation:
    """Bytes counted in flight; ``release`` (idempotent) gives them back."""

    def __init__(self, admission: Admission, size: int) -> None:
        self._admission, self._size = admission, size

    def release(self) -> None:
        size, self._size = self._size, 0
        if size:
            self._admission._release(size)


# -- before an HTTP body is read ---------------------------------------------------------------------

#: The export paths of the HTTP receivers and their signals.
EXPORT_PATHS = {
    "/v1/traces": "traces",
    "/v1/metrics": "metrics",
    "/v1/logs": "logs",
    "/api/v2/spans": "traces",
}

#: (refusal message, request content type) -> (body, media type) of a 429 answer
Refusal = Callable[[str, str], tuple[bytes, str]]


def otlp_refusal(message: str, content_type: str) -> tuple[bytes, str]:
    """A ``google.rpc.Status`` RESOURCE_EXHAUSTED, in the request's encoding (as OTLP/HTTP answers)."""
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
    if content_type.split(";")[0].strip().lower() in ("application/x-protobuf", "application/protobuf"):
        return status.SerializeToString(), "application/x-protobuf"
    return json_format.MessageToJson(status, indent=None).encode(), "application/json"


def text_refusal(message: str, content_type: str) -> tuple[bytes, str]:
    """The message as plain text (as the Zipkin receiver answers)."""
    return (message + "\n").encode(), "text/plain; charset=utf-8"


class ReadAdmission:
    """ASGI middleware in front of an HTTP receiver: an export is checked before its body is read.

    Over the memory bound, or with the signal's queue without room for the declared
    ``Content-Length``, the answer is 429 with ``Retry-After``, and the body is read and dropped
    piece by piece (never held), so that a keep-alive client reads a proper answer instead of a
    reset connection. The in-flight cap is not applied here but once the body is read (``Intake``):
    a declared length costs nothing until the bytes arrive, and a slow client declaring large
    bodies must not be able to hold the cap and shut everyone else out.
    """

    def __init__(
        self,
        app: ASGIApp,
        admission: Admission,
        refusal: Refusal,
        requests: Counter,
        transport: str,
        retry_after_seconds: int = 1,
        body_timeout: float = 30.0,
    ) -> None:
        self.app, self.admission, self.refusal = app, admission, refusal
        self.requests, self.transport = requests, transport
        self.retry_after = str(retry_after_seconds).encode()
        #: seconds the refused body may take to arrive, as for an accepted one (body_read_timeout)
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        signal = EXPORT_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if signal is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length", b"")
        try:
            self.admission.check(signal, int(declared) if declared.isdigit() else 0)
        except Overloaded as exc:
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            await self._refuse(signal, str(exc), content_type, receive, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(
        self, signal: str, message: str, content_type: str, receive: Receive, send: Send
    ) -> None:
        self.requests.labels(signal, self.transport, "429").inc()
        more, finished = True, True
        try:
            async with asyncio.timeout(self.body_timeout):
                while more:  # drop the body as it arrives
                    incoming = await receive()
                    more = incoming["type"] == "http.request" and incoming.get("more_body", False)
        except TimeoutError:
            finished = False  # a body that never ends must not hold the connection: answer and close
        body, media_type = self.refusal(message, content_type)
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.retry_after),
        ]
        if not finished:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
