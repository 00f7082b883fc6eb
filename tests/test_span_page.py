"""The span page (/traces/{trace_id}/spans/{span_id}) and its JSON twin, over telemetry sent through
the real OpenTelemetry SDK (the checkout trace of test_web_traces) and the real Zipkin receiver (a span
with 20,001 tags, one of them 100,000 characters long)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from conftest import InProcess, in_process, screenshot, wait_until
from test_web_traces import BASE, CORRELATION, MS, XSS_IMG, XSS_SCRIPT, Shop, Telemetry, send_shop

from store import traces

ZIPKIN_BASE_US = (time.time_ns() - 5 * 60_000 * MS) // 1000  # five minutes ago, in µs
BIG_TAGS = 20_000
LONG_VALUE = "".join(chr(ord("a") + i % 26) for i in range(100_000))
LONG_KEY = "a.long.value"
WIDE_TAGS = 250  # the browser test's span: just over the page's 200


@dataclass
class Zipkin:
    trace_id: str = "5a" * 16
    root: str = "00000000000000a1"
    big: str = "00000000000000b2"
    wide: str = "00000000000000c3"


@dataclass
class World:
    server: InProcess
    shop: Shop
    zipkin: Zipkin = field(default_factory=Zipkin)


def zipkin_span(z: Zipkin, span_id: str, parent: str | None, name: str, at_ms: int, tags: dict) -> dict:
    span = {
        "traceId": z.trace_id,
        "id": span_id,
        "name": name,
        "kind": "SERVER",
        "timestamp": ZIPKIN_BASE_US + at_ms * 1000,
        "duration": 5000,
        "localEndpoint": {"serviceName": "zipkin-svc"},
        "tags": tags,
    }
    if parent:
        span["parentId"] = parent
    return span


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with in_process(tmp_path_factory.mktemp("span-page")) as server:
        telemetry = Telemetry(server.otlp)
        shop = send_shop(telemetry)
        telemetry.shutdown()
        z = Zipkin()
        big_tags = {f"k{i:06d}": f"v{i}" for i in range(BIG_TAGS)}
        big_tags[LONG_KEY] = LONG_VALUE  # sorts first: the capped page shows it, cut
        spans = [
            zipkin_span(z, z.root, None, "zipkin root", 0, {"root": "yes"}),
            zipkin_span(z, z.big, z.root, "big tags", 10, big_tags),
            zipkin_span(z, z.wide, z.root, "wide", 20, {f"w{i:03d}": str(i) for i in range(WIDE_TAGS)}),
        ]
        reply = httpx.post(f"{server.server.zipkin_url}/api/v2/spans", json=spans, timeout=60)
        assert reply.status_code == 202, reply.text
        server.drain()

        def stored() -> bool:
            checkout = httpx.get(f"{server.api}/api/v1/traces/{shop.checkout}", timeout=30)
            logs = checkout.status_code == 200 and len(checkout.json()["logs"]) == 3
            zip_trace = httpx.get(f"{server.api}/api/v1/traces/{z.trace_id}", timeout=30)
            return logs and zip_trace.status_code == 200 and len(zip_trace.json()["spans"]) == 3

        wait_until(stored, timeout=60)
        yield World(server, shop, z)


class Cells(HTMLParser):
    """The text of every cell of every ``tr`` inside <section id="span-detail">, per table class, and
    the section's whole text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # elements open inside the section
        self.table = ""
        self.rows: dict[str, list[list[str]]] = {}
        self.cell: list[str] | None = None
        self.text: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, text) in the section
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.depth == 0:
            if tag == "section" and a.get("id") == "span-detail":
                self.depth = 1
            return
        if tag not in ("br", "img", "input", "meta", "link"):
            self.depth += 1
        if tag == "table":
            self.table = a.get("class") or ""
            self.rows.setdefault(self.table, [])
        elif tag == "tr":
            self.rows[self.table].append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "a":
            self.href, self.link_text = a.get("href") or "", []

    def handle_endtag(self, tag: str) -> None:
        if self.depth == 0:
            return
        self.depth -= 1
        if tag in ("td", "th") and self.cell is not None:
            self.rows[self.table][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "a" and self.href is not None:
            self.links.append((self.href, "".join(self.link_text).strip()))
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.depth == 0:
            return
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)
        if self.href is not None:
            self.link_text.append(data)


