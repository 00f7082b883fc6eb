"""Per-minute counts kept between scheduled evaluations, so a cycle reads only the newest minutes.

An evaluation at T needs the counts of up to 30 days (or a calendar quarter) back. Re-reading them
every minute would make a cycle's cost grow with the window and the traffic; like a Prometheus
recording rule, the cache keeps each SLO's minutes and reads again only the last ``refresh_s``
seconds (late spans, a flush in flight, a metric point reporting the minute before it) and the new
minutes. Every ``full_every_s`` it reads the whole range once more, so data that arrives later than
the refresh window is counted within that time. A changed SLO (a reloaded spec) or a range that
starts before the cached one is read in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo import sli
from slo.model import MINUTE_S, Slo
from slo.series import MinuteCounts
from store.backend import Backend

Counts = dict[tuple[str, ...], MinuteCounts]


@dataclass
class _Entry:
    slo: Slo
    start_s: int
    end_s: int
    full_at_s: int
    counts: Counts


def _window(counts: MinuteCounts, start_s: int, end_s: int) -> tuple[np.ndarray, np.ndarray]:
    """(total, bad) over exactly ``[start_s, end_s)``, zeros where ``counts`` has no minutes."""
    n = (end_s - start_s) // MINUTE_S
    total, bad = np.zeros(n), np.zeros(n)
    lo = max(start_s, counts.start_s)
    hi = min(end_s, counts.end_s)
    if hi > lo:
        dst = slice((lo - start_s) // MINUTE_S, (hi - start_s) // MINUTE_S)
        src = slice((lo - counts.start_s) // MINUTE_S, (hi - counts.start_s) // MINUTE_S)
        total[dst], bad[dst] = counts.total[src], counts.bad[src]
    return total, bad


class CountsCache:
    """``minute_counts`` with memory; one per evaluating process (it holds no store state)."""

    def __init__(self, refresh_s: int = 300, full_every_s: int = 3600) -> None:
        self.refresh_s = refresh_s
        self.full_every_s = full_every_s
        self._entries: dict[str, _Entry] = {}
        #: Minutes read from the store by the last call (for tests and metrics).
        self.last_read_s = 0

    def minute_counts(self, backend: Backend, slo: Slo, start_s: int, end_s: int) -> Counts:
        """What :func:`slo.sli.minute_counts` answers for ``[start_s, end_s)``."""
        entry = self._entries.get(slo.name)
        if (
            entry is None
            or entry.slo != slo
            or start_s < entry.start_s
            or end_s < entry.end_s
            or end_s - entry.full_at_s >= self.full_every_s
        ):
            found = sli.minute_counts(backend, slo, start_s, end_s)
            self._entries[slo.name] = _Entry(slo, start_s, end_s, end_s, found)
            self.last_read_s = end_s - start_s
            return found
        read_from = max(start_s, (entry.end_s - self.refresh_s) // MINUTE_S * MINUTE_S)
        fresh = sli.minute_counts(backend, slo, read_from, end_s)
        merged: Counts = {}
        for key in sorted({*entry.counts, *fresh}):
            old_total, old_bad = (
                _window(entry.counts[key], start_s, read_from)
                if key in entry.counts
                else (
                    np.zeros((read_from - start_s) // MINUTE_S),
                    np.zeros((read_from - start_s) // MINUTE_S),
                )
            )
            new = fresh.get(key)
            new_total, new_bad = (
                _window(new, read_from, end_s)
                if new is not None
                else (
                    np.zeros((end_s - read_from) // MINUTE_S),
                    np.zeros((end_s - read_from) // MINUTE_S),
                )
            )
            merged[key] = MinuteCounts(
                start_s, np.concatenate([old_total, new_total]), np.concatenate([old_bad, new_bad])
            )
        self._entries[slo.name] = _Entry(slo, start_s, end_s, entry.full_at_s, merged)
        self.last_read_s = end_s - read_from
        return merged
