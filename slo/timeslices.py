"""Timeslice budgeting: per-minute counts grouped into slices, and which slices are bad.

Slices are aligned to the epoch: slice ``k`` covers ``[k * slice_s, (k + 1) * slice_s)`` in unix
seconds, whatever the window. So a slice is good or bad once and for all, an evaluation a minute
later sees the same slices, and a vectorised backtest classifies each slice once. A window counts
only the slices lying entirely inside it; a slice the evaluation time cuts through is not over and
is left out (as is a slice cut by a calendar period's start). A window shorter than a slice therefore
holds no slice and its burn rate is ``None``.

* ``timeslices``: a slice is good iff ``good / total >= slice_target`` (decided exactly); its bad
  fraction is 0 or 1.
* ``ratio_timeslices``: a slice's bad fraction is ``1 - good / total`` = ``bad / total``.
* A slice with no events is "no data": in neither the numerator nor the denominator.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from slo.burn_rate import Number, PrefixSums, exact_greater
from slo.model import MINUTE_S, Budgeting
from slo.series import MinuteCounts


def check_slice_s(slice_s: int) -> int:
    """``slice_s`` if it is a positive whole number of minutes, else ValueError (the data are minutes)."""
    if slice_s <= 0 or slice_s % MINUTE_S:
        raise ValueError(f"a slice must be a positive whole number of minutes, got {slice_s}s")
    return slice_s


def slice_target(budgeting: Budgeting) -> Fraction:
    """The ``timeslices`` target, or ValueError when it is missing."""
    if budgeting.slice_target is None:
        raise ValueError("timeslices budgeting needs a slice_target")
    return Fraction(budgeting.slice_target)


def slice_is_bad(bad: Number, total: Number, target: Fraction) -> bool:
    """Whether a slice with events fails ``good / total >= target``, exactly.

    Uses ``bad / total > 1 - target`` so that ``good = total - bad`` is never computed in floats.
    """
    return Fraction(bad) > (1 - target) * Fraction(total)


def bad_slices(bad: np.ndarray, total: np.ndarray, target: Fraction) -> np.ndarray:
    """Vectorised :func:`slice_is_bad` (False for slices without events)."""
    allowed = 1 - target  # bad / total > n/d  <=>  bad * d > total * n
    return exact_greater(bad, allowed.denominator, total, allowed.numerator) & (total > 0)


@dataclass(frozen=True)
class SliceSeries:
    """Slices of one SLO instance's counts: slice ``i`` covers ``[origin_s + i slice_s, ...)``."""

    origin_s: int
    slice_s: int
    total: np.ndarray
    bad: np.ndarray
    #: 0 or 1 (timeslices) or bad/total (ratio_timeslices); 0 for slices without data.
    bad_fraction: np.ndarray

    @property
    def has_data(self) -> np.ndarray:
        return self.total > 0


def slice_series(counts: MinuteCounts, budgeting: Budgeting) -> SliceSeries:
    """Group ``counts`` into epoch-aligned slices and classify them for ``budgeting``.

    A slice only partly covered by the data holds the events that are there (minutes outside the
    data count 0, as everywhere).
    """
    slice_s = check_slice_s(budgeting.slice_s)
    origin_s = counts.start_s // slice_s * slice_s
    n_slices = -(-(counts.end_s - origin_s) // slice_s)
    # Minute index range of each slice, clipped to the data; sums as exact as math.fsum's.
    starts = origin_s + slice_s * np.arange(n_slices + 1, dtype=np.int64)
    edges = np.clip((starts - counts.start_s) // MINUTE_S, 0, len(counts.total))
    total = PrefixSums(counts.total).between(edges[:-1], edges[1:])
    bad = PrefixSums(counts.bad).between(edges[:-1], edges[1:])
    if budgeting.method == "ratio_timeslices":
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(total > 0, bad / total, 0.0)
    else:
        fraction = bad_slices(bad, total, slice_target(budgeting)).astype(np.float64)
    return SliceSeries(origin_s, slice_s, total, bad, fraction)