def section(html: str) -> Cells:
    cells = Cells()
    cells.feed(html)
    assert cells.depth == 0 and cells.text, "no closed <section id=span-detail>"
    return cells


def body_rows(cells: Cells, table: str) -> list[list[str]]:
    return [row for row in cells.rows[table] if row != ["Key", "Value", "Kind"]]


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def trace_span(api: str, trace_id: str, span_id: str) -> dict[str, Any]:
    spans = httpx.get(f"{api}/api/v1/traces/{trace_id}", timeout=30).json()["spans"]
    return next(s for s in spans if s["span_id"] == span_id)


# -- the checkout trace ------------------------------------------------------------------------


def test_a_span_page_shows_facts_typed_attributes_events_and_logs(world: World) -> None:
    api, shop = world.server.api, world.shop
    charge, orders = shop.spans["charge"], shop.spans["POST /orders"]
    reply = httpx.get(f"{api}/traces/{shop.checkout}/spans/{charge}")
    assert reply.status_code == 200
    html = reply.text
    cells = section(html)
    text = squash("".join(cells.text))
    # Header: the way back to the trace (at this span's row) and to the parent span's page.
    assert f'href="/traces/{shop.checkout}#span-{charge}"' in html
    assert re.search(r'<h1><span class="svc"[^>]*>payments</span> charge</h1>', html)
    facts = dict(
        zip(re.findall(r"<dt>(.*?)</dt>", html), re.findall(r"<dd[^>]*>(.*?)</dd>", html), strict=True)
    )
    assert facts["Kind"] == "SERVER"
    assert facts["Status"] == "ERROR: card declined"
    assert facts["Duration"] == "230.0 ms"
    assert facts["Span id"] == charge
    assert facts["Scope"] == "web-traces-test 1.0"
    assert facts["Start"].endswith(", +70.0 ms after the trace start")
    assert (
        f'<a class="mono" href="/traces/{shop.checkout}/spans/{orders}">{orders}</a> orders · POST /orders'
        == (facts["Parent"])
    )
    assert facts["Correlation"] == f'<a href="/correlations/{CORRELATION}">{CORRELATION}</a>'
    assert body_rows(cells, "attrs")[:6] == [
        ["correlation.id", CORRELATION, "string"],
        ["payment.amount", "12.5", "double"],
        ["payment.attempt", "3", "int"],
        ["payment.card", "visa", "string"],
        ["payment.retry", "true", "bool"],
        ["tags", '["a", "b"]', "array"],
    ]
    assert "Attributes (6)" in text and "of 6 attributes" not in text  # nothing capped: no cap line
    assert "+80.0 ms retry attempt=2" in text  # event at 150 ms, the span starts at 70 ms
    logs = cells.rows["logs"][1:]
    assert [(row[0], row[1], row[3]) for row in logs] == [("+220.0 ms", "ERROR", "charge declined")]
    assert "Logs of this span (1)" in text
    assert (f"/logs?trace_id={shop.checkout}&start=", "Search the logs of this trace") in [
        (href[: len(f"/logs?trace_id={shop.checkout}&start=")], t) for href, t in cells.links
    ]
    # The resource: service and host, and the SDK's own keys.
    resource = {row[0]: row[1] for row in body_rows(cells, "attrs")[6:]}
    assert resource["service.name"] == "payments" and resource["host.name"] == "payments-1"
    assert f'href="/api/v1/traces/{shop.checkout}/spans/{charge}"' in html
    assert "<script>" not in html.split("<main>")[1].split("</main>")[0]


def test_links_lead_to_the_linked_span_and_a_root_says_so(world: World) -> None:
    api, shop = world.server.api, world.shop
    health = httpx.get(f"{api}/api/v1/traces/{shop.health}").json()["spans"][0]["span_id"]
    email = shop.spans["send receipt"]
    cells = section(httpx.get(f"{api}/traces/{shop.checkout}/spans/{email}").text)
    assert (f"/traces/{shop.health}/spans/{health}", f"{shop.health} / {health}") in cells.links
    assert "Links (1)" in squash("".join(cells.text)) and "why=test" in "".join(cells.text)
    root = httpx.get(f"{api}/traces/{shop.checkout}/spans/{shop.spans['GET /checkout']}").text
    assert "<dt>Parent</dt><dd>none (root)</dd>" in root
    assert "+0 µs after the trace start" in root
    assert "No log of this span is stored." not in root  # "checkout started" is the root's


