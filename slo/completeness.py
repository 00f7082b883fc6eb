"""Can the store's data be trusted for an evaluation now? The "no data" rule (docs/slo-semantics.md).

An evaluation reads per-minute counts from the store. Counts computed while the store is unreachable
do not exist, and counts computed while acknowledged data is still waiting in a write-ahead log
(the store was down, or is far behind) are too low in the newest minutes: budgets and burn rates from
them would be wrong in either direction. So an evaluation is "no data" when

1. the store cannot be read (``StoreUnavailable`` during the cycle), or
2. it was unreachable at an evaluation less than ``recovery_s`` ago: collectors in other processes
   may still be writing what they kept in their logs meanwhile, or
3. a write-ahead log of this process holds data acknowledged more than ``max_lag_s`` ago that is not
   in the store yet (``oldest_unstored``: the flushers' view; exact for the collectors in this
   process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Normal ingest stores an export within a second or two (the flush delay); a backlog older than
#: this means the store is not keeping up, and the newest minutes are incomplete.
MAX_LAG_S = 60
#: After the store comes back, evaluations wait this long for other collectors to drain their logs.
RECOVERY_S = 120


def _nothing_unstored() -> float | None:
    return None


@dataclass
class Completeness:
    """The rule above, for one evaluating process. ``oldest_unstored`` returns when (unix seconds)
    the oldest acknowledged but unstored data of this process was acknowledged, None if there is
    none."""

    recovery_s: float = RECOVERY_S
    max_lag_s: float = MAX_LAG_S
    oldest_unstored: Callable[[], float | None] = _nothing_unstored
    clock: Callable[[], float] = time.time
    _unreachable_at: float | None = field(default=None, init=False)

    def store_unreachable(self) -> None:
        """An evaluation found the store unreachable (now)."""
        self._unreachable_at = self.clock()

    def reason(self) -> str:
        """Why the data cannot be trusted now ('' when it can): rules 2 and 3."""
        now = self.clock()
        if self._unreachable_at is not None:
            ago = now - self._unreachable_at
            if ago < self.recovery_s:
                return (
                    f"the store was unreachable {ago:.0f} s ago; waiting {self.recovery_s:.0f} s for "
                    "collectors to write what they kept meanwhile"
                )
            self._unreachable_at = None
        oldest = self.oldest_unstored()
        if oldest is not None and now - oldest > self.max_lag_s:
            return f"ingest behind: data acknowledged {now - oldest:.0f} s ago is not in the store yet"
        return ""
