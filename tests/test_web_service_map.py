"""The service map page (``/map``) in real Chromium over a real in-process server.

Spans are made with the OpenTelemetry SDK (a tracer provider per service, explicit times) and sent
by its OTLP/HTTP exporter. The shop, over 20 minutes from 25 minutes ago, one trace per request i in
0..39, each service's SERVER span a child of its caller's:

    web -> checkout (ERROR for i == 0) -> pay (ERROR for even i)
    web -> catalog;  pay -> checkout "POST /callback" for i % 4 == 0 (a cycle);  EVIL -> catalog

So web 0 errors in 40 requests (ok), checkout 1 in 50 (2.00%: warn), pay 20 in 40 (50%: bad).

The fleet, two days ago and viewed with start/end: 200 services svc-000..svc-199 in a tree, each
svc-i (i >= 1) called by svc-(i-1)//5 in 1 + i % 3 traces; only the quiet leaves in ERRING fail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import InProcess, in_process, screenshot
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from ui import pages_map

MS = 10**6
MINUTE = 60 * 10**9
BASE = (time.time_ns() // MINUTE - 25) * MINUTE
EVIL = "<script>alert(1)</script>"
SHOP = {"web", "checkout", "pay", "catalog", EVIL}
FLEET, ERRING = 200, (150, 160, 170, 180, 190)
FLEET_AT = BASE - 2 * 86_400 * 10**9
FLEET_WINDOW = f"start={FLEET_AT // 10**6}&end={(FLEET_AT + 60 * MINUTE) // 10**6}"
AXE = Path(__file__).parent / "data" / "axe" / "axe.min.js"


class Spans:
    """Tracer providers per service, all ending their spans into one in-memory list."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.tracers: dict[str, trace.Tracer] = {}

    def tracer(self, service: str) -> trace.Tracer:
        if service not in self.tracers:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(self.memory))
            self.tracers[service] = provider.get_tracer("test_web_service_map")
        return self.tracers[service]

    def span(  # noqa: PLR0913
        self,
        service: str,
        name: str,
        start: int,
        ms: int,
        parent: trace.Span | None = None,
        error: bool = False,
    ) -> trace.Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer(service).start_span(name, context=context, kind=SpanKind.SERVER, start_time=start)
        if error:
            span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=start + ms * MS)
        return span

    def send(self, otlp: str) -> None:
        spans: list[ReadableSpan] = list(self.memory.get_finished_spans())
        exporter = OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=30)
        for i in range(0, len(spans), 1000):
            assert exporter.export(spans[i : i + 1000]) == SpanExportResult.SUCCESS
        exporter.shutdown()


def _shop(spans: Spans) -> None:
    for i in range(40):
        start = BASE + i * 30 * 10**9
        # Parents are ended before their children here; the times, not the order, make the tree.
        web = spans.span("web", "GET /", start, 100)
        checkout = spans.span("checkout", "POST /checkout", start + 2 * MS, 50, web, error=i == 0)
        pay = spans.span("pay", "POST /charge", start + 4 * MS, 20, checkout, error=i % 2 == 0)
        spans.span("catalog", "GET /items", start + 3 * MS, 10, web)
        if i % 4 == 0:
            spans.span("checkout", "POST /callback", start + 8 * MS, 5, pay)
    for i in range(5):
        evil = spans.span(EVIL, '"><img src=x onerror=alert(2)>', BASE + (i * 60 + 20) * 10**9, 5)
        spans.span("catalog", "GET /items", BASE + (i * 60 + 20) * 10**9 + MS, 2, evil)


def _name(i: int) -> str:
    return f"svc-{i:03d}"