def test_the_json_twin_is_the_stored_span_whole_with_its_parent_and_logs(world: World) -> None:
    api, shop = world.server.api, world.shop
    charge = shop.spans["charge"]
    reply = httpx.get(f"{api}/api/v1/traces/{shop.checkout}/spans/{charge.upper()}")
    assert reply.status_code == 200
    body = reply.json()
    assert body["span"] == trace_span(api, shop.checkout, charge)  # the store's span shape, exactly
    assert body["span"]["attributes"] == {
        "payment.attempt": 3,
        "payment.amount": 12.5,
        "payment.retry": True,
        "payment.card": "visa",
        "tags": ["a", "b"],
        "correlation.id": CORRELATION,
    }
    assert body["trace_id"] == shop.checkout
    assert body["trace_start_unix_nano"] == str(BASE)
    assert body["parent"] == {
        "span_id": shop.spans["POST /orders"],
        "service_name": "orders",
        "name": "POST /orders",
    }
    assert body["counts"] == {
        "attributes": 6,
        "resource_attributes": len(body["span"]["resource"]["attributes"]),
        "events": 1,
        "links": 0,
    }
    assert [(lg["body"], lg["severity_text"], lg["span_id"]) for lg in body["logs"]] == [
        ("charge declined", "ERROR", charge)
    ]
    assert body["logs_truncated"] is False and "capped" not in body
    capped = httpx.get(f"{api}/api/v1/traces/{shop.checkout}/spans/{charge}", params={"attr_limit": 2}).json()
    assert capped["span"]["attributes"] == {"correlation.id": CORRELATION, "payment.amount": 12.5}
    assert capped["counts"]["attributes"] == 6
    assert capped["capped"]["attr_limit"] == 2 and capped["capped"]["cut"]["attributes"] == {}
    spec = httpx.get(f"{api}/api/openapi.json").json()["paths"]
    assert "/api/v1/traces/{trace_id}/spans/{span_id}" in spec
    assert "/traces/{trace_id}/spans/{span_id}" not in spec


def test_telemetry_on_a_span_page_is_text_and_runs_nothing(world: World) -> None:
    api, shop = world.server.api, world.shop
    span = httpx.get(f"{api}/api/v1/traces/{shop.xss}").json()["spans"][0]
    html = httpx.get(f"{api}/traces/{shop.xss}/spans/{span['span_id']}").text
    cells = section(html)
    assert ["note.img", XSS_IMG, "string"] in body_rows(cells, "attrs")
    assert ["note.script", XSS_SCRIPT, "string"] in body_rows(cells, "attrs")
    assert [row[3] for row in cells.rows["logs"][1:]] == [f"evil {XSS_SCRIPT} {XSS_IMG}"]
    assert XSS_SCRIPT not in html and "<img" not in html
    assert html.count("<script") == html.count("<script src=")


# -- a span with 20,001 tags ----------------------------------------------------------------------


