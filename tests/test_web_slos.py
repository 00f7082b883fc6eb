"""The SLO and incident pages in real Chromium, over a burning SLO and open incidents made the way
tests/test_alerting.py makes them: real SDK spans and logs through the OTLP/HTTP port, the scheduler
off, ``evaluate_slos(at)`` minute by minute.

The stream, minutes 0..29 before the test started (``at(m)`` sees minutes < m; ``at(30)`` is "now"):

* ``checkout`` (version 2.1.0): 10 ``POST /pay`` and 5 ``GET /cart`` SERVER spans a minute; in
  minutes 20..29, 3 of the 10 ``POST /pay`` fail (0.2 of the minute's 15), each with an ERROR log
  line in its trace. SLO ``checkout`` (objective 90: b = 0.1, window 1d) at now: 30 bad of 450,
  SLI 93.333%, budget 45 events, 1 - 30/45 = 33.3% left; burn 5m 2.00 (0.2 / 0.1), 1h/6h/1d/window
  0.67. Its page rule 10m/5m factor 1.5 first fires at ``at(28)`` (24 bad of 150 in 10m: 1.6); its
  ticket rule 1h/10m factor 1 never does. ``checkout-routes`` groups the same SLI by http.route:
  ``/pay`` has 30 bad of 300 (budget exactly spent: 0.0%), ``/cart`` none (100%).
* ``search`` (objective 95, page rule 5m/1m factor 2): 10 ``GET /search`` a minute, all failing in
  minute 28: fires at ``at(29)``, resolves at ``at(30)``.

The policy sends checkout's page to ``broken`` (a receiver answering 400: one failed, not retried
attempt) and every page to ``hook``: incidents checkout/broken and checkout/hook open since
``at(28)``, search/hook resolved (opened later, listed after the open ones).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import InProcess, in_process, screenshot
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags

from alerts import store
from alerts.dispatch import DispatchState
from sloscope.app import SloscopeServer

MINUTE = 60
RUNBOOK = "https://runbooks.test/checkout"
DASHBOARD = "https://grafana.test/d/checkout"
LOG_BODY = 'card issuer timed out <script>window.__xss = 1</script> "><img src=x onerror="window.__xss=2">'

SPEC = f"""\
slos:
  - name: checkout
    service: checkout
    objective: 90
    window: 1d
    sli: {{spans: {{bad: {{error: true}}}}}}
    annotations:
      runbook_url: {RUNBOOK}
      dashboard_url: {DASHBOARD}
      notes: "javascript:alert(1)"
    alerting:
      rules:
        - {{severity: page, long: 10m, short: 5m, factor: 1.5}}
        - {{severity: ticket, long: 1h, short: 10m, factor: 1}}
  - name: checkout-routes
    service: checkout
    objective: 90
    window: 1d
    group_by: [http.route]
    sli: {{spans: {{bad: {{error: true}}}}}}
    alerting:
      rules:
        - {{severity: ticket, long: 1h, short: 10m, factor: 10}}
  - name: search
    service: search
    objective: 95
    window: 1d
    sli: {{spans: {{bad: {{error: true}}}}}}
    annotations: {{runbook_url: "https://runbooks.test/search"}}
    alerting:
      rules:
        - {{severity: page, long: 5m, short: 1m, factor: 2}}
"""

POLICY = """\
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
  routes:
    - matchers: ['slo = checkout']
      receiver: broken
      continue: true
    - matchers: ['severity = page']
      receiver: hook
receivers:
  - name: hook
    webhook: {url_env: WEB_SLOS_HOOK_URL}
  - name: broken
    webhook: {url_env: WEB_SLOS_BROKEN_URL}
