"""Budgets, burn rates and windows against hand-computed answers (docs/slo-semantics.md).

Pure arithmetic over MinuteCounts: no store. Each stream below is small enough to check on paper;
the numbers in the comments are the hand computation.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from slo.budget import Evaluation, Ledger, evaluate, evaluate_many
from slo.burn_rate import PrefixSums, burn_rate, exact_greater, exceeds, exceeds_many
from slo.model import DAY_S, HOUR_S, MINUTE_S, Budgeting, SpanSli, Window, default_rules
from slo.model import Slo as SloModel
from slo.series import MinuteCounts
from slo.windows import calendar_period, floor_minute, window_bounds, window_bounds_many


def utc(text: str) -> int:
    """``2024-03-10T23:00`` (UTC) as unix seconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def make_slo(objective: str, window: Window, budgeting: Budgeting | None = None) -> SloModel:
    return SloModel(
        name="checkout",
        service="shop",
        objective=Decimal(objective),
        sli=SpanSli(bad_error=True),
        window=window,
        budgeting=budgeting or Budgeting(),
    )


class Stream:
    """Per-minute counts built by setting minute ranges, relative to a start time."""

    def __init__(self, start_s: int, minutes: int) -> None:
        self.start_s = start_s
        self.total = np.zeros(minutes)
        self.bad = np.zeros(minutes)

    def set(self, from_s: int, to_s: int, total: float, bad: float) -> Stream:
        lo, hi = (from_s - self.start_s) // MINUTE_S, (to_s - self.start_s) // MINUTE_S
        self.total[lo:hi] = total
        self.bad[lo:hi] = bad
        return self

    def counts(self) -> MinuteCounts:
        return MinuteCounts(self.start_s, self.total.copy(), self.bad.copy())


BASE = utc("2024-01-10T00:00")


def test_floor_minute_and_rolling_bounds() -> None:
    assert floor_minute(BASE + 59.9) == BASE
    bounds = window_bounds(Window(rolling_s=DAY_S), BASE + 30)
    assert (bounds.start_s, bounds.end_s, bounds.period_end_s) == (BASE - DAY_S, BASE, BASE)
    assert bounds.length_s == bounds.elapsed_s == DAY_S
    with pytest.raises(ValueError, match="whole number of minutes"):
        window_bounds(Window(rolling_s=90), BASE)


# -- occurrences, rolling ----------------------------------------------------------------------


def rolling_day_stream() -> MinuteCounts:
    # Two days: the first is all bad (outside the window, must not count), then 100 events a minute
    # with 60 bad events in the window's first hour and 1 bad a minute in the last 12 minutes.
    stream = Stream(BASE - 2 * DAY_S, 2 * 24 * 60 + 10)
    stream.set(BASE - 2 * DAY_S, BASE - DAY_S, total=100, bad=100)
    stream.set(BASE - DAY_S, BASE + 10 * MINUTE_S, total=100, bad=0)
    stream.set(BASE - DAY_S, BASE - DAY_S + 60 * MINUTE_S, total=100, bad=1)
    stream.set(BASE - 12 * MINUTE_S, BASE, total=100, bad=1)
    # The minute starting at T is not over at T: it must not count.
    stream.set(BASE, BASE + 10 * MINUTE_S, total=100, bad=100)
    return stream.counts()


def test_occurrences_rolling_by_hand() -> None:
    slo = make_slo("99.9", Window(rolling_s=DAY_S))
    result = evaluate(slo, rolling_day_stream(), BASE + 45)  # floored to BASE
    assert result.at_s == BASE and result.window_start_s == BASE - DAY_S
    assert result.total == 144_000 and result.bad == 72
    # budget = 0.001 * 144000 = 144 events; consumed = 72 / 144.
    assert result.budget == pytest.approx(144)
    assert result.consumed == 0.5 and result.remaining == 0.5 and not result.exhausted
    assert result.sli == 1 - 72 / 144_000
    assert result.burn_rates["5m"] == 10  # 5 / 500 / 0.001
    assert result.burn_rates["30m"] == 4  # 12 / 3000 / 0.001
    assert result.burn_rates["1h"] == 2  # 12 / 6000 / 0.001
    assert result.burn_rates["1d"] == 0.5  # 72 / 144000 / 0.001
    # The 3d window reaches the all-bad day: (72 + 144000) / 288000 / 0.001.
    assert result.burn_rates["3d"] == pytest.approx((72 + 144_000) / 288_000 / 0.001)
    # Time to exhaustion: remaining * W / burn_1h = 0.5 * 86400 / 2.
    assert result.time_to_exhaustion_s == 21_600


