"""Burn attribution (alerts/attribution.py) over the real chDB engine: contributors' counts against a
hand-made model and against the SLI's own counts, example failing traces with their error logs, for
span (roll-up and raw), log and metric SLIs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from alerts import attribution
from alerts.attribution import attribute
from alerts.model import Attribution
from slo import sli
from slo.model import Filter, LogFilter, LogSli, MetricSelector, MetricSli, Slo, SpanSli
from store import migrations
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter

S = 10**9
MS = 10**6
MINUTES = 10
# A whole hour, 2 to 3 hours ago: inside every table's retention, and a fixed minute grid.
BASE_S = (int(time.time()) // 3600 - 3) * 3600
START_S, END_S = BASE_S, BASE_S + MINUTES * 60
THRESHOLD_MS = 100  # a bound of red_1m's buckets and of the histogram below
BOUNDS = [50.0, 100.0, 250.0]
LEGACY = "legacy"  # the same spans, and a minute rolled up before migration 0007
OPERATIONS = (("GET /items", "/items"), ("POST /checkout", "/checkout"), ("GET /health", ""))
DELTA = 1


@dataclass(frozen=True)
class Request:
    index: int
    minute: int
    start_ns: int
    operation: str
    route: str
    version: str
    tenant: str
    error: bool
    duration_ns: int

    @property
    def trace_id(self) -> str:
        return self.index.to_bytes(16, "big").hex()

    @property
    def span_id(self) -> str:
        return self.index.to_bytes(8, "big").hex()

    @property
    def slow(self) -> bool:
        return self.duration_ns > THRESHOLD_MS * MS


def requests() -> list[Request]:
    """Deterministic traffic: version 2.0 breaks checkout, other errors and slow requests spread
    unevenly; some durations sit exactly on the latency threshold (good: bad is strictly slower)."""
    out = []
    for m in range(MINUTES):
        for i in range(12):
            operation, route = OPERATIONS[i % 3]
            version = "2.0" if i % 4 == 0 else "1.0"
            error = (operation == "POST /checkout" and version == "2.0") or (m + i) % 7 == 0
            duration_ms = {0: 300, 1: 100}.get((m * i + 2 * i + m) % 5, 20)
            start_ns = (BASE_S + m * 60 + i * 4) * S + 7 * MS
            out.append(
                Request(
                    len(out) + 1,
                    m,
                    start_ns,
                    operation,
                    route,
                    version,
                    "t1" if i % 2 else "t2",
                    error,
                    duration_ms * MS,
                )
            )
    return out


REQUESTS = requests()
#: The last failing request: its trace logs many and long error lines.
LONG_LOG_TRACE = max(r.index for r in REQUESTS if r.error)


def model(bad: str, tenant: str | None = None) -> tuple[dict[tuple[str, str, str], tuple[int, int]], int]:
    """Per (operation, route, version): (bad, total); and the window's bad events."""
    parts: dict[tuple[str, str, str], list[int]] = {}
    for r in REQUESTS:
        if tenant is not None and r.tenant != tenant:
            continue
        is_bad = {"error": r.error, "slow": r.slow, "either": r.error or r.slow}[bad]
        counts = parts.setdefault((r.operation, r.route, r.version), [0, 0])
        counts[0] += is_bad
        counts[1] += 1
    return {k: (b, t) for k, (b, t) in parts.items() if b}, sum(b for b, _ in parts.values())


# -- writing the traffic ---------------------------------------------------------------------------


def span_request(service: str = "shop") -> bytes:
    """Each request a SERVER root span (errors half as status ERROR, half as HTTP 503), with a
    failing, slow CLIENT child that is not a request; one resource per service.version."""
    request = ExportTraceServiceRequest()
    for version in ("1.0", "2.0"):
        rs = request.resource_spans.add()
        for key, value in (("service.name", service), ("service.version", version)):
            rs.resource.attributes.add(key=key).value.string_value = value
        scope = rs.scope_spans.add()
        for r in (r for r in REQUESTS if r.version == version):
            span = scope.spans.add(
                trace_id=bytes.fromhex(r.trace_id),
                span_id=bytes.fromhex(r.span_id),
                name=r.operation,
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=r.start_ns,
                end_time_unix_nano=r.start_ns + r.duration_ns,
            )
            if r.route:
                span.attributes.add(key="http.route").value.string_value = r.route
            span.attributes.add(key="tenant").value.string_value = r.tenant
            status = 503 if r.error and r.index % 2 else 200
            span.attributes.add(key="http.response.status_code").value.int_value = status
            if r.error and status == 200:
                span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            child = scope.spans.add(
                trace_id=bytes.fromhex(r.trace_id),
                span_id=(r.index + 10_000).to_bytes(8, "big"),
                parent_span_id=bytes.fromhex(r.span_id),
                name="GET dep",
                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=r.start_ns,
                end_time_unix_nano=r.start_ns + 5 * S,
            )
            child.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return request.SerializeToString()


