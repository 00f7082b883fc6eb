"""Trace search, trace view, log search and correlation pages in real Chromium, over telemetry sent
through the real OpenTelemetry SDK and its OTLP/HTTP exporters."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import ARTIFACTS, InProcess, in_process, screenshot, wait_until
from opentelemetry import trace as otel_trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, Status, StatusCode, TraceFlags

from ui import explore_pages

MS = 10**6
NOW = time.time_ns()
BASE = NOW - 10 * 60_000 * MS  # the small traces, inside the default last hour
BULK_BASE = NOW - 20 * 60_000 * MS
CORRELATION = "order-7f3a"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
BULK_CHILDREN, BULK_GRANDCHILDREN = 99, 100  # 1 + 99 + 99 * 100 = 10,000 spans


class Telemetry:
    """One TracerProvider and LoggerProvider per service, batching to the server's OTLP/HTTP port."""

    def __init__(self, otlp: str) -> None:
        self.otlp = otlp
        self.tracers: dict[str, tuple[TracerProvider, Any]] = {}
        self.loggers: dict[str, tuple[LoggerProvider, Any]] = {}

    def _resource(self, service: str) -> Resource:
        return Resource.create(
            {"service.name": service, "service.version": "2.1.0", "host.name": f"{service}-1"}
        )

    def tracer(self, service: str) -> Any:
        if service not in self.tracers:
            provider = TracerProvider(resource=self._resource(service))
            exporter = OTLPSpanExporter(endpoint=f"{self.otlp}/v1/traces")
            provider.add_span_processor(
                BatchSpanProcessor(
                    exporter, max_queue_size=20_000, max_export_batch_size=1000, schedule_delay_millis=200
                )
            )
            self.tracers[service] = (provider, provider.get_tracer("web-traces-test", "1.0"))
        return self.tracers[service][1]

    def logger(self, service: str) -> Any:
        if service not in self.loggers:
            provider = LoggerProvider(resource=self._resource(service))
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    OTLPLogExporter(endpoint=f"{self.otlp}/v1/logs"), schedule_delay_millis=200
                )
            )
            self.loggers[service] = (provider, provider.get_logger("web-traces-test"))
        return self.loggers[service][1]

    def span(
        self,
        service: str,
        name: str,
        start_ms: float,
        end_ms: float,
        parent: Any = None,
        base: int = BASE,
        error: bool = False,
        **kwargs: Any,
    ) -> Any:
        """A finished span at explicit times (ms after ``base``); returns its SpanContext."""
        context = otel_trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        span = self.tracer(service).start_span(
            name, context=context, start_time=base + int(start_ms * MS), **kwargs
        )
        if error:
            span.set_status(Status(StatusCode.ERROR, "card declined"))
        span.end(end_time=base + int(end_ms * MS))
        return span.get_span_context()

    def log(
        self, service: str, at_ms: float, body: Any, span: Any = None, severity: str = "INFO", **attrs: Any
    ) -> None:
        number = getattr(SeverityNumber, severity)
        self.logger(service).emit(
            LogRecord(
                timestamp=BASE + int(at_ms * MS),
                trace_id=span.trace_id if span else 0,
                span_id=span.span_id if span else 0,
                trace_flags=TraceFlags(1) if span else None,
                severity_number=number,
                severity_text=severity,
                body=body,
                attributes=attrs,
            )
        )

    def shutdown(self) -> None:
        for provider, _ in [*self.tracers.values(), *self.loggers.values()]:
            provider.force_flush()
            provider.shutdown()


def hexid(context: Any) -> tuple[str, str]:
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@dataclass
class Shop:
    checkout: str = ""
    health: str = ""
    slow: str = ""
    xss: str = ""
    bulk: str = ""
    spans: dict[str, str] | None = None  # name -> span id, of the checkout trace
    bulk_first_child: str = ""
    bulk_grandchild: str = ""


