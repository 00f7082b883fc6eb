"""What the reliability benches share: a `sloscope serve` child process that can be killed and
restarted on the same ports and data directory, spans with known ids for the real OpenTelemetry SDK
exporters, and reading back how often each span was stored.

Span ids say where a span came from: ``client + 1`` in the top 12 bits, the export's batch number
in the next 32 and the span's index in the batch in the low 20. ``span_id >> 20`` is therefore one
export, and the store can be asked how many spans each export left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BATCH_SHIFT = 20  # bits of the span index inside one export
MAX_CLIENTS = (1 << 12) - 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def span_id(client: int, batch: int, index: int) -> int:
    """The span id of span ``index`` of export ``batch`` of ``client`` (never 0)."""
    return ((client + 1) << 52) | (batch << BATCH_SHIFT) | index


def batch_key(client: int, batch: int) -> int:
    """What ``span_id >> BATCH_SHIFT`` is for every span of one export."""
    return span_id(client, batch, 0) >> BATCH_SHIFT


def rss_of(pid: int) -> int:
    """VmRSS of process ``pid`` in bytes (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class ServerProcess:
    """``python -m sloscope serve`` on fixed free ports: restarts keep the exporters' endpoints."""

    data_dir: Path
    log_path: Path
    flags: Sequence[str] = ()
    otlp_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    zipkin_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def otlp(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 120.0) -> float:
        """Start the server and wait until /readyz answers 200; return the seconds that took."""
        started = time.monotonic()
        cmd = [
            sys.executable,
            "-m",
            "sloscope",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--otlp-http-port",
            str(self.otlp_port),
            "--otlp-grpc-port",
            str(self.grpc_port),
            "--zipkin-port",
            str(self.zipkin_port),
            "--api-port",
            str(self.api_port),
            *self.flags,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.starts += 1
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process this object started (no shutdown code runs) and reap it."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(60)

    def stop(self, timeout: float = 120.0) -> int:
        """A clean stop (SIGTERM: the queues drain into the store); the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def rss(self) -> int:
        return rss_of(self.pid) if self.alive() else 0

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The server's /metrics as {(sample name, sorted labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.api}/metrics", timeout=10).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def metric_sum(metrics: dict, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in metrics.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


# -- spans for the SDK exporters -------------------------------------------------------------------


def make_spans(client: int, batch: int, count: int, service: str) -> list:
    """``count`` SDK spans (ReadableSpan) of one trace with the ids ``span_id(client, batch, i)``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    resource = Resource({"service.name": service, "service.version": "1.0.0", "host.name": "bench"})
    scope = InstrumentationScope("sloscope.bench", "1.0")
    trace_id = ((client + 1) << 64) | (batch + 1)
    now = time.time_ns()
    return [
        ReadableSpan(
            name="GET /api/orders/{id}",
            context=SpanContext(trace_id, span_id(client, batch, i), False, TraceFlags(1)),
            resource=resource,
            attributes={
                "http.request.method": "GET",
                "http.route": "/api/orders/{id}",
                "http.response.status_code": 200,
                "url.path": f"/api/orders/{batch * count + i}",
                "server.address": "shop.example",
                "network.peer.port": 40000 + i % 20000,
                "sampling.ratio": 0.25,
                "cache.hit": i % 2 == 0,
            },
            kind=SpanKind.SERVER,
            start_time=now - 5_000_000,
            end_time=now,
            instrumentation_scope=scope,
        )
        for i in range(count)
    ]


class PreEncoded(Sequence):
    """An export's spans already encoded: the SDK's request for a template batch, with fresh ids.

    The SDK's encoder turns ~20,000 spans/s into protobuf on one core here, so clients on the same
    two cores as the server could never offer it three times what it stores. With
    ``install_pre_encoding`` the exporters' ``export()`` takes this in place of a span list and
    sends its request: transport, timeouts, retries and their delays stay the SDK's own.
    """

    def __init__(self, request: object, count: int) -> None:
        self.request, self._count = request, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - never called by the exporters
        raise IndexError(index)

    def __iter__(self) -> Iterator:
        return iter(())


class Encoder:
    """Makes PreEncoded exports of ``count`` spans from one SDK-encoded template."""

    def __init__(self, client: int, count: int, service: str) -> None:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        self.client, self.count = client, count
        self.template = encode_spans(make_spans(client, 0, count, service))

    def batch(self, batch: int) -> PreEncoded:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.CopyFrom(self.template)
        trace_id = (((self.client + 1) << 64) | (batch + 1)).to_bytes(16, "big")
        spans = request.resource_spans[0].scope_spans[0].spans
        for i, span in enumerate(spans):
            span.trace_id = trace_id
            span.span_id = span_id(self.client, batch, i).to_bytes(8, "big")
        return PreEncoded(request, self.count)


def install_pre_encoding() -> None:
    """Let the SDK's HTTP and gRPC span exporters take PreEncoded batches (see PreEncoded)."""
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_module
    from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_module

    for module in (http_module, grpc_module):
        original = module.encode_spans
        if getattr(original, "pre_encoding", False):
            continue

        def encode(spans, original=original):  # noqa: ANN001, ANN202
            return spans.request if isinstance(spans, PreEncoded) else original(spans)

        encode.pre_encoding = True  # type: ignore[attr-defined]
        module.encode_spans = encode


def exporter(kind: str, otlp_url: str, grpc_address: str, timeout: float):  # noqa: ANN201 - SpanExporter
    """The SDK's OTLP span exporter over ``kind`` ("http" or "grpc"): OTLP/HTTP to ``otlp_url``
    or OTLP/gRPC to ``grpc_address``, each call retrying for at most ``timeout`` seconds."""
    if kind == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"{otlp_url}/v1/traces", timeout=timeout)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=grpc_address, insecure=True, timeout=timeout)


