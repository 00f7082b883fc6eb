"""Query benchmark: the query layer over 10 million spans generated straight into the store.

    .venv/bin/python bench/queries.py --spans 10000000

Spans are generated as Arrow columns (numpy, no per-span Python): 12 services, 60 operations, 10
spans per trace, lognormal durations, 2% errors, an http.route and a status code on every span.
They go in through the store's Arrow insert, so the RED roll-up view fills as it would from ingest,
and both tables are merged (OPTIMIZE FINAL) as background merges would leave them. Two layouts of
the same number of spans:

* spread: over the last 24 hours (about 115 spans/s, ~16 requests per roll-up row);
* dense: over the last hour (about 2,800 spans/s, ~380 requests per roll-up row).

Each query runs repeatedly and p50/p99 are reported, with the ratio of roll-up query time to the
same answer computed from raw spans: the roll-up's cost grows with keys and latency buckets, the raw
answer's with spans, so the ratio depends on traffic per key.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
SERVICES = [f"svc-{i:02d}" for i in range(12)]
OPERATIONS = [f"GET /api/v1/resource-{i:02d}" for i in range(60)]
KINDS = np.array(["SERVER", "CLIENT", "INTERNAL", "CONSUMER"])
DAY_NS = 86_400 * 10**9


def _strings(values: np.ndarray) -> pa.Array:
    # Large numpy string arrays come back from pyarrow in chunks; MapArray wants one array.
    array = pa.array(values, pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def generate(n: int, end_ns: int, seed: int, span_ns: int = DAY_NS) -> pa.Table:
    """``n`` spans in the ``span_ns`` before ``end_ns``, in traces of 10 spans, as the spans table's columns."""
    rng = np.random.default_rng(seed)
    traces = n // 10
    trace_ids = rng.integers(0, 2**63, size=(traces, 2), dtype=np.int64).view(np.uint8).reshape(traces, 16)
    trace_of_span = np.repeat(np.arange(traces), 10)[:n]
    span_ids = rng.integers(1, 2**63, size=n, dtype=np.int64)
    position = np.tile(np.arange(10), traces)[:n]
    parents = np.where(position == 0, 0, np.roll(span_ids, 1))
    trace_start = end_ns - rng.integers(60 * 10**9, span_ns, size=traces, dtype=np.int64)
    start = trace_start[trace_of_span] + position * 1_000_000
    duration = np.minimum(rng.lognormal(16.5, 1.0, size=n), 60e9).astype(np.uint64)
    service = rng.integers(0, len(SERVICES), size=n)
    operation = (service * 5 + rng.integers(0, 5, size=n)) % len(OPERATIONS)
    kind = np.where(position == 0, 0, rng.integers(0, 4, size=n))
    error = rng.random(n) < 0.02
    status = np.where(error, "500", "200")

    keys = _strings(np.tile(["http.route", "http.response.status_code"], n))
    values = _strings(np.column_stack([np.array(OPERATIONS)[operation], status]).reshape(-1))
    offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    attributes = pa.MapArray.from_arrays(offsets, keys, values)
    kinds_keys = _strings(np.full(n, "http.response.status_code"))
    kinds_offsets = pa.array(np.arange(0, n + 1, dtype=np.int32))
    kinds = pa.MapArray.from_arrays(kinds_offsets, kinds_keys, pa.array(np.full(n, 3, dtype=np.int8)))
    return pa.table(
        {
            "timestamp": pa.array(start, pa.timestamp("ns", tz="UTC")),
            "trace_id": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), n, [None, pa.py_buffer(trace_ids[trace_of_span].tobytes())]
            ),
            "span_id": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(8), n, [None, pa.py_buffer(span_ids.tobytes())]
            ),
            "parent_span_id": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(8), n, [None, pa.py_buffer(parents.astype(np.int64).tobytes())]
            ),
            "name": pa.array(np.array(OPERATIONS)[operation]),
            "kind": pa.array(KINDS[kind]),
            "service_name": pa.array(np.array(SERVICES)[service]),
            "attributes": attributes,
            "attribute_types": kinds,
            "duration": pa.array(duration),
            "status_code": pa.array(np.where(error, "ERROR", "UNSET")),
        }
    )


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds over ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


LAYOUTS = {"spread": DAY_NS, "dense": 3600 * 10**9}


