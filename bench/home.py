"""Home page benchmark: what ``/`` costs with 5 services against 1,000 (issue 16, "home scales with
the fleet").

    .venv/bin/python bench/home.py --services 5,1000

For each fleet size a fresh ``sloscope serve`` child process gets its own temporary data directory,
and the fleet's spans go in through the real ingest path (OTLP/HTTP protobuf, 2,000 spans a request):
``--requests`` SERVER spans per service over the last 50 minutes, one in ten an error. Once the JSON
API counts them all, ``/`` (the default range, the last hour) and ``/api/v1/services`` are requested
``--repeat`` times after one warm-up each; the medians are reported, with the ratio of the largest
fleet's ``/`` to the smallest's. The target: 1,000 services cost at most 3 times what 5 cost (before
issue 16, ``/`` made one query per service and took 12-22 s with 200 services).

Prints a table and appends it to docs/benchmarks.md.
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import sdk_load  # noqa: E402 - bench/ is on the path from here

SPANS_PER_EXPORT = 2000
MS = 10**6


def fleet_requests(services: int, per_service: int, now_ns: int) -> list[bytes]:
    """OTLP/HTTP protobuf bodies: ``per_service`` SERVER spans of each service over the last 50 minutes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1 import trace_pb2

    error = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="failed")
    bodies: list[bytes] = []
    request, in_request, span_number = ExportTraceServiceRequest(), 0, 0
    for s in range(services):
        rs = request.resource_spans.add()
        name = f"svc-{s:04d}"
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=name)))
        spans = rs.scope_spans.add().spans
        for i in range(per_service):
            span_number += 1
            start = now_ns - 50 * 60 * 10**9 + (i * 50 * 60 * 10**9) // per_service + s * MS
            spans.append(
                trace_pb2.Span(
                    trace_id=(0xB0E0000000000 + span_number).to_bytes(16, "big"),
                    span_id=span_number.to_bytes(8, "big"),
                    name=f"GET /api/{i % 5}",
                    kind=trace_pb2.Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + (5 + (i * 7) % 90) * MS,
                    status=error if i % 10 == 0 else None,
                )
            )
            in_request += 1
        if in_request >= SPANS_PER_EXPORT or s == services - 1:
            bodies.append(request.SerializeToString())
            request, in_request = ExportTraceServiceRequest(), 0
    return bodies


def median_seconds(call: Callable[[], httpx.Response], repeat: int) -> float:
    """Median wall time of ``call`` over ``repeat`` runs after one warm-up; every reply must be 200."""
    assert call().status_code == 200
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        reply = call()
        times.append(time.perf_counter() - started)
        assert reply.status_code == 200, reply.text[:500]
    return statistics.median(times)


def measure(services: int, per_service: int, repeat: int, work: Path) -> dict[str, float]:
    """Start a server on a fresh store, ingest the fleet, time ``/`` and ``/api/v1/services``."""
    server = sdk_load.ServerProcess(
        work / f"data-{services}", work / f"server-{services}.log", flags=("--log-level", "WARNING")
    )
    server.start()
    try:
        now_ns = time.time_ns()
        ingest_started = time.monotonic()
        with httpx.Client(timeout=120) as client:
            for body in fleet_requests(services, per_service, now_ns):
                reply = client.post(
                    f"{server.otlp}/v1/traces",
                    content=body,
                    headers={"Content-Type": "application/x-protobuf"},
                )
                assert reply.status_code == 200, reply.text
            # Queryable: the roll-up counts every span (the JSON API reads the same roll-up as /).
            api = f"{server.api}/api/v1/services?limit={services + 10}"
            deadline = time.monotonic() + 120
            while sum(s["requests"] for s in client.get(api).json()["services"]) < services * per_service:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"spans not queryable after 120 s; see {server.log_path}")
                time.sleep(0.2)
            ingested = time.monotonic() - ingest_started
            home = client.get(f"{server.api}/", headers={"Accept": "text/html"})
            rows = home.text.count('<svg class="spark"')
            return {
                "ingest_s": ingested,
                "rows": rows,
                "home_s": median_seconds(
                    lambda: client.get(f"{server.api}/", headers={"Accept": "text/html"}), repeat
                ),
                "api_s": median_seconds(lambda: client.get(api), repeat),
                "bytes": len(home.content),
            }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default="5,1000", help="comma-separated fleet sizes")
    parser.add_argument("--requests", type=int, default=20, help="spans per service")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per page (median)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.services.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sloscope-bench-home-"))
    try:
        results = {n: measure(n, args.requests, args.repeat, work) for n in sizes}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    small, large = results[min(sizes)], results[max(sizes)]
    lines = [
        f"## Home page — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python bench/home.py --services {args.services} --requests {args.requests} --repeat {args.repeat}` "
        f"on {os.cpu_count()} cores, Python {platform.python_version()}; a fresh store per fleet, spans "
        "through OTLP/HTTP, medians after one warm-up request.",
        "",
        "| services | spans | rows on page 1 | `/` (ms) | `/api/v1/services` (ms) | page (kB) | ingest (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in results.items():
        lines.append(
            f"| {n:,} | {n * args.requests:,} | {r['rows']:.0f} | {r['home_s'] * 1000:.0f} | "
            f"{r['api_s'] * 1000:.0f} | {r['bytes'] / 1024:.0f} | {r['ingest_s']:.1f} |"
        )
    ratio = large["home_s"] / small["home_s"]
    lines += [
        "",
        f"`/` with {max(sizes):,} services / with {min(sizes):,}: **{ratio:.2f}** (target: at most 3).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "a") as f:
        f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