def send_shop(t: Telemetry) -> Shop:
    shop = Shop(spans={})
    corr = {"correlation.id": CORRELATION}
    # checkout: gateway -> orders -> (inventory, payments -> db), gateway -> email.
    root = t.span(
        "gateway",
        "GET /checkout",
        0,
        340,
        kind=SpanKind.SERVER,
        attributes={"http.route": "/checkout", **corr},
    )
    orders = t.span("orders", "POST /orders", 10, 320, root, kind=SpanKind.SERVER, attributes=corr)
    reserve = t.span("inventory", "reserve", 15, 60, orders, kind=SpanKind.SERVER)
    charge_span = t.tracer("payments").start_span(
        "charge",
        context=otel_trace.set_span_in_context(NonRecordingSpan(orders)),
        kind=SpanKind.SERVER,
        start_time=BASE + 70 * MS,
        attributes={
            "payment.attempt": 3,
            "payment.amount": 12.5,
            "payment.retry": True,
            "payment.card": "visa",
            "tags": ("a", "b"),
            **corr,
        },
    )
    charge_span.add_event("retry", {"attempt": 2}, timestamp=BASE + 150 * MS)
    charge_span.set_status(Status(StatusCode.ERROR, "card declined"))
    charge_span.end(end_time=BASE + 300 * MS)
    charge = charge_span.get_span_context()
    db = t.span(
        "payments", "db.query", 80, 120, charge, kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}
    )
    health = t.span("gateway", "GET /health", 400, 405, kind=SpanKind.SERVER)
    email = t.span(
        "email", "send receipt", 200, 250, root, kind=SpanKind.CONSUMER, links=[Link(health, {"why": "test"})]
    )
    shop.checkout = hexid(root)[0]
    shop.health = hexid(health)[0]
    for name, ctx in [
        ("GET /checkout", root),
        ("POST /orders", orders),
        ("reserve", reserve),
        ("charge", charge),
        ("db.query", db),
        ("send receipt", email),
    ]:
        shop.spans[name] = hexid(ctx)[1]
    t.log("gateway", 1, "checkout started", root, "INFO", **corr)
    t.log("payments", 290, "charge declined", charge, "ERROR", **{"payment.attempt": 3, **corr})
    t.log("orders", 315, "order failed", orders, "WARN", **corr)
    t.log("orders", 500, "an unrelated log without a trace", None, "DEBUG")

    slow = t.span(
        "orders",
        "GET /orders",
        600,
        1800,
        kind=SpanKind.SERVER,
        attributes={"customer.tier": "gold", "http.response.status_code": 200},
    )
    shop.slow = hexid(slow)[0]

    xss = t.span(
        "xss-svc",
        XSS_SCRIPT,
        900,
        950,
        kind=SpanKind.SERVER,
        attributes={"note.script": XSS_SCRIPT, "note.img": XSS_IMG},
    )
    shop.xss = hexid(xss)[0]
    t.log("xss-svc", 920, f"evil {XSS_SCRIPT} {XSS_IMG}", xss, "WARN", **{"note.img": XSS_IMG})
    return shop


