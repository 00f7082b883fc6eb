"""Delivery of notifications: one worker thread and queue per receiver, retries with backoff, metrics.

A receiver that is down or slow holds up only its own worker, never another receiver's. Retryable
failures (:attr:`alerts.receivers.DeliveryError.retryable`) are retried with exponential backoff up
to ``RetryPolicy.max_attempts``; the others fail at once. Every attempt is reported to
``on_attempt`` (the incident page's delivery log) and counted in Prometheus metrics. Errors are
reported and logged with the receiver's ``secrets`` (its URL, keys, password) masked: an answer that
quotes the request back must not put a webhook token on the incident page.

Idempotency across restarts is not this module's concern: the caller submits only notifications
that are not yet recorded as sent, and ones still queued at ``close`` are simply not sent.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts.model import Notification
from alerts.receivers import DeliveryError, Receiver
from alerts.redact import scrub

log = logging.getLogger(__name__)

#: ``on_attempt(notification, receiver_name, attempt, ok, error)``: attempt counts from 1; ``error``
#: is the failure's message (None when ok). An attempt is the last one for its notification when it
#: is ok, its error was not retryable, or ``attempt == max_attempts``. Attempt 0 means the
#: notification was refused before any attempt (unknown receiver, full queue, closed).
OnAttempt = Callable[[Notification, str, int, bool, str | None], None]

KINDS = ("trigger", "repeat", "resolve")
OUTCOMES = ("sent", "failed", "gave_up")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: the wait after failed attempt n is ``min(max_s, base_s * 2**(n-1))``,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]`` (0 = none), and at least the server's
    ``Retry-After`` (capped at ``max_s``)."""

    base_s: float = 1.0
    max_s: float = 60.0
    max_attempts: int = 6
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.max_s < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid retry policy {self!r}")

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        wait = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        if self.jitter:
            wait *= 1 + self.jitter * (2 * rng.random() - 1)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_s))
        return wait


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "sloscope_notifications_total",
            "Notifications by final outcome: sent, failed (a permanent error) or gave_up (retries exhausted)",
            ["receiver", "kind", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "sloscope_notification_attempts_total",
            "Delivery attempts of notifications, by outcome (ok or error)",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "sloscope_notification_queue_size",
            "Notifications waiting for or in delivery (including retry waits), per receiver",
            ["receiver"],
            registry=registry,
        )

    def declare(self, receiver: str) -> None:
        """Create every series at 0, so rates and alerts on them work before the first failure."""
        for kind in KINDS:
            for outcome in OUTCOMES:
                self.notifications.labels(receiver, kind, outcome)
        for outcome in ("ok", "error"):
            self.attempts.labels(receiver, outcome)
        self.pending.labels(receiver).set(0)


_STOP = object()


class _Worker:
    """One receiver's queue and thread."""

    def __init__(self, owner: Deliveries, receiver: Receiver, rng: random.Random) -> None:
        self.owner = owner
        self.receiver = receiver
        self.rng = rng
        #: What to mask in this receiver's errors (a receiver without the attribute has none).
        self.secrets: tuple[str, ...] = tuple(getattr(receiver, "secrets", ()))
        # Unbounded underneath so the stop sentinel always fits; ``submit`` enforces the bound.
        self.queue: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(
            target=self._run, name=f"sloscope-deliver-{receiver.name}", daemon=True
        )

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, Notification)
                if self.owner._abort.is_set():
                    self.owner._finish(self.receiver.name, item, None)
                    continue
                self._deliver(item)
            finally:
                self.queue.task_done()

    def _deliver(self, notification: Notification) -> None:
        owner, name = self.owner, self.receiver.name
        policy = owner.retry
        for attempt in range(1, policy.max_attempts + 1):
            try:
                self.receiver.send(notification)
            except DeliveryError as e:
                error, retryable, retry_after = str(e), e.retryable, e.retry_after_s
            except Exception as e:  # a bug in a receiver must not kill its worker; retrying won't fix it
                log.exception("receiver %s raised unexpectedly on notification %s", name, notification.id)
                error, retryable, retry_after = f"internal error: {e!r}", False, None
            else:
                owner._attempted(notification, name, attempt, True, None)
                owner._finish(name, notification, "sent")
                return
            error = scrub(error, self.secrets)
            owner._attempted(notification, name, attempt, False, error)
            if not retryable:
                log.warning("notification %s to %s failed, not retryable: %s", notification.id, name, error)
                owner._finish(name, notification, "failed")
                return
            if attempt == policy.max_attempts:
                break
            # The abort event cuts a backoff short when close() runs out of time.
            if owner._abort.wait(policy.delay(attempt, self.rng, retry_after)):
                owner._finish(name, notification, None)
                return
        log.warning(
            "notification %s to %s gave up after %d attempts: %s",
            notification.id,
            name,
            policy.max_attempts,
            error,
        )
        owner._finish(name, notification, "gave_up")