def timed_get(url: str, **params: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    reply = httpx.get(url, params=params, timeout=120, headers={"accept-encoding": "identity"})
    return reply, time.perf_counter() - started


def test_a_span_with_20001_tags_is_capped_by_the_store_and_shown_whole_on_request(world: World) -> None:
    api, z = world.server.api, world.zipkin
    url = f"{api}/traces/{z.trace_id}/spans/{z.big}"
    httpx.get(url, timeout=120)  # warm: the first read of a part loads its marks
    capped, capped_s = timed_get(url)
    assert capped.status_code == 200
    cells = section(capped.text)
    text = squash("".join(cells.text))
    rows = body_rows(cells, "attrs")
    total = BIG_TAGS + 1
    # The first 200 by key: the long value, cut at 2,000 characters and saying how long it is, then
    # k000000..k000198; then the resource table (service.name only).
    cut_text = f"{LONG_VALUE[: traces.VALUE_LIMIT]}… (100,000 characters)"
    assert rows[0] == [LONG_KEY, cut_text, "string"]
    assert rows[1:200] == [[f"k{i:06d}", f"v{i}", "string"] for i in range(199)]
    assert rows[200:] == [["service.name", "zipkin-svc", "string"]]
    assert f"200 of {total:,} attributes, the first by key; values cut at 2,000 characters." in text
    assert (f"/traces/{z.trace_id}/spans/{z.big}?full=1", f"Show all {total:,} attributes") in cells.links
    assert f"Attributes ({total:,})" in text
    assert f'<a href="/traces/{z.trace_id}/spans/{z.root}" rel="up">' in capped.text

    # The store moved only what is shown, with the totals.
    detail = traces.get_span(world.server.backend, z.trace_id, z.big, 200)
    assert detail is not None and detail.attribute_count == total and len(detail.attributes) == 200
    assert (detail.attributes[0].length, detail.attributes[0].cut) == (100_000, True)
    assert detail.capped and detail.parent_name == "zipkin root" and detail.parent_service == "zipkin-svc"

    full, full_s = timed_get(url, full="1")
    assert full.status_code == 200
    # 2 MB of HTML: counted with a regular expression (the parser above takes seconds for it).
    full_keys = re.findall(r'<tr><th scope="row">([^<]*)</th>', full.text)
    assert len(full_keys) == total + 1  # and the resource's one
    assert full_keys[:2] == [LONG_KEY, "k000000"] and full_keys[-2:] == [
        f"k{BIG_TAGS - 1:06d}",
        "service.name",
    ]
    assert f'<td class="v v-string">{LONG_VALUE}</td>' in full.text
    assert f"All {total:,} attributes, whole." in full.text
    print(
        f"\nspan with {total:,} attributes: capped page {capped_s * 1000:.0f} ms, {len(capped.content):,} bytes;"
        f" full page {full_s * 1000:.0f} ms, {len(full.content):,} bytes"
    )
    assert len(capped.content) < 100_000  # its speed is measured in bench/trace_view.py


def test_the_json_twin_of_a_big_span_is_whole_unless_capped(world: World) -> None:
    api, z = world.server.api, world.zipkin
    url = f"{api}/api/v1/traces/{z.trace_id}/spans/{z.big}"
    body = httpx.get(url, params={"attr_limit": 2}, timeout=60).json()
    assert body["span"]["attributes"] == {LONG_KEY: LONG_VALUE[: traces.VALUE_LIMIT], "k000000": "v0"}
    assert body["counts"]["attributes"] == BIG_TAGS + 1
    assert body["capped"] == {
        "attr_limit": 2,
        "item_limit": 100,
        "value_limit": 2000,
        "cut": {
            "attributes": {LONG_KEY: 100_000},
            "resource_attributes": {},
            "status_message": None,
            "events": [],
            "links": [],
        },
    }
    whole = httpx.get(url, timeout=120).json()
    assert whole["span"] == trace_span(api, z.trace_id, z.big)
    assert len(whole["span"]["attributes"]) == BIG_TAGS + 1 and "capped" not in whole


# -- bad and unknown ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/traces/xyz/spans/00000000000000a1", 400, "trace id must be 32 hex digits, got &#39;xyz&#39;"),
        (f"/traces/{'5a' * 16}/spans/a1", 400, "span id must be 16 hex digits, got &#39;a1&#39;"),
        (f"/traces/{'5a' * 16}/spans/{'g' * 16}", 400, "span id must be 16 hex digits"),
        (f"/traces/{'5a' * 16}/spans/00000000000000a1?full=2", 400, "full: &#39;2&#39; must be 1"),
        (f"/traces/{'5a' * 16}/spans/00000000000000a1?fulll=1", 400, "unknown parameter(s): fulll"),
        (
            f"/traces/{'5a' * 16}/spans/00000000000000ff",
            404,
            f"No span 00000000000000ff of trace {'5a' * 16}",
        ),
        (f"/traces/{'00' * 16}/spans/00000000000000a1", 404, "Span not found"),
    ],
)
def test_bad_and_unknown_ids_are_named(world: World, path: str, status: int, named: str) -> None:
    reply = httpx.get(world.server.api + path)
    assert reply.status_code == status
    assert named in reply.text