def send_bulk(t: Telemetry, shop: Shop) -> None:
    """A 10,000-span trace: a root, 99 children in five services, 100 grandchildren each."""
    root = t.span("bulk-gw", "bulk batch", 0, 800, base=BULK_BASE, kind=SpanKind.SERVER)
    shop.bulk = hexid(root)[0]
    for i in range(BULK_CHILDREN):
        child = t.span(
            f"bulk-{i % 5}", f"step {i}", i * 8, i * 8 + 7.5, root, base=BULK_BASE, attributes={"step": i}
        )
        if i == 0:
            shop.bulk_first_child = hexid(child)[1]
        for j in range(BULK_GRANDCHILDREN):
            at = i * 8 + j * 0.07
            g = t.span(
                f"bulk-{(i + j) % 5}",
                f"item {j}",
                at,
                at + 0.05,
                child,
                base=BULK_BASE,
                kind=SpanKind.CLIENT,
                attributes={"item": j, "batch": f"b{i}"},
            )
            if i == 0 and j == 0:
                shop.bulk_grandchild = hexid(g)[1]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, Shop]]:
    with in_process(tmp_path_factory.mktemp("web-traces")) as server:
        telemetry = Telemetry(server.otlp)
        shop = send_shop(telemetry)
        send_bulk(telemetry, shop)
        telemetry.shutdown()
        server.drain()

        def stored() -> bool:
            reply = httpx.get(f"{server.api}/api/v1/traces/{shop.bulk}", timeout=30)
            logs = httpx.get(f"{server.api}/api/v1/logs", params={"q": "evil"}, timeout=30).json()["logs"]
            return reply.status_code == 200 and len(reply.json()["spans"]) == 10_000 and bool(logs)

        wait_until(stored, timeout=60)
        yield server, shop


def trace_ids(page: Any) -> set[str]:
    return set(page.locator("tr.trace").evaluate_all("rows => rows.map(r => r.dataset.traceId)"))


# -- trace search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("service=gateway", {"checkout", "health"}),
        ("service=orders", {"checkout", "slow"}),
        ("service=payments&operation=charge", {"checkout"}),
        ("attr=customer.tier%3Dgold", {"slow"}),
        ("attr=payment.attempt%3E%3D3&attr=payment.card%3Dvisa", {"checkout"}),
        ("min_duration_ms=1000", {"slow"}),
        ("service=gateway&max_duration_ms=10", {"health"}),
        ("status=error", {"checkout"}),
    ],
)
def test_trace_search_finds_the_expected_traces(srv, page, query: str, expected: set[str]) -> None:  # noqa: ANN001
    server, shop = srv
    response = page.goto(f"{server.api}/traces?{query}")
    assert response is not None and response.status == 200
    assert trace_ids(page) == {getattr(shop, name) for name in expected}
    # The JSON twin answers the same search.
    twin = page.locator("footer a.json").get_attribute("href")
    assert twin and twin.startswith("/api/v1/traces?")
    api = httpx.get(server.api + twin, timeout=30).json()["traces"]
    assert {t["trace_id"] for t in api} == trace_ids(page)
    assert page.problems == []


def test_the_search_form_puts_everything_in_the_url(srv, page, browser) -> None:  # noqa: ANN001
    server, shop = srv
    page.goto(f"{server.api}/traces")
    page.fill("input[name=service]", "orders")
    page.fill("input[name=min_duration_ms]", "1000")
    page.locator("input[name=attr]").last.fill("customer.tier=gold")
    page.select_option("select[name=last]", "6h")
    with page.expect_navigation():
        page.click("form.search button[type=submit]")
    url = page.url
    for part in ("service=orders", "min_duration_ms=1000", "attr=customer.tier%3Dgold", "last=6h"):
        assert part in url
    assert trace_ids(page) == {shop.slow}
    row = page.locator("tr.trace").first
    assert "GET /orders" in row.inner_text() and "1.20 s" in row.inner_text()
    assert page.locator("figure.scatter circle").count() == 1
    screenshot(page, "traces-search")
    # A fresh browser context (no cookies, no history) gets the same answer from the link.
    permalink = page.locator("a.permalink").get_attribute("href")
    other = browser.new_context()
    try:
        fresh = other.new_page()
        for target in (url, server.api + permalink):
            fresh.goto(target)
            assert trace_ids(fresh) == {shop.slow}
            assert fresh.locator("input[name=service]").input_value() == "orders"
            assert fresh.locator("input[name=attr]").first.input_value() == "customer.tier=gold"
            assert fresh.locator("select[name=last]").input_value() == "6h"
    finally:
        other.close()
    # Clicking the result opens the trace.
    with page.expect_navigation():
        page.locator("tr.trace a").first.click()
    assert page.url.endswith(f"/traces/{shop.slow}")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("min_duration_ms=abc", "min_duration_ms"),
        ("max_duration_ms=-1", "max_duration_ms"),
        ("attr=nonsense", "attr"),
        ("status=broken", "status"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
        ("min_duration_ms=50&max_duration_ms=10", "max_duration_ms"),
        ("start=yesterday", "start"),
        ("last=2y", "last"),
    ],
)
def test_a_bad_search_parameter_is_named(srv, page, query: str, named: str) -> None:  # noqa: ANN001
    server, _ = srv
    response = page.goto(f"{server.api}/traces?{query}")
    assert response is not None and response.status == 400
    assert named in page.locator("main").inner_text()


