"""Trace search tells the truth (issue 17): the number of matches, cursor paging in four orders
(newest, oldest, longest, shortest; ties by trace id), durations as the summaries show them, a Trace
ID box that opens a trace, and a scatter whose time axis fits the results. Traces go in through the
real OpenTelemetry SDK and its OTLP/HTTP exporter; the expected orders are computed here from the
times sent."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan

from store.explore import encode_cursor
from tests.conftest import in_process, screenshot, wait_until
from ui.pages_trace_search import time_ticks

MS = 10**6
SECOND = 10**9
MINUTE = 60 * SECOND
NOW = time.time_ns()
BASE = NOW - 20 * MINUTE  # everything lies within the default last hour
# The search's range: every trace's root is in it; LATE's child starts after it.
RANGE = {"start": str((BASE - SECOND) // MS), "end": str((BASE + 3 * MINUTE) // MS)}
RANGE_END = (BASE + 3 * MINUTE) // MS * MS
N_PLAIN = 40
TIED = (10, 11, 12)  # these start at the same instant: ties in newest and oldest go by trace id
SAME_DURATION = (20, 21)  # ties in longest and shortest
CLUSTER = range(30, 34)  # start 150 ms apart: a scatter of these spans less than a second
SORTS = ("newest", "oldest", "longest", "shortest")


def plain_start(i: int) -> int:
    if i in TIED:
        return BASE + TIED[0] * 3 * SECOND
    if i in CLUSTER:
        return BASE + 90 * SECOND + (i - CLUSTER.start) * 150 * MS
    return BASE + i * 3 * SECOND


def plain_duration(i: int) -> int:
    i = SAME_DURATION[0] if i in SAME_DURATION else i
    return (1 + (i * 37) % 41) * 7 * MS  # distinct for i < 41


@dataclass
class Sent:
    """A trace as sent: its id (lower-case hex), first span start and last span end."""

    trace_id: str
    start: int
    end: int

    @property
    def duration(self) -> int:
        return self.end - self.start


def send(otlp: str) -> dict[str, Sent]:
    """N_PLAIN traces (a ts-gw root, a ts-db child inside it for even ones) and LATE: a 2 ms root in
    the range whose child starts 30 s after the range's end, so that it is the longest trace."""
    providers = {}
    for service in ("ts-gw", "ts-db"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces"), schedule_delay_millis=100)
        )
        providers[service] = provider
    gw = providers["ts-gw"].get_tracer("trace-search-test")
    db = providers["ts-db"].get_tracer("trace-search-test")

    def span(tracer: Any, name: str, start: int, end: int, parent: Any = None, **attrs: Any) -> Any:
        context = otel_trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        s = tracer.start_span(name, context=context, start_time=start, attributes=attrs)
        s.end(end_time=end)
        return s.get_span_context()

    sent = {}
    for i in range(N_PLAIN):
        start, end = plain_start(i), plain_start(i) + plain_duration(i)
        batch = "cluster" if i in CLUSTER else "plain"
        root = span(gw, f"GET /item/{i}", start, end, batch=batch)
        if i % 2 == 0:
            span(db, "SELECT item", start + MS, start + MS + plain_duration(i) // 2, root)
        sent[f"p{i}"] = Sent(f"{root.trace_id:032x}", start, end)
    late_start = BASE + 150 * SECOND
    root = span(gw, "GET /late", late_start, late_start + 2 * MS, batch="late")
    late_child_start = RANGE_END + 30 * SECOND
    span(db, "late write", late_child_start, late_child_start + SECOND, root)
    sent["late"] = Sent(f"{root.trace_id:032x}", late_start, late_child_start + SECOND)
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()
    return sent


#: The key of each order; ties go by trace id.
SORT_KEYS = {
    "newest": lambda t: -t.start,
    "oldest": lambda t: t.start,
    "longest": lambda t: -t.duration,
    "shortest": lambda t: t.duration,
}
#: Page sizes the cursors are followed with: between them, a page ends inside every tie (checked).
LIMITS = (2, 3)


def expected_order(sent: dict[str, Sent], sort: str) -> list[str]:
    return [t.trace_id for t in sorted(sent.values(), key=lambda t: (SORT_KEYS[sort](t), t.trace_id))]


@dataclass
class Server:
    api: str
    sent: dict[str, Sent]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.api}{path}", params=params, timeout=30)

    def traces(self, **params: Any) -> dict[str, Any]:
        reply = self.get("/api/v1/traces", service="ts-gw", **RANGE, **params)
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with in_process(tmp_path_factory.mktemp("trace-search")) as running:
        sent = send(running.otlp)
        running.drain()
        server = Server(running.api, sent)
        # Every trace stored, and LATE's child too (its summary covers the whole trace).
        wait_until(lambda: server.traces(limit="1")["total"] == len(sent))
        wait_until(lambda: [t["span_count"] for t in server.traces(attr="batch=late")["traces"]] == [2])
        yield server


