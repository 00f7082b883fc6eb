"""Store outage benchmark: ClickHouse unreachable for 60 s while the real SDKs keep exporting.

    .venv/bin/python bench/outage.py                  # 60 s outage, figures into the doc
    .venv/bin/python bench/outage.py --outage 10 --no-doc

1. A ClickHouse HTTP endpoint (``tests/chshim.py``: the real engine, chDB, behind the server's HTTP
   protocol) behind a TCP proxy (``tests/tcp_proxy.py``) that can refuse or reset connections.
2. Two ``sloscope serve`` processes against the proxy: ``--role collector`` and ``--role evaluator``
   (two SLOs on the traffic, one with ``on_no_data: alert``; a notification policy whose webhook is
   a recorder in this process), with their default settings (write-ahead log cap 2 GiB per signal,
   ``slo_recovery_s`` 120).
3. OpenTelemetry SDK clients (BatchSpanProcessor, OTLP/HTTP and OTLP/gRPC exporters) send spans
   throughout; each remembers the spans whose export succeeded.
4. After ``--before`` seconds the proxy stops forwarding for ``--outage`` seconds (``--mode refuse``:
   nothing listens; ``reset``: connections are reset), then forwards again. Load goes on for
   ``--after`` seconds, then stops.
5. Measured: exports acknowledged and failed before, during and after; the collector's write-ahead
   log at its largest; its /readyz during the outage; the time from the store's return until every
   acknowledged span is stored; spans lost and duplicated (the store's span ids against the
   acknowledged ones); the evaluator's results in the outage and after it (history rows with "no
   data", ``sloscope_slo_no_data``) and the notifications it sent.

Prints a report and writes it into docs/reliability/wal-and-outage.md (between the bench markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: E402
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind  # noqa: E402

from slo import history  # noqa: E402
from store.server import ServerBackend  # noqa: E402
from tests.chshim import ChShim  # noqa: E402
from tests.tcp_proxy import TcpProxy  # noqa: E402

DOC = ROOT / "docs" / "reliability" / "wal-and-outage.md"
BEGIN, END = "<!-- bench/outage.py: begin -->", "<!-- bench/outage.py: end -->"

SPEC = """\
slos:
  - name: shop-availability
    service: shop
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
  - name: shop-watched
    service: shop
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
    alerting:
      on_no_data: alert
"""

POLICY = """\
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
receivers:
  - name: hook
    webhook: {url_env: OUTAGE_BENCH_HOOK_URL}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recording(SpanExporter):
    """An SDK exporter that remembers, per phase, which spans were acknowledged and which failed."""

    def __init__(self, inner: SpanExporter, phase: list[str]) -> None:
        self.inner = inner
        self.phase = phase
        self.acked: dict[str, list[int]] = {}
        self.failed: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        phase = self.phase[0]
        result = self.inner.export(spans)
        with self._lock:
            into = self.acked if result == SpanExportResult.SUCCESS else self.failed
            into.setdefault(phase, []).extend(s.context.span_id for s in spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class Client(threading.Thread):
    """One SDK client producing ``rate`` SERVER spans a second until stopped."""

    def __init__(self, exporter: Recording, rate: float, name: str) -> None:
        super().__init__(daemon=True, name=name)
        self.exporter = exporter
        self.rate = rate
        self.stop = threading.Event()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=500, max_export_batch_size=512)
        )

    def run(self) -> None:
        tracer = self.provider.get_tracer("bench-outage")
        tick = 0.05
        per_tick = max(1, round(self.rate * tick))
        next_at = time.monotonic()
        while not self.stop.is_set():
            for _ in range(per_tick):
                with tracer.start_as_current_span("GET /item", kind=SpanKind.SERVER):
                    pass
            next_at += tick
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        self.provider.shutdown()  # exports the rest, with the exporter's own retries