# -- the trace view ----------------------------------------------------------------------------

TREE = ["GET /checkout", "POST /orders", "reserve", "charge", "db.query", "send receipt"]
SERVICES = ["gateway", "orders", "inventory", "payments", "payments", "email"]
DEPTHS = [0, 1, 2, 2, 3, 1]


def rows_in_view(page: Any) -> list[str]:
    """Ids of the waterfall rows in the page, top to bottom (only those near the screen exist)."""
    return page.locator("#waterfall .row").evaluate_all(
        "rs => rs.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top)).map(r => r.id.slice(5))"
    )


def test_the_trace_view_shows_the_tree_critical_path_details_and_logs(srv, page) -> None:  # noqa: ANN001
    server, shop = srv
    spans = shop.spans
    response = page.goto(f"{server.api}/traces/{shop.checkout}")
    assert response is not None and response.status == 200
    page.wait_for_selector("#waterfall[data-ready=true]")
    assert rows_in_view(page) == [spans[n] for n in TREE]
    rows = page.locator("#waterfall .row")
    indents = rows.evaluate_all("rs => rs.map(r => parseInt(r.querySelector('.name').style.paddingLeft))")
    assert sorted(indents) == sorted(d * 14 for d in DEPTHS)
    assert page.locator(f"#span-{spans['db.query']} .name").evaluate("e => e.style.paddingLeft") == "42px"
    assert sorted(page.locator("#waterfall .row .svc").all_inner_texts()) == sorted(SERVICES)
    # One distinct colour per service of the trace, the same on every row of the service.
    colour_of = {
        name: page.locator(f"#span-{spans[name]} .bar").evaluate("b => b.style.getPropertyValue('--c')")
        for name in TREE
    }
    assert colour_of["charge"] == colour_of["db.query"]
    assert len({colour_of[n] for n in TREE}) == len(set(SERVICES))
    # Bars are placed by time: charge starts at 70 of 340 ms and lasts 230 ms.
    style = page.locator(f"#span-{spans['charge']} .bar").get_attribute("style")
    left, width = (float(x) for x in re.findall(r"(?:left|width): ([\d.]+)%", style))
    assert abs(left - 70 / 340 * 100) < 0.01 and abs(width - 230 / 340 * 100) < 0.01

    critical = page.locator("#waterfall .row.critical").evaluate_all("rs => rs.map(r => r.id.slice(5))")
    assert sorted(critical) == sorted(spans[n] for n in ("GET /checkout", "POST /orders", "charge", "db.query"))
    assert page.locator(f"#span-{spans['charge']} .cp").is_visible()
    assert page.locator(f"#span-{spans['reserve']} .cp").count() == 0

    # Collapsing orders hides its subtree, not its sibling; expanding shows it again.
    toggle = page.locator(f"#span-{spans['POST /orders']} .toggle")
    toggle.click()
    assert rows_in_view(page) == [spans[n] for n in ("GET /checkout", "POST /orders", "send receipt")]
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.locator(".detail-host").count() == 0  # the toggle does not open the detail
    toggle.click()
    assert rows_in_view(page) == [spans[n] for n in TREE]
    # Collapse to depth 2: the root and its children.
    page.select_option("#trace-depth", "2")
    assert rows_in_view(page) == [spans[n] for n in ("GET /checkout", "POST /orders", "send receipt")]
    page.select_option("#trace-depth", "")
    assert len(rows_in_view(page)) == 6

    # Span detail, read from the span's own page: typed attributes, status, events, logs of the span.
    page.locator(f"#span-{spans['charge']} .op-link").click()
    detail = page.locator(".detail-host")
    detail.locator("table.attrs").first.wait_for()
    assert page.url.endswith(f"#span-{spans['charge']}")

    def attribute(key: str) -> list[str]:
        row = detail.locator("table.attrs tr", has=page.locator(f"th:text-is('{key}')")).first
        return row.locator("td").all_inner_texts()[:2]

    assert attribute("payment.attempt") == ["3", "int"]
    assert attribute("payment.amount") == ["12.5", "double"]
    assert attribute("payment.retry") == ["true", "bool"]
    assert attribute("payment.card") == ["visa", "string"]
    assert attribute("tags") == ['["a", "b"]', "array"]
    text = detail.inner_text()
    assert "card declined" in text and "SERVER" in text
    assert "retry" in text and "attempt=2" in text and "+80.0 ms" in text  # event at 150 ms, span at 70 ms
    assert "charge declined" in text
    # The rows below the detail move down under it, not behind it.
    box = detail.bounding_box()
    below = page.locator(f"#span-{spans['db.query']}").bounding_box()
    assert box and below and below["y"] >= box["y"] + box["height"] - 1
    # Opening another span closes the first; its links lead to the linked trace.
    page.locator(f"#span-{spans['send receipt']} .op-link").click()
    page.locator(f".detail-host a[href^='/traces/{shop.health}']").first.wait_for()
    assert page.locator(".detail-host").count() == 1

    # The trace's logs, in time order, with offsets from the trace start.
    logs = page.locator("table.logs tbody tr")
    assert logs.locator("td.body").all_inner_texts() == [
        "checkout started",
        "charge declined",
        "order failed",
    ]
    assert "+290.0 ms" in logs.nth(1).inner_text()
    assert page.locator("table.logs a[href='/correlations/order-7f3a']").count() == 3
    screenshot(page, "trace-view")

    # Find in the trace marks the matches, counts them, and is kept in the URL; clearing it restores.
    page.fill("#trace-search", "reserve")
    page.wait_for_function("() => document.getElementById('trace-search-count').textContent.includes('match')")
    assert page.locator("#trace-search-count").inner_text() == "1 of 6 spans match"
    assert page.locator("#waterfall .row.match").evaluate_all("rs => rs.map(r => r.id.slice(5))") == [
        spans["reserve"]
    ]
    assert "q=reserve" in page.url
    page.fill("#trace-search", "")
    page.wait_for_function("() => document.querySelectorAll('#waterfall .row.dim').length === 0")
    assert "q=" not in page.url
    assert page.problems == []