def long_line(n: int) -> str:
    return f"stack line {n}\n    at " + "x" * 1000


def log_request() -> bytes:
    """Per request an INFO or ERROR record in its span (attribute event=request: the log SLI's
    events); per error a WARN (not an error line); the last failing trace logs 6 more error lines,
    long ones; a downstream service logs an error too."""
    request = ExportLogsServiceRequest()
    for service, version in (("shop", "1.0"), ("shop", "2.0"), ("payments", "")):
        rl = request.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = service
        if version:
            rl.resource.attributes.add(key="service.version").value.string_value = version
        scope = rl.scope_logs.add()

        def add(r: Request, at_ns: int, severity: int, body: str, event: bool = False, _scope=scope) -> None:
            record = _scope.log_records.add(
                time_unix_nano=at_ns,
                severity_number=severity,
                trace_id=bytes.fromhex(r.trace_id),
                span_id=bytes.fromhex(r.span_id),
            )
            record.body.string_value = body
            if r.route:
                record.attributes.add(key="http.route").value.string_value = r.route
            record.attributes.add(key="tenant").value.string_value = r.tenant
            if event:
                record.attributes.add(key="event").value.string_value = "request"

        for r in REQUESTS:
            if service == "payments":
                if r.index == LONG_LOG_TRACE:
                    add(r, r.start_ns + 2 * MS, 17, "payments: card processor unreachable")
                continue
            if r.version != version:
                continue
            add(
                r,
                r.start_ns + MS,
                17 if r.error else 9,
                f"request failed: {r.operation}" if r.error else "ok",
                event=True,
            )
            if r.error:
                add(r, r.start_ns + 3 * MS, 13, "retrying upstream")
            if r.index == LONG_LOG_TRACE:
                for n in range(6):
                    add(r, r.start_ns + (4 + n) * MS, 17, long_line(n))
    return request.SerializeToString()