"""


@functools.cache
def _start_s() -> int:
    # Taken at first use, when the fixture builds its world, not at collection: the pages read "now",
    # and in a long suite this module's tests run many minutes after it was collected.
    return int(time.time()) // MINUTE * MINUTE - 30 * MINUTE


def at(minute: int) -> int:
    return _start_s() + minute * MINUTE


# -- receivers and the stream ---------------------------------------------------------------------


@contextlib.contextmanager
def receiver(status: int) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering every POST with ``status``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            reply = b'{"error":"bad payload"}' if status >= 400 else b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _spans(service: str, fails: Any) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "2.1.0"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_web_slos")
    for m in range(30):
        for name, route, n in fails.operations:
            for i in range(n):
                start_ns = (at(m) + i * 5 + (2 if route == "/cart" else 0)) * 10**9 + 1234
                span = tracer.start_span(name, kind=SpanKind.SERVER, start_time=start_ns)
                span.set_attribute("http.route", route)
                bad = fails(m, route, i)
                span.set_attribute("http.response.status_code", 503 if bad else 200)
                if bad:
                    span.set_status(Status(StatusCode.ERROR, "upstream unavailable"))
                span.end(end_time=start_ns + 20_000_000)
    provider.shutdown()
    return list(exporter.get_finished_spans())


class CheckoutFaults:
    operations = (("POST /pay", "/pay", 10), ("GET /cart", "/cart", 5))

    def __call__(self, m: int, route: str, i: int) -> bool:
        return route == "/pay" and m >= 20 and i < 3


class SearchFaults:
    operations = (("GET /search", "/search", 10),)

    def __call__(self, m: int, route: str, i: int) -> bool:
        return m == 28


def export(otlp: str, spans: list[ReadableSpan]) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=10)
    try:
        for i in range(0, len(spans), 200):
            assert exporter.export(spans[i : i + 200]) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def export_error_logs(otlp: str, spans: list[ReadableSpan]) -> None:
    """An ERROR log line in each failing span's trace, through the SDK's OTLP/HTTP log exporter."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{otlp}/v1/logs")))
    logger = provider.get_logger("test_web_slos")
    for span in spans:
        if span.status.is_ok:
            continue
        logger.emit(
            LogRecord(
                timestamp=span.start_time + 5_000_000,
                trace_id=span.context.trace_id,
                span_id=span.context.span_id,
                trace_flags=TraceFlags(1),
                severity_number=SeverityNumber.ERROR,
                severity_text="ERROR",
                body=LOG_BODY,
            )
        )
    provider.shutdown()


@dataclass
class World:
    server: InProcess
    failing: set[str]
    incidents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.server.api

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


def start_server(stack: contextlib.ExitStack, root: Path, **overrides: Any) -> InProcess:
    """A server with this module's SLOs and notification policy (webhook receivers answering 200 and
    400) whose evaluations the test drives, on ``stack``; ``overrides``: more settings."""
    (root / "slos.yaml").write_text(SPEC)
    (root / "policy.yaml").write_text(POLICY)
    mp = stack.enter_context(pytest.MonkeyPatch.context())
    mp.setenv("WEB_SLOS_HOOK_URL", stack.enter_context(receiver(200)))
    mp.setenv("WEB_SLOS_BROKEN_URL", stack.enter_context(receiver(400)))
    # The test drives the evaluations (see tests/test_alerting.py).
    mp.setattr(SloscopeServer, "_start_scheduler", lambda self: None)
    return stack.enter_context(
        in_process(
            root / "data",
            slos=str(root / "slos.yaml"),
            notification_policy=str(root / "policy.yaml"),
            **overrides,
        )
    )


def export_faults(server: InProcess) -> list[ReadableSpan]:
    """The checkout and search spans with their faults, and checkout's error logs; checkout's spans."""
    checkout = _spans("checkout", CheckoutFaults())
    export(server.otlp, checkout + _spans("search", SearchFaults()))
    export_error_logs(server.otlp, checkout)
    return checkout