def test_the_data_exercises_ties_and_the_late_span(srv: Server) -> None:
    by_id = {t.trace_id: t for t in srv.sent.values()}
    for sort, key in SORT_KEYS.items():
        keys = [key(by_id[trace]) for trace in expected_order(srv.sent, sort)]
        ties = [n for n in range(1, len(keys)) if keys[n] == keys[n - 1]]
        # Some page of the cursor test ends between tied traces (n - 1 and n): its cursor is in the tie.
        assert any(n % limit == 0 for n in ties for limit in LIMITS), (sort, ties)
    assert RANGE_END < BASE + 150 * SECOND + 2 * MS + 5 * MINUTE  # LATE's child is within the look-ahead


def test_total_is_the_number_of_matches_not_the_page(srv: Server) -> None:
    every = len(srv.sent)
    assert srv.traces(limit="3")["total"] == every
    reply = srv.traces(limit="5", attr="batch=cluster")
    assert reply["total"] == len(CLUSTER) and len(reply["traces"]) == len(CLUSTER)
    assert reply["next_cursor"] is None and reply["sort"] == "newest"
    assert srv.traces(attr="batch=none") == {"traces": [], "total": 0, "next_cursor": None, "sort": "newest"}


def pages(srv: Server, limit: int, **params: str) -> list[dict[str, Any]]:
    found = [srv.traces(limit=str(limit), **params)]
    while found[-1]["next_cursor"]:
        assert len(found) <= len(srv.sent), "the cursors do not end"
        found.append(srv.traces(limit=str(limit), cursor=found[-1]["next_cursor"], **params))
    return found


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("limit", LIMITS)
def test_following_cursors_visits_every_match_once_in_each_order(srv: Server, sort: str, limit: int) -> None:
    found = pages(srv, limit, sort=sort)
    ids = [t["trace_id"] for page in found for t in page["traces"]]
    assert ids == expected_order(srv.sent, sort)
    assert {page["total"] for page in found} == {len(srv.sent)}
    assert {page["sort"] for page in found} == {sort}
    assert [len(page["traces"]) for page in found[:-1]] == [limit] * (len(found) - 1)
    # The numbers the order went by are those the summaries show.
    by_id = {t.trace_id: t for t in srv.sent.values()}
    for t in (t for page in found for t in page["traces"]):
        assert (int(t["start_time_unix_nano"]), t["duration_ns"]) == (
            by_id[t["trace_id"]].start,
            by_id[t["trace_id"]].duration,
        )


def test_newest_is_the_default_and_late_spans_count_in_the_duration(srv: Server) -> None:
    assert srv.traces(limit="50")["traces"] == srv.traces(limit="50", sort="newest")["traces"]
    assert srv.traces(limit="50", sort=" Oldest ")["sort"] == "oldest"
    longest = srv.traces(limit="1", sort="longest")["traces"][0]
    assert longest["trace_id"] == srv.sent["late"].trace_id
    assert longest["duration_ns"] == srv.sent["late"].duration > MINUTE


def test_a_cursor_of_another_order_or_no_cursor_at_all_is_refused(srv: Server) -> None:
    newest = srv.traces(limit="5")["next_cursor"]
    assert srv.traces(limit="5", cursor=newest)["total"] == len(srv.sent)
    for sort in ("oldest", "longest", "shortest"):
        reply = srv.get("/api/v1/traces", service="ts-gw", sort=sort, cursor=newest, **RANGE)
        assert reply.status_code == 400, reply.text
        detail = reply.json()["detail"]
        assert detail.startswith("cursor: ") and "sort=newest" in detail and f"sort={sort}" in detail
    longest = srv.traces(limit="5", sort="longest")["next_cursor"]
    assert srv.get("/api/v1/traces", cursor=longest, **RANGE).status_code == 400  # newest by default
    for cursor in ("nope", longest[:-3], longest + "x", "bG9uZ2VzdDoxOnh5eg"):
        reply = srv.get("/api/v1/traces", sort="longest", cursor=cursor, **RANGE)
        assert reply.status_code == 400 and reply.json()["detail"].startswith("cursor: "), cursor
    reply = srv.get("/api/v1/traces", sort="slowest", **RANGE)
    assert reply.status_code == 400 and reply.json()["detail"].startswith("sort: ")
    page = httpx.get(f"{srv.api}/traces", params={"sort": "oldest", "cursor": newest, **RANGE}, timeout=30)
    assert page.status_code == 400 and "cursor: this cursor continues sort=newest" in html.unescape(page.text)


