"""Stored service map (migration 0006, store/service_map.py) over real OTLP ingest into chDB.

chDB opens one data directory per process at a time: the tests with their own store (a ClickHouse
server stand-in, an in-process sloscope) come first, before the module's embedded store opens.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

import sloscope.app
from store import explore, migrations, red, service_map
from store.backend import Backend
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter
from store.server import ServerBackend
from store.sql import explore as explore_sql
from tests.chshim import ChShim
from tests.conftest import in_process, wait_until

MS = 10**6
MINUTE = 60 * 10**9
LAG = service_map.ROLL_UP_LAG_NS
# Aligned to 10 minutes, about two hours ago (inside the tables' 7-day TTL). Each test has its own
# stretch of time: A at BASE, B at BASE + 30 min, C 20 hours earlier (outside A's catch-up window).
BASE = (time.time_ns() // (10 * MINUTE) - 12) * 10 * MINUTE
REGION_B = BASE + 30 * MINUTE
REGION_C = BASE - 20 * 60 * MINUTE
# Late data: D is back-filled 4 hours back, E gets a late child, F parents and children in different
# minutes. Their roll-ups run at NOW, after every region's minutes ended.
REGION_D = BASE - 4 * 60 * MINUTE
REGION_E = BASE - 2 * 60 * MINUTE
REGION_F = BASE - 100 * MINUTE
REGION_G = BASE - 3 * 60 * MINUTE  # counts and spans of an insert seen at different moments
NOW = REGION_B + 10 * MINUTE + LAG
S = 10**9
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


@dataclass
class Graph:
    """Spans of a known call graph, per service, and the edges it must give (computed here)."""

    spans: dict[str, list[trace_pb2.Span]] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)  # (minute_s, caller, callee) -> n
    errors: Counter = field(default_factory=Counter)
    buckets: dict[tuple[int, str, str], Counter] = field(default_factory=dict)  # -> latency bucket counts
    ids: int = 0

    def span(
        self,
        service: str,
        trace: bytes,
        parent: trace_pb2.Span | None,
        parent_service: str,
        start: int,
        duration: int,
        error: bool = False,
        kind: int = SERVER,
    ) -> trace_pb2.Span:
        self.ids += 1
        span = trace_pb2.Span(
            trace_id=trace,
            span_id=self.ids.to_bytes(8, "big"),
            parent_span_id=parent.span_id if parent is not None else b"",
            name=f"{service} op",
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
        )
        if error:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        self.spans.setdefault(service, []).append(span)
        if parent is not None and parent_service != service:
            key = (start // MINUTE * 60, parent_service, service)
            self.calls[key] += 1
            self.errors[key] += error
            self.buckets.setdefault(key, Counter())[red.bucket_of(duration)] += 1
        return span

    def totals(self, start_ns: int, end_ns: int) -> dict[tuple[str, str], tuple[int, int]]:
        """(calls, errors) per edge of the minutes wholly inside the range."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for (minute, caller, callee), n in self.calls.items():
            if start_ns <= minute * 10**9 and (minute + 60) * 10**9 - 1 <= end_ns:
                calls, errors = out.get((caller, callee), (0, 0))
                out[caller, callee] = (calls + n, errors + self.errors[minute, caller, callee])
        return out


def call_graph(base: int, minutes: int, trace_prefix: int) -> Graph:
    """gateway -> orders -> payments / inventory, orders -> orders (same service: no edge).

    Minute ``i`` has ``3 + 2 * i`` requests, 7 s apart, so every minute's counts differ; a payment
    fails in every third request, inventory in every fifth. The last request of each minute starts
    0.5 s before the minute ends and its children start in the next minute (a parent one minute
    earlier than its children).
    """
    graph = Graph()
    n = 0
    for i in range(minutes):
        starts = [base + i * MINUTE + k * 7_000 * MS for k in range(2 + 2 * i)] + [
            base + (i + 1) * MINUTE - 500 * MS
        ]
        for start in starts:
            trace = bytes.fromhex(f"{trace_prefix:08x}{n:024x}")
            gw = graph.span("gateway", trace, None, "", start, 900 * MS)
            orders = graph.span("orders", trace, gw, "gateway", start + 600 * MS, 250 * MS)
            graph.span("orders", trace, orders, "orders", start + 602 * MS, 5 * MS, kind=CLIENT)
            graph.span(
                "payments", trace, orders, "orders", start + 610 * MS, (20 + 7 * n) * MS, error=n % 3 == 0
            )
            graph.span("inventory", trace, orders, "orders", start + 700 * MS, 40 * MS, error=n % 5 == 0)
            n += 1
    return graph


def write(backend: Backend, graph: Graph, token: str) -> None:
    """Each service in its own batch, children before parents (as separate exporters would)."""
    export(backend, {s: graph.spans[s] for s in ("payments", "inventory", "orders", "gateway")}, token)


