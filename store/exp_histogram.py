"""Quantiles of merged OTLP exponential histograms, as Prometheus computes them for native histograms.

At scale ``s`` the base is ``2^(2^-s)``; positive bucket ``i`` holds values in ``(base^i, base^(i+1)]``,
negative bucket ``i`` values in ``[-base^(i+1), -base^i)``, and the zero bucket values with
``|x| <= zero_threshold``. The SQL (``store/sql/metrics.py``) has already turned the points into
increases and merged them at one scale; this finishes one step of one series. Formulas:
docs/metrics-api.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence


def _pow2(exponent: float) -> float:
    # Buckets near the ends of the float range: an overflowing bound is infinite, not an error.
    try:
        return 2.0**exponent
    except OverflowError:
        return math.inf


def _buckets(
    scale: int,
    zero_count: float,
    zero_threshold: float,
    pos_index: Sequence[int],
    pos_count: Sequence[float],
    neg_index: Sequence[int],
    neg_count: Sequence[float],
) -> Iterator[tuple[float, float, float, int | None]]:
    """(lower, upper, count, side) in increasing order of value; side is -1, 1, or None for zero."""
    width = 2.0**-scale  # log2 of the base
    has_pos = any(c > 0 for c in pos_count)
    has_neg = any(c > 0 for c in neg_count)
    # Negative buckets: a higher index is further from zero, so they come in decreasing index order.
    for i, count in sorted(zip(neg_index, neg_count, strict=True), reverse=True):
        yield -_pow2((i + 1) * width), -_pow2(i * width), count, -1
    # Prometheus: when only one side has buckets, the zero bucket's other half is empty.
    lower = 0.0 if has_pos and not has_neg else -zero_threshold
    upper = 0.0 if has_neg and not has_pos else zero_threshold
    yield lower, upper, zero_count, None
    for i, count in sorted(zip(pos_index, pos_count, strict=True)):
        yield _pow2(i * width), _pow2((i + 1) * width), count, 1


def quantile(
    q: float,
    scale: int,
    zero_count: float,
    zero_threshold: float,
    pos_index: Sequence[int],
    pos_count: Sequence[float],
    neg_index: Sequence[int],
    neg_count: Sequence[float],
) -> float:
    """The ``q`` quantile (0 ≤ q ≤ 1) of one exponential histogram; NaN when it holds nothing.

    Prometheus' ``histogram_quantile`` for native histograms: rank ``q · N`` over the bucket counts
    (``N`` their total), the first non-empty bucket whose cumulative count reaches the rank, then
    interpolation inside it — exponential (linear in log2) for ordinary buckets, linear in the zero
    bucket. The estimate lies in the same bucket as the true value, so its relative error is at most
    ``base - 1``.
    """
    total = zero_count + sum(pos_count) + sum(neg_count)
    if not total > 0:
        return math.nan
    rank = q * total
    seen = 0.0
    chosen: tuple[float, float, float, int | None] | None = None
    for bucket in _buckets(scale, zero_count, zero_threshold, pos_index, pos_count, neg_index, neg_count):
        count = bucket[2]
        if count <= 0:
            continue
        chosen = bucket
        seen += count
        if seen >= rank:
            break
    if chosen is None:
        return math.nan
    lower, upper, count, side = chosen
    if seen < rank:  # rounding only: the rank lies past the last bucket
        return upper
    fraction = (rank - (seen - count)) / count
    if side is None:
        return lower + (upper - lower) * fraction
    log_lower, log_upper = math.log2(abs(lower)), math.log2(abs(upper))
    if side > 0:
        return _pow2(log_lower + (log_upper - log_lower) * fraction)
    # Mirrored: a negative bucket's fraction counts from its lower (more negative) edge.
    return -_pow2(log_upper + (log_lower - log_upper) * (1 - fraction))
