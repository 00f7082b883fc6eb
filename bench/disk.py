"""Disk benchmark: bytes per span, log record and metric point as stored, and trace-by-id time at scale.

    .venv/bin/python bench/disk.py                                   # defaults: ~5 minutes a layout
    .venv/bin/python bench/disk.py --spans 100000 --trace-lookup-spans 0   # quick: bytes only
    .venv/bin/python bench/disk.py --layouts 0013,current            # compare layouts in one run
    .venv/bin/python bench/disk.py --layouts current,g2048,g1024 --lookup-extra   # spans granule size

1. For each layout (``LAYOUTS``: the store's migrations, or an older set plus experimental
   statements), a fresh store gets ``--spans`` realistic spans (bench/realistic.py: whole traces,
   ~20 spans over 6 services, ~10 attributes) through the real ingest path (store.otlp_writer.OtlpWriter,
   the engine's Protobuf decoding, with the materialized views), in ``--batch``-span writes, timed:
   the insert rate. Then the same number of bench/ingest.py's random-id spans in a second store, and
   ``--logs`` log records and ``--points`` metric points (gauge, sum, histogram) beside the first.
2. Every table is merged (``OPTIMIZE TABLE ... FINAL``, as background merges end up) into wide parts
   (min_bytes_for_wide_part = 0: a store past its first 256 MB holds wide parts, and only those report
   per-column sizes), and bytes per row are read from system.parts, system.projection_parts and
   system.parts_columns.
3. Trace by id at ``--trace-lookup-spans`` spans (bench/queries.py's generator and loader: 10-span
   traces over 12 services and 24 hours, merged): p50 of store.traces.get_trace over 20 traces, and
   the same query on a copy of the spans ordered by trace id (the ceiling: one primary-key range).
   With ``--lookup-extra``, also 20 trace summaries (store.explore.trace_summaries), 20 whole traces
   (store.search.get_traces), and p50s of bench/queries.py's one-hour trace search and RED-from-raw-spans
   scans on the same store: what a smaller granule costs the time-range scans by service.

A layout may also set the spans table's own settings (``spans_settings``: index_granularity,
index_granularity_bytes, read-only once the table exists): migration 0001's CREATE TABLE is edited in
memory for that layout, so the whole schema (views, projections, later migrations) is built on it.

Prints a markdown table and appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import queries as query_bench  # noqa: E402
from bench.ingest import make_request  # noqa: E402
from bench.realistic import SERVICES, realistic_request  # noqa: E402

SPANS_PER_REQUEST = 512
SPAN_TABLES = ("spans",)
LOG_TABLES = ("logs",)
METRIC_TABLES = ("metrics_gauge", "metrics_sum", "metrics_histogram")


@dataclass(frozen=True)
class Layout:
    """A schema to measure: migrations up to ``upto`` (None: all), then ``extra`` statements."""

    upto: int | None
    extra: tuple[str, ...] = ()
    note: str = ""
    #: Settings added to the spans table's CREATE TABLE (migration 0001), e.g. "index_granularity = 1024".
    spans_settings: str = ""


_DROP_FULL_COPY = "ALTER TABLE spans DROP PROJECTION IF EXISTS by_trace"
_OFFSET = (
    "ALTER TABLE spans ADD PROJECTION IF NOT EXISTS by_trace_offset (SELECT _part_offset ORDER BY trace_id)"
)
_FULL_COPY = (
    "ALTER TABLE spans ADD PROJECTION IF NOT EXISTS by_trace (SELECT * ORDER BY trace_id) "
    "WITH SETTINGS (index_granularity = 1024)"
)
_ZSTD6 = (
    "ALTER TABLE spans MODIFY COLUMN IF EXISTS attributes Map(LowCardinality(String), String) CODEC(ZSTD(6))",
)
_LC_VALUES = (
    "ALTER TABLE spans MODIFY COLUMN IF EXISTS attributes Map(LowCardinality(String), LowCardinality(String)) "
    "CODEC(ZSTD(1))",
    "ALTER TABLE spans MODIFY COLUMN IF EXISTS resource_attributes Map(LowCardinality(String), LowCardinality(String)) "
    "CODEC(ZSTD(1))",
)
_TRACE_INDEX = (
    """CREATE TABLE IF NOT EXISTS trace_index (
    trace_id FixedString(16) CODEC(ZSTD(1)),
    start DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1)),
    end DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1))
) ENGINE = MergeTree PARTITION BY toDate(start) ORDER BY (trace_id, start)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS trace_index_mv TO trace_index AS
SELECT trace_id, min(timestamp) AS start, max(timestamp + toIntervalNanosecond(duration)) AS end
FROM spans GROUP BY trace_id""",
)

#: The layouts a run can compare (--layouts). "current" is what the store creates today.
LAYOUTS: dict[str, Layout] = {
    "current": Layout(None, note="all migrations"),
    "0013": Layout(13, note="before 0014: by_trace, a full copy ordered by trace id"),
    "none": Layout(13, (_DROP_FULL_COPY,), "no trace-id structure at all (a scan per lookup)"),
    "offset": Layout(13, (_DROP_FULL_COPY, _OFFSET), "by_trace_offset: trace id -> row number only"),
    "offset+zstd6": Layout(13, (_DROP_FULL_COPY, _OFFSET, *_ZSTD6), "and attributes ZSTD(6)"),
    "offset+lc": Layout(13, (_DROP_FULL_COPY, _OFFSET, *_LC_VALUES), "and LowCardinality attribute values"),
    "copy+lc": Layout(
        13,
        (_DROP_FULL_COPY, *_LC_VALUES, _FULL_COPY),
        "0005's full copy kept, with LowCardinality attribute values",
    ),
    "trace_index": Layout(13, (_DROP_FULL_COPY, *_TRACE_INDEX), "trace id -> time bounds table (0001's)"),
    "g2048": Layout(
        None, note="all migrations, spans index_granularity = 2048", spans_settings="index_granularity = 2048"
    ),
    "g1024": Layout(
        None, note="all migrations, spans index_granularity = 1024", spans_settings="index_granularity = 1024"
    ),
    # Reading a granule decompresses the compression block(s) holding it, and a block is written only once
    # it holds min_compress_block_size (64 KiB) uncompressed: 1024-row granules of an 8-byte column share one
    # block of 8192 rows. Smaller blocks make the smaller granules smaller to read, at some compression.
    "g1024-blk8k": Layout(
        None,
        note="all migrations, spans index_granularity = 1024, min_compress_block_size = 8 KiB",
        spans_settings="index_granularity = 1024, min_compress_block_size = 8192",
    ),
    "g8192-1mib": Layout(
        None,
        note="all migrations, spans index_granularity_bytes = 1 MiB",
        spans_settings="index_granularity_bytes = 1048576",
    ),
    "g8192-256kib": Layout(
        None,
        note="all migrations, spans index_granularity_bytes = 256 KiB",
        spans_settings="index_granularity_bytes = 262144",
    ),
}

_SPANS_CREATE = "CREATE TABLE IF NOT EXISTS spans ("
_SPANS_SETTINGS = "SETTINGS ttl_only_drop_parts"


def layout_statement(layout: Layout, statement: str) -> str:
    """``statement`` as ``layout`` runs it: the spans CREATE TABLE with ``spans_settings`` added."""
    if not layout.spans_settings or not statement.startswith(_SPANS_CREATE):
        return statement
    if statement.count(_SPANS_SETTINGS) != 1:
        raise RuntimeError("migration 0001's spans SETTINGS clause changed: update bench/disk.py")
    return statement.replace(_SPANS_SETTINGS, f"SETTINGS {layout.spans_settings}, ttl_only_drop_parts")


def open_store(path: Path, layout: Layout):  # noqa: ANN201
    """A fresh embedded store at ``path`` with ``layout``'s schema."""
    from store import migrations
    from store.embedded import EmbeddedBackend

    backend = EmbeddedBackend(path)
    for migration in migrations.load_migrations():
        if layout.upto is not None and migration.version > layout.upto:
            break
        for statement in migration.statements:
            backend.command(layout_statement(layout, statement))
        backend.command(
            "INSERT INTO schema_migrations (version, name) VALUES ({v:UInt32}, {n:String})",
            {"v": migration.version, "n": migration.name},
        )
    for statement in layout.extra:
        backend.command(statement)
    if layout.spans_settings:
        create = (
            backend.query_arrow(
                "SELECT create_table_query AS q FROM system.tables "
                "WHERE database = currentDatabase() AND name = 'spans'"
            )
            .column("q")[0]
            .as_py()
        )
        for setting in layout.spans_settings.split(","):
            if setting.strip().replace(" ", "") not in create.replace(" ", ""):
                raise RuntimeError(f"spans was not created with {setting.strip()}: {create[-300:]}")
    return backend