class Hook:
    """The evaluator's webhook: records every notification."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                hook.received.append({"at": time.time(), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def serve(data: Path, ch_url: str, role: str, extra: list[str], env: dict[str, str]) -> tuple:
    ports = {k: free_port() for k in ("otlp-http", "otlp-grpc", "zipkin", "api")}
    cmd = [sys.executable, "-m", "sloscope", "serve", "--role", role, "--data-dir", str(data)]
    cmd += ["--clickhouse-url", ch_url, *extra]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    log = open(data.parent / f"{role}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{role} exited; see {data.parent / f'{role}.log'}")
        try:
            if httpx.get(f"{api}/readyz", timeout=2).status_code == 200:
                return proc, api, ports
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{role} not ready")


def metric(api: str, name: str, match: str = "") -> float | None:
    try:
        text = httpx.get(f"{api}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and match in line:
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def run(args: argparse.Namespace) -> str:
    work = Path(tempfile.mkdtemp(prefix="sloscope-outage-"))
    shim = ChShim(work / "clickhouse")
    shim_url = shim.start()
    proxy = TcpProxy(("127.0.0.1", int(shim_url.rsplit(":", 1)[1]))).start()
    ch_url = f"{proxy.url}/default"
    hook = Hook()
    (work / "slos.yaml").write_text(SPEC)
    (work / "policy.yaml").write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    env["OUTAGE_BENCH_HOOK_URL"] = hook.url
    procs = []
    try:
        collector, c_api, c_ports = serve(work / "collector", ch_url, "collector", [], env)
        procs.append(collector)
        evaluator, e_api, _ = serve(
            work / "evaluator",
            ch_url,
            "evaluator",
            [
                "--slos",
                str(work / "slos.yaml"),
                "--notification-policy",
                str(work / "policy.yaml"),
                "--slo-recovery-s",
                str(args.recovery),
            ],
            env,
        )
        procs.append(evaluator)
        phase = ["before"]
        exporters = [
            Recording(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{c_ports['otlp-http']}/v1/traces"), phase),
            Recording(GrpcSpanExporter(endpoint=f"127.0.0.1:{c_ports['otlp-grpc']}", insecure=True), phase),
        ]
        clients = [Client(e, args.rate / len(exporters), f"client-{i}") for i, e in enumerate(exporters)]
        started = time.time()
        for c in clients:
            c.start()
        samples: list[tuple[float, float, float]] = []  # (t, wal bytes, queue rows)
        readyz_during: list[int] = []
        no_data_during: list[float] = []

        def sample() -> None:
            wal = metric(c_api, "sloscope_wal_bytes") or 0.0
            rows = metric(c_api, "sloscope_queue_rows") or 0.0
            samples.append((time.time() - started, wal, rows))

        deadline = time.monotonic() + args.before
        while time.monotonic() < deadline:
            sample()
            time.sleep(1)
        cut_at = time.time()
        phase[0] = "during"
        proxy.cut(args.mode)
        deadline = time.monotonic() + args.outage
        while time.monotonic() < deadline:
            sample()
            readyz_during.append(httpx.get(f"{c_api}/readyz", timeout=5).status_code)
            nd = metric(e_api, "sloscope_slo_no_data", 'slo="shop-availability"')
            if nd is not None:
                no_data_during.append(nd)
            time.sleep(1)
        accepted_at_return = metric(c_api, "sloscope_items_accepted_total", 'signal="traces"') or 0.0
        proxy.restore()
        restored_at = time.time()
        phase[0] = "after"
        backlog_stored_at = None  # everything acknowledged up to the return is in the store
        deadline = time.monotonic() + args.after
        while time.monotonic() < deadline:
            flushed = metric(c_api, "sloscope_flushed_items_total", 'signal="traces"') or 0.0
            if backlog_stored_at is None and flushed >= accepted_at_return:
                backlog_stored_at = time.time()
            sample()
            time.sleep(0.25)
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(120)
        stopped_at = time.time()
        acked = [i for e in exporters for ids in e.acked.values() for i in ids]
        # Drained: every acknowledged span is in the store.
        backend = ServerBackend(f"{shim_url}/default")
        drained_at = None
        stored: list[int] = []
        wait_until = time.monotonic() + 300
        while time.monotonic() < wait_until:
            sample()
            stored = (
                backend.query_arrow(
                    "SELECT reinterpretAsUInt64(reverse(span_id)) AS id FROM spans WHERE service_name = 'shop'"
                )
                .column("id")
                .to_pylist()
            )
            if len(set(stored)) >= len(set(acked)) and (metric(c_api, "sloscope_queue_rows") or 0) == 0:
                drained_at = time.time()
                break
            time.sleep(0.5)
        # The evaluator: results with data again (after slo_recovery_s and the next cycle).
        back_at = None
        wait_until = time.monotonic() + args.recovery + 150
        while time.monotonic() < wait_until:
            if metric(e_api, "sloscope_slo_no_data", 'slo="shop-availability"') == 0.0 and time.time() > (
                restored_at + args.recovery
            ):
                back_at = time.time()
                break
            time.sleep(1)
        rows = history.read(backend, "shop-availability", int(started) - 60, int(time.time()) + 60)
        backend.close()
        stored_set = set(stored)
        acked_set = set(acked)
        lost = len(acked_set - stored_set)
        duplicated = len(stored) - len(stored_set)
        unacked_stored = len(stored_set - acked_set)
        by_phase = {
            p: (
                sum(len(e.acked.get(p, [])) for e in exporters),
                sum(len(e.failed.get(p, [])) for e in exporters),
            )
            for p in ("before", "during", "after")
        }
        wal_peak = max(w for _, w, _ in samples)
        rows_peak = max(r for _, _, r in samples)
        outage_rows = [r for r in rows if cut_at - 60 <= r["at_s"] <= restored_at]
        no_data_rows = [r for r in rows if r["no_data"]]
        reasons: dict[str, int] = {}
        for r in no_data_rows:
            kind = r["no_data"].split(":")[0] if r["no_data"].startswith("store unavailable") else (
                "store recovering" if r["no_data"].startswith("the store was unreachable") else "ingest behind"
            )
            reasons[kind] = reasons.get(kind, 0) + 1
        pages = [
            (n["at"] - cut_at, n["body"]["status"], n["body"]["alerts"][0]["labels"]["alertname"])
            for n in hook.received
        ]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        proxy.stop()
        shim.stop()
        shutil.rmtree(work, ignore_errors=True)

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Run {when} on {platform.machine()}, {os.cpu_count()} cores: `.venv/bin/python bench/outage.py "
        f"--outage {args.outage:g} --mode {args.mode} --rate {args.rate:g}` (before {args.before:g} s, "
        f"after {args.after:g} s, slo_recovery_s {args.recovery}).",
        "",
        "| phase | spans acknowledged | spans whose export failed |",
        "|---|---:|---:|",
        *[f"| {p} | {a:,} | {f:,} |" for p, (a, f) in by_phase.items()],
        "",
        "| figure | value |",
        "|---|---:|",
        f"| spans acknowledged in all | {len(acked_set):,} |",
        f"| acknowledged spans lost | {lost} |",
        f"| spans stored twice | {duplicated} |",
        f"| spans stored that were not acknowledged (retried exports) | {unacked_stored} |",
        f"| write-ahead log at its largest (traces) | {wal_peak / (1 << 20):.1f} MiB |",
        f"| backlog at its largest | {rows_peak:,.0f} spans |",
        f"| collector /readyz in the outage | {sorted(set(readyz_during))} |",
        "| store back → the outage's backlog stored | "
        + (f"{backlog_stored_at - restored_at:.1f} s" if backlog_stored_at else f"over {args.after:g} s")
        + " |",
        "| load stopped → every acknowledged span stored | "
        + (f"{drained_at - stopped_at:.1f} s" if drained_at else "not within 300 s")
        + " |",
        f"| evaluator `sloscope_slo_no_data` in the outage | {sorted(set(no_data_during))} |",
        f"| evaluations (shop-availability) from 1 min before the cut to the return | {len(outage_rows)} "
        f"({sum(1 for r in outage_rows if r['no_data'])} no data) |",
        f"| no-data evaluations in all | {len(no_data_rows)} |",
        "| evaluator back to data after the return | "
        + (f"{back_at - restored_at:.0f} s" if back_at else "not seen")
        + " |",
        "| notifications (seconds after the cut) | "
        + (", ".join(f"{alertname} {status} at +{t:.0f} s" for t, status, alertname in pages) or "none")
        + " |",
        "",
        "No-data reasons seen: " + ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items())) + ".",
    ]
    return "\n".join(lines)


def write_doc(report: str) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    block = f"{BEGIN}\n{report}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the store is unreachable")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load before the outage")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of load after it")
    parser.add_argument("--rate", type=float, default=1000.0, help="spans per second, all clients")
    parser.add_argument("--mode", choices=["refuse", "reset"], default="refuse")
    parser.add_argument("--recovery", type=int, default=120, help="the evaluator's slo_recovery_s")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    args = parser.parse_args()
    report = run(args)
    print(report)
    if not args.no_doc:
        write_doc(report)


if __name__ == "__main__":
    main()
