"""`sloscope serve --role collector|evaluator|ui|all` against one ClickHouse server (the chDB-backed
HTTP shim): each role opens only its ports and serves only its endpoints, several collectors share
the store without losing or duplicating a span, and instances starting at once all migrate."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from slo import spec as slo_spec
from sloscope import cli
from sloscope import settings as settings_mod
from store import migrations
from store.server import ServerBackend
from tests.chshim import ChShim
from tests.conftest import ROOT, Subprocess, start_subprocess, wait_until

PROTOBUF = {"Content-Type": "application/x-protobuf"}
SLOS = str(ROOT / "examples" / "slos" / "shop.yaml")
#: Metric families only a process with receivers registers.
INGEST_METRICS = {"sloscope_items_received_total", "sloscope_flushed_items_total"}


# -- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["collector", "evaluator", "ui"])
def test_a_role_but_all_needs_a_clickhouse_server(role: str) -> None:
    for load in (
        lambda: settings_mod.load({"role": role}, environ={}),
        lambda: settings_mod.load(environ={"SLOSCOPE_ROLE": role}),
    ):
        with pytest.raises(settings_mod.SettingsError) as caught:
            load()
        message = str(caught.value)
        assert message.startswith(f"role: {role!r} needs a ClickHouse server")
        assert "SLOSCOPE_CLICKHOUSE_URL" in message and "--clickhouse-url" in message
    ok = settings_mod.load(
        environ={"SLOSCOPE_ROLE": role, "SLOSCOPE_CLICKHOUSE_URL": "http://127.0.0.1:8123/default"}
    )
    assert ok.role == role
    assert (ok.receives, ok.evaluates, ok.serves_ui) == (
        role == "collector",
        role == "evaluator",
        role == "ui",
    )


def test_role_and_cluster_settings() -> None:
    default = settings_mod.load(environ={})
    assert (default.role, default.clickhouse_cluster) == ("all", "")
    assert default.receives and default.evaluates and default.serves_ui
    with pytest.raises(
        settings_mod.SettingsError, match=r"^role: must be one of all, collector, evaluator, ui"
    ):
        settings_mod.load(environ={"SLOSCOPE_ROLE": "indexer"})
    with pytest.raises(settings_mod.SettingsError, match=r"^clickhouse_cluster: needs a ClickHouse server"):
        settings_mod.load(environ={"SLOSCOPE_CLICKHOUSE_CLUSTER": "prod"})
    cluster = settings_mod.load(
        {"clickhouse_cluster": "flag"},
        environ={"SLOSCOPE_CLICKHOUSE_CLUSTER": "env", "SLOSCOPE_CLICKHOUSE_URL": "http://ch:8123/db"},
    )
    assert cluster.clickhouse_cluster == "flag"  # the flag wins over the environment
    with pytest.raises(settings_mod.SettingsError, match=r"^clickhouse_cluster: cluster name 'a b'"):
        settings_mod.load({"clickhouse_cluster": "a b", "clickhouse_url": "http://ch:8123/db"}, {})
    with pytest.raises(settings_mod.SettingsError, match=r"^demo: .*role 'evaluator' has none"):
        settings_mod.load({"role": "evaluator", "demo": True, "clickhouse_url": "http://ch:8123/db"}, {})


def test_cli_role_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLOSCOPE_ROLE", "SLOSCOPE_CLICKHOUSE_URL", "SLOSCOPE_CLICKHOUSE_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--role", "collector"])
    assert exited.value.code == 2
    assert "role: 'collector' needs a ClickHouse server" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--role", "indexer"])
    assert exited.value.code == 2
    assert "invalid choice: 'indexer'" in capsys.readouterr().err
    args = cli.build_parser().parse_args(
        ["serve", "--role", "ui", "--clickhouse-url", "http://ch:8123/db", "--clickhouse-cluster", "c1"]
    )
    config = settings_mod.load(cli._overrides(args), environ={})
    assert (config.role, config.clickhouse_cluster) == ("ui", "c1")


# -- real processes on one server --------------------------------------------------------------------


def _start_at_once(tmp_path: Path, url: str, *roles: tuple[str, list[str]]) -> list[Subprocess]:
    """Start one ``sloscope serve`` per (name, flags) at the same moment; all must become ready."""

    def start(item: tuple[str, list[str]]) -> Subprocess:
        name, flags = item
        return start_subprocess(tmp_path / name, "--clickhouse-url", f"{url}/default", *flags)

    with ThreadPoolExecutor(len(roles)) as pool:
        futures = [pool.submit(start, item) for item in roles]
        started, failed = [], []
        for future in futures:
            try:
                started.append(future.result())
            except Exception as exc:  # stop the ones that did start before failing the test
                failed.append(exc)
    if failed:
        for server in started:
            server.stop()
        raise failed[0]
    return started


def _refused(address: str) -> bool:
    host, port = address.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def _metric_names(api: str) -> set[str]:
    """Every metric family the API port exposes (its HELP lines: also those without samples yet)."""
    text = httpx.get(f"{api}/metrics").text
    return {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}


def _span_request(service: str, trace_id: bytes, span_ids: list[int]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    spans = rs.scope_spans.add().spans
    now = time.time_ns()
    for span_id in span_ids:
        spans.add(
            trace_id=trace_id,
            span_id=span_id.to_bytes(8, "big"),
            name="op",
            kind=2,
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
    return req.SerializeToString()


def test_each_role_opens_only_its_ports_and_serves_only_its_endpoints(tmp_path: Path) -> None:
    shim = ChShim(tmp_path / "clickhouse")
    url = shim.start()
    try:
        # All three start at once on an empty store: each migrates, none fails.
        collector, evaluator, ui = _start_at_once(
            tmp_path,
            url,
            ("collector", ["--role", "collector", "--batch-delay", "0.1"]),
            ("evaluator", ["--role", "evaluator", "--slos", SLOS]),
            ("ui", ["--role", "ui", "--slos", SLOS]),
        )
        try:
            # collector: the receivers, and health, readiness and metrics only on the API port.
            body = _span_request("through-roles", b"\x01" * 16, [1, 2])
            assert (
                httpx.post(f"{collector.otlp}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
            )
            assert not _refused(collector.grpc) and not _refused(collector.zipkin)
            assert httpx.get(f"{collector.api}/healthz").text == "ok\n"
            assert httpx.get(f"{collector.api}/readyz").json() == {"ready": True, "problems": []}
            for path in ("/", "/api", "/api/v1/slos", "/api/v1/traces/" + "01" * 16, "/jaeger/api/services"):
                assert httpx.get(f"{collector.api}{path}").status_code == 404, path
            collector_metrics = _metric_names(collector.api)
            assert INGEST_METRICS <= collector_metrics
            assert not any(name.startswith("sloscope_slo_") for name in collector_metrics)
            assert (collector.data_dir / "wal" / "traces").is_dir()

            # ui: the web UI and the query API over the shared store; no receivers, no write-ahead log.
            for address in (ui.otlp, ui.grpc, ui.zipkin):
                assert _refused(address), address
            home = httpx.get(f"{ui.api}/", follow_redirects=True)
            assert home.status_code == 200 and "text/html" in home.headers["content-type"]
            assert "gateway-availability" in httpx.get(f"{ui.api}/api/v1/slos").text
            trace = wait_until(
                lambda: (r := httpx.get(f"{ui.api}/api/v1/traces/" + "01" * 16)).status_code == 200 and r
            )
            assert {s["span_id"] for s in trace.json()["spans"]} == {"0000000000000001", "0000000000000002"}
            assert httpx.get(f"{ui.api}/readyz").status_code == 200
            assert not INGEST_METRICS & _metric_names(ui.api)
            assert not (ui.data_dir / "wal").exists()

            # evaluator: the SLO schedule (its metrics), no receivers, no UI, no write-ahead log.
            for address in (evaluator.otlp, evaluator.grpc, evaluator.zipkin):
                assert _refused(address), address
            for path in ("/", "/api/v1/slos", "/api/v1/services"):
                assert httpx.get(f"{evaluator.api}{path}").status_code == 404, path
            assert httpx.get(f"{evaluator.api}/readyz").json() == {"ready": True, "problems": []}
            wait_until(lambda: "sloscope_slo_objective" in _metric_names(evaluator.api))
            assert not INGEST_METRICS & _metric_names(evaluator.api)
            assert not (evaluator.data_dir / "wal").exists()
        finally:
            codes = [server.stop() for server in (collector, evaluator, ui)]
        assert codes == [0, 0, 0]
        banners = {
            s.data_dir.name: next(line for line in s.log.read_text().splitlines() if "sloscope is up" in line)
            for s in (collector, evaluator, ui)
        }
        assert banners["collector"].startswith("sloscope is up (role collector): health and metrics at")
        assert "OTLP/gRPC at" in banners["collector"]
        count = len(slo_spec.load(Path(SLOS))[0])
        assert f"evaluating {count} SLOs" in banners["evaluator"] and "OTLP" not in banners["evaluator"]
        assert banners["ui"].startswith("sloscope is up (role ui): API and UI at")
        assert "OTLP" not in banners["ui"]
    finally:
        shim.stop()


def test_two_instances_migrating_at_once_both_succeed(tmp_path: Path) -> None:
    """The race itself, without process start-up to spread it out: two clients, one barrier."""
    shim = ChShim(tmp_path / "clickhouse")
    url = shim.start()
    try:
        barrier = threading.Barrier(2)
        results: list[object] = [None, None]

        def migrate(i: int) -> None:
            backend = ServerBackend(f"{url}/default")
            try:
                barrier.wait(10)
                results[i] = migrations.migrate(backend)
            except Exception as exc:
                results[i] = exc
            finally:
                backend.close()

        threads = [threading.Thread(target=migrate, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(isinstance(r, list) for r in results), results
        every = [m.version for m in migrations.load_migrations()]
        # Both saw an empty store and applied the migrations (or one caught up with the other).
        assert sorted(set(results[0]) | set(results[1])) == every  # type: ignore[arg-type]
        backend = ServerBackend(f"{url}/default")
        try:
            assert migrations.pending(backend) == []
            # The schema works: a span goes in and comes out once.
            assert backend.query_arrow("SELECT count() AS n FROM spans").to_pylist() == [{"n": 0}]
        finally:
            backend.close()
    finally:
        shim.stop()


COLLECTORS = 2
CLIENTS_PER_COLLECTOR = 3
REQUESTS_PER_CLIENT = 20
SPANS_PER_REQUEST = 100
SDK_SPANS_PER_COLLECTOR = 300


class RawClient(threading.Thread):
    """Posts OTLP/HTTP protobuf requests with span ids of its own range; remembers what was acked."""

    def __init__(self, url: str, first_id: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.first_id = first_id
        self.acked: list[int] = []
        self.refused: list[int] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for request in range(REQUESTS_PER_CLIENT):
                first = self.first_id + request * SPANS_PER_REQUEST
                ids = list(range(first, first + SPANS_PER_REQUEST))
                body = _span_request("fan-in", first.to_bytes(16, "big"), ids)
                reply = client.post(f"{self.url}/v1/traces", content=body, headers=PROTOBUF)
                (self.acked if reply.status_code == 200 else self.refused).extend(ids)


class SdkClient(threading.Thread):
    """The real OpenTelemetry SDK, batching over OTLP/gRPC; remembers the ids of the spans it ended."""

    def __init__(self, address: str, service: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.service = service
        self.span_ids: list[int] = []

    def run(self) -> None:
        provider = TracerProvider(resource=Resource.create({"service.name": self.service}))
        provider.add_span_processor(
            BatchSpanProcessor(
                GrpcSpanExporter(endpoint=self.address, insecure=True),
                schedule_delay_millis=50,
                max_export_batch_size=64,
            )
        )
        tracer = provider.get_tracer("fan-in")
        for _ in range(SDK_SPANS_PER_COLLECTOR):
            with tracer.start_as_current_span("sdk-op") as span:
                self.span_ids.append(span.get_span_context().span_id)
        provider.shutdown()  # exports what is left, and waits for it


def test_two_collectors_on_one_store_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    shim = ChShim(tmp_path / "clickhouse")
    url = shim.start()
    try:
        collectors = _start_at_once(
            tmp_path,
            url,
            *[(f"collector-{n}", ["--role", "collector", "--batch-delay", "0.1"]) for n in range(COLLECTORS)],
        )
        try:
            per_collector = CLIENTS_PER_COLLECTOR * REQUESTS_PER_CLIENT * SPANS_PER_REQUEST
            raw = [
                RawClient(c.otlp, 1 + n * per_collector + k * REQUESTS_PER_CLIENT * SPANS_PER_REQUEST)
                for n, c in enumerate(collectors)
                for k in range(CLIENTS_PER_COLLECTOR)
            ]
            sdk = [SdkClient(c.grpc, f"sdk-{n}") for n, c in enumerate(collectors)]
            clients: list[threading.Thread] = [*raw, *sdk]
            for client in clients:
                client.start()
            for client in clients:
                client.join(60)
                assert not client.is_alive(), "a client did not finish"
            # Drained: each collector wrote exactly its own share (its clients' spans) into the store.
            shares = [
                sum(len(c.acked) for c in raw if c.url == collector.otlp) + len(sdk[n].span_ids)
                for n, collector in enumerate(collectors)
            ]
            wait_until(lambda: [_flushed_spans(c.api) for c in collectors] == shares, timeout=30)
        finally:
            codes = [c.stop() for c in collectors]
        assert codes == [0] * COLLECTORS
        assert not [i for c in raw for i in c.refused]
        sent_raw = sorted(i for c in raw for i in c.acked)
        assert len(sent_raw) == COLLECTORS * per_collector

        backend = ServerBackend(f"{url}/default")
        try:
            stored_raw = backend.query_arrow(
                "SELECT count() AS n, uniqExact(span_id) AS distinct_ids FROM spans "
                "WHERE service_name = 'fan-in'"
            ).to_pylist()[0]
            raw_ids = backend.query_arrow(
                "SELECT reinterpretAsUInt64(reverse(span_id)) AS id FROM spans WHERE service_name = 'fan-in'"
            ).column("id")
            sdk_rows = backend.query_arrow(
                "SELECT service_name, reinterpretAsUInt64(reverse(span_id)) AS id FROM spans "
                "WHERE service_name LIKE 'sdk-%'"
            ).to_pylist()
        finally:
            backend.close()
        assert stored_raw == {"n": len(sent_raw), "distinct_ids": len(sent_raw)}
        assert sorted(raw_ids.to_pylist()) == sent_raw
        for n, client in enumerate(sdk):
            stored = sorted(r["id"] for r in sdk_rows if r["service_name"] == f"sdk-{n}")
            assert len(client.span_ids) == SDK_SPANS_PER_COLLECTOR
            assert stored == sorted(client.span_ids), f"sdk-{n}: lost or duplicated spans"
    finally:
        shim.stop()


def _flushed_spans(api: str) -> int:
    """The spans this collector has written into the store (its own counter)."""
    total = 0.0
    for line in httpx.get(f"{api}/metrics").text.splitlines():
        if line.startswith("sloscope_flushed_items_total{") and 'signal="traces"' in line:
            total += float(line.split()[-1])
    return int(total)
