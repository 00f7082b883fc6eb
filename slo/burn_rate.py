"""Burn rates and the exact comparisons alert rules make with them.

The burn rate over a window W is ``(bad / total within W) / (1 - objective)``: a ratio of sums, so a
busy minute weighs more than a quiet one (never an average of per-minute ratios). It is ``None`` when
the window holds no events. For timeslice budgeting the same formula is applied to slices (see
``slo/timeslices.py``): bad slices over slices with data.

Alert rules are strict ``>`` comparisons with factors such as 14.4, and users check them by hand
against the SRE Workbook, so the decision is made exactly: counts (ints or floats, every float being
an exact binary fraction) and the :class:`~fractions.Fraction` error budget and factor are compared
as rationals. Reported burn rates are floats, correctly rounded where the counts are integers.

The vectorised comparisons (:func:`exact_greater`) first compare in float64 and redo in exact
rational arithmetic only the elements whose float answer is within rounding error of a tie, so they
are as exact as :func:`exceeds` and nearly as fast as plain numpy.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from slo.model import DAY_S, HOUR_S, MINUTE_S

#: The windows every evaluation reports a burn rate for (the SLO window is added by the evaluator).
BURN_WINDOWS: tuple[tuple[str, int], ...] = (
    ("5m", 5 * MINUTE_S),
    ("30m", 30 * MINUTE_S),
    ("1h", HOUR_S),
    ("2h", 2 * HOUR_S),
    ("6h", 6 * HOUR_S),
    ("1d", DAY_S),
    ("3d", 3 * DAY_S),
)

Number = int | float | Fraction

# Each float product below is off by at most 2 ulps (coefficient rounding, then the product), so a
# difference larger than 8 ulps of the operands' magnitude has the sign of the exact difference.
_TOLERANCE = 8 * np.finfo(np.float64).eps


def burn_rate_exact(bad: Number, total: Number, error_budget: Fraction) -> Fraction | None:
    """``(bad / total) / error_budget`` as an exact fraction; ``None`` when ``total`` is 0."""
    total_q = Fraction(total)
    if total_q == 0:
        return None
    return Fraction(bad) / total_q / error_budget


def burn_rate(bad: Number, total: Number, error_budget: Fraction) -> float | None:
    """The burn rate as the float nearest the exact value; ``None`` when ``total`` is 0."""
    exact = burn_rate_exact(bad, total, error_budget)
    return None if exact is None else float(exact)


def exceeds(bad: Number, total: Number, error_budget: Fraction, factor: Fraction) -> bool:
    """Whether ``(bad / total) / error_budget > factor``, decided exactly; ``False`` with no events.

    With objective 99.9 (budget 1/1000), 144 bad of 10,000 is a burn rate of exactly 14.4 and does
    not exceed 14.4; 145 bad does.
    """
    total_q = Fraction(total)
    if total_q <= 0:
        return False
    # bad / total / budget > factor  <=>  bad > factor * budget * total, as total > 0.
    return Fraction(bad) > Fraction(factor) * error_budget * total_q


def exact_greater(a: Any, a_coef: Any, b: Any, b_coef: Any) -> np.ndarray:
    """Elementwise ``a * a_coef > b * b_coef``, decided exactly.

    ``a`` and ``b`` are non-negative float arrays (counts), ``a_coef`` and ``b_coef`` non-negative
    integers or integer arrays (Python ints of any size in an object array are fine); all broadcast.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a_coef_f = np.asarray(a_coef, dtype=np.float64)
    b_coef_f = np.asarray(b_coef, dtype=np.float64)
    lhs = a * a_coef_f
    rhs = b * b_coef_f
    diff = lhs - rhs
    result = np.asarray(diff > 0)
    with np.errstate(invalid="ignore"):
        unsure = ~(np.abs(diff) > _TOLERANCE * (np.abs(lhs) + np.abs(rhs)))
    # Both sides exactly zero is a sure "not greater"; checking the factors (not the products)
    # keeps an underflowing product from passing as zero.
    unsure &= ~(((a == 0) | (a_coef_f == 0)) & ((b == 0) | (b_coef_f == 0)))
    if not unsure.any():
        return result
    shape = np.broadcast_shapes(lhs.shape, rhs.shape)
    result = np.array(np.broadcast_to(result, shape))
    a_b, b_b = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
    a_c = np.broadcast_to(np.asarray(a_coef, dtype=object), shape)
    b_c = np.broadcast_to(np.asarray(b_coef, dtype=object), shape)
    for flat in np.flatnonzero(np.broadcast_to(unsure, shape)):
        i = np.unravel_index(flat, shape)
        left = Fraction(float(a_b[i])) * int(a_c[i])
        result[i] = left > Fraction(float(b_b[i])) * int(b_c[i])
    return result


