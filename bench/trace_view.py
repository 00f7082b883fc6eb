"""Trace view benchmark in real Chromium: what opening a trace costs as the trace grows (issue 17,
"a waterfall whose cost follows the screen, not the trace").

    .venv/bin/python bench/trace_view.py --spans 100,10000,100000

A fresh ``sloscope serve`` child process on a temporary store receives one trace per size through
OTLP/HTTP protobuf (a root, children of five services, and grandchildren under each child), plus one
trace of ``--services`` services and one Zipkin v2 span with ``--tags`` tags. Headless Chromium
(/usr/bin/chromium) then opens each trace ``--repeat`` times in a fresh context and reports medians:

* **ready**: navigation start to the waterfall drawn and answering (``#waterfall[data-ready=true]``);
* **HTML** and **outline** bytes on the wire (gzip) and decoded;
* **collapse all**, **open a span** (its details read from the span page) and **find** (every "item 5" span,
  jump to the first), each from the click to the next frame;
* the page without JavaScript with a server-side find (``?q=``), the largest trace's statistics and
  compare (with itself) pages, and the span page of the Zipkin span, over HTTP.

The targets: a 10,000-span trace ready in at most 4 times the 100-span trace's time (the ceiling is
measured in the same run), its HTML under 2 MB on the wire, and a 100,000-span trace that opens and
answers. Prints a table and appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import sdk_load  # noqa: E402 - bench/ is on the path from here

MS = 10**6
SPANS_PER_EXPORT = 5000
CHROMIUM = "/usr/bin/chromium"


def trace_bodies(trace_number: int, spans: int, services: int, now_ns: int) -> list[bytes]:
    """OTLP/HTTP protobuf bodies of one trace of ``spans`` spans: a root, ``sqrt(spans)`` children and
    the rest as grandchildren spread over them; operation ``item J`` repeats under every child."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1 import trace_pb2

    trace_id = (0x7ACE0000 + trace_number).to_bytes(16, "big")
    children = max(1, int(spans**0.5))
    base = now_ns - 10 * 60 * 10**9
    rows: list[tuple[int, int, int, int, int, str]] = [(1, 0, 0, base, base + 800 * MS, "batch")]
    number = 1
    for c in range(children):
        if number >= spans:
            break
        number += 1
        child = number
        start = base + c * 800 * MS // children
        rows.append((child, 1, c % services, start, start + 700 * MS // children, f"step {c}"))
        per_child = (spans - 1 - children) // children + (1 if c < (spans - 1 - children) % children else 0)
        for j in range(per_child):
            number += 1
            at = start + j * 10_000
            rows.append((number, child, (c + j) % services, at, at + 5_000, f"item {j}"))
    bodies, request = [], ExportTraceServiceRequest()
    scopes: dict[int, Any] = {}
    for k, (span_no, parent_no, service, start, end, name) in enumerate(rows):
        if service not in scopes:
            rs = request.resource_spans.add()
            rs.resource.attributes.append(
                KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{service:03d}"))
            )
            scopes[service] = rs.scope_spans.add().spans
        scopes[service].append(
            trace_pb2.Span(
                trace_id=trace_id,
                span_id=span_no.to_bytes(8, "big"),
                parent_span_id=parent_no.to_bytes(8, "big") if parent_no else b"",
                name=name,
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes=[KeyValue(key="item", value=AnyValue(int_value=span_no))],
            )
        )
        if (k + 1) % SPANS_PER_EXPORT == 0 or k == len(rows) - 1:
            bodies.append(request.SerializeToString())
            request, scopes = ExportTraceServiceRequest(), {}
    return bodies


def zipkin_span(tags: int, now_us: int) -> bytes:
    """One Zipkin v2 span with ``tags`` tags, gzip-compressed."""
    span = {
        "traceId": "5a1b" * 8,
        "id": "00000000000000aa",
        "name": "many tags",
        "timestamp": now_us - 5 * 60 * 10**6,
        "duration": 1000,
        "localEndpoint": {"serviceName": "tagged"},
        "tags": {f"tag.{i:07d}": f"value {i}" for i in range(tags)},
    }
    return gzip.compress(json.dumps([span]).encode())


def trace_hex(trace_number: int) -> str:
    return f"{0x7ACE0000 + trace_number:032x}"


FRAME = """(selector) => new Promise(done => {
    const t = performance.now(); document.querySelector(selector).click();
    requestAnimationFrame(() => setTimeout(() => done(performance.now() - t), 0)); })"""


def measure_trace(browser: Any, url: str, repeat: int) -> dict[str, float]:
    """Medians over ``repeat`` fresh contexts of what opening ``url`` costs (see the module doc)."""
    figures: dict[str, list[float]] = {}
    for _ in range(repeat + 1):  # the first is a warm-up (the server's and Chromium's caches)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(url, wait_until="commit")
        page.wait_for_selector("#waterfall[data-ready=true]", timeout=300_000)
        timing = page.evaluate(
            """() => { const n = performance.getEntriesByType('navigation')[0];
                       const o = performance.getEntriesByType('resource').find(r => r.name.includes('/outline'));
                       return {ready: performance.now(), html: n.transferSize, html_decoded: n.decodedBodySize,
                               outline: o ? o.transferSize : 0, outline_decoded: o ? o.decodedBodySize : 0,
                               rows: document.querySelectorAll('#waterfall .row').length}; }"""
        )
        timing["collapse_all"] = page.evaluate(FRAME, "[data-action=collapse-all]")
        page.evaluate(FRAME, "[data-action=expand-all]")
        started = time.perf_counter()
        page.locator("#waterfall .row .op-link").nth(1).click()
        page.locator(".detail-host #span-detail, .detail-host table, .detail-host dl").first.wait_for()
        timing["open_span"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        page.fill("#trace-search", "item 5")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('#waterfall .row.current') !== null", timeout=120_000
        )
        timing["find"] = (time.perf_counter() - started) * 1000
        context.close()
        for key, value in timing.items():
            figures.setdefault(key, []).append(value)
    return {key: statistics.median(values[1:]) for key, values in figures.items()}


def timed_get(client: httpx.Client, url: str, repeat: int) -> tuple[float, int]:
    """Median seconds of GET ``url`` (after a warm-up) and the compressed size of the reply."""
    times, size = [], 0
    for k in range(repeat + 1):
        started = time.perf_counter()
        with client.stream("GET", url, headers={"Accept": "text/html", "Accept-Encoding": "gzip"}) as reply:
            assert reply.status_code == 200, url
            size = sum(len(chunk) for chunk in reply.iter_raw())
        if k:
            times.append(time.perf_counter() - started)
    return statistics.median(times), size


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", default="100,10000,100000", help="comma-separated trace sizes")
    parser.add_argument("--services", type=int, default=200, help="services of the many-services trace")
    parser.add_argument("--tags", type=int, default=1_000_000, help="tags of the Zipkin span")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.spans.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sloscope-bench-trace-"))
    # A body as large as the many-tags span (16 MB is the default limit, and a span of a million tags
    # is about 40 MB of JSON).
    flags = ("--log-level", "WARNING", "--max-body-bytes", str(256 << 20))
    server = sdk_load.ServerProcess(work / "data", work / "server.log", flags=flags)
    server.start()
    try:
        now = time.time_ns()
        traces = [(f"{n:,} spans, 5 services", n, 5) for n in sizes]
        traces.append((f"1,000 spans, {args.services} services", 1000, args.services))
        with httpx.Client(timeout=600) as client:
            for number, (_, spans, services) in enumerate(traces):
                for body in trace_bodies(number, spans, services, now):
                    reply = client.post(
                        f"{server.otlp}/v1/traces",
                        content=body,
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                    assert reply.status_code == 200, reply.text
            reply = client.post(
                f"http://127.0.0.1:{server.zipkin_port}/api/v2/spans",
                content=zipkin_span(args.tags, now // 1000),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
            assert reply.status_code == 202, reply.text
            for number, (_, spans, _) in enumerate(traces):
                deadline = time.monotonic() + 600
                url = f"{server.api}/api/v1/traces/{trace_hex(number)}/outline"
                while (r := client.get(url)).status_code != 200 or len(r.json()["rows"]["span_id"]) < spans:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"trace {number} not stored after 600 s; see {server.log_path}")
                    time.sleep(0.5)
            span_url = f"{server.api}/traces/{'5a1b' * 8}/spans/00000000000000aa"
            deadline = time.monotonic() + 600
            while client.get(span_url).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Zipkin span is not stored after 600 s")
                time.sleep(0.5)
            nojs = {
                n: timed_get(client, f"{server.api}/traces/{trace_hex(k)}?q=item+5", args.repeat)
                for k, n in enumerate(sizes)
            }
            largest = trace_hex(len(sizes) - 1)
            analysis = {
                "statistics": timed_get(client, f"{server.api}/traces/{largest}/stats", args.repeat),
                "compare with itself": timed_get(
                    client, f"{server.api}/traces/compare?a={largest}&b={largest}", args.repeat
                ),
            }
            tags_capped = timed_get(client, span_url, args.repeat)
            tags_trace = timed_get(client, f"{server.api}/traces/{'5a1b' * 8}", args.repeat)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                results = {
                    label: measure_trace(browser, f"{server.api}/traces/{trace_hex(k)}", args.repeat)
                    for k, (label, _, _) in enumerate(traces)
                }
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        f"## Trace view — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python bench/trace_view.py --spans {args.spans} --services {args.services} --tags {args.tags} "
        f"--repeat {args.repeat}` on {os.cpu_count()} cores, Python {platform.python_version()}, headless "
        "Debian Chromium, a 1400×900 window, a fresh context per load; medians after one warm-up.",
        "",
        "| trace | ready (ms) | rows in the page | HTML on the wire (kB) | outline on the wire / decoded (kB) "
        "| collapse all (ms) | open a span (ms) | find + jump (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['ready']:.0f} | {r['rows']:.0f} | {r['html'] / 1024:.1f} | "
            f"{r['outline'] / 1024:.0f} / {r['outline_decoded'] / 1024:.0f} | {r['collapse_all']:.0f} | "
            f"{r['open_span']:.0f} | {r['find']:.0f} |"
        )
    small = results[traces[0][0]]
    lines += ["", "Without JavaScript, a server-side find (`?q=item+5`, the matching rows only):", ""]
    lines += [
        f"- {n:,} spans: {seconds * 1000:.0f} ms, {size / 1024:.1f} kB" for n, (seconds, size) in nojs.items()
    ]
    lines += ["", f"The {max(sizes):,}-span trace's other views (pages, over HTTP):", ""]
    lines += [
        f"- {name}: {seconds * 1000:.0f} ms, {size / 1024:.1f} kB"
        for name, (seconds, size) in analysis.items()
    ]
    lines += [
        "",
        f"One Zipkin span with {args.tags:,} tags: its span page (200 attributes shown) "
        f"{tags_capped[0] * 1000:.0f} ms, {tags_capped[1] / 1024:.1f} kB; its trace view "
        f"{tags_trace[0] * 1000:.0f} ms.",
        "",
    ]
    for label, r in results.items():
        if label != traces[0][0]:
            lines.append(f"- {label} / {traces[0][0]}, ready: **{r['ready'] / small['ready']:.2f}**")
    lines += [
        "",
        "Targets: 10,000 spans ready in at most 4× the 100-span trace; its HTML under 2 MB on the wire.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "a") as f:
        f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
