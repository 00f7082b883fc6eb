"""Ingest benchmark: OTLP/HTTP protobuf end to end versus the engine's own insert of the same requests.

    make bench                      # or: .venv/bin/python bench/ingest.py --spans 1000000 --clients 3

For each workload (``--workloads``: the random-id requests below, and whole realistic traces from
bench/realistic.py):

1. Starts `sloscope serve` on free ports with a fresh data directory.
2. Several client processes POST pre-serialised 512-span requests; the clock stops when every
   acknowledged span is queryable (the flushed count equals the spans acknowledged). The server's
   CPU over that time per span and its peak RSS are read from /proc.
3. The same requests are written again in this process through the engine's Protobuf format as the
   flusher writes them, with the full schema and bare (no trace projection, no views), and the rows
   through a raw Arrow insert: the ceilings the end-to-end figures are ratios to.
4. For the choice of decoding route: the requests walked in Python into Arrow columns.

Prints a table and appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from realistic import realistic_bodies  # noqa: E402

from collector.admission import read_rss  # noqa: E402

SPANS_PER_REQUEST = 512
ROUTES = ["/api/orders", "/api/orders/{id}", "/api/cart", "/api/checkout", "/api/products/{id}"]


def make_request(seed: int) -> bytes:
    """One realistic request: 512 spans of 4 services, 8 attributes of mixed kinds, some events."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    now = time.time_ns()
    for service in ("gateway", "orders", "payments", "inventory"):
        rs = req.resource_spans.add()
        for key, value in (("service.name", service), ("service.version", "1.4.2"), ("host.name", "node-7")):
            rs.resource.attributes.add(key=key).value.string_value = value
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.asgi", "0.66b2"
        for _ in range(SPANS_PER_REQUEST // 4):
            start = now - rng.randrange(10**9, 60 * 10**9)
            span = ss.spans.add(
                trace_id=rng.randbytes(16),
                span_id=rng.randbytes(8),
                parent_span_id=rng.randbytes(8) if rng.random() < 0.8 else b"",
                name=f"GET {rng.choice(ROUTES)}",
                kind=rng.choice((1, 2, 3)),
                start_time_unix_nano=start,
                end_time_unix_nano=start + int(rng.lognormvariate(16, 1)),
            )
            status = rng.choice((200, 200, 200, 201, 404, 500))
            span.attributes.extend(
                [
                    KeyValue(key="http.request.method", value=AnyValue(string_value="GET")),
                    KeyValue(key="http.route", value=AnyValue(string_value=span.name[4:])),
                    KeyValue(key="http.response.status_code", value=AnyValue(int_value=status)),
                    KeyValue(
                        key="url.path", value=AnyValue(string_value=f"/api/orders/{rng.randrange(10**6)}")
                    ),
                    KeyValue(key="server.address", value=AnyValue(string_value="shop.example")),
                    KeyValue(key="network.peer.port", value=AnyValue(int_value=rng.randrange(1024, 65535))),
                    KeyValue(key="sampling.ratio", value=AnyValue(double_value=0.25)),
                    KeyValue(key="cache.hit", value=AnyValue(bool_value=rng.random() < 0.5)),
                ]
            )
            if status == 500:
                span.status.code, span.status.message = 2, "internal error"
                event = span.events.add(time_unix_nano=start + 1000, name="exception")
                event.attributes.add(key="exception.type").value.string_value = "TimeoutError"
    return req.SerializeToString()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_span_id_at(body: bytes) -> int:
    """Where the first span's id lies in a serialised request (after its tag 0x12 and length 8)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    span_id = request.resource_spans[0].scope_spans[0].spans[0].span_id
    return body.index(b"\x12\x08" + span_id) + 2


def client(port: int, bodies: list[bytes], count: int, results: multiprocessing.Queue) -> None:
    """POST ``count`` requests (cycling over ``bodies``); report the spans acknowledged.

    The standard library's client over one keep-alive connection: the clients share the machine with
    the server, and a heavier client would be measured instead of the server.
    """
    acked = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-protobuf"}
    # Every request must differ: the collector logs a request identical to a recent one only once
    # (a client's retry, collector/dedup.py). Each copy gets its own first span id, in place.
    offsets = [_first_span_id_at(body) for body in bodies]
    for i in range(count):
        request = bytearray(bodies[i % len(bodies)])
        at = offsets[i % len(bodies)]
        request[at : at + 8] = ((os.getpid() << 32) | i).to_bytes(8, "big")
        while True:
            conn.request("POST", "/v1/traces", body=bytes(request), headers=headers)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status == 200:
                acked += SPANS_PER_REQUEST
                break
            if reply.status not in (429, 503):
                raise RuntimeError(f"unexpected {reply.status}: {body[:200]!r}")
            time.sleep(float(reply.getheader("Retry-After", "1")))
    conn.close()
    results.put(acked)


def stored_spans(api: str) -> int:
    text = httpx.get(f"{api}/metrics").text
    return int(
        sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('sloscope_flushed_items_total{signal="traces"}')
        )
    )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, all its threads, the engine's included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int:
    """The peak resident set size (bytes) of process ``pid`` (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class RssWatch:
    """The peak RSS of this process while the block runs, sampled every 10 ms (VmHWM cannot be reset)."""

    def __enter__(self) -> RssWatch:
        self.start = read_rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, read_rss())



def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def end_to_end(data_dir: Path, bodies: list[bytes], total_spans: int, clients: int) -> dict[str, float]:
    otlp, api = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sloscope",
            "serve",
            "--data-dir",
            str(data_dir),
            "--otlp-http-port",
            str(otlp),
            "--api-port",
            str(api),
            "--otlp-grpc-port",
            str(free_port()),
            "--zipkin-port",
            str(free_port()),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{api}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        cpu_at_start = process_cpu(server.pid)
        per_client = total_spans // SPANS_PER_REQUEST // clients
        results: multiprocessing.Queue = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=client, args=(otlp, bodies, per_client, results))
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        acked = sum(results.get(timeout=600) for _ in procs)
        acked_at = time.perf_counter()
        for p in procs:
            p.join()
        while stored_spans(f"http://127.0.0.1:{api}") < acked:
            time.sleep(0.02)
        stored_at = time.perf_counter()
        return {
            "spans": acked,
            "ack_rate": acked / (acked_at - started),
            "e2e_rate": acked / (stored_at - started),
            "cpu_us": (process_cpu(server.pid) - cpu_at_start) / acked * 1e6,
            "peak_rss": peak_rss(server.pid),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)


