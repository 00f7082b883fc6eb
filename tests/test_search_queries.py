"""Trace and log search (issue 15): attribute precedence, pages by trace start with a total and a
cursor, and exact times (unix milliseconds, RFC 3339 nanoseconds, ``now-2h``), over real chDB and
real OTLP/HTTP exports."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from slo.instants import UNIX_MILLISECONDS, UNIX_SECONDS, parse_instant_ns
from store.explore import encode_cursor
from tests.conftest import in_process
from tests.test_explore import Server as ExploreServer

PROTOBUF = {"Content-Type": "application/x-protobuf"}
MS = 10**6
SECOND = 10**9
MINUTE = 60 * SECOND
NOW = time.time_ns()
# Everything lies 20 to 30 minutes before the test started: inside now-1h, outside now-15m.
BASE = NOW - 30 * MINUTE
ENV = "deployment.environment"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _post(url: str, body: bytes) -> None:
    reply = httpx.post(url, content=body, headers=PROTOBUF, timeout=30)
    assert reply.status_code == 200, reply.text


def send_spans(otlp: str, resource: dict[str, str], spans: list[dict[str, Any]]) -> None:
    """One export of ``spans`` under one resource (``service.name`` among ``resource``)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(_kv(k, v) for k, v in resource.items())
    out = rs.scope_spans.add().spans
    for s in spans:
        span = out.add(
            trace_id=s["trace_id"],
            span_id=s["span_id"],
            parent_span_id=s.get("parent", b""),
            name=s.get("name", "op"),
            start_time_unix_nano=s["start"],
            end_time_unix_nano=s["start"] + s.get("duration", MS),
        )
        span.attributes.extend(_kv(k, v) for k, v in s.get("attrs", {}).items())
    _post(f"{otlp}/v1/traces", req.SerializeToString())


def send_logs(otlp: str, resource: dict[str, str], logs: list[dict[str, Any]]) -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(_kv(k, v) for k, v in resource.items())
    out = rl.scope_logs.add().log_records
    for entry in logs:
        record = out.add(time_unix_nano=entry["time"], severity_number=9)
        record.body.string_value = entry["body"]
        record.attributes.extend(_kv(k, v) for k, v in entry.get("attrs", {}).items())
    _post(f"{otlp}/v1/logs", req.SerializeToString())


def tid(prefix: int, n: int) -> bytes:
    return bytes.fromhex(f"{prefix:08x}{'0' * 16}{n:08x}")


def sid(n: int, i: int) -> bytes:
    return bytes.fromhex(f"{n:08x}{i:08x}")


