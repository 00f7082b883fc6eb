"""Ingest benchmark: OTLP/HTTP protobuf end to end versus the engine's raw Arrow insert rate.

    make bench                      # or: .venv/bin/python bench/ingest.py --spans 1000000 --clients 3

1. Starts `sloscope serve` on free ports with a fresh data directory.
2. Several client processes POST pre-serialised 512-span requests; the clock stops when every
   acknowledged span is queryable (count() in the store equals the spans acknowledged).
3. The same rows are read back as an Arrow table and inserted again, in batches of the server's
   default size, into an empty spans table with its materialized view: the raw engine insert rate.
4. For the choice of decoding route: the same requests stored through the engine's Protobuf format
   (the route sloscope uses) and walked in Python into Arrow columns (the route it does not use).

Prints a table and appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

ROOT = Path(__file__).resolve().parents[1]
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
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)


def engine_rates(data_dir: Path, bodies: list[bytes], spans_expected: int) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    from sloscope.settings import Settings
    from store.embedded import EmbeddedBackend
    from store.otlp_writer import OtlpWriter

    defaults = Settings()
    backend = EmbeddedBackend(data_dir / "store", insert_sessions=defaults.insert_parallelism)
    try:
        table = backend.query_arrow("SELECT * FROM spans")
        assert table.num_rows == spans_expected, (table.num_rows, spans_expected)
        backend.command("TRUNCATE TABLE spans")
        batch = defaults.batch_rows
        started = time.perf_counter()
        for offset in range(0, table.num_rows, batch):
            backend.insert_arrow("spans", table.slice(offset, batch))
        arrow_rate = table.num_rows / (time.perf_counter() - started)

        backend.command("TRUNCATE TABLE spans")
        # As the flusher does: batches of the default size, each cut into parts written at once.
        writer = OtlpWriter(backend, defaults.correlation_keys)
        parts = defaults.insert_parallelism
        per_part = batch // SPANS_PER_REQUEST // parts
        requests = [bodies[i % len(bodies)] for i in range(spans_expected // SPANS_PER_REQUEST)]
        chunks = [requests[i : i + per_part] for i in range(0, len(requests), per_part)]
        started = time.perf_counter()
        with ThreadPoolExecutor(parts) as pool:
            list(pool.map(lambda n: writer.write("traces", chunks[n], f"bench-{n}"), range(len(chunks))))
        protobuf_rate = len(requests) * SPANS_PER_REQUEST / (time.perf_counter() - started)
    finally:
        backend.close()
    return {"arrow_insert_rate": arrow_rate, "engine_protobuf_rate": protobuf_rate}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to send end to end")
    parser.add_argument("--clients", type=int, default=3, help="client processes")
    parser.add_argument("--trials", type=int, default=3, help="end-to-end runs; the median is reported")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    bodies = [make_request(seed) for seed in range(40)]
    work = Path(tempfile.mkdtemp(prefix="sloscope-bench-"))
    try:
        # Two cores shared by server, clients and background merges: single runs vary by +-10%.
        trials = [end_to_end(work / f"data{n}", bodies, args.spans, args.clients) for n in range(args.trials)]
        e2e = sorted(trials, key=lambda t: t["e2e_rate"])[len(trials) // 2]
        engine = engine_rates(work / "data0", bodies, int(e2e["spans"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    walk = python_walk_rate(bodies[:20])

    rows = [
        ("OTLP/HTTP protobuf, acknowledged (spans/s)", e2e["ack_rate"]),
        ("OTLP/HTTP protobuf, end to end: acknowledged and queryable (spans/s)", e2e["e2e_rate"]),
        ("engine: raw Arrow insert of the same rows, same batch size (rows/s)", engine["arrow_insert_rate"]),
        (
            "engine: same requests decoded by ClickHouse's Protobuf format (spans/s)",
            engine["engine_protobuf_rate"],
        ),
        ("Python walk of the same requests into Arrow columns, no insert (spans/s)", walk),
    ]
    ratio = e2e["e2e_rate"] / engine["arrow_insert_rate"]
    command = f"python bench/ingest.py --spans {args.spans} --clients {args.clients} --trials {args.trials}"
    lines = [
        f"## Ingest — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command}` on {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{int(e2e['spans']):,} spans in 512-span requests from {args.clients} client processes; "
        f"end to end, median of {len(trials)} trials: "
        + ", ".join(f"{t['e2e_rate']:,.0f}" for t in sorted(trials, key=lambda t: t["e2e_rate"]))
        + " spans/s.",
        "",
        "| measure | rate |",
        "|---|---:|",
        *[f"| {name} | {value:,.0f} |" for name, value in rows],
        f"| **end to end / raw Arrow insert** | **{ratio:.2f}** |",
        f"| engine Protobuf route / Python walk | {engine['engine_protobuf_rate'] / walk:.2f} |",
        "",
    ]
    text = "\n".join(lines)
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