#: What the bare engine insert leaves out: the trace projection and the views on spans.
BARE = (
    "ALTER TABLE spans DROP PROJECTION IF EXISTS by_trace_offset",
    "ALTER TABLE spans DROP PROJECTION IF EXISTS by_trace",
    "DROP VIEW IF EXISTS red_1m_mv",
    "DROP VIEW IF EXISTS span_counts_1m_mv",
)


def engine_rates(data_dir: Path, bodies: list[bytes], spans_expected: int) -> dict[str, float]:
    """The engine's own rates over the rows and requests of the end-to-end run stored at ``data_dir``:
    the raw Arrow insert, the Protobuf route with the full schema, and the same statements with no
    projection and no views (the bare insert); CPU per span (this process: the engine's threads)
    and the peak RSS growth while each ran."""
    from concurrent.futures import ThreadPoolExecutor

    from sloscope.settings import Settings
    from store.embedded import EmbeddedBackend
    from store.otlp_writer import OtlpWriter

    defaults = Settings()
    # The engine's best: a statement per core at once, whatever the server's default.
    parts = max(2, defaults.insert_parallelism)
    backend = EmbeddedBackend(data_dir / "store", insert_sessions=parts)
    try:
        table = backend.query_arrow("SELECT * FROM spans")
        assert table.num_rows == spans_expected, (table.num_rows, spans_expected)
        backend.command("TRUNCATE TABLE spans")
        batch = defaults.batch_rows
        started = time.perf_counter()
        for offset in range(0, table.num_rows, batch):
            backend.insert_arrow("spans", table.slice(offset, batch))
        out = {"arrow_insert_rate": table.num_rows / (time.perf_counter() - started)}
        del table

        # As the flusher does: batches of the default size, each cut into parts written at once.
        writer = OtlpWriter(backend, defaults.correlation_keys)
        per_part = batch // SPANS_PER_REQUEST // parts
        requests = [bodies[i % len(bodies)] for i in range(spans_expected // SPANS_PER_REQUEST)]
        chunks = [requests[i : i + per_part] for i in range(0, len(requests), per_part)]
        for name, schema_changes in (("protobuf", ()), ("bare", BARE)):
            backend.command("TRUNCATE TABLE spans")
            for statement in schema_changes:
                backend.command(statement)
            tokens = [f"{name}-{n}" for n in range(len(chunks))]
            with RssWatch() as rss, ThreadPoolExecutor(parts) as pool:
                cpu, started = self_cpu(), time.perf_counter()
                list(pool.map(lambda chunk, token: writer.write("traces", chunk, token), chunks, tokens))
                elapsed, cpu = time.perf_counter() - started, self_cpu() - cpu
            spans = len(requests) * SPANS_PER_REQUEST
            out |= {
                f"{name}_rate": spans / elapsed,
                f"{name}_cpu_us": cpu / spans * 1e6,
                f"{name}_rss": rss.growth,
            }
    finally:
        backend.close()
    return out


def python_walk_rate(bodies: list[bytes]) -> float:
    """The route not taken: walk each span in Python into Arrow columns (ids, names, times, attributes)."""
    started = time.perf_counter()
    spans = 0
    for body in bodies:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        cols: dict[str, list] = {
            k: [] for k in ("trace_id", "span_id", "name", "start", "end", "keys", "values")
        }
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    cols["trace_id"].append(span.trace_id)
                    cols["span_id"].append(span.span_id)
                    cols["name"].append(span.name)
                    cols["start"].append(span.start_time_unix_nano)
                    cols["end"].append(span.end_time_unix_nano)
                    keys, values = [], []
                    for kv in span.attributes:
                        keys.append(kv.key)
                        kind = kv.value.WhichOneof("value")
                        values.append(str(getattr(kv.value, kind)) if kind else "")
                    cols["keys"].append(keys)
                    cols["values"].append(values)
        pa.table(cols)
        spans += len(cols["name"])
    return spans / (time.perf_counter() - started)


WORKLOADS = {
    "random": ("random ids", lambda: [make_request(seed) for seed in range(40)]),
    "realistic": ("realistic traces", lambda: realistic_bodies(40)),
}


def measure(workload: str, args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Every figure of one workload: end-to-end trials (the median kept), the engine's rates."""
    bodies = WORKLOADS[workload][1]()
    # Two cores shared by server, clients and background merges: single runs vary by +-10%.
    trials = [
        end_to_end(work / f"{workload}{n}", bodies, args.spans, args.clients) for n in range(args.trials)
    ]
    e2e = sorted(trials, key=lambda t: t["e2e_rate"])[len(trials) // 2]
    engine = engine_rates(work / f"{workload}0", bodies, int(e2e["spans"]))
    for n in range(args.trials):
        shutil.rmtree(work / f"{workload}{n}", ignore_errors=True)
    return {"bodies": bodies, "trials": trials, **e2e, **engine}


def render(results: dict[str, dict], args: argparse.Namespace, walk: float) -> str:
    """The markdown entry for docs/benchmarks.md: one column per workload."""
    names = list(results)
    mib = 1 << 20

    def row(label: str, value: Callable[[dict], str]) -> str:
        return f"| {label} | " + " | ".join(value(results[n]) for n in names) + " |"

    command = (
        f"python bench/ingest.py --spans {args.spans} --clients {args.clients} --trials {args.trials} "
        f"--workloads {','.join(names)}"
    )
    first = results[names[0]]
    trials = "; ".join(
        f"{WORKLOADS[n][0]}: "
        + ", ".join(f"{rate:,.0f}" for rate in sorted(t["e2e_rate"] for t in r["trials"]))
        for n, r in results.items()
    )
    lines = [
        f"## Ingest — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command}` on {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{int(first['spans']):,} spans in 512-span requests from {args.clients} client processes "
        f"(random ids: bench/ingest.py's requests; realistic traces: bench/realistic.py). End to end, "
        f"median of {args.trials} trials ({trials} spans/s). The engine rows write the same requests "
        "in the same run, as the flusher does (batches of the default size, cut into parts written at "
        "once, at least two: the engine's best on these cores, whatever the server's default); "
        "the bare insert is the same statements without the trace projection and the views.",
        "",
        "| measure | " + " | ".join(WORKLOADS[n][0] for n in names) + " |",
        "|---|" + "---:|" * len(names),
        row("OTLP/HTTP protobuf, acknowledged (spans/s)", lambda r: f"{r['ack_rate']:,.0f}"),
        row(
            "OTLP/HTTP protobuf, end to end: acknowledged and queryable (spans/s)",
            lambda r: f"{r['e2e_rate']:,.0f}",
        ),
        row("server: CPU per stored span, end to end (µs)", lambda r: f"{r['cpu_us']:.1f}"),
        row("server: peak RSS, end to end (MiB)", lambda r: f"{r['peak_rss'] / mib:,.0f}"),
        row("engine: Protobuf route, full schema (spans/s)", lambda r: f"{r['protobuf_rate']:,.0f}"),
        row(
            "engine: Protobuf route, CPU per span (µs) / RSS growth (MiB)",
            lambda r: f"{r['protobuf_cpu_us']:.1f} / {r['protobuf_rss'] / mib:,.0f}",
        ),
        row("engine: bare insert (spans/s)", lambda r: f"{r['bare_rate']:,.0f}"),
        row(
            "engine: bare insert, CPU per span (µs) / RSS growth (MiB)",
            lambda r: f"{r['bare_cpu_us']:.1f} / {r['bare_rss'] / mib:,.0f}",
        ),
        row(
            "engine: raw Arrow insert of the stored rows, same batch size (rows/s)",
            lambda r: f"{r['arrow_insert_rate']:,.0f}",
        ),
        row(
            "**end to end / engine Protobuf route** (target ≥ 0.8)",
            lambda r: f"**{r['e2e_rate'] / r['protobuf_rate']:.2f}**",
        ),
        row(
            "**server CPU per span / bare insert's** (target ≤ 2.5)",
            lambda r: f"**{r['cpu_us'] / r['bare_cpu_us']:.2f}**",
        ),
        row("end to end / raw Arrow insert", lambda r: f"{r['e2e_rate'] / r['arrow_insert_rate']:.2f}"),
        f"| engine Protobuf route / Python walk of the same requests into Arrow columns ({walk:,.0f} spans/s) | "
        f"{first['protobuf_rate'] / walk:.2f} |" + " |" * (len(names) - 1),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to send end to end")
    parser.add_argument("--clients", type=int, default=3, help="client processes")
    parser.add_argument("--trials", type=int, default=3, help="end-to-end runs; the median is reported")
    parser.add_argument("--workloads", default="random,realistic", help=f"of {', '.join(WORKLOADS)}")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    names = [w for w in args.workloads.split(",") if w]
    if not names or set(names) - set(WORKLOADS):
        parser.error(f"--workloads: choose from {', '.join(WORKLOADS)}")

    work = Path(tempfile.mkdtemp(prefix="sloscope-bench-"))
    try:
        results = {name: measure(name, args, work) for name in names}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    walk = python_walk_rate(results[names[0]]["bodies"][:20])
    text = render(results, args, walk)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not args.output.exists():
        args.output.write_text(
            "# Benchmarks\n\nAppended by `make bench`; newest last. Each entry is one run of the command it names.\n\n"
        )
    with open(args.output, "a") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
