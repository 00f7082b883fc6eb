"""What every receiver does with a request once it has bytes: check, count, queue, wait until durable.

Receivers differ in transport (OTLP/HTTP, OTLP/gRPC, Zipkin); each maps the exceptions below to its
own status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from starlette.concurrency import run_in_threadpool

from collector import decode
from collector.queue import DurableQueue, QueueFull
from collector.telemetry import CollectorMetrics
from collector.wal import WalClosed, WalFull

if TYPE_CHECKING:  # collector.admission imports Overloaded from here
    from collector.admission import Admission

# Small protobuf bodies decode faster inline than the hop to a worker thread costs.
_INLINE_DECODE_BYTES = 256 << 10


class Overloaded(RuntimeError):
    """The queue is full: retry later (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""


class Unavailable(RuntimeError):
    """The data cannot be made durable now (HTTP 503, gRPC UNAVAILABLE)."""


@dataclass(frozen=True)
class Intake:
    """The durable queues of all signals and the metrics that count what passes through."""

    queues: dict[str, DurableQueue]
    metrics: CollectorMetrics
    #: The memory bound (collector/admission.py): decode and accept raise Overloaded past it.
    admission: Admission | None = None
    #: The store's retention: older items are refused, not acknowledged and then deleted (0: none).
    retention_days: int = 0

    def _admitted(self, signal: str, size: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self.admission is None else self.admission.admit(signal, size)

    async def decode(self, signal: str, body: bytes, is_json: bool) -> decode.Decoded:
        """Parse and check a body; raises ``decode.BadRequest`` when it is not a valid request, and
        Overloaded when the collector is over its memory bound."""
        with self._admitted(signal, len(body)):
            return await self._decode(signal, body, is_json)

    async def _decode(self, signal: str, body: bytes, is_json: bool) -> decode.Decoded:
        def work() -> decode.Decoded:
            request = decode.parse(signal, body, is_json)
            return decode.check(signal, request, None if is_json else body, self.retention_days)

        if is_json or len(body) > _INLINE_DECODE_BYTES:
            return await run_in_threadpool(work)
        return work()

    async def accept(self, signal: str, decoded: decode.Decoded, tenant: str = "") -> Message:
        """See ``_accept``; refused with Overloaded, before anything is counted, when the collector
        is over its memory bound."""
        with self._admitted(signal, len(decoded.payload)):
            return await self._accept(signal, decoded, tenant)

    async def _accept(self, signal: str, decoded: decode.Decoded, tenant: str = "") -> Message:
        """Count ``decoded``, make its valid items durable as ``tenant``'s, and return the
        Export*ServiceResponse. ``tenant`` comes from the ingest token ("" without one), never from
        the payload.

        Raises Overloaded or Unavailable; nothing is acknowledged then.
        """
        self.metrics.received.labels(signal).inc(decoded.items + decoded.rejected)
        if decoded.rejected > decoded.expired:
            self.metrics.rejected.labels(signal, "invalid").inc(decoded.rejected - decoded.expired)
        if decoded.expired:
            self.metrics.rejected.labels(signal, "expired").inc(decoded.expired)
        if decoded.items:
            try:
                await asyncio.wrap_future(
                    self.queues[signal].submit(decoded.payload, decoded.items, tenant=tenant)
                )
            except QueueFull as exc:
                self.metrics.rejected.labels(signal, "queue_full").inc(decoded.items)
                raise Overloaded(f"{exc}; retry later") from exc
            except (WalClosed, OSError) as exc:
                reason = "wal_full" if isinstance(exc, WalFull) else "unavailable"
                self.metrics.rejected.labels(signal, reason).inc(decoded.items)
                raise Unavailable(f"cannot store data durably: {exc}") from exc
            self.metrics.accepted.labels(signal).inc(decoded.items)
        return decode.response(signal, decoded.rejected, decoded.message)
