"""SLO benchmark over the store: a 30-day backtest of one SLO at one-minute steps, and one evaluation
cycle of 100 SLOs, at two span volumes.

    .venv/bin/python bench/slo_engine.py [--spans 1000000,5000000] [--days 60]

Spans are generated as in ``bench/queries.py`` (12 services, 5 operations each, 2% errors, lognormal
durations), spread over the last ``--days`` days, and inserted through the store so the RED roll-up
fills as it does from ingest; retention is off (0) so old minutes stay. For each volume:

* the backtest of a 99.9% / 30-day availability SLO over the last 30 days (43,200 steps), from the
  stored data through ``slo.evaluator.backtest`` (one read of the store, then prefix sums);
* one cycle of 100 SLOs (availability and latency SLOs per service and operation, 30-day windows)
  through ``slo.evaluator.evaluate``, from the roll-up, and the same 100 from raw spans; then the next
  cycle as the schedule runs it, with its counts cache (``slo/counts_cache.py``).

The issue's targets: the backtest under a minute; a cycle that does not grow with raw span volume.
Prints a table and appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from queries import OPERATIONS, SERVICES, generate  # noqa: E402

from slo import evaluator, sli  # noqa: E402
from slo.counts_cache import CountsCache  # noqa: E402
from slo.model import DAY_S, Slo, SpanSli, Window  # noqa: E402
from store import migrations  # noqa: E402
from store.embedded import EmbeddedBackend  # noqa: E402

MINUTE_S = 60


def hundred_slos() -> list[Slo]:
    """100 SLOs on the roll-up path: per service availability and two latency thresholds, then per
    operation availability until there are 100."""
    month = Window(rolling_s=30 * DAY_S)
    out: list[Slo] = []
    for i, service in enumerate(SERVICES):
        operations = [op for n, op in enumerate(OPERATIONS) if n % len(SERVICES) == i or (n // 5) == i][:5]
        out.append(Slo(f"{service}-availability", service, Decimal("99.9"), SpanSli(bad_error=True), month))
        out.append(Slo(f"{service}-latency-300", service, Decimal("99"), SpanSli(bad_latency_ms=300), month))
        out.append(
            Slo(
                f"{service}-latency-1000",
                service,
                Decimal("99.5"),
                SpanSli(bad_error=True, bad_latency_ms=1000),
                month,
            )
        )
        for op in operations:
            out.append(
                Slo(f"{service}-{op}", service, Decimal("99.5"), SpanSli(operation=op, bad_error=True), month)
            )
    return out[:100]


def run_volume(spans: int, days: int) -> list[tuple[str, str]]:
    work = Path(tempfile.mkdtemp(prefix="sloscope-slobench-"))
    backend = EmbeddedBackend(work / "store")
    try:
        migrations.migrate(backend)
        migrations.ensure_retention(backend, 0)
        end_s = int(time.time()) // MINUTE_S * MINUTE_S
        started = time.perf_counter()
        chunk = 1_000_000
        for n, offset in enumerate(range(0, spans, chunk)):
            table = generate(min(chunk, spans - offset), end_s * 10**9, seed=n, span_ns=days * DAY_S * 10**9)
            backend.insert_arrow("spans", table)
        backend.command("OPTIMIZE TABLE red_1m FINAL")
        load_s = time.perf_counter() - started

        slo = Slo(
            "svc-03-availability",
            "svc-03",
            Decimal("99.9"),
            SpanSli(bad_error=True),
            Window(rolling_s=30 * DAY_S),
        )
        times = evaluator.steps(end_s - 30 * DAY_S, end_s, MINUTE_S)
        started = time.perf_counter()
        run = evaluator.backtest(backend, slo, times)
        backtest_s = time.perf_counter() - started
        changes = len(run.changes())

        slos = hundred_slos()
        assert all(sli.uses_roll_up(s) for s in slos)
        evaluator.evaluate(backend, slos[:1], end_s)  # warm-up
        started = time.perf_counter()
        results = evaluator.evaluate(backend, slos, end_s)
        cycle_s = time.perf_counter() - started
        assert not any(r.error for r in results), [r.error for r in results if r.error][:3]

        cache = CountsCache()
        evaluator.evaluate(backend, slos, end_s - MINUTE_S, cache)  # the schedule's first cycle reads all
        started = time.perf_counter()
        evaluator.evaluate(backend, slos, end_s, cache)
        cached_cycle_s = time.perf_counter() - started

        raw = sli.minute_counts
        with mock.patch.object(sli, "minute_counts", lambda b, s, a, z: raw(b, s, a, z, roll_up=False)):
            started = time.perf_counter()
            evaluator.evaluate(backend, slos[:10], end_s)
            raw_cycle_s = (time.perf_counter() - started) * 10  # 10 of the 100, scaled
    finally:
        backend.close()
        shutil.rmtree(work, ignore_errors=True)
    per_minute = spans / (days * 1440)
    return [
        (f"spans stored ({per_minute:,.0f}/minute over {days} days), load s", f"{spans:,} in {load_s:.1f} s"),
        (
            f"backtest, 1 SLO, 30 days at 1-minute steps ({len(times):,} steps, {changes} rule changes), s",
            f"{backtest_s:.2f}",
        ),
        ("evaluation cycle, 100 SLOs with 30-day windows, from the roll-up, s", f"{cycle_s:.2f}"),
        ("the next cycle with the schedule's cache (reads the newest 6 minutes), s", f"{cached_cycle_s:.2f}"),
        ("the same cycle from raw spans (10 SLOs timed, x10), s", f"{raw_cycle_s:.2f}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", default="1000000,5000000", help="comma-separated span counts")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    lines = [
        f"## SLO engine — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python bench/slo_engine.py --spans {args.spans} --days {args.days}` on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        "",
        "| measure | value |",
        "|---|---:|",
    ]
    for spans in (int(s) for s in args.spans.split(",")):
        lines += [f"| {name} | {value} |" for name, value in run_volume(spans, args.days)]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "a") as f:
        f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
