"""Error budgets: what an SLO has left at an evaluation time, once or for many times at once.

:func:`evaluate` answers for one time with exact rational arithmetic and plain loops: it is the
reference. :func:`evaluate_many` answers for an array of times with prefix sums (a backtest of 30
days at one-minute steps is 43,200 evaluations) and makes every decision (exhausted or not, a slice
good or bad, a burn rate above a factor) exactly as :func:`evaluate` does; its floats agree with
:func:`evaluate`'s to rounding. :class:`Ledger` holds the prefix sums and answers window sums for any
windows, which is what alert rules need. The formulas are in ``docs/slo-semantics.md``.

Units: with ``occurrences`` the budget is in events; with ``timeslices`` and ``ratio_timeslices`` it is
in slices (``total`` = slices with data, ``bad`` = bad slices or the sum of the slices' bad fractions).
When the window holds nothing to judge (no events, or no slice with data) the SLI, budget, consumed,
remaining and time to exhaustion are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from slo.burn_rate import (
    BURN_WINDOWS,
    PrefixSums,
    burn_rate_exact,
    burn_rates,
    cell_range,
    exact_greater,
    exceeds_many,
)
from slo.model import HOUR_S, MINUTE_S, BudgetingMethod, Slo
from slo.series import MinuteCounts
from slo.timeslices import check_slice_s, slice_is_bad, slice_series, slice_target
from slo.windows import WindowBounds, window_bounds, window_bounds_many

BudgetUnit = Literal["events", "slices"]


def _error_budget(slo: Slo) -> Fraction:
    budget = slo.error_budget
    if budget <= 0:
        # An objective of 100% has no budget: every burn rate would divide by zero.
        raise ValueError(f"SLO {slo.name!r}: objective {slo.objective} leaves no error budget")
    return budget


def _unit(method: BudgetingMethod) -> BudgetUnit:
    return "events" if method == "occurrences" else "slices"


@dataclass(frozen=True)
class Evaluation:
    """One SLO instance's budget at ``at_s``. ``None`` marks a value that has no data to stand on."""

    #: The evaluation time T, floored to the minute; the data seen are those before it.
    at_s: int
    #: ``T - W`` (rolling) or the calendar period's start.
    window_start_s: int
    #: The calendar period's end; ``at_s`` for a rolling window.
    period_end_s: int
    calendar: bool
    method: BudgetingMethod
    budget_unit: BudgetUnit
    #: Events in ``[window_start_s, at_s)``, whatever the budgeting method.
    total: float
    bad: float
    #: Attainment: good/total events, or good slices / slices with data (mean slice ratio for ratio).
    sli: float | None
    #: Calendar windows: the events (or slices with data) expected over the whole period.
    expected: float | None
    #: Bad events (or slices) the window may hold.
    budget: float | None
    #: Share of the budget spent; 1 means all of it.
    consumed: float | None
    #: ``1 - consumed``, unclamped: negative when overspent.
    remaining: float | None
    #: ``consumed >= 1``, decided exactly.
    exhausted: bool
    #: Seconds until the budget is gone at the current 1h burn rate: 0 when it already is, ``None``
    #: when nothing burns in the last hour.
    time_to_exhaustion_s: float | None
    #: Burn rate per window label (5m ... 3d and the SLO window's label); ``None`` without data.
    burn_rates: Mapping[str, float | None]
    #: Timeslice methods: complete slices in the window, those with data, their good and bad
    #: shares (whole numbers for ``timeslices``) and those without data; ``None`` for occurrences.
    slices: int | None = None
    data_slices: int | None = None
    good_slices: float | None = None
    bad_slices: float | None = None
    no_data_slices: int | None = None
    #: Attainment met: ``sli >= objective``, decided exactly; ``None`` without data. For a closed
    #: period this is its verdict (and the same as ``consumed <= 1``); for an open one, "so far".
    met: bool | None = None

    @property
    def window_end_s(self) -> int:
        return self.at_s

    @property
    def window_length_s(self) -> int:
        """W for a rolling window, the whole period for a calendar one."""
        return self.period_end_s - self.window_start_s


# -- one evaluation, exactly --------------------------------------------------------------------