def test_overspent_budget_is_negative_and_exhausted() -> None:
    stream = Stream(BASE - HOUR_S, 60).set(BASE - HOUR_S, BASE, total=1000, bad=3)
    slo = make_slo("99.9", Window(rolling_s=HOUR_S))
    result = evaluate(slo, stream.counts(), BASE)
    # budget = 60 events; bad = 180; consumed 3; remaining -2 (unclamped).
    assert result.consumed == 3 and result.remaining == -2 and result.exhausted
    assert result.time_to_exhaustion_s == 0


def test_budget_spent_to_the_last_event_is_exhausted() -> None:
    stream = Stream(BASE - HOUR_S, 60).set(BASE - HOUR_S, BASE, total=1000, bad=1)
    result = evaluate(make_slo("99.9", Window(rolling_s=HOUR_S)), stream.counts(), BASE)
    # budget = 0.001 * 60000 = 60 events, all 60 spent: consumed is exactly 1.
    assert result.consumed == 1 and result.remaining == 0 and result.exhausted
    assert result.time_to_exhaustion_s == 0
    many = evaluate_many(make_slo("99.9", Window(rolling_s=HOUR_S)), stream.counts(), [BASE])
    assert many.exhausted[0] and many.time_to_exhaustion_s[0] == 0


def test_time_to_exhaustion_none_when_nothing_burns() -> None:
    stream = Stream(BASE - DAY_S, 24 * 60).set(BASE - DAY_S, BASE, total=10, bad=0)
    stream.set(BASE - DAY_S, BASE - DAY_S + MINUTE_S, total=10, bad=1)
    result = evaluate(make_slo("99", Window(rolling_s=DAY_S)), stream.counts(), BASE)
    assert result.burn_rates["1h"] == 0 and result.time_to_exhaustion_s is None
    assert result.remaining == pytest.approx(1 - 1 / 144)


def test_no_data_gives_none() -> None:
    counts = MinuteCounts.empty(BASE - DAY_S, BASE)
    result = evaluate(make_slo("99", Window(rolling_s=DAY_S)), counts, BASE)
    assert result.total == 0
    assert result.sli is None and result.budget is None and result.consumed is None
    assert result.remaining is None and result.time_to_exhaustion_s is None and not result.exhausted
    assert set(result.burn_rates.values()) == {None}


def test_traffic_that_varies_by_hour_is_weighted_by_traffic() -> None:
    # Hour 1: 1000 events a minute, 1 bad (0.1%). Hour 2: 10 events a minute, 1 bad (10%).
    stream = Stream(BASE - 2 * HOUR_S, 120)
    stream.set(BASE - 2 * HOUR_S, BASE - HOUR_S, total=1000, bad=1)
    stream.set(BASE - HOUR_S, BASE, total=10, bad=1)
    result = evaluate(make_slo("99.9", Window(rolling_s=2 * HOUR_S)), stream.counts(), BASE)
    # Ratio of sums: 120 bad / 60600 total / 0.001 = 200/101. The mean of the per-minute ratios,
    # (0.001 + 0.1) / 2 / 0.001 = 50.5, is the wrong answer this test exists to catch.
    assert result.burn_rates["2h"] == float(Fraction(200, 101))
    assert result.burn_rates["2h"] != pytest.approx(50.5)
    assert result.burn_rates["1h"] == 100
    assert result.sli == pytest.approx(1 - 120 / 60_600)


# -- calendar windows --------------------------------------------------------------------------


def test_berlin_march_is_31_days_minus_one_hour() -> None:
    start, end = calendar_period("month", "Europe/Berlin", utc("2024-03-15T12:00"))
    assert start == utc("2024-02-29T23:00")  # 1 March 00:00 CET
    assert end == utc("2024-03-31T22:00")  # 1 April 00:00 CEST
    assert end - start == 31 * DAY_S - HOUR_S
    october = calendar_period("month", "Europe/Berlin", utc("2024-10-15T12:00"))
    assert october[1] - october[0] == 31 * DAY_S + HOUR_S
    # After the change: 30.5 local days have passed, one hour of them skipped.
    bounds = window_bounds(Window(calendar="month", time_zone="Europe/Berlin"), utc("2024-03-31T10:00"))
    assert bounds.elapsed_s == 30 * DAY_S + 11 * HOUR_S