def export(backend: Backend, spans: dict[str, list[trace_pb2.Span]], token: str) -> None:
    """One batch per service, in the order given, through the collector's writer."""
    writer = OtlpWriter(backend, [])
    for service, items in spans.items():
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
        rs.scope_spans.add().spans.extend(items)
        writer.write("traces", [request.SerializeToString()], f"{token}:{service}")


@dataclass
class Spans:
    """Hand-made spans (for hand-computed edges), kept per service until exported."""

    trace_prefix: int
    by_service: dict[str, list[trace_pb2.Span]] = field(default_factory=dict)
    ids: int = 0

    def add(
        self, service: str, trace: int, start: int, parent: trace_pb2.Span | None = None, error: bool = False
    ) -> trace_pb2.Span:
        self.ids += 1
        span = trace_pb2.Span(
            trace_id=bytes.fromhex(f"{self.trace_prefix:08x}{trace:024x}"),
            span_id=(self.trace_prefix << 32 | self.ids).to_bytes(8, "big"),
            parent_span_id=parent.span_id if parent is not None else b"",
            name=f"{service} op",
            kind=SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 10 * MS,
        )
        if error:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        self.by_service.setdefault(service, []).append(span)
        return span

    def export(self, backend: Backend, token: str) -> None:
        """Write what was added since the last export (children's services first, as added)."""
        export(backend, self.by_service, token)
        self.by_service = {}


# The definition of an edge, written out over raw spans without any time window, roll-up or
# splitting: a child starting in [start, end] whose parent (same tenant and trace) is in another service
# and started at most 5 minutes before the child or 1 minute after it.
REFERENCE_JOIN = """
SELECT parent.service_name AS caller, child.service_name AS callee, count() AS calls,
    countIf(child.status_code = 'ERROR') AS errors
FROM spans AS child
INNER JOIN spans AS parent
    ON child.trace_id = parent.trace_id AND child.parent_span_id = parent.span_id AND child.tenant = parent.tenant
WHERE child.timestamp >= fromUnixTimestamp64Nano({start:Int64})
  AND child.timestamp <= fromUnixTimestamp64Nano({end:Int64})
  AND child.parent_span_id != toFixedString('', 8)
  AND parent.service_name != child.service_name
  AND toUnixTimestamp64Nano(parent.timestamp) >= toUnixTimestamp64Nano(child.timestamp) - 300000000000
  AND toUnixTimestamp64Nano(parent.timestamp) <= toUnixTimestamp64Nano(child.timestamp) + 60000000000
GROUP BY caller, callee
"""


def reference(backend: Backend, start: int, end: int) -> dict[tuple[str, str], tuple[int, int]]:
    rows = backend.query_arrow(REFERENCE_JOIN, {"start": start, "end": end}).to_pylist()
    return {(r["caller"], r["callee"]): (r["calls"], r["errors"]) for r in rows}


def answer(backend: Backend, start: int, end: int) -> dict[tuple[str, str], tuple[int, int]]:
    """What /api/v1/dependencies answers (store.explore.dependencies), as (calls, errors) per edge."""
    return {
        (e["caller"], e["callee"]): (e["calls"], e["errors"])
        for e in explore.dependencies(backend, start, end)
    }


def stored(backend: Backend, start_s: int, end_s: int) -> dict[tuple[int, str, str], tuple[int, int]]:
    """The edges stored by each minute's latest recorded roll-up."""
    rows = backend.query_arrow(
        "SELECT toUInt32(minute) AS m, caller, callee, sum(calls) AS c, sum(errors) AS e "
        "FROM service_edges_1m WHERE minute >= toDateTime({a:UInt32}) AND minute < toDateTime({b:UInt32}) "
        "AND (minute, version) IN (SELECT minute, max(version) FROM service_edges_progress "
        "  WHERE minute >= toDateTime({a:UInt32}) AND minute < toDateTime({b:UInt32}) GROUP BY minute) "
        "GROUP BY m, caller, callee",
        {"a": start_s, "b": end_s},
    ).to_pylist()
    return {(r["m"], r["caller"], r["callee"]): (r["c"], r["e"]) for r in rows}


def expected(graph: Graph) -> dict[tuple[int, str, str], tuple[int, int]]:
    return {key: (n, graph.errors[key]) for key, n in graph.calls.items()}


def progress(backend: Backend, start_s: int, end_s: int) -> list[int]:
    """Minutes of [start_s, end_s) with any roll-up recorded."""
    return sorted(service_map.rolled_versions(backend, start_s, end_s))


def current(backend: Backend, start_s: int, end_s: int) -> list[int]:
    """Minutes of [start_s, end_s) that reads take from service_edges_1m (rolled up, no spans since)."""
    return sorted(service_map.current_minutes(backend, start_s * 10**9, end_s * 10**9 - 1))


# -- stores of their own (before the module's embedded store opens) -----------------------------


