"""The walk a newcomer takes in real Chromium over the demo's data: services -> a failing service ->
its SLO -> the open incident -> an example failing trace -> that trace's logs -> the correlation view,
clicking links from ``/`` and asserting on what each page shows.

The data is the demo's own: ``sloscope.demo.Demo`` sends a few hundred user requests through the real
OpenTelemetry SDK to the server's OTLP/HTTP port with 60% of the card charges failing, the server
loads the demo's SLOs (examples/demo/slos.yaml) and its notification policy (examples/demo/policy.yaml,
whose webhook is the demo's ``WebhookLog``, as under ``sloscope serve --demo``). The notification is
what carries an incident's example failing traces, so a policy without receivers (incidents but no
notifications) would leave the incident page without a trace to click. The scheduler is off: the test
evaluates the SLOs at the current minute and the next. The pages evaluate at the wall clock's minute,
which sees only the minutes before it, so the demo's requests are dated a minute back.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, InProcess, in_process, screenshot

from sloscope import demo as demo_mod
from sloscope.app import SloscopeServer
from sloscope.demo import Demo, DemoConfig
from sloscope.demo_webhook import WebhookLog
from ui.security_headers import CONTENT_SECURITY_POLICY

SLO = "payments-availability"
#: The demo's runbook_url is a path on the server: the pages link it from the root.
RUNBOOK = "/runbooks/payments-availability"
REQUESTS = 300
#: The payments ERROR log line (orders logs "payment failed, order not placed" too).
PAYMENT_FAILED = re.compile(r"^payment failed$")


class _MinuteAgo:
    """The ``time`` module for sloscope.demo, with a wall clock a minute behind (``monotonic`` as is)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def time_ns() -> int:
        return time.time_ns() - 60 * 10**9


@dataclass
class Walk:
    server: InProcess
    incident: dict[str, Any]
    webhook_log: Path

    @property
    def api(self) -> str:
        return self.server.api

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    root = tmp_path_factory.mktemp("web-walk")
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        webhook = WebhookLog(root / "demo-webhook.log")
        stack.callback(webhook.close)
        mp.setenv("SLOSCOPE_DEMO_WEBHOOK_URL", webhook.url)
        # The test drives the evaluations (see tests/test_alerting.py).
        mp.setattr(SloscopeServer, "_start_scheduler", lambda self: None)
        server = stack.enter_context(
            in_process(
                root / "data",
                slos=str(ROOT / "examples/demo/slos.yaml"),
                notification_policy=str(ROOT / "examples/demo/policy.yaml"),
            )
        )
        # The pages evaluate SLOs at the wall clock's minute, which sees only whole minutes before it:
        # the demo's requests are dated a minute back, as if it had been running for a while.
        mp.setattr(demo_mod, "time", _MinuteAgo())
        demo = Demo(DemoConfig(endpoint=server.otlp, rate=50, payment_error_rate=0.6, fault_for_s=0, seed=7))
        try:
            for _ in range(REQUESTS):
                demo.run_once()
        finally:
            demo.stop()
        server.drain()
        app = server.server
        # ``at`` sees the minutes before it, so both see the traffic, and the second keeps it firing.
        now_min = int(time.time()) // 60 * 60
        for at_s in (now_min, now_min + 60):
            app.evaluate_slos(at_s)
            assert app.alerting.deliveries is not None and app.alerting.deliveries.wait_idle(15)
        w = Walk(server, {}, root / "demo-webhook.log")
        # Through the API first: payments-availability pages and its incident is open.
        alerts = [a for a in w.get("/api/v1/alerts")["alerts"] if a["slo"] == SLO]
        assert any(a["state"] == "firing" and a["severity"] == "page" for a in alerts), alerts
        [w.incident] = [i for i in w.get("/api/v1/incidents")["incidents"] if SLO in i["slos"]]
        assert w.incident["status"] == "open", w.incident
        yield w


def _cells(row: Any) -> list[str]:
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def _click(page: Any, link: Any) -> None:
    """Follow ``link`` like a user and wait for the next page."""
    with page.expect_navigation():
        link.click()
    page.wait_for_load_state()


