"""Log views: the volume histogram by severity, the lines around a line, and the live tail, over logs
sent through the real OpenTelemetry SDK and its OTLP/HTTP log exporter; one browser test of the page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import InProcess, in_process, screenshot, wait_until
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import TraceFlags

MS = 10**6
S = 10**9
NOW = time.time_ns()
# Histogram data: ten whole minutes from a 10-minute boundary 40 to 50 minutes back (in the last hour).
H0 = (NOW - 40 * 60 * S) // (600 * S) * (600 * S)
H_END = H0 + 10 * 60 * S
# Context data: one service, one trace, 55 minutes back.
C0 = NOW - 55 * 60 * S
TRACE = 0x5B8EFFF798038103D269B633813FC60C
TRACE_HEX = f"{TRACE:032x}"
SPANS = [0xEEE19B7EC3C1B170 + i for i in range(3)]
# Tail data: 20 minutes back (inside the tail's hour, older than its settling delay).
T1 = NOW - 20 * 60 * S


class Logs:
    """One LoggerProvider per service, exporting through OTLP/HTTP; ``flush`` makes the lines stored."""

    def __init__(self, server: InProcess) -> None:
        self.server = server
        self.providers: dict[str, tuple[LoggerProvider, Any]] = {}

    def logger(self, service: str) -> Any:
        if service not in self.providers:
            provider = LoggerProvider(resource=Resource.create({"service.name": service}))
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    OTLPLogExporter(endpoint=f"{self.server.otlp}/v1/logs"), schedule_delay_millis=100
                )
            )
            self.providers[service] = (provider, provider.get_logger("log-views-test"))
        return self.providers[service][1]

    def emit(
        self,
        service: str,
        at_ns: int,
        body: str,
        severity: str = "INFO",
        trace_id: int = 0,
        span_id: int = 0,
        observed_ns: int | None = None,
        **attrs: Any,
    ) -> None:
        self.logger(service).emit(
            LogRecord(
                timestamp=at_ns,
                observed_timestamp=observed_ns,
                trace_id=trace_id,
                span_id=span_id,
                trace_flags=TraceFlags(1) if trace_id else None,
                severity_number=getattr(SeverityNumber, severity),
                severity_text=severity,
                body=body,
                attributes=attrs,
            )
        )

    def flush(self) -> None:
        for provider, _ in self.providers.values():
            provider.force_flush()
        self.server.drain()

    def shutdown(self) -> None:
        for provider, _ in self.providers.values():
            provider.shutdown()


# (service, offset from H0 in seconds, severity): 11 one-minute buckets from H0 to H_END (included).
HISTOGRAM_LINES = [
    ("hist-a", 5, "INFO"),
    ("hist-a", 5, "INFO"),
    ("hist-b", 5, "WARN"),
    ("hist-a", 65, "ERROR"),
    ("hist-b", 70, "DEBUG"),
    ("hist-a", 130, "FATAL"),
    ("hist-a", 131, "TRACE"),
    ("hist-b", 599, "INFO2"),  # INFO2 is severity 10: class INFO
    ("hist-a", 600, "ERROR"),  # exactly at the range's end: inside it, in the 11th bucket
    ("hist-a", -1, "ERROR"),  # a second before the range: not counted
    ("hist-a", 601, "ERROR"),  # after it: not counted
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("log-views")) as srv:
        logs = Logs(srv)
        for service, offset_s, severity in HISTOGRAM_LINES:
            logs.emit(service, H0 + offset_s * S, f"hist line {offset_s}", severity)
        # Context: ctx lines at C0 + 0..9 ms, two more at C0 + 5 ms (three share it, with three spans);
        # the lines at even ms carry the trace; another service's line at C0 + 5 ms of the same trace.
        for i in range(10):
            if i == 5:
                for k, span in enumerate(SPANS):
                    logs.emit("ctx", C0 + 5 * MS, f"tie {k}", "WARN", TRACE, span)
            else:
                traced = i % 2 == 0
                logs.emit(
                    "ctx", C0 + i * MS, f"ctx {i}", "INFO", TRACE if traced else 0, SPANS[0] if traced else 0
                )
        logs.emit("ctx-other", C0 + 5 * MS, "other service, same trace", "INFO", TRACE, SPANS[0] + 9)
        logs.flush()
        srv.log_sender = logs  # type: ignore[attr-defined]
        yield srv
        logs.shutdown()


def get(server: InProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.api + path, params=params, timeout=30)


# -- histogram ---------------------------------------------------------------------------------


def counts(body: dict[str, Any]) -> list[dict[str, int]]:
    return [{k: v for k, v in b["counts"].items() if v} for b in body["buckets"]]


def test_histogram_counts_every_matching_log_per_minute_and_severity(server: InProcess) -> None:
    r = get(server, "/api/v1/logs/histogram", start=H0 // MS, end=H_END // MS, step=60, limit=1)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["step_seconds"] == 60
    assert body["severities"] == ["UNSPECIFIED", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    assert [b["start_unix_nano"] for b in body["buckets"]] == [str(H0 + i * 60 * S) for i in range(11)]
    assert counts(body) == [
        {"INFO": 2, "WARN": 1},
        {"ERROR": 1, "DEBUG": 1},
        {"FATAL": 1, "TRACE": 1},
        {},
        {},
        {},
        {},
        {},
        {},
        {"INFO": 1},
        {"ERROR": 1},
    ]
    assert body["total"] == 9  # not cut by limit=1
    # The same filters as the search: one service, a minimum severity.
    only_a = get(server, "/api/v1/logs/histogram", start=H0 // MS, end=H_END // MS, step=60, service="hist-a")
    assert [b["total"] for b in only_a.json()["buckets"]] == [2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    severe = get(
        server, "/api/v1/logs/histogram", start=H0 // MS, end=H_END // MS, step=300, severity_min="warn"
    ).json()
    assert counts(severe) == [{"WARN": 1, "ERROR": 1, "FATAL": 1}, {}, {"ERROR": 1}]


def test_histogram_picks_a_round_step_for_about_sixty_buckets(server: InProcess) -> None:
    hour = get(server, "/api/v1/logs/histogram", start=H0 // MS, end=(H0 + 3600 * S) // MS).json()
    assert (hour["step_seconds"], len(hour["buckets"])) == (60, 61)
    quarter = get(server, "/api/v1/logs/histogram", start=H0 // MS, end=(H0 + 900 * S) // MS).json()
    assert (quarter["step_seconds"], len(quarter["buckets"])) == (15, 61)
    day = get(server, "/api/v1/logs/histogram", start=H0 // MS, end=(H0 + 86400 * S) // MS).json()
    assert day["step_seconds"] == 1800


# -- context -----------------------------------------------------------------------------------


def times(lines: list[dict[str, Any]]) -> list[int]:
    return [(int(line["time_unix_nano"]) - C0) // MS for line in lines]


def test_context_of_a_service_returns_ties_whole_and_marks_the_line(server: InProcess) -> None:
    at = C0 + 5 * MS
    r = get(server, "/api/v1/logs/context", at=at, service="ctx", n=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["by"] == "service"
    # before: the newest 2 at or before the line, all three at its nanosecond; after: the oldest 2.
    assert times(body["lines"]) == [5, 5, 5, 6, 7]
    assert [line["is_target"] for line in body["lines"]] == [True, True, True, False, False]
    assert body["earlier_anchor"] == str(at - 1) and body["later_anchor"] == str(C0 + 7 * MS)
    # The span id tells the three apart.
    one = get(server, "/api/v1/logs/context", at=at, service="ctx", span_id=f"{SPANS[1]:016x}", n=2).json()
    assert [line["body"] for line in one["lines"] if line["is_target"]] == ["tie 1"]
    # Earlier page: strictly before the oldest shown; later page: after the newest.
    earlier = get(server, "/api/v1/logs/context", at=at, service="ctx", n=2, anchor=at - 1).json()
    assert times(earlier["lines"]) == [3, 4, 5, 5, 5]
    later = get(server, "/api/v1/logs/context", at=at, service="ctx", n=2, anchor=C0 + 7 * MS).json()
    assert times(later["lines"]) == [6, 7, 8, 9] and later["later_anchor"] == str(C0 + 9 * MS)
    last = get(server, "/api/v1/logs/context", at=at, service="ctx", n=2, anchor=C0 + 9 * MS).json()
    assert times(last["lines"]) == [8, 9] and last["later_anchor"] is None  # nothing after: the end
    first = get(server, "/api/v1/logs/context", at=C0, service="ctx", n=4).json()
    assert times(first["lines"]) == [0, 1, 2, 3, 4] and first["earlier_anchor"] is None


def test_context_of_a_trace_spans_services(server: InProcess) -> None:
    at = C0 + 5 * MS
    body = get(server, "/api/v1/logs/context", at=at, trace_id=TRACE_HEX, service="ctx", n=3).json()
    assert body["by"] == "trace"
    # Traced lines: ctx at 0, 2, 4, 6, 8 ms, the three ties and ctx-other at 5 ms; the newest 3 at or
    # before 5 ms are the four at 5 ms (ties), the oldest 3 after are the two there are.
    assert times(body["lines"]) == [5, 5, 5, 5, 6, 8]
    assert [line["service_name"] for line in body["lines"]][:4] == ["ctx", "ctx", "ctx", "ctx-other"]
    assert [line["service_name"] for line in body["lines"] if line["is_target"]] == ["ctx"] * 3


# -- tail --------------------------------------------------------------------------------------


def tail(server: InProcess, after: str, **params: Any) -> dict[str, Any]:
    r = get(server, "/api/v1/logs/tail", service="tail", after=after, **params)
    assert r.status_code == 200, r.text
    return r.json()


def test_tail_cursor_delivers_each_new_line_once(server: InProcess) -> None:
    sender: Logs = server.log_sender  # type: ignore[attr-defined]
    observed = T1 + 7 * MS
    sender.emit("tail", T1, "first", observed_ns=observed)
    sender.emit("tail", T1, "second")
    sender.flush()
    page = tail(server, str(T1 - 60 * S))
    assert sorted(line["body"] for line in page["logs"]) == ["first", "second"]
    cursor = page["next_cursor"]
    assert cursor.startswith(f"{T1}.") and cursor.count(".") == 2
    assert tail(server, cursor) == {"logs": [], "next_cursor": cursor, "skipped": 0, "settle_ms": 2000}
    # A line at the same nanosecond arriving later is new; so is an exact copy of one already seen.
    sender.emit("tail", T1, "third")
    sender.emit("tail", T1, "first", observed_ns=observed)
    sender.flush()
    page = tail(server, cursor)
    assert sorted(line["body"] for line in page["logs"]) == ["first", "third"]
    cursor = page["next_cursor"]
    assert cursor.count(".") == 4 and tail(server, cursor)["logs"] == []
    # Later lines move the cursor on; more than the limit: the newest are sent, the rest counted.
    for k in range(1, 4):
        sender.emit("tail", T1 + k * MS, f"later {k}")
    sender.flush()
    page = tail(server, cursor, limit=2)
    assert [line["body"] for line in page["logs"]] == ["later 3", "later 2"]
    assert page["skipped"] == 1 and page["next_cursor"].startswith(f"{T1 + 3 * MS}.")
    assert tail(server, page["next_cursor"])["logs"] == []


def test_bad_parameters_are_400_naming_them(server: InProcess) -> None:
    cases = [
        ("/api/v1/logs/histogram", {"step": "0"}, "step"),
        ("/api/v1/logs/histogram", {"step": "1", "start": "now-7d"}, "step"),
        ("/api/v1/logs/histogram", {"stepp": "1"}, "stepp"),
        ("/api/v1/logs/histogram", {"trace_id": "xyz"}, "trace_id"),
        ("/api/v1/logs/context", {"service": "ctx"}, "at"),
        ("/api/v1/logs/context", {"at": "12x", "service": "ctx"}, "at"),
        ("/api/v1/logs/context", {"at": "1", "by": "service"}, "service"),
        ("/api/v1/logs/context", {"at": "1", "by": "host", "service": "x"}, "by"),
        ("/api/v1/logs/context", {"at": "1", "service": "x", "n": "501"}, "n"),
        ("/api/v1/logs/context", {"at": "1", "trace_id": "abc"}, "trace_id"),
        ("/api/v1/logs/context", {"at": "1", "service": "x", "span_id": "zz"}, "span_id"),
        ("/api/v1/logs/tail", {"after": "soon"}, "after"),
        ("/api/v1/logs/tail", {"limit": "1001"}, "limit"),
        ("/api/v1/logs/tail", {"severity_min": "LOUD"}, "severity_min"),
    ]
    for path, params, name in cases:
        r = get(server, path, **params)
        assert r.status_code == 400, (path, params, r.text)
        assert name in r.json()["detail"], (path, params, r.json())
    page = get(server, "/logs/context", at="soon", service="ctx")
    assert page.status_code == 400 and "at:" in page.text


def test_pages_render_the_histogram_and_the_context(server: InProcess) -> None:
    page = get(server, "/logs", start=str(H0 // MS), end=str(H_END // MS), service="hist-a")
    assert page.status_code == 200, page.text
    html = page.text
    assert "Volume: 6 matching logs, per 10 s" in html
    links = re.findall(r'<a class="bar" href="([^"]+)" aria-label="([^"]+)"', html)
    assert len(links) == 4  # four non-empty buckets
    href, label = links[0]
    assert label.endswith("2 logs (2 INFO)")
    query = parse_qs(urlsplit(href.replace("&amp;", "&")).query)
    assert query["service"] == ["hist-a"]
    assert int(query["start"][0]) * MS == H0 and query["end"][0] == f"{(H0 + 10 * S - 1) // MS}.999999"
    assert 'href="/logs/context?at=' in html and "by=service" in html
    assert 'class="live" hidden' not in html  # a fixed range: no live tail
    context = get(server, "/logs/context", at=str(C0 + 5 * MS), service="ctx", n="2")
    assert context.status_code == 200, context.text
    assert context.text.count(' target" aria-current="true"') == 3
    assert "the line itself marked (3 share its time)" in context.text
    assert 'rel="prev"' in context.text and 'rel="next"' in context.text


def test_browser_histogram_narrows_and_live_tail_follows(server: InProcess, page: Any) -> None:
    sender: Logs = server.log_sender  # type: ignore[attr-defined]
    page.goto(f"{server.api}/logs?service=live&last=15m")
    assert page.locator("section.volume svg").count() == 1
    live = page.locator(".live")
    assert live.is_visible()
    page.get_by_role("button", name="Live", exact=True).click()
    sender.emit("live", time.time_ns(), "arrived while watching", "ERROR")
    sender.flush()
    row = page.locator("table.logs tbody tr", has_text="arrived while watching")
    row.wait_for(timeout=10_000)
    assert page.locator(".live-status").inner_text().find("1 new line received") >= 0
    # Paused: a later line does not come until resumed.
    page.get_by_role("button", name="Pause", exact=True).click()
    sender.emit("live", time.time_ns(), "sent while paused")
    sender.flush()
    page.wait_for_timeout(4500)  # past the settling delay and two polls
    assert page.locator("table.logs tbody tr", has_text="sent while paused").count() == 0
    page.get_by_role("button", name="Pause", exact=True).click()
    page.locator("table.logs tbody tr", has_text="sent while paused").wait_for(timeout=10_000)
    assert page.locator("table.logs tbody tr").count() == 2
    # The bar of the minute holding both lines narrows the search to it.
    page.goto(f"{server.api}/logs?service=live&last=15m")
    bar = page.locator("section.volume a.bar")
    assert bar.count() >= 1
    bar.last.click()
    page.wait_for_load_state()
    start, end = (page.locator(f"input[name={n}]").input_value() for n in ("start", "end"))
    assert 0 < Decimal(end) - Decimal(start) < 15_000  # exact: a float rounds 14999.999999 up
    wait_until(lambda: page.locator("table.logs tbody tr").count() >= 1, 5)
    screenshot(page, "log-views")
    assert page.problems == []