def test_server_backend_rolls_up_once(tmp_path) -> None:
    shim = ChShim(tmp_path / "shim")
    url = shim.start()
    backend = ServerBackend(url + "/default")
    try:
        migrations.migrate(backend)
        base = (time.time_ns() // (10 * MINUTE) - 3) * 10 * MINUTE
        graph = call_graph(base, 3, 0x5E)
        write(backend, graph, "server")
        now = base + 3 * MINUTE + MINUTE + LAG  # minutes 0-2 and the children in minute 3
        assert base // 10**9 + 180 in service_map.roll_up(backend, now)
        assert service_map.roll_up(backend, now) == []
        version = service_map.current_minutes(backend, base, base + MINUTE - 1)[base // 10**9]
        service_map.roll_up_minute(backend, base // 10**9, version)  # a second writer of the same minute
        assert stored(backend, base // 10**9, base // 10**9 + 240) == expected(graph)
        start, end = base - 13 * 10**9, base + 3 * MINUTE + 17 * 10**9
        assert explore.dependencies(backend, start, end, step_ns=MINUTE) == explore.dependencies(
            backend, start, end, step_ns=MINUTE, stored=False
        )
    finally:
        backend.close()
        shim.stop()


def test_server_runs_roll_up_in_background_and_survives_errors(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(sloscope.app, "SERVICE_MAP_INTERVAL_S", 0.2)
    real_roll_up = service_map.roll_up
    calls: list[int] = []
    written = threading.Event()

    def flaky(backend: Backend, now_ns: int, stop: threading.Event | None = None) -> list[int]:
        calls.append(now_ns)
        if len(calls) == 1:
            raise RuntimeError("first pass fails")
        written.wait(30)  # a pass before the spans are in would record their minutes as empty
        return real_roll_up(backend, now_ns, stop)

    monkeypatch.setattr(service_map, "roll_up", flaky)
    base = (time.time_ns() // MINUTE - 20) * MINUTE
    graph = call_graph(base, 2, 0xB6)
    with caplog.at_level(logging.ERROR, logger="sloscope"), in_process(tmp_path / "data") as running:
        write(running.backend, graph, "bg")
        written.set()
        wait_until(lambda: stored(running.backend, base // 10**9, base // 10**9 + 180) == expected(graph))
        assert len(calls) >= 2
        thread = running.server._roll_up_thread
    assert not thread.is_alive()  # close() stopped it
    assert any("service map roll-up failed" in r.getMessage() for r in caplog.records)


def _ms(ns: int) -> str:
    return f"{ns // MS}.{ns % MS:06d}"  # unix milliseconds with the exact nanoseconds


def test_the_apis_count_a_late_child_at_once_and_after_the_background_roll_up(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sloscope.app, "SERVICE_MAP_INTERVAL_S", 0.2)
    base = (time.time_ns() // MINUTE - 20) * MINUTE  # minutes the background pass rolls up at once
    b0 = base // 10**9
    spans = Spans(0xA9)
    # Four requests api -> users in minute b0 (the second and the fourth fail), and one that crosses
    # into b0 + 1 min. The fourth request's child arrives late.
    roots = [spans.add("api", k, base + (5 + 13 * k) * S) for k in range(4)]
    for k in range(3):
        spans.add("users", k, base + (5 + 13 * k) * S + 2 * MS, roots[k], error=k == 1)
    crossing = spans.add("api", 9, base + 59_990 * MS)
    spans.add("users", 9, base + 60_010 * MS, crossing)
    ranges = [
        (base, base + MINUTE - 1),
        (base - MINUTE, base + 3 * MINUTE),
        (base + 30 * S, base + 61 * S),  # partial minutes: requests 2 (and 3, late) and the crossing one
    ]
    with in_process(tmp_path / "data") as running:
        db = running.backend

        def api(start: int, end: int) -> dict[tuple[str, str], tuple[int, int]]:
            reply = httpx.get(
                f"{running.api}/api/v1/dependencies",
                params={"start": _ms(start), "end": _ms(end)},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            return {(e["caller"], e["callee"]): (e["calls"], e["errors"]) for e in reply.json()["edges"]}

        def jaeger(start: int, end: int) -> dict[tuple[str, str], int]:
            params = {"endTs": str(end // MS), "lookback": str((end - start) // MS)}
            reply = httpx.get(f"{running.api}/jaeger/api/dependencies", params=params, timeout=30)
            assert reply.status_code == 200, reply.text
            return {(d["parent"], d["child"]): d["callCount"] for d in reply.json()["data"]}

        spans.export(db, "api")
        wait_until(
            lambda: (
                stored(db, b0, b0 + 120) == {(b0, "api", "users"): (3, 1), (b0 + 60, "api", "users"): (1, 0)}
            )
        )
        wait_until(lambda: current(db, b0, b0 + 120) == [b0, b0 + 60])
        before = [{("api", "users"): (3, 1)}, {("api", "users"): (4, 1)}, {("api", "users"): (2, 0)}]
        assert [api(a, e) for a, e in ranges] == before == [reference(db, a, e) for a, e in ranges]
        spans.add("users", 3, base + (5 + 13 * 3) * S + 2 * MS, roots[3], error=True)
        spans.export(db, "api-late")
        after = [{("api", "users"): (4, 2)}, {("api", "users"): (5, 2)}, {("api", "users"): (3, 1)}]
        # At once (the pass may or may not have run yet) and once the background pass stored it again.
        assert [api(a, e) for a, e in ranges] == after == [reference(db, a, e) for a, e in ranges]
        wait_until(
            lambda: (
                stored(db, b0, b0 + 120) == {(b0, "api", "users"): (4, 2), (b0 + 60, "api", "users"): (1, 0)}
            )
        )
        wait_until(lambda: current(db, b0, b0 + 120) == [b0, b0 + 60])
        assert [api(a, e) for a, e in ranges] == after
        assert jaeger(base - MINUTE, base + 3 * MINUTE) == {("api", "users"): 5}


# -- the module's embedded store -----------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    store = EmbeddedBackend(tmp_path_factory.mktemp("service-map") / "store")
    migrations.migrate(store)
    try:
        yield store
    finally:
        store.close()


def test_latency_bucket_sql_is_red_1m_s(backend: EmbeddedBackend) -> None:
    durations = sorted(
        {0, 1, 999, 2**63 - 1, 10**13}
        | {b + d for b in red.LOWER_BOUNDS_NS for d in (-1, 0, 1) if b + d >= 0}
    )
    rows = backend.query_arrow(
        f"SELECT duration, {explore_sql.LATENCY_BUCKET} "
        "FROM (SELECT arrayJoin({d:Array(UInt64)}) AS duration) ORDER BY duration",
        {"d": durations},
    ).to_pylist()
    assert [r["lat_bucket"] for r in rows] == [red.bucket_of(d) for d in durations]


@pytest.fixture(scope="module")
def graph_a(backend: EmbeddedBackend) -> Graph:
    graph = call_graph(BASE, 5, 0xA1)
    write(backend, graph, "a")
    return graph


def test_known_graph_gives_exact_minutes(backend: EmbeddedBackend, graph_a: Graph) -> None:
    now = BASE + 6 * MINUTE + LAG
    # Two passes at once (two writers of the same minutes) store every minute once.
    results: list[list[int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(service_map.roll_up(backend, now))) for _ in "ab"
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    minutes = set(range(BASE // 10**9, BASE // 10**9 + 360, 60))
    assert minutes <= set(results[0]) | set(results[1])
    want = expected(graph_a)
    assert len(want) == 3 * 6  # three edges a minute; the last requests' children are in minute 5
    assert stored(backend, BASE // 10**9, BASE // 10**9 + 600) == want
    rows = backend.query_arrow(
        "SELECT toUInt32(minute) AS m, caller, callee, tupleElement(sumMap(latency), 1) AS ids, "
        "tupleElement(sumMap(latency), 2) AS counts, sum(duration_sum) AS total "
        "FROM service_edges_1m WHERE callee = 'payments' AND minute >= toDateTime({a:UInt32}) "
        "GROUP BY m, caller, callee",
        {"a": BASE // 10**9},
    ).to_pylist()
    assert rows and all(
        dict(zip(r["ids"], r["counts"], strict=True)) == graph_a.buckets[r["m"], r["caller"], r["callee"]]
        for r in rows
    )


def test_rolling_up_again_does_not_double_count(backend: EmbeddedBackend, graph_a: Graph) -> None:
    now = BASE + 6 * MINUTE + LAG
    service_map.roll_up(backend, now)
    assert service_map.roll_up(backend, now) == []  # nothing pending
    first = BASE // 10**9
    version = service_map.current_minutes(backend, BASE, BASE + MINUTE - 1)[first]
    service_map.roll_up_minute(backend, first, version)  # the same minute again, e.g. from another process
    service_map.roll_up_minute(backend, first, version)
    # A crash after the insert but before the record: the next pass writes the minute again.
    backend.command(
        "ALTER TABLE service_edges_progress DELETE WHERE minute = toDateTime({m:UInt32}) "
        "SETTINGS mutations_sync = 2",
        {"m": first + 60},
    )
    assert service_map.roll_up(backend, now) == [first + 60]
    assert stored(backend, first, first + 600) == expected(graph_a)


@pytest.fixture(scope="module")
def graph_b(backend: EmbeddedBackend) -> Graph:
    graph = call_graph(REGION_B, 5, 0xB1)
    write(backend, graph, "b")
    return graph


def test_lag_keeps_an_unfinished_minute_out(backend: EmbeddedBackend, graph_b: Graph) -> None:
    b0, b1 = REGION_B // 10**9, REGION_B // 10**9 + 60
    now = REGION_B + 2 * MINUTE + LAG - 1  # minute b1 ended a nanosecond less than the lag ago
    rolled = service_map.roll_up(backend, now)
    assert b0 in rolled and b1 not in rolled
    assert progress(backend, b0, b0 + 600) == [b0]
    assert {key[0] for key in stored(backend, b0, b0 + 600)} == {b0}
    assert service_map.roll_up(backend, now + 1) == [b1]
    assert stored(backend, b0, b1 + 60) == {k: v for k, v in expected(graph_b).items() if k[0] <= b1}


def test_answers_over_stored_and_recent_minutes_equal_the_join(
    backend: EmbeddedBackend, graph_b: Graph
) -> None:
    b0 = REGION_B // 10**9
    service_map.roll_up(backend, REGION_B + 2 * MINUTE + LAG)  # b0, b1 stored; b2 to b5 not
    assert progress(backend, b0, b0 + 600) == [b0, b0 + 60]
    start, end = REGION_B - 13 * 10**9, REGION_B + 6 * MINUTE + 17 * 10**9  # partial minutes at both ends
    cover = service_map.coverage(start, end, service_map.current_minutes(backend, start, end))
    assert cover.runs == [(b0, b0 + 120)] and sorted(cover.stored) == [b0, b0 + 60]
    assert cover.gaps == [(start, REGION_B - 1), (REGION_B + 2 * MINUTE, end)]
    for step in (None, MINUTE, 5 * MINUTE, 30 * 10**9, 3600 * 10**9):
        mixed = explore.dependencies(backend, start, end, step_ns=step)
        assert mixed == explore.dependencies(backend, start, end, step_ns=step, stored=False), step
    whole = explore.dependencies(backend, start, end)
    assert {(e["caller"], e["callee"]): (e["calls"], e["errors"]) for e in whole} == graph_b.totals(
        start, end
    )
    assert explore.dependencies(backend, start, end, limit=2) == whole[:2]
    # The stored minutes are read from the table (not joined again): they hold b0 and b1's edges.
    rows = service_map.stored_edges(backend, cover.stored, 1000)
    assert {(r["caller"], r["callee"]): (r["n_calls"], r["n_errors"]) for r in rows} == graph_b.totals(
        REGION_B, REGION_B + 2 * MINUTE - 1
    )


def test_a_range_of_decades_counts_only_the_rolled_minutes_windows(
    backend: EmbeddedBackend, graph_b: Graph, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jaeger's ``lookback`` may reach back to 1970: 29 million minutes. Counting each one's window
    took 2.5 minutes of Python for one request; only minutes with a recorded version can be current."""
    b0 = REGION_B // 10**9
    service_map.roll_up(backend, REGION_B + 2 * MINUTE + LAG)
    calls = Counter()
    real = service_map.window_of

    def counting(minute_s: int) -> tuple[int, int]:
        calls["window_of"] += 1
        return real(minute_s)

    monkeypatch.setattr(service_map, "window_of", counting)
    end = time.time_ns()
    current = service_map.current_minutes(backend, 0, end)
    assert {b0, b0 + 60} <= set(current)
    assert calls["window_of"] < 10_000, calls
    monkeypatch.undo()
    start, stop = REGION_B - 13 * 10**9, REGION_B + 6 * MINUTE
    assert current[b0] == service_map.current_minutes(backend, start, stop)[b0]


def test_a_pass_is_bounded_newest_first_and_rolls_up_old_minutes_with_spans(backend: EmbeddedBackend) -> None:
    graph = call_graph(REGION_C, 3, 0xC1)  # spans in minutes c0 to c0 + 3 (children of c2's last request)
    write(backend, graph, "c")
    c0 = REGION_C // 10**9
    late = REGION_C + service_map.MAX_CATCH_UP_NS + 10 * MINUTE  # back after a downtime of 6 h 10 min
    end = (late - LAG) // 10**9  # the newest minute that may be rolled up ends here
    pending = [p.minute for p in service_map.pending_minutes(backend, late)]
    # 355 empty minutes of the catch-up window [late - 6 h, end), and the 10 minutes before it whose
    # windows [m - 5 min, m + 2 min) hold C's spans: c0 - 1 min to c0 + 8 min.
    with_spans = list(range(c0 + 480, c0 - 61, -60))
    assert (
        pending
        == list(range(end - 60, c0 + 540, -60))[: service_map.MAX_MINUTES_PER_PASS - 5] + with_spans[:5]
    )
    assert service_map.roll_up(backend, late) == pending  # the first 360, newest first
    assert stored(backend, c0, c0 + 600) == {}
    # The next pass takes the rest: older than the catch-up window, but they hold spans.
    assert service_map.roll_up(backend, late) == with_spans[5:]
    assert stored(backend, c0, c0 + 600) == expected(graph)
    assert service_map.pending_minutes(backend, late) == []
    start, end_ns = REGION_C, REGION_C + 4 * MINUTE - 1
    assert current(backend, c0, c0 + 240) == [c0, c0 + 60, c0 + 120, c0 + 180]
    edges = explore.dependencies(backend, start, end_ns)
    assert {(e["caller"], e["callee"]): (e["calls"], e["errors"]) for e in edges} == graph.totals(
        start, end_ns
    )


def test_coverage_splits_ranges() -> None:
    m = 1_800_000_000 // 60 * 60  # a minute, in seconds
    ns = m * 10**9
    cover = service_map.coverage(ns + 1, ns + 5 * MINUTE, {m + 60: 3, m + 120: 1, m + 240: 7})
    assert cover.runs == [(m + 60, m + 180), (m + 240, m + 300)]
    assert cover.stored == {m + 60: 3, m + 120: 1, m + 240: 7}
    assert cover.gaps == [
        (ns + 1, ns + MINUTE - 1),
        (ns + 3 * MINUTE, ns + 4 * MINUTE - 1),
        (ns + 5 * MINUTE, ns + 5 * MINUTE),
    ]
    assert service_map.coverage(ns, ns + MINUTE - 1, {}).gaps == [(ns, ns + MINUTE - 1)]
    # Beyond MAX_RUNS runs, the shortest are joined instead (and not read from the table).
    scattered = [m + 120 * i for i in range(service_map.MAX_RUNS + 2)] + [m + 1200, m + 1260, m + 1320]
    cover = service_map.coverage(ns, ns + 30 * MINUTE, dict.fromkeys(scattered, 1))
    assert len(cover.runs) == service_map.MAX_RUNS and (m + 1200, m + 1380) in cover.runs
    assert sorted(cover.stored) == sorted(a for a in scattered if any(r[0] <= a < r[1] for r in cover.runs))
    covered = sum((b - a) * 10**9 for a, b in cover.runs) + sum(hi - lo + 1 for lo, hi in cover.gaps)
    assert covered == 30 * MINUTE + 1


def test_window_of_a_minute() -> None:
    m = 1_800_000_000 // 60 * 60
    # Children in [m, m + 60 s); parents from 5 minutes before the first to 1 minute after the last.
    assert service_map.window_of(m) == (m - 300, m + 120)
    params = service_map.join_params(m * 10**9, m * 10**9 + MINUTE - 1)
    assert params["parent_start"] == (m - 300) * 10**9 and params["parent_end"] == (m + 120) * 10**9 - 1


# -- late and back-filled spans (hand-computed edges) ----------------------------------------------


def test_back_filled_minutes_hours_in_the_past(backend: EmbeddedBackend) -> None:
    d0 = REGION_D // 10**9
    service_map.roll_up(backend, NOW)
    # Rolled up while empty, as before any back-fill: read from the table, no edges.
    assert current(backend, d0 - 600, d0 + 1200) == list(range(d0 - 600, d0 + 1200, 60))
    assert answer(backend, REGION_D, REGION_D + 10 * MINUTE - 1) == {}
    # Minute i gets i + 1 requests: shop -> cart (the first of each minute fails), cart -> cart (no edge),
    # cart -> db twice.
    spans = Spans(0xD1)
    for i in range(10):
        for k in range(i + 1):
            start = REGION_D + i * MINUTE + 5 * S + k * 3 * S
            shop = spans.add("shop", i * 100 + k, start)
            cart = spans.add("cart", i * 100 + k, start + 1 * MS, shop, error=k == 0)
            spans.add("cart", i * 100 + k, start + 2 * MS, cart)
            spans.add("db", i * 100 + k, start + 3 * MS, cart)
            spans.add("db", i * 100 + k, start + 4 * MS, cart)
    spans.export(backend, "d")
    whole = {("shop", "cart"): (55, 10), ("cart", "db"): (110, 0)}  # 1 + 2 + ... + 10 requests
    minutes_3_and_4 = {("shop", "cart"): (4 + 5, 2), ("cart", "db"): (8 + 10, 0)}
    # At once, before any roll-up: every minute whose window [m - 5 min, m + 2 min) the back-fill
    # touched (d0 - 1 min to d0 + 14 min) is joined from spans, not read stale from the table.
    touched = range(d0 - 60, d0 + 900, 60)
    assert current(backend, d0 - 600, d0 + 1200) == [
        m for m in range(d0 - 600, d0 + 1200, 60) if m not in touched
    ]
    assert answer(backend, REGION_D, REGION_D + 10 * MINUTE - 1) == whole
    assert answer(backend, REGION_D - 60 * MINUTE, REGION_D + 60 * MINUTE) == whole
    assert answer(backend, REGION_D + 3 * MINUTE, REGION_D + 5 * MINUTE - 1) == minutes_3_and_4
    # The next pass rolls up exactly those minutes again, newest first, each once.
    rolled = service_map.roll_up(backend, NOW)
    assert [m for m in rolled if d0 - 3600 <= m < d0 + 3600] == list(reversed(touched))
    assert stored(backend, d0 - 600, d0 + 1200) == {
        (d0 + 60 * i, caller, callee): (n * (i + 1), errors)
        for i in range(10)
        for caller, callee, n, errors in (("shop", "cart", 1, 1), ("cart", "db", 2, 0))
    }
    assert current(backend, d0 - 600, d0 + 1200) == list(range(d0 - 600, d0 + 1200, 60))
    assert answer(backend, REGION_D, REGION_D + 10 * MINUTE - 1) == whole
    assert answer(backend, REGION_D + 3 * MINUTE, REGION_D + 5 * MINUTE - 1) == minutes_3_and_4
    assert not [m for m in service_map.roll_up(backend, NOW) if d0 - 3600 <= m < d0 + 3600]


def test_a_child_arriving_after_its_minute_was_rolled_up(backend: EmbeddedBackend) -> None:
    e0 = REGION_E // 10**9 + 120
    spans = Spans(0xE1)
    roots = [spans.add("frontend", k, (e0 + 10 + 10 * k) * S) for k in range(3)]
    for k in (0, 1):
        spans.add("checkout", k, (e0 + 10 + 10 * k) * S + 5 * MS, roots[k])
    spans.export(backend, "e")
    service_map.roll_up(backend, NOW)
    assert stored(backend, e0 - 600, e0 + 600) == {(e0, "frontend", "checkout"): (2, 0)}
    # The third request's child arrives now, after its minute was rolled up.
    spans.add("checkout", 2, (e0 + 30) * S + 5 * MS, roots[2], error=True)
    spans.export(backend, "e-late")
    want = {("frontend", "checkout"): (3, 1)}
    # Minutes e0 - 1 min to e0 + 5 min have e0 in their window: joined until rolled up again.
    assert current(backend, e0 - 120, e0 + 480) == [e0 - 120, e0 + 360, e0 + 420]
    assert answer(backend, e0 * S, (e0 + 60) * S - 1) == want
    assert answer(backend, REGION_E, REGION_E + 10 * MINUTE - 1) == want
    rolled = service_map.roll_up(backend, NOW)
    assert [m for m in rolled if e0 - 1800 <= m < e0 + 900] == list(range(e0 + 300, e0 - 120, -60))
    assert stored(backend, e0 - 600, e0 + 600) == {(e0, "frontend", "checkout"): (3, 1)}
    assert current(backend, e0 - 120, e0 + 480) == list(range(e0 - 120, e0 + 480, 60))
    assert answer(backend, e0 * S, (e0 + 60) * S - 1) == want
    assert answer(backend, REGION_E, REGION_E + 10 * MINUTE - 1) == want


def test_parents_and_children_in_different_minutes(backend: EmbeddedBackend) -> None:
    f0 = REGION_F // 10**9 + 120

    def f(i: int) -> int:  # minute f0 + i, in ns
        return (f0 + 60 * i) * S

    spans = Spans(0xF1)
    web = spans.add("web", 1, f(0) + 59_800 * MS)
    spans.add("auth", 1, f(1) + 100 * MS, web)  # the call belongs to f1, its child's minute
    late_parent = spans.add("web", 2, f(1) + 59_900 * MS)
    spans.add("auth", 2, f(2) + 50 * MS, late_parent)  # in f2; its parent arrives later
    spans.by_service["web"].remove(late_parent)
    skewed = spans.add("web", 3, f(3) + 40 * S)
    spans.add("auth", 3, f(3) + 10 * S, skewed)  # parent 30 s after its child (clock skew): counted
    too_early = spans.add("web", 4, f(3) + 20 * S - 6 * MINUTE)
    spans.add("auth", 4, f(3) + 20 * S, too_early)  # parent 6 minutes before: not counted
    too_late = spans.add("web", 5, f(3) + 120 * S)
    spans.add("auth", 5, f(3) + 30 * S, too_late)  # parent 90 s after: not counted
    spans.export(backend, "f")
    one = {("web", "auth"): (1, 0)}
    checks = {
        (f(0), f(1) - 1): {},  # the parent's minute holds no call
        (f(1), f(2) - 1): one,
        (f(0) + 59_900 * MS, f(1) + 200 * MS): one,  # partial minutes; the parent is outside the range
        (f(2), f(3) - 1): {},  # the parent of its child has not arrived
        (f(3), f(4) - 1): one,
        (REGION_F, REGION_F + 10 * MINUTE - 1): {("web", "auth"): (2, 0)},
    }
    for (start, end), want in checks.items():
        assert answer(backend, start, end) == want == reference(backend, start, end), (start, end)
    service_map.roll_up(backend, NOW)
    assert stored(backend, f0 - 600, f0 + 600) == {
        (f0 + 60, "web", "auth"): (1, 0),
        (f0 + 180, "web", "auth"): (1, 0),
    }
    for (start, end), want in checks.items():
        assert answer(backend, start, end) == want, (start, end)
    # The late parent: its child's minute f2 counts the call at once, and stored after the next pass.
    spans.by_service = {"web": [late_parent]}
    spans.export(backend, "f-late")
    checks[f(2), f(3) - 1] = one
    checks[REGION_F, REGION_F + 10 * MINUTE - 1] = {("web", "auth"): (3, 0)}
    for _ in range(2):
        for (start, end), want in checks.items():
            assert answer(backend, start, end) == want == reference(backend, start, end), (start, end)
        service_map.roll_up(backend, NOW)
    assert stored(backend, f0 - 600, f0 + 600) == {(f0 + 60 * i, "web", "auth"): (1, 0) for i in (1, 2, 3)}
    series = explore.dependencies(backend, REGION_F, REGION_F + 10 * MINUTE - 1, step_ns=MINUTE)[0]["series"]
    assert [(int(p["time_unix_nano"]), p["calls"]) for p in series] == [(f(i), 1) for i in (1, 2, 3)]


def test_a_roll_up_never_records_a_count_whose_spans_it_cannot_see(backend: EmbeddedBackend) -> None:
    g0 = REGION_G // 10**9 + 120
    spans = Spans(0x61)
    on_time = spans.add("a", 1, (g0 + 10) * S)
    spans.add("b", 1, (g0 + 10) * S + 1 * MS, on_time)
    spans.export(backend, "g")
    service_map.roll_up(backend, NOW)
    assert stored(backend, g0, g0 + 60) == {(g0, "a", "b"): (1, 0)}
    # An insert whose counts are visible before its spans (the engine does not order them): the view
    # is detached and its row written by hand first, then the spans without the view.
    late_parent = spans.add("a", 2, (g0 + 19) * S)
    late = spans.add("b", 2, (g0 + 20) * S, late_parent)
    spans.by_service = {}
    row = backend.query_arrow(
        "SELECT cityHash64(toFixedString(unhex({t:String}), 16), toFixedString(unhex({p:String}), 8)) "
        "+ cityHash64(toFixedString(unhex({t:String}), 16), toFixedString(unhex({c:String}), 8)) AS h",
        {"t": late.trace_id.hex(), "p": late_parent.span_id.hex(), "c": late.span_id.hex()},
    ).to_pylist()[0]
    window = set(range(g0 - 60, g0 + 360, 60))  # the minutes whose window holds g0
    backend.command("DETACH TABLE span_counts_1m_mv")
    try:
        backend.command(
            "INSERT INTO span_counts_1m (minute, spans, span_hash) "
            "VALUES (toDateTime({m:UInt32}, 'UTC'), 2, {h:UInt64})",
            {"m": g0, "h": row["h"]},
        )
        assert current(backend, g0, g0 + 60) == []  # the count changed: joined when read
        # The spans seen differ from those counted: no version is recorded, the minutes wait.
        assert not window & set(service_map.roll_up(backend, NOW))
        assert answer(backend, g0 * S, (g0 + 60) * S - 1) == {("a", "b"): (1, 0)}  # what is visible
        export(backend, {"b": [late], "a": [late_parent]}, "g-late")  # now the spans, not counted again
    finally:
        backend.command("ATTACH TABLE span_counts_1m_mv")
    rolled = service_map.roll_up(backend, NOW)
    assert [m for m in rolled if g0 - 1800 <= m < g0 + 1800] == sorted(window, reverse=True)
    assert stored(backend, g0, g0 + 60) == {(g0, "a", "b"): (2, 0)}
    assert current(backend, g0, g0 + 60) == [g0]
    assert answer(backend, g0 * S, (g0 + 60) * S - 1) == {("a", "b"): (2, 0)}


def test_every_range_equals_the_join_over_raw_spans_and_wider_never_shows_fewer(
    backend: EmbeddedBackend,
) -> None:
    # One more late span, not rolled up: ranges mix stored, stale and partial minutes.
    spans = Spans(0xD2)
    shop = spans.add("shop", 1, REGION_D + 3 * MINUTE + 40 * S)
    spans.add("cart", 1, REGION_D + 3 * MINUTE + 41 * S, shop)
    spans.export(backend, "d-late")
    rng = random.Random(15)
    ranges = []
    for region in (BASE, REGION_B, REGION_C, REGION_D, REGION_E, REGION_F):
        for _ in range(3):
            start = region - rng.randrange(0, 15 * MINUTE)
            if rng.random() < 0.5:
                start = start // MINUTE * MINUTE  # whole minutes too, read from the table
            ranges.append((start, start + rng.randrange(MINUTE // 2, 25 * MINUTE)))
    ranges.append((REGION_C - 10 * MINUTE, REGION_B + 10 * MINUTE))  # all of it
    for wide_start, wide_end in ranges:
        wide = answer(backend, wide_start, wide_end)
        assert wide == reference(backend, wide_start, wide_end), (wide_start, wide_end)
        for _ in range(2):
            start = rng.randrange(wide_start, wide_end + 1)
            end = rng.randrange(start, wide_end + 1)
            narrow = answer(backend, start, end)
            assert narrow == reference(backend, start, end), (start, end)
            assert all(wide[edge][0] >= calls for edge, (calls, _) in narrow.items()), (start, end)