def _fleet(spans: Spans) -> None:
    for i in range(1, FLEET):
        for n in range(1 + i % 3):
            start = FLEET_AT + ((i % 50) + n) * MINUTE
            caller = spans.span(_name((i - 1) // 5), "GET /", start, 20)
            spans.span(_name(i), "GET /", start + MS, 10, caller, error=i in ERRING and n == 0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("web-service-map")) as running:
        spans = Spans()
        _shop(spans)
        _fleet(spans)
        spans.send(running.otlp)
        running.drain()
        yield running


def _nodes(page) -> dict[str, str]:  # noqa: ANN001
    """Service name -> class of every node drawn."""
    return page.eval_on_selector_all(
        "svg.map a.node",
        "els => Object.fromEntries(els.map(a => [a.dataset.service, a.getAttribute('class')]))",
    )


def _edges(page) -> set[tuple[str, str]]:  # noqa: ANN001
    pairs = page.eval_on_selector_all(
        "svg.map a.edge", "els => els.map(a => [a.dataset.caller, a.dataset.callee])"
    )
    return {tuple(p) for p in pairs}


def test_services_are_drawn_as_linked_nodes_coloured_by_their_error_ratio(
    server: InProcess,
    page,  # noqa: ANN001
) -> None:
    page.goto(f"{server.api}/map?last=1h")
    nodes = _nodes(page)
    assert set(nodes) == SHOP
    assert "node-ok" in nodes["web"].split() and "node-ok" in nodes["catalog"].split()
    assert "node-warn" in nodes["checkout"].split()
    assert "node-bad" in nodes["pay"].split()
    # The colours are the theme's: the dot's computed fill is the colour of --ok, --warn or --bad.
    colours = page.evaluate(
        """() => {
          const probe = document.createElement('span');
          document.body.append(probe);
          const of = v => { probe.style.color = `var(${v})`; return getComputedStyle(probe).color; };
          const out = {ok: of('--ok'), warn: of('--warn'), bad: of('--bad')};
          probe.remove();
          for (const a of document.querySelectorAll('svg.map a.node')) {
            out[a.dataset.service] = getComputedStyle(a.querySelector('.node-dot')).fill;
          }
          return out;
        }"""
    )
    assert len({colours["ok"], colours["warn"], colours["bad"]}) == 3
    assert colours["pay"] == colours["bad"] and colours["checkout"] == colours["warn"]
    assert colours["web"] == colours["ok"]
    # Each node links to its service page over the same range, and is named by its numbers.
    pay = page.locator('svg.map a.node[data-service="pay"]')
    assert pay.get_attribute("href") == "/services/pay?last=1h"
    assert pay.get_attribute("aria-label") == "pay: 0.01 req/s · 50.00% errors (40 requests, 20 failed)"
    assert "50.00% errors" in pay.locator("text.node-stats").text_content()
    # Callers stand left of their callees.
    x = {
        name: float(page.locator(f'svg.map a.node[data-service="{name}"] rect').get_attribute("x"))
        for name in SHOP
    }
    assert x["web"] < x["checkout"] < x["pay"] and x["web"] < x["catalog"]
    # The markup-named service is text in the drawing: nothing ran, no element was made of it.
    evil = page.locator(f'svg.map a.node[data-service="{EVIL}"]')
    assert evil.locator("text.node-name").text_content() == EVIL
    # A name longer than its box is clipped at the box's edge.
    box, label = (evil.locator(s).evaluate("e => e.getBoundingClientRect().right") for s in ("rect", "svg"))
    assert label < box
    assert page.locator("svg.map script, svg.map img").count() == 0
    assert page.problems == []
    screenshot(page, "service-map")
    with page.expect_navigation():
        pay.click()
    assert page.url.endswith("/services/pay?last=1h")


def test_calls_are_drawn_as_linked_edges_as_wide_as_their_rate_and_dashed_with_errors(
    server: InProcess,
    page,  # noqa: ANN001
) -> None:
    page.goto(f"{server.api}/map")
    assert _edges(page) == {
        ("web", "checkout"),
        ("web", "catalog"),
        ("checkout", "pay"),
        ("pay", "checkout"),
        (EVIL, "catalog"),
    }

    def edge(caller: str, callee: str):  # noqa: ANN202
        return page.locator(f'svg.map a.edge[data-caller="{caller}"][data-callee="{callee}"]')

    bad, fine, quiet = edge("checkout", "pay"), edge("web", "catalog"), edge(EVIL, "catalog")
    assert (
        "edge-bad" in bad.get_attribute("class").split() and "edge-ok" in fine.get_attribute("class").split()
    )
    assert (
        bad.locator("title").text_content()
        == "checkout → pay: 0.01 calls/s, 50.00% errors (40 calls, 20 failed)"
    )
    style = bad.locator(".edge-line").evaluate(
        "p => [getComputedStyle(p).strokeDasharray, getComputedStyle(p).stroke]"
    )
    assert style[0] != "none"
    assert fine.locator(".edge-line").evaluate("p => getComputedStyle(p).strokeDasharray") == "none"
    assert style[1] != fine.locator(".edge-line").evaluate("p => getComputedStyle(p).stroke")
    # 40 calls draw a wider line than 5.
    width = {
        name: float(e.locator(".edge-line").get_attribute("stroke-width"))
        for name, e in (("fine", fine), ("quiet", quiet))
    }
    assert width["fine"] > width["quiet"] >= pages_map.MIN_EDGE_WIDTH
    # The callback closes a cycle: drawn backwards, from pay to checkout.
    assert "reversed" in edge("pay", "checkout").get_attribute("class").split()
    # An edge links to the callee's traces, to its failing ones when it has errors.
    assert bad.get_attribute("href") == "/traces?service=pay&status=error&last=1h"
    assert fine.get_attribute("href") == "/traces?service=catalog&last=1h"
    # The text alternative: the same calls as a table, with the same numbers.
    rows = page.locator("table.map-edges tbody tr")
    assert rows.count() == 5
    row = page.locator('table.map-edges tr[data-caller="checkout"][data-callee="pay"] td')
    assert row.all_inner_texts()[:6] == ["checkout", "pay", "40", "0.01", "20", "50.00%"]
    # A real click on the middle of the line (a level line has an empty box: no locator click).
    middle = bad.locator(".edge-line").evaluate(
        """p => { const at = p.getPointAtLength(p.getTotalLength() / 2);
                  const m = p.getScreenCTM(); return [m.a * at.x + m.e, m.d * at.y + m.f]; }"""
    )
    with page.expect_navigation():
        page.mouse.click(*middle)
    assert "/traces?" in page.url and "status=error" in page.url
    assert page.problems == []


def test_focus_shows_the_service_and_its_neighbours_only(server: InProcess, page) -> None:  # noqa: ANN001
    page.goto(f"{server.api}/map?focus=catalog")
    assert set(_nodes(page)) == {"catalog", "web", EVIL}
    assert _edges(page) == {("web", "catalog"), (EVIL, "catalog")}
    assert "focus" in _nodes(page)["catalog"].split()
    assert page.locator("table.map-edges tbody tr").count() == 2
    assert page.locator("h1").inner_text() == "Map around catalog"
    # Two hops: web's other callee too, but not pay (three hops away).
    page.goto(f"{server.api}/map?focus=catalog&depth=2")
    assert set(_nodes(page)) == {"catalog", "web", EVIL, "checkout"}
    # The range picker keeps the focus.
    with page.expect_navigation():
        page.locator(".range a", has_text="6h").click()
    assert "focus=catalog" in page.url and "depth=2" in page.url and "last=6h" in page.url
    # The service page links to the map around it.
    page.goto(f"{server.api}/services/pay?last=6h")
    with page.expect_navigation():
        page.get_by_role("link", name="Map around this service").click()
    assert page.url.endswith("/map?focus=pay&last=6h")
    assert set(_nodes(page)) == {"pay", "checkout"}
    assert page.problems == []


def test_an_unknown_focus_or_depth_says_what_is_wrong(server: InProcess) -> None:
    html = {"Accept": "text/html"}
    unknown = httpx.get(f"{server.api}/map", params={"focus": "nope"}, headers=html)
    assert unknown.status_code == 200 and "No service named nope has requests or calls" in unknown.text
    assert "<svg" not in unknown.text
    for bad in ("0", "3", "x"):
        reply = httpx.get(f"{server.api}/map", params={"depth": bad}, headers=html)
        assert reply.status_code == 400 and "depth" in reply.text, bad
    empty = httpx.get(f"{server.api}/map?start=2001-01-01T00:00:00Z&end=2001-01-01T01:00:00Z", headers=html)
    assert empty.status_code == 200 and "No service calls another in this range" in empty.text


def test_two_hundred_services_draw_the_most_significant_and_offer_every_one_as_a_focus(
    server: InProcess,
    page,  # noqa: ANN001
) -> None:
    page.goto(f"{server.api}/map?{FLEET_WINDOW}")
    nodes = _nodes(page)
    assert len(nodes) == pages_map.MAX_NODES
    # The failing leaves, quiet as they are, come first; then the busiest (inner services, which call).
    assert {_name(i) for i in ERRING} <= set(nodes)
    assert all("node-bad" in nodes[_name(i)].split() for i in ERRING)
    assert _name(0) in nodes and _name(199) not in nodes
    # Only calls between drawn services are drawn, and listed.
    assert all(a in nodes and b in nodes for a, b in _edges(page))
    assert page.locator("table.map-edges tbody tr").count() == len(_edges(page))
    note = page.locator(".map-note").inner_text()
    assert f"Showing {pages_map.MAX_NODES} of {FLEET} services" in note
    options = page.eval_on_selector_all("#map-services option", "els => els.map(o => o.value)")
    assert sorted(options) == [_name(i) for i in range(FLEET)]
    screenshot(page, "service-map-200")
    # Focus from the list: svc-001, its caller and its five callees.
    page.locator("#map-focus").fill(_name(1))
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    assert "focus=svc-001" in page.url and FLEET_WINDOW.split("&")[0] in page.url
    assert set(_nodes(page)) == {_name(i) for i in (0, 1, 6, 7, 8, 9, 10)}
    assert page.locator(".map-note").count() == 0
    # On a narrow screen the drawing keeps a readable size and scrolls sideways.
    page.set_viewport_size({"width": 420, "height": 800})
    page.goto(f"{server.api}/map?{FLEET_WINDOW}")
    scroll = page.locator(".map-scroll").evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert scroll[0] > scroll[1] + 100
    assert page.locator("svg.map").get_attribute("viewBox").startswith("0 0 ")
    assert page.problems == []


def test_the_map_works_without_javascript(server: InProcess, browser) -> None:  # noqa: ANN001
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.api}/map")
        assert set(_nodes(page)) == SHOP
        assert page.locator("svg.map a.edge").count() == 5
        page.locator("#map-focus").fill("pay")
        with page.expect_navigation():
            page.get_by_role("button", name="Show").click()
        assert "focus=pay" in page.url and "last=1h" in page.url
        assert set(_nodes(page)) == {"pay", "checkout"}
        with page.expect_navigation():
            page.locator('svg.map a.node[data-service="checkout"]').click()
        assert page.url.endswith("/services/checkout?last=1h")
    finally:
        context.close()


@pytest.mark.parametrize("query", ["last=1h", "focus=checkout&depth=2", FLEET_WINDOW])
def test_axe_finds_no_accessibility_violation_on_the_map(server: InProcess, page, query: str) -> None:  # noqa: ANN001
    page.goto(f"{server.api}/map?{query}")
    # Evaluated over the DevTools protocol, which the page's Content-Security-Policy does not govern.
    page.evaluate(AXE.read_text())
    found = page.evaluate(
        """async () => {
          const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
          const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
          return r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '));
        }"""
    )
    assert found == []
    # Every link of the drawing has a name a screen reader reads.
    names = page.eval_on_selector_all("svg.map a", "els => els.map(a => a.getAttribute('aria-label'))")
    assert names and all(names)


def test_the_json_twin_has_the_edges_of_the_page(server: InProcess) -> None:
    html = httpx.get(f"{server.api}/map?last=1h", headers={"Accept": "text/html"}).text
    json_url = re.search(r'<a class="json" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert json_url.startswith("/api/v1/dependencies?start=")
    edges = httpx.get(server.api + json_url).json()["edges"]
    assert {(e["caller"], e["callee"]) for e in edges} == {
        ("web", "checkout"),
        ("web", "catalog"),
        ("checkout", "pay"),
        ("pay", "checkout"),
        (EVIL, "catalog"),
    }


def test_significance_puts_errors_first_then_volume() -> None:
    activity = {
        "busy": pages_map.Activity(requests=100, errors=0, calls=50),
        "quiet-failing": pages_map.Activity(requests=2, errors=1, calls=0),
        "middle": pages_map.Activity(requests=10, errors=0, calls=0),
        "caller": pages_map.Activity(requests=0, errors=0, calls=20),
    }
    assert pages_map.significant(activity, 3) == ["quiet-failing", "busy", "caller"]
    assert pages_map.significant(activity, 10) == ["quiet-failing", "busy", "caller", "middle"]
    edges = [{"caller": "a", "callee": "b"}, {"caller": "b", "callee": "c"}, {"caller": "d", "callee": "c"}]
    assert pages_map.neighbourhood(edges, "b", 1) == {"a", "b", "c"}
    assert pages_map.neighbourhood(edges, "b", 2) == {"a", "b", "c", "d"}
    assert [pages_map.health(r) for r in (None, 0.0, 0.0099, 0.01, 0.049, 0.05, 1.0)] == [
        "idle",
        "ok",
        "ok",
        "warn",
        "warn",
        "bad",
        "bad",
    ]
