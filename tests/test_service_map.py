"""Stored service map (migration 0006, store/service_map.py) over real OTLP ingest into chDB.

chDB opens one data directory per process at a time: the tests with their own store (a ClickHouse
server stand-in, an in-process sloscope) come first, before the module's embedded store opens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

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
    writer = OtlpWriter(backend, [])
    for service in ("payments", "inventory", "orders", "gateway"):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
        rs.scope_spans.add().spans.extend(graph.spans[service])
        writer.write("traces", [request.SerializeToString()], f"{token}:{service}")


def stored(backend: Backend, start_s: int, end_s: int) -> dict[tuple[int, str, str], tuple[int, int]]:
    rows = backend.query_arrow(
        "SELECT toUInt32(minute) AS m, caller, callee, sum(calls) AS c, sum(errors) AS e "
        "FROM service_edges_1m WHERE minute >= toDateTime({a:UInt32}) AND minute < toDateTime({b:UInt32}) "
        "GROUP BY m, caller, callee",
        {"a": start_s, "b": end_s},
    ).to_pylist()
    return {(r["m"], r["caller"], r["callee"]): (r["c"], r["e"]) for r in rows}


def expected(graph: Graph) -> dict[tuple[int, str, str], tuple[int, int]]:
    return {key: (n, graph.errors[key]) for key, n in graph.calls.items()}


def progress(backend: Backend, start_s: int, end_s: int) -> list[int]:
    return service_map.rolled_minutes(backend, start_s * 10**9, end_s * 10**9 - 1)


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
        service_map.roll_up_minute(backend, base // 10**9)  # a second writer of the same minute
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
    service_map.roll_up_minute(backend, first)  # the same minute again, e.g. from another process
    service_map.roll_up_minute(backend, first)
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
    cover = service_map.coverage(start, end, service_map.rolled_minutes(backend, start, end))
    assert cover.runs == [(b0, b0 + 120)]
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
    rows = service_map.stored_edges(backend, cover.runs, 1000)
    assert {(r["caller"], r["callee"]): (r["n_calls"], r["n_errors"]) for r in rows} == graph_b.totals(
        REGION_B, REGION_B + 2 * MINUTE - 1
    )


def test_catch_up_is_bounded(backend: EmbeddedBackend) -> None:
    graph = call_graph(REGION_C, 3, 0xC1)
    write(backend, graph, "c")
    c0 = REGION_C // 10**9
    late = REGION_C + service_map.MAX_CATCH_UP_NS + 10 * MINUTE  # back after a downtime of 6 h 10 min
    pending = service_map.pending_minutes(backend, late)
    assert (
        pending[0] == (late - service_map.MAX_CATCH_UP_NS) // 10**9
        and pending[-1] == (late - LAG) // 10**9 - 60
    )
    service_map.roll_up(backend, late)
    assert progress(backend, c0, c0 + 600) == [] and stored(backend, c0, c0 + 600) == {}
    # Those minutes are still answered, by the join.
    start, end = REGION_C, REGION_C + 4 * MINUTE - 1
    edges = explore.dependencies(backend, start, end)
    assert {(e["caller"], e["callee"]): (e["calls"], e["errors"]) for e in edges} == graph.totals(start, end)
    # Within the bound, they are rolled up.
    service_map.roll_up(backend, REGION_C + 5 * MINUTE + LAG)
    assert stored(backend, c0, c0 + 600) == expected(graph)


def test_coverage_splits_ranges() -> None:
    m = 1_800_000_000 // 60 * 60  # a minute, in seconds
    ns = m * 10**9
    cover = service_map.coverage(ns + 1, ns + 5 * MINUTE, [m + 60, m + 120, m + 240])
    assert cover.runs == [(m + 60, m + 180), (m + 240, m + 300)]
    assert cover.gaps == [
        (ns + 1, ns + MINUTE - 1),
        (ns + 3 * MINUTE, ns + 4 * MINUTE - 1),
        (ns + 5 * MINUTE, ns + 5 * MINUTE),
    ]
    assert service_map.coverage(ns, ns + MINUTE - 1, []).gaps == [(ns, ns + MINUTE - 1)]
    # Beyond MAX_RUNS runs, the shortest are joined instead.
    scattered = [m + 120 * i for i in range(service_map.MAX_RUNS + 2)] + [m + 1200, m + 1260, m + 1320]
    cover = service_map.coverage(ns, ns + 30 * MINUTE, scattered)
    assert len(cover.runs) == service_map.MAX_RUNS and (m + 1200, m + 1380) in cover.runs
    covered = sum((b - a) * 10**9 for a, b in cover.runs) + sum(hi - lo + 1 for lo, hi in cover.gaps)
    assert covered == 30 * MINUTE + 1
