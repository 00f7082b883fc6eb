"""The SLO evaluator over the real chDB engine: budgets, burn rates and alert rules at an instant, a
backtest giving the same answers at every step, and the stored history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from slo import evaluator, history
from slo.model import DAY_S, HOUR_S, AlertPolicy, BurnRule, Slo, SpanSli, Window
from store import migrations
from store.embedded import EmbeddedBackend
from tests.conftest import id_columns

# Three hours of traffic ending a whole hour ago: 100 requests a minute; for the last hour 20 of
# them fail (status ERROR), before it none does.
END_S = (int(time.time()) // HOUR_S - 1) * HOUR_S
START_S = END_S - 3 * HOUR_S
PER_MINUTE, BAD_PER_MINUTE = 100, 20


def _spans(service: str) -> pa.Table:
    minutes = (END_S - START_S) // 60
    n = minutes * PER_MINUTE
    minute = np.repeat(np.arange(minutes), PER_MINUTE)
    index = np.tile(np.arange(PER_MINUTE), minutes)
    start_ns = (START_S + minute * 60) * 10**9 + index * 500_000_000  # two a second
    failing = (minute >= minutes - 60) & (index < BAD_PER_MINUTE)
    return pa.table(
        {
            "timestamp": pa.array(start_ns, pa.timestamp("ns", tz="UTC")),
            **id_columns(n),
            "name": pa.array(np.full(n, "GET /checkout")),
            "kind": pa.array(np.full(n, "SERVER")),
            "service_name": pa.array(np.full(n, service)),
            "duration": pa.array(np.full(n, 20_000_000, dtype=np.uint64)),
            "status_code": pa.array(np.where(failing, "ERROR", "UNSET")),
        }
    )


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    store = EmbeddedBackend(tmp_path_factory.mktemp("slo-evaluator") / "store")
    migrations.migrate(store)
    store.insert_arrow("spans", _spans("shop"))
    yield store
    store.close()


def _slo(**overrides: object) -> Slo:
    fields: dict[str, object] = {
        "name": "checkout",
        "service": "shop",
        "objective": Decimal("99"),
        "sli": SpanSli(bad_error=True),
        "window": Window(rolling_s=DAY_S),
    }
    return Slo(**(fields | overrides))  # type: ignore[arg-type]


def test_budget_and_burn_rates_at_an_instant_match_hand_computed_values(backend: EmbeddedBackend) -> None:
    [result] = evaluator.evaluate_slo(backend, _slo(), END_S + 59)  # floored to END_S
    ev = result.evaluation
    assert result.error == "" and ev is not None and result.at_s == END_S
    # 1-day window: 3 hours of data, 18,000 requests, 1,200 bad; budget 1% of 18,000 = 180 events.
    assert (ev.total, ev.bad) == (18_000, 1_200)
    assert ev.budget == pytest.approx(180)
    assert ev.consumed == pytest.approx(1_200 / 180)
    assert ev.remaining == pytest.approx(1 - 1_200 / 180)  # unclamped: overspent
    assert ev.sli == pytest.approx(1 - 1_200 / 18_000)
    # Burn rates: 20% bad in the last hour is 20x a 1% budget; over 2h half the minutes failed.
    assert ev.burn_rates["5m"] == pytest.approx(20)
    assert ev.burn_rates["1h"] == pytest.approx(20)
    assert ev.burn_rates["2h"] == pytest.approx(10)
    assert ev.burn_rates["6h"] == pytest.approx(1_200 / 18_000 / 0.01)
    assert ev.burn_rates["1d"] == ev.burn_rates["6h"]
    # For a 1-day window the default factors are 2%, 5%, 10%, 10% of the budget per long window:
    # page 1h/5m 0.48, page 6h/30m 0.2, ticket 1d/2h 0.1, ticket 3d/6h 0.0333 -- all fire.
    assert [r.label for r in result.rules] == ["page 1h/5m", "page 6h/30m", "ticket 1d/2h", "ticket 3d/6h"]
    assert all(r.firing for r in result.rules)
    assert result.firing == ["page", "ticket"]


def test_strict_thresholds_and_min_events(backend: EmbeddedBackend) -> None:
    # A burn rate of exactly 20 does not exceed a factor of 20; 19.99 does.
    at = END_S
    exact = _slo(alerting=AlertPolicy((BurnRule("page", HOUR_S, 300, _fraction(20)),)))
    assert not evaluator.evaluate_slo(backend, exact, at)[0].rules[0].firing
    below = _slo(alerting=AlertPolicy((BurnRule("page", HOUR_S, 300, _fraction(19.99)),)))
    assert evaluator.evaluate_slo(backend, below, at)[0].rules[0].firing
    # The long hour holds 6,000 events: a min_events of 6,001 keeps the rule quiet.
    guarded = _slo(alerting=AlertPolicy((BurnRule("page", HOUR_S, 300, _fraction(1)),), min_events=6_001))
    state = evaluator.evaluate_slo(backend, guarded, at)[0].rules[0]
    assert state.long_events == 6_000 and not state.firing


def _fraction(value: float) -> Fraction:
    return Fraction(str(value))


def test_backtest_agrees_with_single_evaluations_and_reports_rule_changes(backend: EmbeddedBackend) -> None:
    slo = _slo()
    times = evaluator.steps(START_S, END_S + HOUR_S, 60)
    run = evaluator.backtest(backend, slo, times)
    [group] = run.groups
    for i in (0, 30, 119, 120, 125, 180, 200, len(times) - 1):
        [single] = evaluator.evaluate_slo(backend, slo, int(times[i]))
        many = group.evaluations.at(i)
        assert many.total == single.evaluation.total and many.bad == single.evaluation.bad
        assert many.burn_rates == pytest.approx(single.evaluation.burn_rates, nan_ok=True)
        assert [bool(group.firing[r.label][i]) for r in single.rules] == [r.firing for r in single.rules]
    changes = [(c.at_s, c.rule, c.firing) for c in run.changes()]
    # The first failing minute starts at END_S - 1h; an evaluation at T sees minutes before T, so the
    # fast page (5m window > 0.48 and 1h > 0.48) fires at the first evaluation after enough bad minutes.
    first_bad = END_S - HOUR_S
    page = [c for c in changes if c[1] == "page 1h/5m"]
    assert page[0][2] is True and first_bad < page[0][0] <= first_bad + 5 * 60
    # Failures stop at END_S: the 5-minute window clears the page within 5 minutes.
    assert page[1] == (page[1][0], "page 1h/5m", False) and END_S < page[1][0] <= END_S + 5 * 60


def test_history_round_trip_and_a_retried_cycle_is_stored_once(backend: EmbeddedBackend) -> None:
    slo = _slo(name="history-check")
    results = evaluator.evaluate_slo(backend, slo, END_S)
    history.record(backend, results)
    history.record(backend, results)  # a retried cycle: same token, dropped
    rows = history.read(backend, "history-check", END_S - 60, END_S + 60)
    assert len(rows) == 1
    row = rows[0]
    assert row["at_s"] == END_S and row["total"] == 18_000 and row["bad"] == 1_200
    assert row["burn_rates"]["1h"] == pytest.approx(20)
    assert row["alert_rules"]["page 1h/5m"] is True
    assert row["error"] is None


def test_an_slo_that_cannot_be_evaluated_reports_why(backend: EmbeddedBackend) -> None:
    [result] = evaluator.evaluate_slo(backend, _slo(name="perfect", objective=Decimal("100")), END_S)
    assert result.evaluation is None and result.rules == ()
    assert "leaves no error budget" in result.error
    assert evaluator.as_dict(result)["error"] == result.error


def test_the_schedules_cache_reads_only_new_minutes_and_answers_the_same(backend: EmbeddedBackend) -> None:
    from slo.counts_cache import CountsCache

    slo = _slo(name="cached")
    cache = CountsCache(refresh_s=300, full_every_s=3600)
    first = evaluator.evaluate_slo(backend, slo, END_S - 30 * 60, cache)
    assert cache.last_read_s >= DAY_S  # the first evaluation reads the whole range
    full_reads = 0
    for minute in range(-29, 30):  # across the end of the failures, within one hour
        at = END_S + minute * 60
        cached = evaluator.evaluate_slo(backend, slo, at, cache)
        full_reads += cache.last_read_s > 300 + 60  # more than the refresh window and the new minute
        assert evaluator.as_dict(cached[0]) == evaluator.as_dict(evaluator.evaluate_slo(backend, slo, at)[0])
    assert full_reads <= 1  # the hourly full read, at this SLO's own minute of the hour
    assert first[0].evaluation is not None
    # Late data older than the refresh window is picked up by the hourly full read.
    late = CountsCache(refresh_s=300, full_every_s=3600)
    evaluator.evaluate_slo(backend, slo, END_S, late)
    evaluator.evaluate_slo(backend, slo, END_S + 3600, late)
    assert late.last_read_s >= DAY_S