def test_unknown_and_malformed_trace_ids(srv, page) -> None:  # noqa: ANN001
    server, _ = srv
    response = page.goto(f"{server.api}/traces/{'ab' * 16}")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "Trace not found"
    assert "ab" * 16 in page.locator("main").inner_text()
    response = page.goto(f"{server.api}/traces/not-a-trace")
    assert response is not None and response.status == 400
    assert "32 hex digits" in page.locator("main").inner_text()


def test_a_10000_span_trace_draws_only_the_rows_in_view(srv, page) -> None:  # noqa: ANN001
    server, shop = srv
    response = page.goto(f"{server.api}/traces/{shop.bulk}")
    assert response is not None and response.status == 200
    assert response.headers.get("content-encoding") == "gzip"
    page.wait_for_selector("#waterfall[data-ready=true]", timeout=30_000)
    drawn = page.locator("#waterfall .row").count()
    assert 10 < drawn < 200  # the screen's rows and a margin, not 10,000
    height = page.locator("#waterfall .rows").evaluate("e => e.offsetHeight")
    assert height == 10_000 * 24
    # Collapsing the first child removes its 100 children from the tree's height.
    page.locator(f"#span-{shop.bulk_first_child} .toggle").click()
    page.wait_for_function(
        f"() => document.querySelector('#waterfall .rows').offsetHeight === {(10_000 - BULK_GRANDCHILDREN) * 24}"
    )
    assert page.locator(f"#span-{shop.bulk_grandchild}").count() == 0
    # Find: 99 matches; the first is under the collapsed child, which opens to show it, in view.
    page.fill("#trace-search", "item 42")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#waterfall .row.current') !== null")
    assert page.locator("#trace-search-count").inner_text() == "match 1 of 99 (10000 spans)"
    current = page.locator("#waterfall .row.current")
    assert current.locator(".op").inner_text() == "item 42" and current.is_visible()
    first = current.get_attribute("id")
    page.locator("[data-action=next-match]").click()
    current = page.locator("#waterfall .row.current")
    assert current.get_attribute("id") != first and current.locator(".op").inner_text() == "item 42"
    assert current.is_visible()
    assert "q=item+42" in page.url or "q=item%2042" in page.url
    # Scrolling to the end draws the last rows and drops the first.
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function(f"() => document.getElementById('span-{shop.bulk_first_child}') === null")
    assert page.locator("#waterfall .row").count() < 200
    screenshot_viewport(page, "trace-10k")
    assert page.problems == []


