"""Canary benchmark: one comparison of two versions (``slo/canary.py``) over generated spans.

    .venv/bin/python bench/canary.py --spans 2000000

Spans come from bench/queries.py's generator over the last hour, one in ten of version 2.0 and the
rest 1.0 (resource attribute service.version), through the store's Arrow insert. The comparison of
the busiest service is timed (median of 5), against the ceiling of one ``count()`` of that service's
spans in the same run: the comparison reads its raw spans twice (counts and exact quantiles, then
up to 50,000 durations per version) and runs its tests in Python.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import queries  # noqa: E402  (bench/queries.py: the span generator)

HOUR_NS = 3600 * 10**9


def with_versions(table: pa.Table) -> pa.Table:
    """``table`` with a service.version resource attribute: 2.0 on every tenth span, else 1.0."""
    n = table.num_rows
    versions = pa.array(np.where(np.arange(n) % 10 == 0, "2.0", "1.0"))
    offsets = pa.array(np.arange(n + 1, dtype=np.int32))
    keys = pa.array(np.full(n, "service.version"))
    return table.append_column("resource_attributes", pa.MapArray.from_arrays(offsets, keys, versions))


def timed(run, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=2_000_000)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    from slo import canary
    from store import migrations
    from store.embedded import EmbeddedBackend

    work = Path(tempfile.mkdtemp(prefix="sloscope-canarybench-"))
    backend = EmbeddedBackend(work / "store")
    try:
        migrations.migrate(backend)
        end_ns = time.time_ns()
        for seed, offset in enumerate(range(0, args.spans, 1_000_000)):
            rows = min(1_000_000, args.spans - offset)
            backend.insert_arrow(
                "spans", with_versions(queries.generate(rows, end_ns, seed, span_ns=HOUR_NS))
            )
        busiest = backend.query_arrow(
            "SELECT service_name AS s, count() AS n FROM spans GROUP BY s ORDER BY n DESC LIMIT 1"
        ).to_pylist()[0]
        start_ns = end_ns - HOUR_NS - 60 * 10**9
        report = canary.compare(backend, busiest["s"], "1.0", "2.0", start_ns, end_ns + 1)
        compare_s = timed(
            lambda: canary.compare(backend, busiest["s"], "1.0", "2.0", start_ns, end_ns + 1), 5
        )
        ceiling_s = timed(
            lambda: backend.query_arrow(
                "SELECT count() FROM spans WHERE service_name = {s:String}", {"s": busiest["s"]}
            ),
            5,
        )
    finally:
        backend.close()
        shutil.rmtree(work, ignore_errors=True)
    first = report.metrics[0]
    text = "\n".join(
        [
            f"## Canary — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"`python bench/canary.py --spans {args.spans}` on {os.cpu_count()} cores, Python "
            f"{platform.python_version()}.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| spans stored (last hour, 12 services) | {args.spans:,} |",
            f"| requests compared, baseline / candidate ({busiest['s']}) | "
            f"{first.baseline_requests:,} / {first.candidate_requests:,} |",
            f"| verdict (same distributions) | {report.verdict} |",
            f"| one comparison, s (median of 5) | {compare_s:.3f} |",
            f"| ceiling: `count()` of the service's spans, s (median of 5) | {ceiling_s:.4f} |",
            f"| comparison / ceiling | {compare_s / ceiling_s:.0f} |",
            "",
        ]
    )
    print(text)
    with open(args.output, "a") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