def test_a_cursor_past_the_last_match_gives_an_empty_page_with_the_total(srv: Server) -> None:
    for sort, key in (("newest", 0), ("oldest", 2**62), ("longest", -1), ("shortest", 2**62)):
        reply = srv.traces(sort=sort, cursor=encode_cursor(key, "f" * 32, sort))
        assert reply == {"traces": [], "total": len(srv.sent), "next_cursor": None, "sort": sort}
    page = httpx.get(
        f"{srv.api}/traces",
        params={
            "service": "ts-gw",
            "sort": "oldest",
            "cursor": encode_cursor(2**62, "f" * 32, "oldest"),
            **RANGE,
        },
        timeout=30,
    )
    assert page.status_code == 200 and f"{len(srv.sent)} matching traces" in page.text
    assert "past the last match" in page.text and _link(page.text, "first-page") is not None


def _page_ids(text: str) -> list[str]:
    return re.findall(r'data-trace-id="([0-9a-f]{32})"', text)


def _link(text: str, css_class: str) -> str | None:
    match = re.search(rf'<a (?:rel="next" )?class="{css_class}" href="([^"]+)"', text)
    return html.unescape(match.group(1)) if match else None


def test_the_page_says_the_count_which_matches_it_shows_and_in_what_order(srv: Server) -> None:
    order = expected_order(srv.sent, "longest")
    every = len(srv.sent)
    reply = httpx.get(
        f"{srv.api}/traces",
        params={"service": "ts-gw", "sort": "longest", "limit": "15", **RANGE},
        timeout=30,
    )
    seen: list[str] = []
    for n in range(0, every, 15):
        assert reply.status_code == 200, reply.text
        assert f"{every} matching traces" in reply.text
        assert f"Showing {n + 1}–{min(n + 15, every)}, longest first." in reply.text
        assert '<option value="longest" selected>' in reply.text
        assert (_link(reply.text, "first-page") is None) == (n == 0)
        seen += _page_ids(reply.text)
        following = _link(reply.text, "next-page")
        if following is None:
            break
        assert "sort=longest" in following and "service=ts-gw" in following
        reply = httpx.get(srv.api + following, timeout=30)
    assert seen == order
    first = _link(reply.text, "first-page")
    assert first is not None and "cursor" not in first
    assert _page_ids(httpx.get(srv.api + first, timeout=30).text) == order[:15]


# -- the Trace ID box --------------------------------------------------------------------------


def test_the_trace_id_box_opens_the_trace(srv: Server) -> None:
    wanted = srv.sent["p3"].trace_id
    for typed, target in (
        (wanted, wanted),
        (f"  {wanted.upper()}\n", wanted),
        ("00000000000000000123456789ABCDEF", "00000000000000000123456789abcdef"),
        ("0123456789ABCDEF", "00000000000000000123456789abcdef"),  # a 64-bit Jaeger or Zipkin id
    ):
        reply = httpx.get(f"{srv.api}/traces", params={"trace_id": typed}, timeout=30)
        assert reply.status_code == 303 and reply.headers["location"] == f"/traces/{target}", typed
    # The id wins over a search given with it (even one the search page would refuse).
    reply = httpx.get(
        f"{srv.api}/traces",
        params={"service": "ts-gw", "sort": "nope", "cursor": "x", "trace_id": wanted, **RANGE},
        timeout=30,
    )
    assert reply.status_code == 303 and reply.headers["location"] == f"/traces/{wanted}"
    assert (
        httpx.get(f"{srv.api}/traces", params={"trace_id": wanted}, follow_redirects=True).status_code == 200
    )


@pytest.mark.parametrize(
    "typed",
    ["", "xyz", "0123456789abcdef0", "0123456789abcdef0123456789abcdeg", "0" * 32, "0x" + "1" * 30],
)
def test_a_malformed_trace_id_shows_the_search_again_naming_it(srv: Server, typed: str) -> None:
    reply = httpx.get(
        f"{srv.api}/traces", params={"trace_id": typed, "service": "ts-gw", **RANGE}, timeout=30
    )
    assert reply.status_code == 400
    text = html.unescape(reply.text)
    assert 'id="trace-id-error"' in text and "trace_id: " in text
    # The search page, with the search it was given.
    assert f"{len(srv.sent)} matching traces" in text and f'value="{typed}"' in text


def test_two_trace_ids_are_refused(srv: Server) -> None:
    wanted = srv.sent["p3"].trace_id
    reply = httpx.get(f"{srv.api}/traces?trace_id={wanted}&trace_id={wanted}", timeout=30)
    assert reply.status_code == 400 and "trace_id may be given once" in reply.text


# -- the scatter -------------------------------------------------------------------------------


def _x_ticks(text: str) -> list[tuple[int, str]]:
    return [(int(ns), label) for ns, label in re.findall(r'data-ns="(-?\d+)">([^<]+)</text>', text)]


