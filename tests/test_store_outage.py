"""A ClickHouse outage in server mode, with real parts: ``sloscope serve`` (in-process, role all) talks
to the chDB-backed ClickHouse HTTP shim through a TCP proxy that is switched off for a few seconds.

* The real OpenTelemetry SDK exports spans during the outage: every export is acknowledged (into the
  write-ahead log), and once the store is back every span is in it exactly once.
* The SLO evaluation in the outage is "no data" for every SLO (``sloscope_slo_no_data`` 1, no
  budget series), pages nothing for an SLO with the default ``on_no_data: keep``, and pages once —
  through a real webhook receiver, while the store is still down — for one with ``on_no_data:
  alert``. With data back, that alert resolves, and what was decided and evaluated in the outage is
  in the store.

The 60-second version with figures is ``bench/outage.py`` (docs/reliability/wal-and-outage.md).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from alerts import store as alert_store
from alerts.state import NO_DATA_ALERTNAME, no_data_alert_id
from slo import history
from slo.completeness import Completeness
from sloscope.app import SloscopeServer
from store.server import ServerBackend
from tests.chshim import ChShim
from tests.conftest import in_process
from tests.tcp_proxy import TcpProxy
from tests.test_alerting import recording_server

SPEC = """\
slos:
  - name: quiet
    service: shop
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
    alerting:
      rules: [{severity: page, long: 10m, short: 2m, factor: 10}]
  - name: watched
    service: shop
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
    alerting:
      rules: [{severity: page, long: 10m, short: 2m, factor: 10}]
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
    webhook: {url_env: OUTAGE_TEST_HOOK_URL}