def ms(ns: int) -> str:
    return str(ns // MS)


# -- the data ----------------------------------------------------------------------------------

# Precedence: the same key on the span (or log) and on its resource.
PREC_BASE = BASE + MINUTE
PREC_SHADOWED = tid(0xB1, 1)  # resource prod, span canary: not prod
PREC_PLAIN = tid(0xB1, 2)  # resource prod only: prod

# Pages: 7 traces whose root (page-gw) starts 1 s apart, traces 3 and 4 at the same instant (ties go
# by trace id); the child span (page-db) of an older trace starts later, so "newest matching span"
# and "newest trace start" disagree about every pair.
PAGE_BASE = BASE + 2 * MINUTE
N_PAGE = 7
PAGE_STARTS = {n: PAGE_BASE + (n if n < 4 else n - 1) * SECOND for n in range(N_PAGE)}
PAGE_ORDER = [  # newest start first, ties by trace id
    tid(0xC1, n).hex() for n in sorted(range(N_PAGE), key=lambda n: (-PAGE_STARTS[n], tid(0xC1, n).hex()))
]
PAGE_RANGE = {"start": ms(PAGE_BASE - SECOND), "end": ms(PAGE_BASE + MINUTE)}


# A trace that began a minute before the range (inside the 5-minute look back), its child in the
# range; and one that began in the range, before that child. Trace start orders them, not the spans
# seen in the range.
STRADDLE_BASE = BASE + 7 * MINUTE
STRADDLE_EARLY, STRADDLE_LATE = tid(0xE1, 1), tid(0xE1, 2)


def _edge_ms(rounds_up: bool) -> int:
    """A whole millisecond near BASE whose float product with 10**6 is off (above or below), where
    ``int(float(text) * 1_000_000)`` misses an item lying exactly on it. The two searches start
    100 s apart, so that the spans on them are never in each other's range."""
    first = (BASE + 3 * MINUTE) // MS + (0 if rounds_up else 100_000)
    for m in range(first, first + 10_000):
        off = int(float(m) * 1_000_000) - m * MS
        if (off > 0) if rounds_up else (off < 0):
            return m
    raise AssertionError("no millisecond with a float error found")


EDGE_START_MS = _edge_ms(rounds_up=True)  # a start parsed too late excludes the span on it
EDGE_END_MS = _edge_ms(rounds_up=False)  # an end parsed too early excludes the span on it
# A span between two whole milliseconds, for decimal milliseconds and RFC 3339 nanoseconds.
FINE_NS = (BASE + 5 * MINUTE) // MS * MS + 123_457


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, SECOND)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def load(otlp: str) -> None:
    send_spans(
        otlp,
        {"service.name": "prec-svc", ENV: "prod"},
        [
            dict(trace_id=PREC_SHADOWED, span_id=sid(1, 1), start=PREC_BASE, attrs={ENV: "canary"}),
            dict(trace_id=PREC_PLAIN, span_id=sid(1, 2), start=PREC_BASE + SECOND),
        ],
    )
    send_logs(
        otlp,
        {"service.name": "prec-svc", ENV: "prod"},
        [
            dict(time=PREC_BASE, body="shadowed", attrs={ENV: "canary"}),
            dict(time=PREC_BASE + SECOND, body="plain"),
        ],
    )
    roots, children = [], []
    for n in range(N_PAGE):
        trace = tid(0xC1, n)
        start = PAGE_STARTS[n]
        roots.append(dict(trace_id=trace, span_id=sid(n, 1), start=start, duration=20 * SECOND))
        children.append(
            dict(trace_id=trace, span_id=sid(n, 2), parent=sid(n, 1), start=start + (10 - n) * SECOND)
        )
    send_spans(otlp, {"service.name": "page-gw"}, roots)
    send_spans(otlp, {"service.name": "page-db"}, children)
    send_spans(
        otlp,
        {"service.name": "straddle-gw"},
        [
            dict(
                trace_id=STRADDLE_EARLY, span_id=sid(0xE1, 1), start=STRADDLE_BASE - MINUTE, duration=MINUTE
            ),
            dict(trace_id=STRADDLE_LATE, span_id=sid(0xE1, 3), start=STRADDLE_BASE + 5 * SECOND),
        ],
    )
    send_spans(
        otlp,
        {"service.name": "straddle-db"},
        [
            dict(
                trace_id=STRADDLE_EARLY,
                span_id=sid(0xE1, 2),
                parent=sid(0xE1, 1),
                start=STRADDLE_BASE + 10 * SECOND,
            ),
            dict(
                trace_id=STRADDLE_LATE,
                span_id=sid(0xE1, 4),
                parent=sid(0xE1, 3),
                start=STRADDLE_BASE + 6 * SECOND,
            ),
        ],
    )
    send_spans(
        otlp,
        {"service.name": "edge-svc"},
        [
            dict(trace_id=tid(0xD1, 1), span_id=sid(0xD1, 1), start=EDGE_START_MS * MS),
            dict(trace_id=tid(0xD1, 2), span_id=sid(0xD1, 2), start=EDGE_END_MS * MS),
            dict(trace_id=tid(0xD1, 3), span_id=sid(0xD1, 3), start=FINE_NS),
        ],
    )


class Server(ExploreServer):
    def trace_ids(self, **params: Any) -> list[str]:
        return [t["trace_id"] for t in self.ok("/api/v1/traces", **params)["traces"]]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with in_process(tmp_path_factory.mktemp("search-data")) as running:
        server = Server(running.server, running.otlp, running.api)
        load(server.otlp)
        server.drain()
        yield server


# -- 11: the item's own attribute first, then its resource's ------------------------------------

PREC_RANGE = {"start": ms(PREC_BASE - SECOND), "end": ms(PREC_BASE + MINUTE)}


def test_a_span_attribute_hides_the_resource_attribute_of_the_same_key(srv: Server) -> None:
    def ids(attr: str) -> list[str]:
        return srv.trace_ids(service="prec-svc", attr=attr, **PREC_RANGE)

    assert ids(f"{ENV}=prod") == [PREC_PLAIN.hex()]
    assert ids(f"{ENV}=canary") == [PREC_SHADOWED.hex()]
    assert ids(f"{ENV}=staging") == []


def test_a_log_attribute_hides_the_resource_attribute_of_the_same_key(srv: Server) -> None:
    def bodies(attr: str) -> list[str]:
        logs = srv.ok("/api/v1/logs", service="prec-svc", attr=attr, **PREC_RANGE)["logs"]
        return [entry["body"] for entry in logs]

    assert bodies(f"{ENV}=prod") == ["plain"]
    assert bodies(f"{ENV}=canary") == ["shadowed"]


# -- 12: pages are the head of the list, by trace start, with a total and a cursor ----------------