def test_responses_over_1_kb_are_compressed_when_the_client_accepts_it(srv) -> None:  # noqa: ANN001
    server, shop = srv
    for path in (f"/traces/{shop.bulk}", f"/api/v1/traces/{shop.bulk}/outline", f"/jaeger/api/traces/{shop.checkout}"):
        gz = httpx.get(server.api + path, headers={"Accept-Encoding": "gzip", "Accept": "text/html"})
        plain = httpx.get(server.api + path, headers={"Accept-Encoding": "identity", "Accept": "text/html"})
        assert gz.status_code == plain.status_code == 200, path
        assert gz.headers.get("content-encoding") == "gzip", path
        assert "content-encoding" not in plain.headers, path
        if not path.startswith("/traces"):  # a page carries a fresh CSRF token each time
            assert gz.content == plain.content  # httpx decodes: the same body either way
        assert int(gz.headers["content-length"]) < len(plain.content), path
    small = httpx.get(f"{server.api}/healthz", headers={"Accept-Encoding": "gzip"})
    assert small.text == "ok\n" and "content-encoding" not in small.headers


def test_a_span_link_opens_that_span_and_the_minimap_zooms(srv, page) -> None:  # noqa: ANN001
    server, shop = srv
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{server.api}/traces/{shop.bulk}#span-{shop.bulk_grandchild}")
    page.wait_for_selector("#waterfall[data-ready=true]", timeout=30_000)
    page.locator(".detail-host table.attrs").first.wait_for()
    row = page.locator(f"#span-{shop.bulk_grandchild}")
    assert row.is_visible() and "open" in (row.get_attribute("class") or "")
    # Drag across the minimap's first tenth: the axis now spans a tenth of the trace.
    box = page.locator("#minimap").bounding_box()
    assert box
    page.mouse.move(box["x"] + 1, box["y"] + 30)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 10, box["y"] + 30, steps=4)
    page.mouse.up()
    ticks = page.locator("#waterfall .axis .tick").all_inner_texts()
    assert ticks[0].endswith("µs") and ticks[4].endswith(" ms") and 70 < float(ticks[4].split()[0]) < 90
    assert page.locator("[data-action=reset-zoom]").is_visible()
    page.locator("[data-action=reset-zoom]").click()
    assert page.locator("#waterfall .axis .tick").all_inner_texts()[4] == "800.0 ms"
    assert page.problems == []


