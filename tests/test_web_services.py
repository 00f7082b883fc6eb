"""The Services pages (``/`` and ``/services/{name}``) in real Chromium over a real in-process server.

The data, written through the OTLP/HTTP receiver over 20 minutes from 25 minutes ago, one trace per
request i in 0..39, 30 s apart:

    frontend SERVER "GET /checkout" (100 ms) -> frontend CLIENT -> checkout SERVER "POST /checkout"
    (50 ms, ERROR for i == 0) -> checkout CLIENT -> pay SERVER "POST /charge" (20 ms, ERROR for even i)

plus 10 root SERVER "POST /refund" spans of pay (20 ms, fine) and 5 of a service whose name and
operation are markup. So: frontend 40 requests, 0 errors; checkout 40, 1 (2.50%); pay 50, 20 (40.00%).
The SLO ``pay-availability`` (99%, SERVER errors are bad) sees 20 bad of 50: SLI 60.000%.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import InProcess, in_process, screenshot
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from alerts import store as alert_store
from slo import evaluator, history
from store import red
from ui import pages_services

Span = trace_pb2.Span
SERVER, CLIENT = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT
ERROR = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="declined")
MS = 10**6
BASE = (time.time_ns() // (60 * 10**9) - 25) * 60 * 10**9
EVIL = "<script>alert(1)</script>"
EVIL_OP = '"><img src=x onerror=alert(2)>'
SLOS = """\
apiVersion: sloscope/v1
slos:
  - name: pay-availability
    service: pay
    objective: 99
    window: 7d
    sli:
      spans:
        kinds: [SERVER]
        bad:
          error: true