def test_malformed_stored_values_are_shown_as_the_text_they_are(world: World) -> None:
    """Kinds that do not fit their values, a broken details column, an event without its kinds: the
    page and the JSON twin read them as text instead of failing."""
    trace_id, span_id = "6c" * 16, "00000000000000e5"
    world.server.backend.command(
        """INSERT INTO spans (timestamp, trace_id, span_id, name, kind, service_name, status_code,
               attributes, attribute_types, `events.timestamp`, `events.name`, `events.attributes`, details)
           VALUES (fromUnixTimestamp64Nano({at:Int64}), unhex({trace_id:String}), unhex({span_id:String}),
               'broken', 'SERVER', 'odd-svc', 'OK',
               map('n', 'not a number', 'arr', '[1,', 'ok', '7'), map('n', 'int', 'arr', 'array', 'ok', 'int'),
               [fromUnixTimestamp64Nano({at:Int64})], ['e'], [map('x', '{')], '{not json')""",
        {"at": BASE, "trace_id": trace_id, "span_id": span_id},
    )
    cells = section(httpx.get(f"{world.server.api}/traces/{trace_id}/spans/{span_id}").text)
    assert body_rows(cells, "attrs") == [
        ["arr", "[1,", "string"],
        ["n", "not a number", "string"],
        ["ok", "7", "int"],
    ]
    span = httpx.get(f"{world.server.api}/api/v1/traces/{trace_id}/spans/{span_id}").json()["span"]
    assert span["attributes"] == {"arr": "[1,", "n": "not a number", "ok": 7}
    assert span["events"] == [{"time_unix_nano": str(BASE), "name": "e", "attributes": {"x": "{"}}]
    assert span["scope"]["attributes"] == {} and span["parent_span_id"] == ""
    # The whole trace reads too: the trace API, the trace view and its outline.
    whole = httpx.get(f"{world.server.api}/api/v1/traces/{trace_id}")
    assert whole.status_code == 200 and whole.json()["spans"][0]["attributes"]["ok"] == 7
    for path in (f"/traces/{trace_id}", f"/api/v1/traces/{trace_id}/outline", f"/jaeger/api/traces/{trace_id}"):
        assert httpx.get(world.server.api + path).status_code == 200, path


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/xyz/spans/00000000000000a1", 400, "trace id must be 32 hex digits, got 'xyz'"),
        (f"/{'5a' * 16}/spans/a1", 400, "span id must be 16 hex digits, got 'a1'"),
        (f"/{'5a' * 16}/spans/00000000000000a1?attr_limit=0", 400, "attr_limit: '0' must be a whole number"),
        (
            f"/{'5a' * 16}/spans/00000000000000a1?full=1",
            400,
            "unknown parameter(s): full (known: attr_limit)",
        ),
        (
            f"/{'5a' * 16}/spans/00000000000000ff",
            404,
            f"span 00000000000000ff of trace {'5a' * 16} not found",
        ),
    ],
)
def test_the_json_twin_names_bad_and_unknown_ids(world: World, path: str, status: int, detail: str) -> None:
    reply = httpx.get(f"{world.server.api}/api/v1/traces{path}")
    assert reply.status_code == status
    assert reply.json()["detail"].startswith(detail)


# -- in a browser --------------------------------------------------------------------------------


def test_a_span_page_in_a_browser_shows_all_on_request_and_leads_to_its_parent(world: World, page) -> None:  # noqa: ANN001
    api, z = world.server.api, world.zipkin
    page.goto(f"{api}/traces/{z.trace_id}/spans/{z.wide}")
    detail = page.locator("section#span-detail")
    assert detail.locator("table.attrs").first.locator("tbody tr").count() == 200
    assert page.locator("h1").inner_text() == "zipkin-svc wide"
    show_all = detail.get_by_role("link", name=f"Show all {WIDE_TAGS} attributes")
    with page.expect_navigation():
        show_all.click()
    assert page.url.endswith(f"/spans/{z.wide}?full=1")
    assert detail.locator("table.attrs").first.locator("tbody tr").count() == WIDE_TAGS
    assert (
        detail.locator("table.attrs").first.locator("tbody tr").last.locator("td").first.inner_text() == "249"
    )
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "span-page-full")
    with page.expect_navigation():
        page.get_by_role("link", name=re.compile("parent")).first.click()
    assert page.url == f"{api}/traces/{z.trace_id}/spans/{z.root}"
    assert page.locator("h1").inner_text() == "zipkin-svc zipkin root"
    assert "none (root)" in detail.inner_text()
    back = page.get_by_role("link", name=re.compile("← trace"))
    assert back.get_attribute("href") == f"/traces/{z.trace_id}#span-{z.root}"
    assert page.problems == []