# -- the store after the run -------------------------------------------------------------------------


def stored_batches(store_dir: Path, service: str) -> dict[int, tuple[int, int]]:
    """{batch key: (spans stored, distinct span ids)} of ``service``, read from a stopped server's
    embedded store."""
    sys.path.insert(0, str(ROOT))
    from store.embedded import EmbeddedBackend

    backend = EmbeddedBackend(store_dir)
    try:
        rows = backend.query_arrow(
            "SELECT bitShiftRight(reinterpretAsUInt64(reverse(span_id)), {shift:UInt8}) AS batch, "
            "count() AS spans, uniqExact(span_id) AS distinct_spans "
            "FROM spans WHERE service_name = {service:String} GROUP BY batch",
            {"shift": BATCH_SHIFT, "service": service},
        ).to_pylist()
    finally:
        backend.close()
    return {r["batch"]: (r["spans"], r["distinct_spans"]) for r in rows}


@dataclass
class Verdict:
    """Acknowledged exports against what the store holds."""

    acked_spans: int = 0
    stored_spans: int = 0
    lost_spans: int = 0
    duplicated_spans: int = 0
    unacked_stored_spans: int = 0
    examples: list[str] = field(default_factory=list)


def verify(stored: dict[int, tuple[int, int]], acked: set[int], sent: set[int], per_batch: int) -> Verdict:
    """Every acknowledged export stored exactly once; any other export stored at most once."""
    verdict = Verdict(acked_spans=len(acked) * per_batch, stored_spans=sum(s for s, _ in stored.values()))
    for key in acked:
        spans, distinct = stored.get(key, (0, 0))
        if distinct < per_batch:
            verdict.lost_spans += per_batch - distinct
            verdict.examples.append(f"acknowledged export {key:#x}: {distinct} of {per_batch} spans stored")
    for key, (spans, distinct) in stored.items():
        if spans > distinct:
            verdict.duplicated_spans += spans - distinct
            verdict.examples.append(f"export {key:#x}: {spans} rows for {distinct} span ids")
        if key not in acked:
            verdict.unacked_stored_spans += distinct
            if key not in sent:
                verdict.examples.append(f"export {key:#x} stored but never sent")
    return verdict


def append_report(path: Path, title: str, command: str, lines: list[str]) -> str:
    """Append a dated section to ``path`` (created with a heading if missing); return its text."""
    text = "\n".join(
        [
            f"## {title} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"`{command}` on {os.cpu_count()} cores, Python {sys.version.split()[0]}.",
            "",
            *lines,
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(f"# {title}\n\nAppended by the bench script; newest last.\n\n")
    with open(path, "a") as f:
        f.write(text + "\n")
    return text
