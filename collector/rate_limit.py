"""Token buckets: the per-token ingest rate limits of ``collector/auth.py`` (docs/security/ingest-auth.md).

A bucket holds up to ``burst`` items and refills at ``rate`` items per second. A request of ``n``
items is admitted when the bucket holds at least ``min(n, burst)``, and then takes all ``n``: a
request larger than the burst is admitted only from a full bucket and leaves it in debt, which the
refill pays back before anything else is admitted. Refusing such a request outright would turn an
exporter's batch size into a permanent, non-retryable error; admitting it from a full bucket keeps
the long-run rate at ``rate`` whatever the batch size.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

# Refill arithmetic on floats: 7.8 + 0.2 may come out a hair under 8, which must still admit 8 items.
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` items per second with bursts of up to ``burst`` items; thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of items per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 item, got {burst}")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._level = float(burst)  # a new bucket is full
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        # max(): a clock that steps back (a test's, say) must not drain the bucket.
        self._level = min(float(self.burst), self._level + max(0.0, now - self._at) * self.rate)
        self._at = now

    def _wait(self, need: float) -> int:
        # Whole seconds, rounded up, and at least one: Retry-After and RetryInfo carry seconds, and
        # a client told "0" would come straight back. The epsilon keeps 2.0000000001 from becoming 3.
        return max(1, math.ceil((need - self._level) / self.rate - _EPSILON))

    def take(self, items: int) -> int:
        """Take ``items`` and return 0, or take nothing and return the seconds to wait before the
        bucket could admit them. Zero items are always admitted."""
        with self._lock:
            self._refill()
            need = float(min(items, self.burst))
            if items <= 0 or self._level >= need - _EPSILON:
                self._level -= max(items, 0)
                return 0
            return self._wait(need)

    def retry_after(self) -> int:
        """0 when the bucket could admit one item now, else the seconds until it can: a request
        refused this way is refused before its body is read."""
        with self._lock:
            self._refill()
            return 0 if self._level >= 1 - _EPSILON else self._wait(1.0)

    def give_back(self, items: int) -> None:
        """Return ``items`` taken for a request that was then not accepted (queue full, log down)."""
        with self._lock:
            self._refill()
            self._level = min(float(self.burst), self._level + items)

    @property
    def level(self) -> float:
        """Items the bucket holds now (negative while in debt)."""
        with self._lock:
            self._refill()
            return self._level