def _minute_slice(counts: MinuteCounts, start_s: int, end_s: int) -> slice:
    """The minutes lying entirely inside ``[start_s, end_s)``, clipped to the data."""
    n = len(counts.total)
    lo = min(n, max(0, -(-(start_s - counts.start_s) // MINUTE_S)))
    hi = min(n, max(0, (end_s - counts.start_s) // MINUTE_S))
    return slice(lo, max(lo, hi))


def _event_sums(counts: MinuteCounts, start_s: int, end_s: int) -> tuple[Fraction, Fraction]:
    minutes = _minute_slice(counts, start_s, end_s)
    # fsum is correctly rounded, so integer counts are summed exactly.
    return Fraction(math.fsum(counts.total[minutes])), Fraction(math.fsum(counts.bad[minutes]))


@dataclass(frozen=True)
class _Units:
    total: Fraction  # events, or slices with data
    bad: Fraction
    slices: int | None = None


def _units(slo: Slo, counts: MinuteCounts, start_s: int, end_s: int) -> _Units:
    method = slo.budgeting.method
    if method == "occurrences":
        total, bad = _event_sums(counts, start_s, end_s)
        return _Units(total, bad)
    slice_s = check_slice_s(slo.budgeting.slice_s)
    target = slice_target(slo.budgeting) if method == "timeslices" else None
    first, stop = -(-start_s // slice_s), end_s // slice_s
    data, fractions = 0, []
    for k in range(first, max(first, stop)):
        total, bad = _event_sums(counts, k * slice_s, (k + 1) * slice_s)
        if total == 0:
            continue  # no data: neither numerator nor denominator
        data += 1
        if target is not None:
            fractions.append(1.0 if slice_is_bad(bad, total, target) else 0.0)
        else:
            fractions.append(float(bad) / float(total))
    return _Units(Fraction(data), Fraction(math.fsum(fractions)), max(0, stop - first))


def _slice_count(slice_s: int, start_s: int, end_s: int) -> int:
    return max(0, end_s // slice_s - -(-start_s // slice_s))


def _float(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def evaluate(slo: Slo, counts: MinuteCounts, at_s: float, closing: bool = False) -> Evaluation:
    """The budget of ``slo`` over ``counts`` at ``at_s`` (unix seconds, floored to the minute).

    ``closing``: at a calendar boundary, the period that closes there (see ``window_bounds``).
    """
    error_budget = _error_budget(slo)
    bounds: WindowBounds = window_bounds(slo.window, at_s, closing)
    end = bounds.end_s
    total, bad = _event_sums(counts, bounds.start_s, end)
    units = _units(slo, counts, bounds.start_s, end)
    has_data = units.total > 0

    # Calendar budgets are for the whole period: scale what was seen so far by full / elapsed,
    # measured in seconds (events) or in complete slices (slice methods).
    full, elapsed = 1, 1
    if bounds.calendar and slo.budgeting.method == "occurrences":
        full, elapsed = bounds.length_s, bounds.elapsed_s
    elif bounds.calendar:
        slice_s = slo.budgeting.slice_s
        full = _slice_count(slice_s, bounds.start_s, bounds.period_end_s)
        elapsed = _slice_count(slice_s, bounds.start_s, end)

    sli = expected = budget = consumed = remaining = tte = met = None
    exhausted = False
    if has_data:
        sli = 1 - units.bad / units.total
        met = sli >= slo.target
        expected = units.total * full / elapsed
        budget = error_budget * expected
        consumed = units.bad / budget
        remaining = 1 - consumed
        exhausted = consumed >= 1

    rates: dict[str, Fraction | None] = {}
    hour = None
    for label, window_s in BURN_WINDOWS:
        sums = _units(slo, counts, end - window_s, end)
        rates[label] = burn_rate_exact(sums.bad, sums.total, error_budget)
        if window_s == HOUR_S:
            hour = sums
    rates[slo.window.label] = burn_rate_exact(units.bad, units.total, error_budget)

    if has_data and exhausted:
        tte = Fraction(0)
    elif has_data and hour is not None and hour.bad > 0:
        assert remaining is not None and budget is not None
        if bounds.calendar:
            # The period's budget is a pool of units: what is left over the last hour's bad rate.
            tte = (budget - units.bad) * HOUR_S / hour.bad
        else:
            # Burn rate 1 spends the whole budget in W, so a share r lasts r * W / burn.
            burn_1h = burn_rate_exact(hour.bad, hour.total, error_budget)
            assert burn_1h is not None
            tte = remaining * bounds.length_s / burn_1h

    slice_fields: dict[str, Any] = {}
    if units.slices is not None:
        data = int(units.total)
        slice_fields = {
            "slices": units.slices,
            "data_slices": data,
            "good_slices": float(units.total - units.bad),
            "bad_slices": float(units.bad),
            "no_data_slices": units.slices - data,
        }
    return Evaluation(
        at_s=end,
        window_start_s=bounds.start_s,
        period_end_s=bounds.period_end_s,
        calendar=bounds.calendar,
        method=slo.budgeting.method,
        budget_unit=_unit(slo.budgeting.method),
        total=float(total),
        bad=float(bad),
        sli=_float(sli),
        expected=_float(expected),
        budget=_float(budget),
        consumed=_float(consumed),
        remaining=_float(remaining),
        exhausted=exhausted,
        time_to_exhaustion_s=_float(tte),
        burn_rates={label: _float(rate) for label, rate in rates.items()},
        met=met,
        **slice_fields,
    )


# -- many evaluations, with prefix sums ---------------------------------------------------------


@dataclass(frozen=True)
class WindowSums:
    """Sums over one window per evaluation time, in budget units (see the module docstring)."""

    total: np.ndarray
    bad: np.ndarray
    #: Timeslice methods: complete slices in the window, with or without data.
    slices: np.ndarray | None = None

    def burn_rate(self, error_budget: Fraction) -> np.ndarray:
        """Burn rates, NaN where the window has nothing to judge."""
        return burn_rates(self.bad, self.total, error_budget)

    def exceeds(self, error_budget: Fraction, factor: Fraction) -> np.ndarray:
        """Exactly where the burn rate is strictly above ``factor`` (the alert-rule test)."""
        return exceeds_many(self.bad, self.total, error_budget, factor)


class Ledger:
    """Prefix sums of one SLO instance's counts, built once and asked about any windows.

    ``events`` sums events; ``units`` sums what the budget counts (events, or slices). Windows are
    given as arrays of ``[start_s, end_s)``; only whole minutes (whole slices) inside count.
    """

    def __init__(self, slo: Slo, counts: MinuteCounts) -> None:
        self.slo = slo
        self.error_budget = _error_budget(slo)
        self._start_s = counts.start_s
        self._minutes = len(counts.total)
        self._total = PrefixSums(counts.total)
        self._bad = PrefixSums(counts.bad)
        self._slices = None
        if slo.budgeting.method != "occurrences":
            series = slice_series(counts, slo.budgeting)
            self._slices = series
            self._data = PrefixSums(series.has_data.astype(np.float64))
            self._bad_fraction = PrefixSums(series.bad_fraction)

    def events(self, start_s: Any, end_s: Any) -> WindowSums:
        """Events and bad events in each window."""
        lo, hi = cell_range(self._start_s, MINUTE_S, start_s, end_s)
        lo, hi = np.clip(lo, 0, self._minutes), np.clip(hi, 0, self._minutes)
        return WindowSums(self._total.between(lo, hi), self._bad.between(lo, hi))

    def units(self, start_s: Any, end_s: Any) -> WindowSums:
        """What the budget counts in each window: events, or slices with data and bad slices."""
        series = self._slices
        if series is None:
            return self.events(start_s, end_s)
        lo, hi = cell_range(series.origin_s, series.slice_s, start_s, end_s)
        count = len(series.total)
        lo_c, hi_c = np.clip(lo, 0, count), np.clip(hi, 0, count)
        return WindowSums(self._data.between(lo_c, hi_c), self._bad_fraction.between(lo_c, hi_c), hi - lo)

    def burn_windows(self, times_s: Any, windows_s: Any) -> dict[int, WindowSums]:
        """For alert rules: sums in budget units over ``[T - W, T)`` for each window W (seconds)
        and each time T (floored to the minute). ``.burn_rate()`` / ``.exceeds()`` on each."""
        end = np.asarray(times_s, dtype=np.int64) // MINUTE_S * MINUTE_S
        return {int(w): self.units(end - int(w), end) for w in windows_s}


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class Evaluations:
    """:class:`Evaluation` fields as columns, one row per evaluation time; NaN stands for ``None``."""

    calendar: bool
    method: BudgetingMethod
    budget_unit: BudgetUnit
    at_s: np.ndarray
    window_start_s: np.ndarray
    period_end_s: np.ndarray
    total: np.ndarray
    bad: np.ndarray
    sli: np.ndarray
    expected: np.ndarray
    budget: np.ndarray
    consumed: np.ndarray
    remaining: np.ndarray
    exhausted: np.ndarray
    time_to_exhaustion_s: np.ndarray
    burn_rates: Mapping[str, np.ndarray]
    #: ``sli >= objective`` decided exactly; False where there is no data (see ``has_data``).
    met: np.ndarray | None = None
    slices: np.ndarray | None = None
    data_slices: np.ndarray | None = None
    no_data_slices: np.ndarray | None = None
    good_slices: np.ndarray | None = None
    bad_slices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.at_s)

    def at(self, i: int) -> Evaluation:
        """Row ``i`` as an :class:`Evaluation`."""
        slice_fields: dict[str, Any] = {}
        if self.slices is not None:
            assert self.data_slices is not None and self.no_data_slices is not None
            assert self.good_slices is not None and self.bad_slices is not None
            slice_fields = {
                "slices": int(self.slices[i]),
                "data_slices": int(self.data_slices[i]),
                "good_slices": float(self.good_slices[i]),
                "bad_slices": float(self.bad_slices[i]),
                "no_data_slices": int(self.no_data_slices[i]),
            }
        return Evaluation(
            at_s=int(self.at_s[i]),
            window_start_s=int(self.window_start_s[i]),
            period_end_s=int(self.period_end_s[i]),
            calendar=self.calendar,
            method=self.method,
            budget_unit=self.budget_unit,
            total=float(self.total[i]),
            bad=float(self.bad[i]),
            sli=_none_if_nan(self.sli[i]),
            expected=_none_if_nan(self.expected[i]),
            budget=_none_if_nan(self.budget[i]),
            consumed=_none_if_nan(self.consumed[i]),
            remaining=_none_if_nan(self.remaining[i]),
            exhausted=bool(self.exhausted[i]),
            time_to_exhaustion_s=_none_if_nan(self.time_to_exhaustion_s[i]),
            burn_rates={label: _none_if_nan(rates[i]) for label, rates in self.burn_rates.items()},
            met=None if self.met is None or math.isnan(self.sli[i]) else bool(self.met[i]),
            **slice_fields,
        )


def evaluate_many(
    slo: Slo, counts: MinuteCounts, times_s: Any, ledger: Ledger | None = None, closing: bool = False
) -> Evaluations:
    """:func:`evaluate` at every time in ``times_s`` (floored to the minute), vectorised.

    Pass a :class:`Ledger` built for the same ``slo`` and ``counts`` to share its prefix sums with
    alert-rule windows. ``closing`` is :func:`evaluate`'s.
    """
    ledger = ledger or Ledger(slo, counts)
    error_budget = ledger.error_budget
    p, q = error_budget.numerator, error_budget.denominator
    start, end, period_end = window_bounds_many(slo.window, times_s, closing)
    events = ledger.events(start, end)
    units = ledger.units(start, end)
    calendar = slo.window.is_calendar
    method = slo.budgeting.method

    if not calendar:
        full: Any = np.ones_like(end)
        elapsed: Any = np.ones_like(end)
    elif method == "occurrences":
        full, elapsed = period_end - start, end - start
    else:
        slice_s = slo.budgeting.slice_s
        lo, hi = cell_range(0, slice_s, start, period_end)
        full = hi - lo
        lo, hi = cell_range(0, slice_s, start, end)
        elapsed = hi - lo

    has_data = units.total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        sli = np.where(has_data, (units.total - units.bad) / units.total, np.nan)
        expected = np.where(has_data, units.total * full / elapsed, np.nan)
        budget = expected * p / q
        consumed = np.where(has_data, (units.bad * q * elapsed) / (units.total * p * full), np.nan)
    remaining = 1 - consumed
    # consumed >= 1  <=>  bad * q * elapsed >= total * p * full; Python ints so nothing overflows.
    full_o, elapsed_o = np.asarray(full, dtype=object), np.asarray(elapsed, dtype=object)
    exhausted = has_data & ~exact_greater(units.total, full_o * p, units.bad, elapsed_o * q)
    # sli >= objective  <=>  bad / total <= p / q  <=>  not bad * q > total * p.
    met = has_data & ~exact_greater(units.bad, q, units.total, p)

    rates: dict[str, np.ndarray] = {}
    hour = None
    for label, window_s in BURN_WINDOWS:
        sums = ledger.units(end - window_s, end)
        rates[label] = sums.burn_rate(error_budget)
        if window_s == HOUR_S:
            hour = sums
    assert hour is not None
    rates[slo.window.label] = units.burn_rate(error_budget)

    burning = has_data & ~exhausted & (hour.bad > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if calendar:
            tte = (budget - units.bad) * HOUR_S / hour.bad
        else:
            tte = remaining * (end - start) / rates["1h"]
    tte = np.where(burning, tte, np.nan)
    tte = np.where(exhausted, 0.0, tte)

    slice_fields: dict[str, Any] = {}
    if units.slices is not None:
        slice_fields = {
            "slices": units.slices,
            "data_slices": units.total.astype(np.int64),
            "no_data_slices": units.slices - units.total.astype(np.int64),
            "good_slices": units.total - units.bad,
            "bad_slices": units.bad,
        }
    return Evaluations(
        calendar=calendar,
        method=method,
        budget_unit=_unit(method),
        at_s=end,
        window_start_s=start,
        period_end_s=period_end,
        total=events.total,
        bad=events.bad,
        sli=sli,
        expected=expected,
        budget=budget,
        consumed=consumed,
        remaining=remaining,
        exhausted=exhausted,
        time_to_exhaustion_s=tte,
        burn_rates=rates,
        met=met,
        **slice_fields,
    )