def test_limit_one_is_the_head_of_limit_two(srv: Server) -> None:
    for service in ("page-db", "page-gw"):
        one = srv.trace_ids(service=service, limit="1", **PAGE_RANGE)
        two = srv.trace_ids(service=service, limit="2", **PAGE_RANGE)
        assert one == PAGE_ORDER[:1] and two == PAGE_ORDER[:2], service


def _pages(srv: Server, limit: int, **params: str) -> list[dict[str, Any]]:
    pages = [srv.ok("/api/v1/traces", limit=str(limit), **params)]
    while pages[-1]["next_cursor"]:
        assert len(pages) <= N_PAGE, "the cursors do not end"
        pages.append(srv.ok("/api/v1/traces", limit=str(limit), cursor=pages[-1]["next_cursor"], **params))
    return pages


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 20])
def test_following_cursors_visits_every_match_once_in_order(srv: Server, limit: int) -> None:
    pages = _pages(srv, limit, service="page-db", **PAGE_RANGE)
    assert [t["trace_id"] for page in pages for t in page["traces"]] == PAGE_ORDER
    assert [page["total"] for page in pages] == [N_PAGE] * len(pages)
    assert [len(page["traces"]) for page in pages[:-1]] == [limit] * (len(pages) - 1)
    assert pages[-1]["next_cursor"] is None
    # The order is the summaries' trace start (newest first), ties by id (traces 3 and 4).
    starts = [(-int(t["start_time_unix_nano"]), t["trace_id"]) for page in pages for t in page["traces"]]
    assert starts == sorted(starts)
    assert len({t["start_time_unix_nano"] for page in pages for t in page["traces"]}) == N_PAGE - 1


def test_total_counts_matches_not_the_page(srv: Server) -> None:
    assert srv.ok("/api/v1/traces", service="page-db", limit="1", **PAGE_RANGE)["total"] == N_PAGE
    assert srv.ok("/api/v1/traces", service="nobody", **PAGE_RANGE) == {
        "traces": [],
        "total": 0,
        "next_cursor": None,
        "sort": "newest",
    }
    # A cursor past the last match: an empty page that still says how many match.
    past = encode_cursor(0, "0" * 32)
    reply = srv.ok("/api/v1/traces", service="page-db", cursor=past, **PAGE_RANGE)
    assert reply == {"traces": [], "total": N_PAGE, "next_cursor": None, "sort": "newest"}


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "!!!!",
        "MTIzOmFiYw",
        encode_cursor(1, "x" * 32),
        "A" * 200,
        encode_cursor(2**64, "0" * 32),
    ],
)
def test_a_bad_cursor_is_refused_with_a_message(srv: Server, cursor: str) -> None:
    reply = srv.get("/api/v1/traces", service="page-db", cursor=cursor, **PAGE_RANGE)
    assert reply.status_code == 400, reply.text
    assert reply.json()["detail"].startswith("cursor: ")


def test_a_trace_that_began_before_the_range_is_placed_by_its_start(srv: Server) -> None:
    window = {"start": ms(STRADDLE_BASE), "end": ms(STRADDLE_BASE + MINUTE)}
    reply = srv.ok("/api/v1/traces", service="straddle-db", limit="1", **window)
    assert [t["trace_id"] for t in reply["traces"]] == [STRADDLE_LATE.hex()] and reply["total"] == 2
    rest = srv.ok("/api/v1/traces", service="straddle-db", cursor=reply["next_cursor"], **window)["traces"]
    assert [t["trace_id"] for t in rest] == [STRADDLE_EARLY.hex()]
    assert rest[0]["start_time_unix_nano"] == str(STRADDLE_BASE - MINUTE)


def _page_ids(text: str) -> list[str]:
    return re.findall(r'data-trace-id="([0-9a-f]{32})"', text)