def test_from_the_services_page_to_the_correlation_view_by_clicking(walk: Walk, page) -> None:  # noqa: ANN001
    incident_id = walk.incident["id"]

    # 1. Services: payments is there with a nonzero error ratio. Every page of the walk is served
    # under the Content-Security-Policy (no inline scripts), and a violation would be a page problem.
    response = page.goto(f"{walk.api}/")
    assert response is not None
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert page.locator("h1").inner_text() == "What is burning"
    # The open incident comes first, then its SLO among those burning, then the services.
    assert page.locator(f'.home-incidents tr[data-incident="{incident_id}"]').count() == 1
    assert page.locator('.home-slos tr[data-slo="payments-availability"]').count() >= 1
    services = page.locator("table.services tbody tr").evaluate_all("rs => rs.map(r => r.dataset.service)")
    assert {"gateway", "orders", "payments", "inventory", "email"} <= set(services)
    payments = page.locator('tr[data-service="payments"]')
    assert int(payments.locator("td.errors").inner_text()) > 0
    ratio = payments.locator("td.error-ratio")
    assert float(ratio.inner_text().rstrip("%")) > 30  # 60% of the charges fail
    assert "bad" in (ratio.get_attribute("class") or "")
    screenshot(page, "walk-1-services")
    _click(page, payments.locator("td.name a"))

    # 2. The payments service: its SLO is listed, firing.
    assert re.search(r"/services/payments\?", page.url)
    assert page.locator("h1.service-name").inner_text() == "payments"
    assert page.locator("dd.total-errors").inner_text() != "0"
    slo_row = page.locator("table.slos tbody tr", has=page.locator(f'a:text-is("{SLO}")'))
    assert slo_row.count() == 1
    assert "firing" in slo_row.locator("td.alert").inner_text()
    assert "page" in slo_row.locator("td.alert").inner_text()
    assert page.locator("table.incidents a", has_text=incident_id).count() == 1
    screenshot(page, "walk-2-service")
    _click(page, slo_row.locator("a", has_text=SLO))

    # 3. The SLO: budget, the page rule firing, the open incident.
    assert page.url.endswith(f"/slos/{SLO}")
    assert page.locator("h1").inner_text() == SLO
    assert "objective 99%" in page.locator("p.summary").inner_text()
    [instance] = page.locator("table.instances tbody tr").all()
    cells = _cells(instance)
    bad, total = (float(n) for n in re.findall(r"[\d.]+", cells[3])[:2])
    assert 0 < bad < total
    assert "%" in cells[2]  # the error budget left
    assert page.locator("table.rules td.firing", has_text="firing").count() >= 1
    assert page.locator("p.links a.runbook").get_attribute("href") == RUNBOOK
    incident_link = page.locator(f'section.open-incidents a[href="/incidents/{incident_id}"]')
    assert incident_link.count() == 1
    page.wait_for_selector("figure.chart-box.drawn canvas")
    screenshot(page, "walk-3-slo")
    _click(page, incident_link)

    # 4. The incident: open, its SLO with the runbook link, example failing traces with their logs.
    assert page.url.endswith(f"/incidents/{incident_id}")
    assert incident_id in page.locator("h1").inner_text()
    assert page.locator("h1 .status").inner_text() == "open"
    assert page.locator("section.slo-links a.slo").inner_text() == SLO
    assert page.locator("section.slo-links a.runbook").get_attribute("href") == RUNBOOK
    examples = page.locator("ul.examples > li")
    assert examples.count() >= 1
    first = examples.first
    trace_id = first.locator("a.trace").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert "POST /charge" in first.inner_text()
    assert "payment failed" in first.locator("pre.logs").inner_text()
    screenshot(page, "walk-4-incident")
    _click(page, first.locator("a.trace"))

    # 5. The trace: the payments span failed; the trace's ERROR log "payment failed".
    assert page.url.endswith(f"/traces/{trace_id}")
    assert trace_id in page.locator(".trace-facts").inner_text()
    legend = page.locator(".legend").inner_text()
    for service in ("gateway", "orders", "payments"):
        assert service in legend
    page.wait_for_selector("#waterfall[data-ready=true]")
    charge = page.locator("#waterfall .row.error", has=page.locator(".svc", has_text="payments")).filter(
        has=page.locator(".op", has_text="POST /charge")
    )
    assert charge.count() == 1
    charge.locator(".op-link").click()
    status = page.locator(".detail-host .status-error")
    status.wait_for()
    assert status.is_visible() and status.inner_text().startswith("ERROR")
    failed = page.locator("#logs ~ table.logs tr.log", has=page.locator("td.body", has_text=PAYMENT_FAILED))
    assert failed.count() == 1
    assert _cells(failed)[1] == "ERROR"
    assert "payments" in _cells(failed)[2]
    correlation = failed.locator("td a[href^='/correlations/']")
    correlation_id = correlation.inner_text()
    assert re.fullmatch(r"[0-9a-f-]{36}", correlation_id)
    screenshot(page, "walk-5-trace")
    _click(page, correlation)

    # 6. The correlation view: spans and logs of several services on one timeline.
    assert page.url.endswith(f"/correlations/{correlation_id}")
    assert correlation_id in page.locator("h1").inner_text()
    spans = page.locator("#timeline .span-item")
    logs = page.locator("#timeline .log-item")
    assert spans.count() >= 1 and logs.count() >= 3
    span_services = set(spans.evaluate_all("xs => xs.map(x => x.dataset.service)"))
    log_services = set(logs.evaluate_all("xs => xs.map(x => x.dataset.service)"))
    assert "gateway" in span_services
    assert {"gateway", "orders", "payments"} <= span_services | log_services
    assert {"orders", "payments"} <= log_services
    assert page.locator("#timeline .log-item .body", has_text=PAYMENT_FAILED).count() == 1
    assert page.locator(f'table.traces tr[data-trace-id="{trace_id}"]').count() == 1
    screenshot(page, "walk-6-correlation")

    assert page.problems == []  # no console error and no CSP violation on any page of the walk
    # The notification that carried the example went out through the demo's webhook, its links
    # made from the address this server really listens on (a free port, not the demo's 8080).
    sent = walk.webhook_log.read_text()
    assert SLO in sent
    assert f'"runbook_url":"{walk.api}{RUNBOOK}"' in sent
    assert f'"sloscope_incident_url":"{walk.api}/incidents/{incident_id}"' in sent