def screenshot_viewport(page, name: str) -> None:  # noqa: ANN001
    """The viewport only (a full-page screenshot of 10,000 rows is a huge image)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


# -- logs and correlations ---------------------------------------------------------------------


def test_log_search_by_text_and_by_trace_id(srv, page) -> None:  # noqa: ANN001
    server, shop = srv
    page.goto(f"{server.api}/logs?q=declined")
    rows = page.locator("table.logs tbody tr")
    assert rows.locator("td.body").all_inner_texts() == ["charge declined"]
    assert "ERROR" in rows.first.inner_text() and "payment.attempt=3" in rows.first.inner_text()
    screenshot(page, "logs")
    with page.expect_navigation():
        rows.first.locator(f"a[href^='/traces/{shop.checkout}']").click()
    assert f"/traces/{shop.checkout}" in page.url
    assert page.locator(f"#span-{shop.spans['charge']}").is_visible()

    page.goto(f"{server.api}/logs?trace_id={shop.checkout}")
    bodies = page.locator("table.logs td.body").all_inner_texts()
    assert bodies == ["order failed", "charge declined", "checkout started"]  # newest first
    page.goto(f"{server.api}/logs?trace_id={shop.checkout}&severity_min=WARN")
    assert page.locator("table.logs td.body").all_inner_texts() == ["order failed", "charge declined"]
    page.goto(f"{server.api}/logs?service=orders&attr=correlation.id%3D{CORRELATION}")
    assert page.locator("table.logs td.body").all_inner_texts() == ["order failed"]
    with page.expect_navigation():
        page.locator("table.logs a[href='/correlations/order-7f3a']").first.click()
    assert page.url.endswith("/correlations/order-7f3a")
    assert page.problems == []
    response = page.goto(f"{server.api}/logs?trace_id=xyz")
    assert response is not None and response.status == 400
    assert "trace_id" in page.locator(".form-error").inner_text()


def test_a_correlation_across_three_services(srv, page) -> None:  # noqa: ANN001
    server, shop = srv
    response = page.goto(f"{server.api}/correlations/{CORRELATION}")
    assert response is not None and response.status == 200
    spans = page.locator(".timeline .span-item")
    assert spans.evaluate_all("rs => rs.map(r => r.dataset.service)") == ["gateway", "orders", "payments"]
    assert spans.locator("a").all_inner_texts() == ["GET /checkout", "POST /orders", "charge"]
    logs = page.locator(".timeline .log-item")
    assert logs.evaluate_all("rs => rs.map(r => r.dataset.service)") == ["gateway", "payments", "orders"]
    assert logs.locator(".body").all_inner_texts() == ["checkout started", "charge declined", "order failed"]
    # One timeline: spans and logs in time order (span 0 ms, log 1 ms, span 10, span 70, log 290, log 315).
    items = page.locator(".timeline .item")
    assert items.evaluate_all("rs => rs.map(r => r.dataset.service)") == [
        "gateway",
        "gateway",
        "orders",
        "payments",
        "payments",
        "orders",
    ]
    assert items.evaluate_all("rs => rs.map(r => r.classList.contains('log-item'))") == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]
    assert trace_ids(page) == {shop.checkout}
    assert page.locator("table.logs tbody tr").count() == 3
    screenshot(page, "correlation")
    page.goto(f"{server.api}/correlations/no-such-id")
    assert "Nothing carrying this correlation id" in page.locator("main").inner_text()
    assert page.problems == []


# -- escaping, and pages without JavaScript ----------------------------------------------------


def test_telemetry_is_shown_as_text_and_runs_nothing(srv, page) -> None:  # noqa: ANN001
    server, shop = srv
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.api}/traces?service=xss-svc")
    assert page.locator("tr.trace").first.get_by_text(XSS_SCRIPT).is_visible()
    page.goto(f"{server.api}/traces/{shop.xss}")
    page.wait_for_selector("#waterfall[data-ready=true]")
    row = page.locator("#waterfall .row").first
    assert row.locator(".op").inner_text() == XSS_SCRIPT
    row.locator(".op-link").click()
    detail = page.locator(".detail-host")
    detail.locator("table.attrs").first.wait_for()
    assert detail.locator("td", has_text=XSS_IMG).first.is_visible()
    assert detail.locator("td", has_text=XSS_SCRIPT).first.is_visible()
    assert page.locator("#logs ~ table.logs td.body").inner_text() == f"evil {XSS_SCRIPT} {XSS_IMG}"
    screenshot(page, "trace-xss")
    page.goto(f"{server.api}/logs?q=evil")
    assert page.locator("table.logs td.body").inner_text() == f"evil {XSS_SCRIPT} {XSS_IMG}"
    # A search value is put back into the form as text too.
    page.goto(f"{server.api}/logs?q=evil&attr=note.img%3D{quote(XSS_IMG)}")
    assert page.locator("input[name=attr]").first.input_value() == f"note.img={XSS_IMG}"
    assert page.locator("table.logs td.body").count() == 1
    for url in (f"/traces/{shop.xss}", "/logs?q=evil", "/traces?service=xss-svc"):
        page.goto(server.api + url)
        assert page.locator("img").count() == 0
        assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    assert dialogs == []
    assert page.problems == []


def test_search_and_the_trace_view_work_without_javascript(srv, browser) -> None:  # noqa: ANN001
    server, shop = srv
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.api}/traces")
        page.fill("input[name=service]", "gateway")
        with page.expect_navigation():
            page.click("form.search button[type=submit]")
        assert "service=gateway" in page.url
        assert trace_ids(page) == {shop.checkout, shop.health}

        page.goto(f"{server.api}/traces/{shop.checkout}")
        rows = page.locator("#waterfall .row")
        assert rows.count() == 6
        assert all(rows.nth(i).is_visible() for i in range(6))
        assert page.locator(".toggle").count() == 0  # no collapse without the script
        assert not page.locator("#minimap").is_visible()
        assert "charge declined" in page.locator("table.logs").inner_text()
        screenshot(page, "trace-view-nojs")
        # Every span is a link to its own page.
        with page.expect_navigation():
            page.locator(f"#span-{shop.spans['charge']} .op-link").click()
        assert page.url.endswith(f"/traces/{shop.checkout}/spans/{shop.spans['charge']}")
        assert page.locator("#span-detail table.attrs").first.is_visible()
        page.go_back()
        # Find in the trace is a GET form: the server lists the matches.
        page.fill("#trace-search", "reserve")
        with page.expect_navigation():
            page.click("form.trace-tools button[type=submit]")
        assert page.locator("#waterfall .row").count() == 1
        assert "1 of 6 spans match" in page.locator("#trace-search-count").inner_text()
        # A big trace: 500 rows a page, and the next page.
        page.goto(f"{server.api}/traces/{shop.bulk}")
        assert page.locator("#waterfall .row").count() == 500
        with page.expect_navigation():
            page.click(".pager a[rel=next]")
        assert "offset=500" in page.url and page.locator("#waterfall .row").count() == 500
        assert "Rows 501–1000 of 10000" in page.locator(".pager").inner_text()

        page.goto(f"{server.api}/logs")
        page.fill("input[name=q]", "declined")
        with page.expect_navigation():
            page.click("form.search button[type=submit]")
        assert page.locator("table.logs td.body").all_inner_texts() == ["charge declined"]
    finally:
        context.close()


def test_service_colours_are_distinct_for_any_number_of_services() -> None:
    names = [f"svc-{i}" for i in range(200)]
    colours = explore_pages.service_colours(names)
    assert len(set(colours.values())) == 200
    assert explore_pages.service_colours(reversed(names)) == colours  # the order given does not matter
