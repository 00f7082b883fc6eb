"""`sloscope serve` against a ClickHouse server, and with its built-in demo traffic."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from store.server import ServerBackend
from tests.chshim import ChShim
from tests.conftest import start_subprocess


def _flushed(api: str) -> dict[str, float]:
    counts = {}
    for line in httpx.get(f"{api}/metrics").text.splitlines():
        if line.startswith("sloscope_flushed_items_total{"):
            counts[line.split('signal="')[1].split('"')[0]] = float(line.split()[-1])
    return counts


def test_serve_with_a_clickhouse_server_url(tmp_path: Path) -> None:
    """SLOSCOPE_CLICKHOUSE_URL: no embedded store; the real engine behind a ClickHouse HTTP endpoint."""
    shim = ChShim(tmp_path / "clickhouse")
    url = shim.start()
    try:
        server = start_subprocess(
            tmp_path / "collector", "--clickhouse-url", f"{url}/default", "--batch-delay", "0.1"
        )
        try:
            assert not (tmp_path / "collector" / "store").exists()
            resource = Resource.create({"service.name": "on-server"})
            tracer_provider = TracerProvider(resource=resource)
            tracer_provider.add_span_processor(
                SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{server.otlp}/v1/traces"))
            )
            with tracer_provider.get_tracer("t").start_as_current_span("outer") as outer:
                with tracer_provider.get_tracer("t").start_as_current_span("inner", attributes={"n": 7}):
                    pass
            tracer_provider.shutdown()
            logger_provider = LoggerProvider(resource=resource)
            logger_provider.add_log_record_processor(
                SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{server.otlp}/v1/logs"))
            )
            from opentelemetry._logs import LogRecord

            logger_provider.get_logger("l").emit(LogRecord(body="stored on the server", severity_text="INFO"))
            logger_provider.shutdown()

            trace_id = format(outer.get_span_context().trace_id, "032x")
            deadline = time.monotonic() + 30
            while True:
                reply = httpx.get(f"{server.api}/api/v1/traces/{trace_id}")
                if reply.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            spans = {s["name"]: s for s in reply.json()["spans"]}
            assert set(spans) == {"outer", "inner"}
            assert spans["inner"]["attributes"]["n"] == 7
            assert spans["inner"]["parent_span_id"] == spans["outer"]["span_id"]
            while _flushed(server.api).get("logs", 0) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            assert server.stop() == 0
        backend = ServerBackend(f"{url}/default")
        try:
            rows = backend.query_arrow("SELECT body, service_name FROM logs").to_pylist()
        finally:
            backend.close()
        assert rows == [{"body": "stored on the server", "service_name": "on-server"}]
    finally:
        shim.stop()


def test_serve_demo_sends_traces_logs_and_metrics_through_the_sdk(tmp_path: Path) -> None:
    server = start_subprocess(tmp_path / "data", "--demo", "--demo-rate", "20", "--batch-delay", "0.2")
    try:
        deadline = time.monotonic() + 40
        while True:
            counts = _flushed(server.api)
            if all(counts.get(signal, 0) > 0 for signal in ("traces", "logs", "metrics")):
                break
            assert time.monotonic() < deadline, f"demo data did not arrive: {counts}"
            time.sleep(0.5)
        assert counts["traces"] >= 20
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "sloscope is up: API and UI at http://127.0.0.1:" in log
    # The demo stops before the receivers close, so its last export is not refused.
    assert " ERROR " not in log and "Failed to export" not in log, log[-2000:]


def test_serve_takes_otlp_grpc_from_a_zero_config_sdk_and_zipkin(tmp_path: Path) -> None:
    """The Python SDK's default exporter speaks gRPC; older services post Zipkin v2 JSON."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    server = start_subprocess(tmp_path / "data", "--batch-delay", "0.1")
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "over-grpc"}))
        provider.add_span_processor(
            SimpleSpanProcessor(GrpcSpanExporter(endpoint=server.grpc, insecure=True))
        )
        with provider.get_tracer("t").start_as_current_span("grpc-root", attributes={"flag": True}) as root:
            pass
        provider.shutdown()
        zipkin_span = {
            "traceId": "00000000000000000000000000abcdef",
            "id": "00000000000000a1",
            "name": "zipkin-op",
            "kind": "SERVER",
            "timestamp": int(time.time() * 1e6),
            "duration": 1500,
            "localEndpoint": {"serviceName": "legacy"},
            "tags": {"http.path": "/x"},
        }
        assert httpx.post(f"{server.zipkin}/api/v2/spans", json=[zipkin_span]).status_code == 202

        def fetch(trace_id: str) -> dict:
            deadline = time.monotonic() + 30
            while True:
                reply = httpx.get(f"{server.api}/api/v1/traces/{trace_id}")
                if reply.status_code == 200:
                    return reply.json()["spans"][0]
                assert time.monotonic() < deadline, reply.text
                time.sleep(0.1)

        grpc_span = fetch(format(root.get_span_context().trace_id, "032x"))
        assert (grpc_span["name"], grpc_span["service_name"]) == ("grpc-root", "over-grpc")
        assert grpc_span["attributes"]["flag"] is True
        legacy = fetch("00000000000000000000000000abcdef")
        assert (legacy["name"], legacy["service_name"], legacy["kind"]) == ("zipkin-op", "legacy", "SERVER")
        assert legacy["attributes"]["http.path"] == "/x" and legacy["duration_ns"] == 1_500_000
    finally:
        assert server.stop() == 0