def test_iso_week_boundaries_in_berlin() -> None:
    window = Window(calendar="week", time_zone="Europe/Berlin")
    sunday_late = window_bounds(window, utc("2024-10-27T22:59"))  # Sunday 23:59 CET
    assert sunday_late.start_s == utc("2024-10-20T22:00")  # Monday 21 Oct 00:00 CEST
    assert sunday_late.period_end_s == utc("2024-10-27T23:00")  # Monday 28 Oct 00:00 CET
    assert sunday_late.length_s == 7 * DAY_S + HOUR_S
    monday = window_bounds(window, utc("2024-10-27T23:00"))
    assert monday.start_s == utc("2024-10-27T23:00") and monday.elapsed_s == 0
    assert monday.length_s == 7 * DAY_S


def test_quarter_boundaries_in_non_utc_zones() -> None:
    # Asia/Kolkata is UTC+05:30 all year: Q1 2024 (a leap year) is 91 days.
    q1 = calendar_period("quarter", "Asia/Kolkata", utc("2024-03-31T18:29"))
    assert q1 == (utc("2023-12-31T18:30"), utc("2024-03-31T18:30"))
    q2 = calendar_period("quarter", "Asia/Kolkata", utc("2024-03-31T18:30"))
    assert q2 == (utc("2024-03-31T18:30"), utc("2024-06-30T18:30"))
    # New York Q4 2024: 1 Oct 00:00 EDT to 1 Jan 00:00 EST, 92 days and the November hour.
    q4 = calendar_period("quarter", "America/New_York", utc("2024-12-31T23:00"))
    assert q4 == (utc("2024-10-01T04:00"), utc("2025-01-01T05:00"))
    assert q4[1] - q4[0] == 92 * DAY_S + HOUR_S


def test_period_starting_at_a_skipped_midnight() -> None:
    # Paraguay sprang forward at 00:00 on Sunday 1 October 2017: the month starts at 01:00 -03.
    start, end = calendar_period("month", "America/Asuncion", utc("2017-10-15T00:00"))
    assert start == utc("2017-10-01T04:00") and end == utc("2017-11-01T03:00")
    assert end - start == 31 * DAY_S - HOUR_S


def test_window_bounds_many_matches_one_at_a_time() -> None:
    window = Window(calendar="month", time_zone="Europe/Berlin")
    times = np.array([utc("2024-02-29T22:59"), utc("2024-02-29T23:00"), utc("2024-03-31T21:59:30"),
                      utc("2024-03-31T22:00"), utc("2024-06-01T00:00")])
    starts, ends, period_ends = window_bounds_many(window, times)
    for i, t in enumerate(times):
        bounds = window_bounds(window, int(t))
        assert (starts[i], ends[i], period_ends[i]) == (bounds.start_s, bounds.end_s, bounds.period_end_s)