def load(backend, n: int, end_ns: int, span_ns: int) -> float:  # noqa: ANN001
    """Insert ``n`` generated spans in 1M-row batches, merge the tables; return the load time in s."""
    started = time.perf_counter()
    chunk = 1_000_000
    for i, offset in enumerate(range(0, n, chunk)):
        backend.insert_arrow("spans", generate(min(chunk, n - offset), end_ns, seed=i, span_ns=span_ns))
    load_s = time.perf_counter() - started
    backend.command("OPTIMIZE TABLE spans FINAL")
    backend.command("OPTIMIZE TABLE red_1m FINAL")
    return load_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--layouts", default="spread,dense", help="comma-separated: " + ", ".join(LAYOUTS))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    from store import migrations
    from store.embedded import EmbeddedBackend

    lines = [
        f"## Queries — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python bench/queries.py --spans {args.spans} --repeat {args.repeat} --layouts {args.layouts}` on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
    ]
    for layout in args.layouts.split(","):
        work = Path(tempfile.mkdtemp(prefix="sloscope-querybench-"))
        backend = EmbeddedBackend(work / "store")  # one chDB path at a time per process
        try:
            migrations.migrate(backend)
            end_ns = time.time_ns()
            load_s = load(backend, args.spans, end_ns, LAYOUTS[layout])
            rows = run_queries(backend, end_ns, args.repeat)
        finally:
            backend.close()
            shutil.rmtree(work, ignore_errors=True)
        lines += [
            f"Layout **{layout}**: {args.spans:,} spans over the last {LAYOUTS[layout] // 3_600_000_000_000} h, "
            f"loaded in {load_s:.1f} s.",
            "",
            "| query | p50 ms | p99 ms | target p50 ms |",
            "|---|---:|---:|---:|",
            *[f"| {name} | {p50:.1f} | {p99:.1f} | {target} |" for name, p50, p99, target in rows],
            "",
        ]
    text = "\n".join(lines)
    print(text)
    with open(args.output, "a") as f:
        f.write(text + "\n")
    return 0


def timed_each(fn: Callable[[str], object], items: list[str], repeat: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``fn(item)`` over ``repeat`` rounds of every item (after one)."""
    for item in items:
        fn(item)
    times = []
    for _ in range(repeat):
        for item in items:
            started = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def run_queries(backend, end_ns: int, repeat: int) -> list[tuple[str, float, float, str]]:  # noqa: ANN001
    from store import explore, traces

    some_traces = backend.query_arrow(
        "SELECT DISTINCT lower(hex(trace_id)) AS t FROM spans WHERE timestamp > now() - INTERVAL 1 HOUR "
        "ORDER BY cityHash64(trace_id) LIMIT 20"
    ).column("t").to_pylist()
    hour = explore.TraceSearch(
        end_ns - 3600 * 10**9,
        end_ns,
        service="svc-03",
        attrs=[explore.parse_attr("http.response.status_code=500")],
        limit=20,
    )
    results = [
        (
            f"trace by id ({len(some_traces)} traces)",
            *timed_each(lambda t: traces.get_trace(backend, t), some_traces, max(1, repeat // 4)),
            "20",
        ),
        (
            "one-hour trace search with a tag filter, 20 summaries",
            *timed(lambda: explore.search_traces(backend, hour), repeat),
            "300",
        ),
    ]
    results += roll_up_queries(backend, end_ns, repeat)
    return results


# The same answers from raw spans, to report what the roll-up saves.
RAW_OVERVIEW = """
SELECT service_name, count() AS requests, countIf(status_code = 'ERROR') AS errors,
       quantiles(0.5, 0.95, 0.99)(duration) AS q
FROM spans
WHERE timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp < fromUnixTimestamp64Nano({end:Int64})
  AND (kind IN ('SERVER', 'CONSUMER') OR parent_span_id = toFixedString('', 8))
GROUP BY service_name
"""
RAW_SERIES = """
SELECT toStartOfInterval(timestamp, INTERVAL 15 MINUTE) AS t, count() AS requests,
       countIf(status_code = 'ERROR') AS errors, quantiles(0.5, 0.95, 0.99)(duration) AS q
FROM spans
WHERE service_name = {service:String}
  AND timestamp >= fromUnixTimestamp64Nano({start:Int64}) AND timestamp < fromUnixTimestamp64Nano({end:Int64})
  AND (kind IN ('SERVER', 'CONSUMER') OR parent_span_id = toFixedString('', 8))
GROUP BY t ORDER BY t
"""


def roll_up_queries(backend, end_ns: int, repeat: int) -> list[tuple[str, float, float, str]]:  # noqa: ANN001
    """The services overview over one hour and a 24-hour RED series, from the roll-up and from raw spans."""
    from store import red

    hour = (end_ns - 3600 * 10**9, end_ns)
    day = (end_ns - DAY_NS, end_ns)
    step = 15 * 60 * 10**9
    overview = timed(lambda: red.services_overview(backend, *hour), repeat)
    overview_raw = timed(
        lambda: backend.query_arrow(RAW_OVERVIEW, {"start": hour[0], "end": hour[1]}), repeat
    )
    series = timed(lambda: red.red_series(backend, "svc-03", None, *day, step), repeat)
    series_raw = timed(
        lambda: backend.query_arrow(RAW_SERIES, {"service": "svc-03", "start": day[0], "end": day[1]}), repeat
    )
    return [
        ("services overview, one hour (roll-up)", *overview, "100"),
        (f"  same from raw spans (roll-up / raw = {overview[0] / overview_raw[0]:.2f})", *overview_raw, ""),
        ("RED series, 24 hours, 15-minute step (roll-up)", *series, "150"),
        (f"  same from raw spans (roll-up / raw = {series[0] / series_raw[0]:.2f})", *series_raw, ""),
    ]


if __name__ == "__main__":
    sys.exit(main())
