"""Login throttling: too many failed sign-ins for one user name, or from one client address, are
refused for a while (429 with ``Retry-After``), the while doubling with each further failure.

A failure counts for the name as typed (lower-cased) whether or not such a user exists, so a refusal
tells nothing about which names exist. Attempts refused while locked are not checked and not
counted. Anyone can lock a name out for a while by failing on purpose; that is the usual price of
throttling by name, and the reason the lock is minutes, not hours.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThrottlePolicy:
    #: Failures are counted over this many seconds.
    window_s: float = 900.0
    #: This many failures for one name within the window lock that name...
    user_failures: int = 5
    #: ...and this many from one address lock the address (higher: offices share addresses).
    address_failures: int = 20
    #: The first lock; each further failure doubles it, up to ``max_delay_s``.
    first_delay_s: float = 60.0
    max_delay_s: float = 900.0
    #: Names and addresses tracked at most (the oldest are forgotten first), bounding memory.
    max_keys: int = 10_000


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    """Failed sign-ins per name and per address; ``clock`` is injectable for tests."""

    def __init__(
        self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}

    def _keys(self, user: str, address: str) -> list[tuple[tuple[str, str], int]]:
        return [
            (("user", user.lower()), self.policy.user_failures),
            (("addr", address), self.policy.address_failures),
        ]

    def retry_after(self, user: str, address: str) -> int:
        """Seconds until ``user`` may try again from ``address``; 0: now."""
        now = self.clock()
        wait = 0.0
        for key, _ in self._keys(user, address):
            record = self._records.get(key)
            if record is not None and record.locked_until > now:
                wait = max(wait, record.locked_until - now)
        return math.ceil(wait)

    def failed(self, user: str, address: str) -> None:
        """Count a failed sign-in; lock the name or the address once it has failed too often."""
        now = self.clock()
        for key, limit in self._keys(user, address):
            record = self._records.pop(key, None) or _Record()
            self._records[key] = record  # re-inserted: the dict's order is the order of last use
            while record.failures and record.failures[0] <= now - self.policy.window_s:
                record.failures.popleft()
            record.failures.append(now)
            excess = len(record.failures) - limit
            if excess >= 0:
                delay = min(self.policy.max_delay_s, self.policy.first_delay_s * 2**excess)
                record.locked_until = now + delay
        while len(self._records) > self.policy.max_keys:
            del self._records[next(iter(self._records))]

    def succeeded(self, user: str) -> None:
        """A sign-in of ``user`` worked: forget the name's failures (not the address's: an attacker
        with one valid account must not be able to reset the address's count)."""
        self._records.pop(("user", user.lower()), None)
