"""SLO arithmetic benchmark: a 30-day backtest at one-minute steps (43,200 evaluations) of one SLO.

    .venv/bin/python bench/slo_math.py [--days 30]

Generates 60 days of per-minute counts (traffic and error ratio changing by the hour), then times
``evaluate_many`` at every minute of the last 30 days for each budgeting method and window kind,
plus the alert-rule windows of the default policy. Building the prefix sums is included in each
figure. Prints one line per case; issue 5 asks for the whole backtest in under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slo.budget import Ledger, evaluate, evaluate_many  # noqa: E402
from slo.model import DAY_S, MINUTE_S, Budgeting, Slo, SpanSli, Window, default_rules  # noqa: E402
from slo.series import MinuteCounts  # noqa: E402


def counts(days: int, seed: int = 1) -> MinuteCounts:
    rng = np.random.default_rng(seed)
    minutes = days * 24 * 60
    rate = np.repeat(rng.choice([5, 50, 500], minutes // 60), 60)
    ratio = np.repeat(rng.choice([0.0, 0.0005, 0.002, 0.02], minutes // 60, p=[0.5, 0.3, 0.15, 0.05]), 60)
    total = rng.poisson(rate).astype(float)
    bad = rng.binomial(total.astype(np.int64), ratio).astype(float)
    return MinuteCounts(1_700_000_000 // DAY_S * DAY_S, total, bad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of one-minute steps to backtest")
    args = parser.parse_args()
    data = counts(2 * args.days)
    times = np.arange(data.start_s + args.days * DAY_S, data.end_s, MINUTE_S)
    cases = {
        "occurrences 30d rolling": (Window(rolling_s=30 * DAY_S), Budgeting()),
        "occurrences month Europe/Berlin": (Window(calendar="month", time_zone="Europe/Berlin"), Budgeting()),
        "timeslices 1m 30d rolling": (Window(rolling_s=30 * DAY_S), Budgeting("timeslices", 60, Fraction(99, 100))),
        "ratio_timeslices 5m week": (Window(calendar="week", time_zone="Europe/Berlin"),
                                     Budgeting("ratio_timeslices", 300)),
    }
    print(f"{len(times):,} evaluations over {len(data.total):,} minutes of data")
    for name, (window, budgeting) in cases.items():
        slo = Slo("bench", "svc", Decimal("99.9"), SpanSli(bad_error=True), window=window, budgeting=budgeting)
        began = time.perf_counter()
        ledger = Ledger(slo, data)
        result = evaluate_many(slo, data, times, ledger)
        rules = default_rules(30 * DAY_S)
        windows = ledger.burn_windows(times, sorted({w for r in rules for w in (r.long_s, r.short_s)}))
        firing = [windows[r.long_s].exceeds(slo.error_budget, r.factor)
                  & windows[r.short_s].exceeds(slo.error_budget, r.factor) for r in rules]
        elapsed = time.perf_counter() - began
        began = time.perf_counter()
        evaluate(slo, data, int(times[-1]))
        single = time.perf_counter() - began
        print(f"{name:34s} {elapsed:7.3f} s for {len(result):,} steps + alert rules "
              f"({sum(int(f.sum()) for f in firing):,} firing minutes); one exact evaluate(): {single:.3f} s")


if __name__ == "__main__":
    main()
