"""Burn rates of an SLO's alert rules over a span of time: what the incident page draws.

For each instance (group value) asked for, each rule of the SLO's policy gets its long and short
window burn rates and whether it fired, at evenly spaced whole minutes of the span, decided exactly as
the evaluator decides them (:func:`slo.evaluator.rule_arrays` over one store read). Unlike a full
backtest (:func:`slo.evaluator.backtest`), it reads only the rules' windows before the span, not the
SLO's whole window: an incident of a 30-day SLO needs hours of counts, not a month.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from slo import evaluator, sli
from slo.budget import Ledger
from slo.model import MINUTE_S, Slo
from slo.series import MinuteCounts
from slo.windows import floor_minute
from store.backend import Backend

Group = tuple[tuple[str, str], ...]

#: About this many instants per span: a readable table and a smooth enough line.
POINTS = 90
#: The span is widened before its start by a quarter of its length, within these bounds, so the
#: burn rates can be seen rising before the alert fired.
MIN_MARGIN_S = 15 * MINUTE_S
MAX_MARGIN_S = 6 * 3600


@dataclass(frozen=True)
class RuleSeries:
    """One alert rule at every instant: burn rates (None: no events in the window) and firing."""

    label: str
    severity: str
    long_s: int
    short_s: int
    factor: float
    long_burn_rate: list[float | None]
    short_burn_rate: list[float | None]
    firing: list[bool]

    @property
    def peak_long(self) -> float | None:
        return max((v for v in self.long_burn_rate if v is not None), default=None)

    @property
    def peak_short(self) -> float | None:
        return max((v for v in self.short_burn_rate if v is not None), default=None)

    @property
    def fired(self) -> bool:
        """Whether the rule fired at any instant of the span."""
        return any(self.firing)


@dataclass(frozen=True)
class BurnHistory:
    """The rules of one SLO instance over ``times_s`` (unix seconds, whole minutes, ``step_s`` apart)."""

    slo: str
    group: Group
    times_s: list[int]
    step_s: int
    rules: list[RuleSeries]


def span_with_margin(opened_s: int, closed_s: int | None, now_s: int) -> tuple[int, int]:
    """The span to show for an incident open from ``opened_s`` to ``closed_s`` (None: still open,
    up to ``now_s``), widened before its start: whole minutes ``(start_s, end_s)``."""
    end = floor_minute(min(closed_s, now_s) if closed_s is not None else now_s)
    end = max(end, floor_minute(opened_s))
    margin = min(MAX_MARGIN_S, max(MIN_MARGIN_S, (end - opened_s) // 4))
    return floor_minute(opened_s - margin), end


def step_s(start_s: int, end_s: int, points: int = POINTS) -> int:
    """A whole number of minutes giving at most about ``points`` instants over ``[start_s, end_s]``."""
    return max(MINUTE_S, math.ceil((end_s - start_s) / max(1, points) / MINUTE_S) * MINUTE_S)


def burn_history(
    backend: Backend,
    slo: Slo,
    start_s: int,
    end_s: int,
    groups: Iterable[Group] | None = None,
    points: int = POINTS,
) -> list[BurnHistory]:
    """Every rule's burn rates of ``slo`` from ``start_s`` to ``end_s`` (inclusive, floored to
    minutes), for the instances ``groups`` (label pairs; None: every instance with data).

    An instance asked for that had no events in the range gets series of None (no data), so the
    caller can still say so. A span longer than ``points`` steps is sampled ``step_s`` apart, and the
    end is always one of the instants."""
    first, last = floor_minute(start_s), floor_minute(end_s)
    if last < first:
        raise ValueError(f"the end of the span ({end_s}) is before its start ({start_s})")
    step = step_s(first, last, points)
    times = np.unique(np.append(np.arange(first, last + 1, step, dtype=np.int64), last))
    rules = evaluator.policy(slo).rules
    reach = max((w for r in rules for w in (r.long_s, r.short_s)), default=MINUTE_S)
    # Slices of a timeslices budget start at multiples of the slice length (as evaluator.data_start_s).
    align = slo.budgeting.slice_s if slo.budgeting.method != "occurrences" else MINUTE_S
    data_start = (first - reach) // align * align
    counts = sli.minute_counts(backend, slo, data_start, last)
    if groups is None:
        keys = sorted(counts)
    else:
        keys = list(dict.fromkeys(tuple(dict(g).get(k, "") for k in slo.group_by) for g in groups))
    out = []
    for key in keys:
        found = counts.get(key) or MinuteCounts.empty(data_start, last)
        arrays = evaluator.rule_arrays(slo, Ledger(slo, found), times)
        out.append(
            BurnHistory(
                slo.name,
                tuple(zip(slo.group_by, key, strict=True)),
                [int(t) for t in times],
                step,
                [
                    RuleSeries(
                        evaluator.rule_label(a.rule),
                        a.rule.severity,
                        a.rule.long_s,
                        a.rule.short_s,
                        float(a.rule.factor),
                        _values(a.long_burn_rate),
                        _values(a.short_burn_rate),
                        [bool(f) for f in a.firing.tolist()],
                    )
                    for a in arrays
                ],
            )
        )
    return out


def _values(array: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in array.tolist()]