class Deliveries:
    """Delivers notifications to their receivers (``notification.receiver`` names one), each receiver
    on its own worker thread.

    ``registry`` receives the metrics (register one ``Deliveries`` per registry). ``rng`` draws the
    jitter; pass a seeded one (or ``RetryPolicy(jitter=0)``) for deterministic waits.
    """

    def __init__(
        self,
        receivers: Iterable[Receiver],
        *,
        registry: CollectorRegistry,
        on_attempt: OnAttempt | None = None,
        retry: RetryPolicy | None = None,
        max_queue: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.max_queue = max_queue
        self._on_attempt = on_attempt
        self._metrics = _Metrics(registry)
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        rng = rng or random.Random()
        self._workers: dict[str, _Worker] = {}
        for receiver in receivers:
            if receiver.name in self._workers:
                raise ValueError(f"two receivers named {receiver.name!r}")
            # One generator per worker: random.Random is not meant to be shared across threads.
            self._workers[receiver.name] = _Worker(self, receiver, random.Random(rng.random()))
            self._metrics.declare(receiver.name)
        for worker in self._workers.values():
            worker.thread.start()

    @property
    def receivers(self) -> tuple[str, ...]:
        return tuple(self._workers)

    def submit(self, notification: Notification) -> bool:
        """Queue ``notification`` for its receiver without blocking. False (logged, reported to
        ``on_attempt`` as attempt 0, counted as failed) when the receiver is unknown, its queue is
        full, or this object is closed."""
        name = notification.receiver
        worker = self._workers.get(name)
        with self._lock:
            if worker is None:
                reason = f"no receiver named {name!r}"
            elif self._closed:
                reason = "deliveries are closed"
            elif worker.queue.qsize() >= self.max_queue:
                reason = f"queue of receiver {name!r} is full ({self.max_queue})"
            else:
                self._metrics.pending.labels(name).inc()
                worker.queue.put_nowait(notification)
                return True
        log.error("notification %s not queued: %s", notification.id, reason)
        self._metrics.notifications.labels(name, notification.kind, "failed").inc()
        self._report(notification, name, 0, False, reason)
        return False

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queue is empty and no delivery is in progress; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(w.queue.unfinished_tasks == 0 for w in self._workers.values()):
                return True
            time.sleep(0.01)
        return all(w.queue.unfinished_tasks == 0 for w in self._workers.values())

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop accepting notifications, let the workers finish what is queued for up to
        ``timeout_s``, then cut retry waits short and drop what is left. True if every worker stopped
        in time; a worker stuck in a request ends with that request's timeout (threads are daemons,
        so they never hold up the process)."""
        with self._lock:
            if self._closed:
                return all(not w.thread.is_alive() for w in self._workers.values())
            self._closed = True
            for worker in self._workers.values():
                worker.queue.put_nowait(_STOP)
        deadline = time.monotonic() + timeout_s
        for worker in self._workers.values():
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        self._abort.set()
        # A short grace after the abort for workers that were only waiting to retry.
        for worker in self._workers.values():
            worker.thread.join(0.5)
        return all(not w.thread.is_alive() for w in self._workers.values())

    # -- called from workers ------------------------------------------------------------------------

    def _attempted(
        self, notification: Notification, name: str, attempt: int, ok: bool, error: str | None
    ) -> None:
        self._metrics.attempts.labels(name, "ok" if ok else "error").inc()
        self._report(notification, name, attempt, ok, error)

    def _finish(self, name: str, notification: Notification, outcome: str | None) -> None:
        """``outcome`` None: dropped at close, neither sent nor failed (the next leader sends it again)."""
        self._metrics.pending.labels(name).dec()
        if outcome is not None:
            self._metrics.notifications.labels(name, notification.kind, outcome).inc()

    def _report(
        self, notification: Notification, name: str, attempt: int, ok: bool, error: str | None
    ) -> None:
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(notification, name, attempt, ok, error)
        except Exception:  # the log of attempts failing must not stop deliveries
            log.exception("on_attempt callback failed for notification %s", notification.id)