"""


def _traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scopes = {}
    for service in ("frontend", "checkout", "pay", EVIL):
        rs = request.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
        scopes[service] = rs.scope_spans.add()
    ids = iter(range(1, 10**6))

    def add(service: str, name: str, kind: int, trace: int, start: int, ms: int, parent: bytes = b"", **kw):  # noqa: ANN003, ANN202
        span_id = next(ids).to_bytes(8, "big")
        scopes[service].spans.append(
            Span(
                trace_id=(0xC0FFEE00 + trace).to_bytes(16, "big"),
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                kind=kind,
                start_time_unix_nano=start,
                end_time_unix_nano=start + ms * MS,
                **kw,
            )
        )
        return span_id

    for i in range(40):
        start = BASE + i * 30 * 10**9
        root = add("frontend", "GET /checkout", SERVER, i, start, 100)
        call = add("frontend", "POST checkout", CLIENT, i, start + MS, 60, root)
        served = add(
            "checkout",
            "POST /checkout",
            SERVER,
            i,
            start + 2 * MS,
            50,
            call,
            status=ERROR if i == 0 else None,
        )
        charge = add("checkout", "POST pay", CLIENT, i, start + 3 * MS, 25, served)
        add(
            "pay", "POST /charge", SERVER, i, start + 4 * MS, 20, charge, status=ERROR if i % 2 == 0 else None
        )
    for i in range(10):
        add("pay", "POST /refund", SERVER, 100 + i, BASE + (i * 120 + 15) * 10**9, 20)
    for i in range(5):
        add(EVIL, EVIL_OP, SERVER, 200 + i, BASE + (i * 60 + 20) * 10**9, 5)
    return request


def _export(server: InProcess, request: ExportTraceServiceRequest) -> None:
    """Send ``request`` through the OTLP/HTTP receiver and wait until it is stored."""
    reply = httpx.post(
        f"{server.otlp}/v1/traces",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert reply.status_code == 200, reply.text
    server.drain()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    slos = tmp_path_factory.mktemp("web-services-slos") / "slos.yaml"
    slos.write_text(SLOS)
    with in_process(tmp_path_factory.mktemp("web-services"), slos=str(slos)) as running:
        yield running


@pytest.fixture(scope="module")
def loaded(server: InProcess) -> InProcess:
    """The server with the traces of the module docstring and an open incident of pay."""
    _export(server, _traces())
    incident = {
        "id": "inc-pay-1",
        "receiver": "default",
        "group_labels": {"service": "pay"},
        "status": "open",
        "opened_at_s": BASE // 10**9 + 120,
        "alert_ids": ["a1"],
        "slos": ["pay-availability"],
        "services": ["pay"],
        "severities": ["page"],
    }
    alert_store.save_incidents(server.backend, [incident], BASE // 10**9 + 120)
    return server


def _no_dialogs(page) -> list[str]:  # noqa: ANN001
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:  # noqa: ANN001
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


# Runs first: file order, and not a browser test (conftest runs those last, after tests that load
# data). The empty state is seen in Chromium by the range picker's test, over a range with no data.
def test_an_empty_store_says_how_to_point_an_exporter_at_the_collector(server: InProcess) -> None:
    assert server.rows("SELECT count() AS n FROM spans")[0]["n"] == 0, "this test needs the empty store"
    response = httpx.get(f"{server.api}/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    empty = re.search(r'<div class="empty">(.*?)</div>', response.text, re.S)
    assert empty is not None and "No service has sent requests" in empty.group(1)
    assert ":4317" in empty.group(1) and ":4318" in empty.group(1)
    assert 'class="services"' not in response.text


def test_the_services_table_shows_each_service_with_its_numbers_and_a_sparkline(
    loaded: InProcess, page
) -> None:  # noqa: ANN001
    dialogs = _no_dialogs(page)
    page.goto(f"{loaded.api}/")
    rows = page.locator("table.services tbody tr")
    assert rows.count() == 4
    assert page.locator("table.services tbody tr svg.spark").count() == 4

    def row(service: str) -> dict[str, str]:
        tr = page.locator(f'table.services tbody tr[data-service="{service}"]')
        cells = ("requests", "errors", "error-ratio", "p50", "p99")
        return {c: tr.locator(f"td.{c}").inner_text() for c in cells}

    assert row("frontend") | {"p50": "", "p99": ""} == {
        "requests": "40",
        "errors": "0",
        "error-ratio": "0.00%",
        "p50": "",
        "p99": "",
    }
    assert row("checkout")["requests"] == "40" and row("checkout")["error-ratio"] == "2.50%"
    pay = row("pay")
    assert (pay["requests"], pay["errors"], pay["error-ratio"]) == ("50", "20", "40.00%")
    # 20 ms spans: the quantile lies in the histogram bucket [20, 21) ms.
    assert pay["p50"].startswith("20.") and pay["p50"].endswith(" ms")
    assert row("frontend")["p50"].startswith("10")  # 100 ms bucket: [100, 105) ms
    # The sparkline is drawn: a line with as many points as steps, errors in red where there are any.
    pay_svg = page.locator('tr[data-service="pay"] svg.spark')
    assert len(pay_svg.locator("polyline.spark-rate").get_attribute("points").split()) >= 15
    assert pay_svg.locator("polyline.spark-errors").count() == 1
    assert page.locator('tr[data-service="frontend"] svg.spark polyline.spark-errors').count() == 0
    # The markup-named service is text: the cell shows the characters, nothing ran.
    assert page.get_by_role("link", name=EVIL).count() == 1
    assert page.locator("table.services script").count() == 0
    # The JSON twin.
    json_url = page.locator("footer a.json").get_attribute("href")
    assert json_url.startswith("/api/v1/services?")
    services = httpx.get(loaded.api + json_url).json()["services"]
    assert {s["service"]: s["requests"] for s in services} == {
        "frontend": 40,
        "checkout": 40,
        "pay": 50,
        EVIL: 5,
    }
    screenshot(page, "services")
    assert dialogs == [] and page.problems == []


def test_services_come_worst_error_ratio_first_and_every_header_sorts(loaded: InProcess, page) -> None:  # noqa: ANN001
    page.goto(f"{loaded.api}/")
    names = page.locator("table.services tbody tr td.name")

    def order() -> list[str]:
        return names.all_inner_texts()

    # Worst error ratio first; the two without errors, busiest first.
    assert order() == ["pay", "checkout", "frontend", EVIL]
    assert page.locator("table.services th[aria-sort]").inner_text().startswith("Error ratio")
    header = page.locator("table.services th a", has_text="Error ratio")
    with page.expect_navigation():
        header.click()  # the same column again: the other way
    assert "sort=error_ratio" in page.url and "dir=asc" in page.url
    assert order()[-1] == "pay" and page.locator("th[aria-sort=ascending]").count() == 1
    for column, expected in (
        ("Requests", ["pay", "checkout", "frontend", EVIL]),  # 50, 40, 40 (by name), 5
        ("Service", sorted(["pay", "checkout", "frontend", EVIL])),
        ("p50", ["frontend", "checkout", "pay", EVIL]),  # 100 ms, 50 ms, 20 ms, 5 ms: slowest first
    ):
        with page.expect_navigation():
            page.locator("table.services th a", has_text=column).first.click()
        assert order() == expected, column
    with page.expect_navigation():
        names.first.locator("a").click()
    assert page.url.endswith("/services/frontend?last=1h")
    assert page.locator("h1").inner_text() == "frontend"
    assert page.problems == []
    # An unknown column or direction is a 400 page that names it.
    for query, named in (("sort=colour", "sort"), ("dir=up", "dir")):
        reply = httpx.get(f"{loaded.api}/?{query}", headers={"Accept": "text/html"})
        assert reply.status_code == 400 and named in reply.text, query


def test_home_shows_open_incidents_then_burning_slos_then_services(loaded: InProcess, page) -> None:  # noqa: ANN001
    """What an on-call engineer needs first: the incident, who has it, the SLO burning."""
    now = int(time.time())
    history.record(loaded.backend, evaluator.evaluate(loaded.backend, loaded.server.slos, now))
    alert_store.acknowledge(loaded.backend, "inc-pay-1", now * 1000, "alice", "looking")
    page.goto(f"{loaded.api}/")
    sections = page.locator("main section")
    assert [sections.nth(i).get_attribute("class") for i in range(3)] == [
        "home-incidents",
        "home-slos",
        "home-services",
    ]
    incident = page.locator(".home-incidents table tbody tr")
    assert incident.count() == 1
    cells = incident.locator("td").all_inner_texts()
    assert cells[0].lower() == "page" and cells[1] == "pay-availability" and cells[2] == "pay"
    assert cells[4] == "alice"
    assert incident.locator("time").get_attribute("datetime").endswith("Z")
    with page.expect_navigation():
        incident.locator("a").click()
    assert page.url.endswith("/incidents/inc-pay-1")
    page.go_back()
    # 20 bad of 50 in the last hour against a 1% budget: the budget is gone, burning 40 times over.
    slo = page.locator(".home-slos table tbody tr")
    assert slo.count() == 1
    slo_cells = slo.locator("td").all_inner_texts()
    assert slo_cells[0] == "pay-availability" and slo_cells[1] == "pay"
    assert "overspent" in slo_cells[4] and slo_cells[5] == "40.00×"
    assert slo.locator("a").get_attribute("href") == "/slos/pay-availability"
    screenshot(page, "home")
    assert page.problems == []


def test_the_current_rate_and_the_filter_box(loaded: InProcess, page) -> None:  # noqa: ANN001
    # "Now" is the last 5 minutes of the range. Ending 10 minutes after the last span: all quiet.
    end_s = BASE // 10**9 + 20 * 60
    quiet = httpx.get(f"{loaded.api}/?start={(end_s - 3600) * 1000}&end={(end_s + 600) * 1000}").text
    assert quiet.count('<td class="num current">0.00/s</td>') == 4
    # Ending 20 minutes after BASE: frontend's 10 requests of its last 5 minutes (one every 30 s),
    # pay's 10 charges and 2 refunds; the rate over the whole hour is lower.
    page.goto(f"{loaded.api}/?start={(end_s - 3600) * 1000}&end={end_s * 1000}")

    def rates(service: str) -> tuple[str, str]:
        row = page.locator(f'tr[data-service="{service}"]')
        return row.locator("td.current").inner_text(), row.locator("td.rate").inner_text()

    assert rates("frontend") == ("0.03/s", "0.01/s")
    assert rates("pay") == ("0.04/s", "0.01/s")
    assert rates(EVIL)[0] == "0.00/s"
    box = page.get_by_label("Filter services")
    box.fill("CHECK")
    with page.expect_navigation():
        box.press("Enter")
    assert page.locator("table.services tbody tr td.name").all_inner_texts() == ["checkout"]
    assert "1 service with requests matching" in page.locator(".home-services p.muted").inner_text()
    assert f"start={(end_s - 3600) * 1000}" in page.url  # the range is kept
    box.fill("nothing-like-this")
    with page.expect_navigation():
        box.press("Enter")
    assert "No service matching" in page.locator(".home-services").inner_text()
    assert page.problems == []


def test_the_service_page_has_charts_operations_neighbours_slos_and_incidents(
    loaded: InProcess, page
) -> None:  # noqa: ANN001
    page.goto(f"{loaded.api}/services/pay")
    # uPlot drew three charts from the embedded JSON; the table fallback is folded away.
    page.wait_for_selector("#red-charts canvas")
    assert page.locator("#red-charts").is_visible()
    assert page.locator("#red-charts canvas").count() == 3
    assert page.locator("#red-charts .u-legend").first.inner_text().count("requests/s") == 1
    assert page.locator("#red-table").get_attribute("open") is None
    assert page.locator(".total-requests").inner_text() == "50"
    assert page.locator(".total-error-ratio").inner_text() == "40.00%"

    ops = page.locator("table.operations tbody tr")
    assert ops.count() == 2
    by_name = {ops.nth(i).locator("td").nth(0).inner_text(): ops.nth(i) for i in range(2)}
    assert set(by_name) == {"POST /charge", "POST /refund"}
    charge = [by_name["POST /charge"].locator("td").nth(i).inner_text() for i in range(6)]
    assert charge[1:] == ["SERVER", charge[2], "40", "20", "50.00%"]

    upstream = page.locator(".upstream a")
    assert [upstream.nth(i).inner_text() for i in range(upstream.count())] == ["checkout"]
    assert page.locator(".downstream a").count() == 0
    assert "calls no other" in page.locator(".downstream").inner_text()

    slo = page.locator("table.slos tbody tr")
    assert slo.count() == 1
    assert slo.locator("a").inner_text() == "pay-availability"
    assert slo.locator("a").get_attribute("href") == "/slos/pay-availability"
    assert slo.locator("td.sli").inner_text() == "60.000%"
    # 20 bad of 50 in the last hour against a 1% budget: burn rate 40.
    assert slo.locator("td.burn").inner_text() == "40.00"

    incident = page.locator("table.incidents tbody tr a")
    assert incident.count() == 1 and incident.get_attribute("href") == "/incidents/inc-pay-1"
    screenshot(page, "service-pay")

    # Upstream links lead to that service's page, whose downstream is pay.
    with page.expect_navigation():
        upstream.first.click()
    assert page.locator("h1").inner_text() == "checkout"
    assert [a.inner_text() for a in page.locator(".upstream a").all()] == ["frontend"]
    assert [a.inner_text() for a in page.locator(".downstream a").all()] == ["pay"]
    assert "No SLO names this service" in page.locator("main").inner_text()
    page.wait_for_selector("#red-charts canvas")
    assert page.problems == []


def test_the_range_picker_links_change_the_url(loaded: InProcess, page) -> None:  # noqa: ANN001
    page.goto(f"{loaded.api}/")
    with page.expect_navigation():
        page.locator(".range a", has_text="6h").click()
    assert page.url.endswith("/?last=6h")
    assert page.locator('.range a[aria-current="true"]').inner_text() == "6h"
    assert page.locator('tr[data-service="pay"] td.name a').get_attribute("href") == "/services/pay?last=6h"
    assert "last=" not in page.locator("footer a.json").get_attribute("href")  # the API takes start/end
    with page.expect_navigation():
        page.locator('tr[data-service="pay"] td.name a').click()
    with page.expect_navigation():
        page.locator(".range a", has_text="24h").click()
    assert page.url.endswith("/services/pay?last=24h")
    assert page.locator(".total-requests").inner_text() == "50"
    # A range with no data: the empty state, and a bad range an HTML error page.
    page.goto(f"{loaded.api}/?start=2001-01-01T00:00:00Z&end=2001-01-01T01:00:00Z")
    assert "No service has sent requests" in page.locator(".empty").inner_text()
    assert page.locator("table.services").count() == 0 and page.problems == []
    screenshot(page, "services-empty")
    response = page.goto(f"{loaded.api}/?last=5y")
    assert response is not None and response.status == 400
    assert page.locator("h1").inner_text() == "Bad time range"


def test_a_service_named_with_markup_is_shown_as_text(loaded: InProcess, page) -> None:  # noqa: ANN001
    dialogs = _no_dialogs(page)
    page.goto(f"{loaded.api}/")
    with page.expect_navigation():
        page.get_by_role("link", name=EVIL).click()
    assert "%2F" in page.url  # the '/' of the name is escaped in the link
    assert page.locator("h1").inner_text() == EVIL
    assert page.title().startswith(EVIL)
    op = page.locator("table.operations tbody td.name")
    assert op.inner_text() == EVIL_OP
    assert page.locator("main img").count() == 0
    page.wait_for_selector("#red-charts canvas")
    screenshot(page, "service-markup-name")
    with page.expect_navigation():  # the range picker keeps the name
        page.locator(".range a", has_text="6h").click()
    assert page.locator("h1").inner_text() == EVIL
    assert page.locator("table.operations tbody td.name").inner_text() == EVIL_OP
    assert dialogs == [] and page.problems == []


def test_an_unknown_service_is_a_404_page(loaded: InProcess, page) -> None:  # noqa: ANN001
    response = page.goto(f"{loaded.api}/services/no-such-service")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "No such service"
    assert "no-such-service" in page.locator("main").inner_text()


def test_the_pages_work_without_javascript(loaded: InProcess, browser) -> None:  # noqa: ANN001
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{loaded.api}/")
        assert page.locator("table.services tbody tr").count() == 4
        assert page.locator("table.services svg.spark").count() == 4
        page.locator('tr[data-service="pay"] td.name a').click()
        page.wait_for_url("**/services/pay?last=1h")
        # No charts without JavaScript: the table is open and holds every step of the range.
        assert not page.locator("#red-charts").is_visible()
        assert page.locator("#red-charts canvas").count() == 0
        table = page.locator("#red-table")
        assert table.get_attribute("open") is not None and table.is_visible()
        cells = [r.locator("td").nth(1).inner_text() for r in table.locator("tbody tr").all()]
        assert len(cells) >= 60 and sum(c != "0.00" for c in cells) >= 1
        screenshot(page, "service-pay-no-js")
    finally:
        context.close()


def test_the_service_page_embeds_the_series_of_its_json_twin(loaded: InProcess) -> None:
    html = httpx.get(f"{loaded.api}/services/pay", headers={"Accept": "text/html"}).text
    embedded = json.loads(
        re.search(r'<script type="application/json" id="red-data">(.*?)</script>', html).group(1)
    )
    json_url = re.search(r'<a class="json" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert json_url.startswith("/api/v1/red?service=pay&")
    twin = httpx.get(loaded.api + json_url).json()
    assert sum(p["requests"] for p in twin["points"]) == 50
    assert embedded["rate"] == [p["rate"] for p in twin["points"]]
    assert embedded["p99"] == [p["p99_ms"] for p in twin["points"]]


def test_the_services_route_redirects_home(loaded: InProcess) -> None:
    reply = httpx.get(f"{loaded.api}/services?last=6h")
    assert reply.status_code == 307 and reply.headers["location"] == "/?last=6h"


# A fleet, apart in time from the data above so that no other test sees it: SMALL services three days
# ago, FLEET services two days ago, each over one hour viewed with start/end. Fleet service i has
# 1 + i % 3 requests of 10 ms (busiest first, then by name: the order is known), an error for i % 5 == 0.
SMALL, FLEET = 5, 300
HOUR_NS = 3600 * 10**9
SMALL_AT = BASE - 3 * 86_400 * 10**9
FLEET_AT = BASE - 2 * 86_400 * 10**9


def _fleet_name(i: int) -> str:
    return f"fleet-{i:03d}"


def _fleet_traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    span_ids = iter(range(10**6, 2 * 10**6))
    fleets = (("small", SMALL, SMALL_AT), ("fleet", FLEET, FLEET_AT))
    for prefix, count, at in fleets:
        for i in range(count):
            rs = request.resource_spans.add()
            name = f"{prefix}-{i:03d}"
            rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=name)))
            spans = rs.scope_spans.add().spans
            for n in range(1 + i % 3):
                start = at + (i % 20 + 10 * n) * 60 * 10**9
                span_id = next(span_ids)
                spans.append(
                    Span(
                        trace_id=(0xF1EE7000000 + span_id).to_bytes(16, "big"),
                        span_id=span_id.to_bytes(8, "big"),
                        name="GET /",
                        kind=SERVER,
                        start_time_unix_nano=start,
                        end_time_unix_nano=start + 10 * MS,
                        status=ERROR if i % 5 == 0 and n == 0 else None,
                    )
                )
    return request


@pytest.fixture(scope="module")
def fleet(loaded: InProcess) -> InProcess:
    """``loaded`` plus the SMALL and FLEET services, through the OTLP/HTTP receiver."""
    _export(loaded, _fleet_traces())
    return loaded


def _window(at_ns: int) -> str:
    """The query string of the hour from ``at_ns``, in unix milliseconds."""
    return f"start={at_ns // 10**6}&end={(at_ns + HOUR_NS) // 10**6}"


def _home_queries(server: InProcess, query: str) -> tuple[list[str], str]:
    """The store queries made while ``/?query`` renders, and the page: ``query_arrow`` is wrapped
    to record the calls whose stack passes through the Services pages (the server's own background
    work, SLO evaluation and roll-ups, queries the same backend meanwhile)."""
    backend = server.backend
    real = backend.query_arrow
    made: list[str] = []

    def counting(sql: str, params: dict | None = None):  # noqa: ANN202
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == pages_services.__file__:
                made.append(sql)
                break
            frame = frame.f_back
        return real(sql, params)

    backend.query_arrow = counting
    try:
        reply = httpx.get(f"{server.api}/?{query}", headers={"Accept": "text/html"}, timeout=60)
    finally:
        del backend.query_arrow
    assert reply.status_code == 200, reply.text
    return made, reply.text


def test_the_home_page_makes_the_same_few_store_queries_for_5_services_as_for_300(fleet: InProcess) -> None:
    small, small_html = _home_queries(fleet, _window(SMALL_AT))
    large, large_html = _home_queries(fleet, _window(FLEET_AT))
    assert small_html.count('<svg class="spark"') == SMALL
    assert large_html.count('<svg class="spark"') == pages_services.PAGE_SIZE  # the first page
    # A fixed number: the page of services, every sparkline of it in one grouped query, the open
    # incidents, their acknowledgements and the SLOs' newest evaluations.
    assert 1 <= len(small) <= 5, small
    assert len(large) == len(small), (len(small), len(large))


def test_the_grouped_sparklines_draw_what_each_services_own_series_gives(fleet: InProcess) -> None:
    """The one query for all sparklines agrees with ``red_series``, the per-service query it replaces."""
    start_ns, end_ns = FLEET_AT, FLEET_AT + HOUR_NS
    step = pages_services._step_ns(end_ns - start_ns, pages_services.SPARK_POINTS)
    names = [_fleet_name(i) for i in (0, 1, 2, 5, 299)] + ["no-such-service"]
    rates = red.request_rates(fleet.backend, names, start_ns, end_ns, step)
    html = httpx.get(
        f"{fleet.api}/?{_window(FLEET_AT)}&sort=requests&page=2", headers={"Accept": "text/html"}
    ).text
    for name in names:
        series = red.red_series(fleet.backend, name, None, start_ns, end_ns, step)
        own = [(p.time_s, p.stats.rate, p.stats.error_rate) for p in series.points]
        assert [(p.time_s, p.rate, p.error_rate) for p in rates[name]] == own
    assert sum(p.requests for p in rates[_fleet_name(2)]) == 3
    assert sum(p.errors for p in rates[_fleet_name(5)]) == 1
    # Fleet service 0 (one request, an error) is among the quietest: on page 2, drawn from its series.
    drawn = pages_services.sparkline(rates[_fleet_name(0)])
    row = re.search(r'<tr data-service="fleet-000">.*?</tr>', html, re.S).group(0)
    assert f'class="spark-rate" points="{drawn.rate}"' in row
    assert f'class="spark-errors" points="{drawn.errors}"' in row and drawn.has_errors


def test_past_200_services_the_table_pages_with_links_that_work_without_javascript(
    fleet: InProcess, browser
) -> None:  # noqa: ANN001
    # Worst error ratio first (one error in every fifth service), then busiest, then by name.
    def key(name: str) -> tuple[float, int, str]:
        i = int(name[-3:])
        requests, errors = 1 + i % 3, int(i % 5 == 0)
        return (-errors / requests, -requests, name)

    expected = sorted((_fleet_name(i) for i in range(FLEET)), key=key)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{fleet.api}/?{_window(FLEET_AT)}")
        names = page.locator("table.services tbody tr td.name")
        first = names.all_inner_texts()
        assert first == expected[: pages_services.PAGE_SIZE]
        assert "300 services" in page.locator("main p.muted").first.inner_text()
        assert page.locator("nav.pager a.prev").count() == 0
        with page.expect_navigation():
            page.locator("nav.pager a.next").click()
        assert "page=2" in page.url and _window(FLEET_AT) in page.url  # the range is kept
        second = names.all_inner_texts()
        assert second == expected[pages_services.PAGE_SIZE :]  # the rest: no overlap, none skipped
        assert page.locator("table.services svg.spark").count() == FLEET - pages_services.PAGE_SIZE
        assert "Page 2 of 2" in page.locator("nav.pager").inner_text()
        assert page.locator("nav.pager a.next").count() == 0
        screenshot(page, "services-page-2")
        with page.expect_navigation():
            page.locator("nav.pager a.prev").click()
        assert "page=" not in page.url  # page 1 is the plain URL
        assert names.all_inner_texts() == first
    finally:
        context.close()
    # A page past the end, and a page that is no number, are HTML error pages.
    html = {"Accept": "text/html"}
    past = httpx.get(f"{fleet.api}/?{_window(FLEET_AT)}&page=3", headers=html)
    assert past.status_code == 404 and "No such page" in past.text
    for bad in ("0", "-1", "two", "1.5"):
        reply = httpx.get(f"{fleet.api}/?page={bad}", headers=html)
        assert reply.status_code == 400 and "page" in reply.text, bad
    # Fewer than a page: no pager at all.
    small = httpx.get(f"{fleet.api}/?{_window(SMALL_AT)}", headers=html).text
    assert 'class="pager"' not in small and "5 services" in small