def write_batches(backend, signal: str, bodies: Iterator[bytes], per_batch: int) -> float:  # noqa: ANN001
    """Store ``bodies`` through OtlpWriter, ``per_batch`` requests per write; return the seconds spent writing."""
    from store.otlp_writer import OtlpWriter

    writer = OtlpWriter(backend, ())
    spent, batch, n = 0.0, [], 0
    for body in bodies:
        batch.append(body)
        if len(batch) == per_batch:
            started = time.perf_counter()
            writer.write(signal, batch, f"disk-{signal}-{n}")
            spent += time.perf_counter() - started
            batch, n = [], n + 1
    if batch:
        started = time.perf_counter()
        writer.write(signal, batch, f"disk-{signal}-{n}")
        spent += time.perf_counter() - started
    return spent


# -- logs and metrics ---------------------------------------------------------------------------

LOG_BODIES = (
    "request completed",
    "cache miss for key product:{id}",
    "payment authorised for order {id}",
    "retrying upstream call, attempt 2",
    "user {id} added item to cart",
)


def _describe(resource, service: str) -> None:  # noqa: ANN001 - a generated Resource
    """The resource attributes every log and metric request of ``service`` carries."""
    for key, value in (("service.name", service), ("service.version", "1.4.2"), ("host.name", f"{service}-0")):
        resource.attributes.add(key=key).value.string_value = value


