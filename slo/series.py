"""Per-minute event counts: what every SLI source produces and every budget calculation reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo.model import MINUTE_S


@dataclass(frozen=True)
class MinuteCounts:
    """Events of one SLO instance (one group value) per minute.

    Minute ``i`` covers ``[start_s + 60 i, start_s + 60 (i + 1))`` in unix seconds; ``start_s`` is a
    multiple of 60. ``total`` and ``bad`` are float64 arrays of the same length (floats because
    metric counters may increase by fractions); ``bad[i] <= total[i]``. A minute without events has
    ``total[i] == 0``.
    """

    start_s: int
    total: np.ndarray
    bad: np.ndarray

    def __post_init__(self) -> None:
        if self.start_s % MINUTE_S:
            raise ValueError(f"start_s must be a whole minute, got {self.start_s}")
        if self.total.shape != self.bad.shape or self.total.ndim != 1:
            raise ValueError("total and bad must be one-dimensional arrays of the same length")

    @property
    def end_s(self) -> int:
        """End of the last minute (exclusive)."""
        return self.start_s + MINUTE_S * len(self.total)

    @classmethod
    def empty(cls, start_s: int, end_s: int) -> MinuteCounts:
        """All-zero counts over ``[start_s, end_s)`` (whole minutes)."""
        n = (end_s - start_s) // MINUTE_S
        return cls(start_s, np.zeros(n), np.zeros(n))

    def window(self, start_s: int, end_s: int) -> tuple[np.ndarray, np.ndarray]:
        """(total, bad) of the minutes in ``[start_s, end_s)``; minutes outside the data count 0."""
        lo = max(0, (start_s - self.start_s) // MINUTE_S)
        hi = max(lo, min(len(self.total), (end_s - self.start_s) // MINUTE_S))
        return self.total[lo:hi], self.bad[lo:hi]