"""

OUTAGE_S = 5.0


class Recording(SpanExporter):
    """The SDK's OTLP/HTTP exporter, remembering which spans each export got acknowledged."""

    def __init__(self, inner: OTLPSpanExporter) -> None:
        self.inner = inner
        self.acked: list[int] = []
        self.failed: list[int] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            target = self.acked if result == SpanExportResult.SUCCESS else self.failed
            target.extend(s.context.span_id for s in spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _metric(api: str, name: str, slo: str) -> float | None:
    for line in httpx.get(f"{api}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") and f'slo="{slo}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _stored_span_ids(url: str) -> list[int]:
    backend = ServerBackend(f"{url}/default")
    try:
        table = backend.query_arrow(
            "SELECT reinterpretAsUInt64(reverse(span_id)) AS id FROM spans WHERE service_name = 'shop'"
        )
    finally:
        backend.close()
    return table.column("id").to_pylist()


def test_outage_acknowledges_drains_exactly_once_and_pages_only_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slos.yaml").write_text(SPEC)
    (tmp_path / "policy.yaml").write_text(POLICY)
    # The test drives the evaluations minute by minute (the wall-clock schedule would race it).
    monkeypatch.setattr(SloscopeServer, "_start_scheduler", lambda self: None)
    shim = ChShim(tmp_path / "clickhouse")
    shim_url = shim.start()
    proxy = TcpProxy(("127.0.0.1", int(shim_url.rsplit(":", 1)[1]))).start()
    with contextlib.ExitStack() as stack:
        stack.callback(shim.stop)
        stack.callback(proxy.stop)
        hook = stack.enter_context(recording_server())
        monkeypatch.setenv("OUTAGE_TEST_HOOK_URL", f"{hook.url}/hook")
        server = stack.enter_context(
            in_process(
                tmp_path / "data",
                clickhouse_url=f"{proxy.url}/default",
                slos=str(tmp_path / "slos.yaml"),
                notification_policy=str(tmp_path / "policy.yaml"),
                slo_recovery_s=0,  # this process's own queues tell when the data is complete
            )
        )
        app = server.server
        assert app.alerting is not None and app.alerting.deliveries is not None
        exporter = Recording(OTLPSpanExporter(endpoint=f"{server.otlp}/v1/traces", timeout=10))
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=100, max_export_batch_size=100)
        )
        tracer = provider.get_tracer("outage")

        def traffic(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for _ in range(20):
                    with tracer.start_as_current_span("GET /item", kind=SpanKind.SERVER):
                        pass
                time.sleep(0.05)
            provider.force_flush()

        t0 = (int(time.time()) // 60 + 1) * 60
        traffic(1.0)
        server.drain()
        app.evaluate_slos(t0)  # with the store up: evaluated, nothing pages
        assert _metric(server.api, "sloscope_slo_no_data", "watched") == 0.0
        assert _metric(server.api, "sloscope_slo_error_budget_remaining", "watched") == 1.0

        # -- the outage -----------------------------------------------------------------------
        proxy.cut("reset")
        before = len(exporter.acked)
        traffic(OUTAGE_S)
        during = exporter.acked[before:]
        assert during and not exporter.failed, "an export in the outage was not acknowledged"
        queue = app.queues["traces"]
        assert queue.pending_rows > 0 and not queue.healthy
        assert queue.unflushed_since() is not None
        problems = httpx.get(f"{server.api}/readyz", timeout=10).json()["problems"]
        assert any(p.startswith("store unreachable") for p in problems), problems

        app.evaluate_slos(t0 + 60)
        assert app.alerting.deliveries.wait_idle(15)
        for slo in ("quiet", "watched"):
            assert _metric(server.api, "sloscope_slo_no_data", slo) == 1.0
            assert _metric(server.api, "sloscope_slo_error_budget_remaining", slo) is None
            assert _metric(server.api, "sloscope_slo_sli", slo) is None
        (page,) = hook.snapshot()  # one page: the no-data alert of 'watched'; 'quiet' keeps quiet
        (alert,) = page.body["alerts"]
        assert page.body["status"] == "firing"
        assert alert["labels"]["alertname"] == NO_DATA_ALERTNAME
        assert (alert["labels"]["slo"], alert["labels"]["severity"]) == ("watched", "page")
        assert alert["annotations"]["no_data_reason"].startswith("store unavailable")
        assert alert["annotations"]["summary"] == "watched SLO has no data"
        app.evaluate_slos(t0 + 120)  # still no data: no second page (repeat_interval 4h)
        assert app.alerting.deliveries.wait_idle(15)
        assert len(hook.snapshot()) == 1

        # -- the store is back ------------------------------------------------------------------
        proxy.restore()
        server.drain(timeout=60)
        stored = _stored_span_ids(shim_url)
        assert len(stored) == len(set(stored)), "a span was stored twice"
        assert sorted(stored) == sorted(exporter.acked), "acknowledged spans missing from the store"
        assert len(exporter.acked) > len(during) > 0

        app.evaluate_slos(t0 + 180)
        assert app.alerting.deliveries.wait_idle(15)
        assert _metric(server.api, "sloscope_slo_no_data", "watched") == 0.0
        assert _metric(server.api, "sloscope_slo_error_budget_remaining", "watched") == 1.0
        requests = hook.snapshot()
        assert len(requests) == 2 and requests[1].body["status"] == "resolved"
        assert requests[1].body["alerts"][0]["annotations"]["summary"] == "watched SLO has data again (resolved)"
        # What was evaluated and decided while the store was down is in it now.
        rows = history.read(app.backend, "watched", t0, t0 + 181)
        assert [(r["at_s"], r["no_data"] is not None) for r in rows] == [
            (t0, False),
            (t0 + 60, True),
            (t0 + 120, True),
            (t0 + 180, False),
        ]
        assert rows[1]["no_data"].startswith("store unavailable") and rows[1]["error"] is None
        alerts = alert_store.load_alerts(app.backend)
        no_data_alert = alerts[no_data_alert_id("watched", "page")]
        assert (no_data_alert.state, no_data_alert.firing_since_s) == ("resolved", t0 + 60)
        decided = app.backend.query_arrow("SELECT DISTINCT id FROM notifications").column("id").to_pylist()
        assert len(decided) == 2  # the page decided in the outage was stored after it
        assert alert_store.delivered_ids(app.backend, decided) == set(decided)
        assert alert_store.undelivered(app.backend, t0 - 3600) == []  # a new leader resends nothing
        provider.shutdown()


def test_completeness_rule() -> None:
    """No data while the store is recovering (``recovery_s`` after it was last unreachable) and while
    this process holds data acknowledged more than ``max_lag_s`` ago that is not stored."""
    now = [1000.0]
    oldest: list[float | None] = [None]
    rule = Completeness(recovery_s=120, max_lag_s=60, oldest_unstored=lambda: oldest[0], clock=lambda: now[0])
    assert rule.reason() == ""
    rule.store_unreachable()
    now[0] += 119
    assert rule.reason().startswith("the store was unreachable 119 s ago")
    now[0] += 1
    assert rule.reason() == ""
    oldest[0] = now[0] - 60
    assert rule.reason() == ""  # a minute behind is what a slow flush may be
    oldest[0] = now[0] - 61
    assert rule.reason() == "ingest behind: data acknowledged 61 s ago is not in the store yet"