def log_request(seed: int, records: int = 512) -> bytes:
    """One ExportLogsServiceRequest of ``records`` records over the realistic services."""
    rng = random.Random(seed)
    now = time.time_ns()
    request = ExportLogsServiceRequest()
    services = list(SERVICES)
    per_service = records // len(services)
    for i, service in enumerate(services):
        rl = request.resource_logs.add()
        _describe(rl.resource, service)
        sl = rl.scope_logs.add()
        sl.scope.name = "shop.logging"
        count = per_service if i < len(services) - 1 else records - per_service * (len(services) - 1)
        for _ in range(count):
            error = rng.random() < 0.02
            record = sl.log_records.add(
                time_unix_nano=now - rng.randrange(10**9, 60 * 10**9),
                severity_number=17 if error else 9,
                severity_text="ERROR" if error else "INFO",
                trace_id=rng.randbytes(16) if rng.random() < 0.7 else b"",
            )
            record.observed_time_unix_nano = record.time_unix_nano + rng.randrange(10**6)
            if record.trace_id:
                record.span_id = rng.randbytes(8)
            record.body.string_value = rng.choice(LOG_BODIES).replace("{id}", str(rng.randrange(10**5)))
            record.attributes.add(key="code.function.name").value.string_value = rng.choice(
                ("handle", "charge", "get")
            )
            record.attributes.add(key="thread.name").value.string_value = f"worker-{rng.randrange(8)}"
            record.attributes.add(key="http.route").value.string_value = rng.choice(
                SERVICES[service][2]
            ).split()[1]
    return request.SerializeToString()


