"""Where an SLO window lies at an evaluation time: rolling ``[T - W, T)`` or the current calendar period.

All times are unix seconds. The evaluation time ``T`` is floored to the minute first
(:func:`floor_minute`): the data are per-minute counts, so an evaluation at 12:00:30 sees exactly what
one at 12:00:00 sees, and the minute that started at 12:00 is left out because it is not over yet.

Calendar periods (ISO week from Monday 00:00, month, quarter) are computed in the window's IANA time
zone with :mod:`zoneinfo`, so they follow its DST rules: a Europe/Berlin March is 31 days minus one
hour long, the week of the October change 7 days plus one hour. A period starts at local midnight of
its first day; where that midnight does not exist (a zone that springs forward at 00:00) the period
starts at the first instant of that day, and where it exists twice, at the first of the two.

A closed period's final result is the evaluation at the instant it closed, over that period exactly
(``closing=True``, :func:`previous_close_s`); for a rolling window the "previous period" is the
window that ended where the current one starts (``docs/slo-semantics.md``, "Closed periods").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from slo.model import MINUTE_S, CalendarUnit, Window


def floor_minute(t_s: float) -> int:
    """``t_s`` rounded down to a whole minute (unix seconds)."""
    return int(t_s // MINUTE_S) * MINUTE_S


@dataclass(frozen=True)
class WindowBounds:
    """The part of an SLO window that an evaluation at ``end_s`` covers.

    Rolling: ``[end_s - W, end_s)`` with ``period_end_s == end_s``. Calendar: the period
    ``[start_s, period_end_s)`` contains ``end_s`` and the evaluation covers ``[start_s, end_s)``.
    """

    start_s: int
    #: The evaluation time T (exclusive end of the data seen).
    end_s: int
    period_end_s: int
    calendar: bool

    @property
    def length_s(self) -> int:
        """The full window: W for a rolling window, the whole period for a calendar one."""
        return self.period_end_s - self.start_s

    @property
    def elapsed_s(self) -> int:
        """Seconds of the window that lie before T (equals ``length_s`` for rolling windows)."""
        return self.end_s - self.start_s


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_midnight_s(day: date, tz: ZoneInfo) -> int:
    # fold=0: for a nonexistent midnight this uses the offset before the jump, which lands on the
    # first instant of the day; for a repeated midnight it picks the earlier one (PEP 495).
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())


def _first_days(unit: CalendarUnit, local: date) -> tuple[date, date]:
    """First day of the period holding ``local`` and first day of the next one."""
    if unit == "week":
        start = local - timedelta(days=local.weekday())  # ISO weeks start on Monday
        return start, start + timedelta(days=7)
    months = 1 if unit == "month" else 3
    first_month = (local.month - 1) // months * months + 1
    start = date(local.year, first_month, 1)
    following = first_month - 1 + months
    return start, date(local.year + following // 12, following % 12 + 1, 1)


def calendar_period(unit: CalendarUnit, time_zone: str, t_s: float) -> tuple[int, int]:
    """``(start_s, end_s)`` of the week, month or quarter in ``time_zone`` with start <= t_s < end."""
    tz = _zone(time_zone)
    first, following = _first_days(unit, datetime.fromtimestamp(t_s, tz).date())
    return _local_midnight_s(first, tz), _local_midnight_s(following, tz)


def _check_rolling(window: Window) -> int:
    rolling_s = window.rolling_s or 0
    if rolling_s <= 0 or rolling_s % MINUTE_S:
        # The data are per-minute counts: a window of 90s cannot be answered honestly.
        raise ValueError(f"a rolling window must be a positive whole number of minutes, got {rolling_s}s")
    return rolling_s


def window_bounds(window: Window, t_s: float, closing: bool = False) -> WindowBounds:
    """The window of an evaluation at ``t_s`` (floored to the minute).

    ``closing``: an evaluation exactly at a calendar boundary covers the period that ends there
    (complete) rather than the one that starts there (empty). That is the final evaluation of a
    closed period; rolling windows are the same either way.
    """
    end_s = floor_minute(t_s)
    if window.calendar is None:
        return WindowBounds(end_s - _check_rolling(window), end_s, end_s, calendar=False)
    # Boundaries are whole seconds, so the second before T lies in T's period unless T is a boundary.
    start_s, period_end_s = calendar_period(window.calendar, window.time_zone, end_s - 1 if closing else end_s)
    return WindowBounds(start_s, end_s, period_end_s, calendar=True)


def previous_close_s(window: Window, t_s: float) -> int:
    """When the period before the one of an evaluation at ``t_s`` closed: the current window's start.

    Calendar: the start of the current week, month or quarter; the previous period is the one before
    it, complete. Rolling: ``T - W``; the previous window is the one that ended where the current one
    starts, ``[T - 2W, T - W)``, so the two never overlap. Evaluate at this instant with
    ``closing=True`` to get the previous period's final result.
    """
    # Calendar boundaries of the zones in use are whole minutes (offsets are whole minutes since the
    # 1970s); flooring keeps evaluation times on the minute grid regardless.
    return floor_minute(window_bounds(window, t_s).start_s)


def previous_period(window: Window, t_s: float) -> WindowBounds:
    """The period before the one of an evaluation at ``t_s``, complete: ``start_s`` to ``end_s``
    (the instant it closed, :func:`previous_close_s`)."""
    return window_bounds(window, previous_close_s(window, t_s), closing=True)


def window_bounds_many(
    window: Window, times_s: np.ndarray, closing: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`window_bounds`: int64 arrays ``(start_s, end_s, period_end_s)``.

    Calendar periods are found once per period between the earliest and latest time and looked up
    with a binary search, so 43,200 times over a month cost a handful of zoneinfo calls.
    """
    end_s = np.asarray(times_s, dtype=np.int64) // MINUTE_S * MINUTE_S
    if window.calendar is None:
        return end_s - _check_rolling(window), end_s, end_s.copy()
    if end_s.size == 0:
        return end_s.copy(), end_s, end_s.copy()
    # Closing: a time on a boundary belongs to the period before it, as the second before it does.
    lookup = end_s - 1 if closing else end_s
    first, boundary = calendar_period(window.calendar, window.time_zone, int(lookup.min()))
    boundaries = [first, boundary]
    latest = int(lookup.max())
    while boundary <= latest:
        boundary = calendar_period(window.calendar, window.time_zone, boundary)[1]
        boundaries.append(boundary)
    edges = np.asarray(boundaries, dtype=np.int64)
    period = np.searchsorted(edges, lookup, side="right") - 1
    return edges[period], end_s, edges[period + 1]