def _point_xs(text: str) -> list[float]:
    return [float(x) for x in re.findall(r'<circle class="point[^"]*" cx="([\d.]+)"', text)]


@pytest.mark.parametrize(
    ("params", "label"),
    [
        ({"limit": "50"}, r"(\d\d-\d\d )?\d\d:\d\d:\d\d"),  # 2.5 minutes of starts: seconds
        ({"attr": "batch=cluster"}, r"(\d\d-\d\d )?\d\d:\d\d:\d\d\.\d{3}"),  # 450 ms: milliseconds
        ({"attr": "batch=late"}, r"\d\d:\d\d:\d\d\.\d{3}"),  # one instant: one tick, to the ms
    ],
)
def test_the_scatter_axis_fits_the_results(srv: Server, params: dict[str, str], label: str) -> None:
    reply = httpx.get(f"{srv.api}/traces", params={"service": "ts-gw", **params, **RANGE}, timeout=30)
    assert reply.status_code == 200, reply.text
    starts = [int(t["start_time_unix_nano"]) for t in srv.traces(**params)["traces"]]
    ticks = _x_ticks(reply.text)
    assert ticks and all(min(starts) <= ns <= max(starts) for ns, _ in ticks)
    assert all(re.fullmatch(label, text) for _, text in ticks), ticks
    assert len({text for _, text in ticks}) == len(ticks)  # enough digits to tell them apart
    xs = _point_xs(reply.text)
    assert len(xs) == len(starts)
    if len(set(starts)) > 1:
        assert len(ticks) >= 2
        # The points spread over the plot (900 wide, 64 left and 12 right of it), not into one edge.
        assert min(xs) < 64 + 0.1 * 824 and max(xs) > 900 - 12 - 0.1 * 824


def test_time_ticks_carry_the_digits_and_the_date_their_span_needs() -> None:
    day = 1_795_824_000 * SECOND  # 2026-11-28T00:00:00Z
    ticks, date = time_ticks(day + 10 * SECOND, day + 10 * SECOND + 300_000)  # 300 µs: microseconds
    assert date == "2026-11-28" and [text for _, text in ticks] == [
        "00:00:10.000000", "00:00:10.000100", "00:00:10.000200", "00:00:10.000300"
    ]  # fmt: skip
    ticks, date = time_ticks(day, day + 450 * MS)  # 450 ms: milliseconds
    assert [text for _, text in ticks] == [f"00:00:00.{n}00" for n in range(5)]
    ticks, date = time_ticks(day - 2 * MINUTE, day + 2 * MINUTE)  # across midnight: dates on the labels
    assert date == "" and [text for _, text in ticks] == [
        "11-27 23:58", "11-27 23:59", "11-28 00:00", "11-28 00:01", "11-28 00:02"
    ]  # fmt: skip
    ticks, date = time_ticks(day + 1, day + 10 * 86_400 * SECOND)  # days: dates alone
    assert [text for _, text in ticks] == [
        "2026-11-29",
        "2026-12-01",
        "2026-12-03",
        "2026-12-05",
        "2026-12-07",
    ]
    ticks, date = time_ticks(day + 1, day + 1)  # one instant: one tick, to the millisecond
    assert [(ns, text) for ns, text in ticks] == [(day + 1, "00:00:00.000")] and date == "2026-11-28"


# -- in the browser ----------------------------------------------------------------------------


def test_sort_page_and_open_a_trace_in_the_browser(srv: Server, page) -> None:  # noqa: ANN001
    order = expected_order(srv.sent, "shortest")
    page.goto(f"{srv.api}/traces")
    page.fill("form.search input[name=service]", "ts-gw")
    page.fill("form.search input[name=limit]", "15")
    page.select_option("form.search select[name=sort]", "shortest")
    with page.expect_navigation():
        page.click("form.search button[type=submit]")
    assert "sort=shortest" in page.url

    def rows() -> list[str]:
        return page.locator("tr.trace").evaluate_all("rows => rows.map(r => r.dataset.traceId)")

    assert rows() == order[:15]
    assert f"{len(srv.sent)} matching traces" in page.locator("h2").first.inner_text()
    with page.expect_navigation():
        page.click("a.next-page")
    assert rows() == order[15:30]
    assert "Showing 16–30, shortest first." in page.locator("p.page-note").inner_text()
    assert page.locator("form.search select[name=sort]").input_value() == "shortest"
    assert page.locator("a.first-page").count() == 1
    screenshot(page, "trace-search-page-2")

    wanted = order[20]
    page.fill("#trace-id", f" {wanted.upper()} ")
    with page.expect_navigation() as opened:
        page.click("form.trace-lookup button[type=submit]")
    assert page.url == f"{srv.api}/traces/{wanted}" and opened.value.status == 200
    assert page.problems == []