def test_the_search_page_says_the_total_and_links_the_next_page(srv: Server) -> None:
    reply = httpx.get(
        f"{srv.api}/traces", params={"service": "page-db", "limit": "3", "last": "1h"}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    assert f"{N_PAGE} matching traces" in reply.text
    seen = _page_ids(reply.text)
    for _ in range(N_PAGE):
        link = re.search(r'<a rel="next" class="next-page" href="([^"]+)"', reply.text)
        if not link:
            break
        reply = httpx.get(f"{srv.api}{html.unescape(link.group(1))}", timeout=30)
        assert reply.status_code == 200, reply.text
        assert f"{N_PAGE} matching traces" in reply.text
        seen += _page_ids(reply.text)
    assert seen == PAGE_ORDER
    bad = httpx.get(f"{srv.api}/traces", params={"service": "page-db", "cursor": "nope"}, timeout=30)
    assert bad.status_code == 400 and "cursor: &#39;nope&#39; is not a cursor" in bad.text


# -- 13: exact times, relative times --------------------------------------------------------------


def test_an_item_exactly_on_start_or_end_is_found(srv: Server) -> None:
    # The float error of these milliseconds took the span on the edge out of the range.
    assert srv.trace_ids(service="edge-svc", start=str(EDGE_START_MS), end=str(EDGE_START_MS + 1)) == [
        tid(0xD1, 1).hex()
    ]
    assert srv.trace_ids(service="edge-svc", start=str(EDGE_END_MS - 1), end=str(EDGE_END_MS)) == [
        tid(0xD1, 2).hex()
    ]


def _decimal_ms(ns: int) -> str:
    whole, rest = divmod(ns, MS)
    return f"{whole}.{rest:06d}"


def test_decimal_milliseconds_and_rfc3339_nanoseconds_are_exact(srv: Server) -> None:
    fine = [tid(0xD1, 3).hex()]
    for text in (_decimal_ms, _rfc3339):
        # Ranges of one nanosecond: ending on the span, starting on it, and either side of it.
        for start, end, found in (
            (FINE_NS - 1, FINE_NS, fine),
            (FINE_NS, FINE_NS + 1, fine),
            (FINE_NS + 1, FINE_NS + 2, []),
            (FINE_NS - 2, FINE_NS - 1, []),
        ):
            got = srv.trace_ids(service="edge-svc", start=text(start), end=text(end))
            assert got == found, (text(start), text(end))


def test_relative_times_in_the_api_and_the_page(srv: Server) -> None:
    every = set(PAGE_ORDER)
    assert set(srv.trace_ids(service="page-gw", start="now-1h")) == every
    assert set(srv.trace_ids(service="page-gw", start="now-2h", end="now")) == every
    assert srv.trace_ids(service="page-gw", start="now-15m") == []
    assert srv.trace_ids(service="page-gw", start="now-1d", end="now-45m") == []
    page = httpx.get(f"{srv.api}/traces", params={"service": "page-gw", "start": "now-1h", "end": "now"})
    assert page.status_code == 200 and set(_page_ids(page.text)) == every
    page = httpx.get(f"{srv.api}/traces", params={"service": "page-gw", "start": "now-30s"})
    assert page.status_code == 200 and _page_ids(page.text) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "now-soon"}, "start: 'soon' is not a duration"),
        ({"end": "yesterday"}, "end: 'yesterday' is not now, now-DURATION, RFC 3339 or unix milliseconds"),
        ({"start": "2026-01-01T00:00:00.5"}, "start: '2026-01-01T00:00:00.5' has no time zone"),
        ({"start": "now+1h"}, "start: 'now+1h' is not now"),
        ({"end": "1" * 50}, "end: '"),
    ],
)
def test_a_bad_time_is_refused_naming_the_parameter(
    srv: Server, params: dict[str, str], message: str
) -> None:
    for path in ("/api/v1/traces", "/api/v1/logs"):
        reply = srv.get(path, **params)
        assert reply.status_code == 400, reply.text
        assert reply.json()["detail"].startswith(message), reply.json()


def test_the_shared_parser() -> None:
    now = 1_764_000_000_123_456_789
    assert parse_instant_ns("now", "t", now) == now
    assert parse_instant_ns(" now-2h ", "t", now) == now - 2 * 3600 * SECOND
    assert parse_instant_ns("now-15m", "t", now) == now - 15 * MINUTE
    assert parse_instant_ns("now-30s", "t", now) == now - 30 * SECOND
    assert parse_instant_ns("now-1d", "t", now) == now - 86_400 * SECOND
    assert parse_instant_ns("1764000000123", "t", now) == 1_764_000_000_123 * MS
    assert parse_instant_ns("1764000000123.456789", "t", now) == 1_764_000_000_123_456_789
    assert parse_instant_ns("1764000000123.4567891", "t", now) == 1_764_000_000_123_456_789  # floor
    assert parse_instant_ns("-1.5", "t", now) == -1_500_000
    assert parse_instant_ns("1764000000.5", "t", now, UNIX_SECONDS) == 1_764_000_000_500_000_000
    assert parse_instant_ns("2025-11-24T16:00:00.123456789Z", "t", now) == 1_764_000_000_123_456_789
    assert parse_instant_ns("2025-11-24T18:00:00.1234567891+02:00", "t", now) == 1_764_000_000_123_456_789
    assert parse_instant_ns("2025-11-24T16:00:00Z", "t", now, UNIX_MILLISECONDS) == 1_764_000_000 * SECOND
    assert parse_instant_ns("1969-12-31T23:59:59.5Z", "t", now) == -SECOND // 2