def exceeds_many(bad: Any, total: Any, error_budget: Fraction, factor: Fraction) -> np.ndarray:
    """Vectorised :func:`exceeds`: a bool array, exactly as :func:`exceeds` would answer each element."""
    threshold = Fraction(factor) * error_budget
    total = np.asarray(total, dtype=np.float64)
    # bad > (p/q) * total  <=>  bad * q > total * p.
    above = exact_greater(bad, threshold.denominator, total, threshold.numerator)
    return above & (total > 0)


def burn_rates(bad: Any, total: Any, error_budget: Fraction) -> np.ndarray:
    """Vectorised :func:`burn_rate`: float array with NaN where ``total`` is 0.

    Computed as ``(bad * q) / (total * p)`` for a budget ``p/q``: for integer counts both products
    are exact and the single division rounds correctly, so 144 of 10,000 at 99.9 reads 14.4.
    """
    bad = np.asarray(bad, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (bad * float(error_budget.denominator)) / (total * float(error_budget.numerator))
    return np.where(total > 0, rates, np.nan)


class PrefixSums:
    """Prefix sums of a float64 array, for the sums of many ranges ``[lo, hi)`` of it.

    Each range sum is the correctly rounded exact sum, the value :func:`math.fsum` gives, so the
    vectorised evaluator agrees to the bit with the one-at-a-time one and a float running total
    never leaks into a comparison. Integer counts whose total stays below 2**52 (the usual case)
    use a plain float64 cumulative sum, which is then exact; anything else (fractional counter
    increments, ratio-timeslice fractions) is summed as integers in units of the smallest binary
    digit present.
    """

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        self._scale = 0
        self._exact: np.ndarray | None = None
        if not np.isfinite(values).all():
            raise ValueError("counts must be finite")
        self._float = np.zeros(len(values) + 1)
        np.cumsum(values, out=self._float[1:])
        integral = bool(np.all(values == np.floor(values)))
        if integral and float(np.abs(values).sum()) < 2.0**52:
            return
        mantissa, exponent = np.frexp(values)  # values = mantissa * 2**exponent, |mantissa| < 1
        digits = (mantissa * 2.0**53).astype(np.int64)  # exact: values = digits * 2**(exponent - 53)
        shift = 53 - exponent.astype(np.int64)
        scale = int(shift[digits != 0].max()) if (digits != 0).any() else 0
        if scale > 900:
            # Magnitudes below ~1e-250 would not convert back to float; such counts are not real
            # counts, and the float running total is kept for them.
            return
        scaled = np.left_shift(digits.astype(object), (scale - shift).astype(object))
        self._exact = np.concatenate([np.array([0], dtype=object), np.cumsum(scaled)])
        self._scale = scale

    def between(self, lo: Any, hi: Any) -> np.ndarray:
        """Sums of ``values[lo:hi]`` for index arrays ``lo <= hi`` (within ``0..len``)."""
        if self._exact is None:
            return self._float[hi] - self._float[lo]
        # Python int -> float rounds correctly; the power-of-two scaling is then exact.
        exact = np.asarray(self._exact[hi] - self._exact[lo], dtype=object)
        return np.ldexp(exact.astype(np.float64), -self._scale)


def cell_range(origin_s: int, step_s: int, start_s: Any, end_s: Any) -> tuple[np.ndarray, np.ndarray]:
    """Unclipped indices ``[lo, hi)`` of the grid cells ``[origin + i step, origin + (i+1) step)``
    lying entirely inside ``[start_s, end_s)``; ``hi >= lo`` (an empty range when none fit)."""
    start = np.asarray(start_s, dtype=np.int64) - origin_s
    end = np.asarray(end_s, dtype=np.int64) - origin_s
    lo = -(-start // step_s)  # ceil: a cell that starts before the window is not inside it
    hi = end // step_s
    return lo, np.maximum(hi, lo)