def metric_request() -> bytes:
    """Delta counters per route and minute, the errors' points with an exemplar (the minute's last
    failing request of the route); a delta histogram whose exemplars are every request's duration."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "shop"
    sm = rm.scope_metrics.add()
    total = sm.metrics.add(name="requests_total")
    errors = sm.metrics.add(name="errors_total")
    durations = sm.metrics.add(name="duration", unit="ms")
    for metric in (total, errors):
        metric.sum.aggregation_temporality = DELTA
        metric.sum.is_monotonic = True
    durations.histogram.aggregation_temporality = DELTA
    for m in range(MINUTES):
        t = (BASE_S + (m + 1) * 60) * S
        for _, route in OPERATIONS:
            mine = [r for r in REQUESTS if r.minute == m and r.route == route]
            failed = [r for r in mine if r.error]
            for metric, value in ((total, len(mine)), (errors, len(failed))):
                p = metric.sum.data_points.add(
                    start_time_unix_nano=t - 60 * S, time_unix_nano=t, as_int=value
                )
                p.attributes.add(key="http.route").value.string_value = route
                if metric is errors and failed:
                    p.exemplars.add(
                        time_unix_nano=failed[-1].start_ns,
                        as_int=1,
                        trace_id=bytes.fromhex(failed[-1].trace_id),
                        span_id=bytes.fromhex(failed[-1].span_id),
                    )
            counts = [0] * (len(BOUNDS) + 1)
            for r in mine:
                counts[sum(r.duration_ns / MS > b for b in BOUNDS)] += 1
            h = durations.histogram.data_points.add(
                start_time_unix_nano=t - 60 * S,
                time_unix_nano=t,
                count=len(mine),
                sum=0.0,
                bucket_counts=counts,
                explicit_bounds=BOUNDS,
            )
            h.attributes.add(key="http.route").value.string_value = route
            for r in mine:
                h.exemplars.add(
                    time_unix_nano=r.start_ns,
                    as_double=r.duration_ns / MS,
                    trace_id=bytes.fromhex(r.trace_id),
                    span_id=bytes.fromhex(r.span_id),
                )
    return request.SerializeToString()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    store = EmbeddedBackend(tmp_path_factory.mktemp("attribution") / "store")
    migrations.migrate(store)
    writer = OtlpWriter(store, [])
    writer.write("traces", [span_request(), span_request(LEGACY)], "spans")
    writer.write("logs", [log_request()], "logs")
    writer.write("metrics", [metric_request()], "metrics")
    try:
        yield store
    finally:
        store.close()


def span_slo(group_by: tuple[str, ...] = (), service: str = "shop", **fields: object) -> Slo:
    return Slo("checkout", service, Decimal("99.9"), SpanSli(**fields), group_by=group_by)  # type: ignore[arg-type]


def as_model(result: Attribution) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {
        (c.operation, c.http_route, c.service_version): (int(c.bad), int(c.total))
        for c in result.contributors
    }


def sli_bad(backend: EmbeddedBackend, slo: Slo, key: tuple[str, ...] = ()) -> float:
    return float(sli.minute_counts(backend, slo, START_S, END_S)[key].bad.sum())


def recent_bad(bad: str, n: int, tenant: str | None = None) -> list[Request]:
    chosen = [
        r
        for r in REQUESTS
        if {"error": r.error, "slow": r.slow, "either": r.error or r.slow}[bad]
        and (tenant is None or r.tenant == tenant)
    ]
    return sorted(chosen, key=lambda r: r.start_ns, reverse=True)[:n]


def error_lines(r: Request) -> list[str]:
    """What the example of ``r`` should show: its ERROR lines (not the WARN), oldest first, 5 at most,
    long ones cut to MAX_LINE_CHARS with whitespace collapsed."""
    lines = [f"request failed: {r.operation}"] if r.error else []
    if r.index == LONG_LOG_TRACE:
        lines.append("payments: card processor unreachable")
        for n in range(6):
            flat = " ".join(long_line(n).split())
            lines.append(flat[: attribution.MAX_LINE_CHARS - 1] + "…")
    return lines[: attribution.MAX_LOG_LINES]


# -- span SLIs -------------------------------------------------------------------------------------

ERROR_SLO = span_slo(bad_error=True)
LATENCY_SLO = span_slo(bad_latency_ms=THRESHOLD_MS)
EITHER_SLO = span_slo(bad_error=True, bad_latency_ms=THRESHOLD_MS)
# Narrowed by an attribute red_1m does not keep: read from raw spans.
RAW_SLO = span_slo(
    bad_error=True, bad_latency_ms=THRESHOLD_MS, filters=(Filter("tenant", "in", ("t1", "t2")),)
)


@pytest.mark.parametrize(
    ("slo", "bad", "roll_up"),
    [
        (ERROR_SLO, "error", True),
        (LATENCY_SLO, "slow", True),
        (EITHER_SLO, "either", True),
        (RAW_SLO, "either", False),
    ],
)
def test_contributors_are_exact_and_add_up_to_the_sli(
    backend: EmbeddedBackend, slo: Slo, bad: str, roll_up: bool
) -> None:
    assert sli.uses_roll_up(slo) is roll_up
    result = attribute(backend, slo, (), START_S, END_S, top=attribution.MAX_TOP)
    parts, window_bad = model(bad)
    assert as_model(result) == parts
    # The failing CLIENT children are not requests; GET /health has no route: '' (as red_1m has it).
    assert all(c.operation != "GET dep" for c in result.contributors)
    assert ("GET /health", "", "1.0") in parts
    assert sum(c.bad for c in result.contributors) == result.bad == window_bad == sli_bad(backend, slo)
    assert result.total == len(REQUESTS) and result.omitted == 0
    bads = [c.bad for c in result.contributors]
    assert bads == sorted(bads, reverse=True) and len(set(bads)) > 2


def test_minutes_rolled_up_before_migration_7_are_read_from_spans(backend: EmbeddedBackend) -> None:
    """A red_1m row without the 0007 columns lacks latency details: the window is read from spans."""
    slo = span_slo(service=LEGACY, bad_error=True, bad_latency_ms=THRESHOLD_MS)
    backend.command(
        "INSERT INTO red_1m (minute, service_name, operation, kind, requests, errors, latency) "
        "VALUES (toDateTime({m:UInt32}, 'UTC'), {s:String}, 'GET /items', 'SERVER', 1000, 1000, ([1], [1000]))",
        {"m": START_S + 120, "s": LEGACY},
    )
    result = attribute(backend, slo, (), START_S, END_S, top=attribution.MAX_TOP)
    assert as_model(result) == model("either")[0]
    assert result.bad == sli_bad(backend, slo)


def test_top_keeps_the_largest_and_counts_the_rest(backend: EmbeddedBackend) -> None:
    result = attribute(backend, ERROR_SLO, (), START_S, END_S, top=2)
    parts, window_bad = model("error")
    ranked = sorted(parts.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
    assert list(as_model(result).items()) == ranked[:2]
    # version 2.0 broke checkout: it leads.
    assert (
        result.contributors[0].operation == "POST /checkout"
        and result.contributors[0].service_version == "2.0"
    )
    assert result.omitted == len(parts) - 2 and result.bad == window_bad


@pytest.mark.parametrize(
    ("slo", "bad"), [(ERROR_SLO, "error"), (LATENCY_SLO, "slow"), (EITHER_SLO, "either")]
)
def test_examples_are_the_most_recent_bad_requests_with_their_error_logs(
    backend: EmbeddedBackend, slo: Slo, bad: str
) -> None:
    result = attribute(backend, slo, (), START_S, END_S)
    expected = recent_bad(bad, 3)
    assert [e.trace_id for e in result.examples] == [r.trace_id for r in expected]
    assert [e.operation for e in result.examples] == [r.operation for r in expected]
    assert [list(e.logs) for e in result.examples] == [error_lines(r) for r in expected]


def test_a_latency_slis_examples_are_slow_spans_and_the_error_logs_are_capped(
    backend: EmbeddedBackend,
) -> None:
    result = attribute(backend, LATENCY_SLO, (), START_S, END_S, examples=attribution.MAX_EXAMPLES)
    by_trace = {r.trace_id: r for r in REQUESTS}
    assert len(result.examples) == attribution.MAX_EXAMPLES
    assert all(by_trace[e.trace_id].slow for e in result.examples)
    # Durations exactly on the threshold are good: never an example.
    assert all(by_trace[e.trace_id].duration_ns != THRESHOLD_MS * MS for e in result.examples)
    assert any(not by_trace[e.trace_id].error and e.logs == () for e in result.examples)
    errors = attribute(backend, ERROR_SLO, (), START_S, END_S, examples=1).examples
    [long] = errors
    assert long.trace_id == by_trace[LONG_LOG_TRACE.to_bytes(16, "big").hex()].trace_id
    assert len(long.logs) == attribution.MAX_LOG_LINES
    assert all(len(line) <= attribution.MAX_LINE_CHARS and "\n" not in line for line in long.logs)
    assert long.logs[1] == "payments: card processor unreachable"  # any service's error lines


def test_a_grouped_instance_sees_only_its_group(backend: EmbeddedBackend) -> None:
    slo = span_slo(group_by=("tenant",), bad_error=True)
    assert not sli.uses_roll_up(slo)
    for tenant in ("t1", "t2"):
        result = attribute(backend, slo, (("tenant", tenant),), START_S, END_S, top=attribution.MAX_TOP)
        parts, window_bad = model("error", tenant)
        assert as_model(result) == parts
        assert result.bad == window_bad == sli_bad(backend, slo, (tenant,))
        assert all(c.group == (("tenant", tenant),) for c in result.contributors)
        wanted = recent_bad("error", 3, tenant)
        assert [e.trace_id for e in result.examples] == [r.trace_id for r in wanted]
    assert model("error", "t1")[0] != model("error", "t2")[0]


def test_a_grouped_roll_up_instance_sees_only_its_group(backend: EmbeddedBackend) -> None:
    slo = span_slo(group_by=("service.version",), bad_error=True, bad_latency_ms=THRESHOLD_MS)
    assert sli.uses_roll_up(slo)
    result = attribute(backend, slo, [("service.version", "2.0")], START_S, END_S, top=attribution.MAX_TOP)
    parts, _ = model("either")
    wanted = {k: v for k, v in parts.items() if k[2] == "2.0"}
    assert as_model(result) == wanted
    assert result.bad == sum(b for b, _ in wanted.values()) == sli_bad(backend, slo, ("2.0",))
    assert {e.trace_id for e in result.examples} <= {r.trace_id for r in REQUESTS if r.version == "2.0"}


def test_group_labels_must_match_group_by(backend: EmbeddedBackend) -> None:
    slo = span_slo(group_by=("tenant",), bad_error=True)
    with pytest.raises(ValueError, match="groups by"):
        attribute(backend, slo, (), START_S, END_S)
    with pytest.raises(ValueError, match="groups by"):
        attribute(backend, ERROR_SLO, (("tenant", "t1"),), START_S, END_S)
    with pytest.raises(ValueError, match="whole minutes"):
        attribute(backend, ERROR_SLO, (), START_S + 1, END_S)


def test_an_empty_window_gives_an_empty_attribution(backend: EmbeddedBackend) -> None:
    before = (START_S - 3600, START_S - 1800)
    for slo in (ERROR_SLO, LATENCY_SLO, RAW_SLO, LOG_SLO, COUNTER_SLO, HISTOGRAM_SLO):
        assert attribute(backend, slo, (), *before) == Attribution()
        assert attribute(backend, slo, (), START_S, START_S) == Attribution()


# -- log and metric SLIs ---------------------------------------------------------------------------

LOG_SLO = Slo(
    "checkout-logs",
    "shop",
    Decimal("99"),
    LogSli(
        total=LogFilter(severity_min=9, filters=(Filter("event", "=", "request"),)),
        bad=LogFilter(severity_min=17),
    ),
)
COUNTER_SLO = Slo(
    "checkout-metrics",
    "shop",
    Decimal("99"),
    MetricSli(total=MetricSelector("requests_total"), bad=MetricSelector("errors_total")),
)
HISTOGRAM_SLO = Slo(
    "checkout-latency",
    "shop",
    Decimal("99"),
    MetricSli(total=MetricSelector("duration"), threshold=THRESHOLD_MS),
)


def breakdown(bad: str, version: bool) -> dict[tuple[str, str, str], tuple[int, int]]:
    """The model by (route, version) only: log and metric SLIs have no span name."""
    out: Counter[tuple[str, str, str]] = Counter()
    totals: Counter[tuple[str, str, str]] = Counter()
    for r in REQUESTS:
        key = ("", r.route, r.version if version else "")
        totals[key] += 1
        out[key] += {"error": r.error, "slow": r.slow}[bad]
    return {k: (out[k], totals[k]) for k in totals if out[k]}


def test_a_log_sli_gives_contributors_and_examples(backend: EmbeddedBackend) -> None:
    result = attribute(backend, LOG_SLO, (), START_S, END_S, top=attribution.MAX_TOP)
    assert as_model(result) == breakdown("error", version=True)
    assert result.bad == sum(r.error for r in REQUESTS) == sli_bad(backend, LOG_SLO)
    expected = recent_bad("error", 3)
    assert [e.trace_id for e in result.examples] == [r.trace_id for r in expected]
    # The operation is the name of the span the record was logged in.
    assert [e.operation for e in result.examples] == [r.operation for r in expected]
    assert [list(e.logs) for e in result.examples] == [error_lines(r) for r in expected]


def test_a_counter_sli_gives_the_bad_counters_exemplars(backend: EmbeddedBackend) -> None:
    result = attribute(backend, COUNTER_SLO, (), START_S, END_S, top=attribution.MAX_TOP)
    assert as_model(result) == breakdown("error", version=False)
    assert result.bad == sum(r.error for r in REQUESTS) == sli_bad(backend, COUNTER_SLO)
    # One exemplar per (minute, route) with errors: the last failing request of each.
    last = {}
    for r in REQUESTS:
        if r.error:
            last[(r.minute, r.route)] = r
    expected = sorted(last.values(), key=lambda r: r.start_ns, reverse=True)[:3]
    assert [e.trace_id for e in result.examples] == [r.trace_id for r in expected]
    assert [e.operation for e in result.examples] == [r.operation for r in expected]
    assert [list(e.logs) for e in result.examples] == [error_lines(r) for r in expected]


def test_a_histogram_sli_gives_exemplars_above_the_threshold(backend: EmbeddedBackend) -> None:
    result = attribute(backend, HISTOGRAM_SLO, (), START_S, END_S, examples=5, top=attribution.MAX_TOP)
    assert as_model(result) == breakdown("slow", version=False)
    assert result.bad == sum(r.slow for r in REQUESTS) == sli_bad(backend, HISTOGRAM_SLO)
    assert [e.trace_id for e in result.examples] == [r.trace_id for r in recent_bad("slow", 5)]


def test_a_good_counter_has_no_examples(backend: EmbeddedBackend) -> None:
    slo = Slo(
        "good",
        "shop",
        Decimal("99"),
        MetricSli(total=MetricSelector("requests_total"), good=MetricSelector("requests_total")),
    )
    result = attribute(backend, slo, (), START_S, END_S)
    assert result.examples == () and result.contributors == () and result.total == len(REQUESTS)