def berlin_march_stream() -> tuple[MinuteCounts, int]:
    """Ten days into March (Berlin): 10 events a minute; 2229 bad events, 60 of them in the last hour."""
    start = utc("2024-02-20T00:00")
    at = utc("2024-03-10T23:00")  # 11 March 00:00 CET: 10 days = 864,000 s since the period start
    period_start = utc("2024-02-29T23:00")
    stream = Stream(start, (at - start) // MINUTE_S + 60)
    stream.set(start, at + HOUR_S, total=10, bad=0)
    stream.set(start, period_start, total=10, bad=10)  # February: before the period, not counted
    stream.set(period_start, period_start + 216 * MINUTE_S, total=10, bad=10)  # 2160 bad
    stream.set(period_start + 216 * MINUTE_S, period_start + 217 * MINUTE_S, total=10, bad=9)  # +9
    stream.set(at - HOUR_S, at, total=10, bad=1)  # +60 in the last hour
    stream.set(at, at + HOUR_S, total=10, bad=10)  # after T: not seen
    return stream.counts(), at


def test_calendar_month_budget_uses_expected_total_for_the_period() -> None:
    counts, at = berlin_march_stream()
    slo = make_slo("99", Window(calendar="month", time_zone="Europe/Berlin"))
    result = evaluate(slo, counts, at)
    assert result.window_length_s == 2_674_800  # 31 days minus an hour
    assert result.total == 144_000 and result.bad == 2229
    # expected = 144000 events / 864000 s * 2674800 s = 445800; budget = 0.01 * 445800 = 4458.
    assert result.expected == 445_800
    assert result.budget == 4458
    assert result.consumed == 0.5 and result.remaining == 0.5
    assert result.burn_rates["month"] == pytest.approx(2229 / 144_000 / 0.01)
    assert result.burn_rates["1h"] == 10  # 60 / 600 / 0.01
    # Calendar time to exhaustion: budget left over the last hour's bad rate,
    # (4458 - 2229) bad events / (60 bad / 3600 s) = 133,740 s.
    assert result.time_to_exhaustion_s == 133_740


def test_calendar_period_start_has_no_data_yet() -> None:
    counts, _ = berlin_march_stream()
    slo = make_slo("99", Window(calendar="month", time_zone="Europe/Berlin"))
    result = evaluate(slo, counts, utc("2024-02-29T23:00"))
    assert result.window_start_s == result.at_s and result.total == 0
    assert result.budget is None and result.remaining is None and result.burn_rates["month"] is None


# -- timeslices --------------------------------------------------------------------------------


def slice_stream() -> Stream:
    """One hour of 5-minute slices ending at BASE (slices 0..11), and an empty hour before it.

    slices 0, 1: no events; 2, 3 and 11: 20% bad; 5: exactly 10% bad (good ratio 0.9 = target);
    the others: no bad events.
    """
    hour = BASE - HOUR_S
    stream = Stream(BASE - 2 * HOUR_S, 120)
    stream.set(hour + 2 * 300, BASE, total=10, bad=0)
    stream.set(hour + 2 * 300, hour + 4 * 300, total=10, bad=2)
    stream.set(hour + 5 * 300, hour + 6 * 300, total=10, bad=1)
    stream.set(hour + 11 * 300, BASE, total=10, bad=2)
    return stream


def test_timeslices_with_no_data_slices() -> None:
    slo = make_slo("80", Window(rolling_s=HOUR_S), Budgeting("timeslices", 300, Fraction(9, 10)))
    result = evaluate(slo, slice_stream().counts(), BASE)
    assert (result.slices, result.data_slices, result.no_data_slices) == (12, 10, 2)
    assert (result.good_slices, result.bad_slices) == (7, 3)  # the slice exactly at target is good
    assert result.budget_unit == "slices" and result.sli == 0.7
    # budget = 0.2 * 10 slices = 2; consumed = 3 / 2.
    assert result.budget == 2 and result.consumed == 1.5 and result.remaining == -0.5
    assert result.burn_rates["1h"] == 1.5  # 3/10 / 0.2
    assert result.burn_rates["30m"] == pytest.approx(5 / 6)  # slices 6..11: 1 bad of 6
    assert result.burn_rates["5m"] == 5  # slice 11 alone
    assert result.burn_rates["2h"] == 1.5  # the earlier hour has no data: excluded
    assert result.time_to_exhaustion_s == 0
    # Events are still reported as events.
    assert result.total == 10 * 5 * 10 and result.bad == 20 + 5 + 10


def test_timeslices_only_complete_slices_count() -> None:
    slo = make_slo("80", Window(rolling_s=HOUR_S), Budgeting("timeslices", 300, Fraction(9, 10)))
    # At BASE + 2m the slice that began at BASE is not over; [T - 1h, T) holds slices 1..11 whole.
    result = evaluate(slo, slice_stream().counts(), BASE + 2 * MINUTE_S)
    assert (result.slices, result.data_slices, result.no_data_slices) == (11, 10, 1)
    assert result.bad_slices == 3


def test_windows_shorter_than_a_slice_have_no_burn_rate() -> None:
    slo = make_slo("80", Window(rolling_s=DAY_S), Budgeting("timeslices", HOUR_S, Fraction(9, 10)))
    result = evaluate(slo, slice_stream().counts(), BASE)
    assert result.burn_rates["5m"] is None and result.burn_rates["30m"] is None
    # The last complete hour: 480 events, 35 bad -> good ratio 0.927 >= 0.9, a good slice.
    assert result.burn_rates["1h"] == 0 and result.data_slices == 1


def test_ratio_timeslices() -> None:
    slo = make_slo("80", Window(rolling_s=HOUR_S), Budgeting("ratio_timeslices", 300))
    stream = slice_stream()
    # Slice 10 now holds a single event, which is bad: its bad fraction is 1, weighted as a slice.
    stream.set(BASE - 2 * 300, BASE - 300, total=0, bad=0)
    stream.set(BASE - 2 * 300, BASE - 2 * 300 + MINUTE_S, total=1, bad=1)
    result = evaluate(slo, stream.counts(), BASE)
    # bad fractions: 0.2 + 0.2 + 0.1 + 1 + 0.2 = 1.7 over 10 slices with data.
    assert result.data_slices == 10 and result.no_data_slices == 2
    assert result.bad_slices == pytest.approx(1.7) and result.good_slices == pytest.approx(8.3)
    assert result.sli == pytest.approx(0.83)
    assert result.budget == 2 and result.consumed == pytest.approx(0.85)
    assert result.burn_rates["1h"] == pytest.approx(0.85)  # 1.7/10 / 0.2
    assert result.burn_rates["5m"] == pytest.approx(1.0)  # slice 11: 0.2 / 0.2


def test_calendar_timeslices_expect_slices_for_the_period() -> None:
    # A Berlin week in January (7 * 24 one-hour slices), evaluated after 2 days with data in 24 of
    # the 48 complete slices, 6 of them bad: expected = 24 / 48 * 168 = 84 slices.
    week = Window(calendar="week", time_zone="Europe/Berlin")
    start = utc("2024-01-07T23:00")  # Monday 8 January 00:00 CET
    at = start + 2 * DAY_S
    stream = Stream(start, 2 * 24 * 60)
    for hour in range(0, 48, 2):
        stream.set(start + hour * HOUR_S, start + (hour + 1) * HOUR_S, total=5, bad=1 if hour < 12 else 0)
    slo = make_slo("90", week, Budgeting("timeslices", HOUR_S, Fraction(95, 100)))
    result = evaluate(slo, stream.counts(), at)
    assert (result.slices, result.data_slices, result.no_data_slices) == (48, 24, 24)
    assert result.expected == 84 and result.budget == pytest.approx(8.4)
    assert result.bad_slices == 6 and result.consumed == pytest.approx(6 / 8.4)


# -- exactness ---------------------------------------------------------------------------------


def test_exceeds_exactly_at_the_threshold() -> None:
    budget = make_slo("99.9", Window()).error_budget
    page = default_rules(30 * DAY_S)[0]
    assert page.factor == Fraction(72, 5)  # 14.4
    # 144 of 10,000 is a burn rate of exactly 14.4: not above it. One more bad event is.
    assert not exceeds(144, 10_000, budget, page.factor)
    assert not exceeds(144.0, 10_000.0, budget, Fraction("14.4"))
    assert exceeds(145, 10_000, budget, page.factor)
    # What the exact test guards against: with a float objective this would page.
    assert (144 / 10_000) / (1 - 99.9 / 100) > 14.4
    assert burn_rate(144, 10_000, budget) == 14.4
    assert not exceeds(0, 0, budget, Fraction(0))
    assert list(exceeds_many([144, 145, 0], [10_000, 10_000, 0], budget, page.factor)) == [False, True, False]


def test_exceeds_many_equals_exceeds_on_random_counts() -> None:
    rng = np.random.default_rng(7)
    total = rng.integers(0, 2000, 5000).astype(float)
    bad = np.floor(total * rng.choice([0.0144, 0.006, 0.003, 0.001, 0.02], 5000))  # many exact ties
    bad[::3] += rng.integers(0, 2, len(bad[::3]))
    budget = Fraction(1, 1000)
    for factor in (Fraction(72, 5), Fraction(6), Fraction(3), Fraction(1)):
        many = exceeds_many(bad, total, budget, factor)
        assert list(many) == [exceeds(b, t, budget, factor) for b, t in zip(bad, total, strict=True)]


def test_exact_greater_with_huge_coefficients() -> None:
    big = 10**30
    # 1 * (big + 1) > 1 * big although both round to the same float.
    assert exact_greater(np.array([1.0]), np.array([big + 1], dtype=object), np.array([1.0]), big)[0]
    assert not exact_greater(np.array([1.0]), big, np.array([1.0]), big)[0]


def test_prefix_sums_are_exact_for_fractional_counts() -> None:
    values = np.array([0.1, 0.2, 0.3, 1e-9, 5.5, 0.1, 1e12, 0.7])
    sums = PrefixSums(values)
    for lo in range(len(values)):
        for hi in range(lo, len(values) + 1):
            assert sums.between(np.array([lo]), np.array([hi]))[0] == math.fsum(values[lo:hi])


def test_no_budget_at_objective_100() -> None:
    with pytest.raises(ValueError, match="no error budget"):
        evaluate(make_slo("100", Window(rolling_s=HOUR_S)), MinuteCounts.empty(BASE - HOUR_S, BASE), BASE)


# -- many at once ------------------------------------------------------------------------------


def assert_same(one: Evaluation, many: Evaluation) -> None:
    for name in ("at_s", "window_start_s", "period_end_s", "calendar", "method", "budget_unit", "total",
                 "bad", "exhausted", "slices", "data_slices", "no_data_slices", "bad_slices"):
        assert getattr(one, name) == getattr(many, name), name
    for name in ("sli", "expected", "budget", "consumed", "remaining", "time_to_exhaustion_s", "good_slices"):
        a, b = getattr(one, name), getattr(many, name)
        assert (a is None) == (b is None), name
        assert a is None or b == pytest.approx(a, rel=1e-12, abs=1e-12), name
    assert one.burn_rates.keys() == many.burn_rates.keys()
    for label, rate in one.burn_rates.items():
        other = many.burn_rates[label]
        assert (rate is None) == (other is None), label
        assert rate is None or other == pytest.approx(rate, rel=1e-12), label


def random_counts(fractional: bool) -> MinuteCounts:
    rng = np.random.default_rng(11 if fractional else 5)
    start = utc("2024-02-25T00:00")
    minutes = 40 * 24 * 60
    rate = np.repeat(rng.choice([0, 0, 2, 20, 200], minutes // 60), 60)  # traffic changes by hour
    total = rng.poisson(rate).astype(float)
    # Error ratios change by hour too, mostly low, so budgets are sometimes left and sometimes spent.
    ratio = np.repeat(rng.choice([0.0, 0.0005, 0.003, 0.02, 0.3], minutes // 60, p=[0.5, 0.2, 0.15, 0.1, 0.05]), 60)
    bad = rng.binomial(total.astype(np.int64), ratio).astype(float)
    if fractional:  # e.g. a counter in bytes scaled to kilobytes
        total, bad = total * 0.1, bad * 0.1
    return MinuteCounts(start, total, bad)


SLOS = [
    make_slo("97", Window(rolling_s=2 * DAY_S)),
    make_slo("99.5", Window(calendar="month", time_zone="Europe/Berlin")),
    make_slo("95", Window(rolling_s=DAY_S), Budgeting("timeslices", 300, Fraction(95, 100))),
    make_slo("99", Window(calendar="week", time_zone="America/New_York"), Budgeting("ratio_timeslices", 600)),
]


@pytest.mark.parametrize("fractional", [False, True])
@pytest.mark.parametrize("slo", SLOS, ids=lambda s: f"{s.budgeting.method}-{s.window.label}")
def test_evaluate_many_equals_evaluate(slo: SloModel, fractional: bool) -> None:
    counts = random_counts(fractional)
    rng = np.random.default_rng(3)
    times = rng.integers(counts.start_s, counts.end_s + DAY_S, 40)
    special = [utc("2024-02-29T23:00"), utc("2024-03-31T22:00"), utc("2024-03-31T21:59:59"),
               utc("2024-03-11T04:00"), counts.start_s, counts.start_s + 600, counts.end_s]
    times = np.concatenate([times, special])
    results = evaluate_many(slo, counts, times)
    assert len(results) == len(times)
    # The sample must hold both spent and unspent budgets, or the comparison proves little.
    assert results.exhausted.any() and not results.exhausted.all()
    assert np.isnan(results.sli).any() and not np.isnan(results.sli).all()
    for i, t in enumerate(times):
        assert_same(evaluate(slo, counts, int(t)), results.at(i))


def test_ledger_burn_windows_for_alert_rules() -> None:
    counts = random_counts(False)
    slo = make_slo("99.9", Window(rolling_s=30 * DAY_S))
    ledger = Ledger(slo, counts)
    times = np.arange(counts.start_s + 3 * DAY_S, counts.start_s + 4 * DAY_S, 7 * MINUTE_S)
    windows = ledger.burn_windows(times, [HOUR_S, 5 * MINUTE_S])
    fired = windows[HOUR_S].exceeds(slo.error_budget, Fraction(72, 5))
    for i, t in enumerate(times):
        bounds_total, bounds_bad = counts.window(int(t) - HOUR_S, int(t))
        expected = exceeds(bounds_bad.sum(), bounds_total.sum(), slo.error_budget, Fraction(72, 5))
        assert fired[i] == expected
    assert fired.any() and not fired.all()  # the stream must exercise both answers
