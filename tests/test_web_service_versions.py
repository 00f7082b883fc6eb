"""The Versions section of the service page (``/services/{name}``, ui/templates/_versions.html), served
by a real in-process server over spans sent through the OTLP/HTTP receiver, read as plain HTML.

The data, SERVER spans in the minutes of ``tests.test_red.BASE`` (10-minute aligned, 40 to 50 minutes
ago); the page's range is ``[BASE, BASE + 10 min)``:

    service    version                      requests  errors  duration
    cart-svc   1.4.2                        8         2       10 ms
    cart-svc   1.5.0+exp/7&a=b              2         1       50 ms
    cart-svc   (none: no service.version)   1         0       30 ms
    solo-svc   2.0.0                        3         0       20 ms
    bare-svc   (none)                       2         0       20 ms
    evil-svc   <script>alert(1)</script>    2         0       5 ms
    evil-svc   1.0                          1         1       5 ms

So cart-svc's shares are 8/11 (72.7%), 2/11 (18.2%) and 1/11 (9.1%).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from store import red
from tests.conftest import InProcess, in_process
from tests.test_red import BASE, ERROR, MINUTE, MS, PROTOBUF, SERVER, Model, _scope

EXP = "1.5.0+exp/7&a=b"
EVIL = "<script>alert(1)</script>"
#: (service, version, minute, requests, errors, duration ms)
PLAN = [
    ("cart-svc", "1.4.2", 1, 8, 2, 10),
    ("cart-svc", EXP, 2, 2, 1, 50),
    ("cart-svc", "", 3, 1, 0, 30),
    ("solo-svc", "2.0.0", 1, 3, 0, 20),
    ("bare-svc", "", 1, 2, 0, 20),
    ("evil-svc", EVIL, 4, 2, 0, 5),
    ("evil-svc", "1.0", 4, 1, 1, 5),
]
RANGE = {"start": str(BASE // MS), "end": str((BASE + 10 * MINUTE) // MS)}


def _traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    model = Model()
    for service, version, minute, requests, errors, ms in PLAN:
        scope = _scope(request, service, **({"service.version": version} if version else {}))
        for i in range(requests):
            start = BASE + minute * MINUTE + i * 1000 * MS
            model.add(scope, service, "GET /items", SERVER, start, ms, status=ERROR if i < errors else None)
    return request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("web-service-versions")) as running:
        reply = httpx.post(
            f"{running.otlp}/v1/traces", content=_traces().SerializeToString(), headers=PROTOBUF
        )
        assert reply.status_code == 200, reply.text
        running.drain()
        yield running


class _VersionsTable(HTMLParser):
    """Rows of ``table.versions``: each cell's text by its first class, and the row's links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.links: list[list[str]] = []
        self._in_table = False
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "table" and "versions" in classes:
            self._in_table = True
        elif self._in_table and tag == "tr" and "data-version" in attributes:
            self.rows.append({"data-version": attributes["data-version"] or ""})
            self.links.append([])
        elif self._in_table and tag == "td" and self.rows:
            self._cell = classes[1] if classes[0] == "num" else classes[0]
            self.rows[-1][self._cell] = ""
        elif self._in_table and tag == "a" and self.rows:
            self.links[-1].append(attributes["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.rows[-1][self._cell] += data


def _page(server: InProcess, service: str, **query: str) -> str:
    reply = httpx.get(
        f"{server.api}/services/{service}", params=query or RANGE, headers={"Accept": "text/html"}, timeout=60
    )
    assert reply.status_code == 200, reply.text
    return reply.text


def _table(page: str) -> _VersionsTable:
    table = _VersionsTable()
    table.feed(page)
    return table


def _ms(duration_ms: float, n: int, q: float) -> str:
    """How the page shows the ``q`` quantile of ``n`` equal durations (store/red.py's histogram)."""
    bucket = red.bucket_of(round(duration_ms * MS))
    return f"{red.quantile_ns([bucket], [n], q) / 1e6:.1f} ms"


def _note(page: str) -> str:
    notes = re.findall(r'<p class="muted versions-note">(.*?)</p>', page, re.S)
    assert len(notes) == 1, notes
    return re.sub(r"<[^>]+>", "", html.unescape(notes[0]))


def test_the_versions_table_shows_each_versions_numbers_busiest_first(server: InProcess) -> None:
    page = _page(server, "cart-svc")
    assert '<h2 id="versions">Versions</h2>' in page
    table = _table(page)
    assert [r["data-version"] for r in table.rows] == ["1.4.2", EXP, ""]
    got = [
        {
            k: r[k].strip()
            for k in ("version", "share", "requests", "errors", "error-ratio", "p50", "p95", "p99")
        }
        for r in table.rows
    ]
    assert got == [
        {
            "version": "1.4.2",
            "share": "72.7%",
            "requests": "8",
            "errors": "2",
            "error-ratio": "25.00%",
            "p50": _ms(10, 8, 0.5),
            "p95": _ms(10, 8, 0.95),
            "p99": _ms(10, 8, 0.99),
        },
        {
            "version": EXP,
            "share": "18.2%",
            "requests": "2",
            "errors": "1",
            "error-ratio": "50.00%",
            "p50": _ms(50, 2, 0.5),
            "p95": _ms(50, 2, 0.95),
            "p99": _ms(50, 2, 0.99),
        },
        {
            "version": "(none)",
            "share": "9.1%",
            "requests": "1",
            "errors": "0",
            "error-ratio": "0.00%",
            "p50": _ms(30, 1, 0.5),
            "p95": _ms(30, 1, 0.95),
            "p99": _ms(30, 1, 0.99),
        },
    ]
    assert got[0]["p50"] == "10.3 ms" and got[1]["p99"] == "51.9 ms"  # the histogram's placement, by hand
    # Rates over the 600 s range: 8/600 and 2/600 requests per second.
    assert [r["rate"].strip() for r in table.rows] == ["0.01/s", "0.00/s", "0.00/s"]
    assert "versions-note" not in page


def test_each_other_version_links_to_its_canary_comparison_with_the_busiest(server: InProcess) -> None:
    table = _table(_page(server, "cart-svc"))
    # The busiest is the baseline (no link to itself); requests without a version get none either.
    assert table.links[0] == [] and table.links[2] == []
    [href] = table.links[1]
    assert href == (
        "/canary?service=cart-svc&baseline=1.4.2&candidate=1.5.0%2Bexp%2F7%26a%3Db"
        f"&start={RANGE['start']}&end={RANGE['end']}"
    )
    parts = urlsplit(href)
    assert parts.path == "/canary"
    assert parse_qs(parts.query) == {
        "service": ["cart-svc"],
        "baseline": ["1.4.2"],
        "candidate": [EXP],
        "start": [RANGE["start"]],
        "end": [RANGE["end"]],
    }
    assert table.rows[1]["canary"] == f"Compare {EXP} with 1.4.2"


def test_the_versions_json_link_gives_the_same_numbers(server: InProcess) -> None:
    page = _page(server, "cart-svc")
    link = re.search(r'<a href="(/api/v1/red\?[^"]*group_by=version[^"]*)">Versions as JSON</a>', page)
    assert link is not None
    body = httpx.get(server.api + html.unescape(link.group(1))).json()
    assert [(g["version"], g["requests"], g["errors"], g["share"]) for g in body["groups"]] == [
        ("1.4.2", 8, 2, 8 / 11),
        (EXP, 2, 1, 2 / 11),
        ("", 1, 0, 1 / 11),
    ]


def test_a_service_with_one_version_says_so(server: InProcess) -> None:
    page = _page(server, "solo-svc")
    assert _table(page).rows == []
    assert _note(page) == "One version in this range: all requests come from 2.0.0."


def test_a_service_without_versions_says_so(server: InProcess) -> None:
    page = _page(server, "bare-svc")
    assert _table(page).rows == []
    assert (
        _note(page) == "No request in this range carries a version (the resource attribute service.version)."
    )


def test_a_quiet_range_has_no_versions(server: InProcess) -> None:
    later = {"start": str((BASE + 5 * MINUTE) // MS), "end": str((BASE + 10 * MINUTE) // MS)}
    page = _page(server, "cart-svc", **later)
    assert _table(page).rows == []
    assert _note(page) == "No requests in this range, so no versions to compare."


def test_a_version_named_with_markup_is_text_and_its_link_is_encoded(server: InProcess) -> None:
    page = _page(server, "evil-svc")
    assert EVIL not in page and html.escape(EVIL) in page
    table = _table(page)
    assert [(r["data-version"], r["version"].strip(), r["share"].strip()) for r in table.rows] == [
        (EVIL, EVIL, "66.7%"),
        ("1.0", "1.0", "33.3%"),
    ]
    [href] = table.links[1]
    assert parse_qs(urlsplit(href).query)["baseline"] == [EVIL]
    assert "baseline=%3Cscript%3Ealert%281%29%3C%2Fscript%3E&" in href