def metric_request(seed: int, points: int = 512) -> bytes:
    """One ExportMetricsServiceRequest of ``points`` points: a third gauges, sums and histograms."""
    rng = random.Random(seed)
    now = time.time_ns()
    request = ExportMetricsServiceRequest()
    made = 0
    services = list(SERVICES)
    while made < points:
        service = services[made // 64 % len(services)]
        rm = request.resource_metrics.add()
        _describe(rm.resource, service)
        sm = rm.scope_metrics.add()
        sm.scope.name = "opentelemetry.instrumentation.asgi"
        gauge = sm.metrics.add(name="process.cpu.utilization", unit="1").gauge
        total = sm.metrics.add(name="http.server.request.count", unit="{request}").sum
        total.aggregation_temporality, total.is_monotonic = AGGREGATION_TEMPORALITY_CUMULATIVE, True
        hist = sm.metrics.add(name="http.server.request.duration", unit="s").histogram
        hist.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
        bounds = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
        for j in range(min(64, points - made)):
            route = SERVICES[service][2][j % len(SERVICES[service][2])].split()[1]
            at = now - rng.randrange(10**9, 60 * 10**9)
            kind = j % 3
            if kind == 0:
                p = gauge.data_points.add(time_unix_nano=at, as_double=rng.random())
                p.attributes.add(key="process.cpu.state").value.string_value = rng.choice(("user", "system"))
            elif kind == 1:
                p = total.data_points.add(time_unix_nano=at, start_time_unix_nano=now - 3600 * 10**9)
                p.as_int = rng.randrange(10**6)
                p.attributes.add(key="http.route").value.string_value = route
                p.attributes.add(key="http.response.status_code").value.int_value = rng.choice(
                    (200, 201, 500)
                )
            else:
                counts = [rng.randrange(100) for _ in range(len(bounds) + 1)]
                p = hist.data_points.add(
                    time_unix_nano=at,
                    start_time_unix_nano=now - 3600 * 10**9,
                    count=sum(counts),
                    sum=rng.random() * 100,
                    bucket_counts=counts,
                    explicit_bounds=bounds,
                )
                p.attributes.add(key="http.route").value.string_value = route
            made += 1
    return request.SerializeToString()


# -- measuring ----------------------------------------------------------------------------------


def merge_wide(backend, tables: tuple[str, ...]) -> None:  # noqa: ANN001
    """Merge every table into wide parts, as a store past its first parts holds them."""
    for table in tables:
        backend.command(f"ALTER TABLE {table} MODIFY SETTING min_bytes_for_wide_part = 0")
        backend.command(f"OPTIMIZE TABLE {table} FINAL")


def table_bytes(backend, tables: tuple[str, ...]) -> dict[str, object]:  # noqa: ANN001
    """Rows, table bytes, projection bytes (by name) and column bytes of ``tables`` (active parts)."""
    params = {"tables": list(tables)}
    head = backend.query_arrow(
        "SELECT sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
        "WHERE active AND database = currentDatabase() AND has({tables:Array(String)}, table)",
        params,
    ).to_pylist()[0]
    projections = backend.query_arrow(
        "SELECT name, sum(bytes_on_disk) AS bytes FROM system.projection_parts "
        "WHERE active AND database = currentDatabase() AND has({tables:Array(String)}, table) GROUP BY name",
        params,
    ).to_pylist()
    columns = backend.query_arrow(
        "SELECT column, sum(column_data_compressed_bytes) AS bytes FROM system.parts_columns "
        "WHERE active AND database = currentDatabase() AND has({tables:Array(String)}, table) "
        "GROUP BY column ORDER BY bytes DESC",
        params,
    ).to_pylist()
    return {
        "rows": int(head["rows"] or 0),
        "table": int(head["bytes"] or 0),
        "projections": {p["name"]: int(p["bytes"]) for p in projections},
        "columns": [(c["column"], int(c["bytes"])) for c in columns],
    }


def per_row(sizes: dict[str, object], top: int = 5) -> dict[str, object]:
    """Bytes per row of a ``table_bytes`` result: total, table, projections, top columns."""
    rows = max(1, sizes["rows"])  # type: ignore[arg-type]
    projection = sum(sizes["projections"].values())  # type: ignore[union-attr]
    return {
        "rows": rows,
        "total": sizes["table"] / rows,  # type: ignore[operator]
        # A part's bytes_on_disk includes its projections' parts.
        "table": (sizes["table"] - projection) / rows,  # type: ignore[operator]
        "projection": projection / rows,
        "columns": ", ".join(f"{c} {b / rows:.1f}" for c, b in sizes["columns"][:top]),  # type: ignore[index]
    }


def timed_each(fn: Callable[[str], object], items: list[str], repeat: int) -> float:
    """p50 in milliseconds of ``fn(item)`` over ``repeat`` rounds of every item (after one warm-up round)."""
    return query_bench.timed_each(fn, items, repeat)[0]


def some_traces(backend, n: int = 20) -> list[str]:  # noqa: ANN001
    """``n`` stored trace ids, spread over the table (hex)."""
    return (
        backend.query_arrow(
            "SELECT DISTINCT lower(hex(trace_id)) AS t FROM spans ORDER BY cityHash64(trace_id) LIMIT {n:UInt32}",
            {"n": n},
        )
        .column("t")
        .to_pylist()
    )


def trace_lookup(backend, repeat: int, ceiling: bool) -> dict[str, float]:  # noqa: ANN001
    """p50 ms of store.traces.get_trace, and of the same query on a copy ordered by trace id."""
    from store import traces
    from store.sql import queries

    ids = some_traces(backend)
    result = {"p50": timed_each(lambda t: traces.get_trace(backend, t), ids, repeat)}
    if ceiling:
        backend.command("DROP TABLE IF EXISTS trace_ceiling")
        backend.command(
            "CREATE TABLE trace_ceiling ENGINE = MergeTree ORDER BY trace_id AS SELECT * FROM spans"
        )
        backend.command("OPTIMIZE TABLE trace_ceiling FINAL")
        sql = queries.TRACE_SPANS.replace("FROM spans", "FROM trace_ceiling")
        result["ceiling"] = timed_each(lambda t: backend.query_arrow(sql, {"trace_id": t}), ids, repeat)
        backend.command("DROP TABLE trace_ceiling")
    return result


def lookup_extra(backend, end_ns: int, repeat: int) -> dict[str, float]:  # noqa: ANN001
    """p50 ms of 20 trace summaries, 20 whole traces, and bench/queries.py's time-range scans."""
    from store import explore, search

    ids = some_traces(backend)
    hour = (end_ns - 3600 * 10**9, end_ns)
    day = (end_ns - query_bench.DAY_NS, end_ns)
    tag_search = explore.TraceSearch(
        *hour, service="svc-03", attrs=[explore.parse_attr("http.response.status_code=500")], limit=20
    )
    rounds = max(5, repeat * 4)
    return {
        "summaries": query_bench.timed(lambda: explore.trace_summaries(backend, ids), rounds)[0],
        "whole": query_bench.timed(lambda: search.get_traces(backend, ids), rounds)[0],
        "search": query_bench.timed(lambda: explore.search_traces(backend, tag_search), rounds)[0],
        "overview_raw": query_bench.timed(
            lambda: backend.query_arrow(query_bench.RAW_OVERVIEW, {"start": hour[0], "end": hour[1]}), rounds
        )[0],
        "series_raw": query_bench.timed(
            lambda: backend.query_arrow(
                query_bench.RAW_SERIES, {"service": "svc-03", "start": day[0], "end": day[1]}
            ),
            rounds,
        )[0],
        "marks": float(
            backend.query_arrow(
                "SELECT sum(marks) AS m FROM system.parts WHERE active AND database = currentDatabase() "
                "AND table = 'spans'"
            )
            .column("m")[0]
            .as_py()
            or 0
        ),
        "primary_key_bytes": float(
            backend.query_arrow(
                "SELECT sum(primary_key_bytes_in_memory) AS b FROM system.parts WHERE active "
                "AND database = currentDatabase() AND table = 'spans'"
            )
            .column("b")[0]
            .as_py()
            or 0
        ),
    }


def measure_layout(name: str, args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Every figure of one layout, each dataset in a fresh store under ``work``."""
    layout = LAYOUTS[name]
    out: dict[str, object] = {"layout": name}
    per_batch = max(1, args.batch // SPANS_PER_REQUEST)
    requests = args.spans // SPANS_PER_REQUEST

    backend = open_store(work / f"{name}-realistic", layout)
    try:
        bodies = (realistic_request(seed) for seed in range(requests))
        spent = write_batches(backend, "traces", bodies, per_batch)
        out["insert_rate"] = requests * SPANS_PER_REQUEST / spent
        if args.logs:
            write_batches(backend, "logs", (log_request(s) for s in range(args.logs // 512)), per_batch)
        if args.points:
            write_batches(
                backend, "metrics", (metric_request(s) for s in range(args.points // 512)), per_batch
            )
        merge_wide(backend, SPAN_TABLES + LOG_TABLES + METRIC_TABLES)
        out["realistic"] = per_row(table_bytes(backend, SPAN_TABLES))
        out["logs"] = per_row(table_bytes(backend, LOG_TABLES))
        out["points"] = per_row(table_bytes(backend, METRIC_TABLES))
        out["realistic_lookup"] = trace_lookup(backend, args.repeat, ceiling=False)["p50"]
    finally:
        backend.close()
        shutil.rmtree(work / f"{name}-realistic", ignore_errors=True)

    if args.random:
        backend = open_store(work / f"{name}-random", layout)
        try:
            write_batches(backend, "traces", (make_request(s) for s in range(requests)), per_batch)
            merge_wide(backend, SPAN_TABLES)
            out["random"] = per_row(table_bytes(backend, SPAN_TABLES))
        finally:
            backend.close()
            shutil.rmtree(work / f"{name}-random", ignore_errors=True)

    if args.trace_lookup_spans:
        backend = open_store(work / f"{name}-lookup", layout)
        try:
            end_ns = time.time_ns()
            query_bench.load(backend, args.trace_lookup_spans, end_ns, query_bench.DAY_NS)
            out["lookup"] = trace_lookup(backend, args.repeat, ceiling=not args.no_ceiling)
            if args.lookup_extra:
                out["extra"] = lookup_extra(backend, end_ns, args.repeat)
            out["lookup_bytes"] = per_row(table_bytes(backend, SPAN_TABLES))
        finally:
            backend.close()
            shutil.rmtree(work / f"{name}-lookup", ignore_errors=True)
    return out


def render(results: list[dict[str, object]], args: argparse.Namespace, command: str) -> str:
    """The markdown entry for docs/benchmarks.md."""
    lines = [
        f"## Disk — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command}` on {os.cpu_count()} cores, Python {platform.python_version()}: bytes on disk per row "
        "after OPTIMIZE FINAL into wide parts (table + projections), insert rate through OtlpWriter "
        f"({args.batch:,}-span writes, one at a time, realistic spans), trace by id p50 (store.traces.get_trace).",
        "",
        "| layout | realistic B/span (table + proj.) | random-id B/span | B/log | B/point | insert spans/s "
        f"| trace by id p50 ms, realistic | trace by id p50 ms at {args.trace_lookup_spans:,} (ceiling; ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        real = r["realistic"]
        rand = r.get("random")
        lookup = r.get("lookup")
        lookup_text = "—"
        if lookup:
            ceiling = lookup.get("ceiling")
            lookup_text = f"{lookup['p50']:.1f}" + (
                f" ({ceiling:.1f}; {lookup['p50'] / ceiling:.2f})" if ceiling else ""
            )
        lines.append(
            f"| {r['layout']} | {real['total']:.1f} ({real['table']:.1f} + {real['projection']:.1f}) "
            f"| {rand['total']:.1f} ({rand['table']:.1f} + {rand['projection']:.1f}) "
            if rand
            else f"| {r['layout']} | {real['total']:.1f} ({real['table']:.1f} + {real['projection']:.1f}) | — "
        )
        lines[-1] += (
            f"| {r['logs']['total']:.1f} | {r['points']['total']:.1f} | {r['insert_rate']:,.0f} "
            f"| {r['realistic_lookup']:.1f} | {lookup_text} |"
        )
    extra = [r for r in results if r.get("extra")]
    if extra:
        base = extra[0]
        lines += [
            "",
            f"At {args.trace_lookup_spans:,} spans (bench/queries.py's generator, merged), p50 ms; "
            f"in brackets the ratio to {base['layout']}:",
            "",
            "| layout | trace by id | 20 summaries | 20 whole traces | 1 h trace search, tag filter, 20 summaries "
            "| services overview 1 h, raw spans | RED series 24 h svc-03, raw spans | spans marks | primary key bytes "
            "| B/span |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in extra:
            e, b = r["extra"], base["extra"]
            cells = [f"{r['lookup']['p50']:.1f} ({r['lookup']['p50'] / base['lookup']['p50']:.2f})"]
            for key in ("summaries", "whole", "search", "overview_raw", "series_raw"):
                cells.append(f"{e[key]:.1f} ({e[key] / b[key]:.2f})")
            cells += [
                f"{e['marks']:,.0f}",
                f"{e['primary_key_bytes']:,.0f}",
                f"{r['lookup_bytes']['total']:.1f}",
            ]
            lines.append(f"| {r['layout']} | " + " | ".join(cells) + " |")
    lines += ["", "Largest columns, bytes per row (realistic spans; logs; metric points):", ""]
    for r in results:
        lines.append(
            f"* {r['layout']} ({LAYOUTS[r['layout']].note}): spans: {r['realistic']['columns']}; "
            f"logs: {r['logs']['columns']}; points: {r['points']['columns']}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=300_000, help="realistic and random-id spans per store")
    parser.add_argument("--batch", type=int, default=100_000, help="spans (records, points) per write")
    parser.add_argument("--logs", type=int, default=300_000)
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--no-random", dest="random", action="store_false", help="skip the random-id spans")
    parser.add_argument(
        "--trace-lookup-spans", type=int, default=10_000_000, help="0: skip the lookup timing"
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the trace-id-ordered copy")
    parser.add_argument(
        "--lookup-extra",
        action="store_true",
        help="also time 20 summaries, 20 whole traces and time-range scans at --trace-lookup-spans",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds over the 20 traces per timing")
    parser.add_argument("--layouts", default="current", help="comma-separated: " + ", ".join(LAYOUTS))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    command = "python bench/disk.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = []
    work = Path(tempfile.mkdtemp(prefix="sloscope-diskbench-"))
    try:
        for name in args.layouts.split(","):
            results.append(measure_layout(name, args, work))
            print(f"{name}: {results[-1]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(results, args, command.strip())
    print(text)
    with open(args.output, "a") as f:
        f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
