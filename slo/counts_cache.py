"""Per-minute counts kept between scheduled evaluations, so a cycle reads only the newest minutes.

An evaluation at T needs the counts of up to 30 days (or a calendar quarter) back. Re-reading them
every minute would make a cycle's cost grow with the window and the traffic; like a Prometheus
recording rule, the cache keeps each SLO's minutes and reads again only the last ``refresh_s``
seconds (late spans, a flush in flight, a metric point reporting the minute before it) and the new
minutes. Every ``full_every_s`` it reads the whole range once more, so data that arrives later than
the refresh window is counted within that time; each SLO at its own moment in that period (a phase
from its name), so that a cycle re-reads a share of the SLOs in full rather than all of them at once,
which would cost as much as a cold cycle. A changed SLO (a reloaded spec) or a range that starts
before the cached one is read in full.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo import sli
from slo.model import MINUTE_S, Slo
from slo.series import MinuteCounts
from store.backend import Backend

Counts = dict[tuple[str, ...], MinuteCounts]
Read = sli.Read


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
        [found] = self.minute_counts_many(backend, [(slo, start_s, end_s)])
        if isinstance(found, Exception):
            raise found
        return found

    def minute_counts_many(self, backend: Backend, reads: Sequence[Read]) -> list[Counts | Exception]:
        """What :func:`slo.sli.minute_counts_many` answers for ``reads``: the SLOs' newest minutes
        with one call, and those due a full read with another (roll-up SLOs share a statement in
        each; one statement for both would read every SLO's whole range)."""
        froms = [self._read_from(slo, start_s, end_s) for slo, start_s, end_s in reads]
        by_read: dict[int, Counts | Exception] = {}
        for full in (True, False):
            which = [n for n, f in enumerate(froms) if (f is None) == full]
            ranges = [(reads[n][0], reads[n][1] if full else froms[n], reads[n][2]) for n in which]
            by_read.update(zip(which, sli.minute_counts_many(backend, ranges), strict=True))
        found = [by_read[n] for n in range(len(reads))]
        out: list[Counts | Exception] = []
        for (slo, start_s, end_s), read_from, fresh in zip(reads, froms, found, strict=True):
            if isinstance(fresh, Exception):
                out.append(fresh)
            elif read_from is None or (entry := self._entries.get(slo.name)) is None:
                self._entries[slo.name] = _Entry(slo, start_s, end_s, end_s, fresh)
                out.append(fresh)
            else:
                out.append(self._merge(entry, start_s, end_s, read_from, fresh))
        # An SLO whose read failed (a bad filter) is not cached, so is "read in full" every time.
        self.last_read_s = max(
            (
                end_s - (start_s if f is None else f)
                for (_, start_s, end_s), f, counts in zip(reads, froms, found, strict=True)
                if not isinstance(counts, Exception)
            ),
            default=0,
        )
        return out

    def _read_from(self, slo: Slo, start_s: int, end_s: int) -> int | None:
        """Where the read of ``[start_s, end_s)`` starts; None: read it in full."""
        entry = self._entries.get(slo.name)
        if (
            entry is None
            or entry.slo != slo
            or start_s < entry.start_s
            or end_s < entry.end_s
            or self._full_read_due(slo, entry.full_at_s, end_s)
        ):
            return None
        return max(start_s, (entry.end_s - self.refresh_s) // MINUTE_S * MINUTE_S)

    def _full_read_due(self, slo: Slo, full_at_s: int, end_s: int) -> bool:
        """Whether ``slo``'s period of ``full_every_s`` has turned since its last full read: the periods
        of an SLO start at its own phase, so the SLOs of one schedule turn at different minutes."""
        phase = zlib.crc32(slo.name.encode()) % max(1, self.full_every_s // MINUTE_S) * MINUTE_S
        return (end_s + phase) // self.full_every_s > (full_at_s + phase) // self.full_every_s

    def _merge(self, entry: _Entry, start_s: int, end_s: int, read_from: int, fresh: Counts) -> Counts:
        """The counts of ``[start_s, end_s)``: the cached ones before ``read_from``, then ``fresh``;
        remembered for the next call."""
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
        self._entries[entry.slo.name] = _Entry(entry.slo, start_s, end_s, entry.full_at_s, merged)
        return merged