def evaluate_minutes(server: InProcess) -> None:
    """Evaluate minutes 20 to 30 as the schedule would, each alerting step delivered before the next."""
    app = server.server
    for m in range(20, 31):
        app.evaluate_slos(at(m))
        saved = store.load_dispatch_state(app.backend)
        assert saved is not None and DispatchState.from_json(saved).at_s == at(m), f"alerting skipped {m}"
        assert app.alerting.deliveries is not None and app.alerting.deliveries.wait_idle(15)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        server = start_server(stack, tmp_path_factory.mktemp("web-slos"))
        checkout = export_faults(server)
        server.drain()
        evaluate_minutes(server)
        w = World(server, {format(s.context.trace_id, "032x") for s in checkout if not s.status.is_ok})
        for incident in w.get("/api/v1/incidents")["incidents"]:
            w.incidents[(incident["slos"][0], incident["receiver"])] = incident
        assert set(w.incidents) == {("checkout", "broken"), ("checkout", "hook"), ("search", "hook")}
        yield w


def _cells(row: Any) -> list[str]:
    return [c.strip() for c in row.locator("td").all_inner_texts()]


# -- the SLO list -------------------------------------------------------------------------------


def test_the_slo_list_shows_sli_budget_burn_rates_and_the_firing_alert(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/slos")
    assert page.locator("h1").inner_text() == "SLOs"
    rows = page.locator("table.slos tbody tr")
    assert rows.count() == 4  # checkout, checkout-routes /cart and /pay, search
    checkout = page.locator('tr[data-slo="checkout"]')
    cells = _cells(checkout)
    assert cells[0] == "checkout" and cells[1] == "checkout" and cells[2] == "all"
    assert cells[3].startswith("90%")
    assert cells[4] == "93.333%"
    assert "33.3%" in cells[5]
    windows = {
        w: checkout.locator(f'td[data-window="{w}"]').inner_text() for w in ("5m", "1h", "6h", "1d", "window")
    }
    assert windows == {"5m": "2.00×", "1h": "0.67×", "6h": "0.67×", "1d": "0.67×", "window": "0.67×"}
    assert checkout.locator("td.alert-state").inner_text().strip() == "page"
    assert checkout.locator(".bar > span").get_attribute("style") == "width: 33.3%"
    assert checkout.locator(".bar").get_attribute("class") == "bar"  # neither low (< 25%) nor out
    assert checkout.locator("a").get_attribute("href") == "/slos/checkout"

    routes = page.locator('tr[data-slo="checkout-routes"]')
    by_route = {_cells(routes.nth(i))[2]: routes.nth(i) for i in range(routes.count())}
    assert set(by_route) == {"http.route=/cart", "http.route=/pay"}
    pay = by_route["http.route=/pay"]
    assert _cells(pay)[4] == "90.000%" and "0.0%" in _cells(pay)[5]
    assert pay.locator(".bar.out").count() == 1
    assert "100.0%" in _cells(by_route["http.route=/cart"])[5]
    assert (
        pay.locator("a").get_attribute("href")
        == "/slos/checkout-routes?group=" + "%7B%22http.route%22%3A%22%2Fpay%22%7D"
    )
    search = page.locator('tr[data-slo="search"]')
    assert search.locator("td.alert-state").inner_text().strip() == "ok"  # resolved at at(30)
    assert page.locator("footer a.json").get_attribute("href") == "/api/v1/slos"
    screenshot(page, "slos")
    assert page.problems == []


# -- one SLO ------------------------------------------------------------------------------------


def test_the_slo_page_draws_its_charts_and_lists_rules_and_contributors(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/slos/checkout")
    assert page.locator("h1").inner_text() == "checkout"
    # The burn-down and one burn-rate chart per rule, drawn by uPlot; their tables fold away.
    page.wait_for_selector("figure.chart-box.drawn canvas")
    assert page.locator("figure.chart-box canvas").count() == 3
    assert page.locator("figure.chart-box.drawn").count() == 3
    assert not page.locator('figure[data-chart="burn-down"] details').evaluate("d => d.open")
    charts = json.loads(page.locator("#slo-charts").text_content() or "null")
    assert charts["burn_down"]["remaining"][-1] == pytest.approx(100 / 3)
    assert 30 <= len(charts["burn_down"]["x"]) <= 40  # a point a minute since the data began
    page_rule = charts["rules"][0]
    assert (page_rule["label"], page_rule["factor"]) == ("page 10m/5m", 1.5)
    assert page_rule["long_rate"][-1] == pytest.approx(2.0) and page_rule["firing"][-1] is True
    assert page.locator('figure[data-chart="rule-0"] .u-legend').inner_text().count("threshold 1.5×") == 1

    rules = {r.get_attribute("data-rule"): _cells(r) for r in page.locator("table.rules tbody tr").all()}
    # The 10m window's events shrink by 15 a minute once the stream has ended ("now" moves on).
    assert rules["page 10m/5m"][:7] == ["page 10m/5m", "page", "10m", "5m", "1.50", "2.00×", "2.00×"]
    assert int(rules["page 10m/5m"][7]) % 15 == 0 and rules["page 10m/5m"][8] == "firing"
    assert rules["ticket 1h/10m"] == [
        "ticket 1h/10m",
        "ticket",
        "1h",
        "10m",
        "1.00",
        "0.67×",
        "2.00×",
        "450",
        "no",
    ]

    # Annotations: http(s) URLs are links, a javascript: URL is text.
    assert page.locator("p.links a.runbook").get_attribute("href") == RUNBOOK
    assert page.locator("p.links a.dashboard").get_attribute("href") == DASHBOARD
    assert page.locator('dl.annotations a[href^="javascript"]').count() == 0
    assert "javascript:alert(1)" in page.locator("dl.annotations").inner_text()
    # The open incidents of this SLO link to them.
    open_links = page.locator("section.open-incidents a").evaluate_all(
        "as => as.map(a => a.getAttribute('href'))"
    )
    assert sorted(open_links) == sorted(
        f"/incidents/{world.incidents[('checkout', r)]['id']}" for r in ("broken", "hook")
    )

    contributors = page.locator("table.contributors tbody tr")
    assert contributors.count() == 1  # GET /cart burned nothing
    assert _cells(contributors.first)[:6] == ["POST /pay", "/pay", "2.1.0", "30", "300", "100.0%"]
    hrefs = contributors.first.locator("a.trace").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert hrefs and all(h.startswith("/traces/") for h in hrefs)
    ids = [h.removeprefix("/traces/") for h in hrefs]
    assert set(ids) <= world.failing
    stored = world.server.rows(
        "SELECT DISTINCT lower(hex(trace_id)) AS t FROM spans WHERE lower(hex(trace_id)) IN {ids:Array(String)}",
        {"ids": ids},
    )
    assert {r["t"] for r in stored} == set(ids)
    # The examples' log lines are text: the markup in them runs nothing.
    assert LOG_BODY in page.locator("ul.examples pre.logs").first.inner_text()
    assert page.evaluate("window.__xss") is None
    screenshot(page, "slo")
    assert page.problems == []


def test_a_grouped_slo_page_shows_the_chosen_instance(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/slos/checkout-routes")
    # Without a group: the instance with the least budget left.
    assert page.locator("table.instances tr[aria-current] td").first.inner_text() == "http.route=/pay"
    page.locator("table.instances a", has_text="/cart").click()
    page.wait_for_load_state()
    assert page.locator("table.instances tr[aria-current] td").first.inner_text() == "http.route=/cart"
    assert page.locator("table.contributors").count() == 0
    assert "Nothing burned the budget" in page.locator(".empty").inner_text()
    page.wait_for_selector("figure.chart-box.drawn canvas")
    assert page.problems == []


def test_an_unknown_slo_is_a_404_page(world: World, page) -> None:  # noqa: ANN001
    response = page.goto(f"{world.api}/slos/no-such-slo")
    assert response is not None and response.status == 404
    assert "no-such-slo" in page.locator("main").inner_text()
    bad = httpx.get(f"{world.api}/slos/checkout", params={"group": "nope"}, timeout=10)
    assert bad.status_code == 400 and "group" in bad.text


# -- incidents ----------------------------------------------------------------------------------


def test_the_incident_list_puts_the_open_ones_first(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/incidents")
    rows = page.locator("table.incidents tbody tr")
    assert rows.count() == 3
    listed = [(_cells(rows.nth(i))[0], _cells(rows.nth(i))[1], _cells(rows.nth(i))[4]) for i in range(3)]
    # search's incident opened after checkout's, but it is resolved.
    assert listed[:2] and {x[:2] for x in listed[:2]} == {("open", "checkout")}
    assert listed[2] == ("resolved", "search", "hook")
    assert _cells(rows.nth(2))[6] != "–"  # closed
    href = rows.first.locator("a", has_text="details").get_attribute("href")
    assert href in {f"/incidents/{world.incidents[('checkout', r)]['id']}" for r in ("broken", "hook")}
    page.goto(f"{world.api}/incidents?status=resolved")
    assert page.locator("table.incidents tbody tr").count() == 1
    screenshot(page, "incidents")
    assert page.problems == []


def test_the_incident_page_shows_the_timeline_runbook_slo_and_examples(world: World, page) -> None:  # noqa: ANN001
    incident = world.incidents[("checkout", "broken")]
    page.goto(f"{world.api}/incidents/{incident['id']}")
    assert incident["id"] in page.locator("h1").inner_text()
    events = page.locator("ol.timeline > li")
    texts = events.all_inner_texts()
    assert any("inactive → firing" in t and "checkout" in t for t in texts)
    (trigger,) = [t for t in texts if "trigger sent to broken" in t]
    assert "not delivered" in trigger and "attempt 1" in trigger and "HTTP 400" in trigger
    assert page.locator("section.slo-links a.runbook").get_attribute("href") == RUNBOOK
    assert page.locator("section.slo-links a.slo").get_attribute("href") == "/slos/checkout"
    examples = page.locator("ul.examples > li")
    assert examples.count() >= 1
    for i in range(examples.count()):
        trace_id = examples.nth(i).locator("a.trace").inner_text()
        assert trace_id in world.failing
        assert examples.nth(i).locator("a.trace").get_attribute("href") == f"/traces/{trace_id}"
        assert LOG_BODY in examples.nth(i).locator("pre.logs").inner_text()
    # 2.1.0, checkout's only version, holds every bad event: a link to compare it with another.
    canary = parse_qs(urlsplit(page.locator("p.canary-link a.canary").get_attribute("href") or "").query)
    assert canary["service"] == ["checkout"] and canary["candidate"] == ["2.1.0"]
    assert int(canary["start"][0]) == (incident["opened_at_s"] - 3600) * 1000
    assert page.evaluate("window.__xss") is None
    # The CSRF cookie: random, HttpOnly, SameSite=Strict, and echoed in both forms (and the header's
    # time-zone form, and the page's <meta> for scripts).
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "sloscope_csrf"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and len(cookie["value"]) >= 32
    tokens = page.locator('main input[name="csrf_token"]').evaluate_all("xs => xs.map(x => x.value)")
    assert tokens == [cookie["value"], cookie["value"]]
    assert page.locator('header form.tz input[name="csrf_token"]').get_attribute("value") == cookie["value"]
    assert page.locator('meta[name="csrf-token"]').get_attribute("content") == cookie["value"]
    screenshot(page, "incident")
    assert page.problems == []


def test_acknowledge_is_shown_and_stored(world: World, page) -> None:  # noqa: ANN001
    incident_id = world.incidents[("checkout", "broken")]["id"]
    page.goto(f"{world.api}/incidents/{incident_id}")
    assert page.locator("#acknowledged").inner_text().strip() == "Not acknowledged."
    page.fill("form.ack input[name=by]", "alice <b>")
    page.fill("form.ack input[name=comment]", "looking at the bank")
    with page.expect_navigation():
        page.click("form.ack button")
    assert page.url.startswith(f"{world.api}/incidents/{incident_id}")
    shown = page.locator("#acknowledged").inner_text()
    assert "Acknowledged by alice <b>" in shown and "looking at the bank" in shown
    acked = world.get(f"/api/v1/incidents/{incident_id}")["acknowledged"]
    assert (acked["by"], acked["comment"]) == ("alice <b>", "looking at the bank")
    page.goto(f"{world.api}/incidents")
    row = page.locator(f'tr[data-incident="{incident_id}"]')
    assert "alice <b>" in _cells(row)[7]
    assert page.problems == []


def test_silence_creates_a_silence_of_the_incidents_slo_and_severity(world: World, page) -> None:  # noqa: ANN001
    incident_id = world.incidents[("checkout", "broken")]["id"]
    before = {s["id"] for s in world.get("/api/v1/silences")["silences"]}
    page.goto(f"{world.api}/incidents/{incident_id}")
    page.select_option("form.silence select[name=duration]", "4h")
    page.fill("form.silence input[name=created_by]", "bob")
    with page.expect_navigation():
        page.click("form.silence button")
    (new,) = [s for s in world.get("/api/v1/silences")["silences"] if s["id"] not in before]
    assert new["matchers"] == ["slo = checkout", "severity = page"]
    assert new["active"] and new["ends_at"] - new["starts_at"] == 4 * 3600
    assert new["created_by"] == "bob"
    row = page.locator(f'#silences tr[data-silence="{new["id"]}"]')
    assert row.count() == 1
    assert 'slo="checkout"' in _cells(row)[0] and 'severity="page"' in _cells(row)[0]
    assert _cells(row)[3] == "active"
    screenshot(page, "incident-silenced")
    assert page.problems == []


def test_a_post_without_the_token_is_403_and_changes_nothing(world: World) -> None:
    incident_id = world.incidents[("checkout", "hook")]["id"]
    silences = world.get("/api/v1/silences")["silences"]
    url = f"{world.api}/incidents/{incident_id}"
    token = "x" * 43
    attempts = [
        ({"by": "mallory"}, {}),  # no token at all
        ({"by": "mallory", "csrf_token": token}, {}),  # a token but no cookie
        ({"by": "mallory"}, {"sloscope_csrf": token}),  # a cookie but no token
        ({"by": "mallory", "csrf_token": token}, {"sloscope_csrf": "y" * 43}),  # they differ
    ]
    for form, cookies in attempts:
        for action in ("ack", "silence"):
            with httpx.Client(cookies=cookies, timeout=10) as client:
                response = client.post(
                    f"{url}/{action}", data={**form, "duration": "1h"}, headers={"Accept": "text/html"}
                )
            assert response.status_code == 403, (form, cookies, action)
            assert "security token" in response.text and "Nothing was changed" in response.text
    assert world.get(f"/api/v1/incidents/{incident_id}")["acknowledged"] is None
    assert world.get("/api/v1/silences")["silences"] == silences
    # The same request with a matching cookie and token goes through (what the page's form sends).
    with httpx.Client(cookies={"sloscope_csrf": token}, timeout=10) as client:
        ok = client.post(f"{url}/ack", data={"by": "carol", "csrf_token": token})
    assert ok.status_code == 303 and ok.headers["location"].startswith(f"/incidents/{incident_id}")
    assert world.get(f"/api/v1/incidents/{incident_id}")["acknowledged"]["by"] == "carol"


def test_the_pages_work_without_javascript(world: World, browser) -> None:  # noqa: ANN001
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{world.api}/slos/checkout")
        assert page.locator("canvas").count() == 0
        # The chart data as tables: the burn-down and one per rule.
        tables = page.locator("figure.chart-box table.series")
        assert tables.count() == 3 and tables.first.is_visible()
        last = tables.first.locator("tbody tr").last
        assert _cells(last)[1] == "33.33%"
        assert (
            page.locator('figure[data-chart="rule-0"] tbody tr').last.locator("td").nth(4).inner_text()
            == "firing"
        )
        screenshot(page, "slo-no-js")
        page.goto(f"{world.api}/slos")
        assert re.search(r"93\.333%", page.locator('tr[data-slo="checkout"]').inner_text())
        # The forms are plain forms: a silence from the resolved search incident, without JavaScript.
        incident_id = world.incidents[("search", "hook")]["id"]
        page.goto(f"{world.api}/incidents/{incident_id}")
        with page.expect_navigation():
            page.click("form.silence button")
        assert page.locator("#silences tbody tr").count() == 1
        assert 'slo="search"' in page.locator("#silences tbody tr").inner_text()
        screenshot(page, "incident-no-js")
    finally:
        context.close()
