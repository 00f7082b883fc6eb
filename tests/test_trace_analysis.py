"""Trace statistics and trace comparison: the pure functions on hand-built outlines, their JSON
endpoints and pages on a real server fed through the OpenTelemetry SDK, and both pages in Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from conftest import InProcess, in_process, screenshot, wait_until
from opentelemetry.trace import SpanKind
from test_web_traces import Telemetry, hexid

from store import trace_analysis, trace_tree
from store.trace_analysis import Stat
from store.traces import TraceOutline
from ui import pages_trace_analysis

MS = 10**6
NOW = time.time_ns()
UNKNOWN = "0123456789abcdef0123456789abcdef"


def outline(
    *spans: tuple[str, str, str, str, int, int] | tuple[str, str, str, str, int, int, str],
) -> TraceOutline:
    """An outline from (span id, parent id, service, name, start, duration[, status]) rows."""
    return TraceOutline(
        span_ids=[s[0] for s in spans],
        parent_ids=[s[1] for s in spans],
        services=[s[2] for s in spans],
        names=[s[3] for s in spans],
        kinds=["INTERNAL"] * len(spans),
        starts=[s[4] for s in spans],
        durations=[s[5] for s in spans],
        statuses=[s[6] if len(s) > 6 else "UNSET" for s in spans],  # type: ignore[misc]
        event_counts=[0] * len(spans),
    )


# -- the waterfall's rows --------------------------------------------------------------------


def test_the_tree_handles_orphans_and_parent_cycles() -> None:
    rows = [
        ("r", "", 0, 100),
        ("a", "r", 10, 40),
        ("o", "missing", 20, 10),  # parent not stored: another root
        ("b", "r", 30, 60),
        ("x", "y", 40, 5),  # x and y are each other's parents
        ("y", "x", 41, 3),
    ]
    tree = trace_tree.build(outline(*((sid, parent, "s", sid, start, d) for sid, parent, start, d in rows)))
    assert [rows[i][0] for i in tree.order] == ["r", "a", "b", "o", "x", "y"]
    assert tree.depth == [0, 1, 1, 0, 0, 1]
    assert tree.parent_row == [-1, 0, 0, -1, -1, 4]
    assert [rows[i][0] for i in tree.critical] == ["r", "b"]
    assert tree.orphan == [False, False, False, True, False, False]
    assert (tree.start_ns, tree.end_ns) == (0, 100)


# -- statistics --------------------------------------------------------------------------------

T0 = 1_000
#  root r [0,100]; children c1 [10,40] and c2 [30,60] overlap (union 50), c3 [90,120] ends after
#  the root (10 inside), c4 [-20,5] starts before it (5 inside): r's self time 100 - 65 = 35.
#  g [20,30] under c1: c1's self 20. h [50,70] under c2 is cut at 60: c2's self 30 - 10 = 20.
#  o: its parent is not stored, so it is a root of its own (self time = duration).
SHAPES = outline(
    ("c4", "r", "db", "x", T0 - 20, 25),
    ("r", "", "gw", "GET /", T0, 100),
    ("c1", "r", "api", "q", T0 + 10, 30),
    ("g", "c1", "db", "x", T0 + 20, 10),
    ("c2", "r", "api", "q", T0 + 30, 30),
    ("h", "c2", "api", "q", T0 + 50, 20),
    ("c3", "r", "db", "x", T0 + 90, 30),
    ("o", "ffffffffffffffff", "gw", "GET /", T0 + 200, 10, "ERROR"),
)


def test_self_time_subtracts_the_union_of_children_clipped_to_the_span() -> None:
    own = dict(zip(SHAPES.span_ids, trace_analysis.self_times(SHAPES), strict=True))
    assert own == {"c4": 25, "r": 35, "c1": 20, "g": 10, "c2": 20, "h": 20, "c3": 30, "o": 10}


def test_statistics_per_operation_service_and_trace() -> None:
    stats = trace_analysis.statistics(SHAPES)
    assert [(op.service, op.operation, op.stat) for op in stats.operations] == [
        ("api", "q", Stat(count=3, errors=0, total_ns=80, self_ns=60, min_ns=20, max_ns=30)),
        ("db", "x", Stat(count=3, errors=0, total_ns=65, self_ns=65, min_ns=10, max_ns=30)),
        ("gw", "GET /", Stat(count=2, errors=1, total_ns=110, self_ns=45, min_ns=10, max_ns=100)),
    ]
    assert stats.operations[0].stat.avg_ns == pytest.approx(80 / 3)
    assert [(g.service, g.stat.count, g.stat.total_ns, g.stat.self_ns) for g in stats.services] == [
        ("api", 3, 80, 60),
        ("db", 3, 65, 65),
        ("gw", 2, 110, 45),
    ]
    assert stats.total == Stat(count=8, errors=1, total_ns=255, self_ns=170, min_ns=10, max_ns=100)
    assert stats.duration_ns == 230  # from c4's start (-20) to o's end (210)
    by_self = trace_analysis.sorted_statistics(stats, "self")
    assert [g.service for g in by_self.services] == ["db", "api", "gw"]
    by_count = trace_analysis.sorted_statistics(stats, "count")
    assert [g.service for g in by_count.services] == ["api", "db", "gw"]  # ties by name


def test_a_parent_cycle_is_cut_above_its_earliest_span_and_does_not_hang() -> None:
    # z hangs below the cycle x -> y -> x; w names itself as its parent.
    cyclic = outline(
        ("z", "x", "svc", "z", 20, 10),
        ("x", "y", "svc", "x", 0, 100),
        ("y", "x", "svc", "y", 10, 50),
        ("w", "w", "svc", "w", 5, 7),
    )
    spans = trace_analysis.tree(cyclic)
    assert spans.roots == [3, 1]  # w, then x: the cycle's earliest span in outline order
    assert spans.parents == [1, -1, 1, -1]
    assert sorted(spans.order) == [0, 1, 2, 3]
    # x's children z [20,30] and y [10,60]: union 50. y keeps none (x is no longer its child).
    assert trace_analysis.self_times(cyclic) == [10, 50, 50, 7]
    found = trace_analysis.compare(cyclic, cyclic)
    assert [(n.depth, n.operation, n.count_a) for n in found] == [
        (0, "w", 1),
        (0, "x", 1),
        (1, "y", 1),
        (1, "z", 1),
    ]


def test_an_empty_trace() -> None:
    empty = outline()
    stats = trace_analysis.statistics(empty)
    assert stats.services == [] and stats.total == Stat() and stats.duration_ns == 0
    assert len(trace_analysis.compare(empty, empty)) == 0
    one_sided = trace_analysis.compare(SHAPES, empty)
    assert one_sided.only_a == len(one_sided) == 5 and one_sided.only_b == 0
    assert {n.presence for n in one_sided} == {"a"}


# -- compare -----------------------------------------------------------------------------------

BEFORE = outline(
    ("r", "", "gw", "GET /", 0, 100),
    ("q1", "r", "api", "q", 5, 30),
    ("q2", "r", "api", "q", 40, 20),
    ("d1", "q1", "db", "x", 6, 5),
    ("x1", "r", "db", "x", 70, 10),
)
#  B: the root slower; one api call instead of two, with two db calls; a cache call A has not; no
#  direct db call; and an orphan root with the same path as the root, with an api child of its own.
AFTER = outline(
    ("R", "", "gw", "GET /", 0, 150),
    ("Q1", "R", "api", "q", 5, 60),
    ("D1", "Q1", "db", "x", 6, 8),
    ("D2", "Q1", "db", "x", 20, 2),
    ("K", "R", "cache", "get", 70, 5),
    ("O", "eeeeeeeeeeeeeeee", "gw", "GET /", 300, 40),
    ("OQ", "O", "api", "q", 310, 10),
)


def test_compare_merges_spans_by_their_service_operation_path() -> None:
    found = trace_analysis.compare(BEFORE, AFTER)
    assert [
        (
            n.depth,
            n.parent,
            n.service,
            n.operation,
            n.presence,
            n.count_a,
            n.count_b,
            n.total_a_ns,
            n.total_b_ns,
        )
        for n in found
    ] == [
        (0, -1, "gw", "GET /", "both", 1, 2, 100, 190),
        (1, 0, "api", "q", "both", 2, 2, 50, 70),
        (2, 1, "db", "x", "both", 1, 2, 5, 10),
        (1, 0, "cache", "get", "b", 0, 1, 0, 5),
        (1, 0, "db", "x", "a", 1, 0, 10, 0),
    ]
    diffs = [(n.count_diff, n.total_diff_ns, n.total_diff_percent) for n in found]
    assert diffs == [(1, 90, 90.0), (0, 20, 40.0), (1, 5, 100.0), (1, 5, None), (-1, -10, -100.0)]
    assert (found.spans_a, found.spans_b, found.duration_a_ns, found.duration_b_ns) == (5, 7, 100, 340)
    assert (found.only_a, found.only_b) == (1, 1)
    # Swapped, the same tree with the sides exchanged.
    swapped = trace_analysis.compare(AFTER, BEFORE)
    assert [(n.presence, n.count_a, n.count_b) for n in swapped] == [
        ("both", 2, 1),
        ("both", 2, 2),
        ("both", 2, 1),
        ("a", 1, 0),
        ("b", 0, 1),
    ]


def test_the_compare_page_rows_say_the_direction_in_text_and_stop_at_the_limit() -> None:
    found = trace_analysis.compare(BEFORE, AFTER)
    rows = pages_trace_analysis.compare_view(found)
    assert [(r["sign"], r["diff_ms"], r["percent"], r["trend"]) for r in rows] == [
        ("+", 90 / 1e6, "+90.0%", "slower"),
        ("+", 20 / 1e6, "+40.0%", "slower"),
        ("+", 5 / 1e6, "+100.0%", "slower"),
        ("+", 5 / 1e6, "–", ""),  # only in B: neither slower nor faster
        ("−", 10 / 1e6, "−100.0%", ""),
    ]
    assert [r["node"].operation for r in pages_trace_analysis.compare_view(found, limit=2)] == ["GET /", "q"]


def test_a_100000_span_trace_is_analysed_whole() -> None:
    """Every span counted and every path found (the time it takes: bench/trace_view.py)."""
    n = 100_000
    ids = [f"{i:016x}" for i in range(n)]
    # A root, 1,000 children, 99 grandchildren each, in 20 services and 50 operations.
    parents = ["", *([ids[0]] * 1000), *(ids[1 + (i - 1001) // 99] for i in range(1001, n))]
    big = TraceOutline(
        span_ids=ids,
        parent_ids=parents,
        services=[f"svc-{i % 20}" for i in range(n)],
        names=[f"op-{i % 50}" for i in range(n)],
        kinds=["INTERNAL"] * n,
        starts=[i * 10 for i in range(n)],
        durations=[n * 10 if i == 0 else 5_000 for i in range(n)],
        statuses=["UNSET"] * n,
        event_counts=[0] * n,
    )
    stats = trace_analysis.statistics(big)
    found = trace_analysis.compare(big, big)
    combo = [(i % 20, i % 50) for i in range(n)]
    paths = {combo[i] for i in range(1, 1001)} | {
        (combo[1 + (i - 1001) // 99], combo[i]) for i in range(1001, n)
    }
    assert stats.total.count == n and sum(found.counts_a) == n and len(found) == 1 + len(paths)


# -- the server --------------------------------------------------------------------------------


@dataclass
class Traces:
    a: str
    b: str
    c: str  # another shape: the same root with a cache call only


def send_checkout(t: Telemetry, base: int, timings: dict[str, tuple[int, int]], error: bool = False) -> str:
    """gw GET /checkout -> (orders POST /orders -> db SELECT x2, email send), at ``timings`` (ms)."""
    root = t.span("gw", "GET /checkout", *timings["root"], base=base, kind=SpanKind.SERVER)
    orders = t.span("orders", "POST /orders", *timings["orders"], root, base=base, kind=SpanKind.SERVER)
    t.span("db", "SELECT", *timings["db1"], orders, base=base, kind=SpanKind.CLIENT)
    t.span("db", "SELECT", *timings["db2"], orders, base=base, kind=SpanKind.CLIENT)
    t.span("email", "send", *timings["email"], root, base=base, kind=SpanKind.CONSUMER, error=error)
    return hexid(root)[0]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, Traces]]:
    with in_process(tmp_path_factory.mktemp("trace-analysis")) as server:
        t = Telemetry(server.otlp)
        a = send_checkout(
            t,
            NOW - 5 * 60_000 * MS,
            {"root": (0, 100), "orders": (10, 60), "db1": (15, 25), "db2": (30, 45), "email": (50, 90)},
        )
        b = send_checkout(
            t,
            NOW - 4 * 60_000 * MS,
            {"root": (0, 160), "orders": (10, 130), "db1": (15, 55), "db2": (50, 70), "email": (120, 150)},
            error=True,
        )
        base = NOW - 3 * 60_000 * MS
        root = t.span("gw", "GET /checkout", 0, 50, base=base, kind=SpanKind.SERVER)
        t.span("cache", "get", 5, 10, root, base=base, kind=SpanKind.CLIENT)
        t.shutdown()
        server.drain()
        found = Traces(a, b, hexid(root)[0])

        def stored() -> bool:
            counts = {"a": 5, "b": 5, "c": 2}
            for name, count in counts.items():
                reply = httpx.get(f"{server.api}/api/v1/traces/{getattr(found, name)}/stats", timeout=30)
                if reply.status_code != 200 or reply.json()["total"]["count"] != count:
                    return False
            return True

        wait_until(stored, timeout=60)
        yield server, found


def stat(count: int, errors: int, total_ms: float, self_ms: float, min_ms: float, max_ms: float) -> dict:
    return {
        "count": count,
        "errors": errors,
        "total_ns": int(total_ms * MS),
        "self_ns": int(self_ms * MS),
        "avg_ns": total_ms * MS / count,
        "min_ns": int(min_ms * MS),
        "max_ns": int(max_ms * MS),
    }


def test_the_statistics_endpoint(srv) -> None:  # noqa: ANN001
    server, ids = srv
    reply = httpx.get(f"{server.api}/api/v1/traces/{ids.b.upper()}/stats", timeout=30)
    assert reply.status_code == 200
    body = reply.json()
    # gw [0,160] less orders [10,130] and email [120,150]: 20. orders [10,130] less the db calls
    # [15,55] and [50,70] (union 55): 65.
    expected = [
        ("db", stat(2, 0, 60, 60, 20, 40), [("SELECT", stat(2, 0, 60, 60, 20, 40))]),
        ("email", stat(1, 1, 30, 30, 30, 30), [("send", stat(1, 1, 30, 30, 30, 30))]),
        ("gw", stat(1, 0, 160, 20, 160, 160), [("GET /checkout", stat(1, 0, 160, 20, 160, 160))]),
        ("orders", stat(1, 0, 120, 65, 120, 120), [("POST /orders", stat(1, 0, 120, 65, 120, 120))]),
    ]
    assert body["trace_id"] == ids.b and body["duration_ns"] == 160 * MS
    assert body["total"] == stat(5, 1, 370, 175, 20, 160)
    got = [
        (
            s["service"],
            {k: v for k, v in s.items() if k not in ("service", "operations")},
            [(op["operation"], {k: v for k, v in op.items() if k != "operation"}) for op in s["operations"]],
        )
        for s in body["services"]
    ]
    assert got == expected
    a = httpx.get(f"{server.api}/api/v1/traces/{ids.a}/stats", timeout=30).json()
    assert a["total"] == stat(5, 0, 215, 110, 10, 100)


def test_the_compare_endpoint(srv) -> None:  # noqa: ANN001
    server, ids = srv
    reply = httpx.get(f"{server.api}/api/v1/traces/compare", params={"a": ids.a, "b": ids.b}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["a"] == {"trace_id": ids.a, "span_count": 5, "duration_ns": 100 * MS}
    assert body["b"] == {"trace_id": ids.b, "span_count": 5, "duration_ns": 160 * MS}
    assert (body["only_a"], body["only_b"]) == (0, 0)
    rows = [
        (n["depth"], n["parent"], n["service"], n["operation"], n["presence"], n["count_a"], n["count_b"])
        + (n["total_a_ns"], n["total_b_ns"], n["total_diff_ns"], n["total_diff_percent"])
        for n in body["nodes"]
    ]
    assert rows == [
        (0, -1, "gw", "GET /checkout", "both", 1, 1, 100 * MS, 160 * MS, 60 * MS, 60.0),
        (1, 0, "email", "send", "both", 1, 1, 40 * MS, 30 * MS, -10 * MS, -25.0),
        (1, 0, "orders", "POST /orders", "both", 1, 1, 50 * MS, 120 * MS, 70 * MS, 140.0),
        (2, 2, "db", "SELECT", "both", 2, 2, 25 * MS, 60 * MS, 35 * MS, 140.0),
    ]
    other = httpx.get(
        f"{server.api}/api/v1/traces/compare", params={"a": ids.a, "b": ids.c}, timeout=30
    ).json()
    assert [(n["service"], n["presence"]) for n in other["nodes"]] == [
        ("gw", "both"),
        ("cache", "b"),
        ("email", "a"),
        ("orders", "a"),
        ("db", "a"),
    ]
    assert (other["only_a"], other["only_b"]) == (3, 1)


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("/api/v1/traces/xyz/stats", {}, 400, "32 hex digits"),
        (f"/api/v1/traces/{UNKNOWN}/stats", {}, 404, UNKNOWN),
        (f"/api/v1/traces/{UNKNOWN}/stats", {"sort": "self"}, 400, "sort"),
        ("/api/v1/traces/compare", {"a": "nothex", "b": UNKNOWN}, 400, "a: trace id must be 32 hex digits"),
        ("/api/v1/traces/compare", {"a": UNKNOWN}, 400, "b: a trace id is required"),
        ("/api/v1/traces/compare", {"a": UNKNOWN, "b": UNKNOWN, "c": "1"}, 400, "unknown parameter(s): c"),
        ("/api/v1/traces/compare", {"a": "A", "b": UNKNOWN}, 400, "a: "),
    ],
)
def test_json_errors(srv, path: str, params: dict, status: int, named: str) -> None:  # noqa: ANN001
    server, _ = srv
    reply = httpx.get(server.api + path, params=params, timeout=30)
    assert reply.status_code == status
    assert named in reply.json()["detail"]


def test_json_compare_of_an_unknown_trace_names_it(srv) -> None:  # noqa: ANN001
    server, ids = srv
    reply = httpx.get(f"{server.api}/api/v1/traces/compare", params={"a": ids.a, "b": UNKNOWN}, timeout=30)
    assert reply.status_code == 404
    assert reply.json() == {"detail": f"b: trace {UNKNOWN} not found"}


def test_page_errors(srv) -> None:  # noqa: ANN001
    server, ids = srv
    html = {"accept": "text/html"}
    cases = [
        ("/traces/xyz/stats", 400, "32 hex digits"),
        (f"/traces/{UNKNOWN}/stats", 404, UNKNOWN),
        (f"/traces/{ids.a}/stats?sort=fastest", 400, "sort"),
        (f"/traces/compare?a=zz&b={ids.b}", 400, "a: trace id must be 32 hex digits"),
        (f"/traces/compare?a={ids.a}&b=", 200, "Enter the id of trace B"),
        (f"/traces/compare?a={ids.a}&a={ids.b}", 400, "a may be given once"),
        ("/traces/compare?a=&b=nothex", 400, "b: trace id must be 32 hex digits"),
        (f"/traces/compare?a={ids.a}&b={UNKNOWN}", 404, UNKNOWN),
        ("/traces/compare", 200, "Enter the ids of two traces"),
    ]
    for url, status, text in cases:
        reply = httpx.get(server.api + url, headers=html, timeout=30)
        assert (url, reply.status_code) == (url, status)
        assert text in reply.text, url
    # An error keeps the form filled in.
    reply = httpx.get(f"{server.api}/traces/compare?a=zz&b={ids.b}", headers=html, timeout=30)
    assert f'value="{ids.b}"' in reply.text and 'value="zz"' in reply.text


def test_the_json_twins_are_in_the_openapi_description(srv) -> None:  # noqa: ANN001
    server, _ = srv
    paths = httpx.get(f"{server.api}/api/openapi.json", timeout=30).json()["paths"]
    assert "/api/v1/traces/compare" in paths and "/api/v1/traces/{trace_id}/stats" in paths
    assert "/traces/compare" not in paths and "/traces/{trace_id}/stats" not in paths


# -- in the browser ----------------------------------------------------------------------------


def test_the_statistics_and_compare_pages_in_a_browser(srv, page) -> None:  # noqa: ANN001
    server, ids = srv
    page.goto(f"{server.api}/traces/{ids.b}/stats")
    # Default order: self time, largest first; services too, by their subtotal.
    groups = page.locator("tbody.service-group")
    assert groups.evaluate_all("gs => gs.map(g => g.dataset.service)") == ["orders", "db", "email", "gw"]
    orders = page.locator("tbody[data-service=orders] tr.operation")
    assert orders.locator("td.self").inner_text() == "65.0 ms"
    assert orders.locator("td.total").inner_text() == "120.0 ms"
    total = page.locator("tfoot tr.total")
    assert total.locator("td.count").inner_text() == "5"
    assert total.locator("td.self").inner_text() == "175.0 ms"
    assert total.locator("td.errors").inner_text() == "1"
    link = page.locator("tbody[data-service=orders] th.op a")
    assert link.get_attribute("href") == f"/traces/{ids.b}?q=POST+%2Forders"
    assert page.locator("th[aria-sort=descending]").inner_text().startswith("Self time")
    with page.expect_navigation():
        page.locator("thead a", has_text="Total").click()
    assert page.url.endswith("?sort=total")
    assert groups.evaluate_all("gs => gs.map(g => g.dataset.service)") == ["gw", "orders", "db", "email"]
    screenshot(page, "trace-stats")

    # The compare link carries this trace as A; B is typed into the form.
    with page.expect_navigation():
        page.locator("a", has_text="Compare with another trace").click()
    assert page.locator("#compare-a").input_value() == ids.b
    page.fill("#compare-a", ids.a)
    page.fill("#compare-b", f"  {ids.c.upper()} ")
    with page.expect_navigation():
        page.click("form.compare button[type=submit]")
    rows = page.locator("table.trace-compare tbody tr")
    assert rows.count() == 5
    texts = [rows.nth(i).locator("th").inner_text() for i in range(5)]
    assert texts == ["gw GET /checkout", "cache get", "email send", "orders POST /orders", "db SELECT"]
    assert [rows.nth(i).locator("td.presence").inner_text() for i in range(5)] == [
        "both",
        "only in B",
        "only in A",
        "only in A",
        "only in A",
    ]
    assert " ".join(rows.nth(0).locator("td.diff").inner_text().split()) == "−50.0 ms (faster in B)"
    assert rows.nth(0).locator("td.percent").inner_text() == "−50.0%"
    assert page.locator(f"dl.compare-summary a[href='/traces/{ids.a}']").count() == 1
    assert page.locator(f"dl.compare-summary a[href='/traces/{ids.c}']").count() == 1
    screenshot(page, "trace-compare")
    # A phone: nothing makes the page wider than the screen.
    page.set_viewport_size({"width": 390, "height": 800})
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths == [390, 390]
    assert page.problems == []


def test_both_pages_work_without_javascript(srv, browser) -> None:  # noqa: ANN001
    server, ids = srv
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.api}/traces/{ids.a}/stats?sort=name")
        services = page.locator("tbody.service-group").evaluate_all("gs => gs.map(g => g.dataset.service)")
        assert services == ["db", "email", "gw", "orders"]
        assert page.locator("tbody[data-service=gw] td.self").first.inner_text() == "20.0 ms"
        page.goto(f"{server.api}/traces/compare")
        page.fill("#compare-a", ids.a)
        page.fill("#compare-b", ids.b)
        with page.expect_navigation():
            page.click("form.compare button[type=submit]")
        rows = page.locator("table.trace-compare tbody tr")
        assert rows.count() == 4
        assert rows.nth(3).locator("th").inner_text() == "db SELECT"
        assert rows.nth(3).get_attribute("data-depth") == "2"
        assert rows.nth(3).locator("td.percent").inner_text() == "+140.0%"
        with page.expect_navigation():
            page.locator("a", has_text="Swap A and B").click()
        assert page.locator("#compare-a").input_value() == ids.b
        assert (
            page.locator("table.trace-compare tbody tr")
            .first.locator("td.diff")
            .inner_text()
            .startswith("−60.0 ms")
        )
    finally:
        context.close()
