"""SLI queries (slo/sli.py) over the real chDB engine: exact per-minute counts from spans (roll-up and
raw), logs and metrics, and the same requests giving the same counts whichever source carries them."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from slo import sli
from slo.model import Filter, LogFilter, LogSli, MetricSelector, MetricSli, Slo, SpanSli
from slo.series import MinuteCounts
from store import migrations
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter

MINUTE = 60 * 10**9
MS = 10**6
MINUTES = 10
# A whole hour, 2 to 3 hours ago: inside every table's retention, and a fixed minute grid.
BASE = (time.time_ns() // (60 * MINUTE) - 3) * 60 * MINUTE
BASE_S = BASE // 10**9
START_S, END_S = BASE_S, BASE_S + MINUTES * 60
DELTA, CUMULATIVE = 1, 2
THRESHOLD_MS = 100  # a bound of red_1m's buckets and of the histogram below
BOUNDS = [50.0, 100.0, 250.0, 1000.0]
# Durations around the threshold: exactly on it (good), 1 ns above (bad), 1 ns below (good).
DURATIONS_NS = [20 * MS, 100 * MS, 100 * MS + 1, 250 * MS, 100 * MS - 1, 1200 * MS, 60 * MS]


@dataclass(frozen=True)
class Request:
    minute: int
    start_ns: int
    duration_ns: int
    error: bool
    route: str
    status: int


def requests() -> list[Request]:
    """A deterministic stream: traffic varies by minute, errors and slow requests spread unevenly."""
    out = []
    for m in range(MINUTES):
        for i in range(3 + (m * 7) % 11):
            route = "/b" if i % 3 == 0 else "/a"
            error = (m + i) % 4 == 0
            # Half the errors answer 503, the others fail with status ERROR and a 200 (a bug page).
            status = 503 if error and i % 2 == 0 else 200
            duration = DURATIONS_NS[(m * 3 + i) % len(DURATIONS_NS)]
            out.append(Request(m, BASE + m * MINUTE + i * 3 * 10**9 + 7 * MS, duration, error, route, status))
    return out


REQUESTS = requests()


def expected(bad: str, route: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(total, bad) per minute from the model; bad: 'error', 'slow' or 'either'."""
    total, bads = np.zeros(MINUTES), np.zeros(MINUTES)
    for r in REQUESTS:
        if route is not None and r.route != route:
            continue
        slow = r.duration_ns > THRESHOLD_MS * MS
        total[r.minute] += 1
        bads[r.minute] += {"error": r.error, "slow": slow, "either": r.error or slow}[bad]
    return total, bads


# -- writing the stream as spans, logs and metrics --------------------------------------------------


def span_request(service: str = "shop") -> bytes:
    """The requests as SERVER root spans through the real SDK, with children that are not requests."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "1.0"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_slo_sli")
    for r in REQUESTS:
        root = tracer.start_span("GET /items", kind=SpanKind.SERVER, start_time=r.start_ns)
        root.set_attribute("http.route", r.route)
        # Old and new semantic conventions, alternating: both are read as the status code.
        root.set_attribute("http.response.status_code" if r.minute % 2 else "http.status_code", r.status)
        root.set_attribute("tenant", "t1" if r.route == "/a" else "t2")
        if r.error and r.status == 200:
            root.set_status(Status(StatusCode.ERROR, "failed"))
        # A failing, slow CLIENT child and an INTERNAL child: not requests.
        child = tracer.start_span(
            "GET dep", kind=SpanKind.CLIENT, context=set_span_in_context(root), start_time=r.start_ns
        )
        child.set_status(Status(StatusCode.ERROR, "dep down"))
        child.set_attribute("http.response.status_code", 500)
        child.end(end_time=r.start_ns + 5000 * MS)
        step = tracer.start_span(
            "render", kind=SpanKind.INTERNAL, context=set_span_in_context(root), start_time=r.start_ns
        )
        step.end(end_time=r.start_ns + MS)
        root.end(end_time=r.start_ns + r.duration_ns)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def log_request(service: str = "shop") -> bytes:
    """One log record per request (ERROR for the failed ones), and DEBUG noise that is not a request."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = service
    scope = rl.scope_logs.add()
    for r in REQUESTS:
        record = scope.log_records.add(
            time_unix_nano=r.start_ns,
            severity_number=17 if r.error else 9,
            severity_text="ERROR" if r.error else "INFO",
        )
        record.body.string_value = "request failed: upstream timeout" if r.error else "request served"
        record.attributes.add(key="http.route").value.string_value = r.route
        record.attributes.add(key="duration_ms").value.double_value = r.duration_ns / MS
        noise = scope.log_records.add(
            time_unix_nano=r.start_ns + MS, severity_number=5, severity_text="DEBUG"
        )
        noise.body.string_value = "cache timeouts: 3"
    return request.SerializeToString()


def minute_increases(route: str, what: str) -> list[float]:
    """Per minute: requests, errors, or (histogram) bucket counts of ``route``."""
    out = [0.0] * MINUTES
    for r in REQUESTS:
        if r.route == route and (what == "requests" or r.error):
            out[r.minute] += 1
    return out


def buckets_per_minute(route: str) -> list[list[int]]:
    """OTLP explicit buckets ((prev bound, bound]) of the durations in ms, per minute."""
    out = [[0] * (len(BOUNDS) + 1) for _ in range(MINUTES)]
    for r in REQUESTS:
        if r.route == route:
            out[r.minute][bisect.bisect_left(BOUNDS, r.duration_ns / MS)] += 1
    return out


def counter(
    sm: metrics_pb2.ScopeMetrics, name: str, temporality: int, route: str, increases: list[float]
) -> None:
    """Points exported on the minute: the point at the end of minute m carries minute m."""
    metric = sm.metrics.add(name=name, unit="1")
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = True
    value = 0.0
    for m, inc in enumerate(increases):
        t = BASE + (m + 1) * MINUTE
        if temporality == DELTA:
            start, value = t - MINUTE, inc
        elif name.startswith("reset_") and m >= 5:
            # The process restarted at the start of minute 5: the count starts again from zero.
            start = BASE + 5 * MINUTE
            value = sum(increases[5 : m + 1])
        else:
            start, value = BASE - 10**9, value + inc
        p = metric.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=t, as_double=value)
        p.attributes.add(key="http.route").value.string_value = route


def histogram(sm: metrics_pb2.ScopeMetrics, name: str, temporality: int, route: str) -> None:
    metric = sm.metrics.add(name=name, unit="ms")
    metric.histogram.aggregation_temporality = temporality
    running = [0] * (len(BOUNDS) + 1)
    for m, counts in enumerate(buckets_per_minute(route)):
        t = BASE + (m + 1) * MINUTE
        if temporality == CUMULATIVE:
            running = [a + b for a, b in zip(running, counts, strict=True)]
            counts, start = running, BASE - 10**9
        else:
            start = t - MINUTE
        p = metric.histogram.data_points.add(
            start_time_unix_nano=start,
            time_unix_nano=t,
            count=sum(counts),
            sum=0.0,
            bucket_counts=counts,
            explicit_bounds=BOUNDS,
        )
        p.attributes.add(key="http.route").value.string_value = route


def metric_request(service: str = "shop") -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    sm = rm.scope_metrics.add()
    for route in ("/a", "/b"):
        for prefix, temporality in (("", CUMULATIVE), ("delta_", DELTA), ("reset_", CUMULATIVE)):
            counter(sm, f"{prefix}requests_total", temporality, route, minute_increases(route, "requests"))
            counter(sm, f"{prefix}errors_total", temporality, route, minute_increases(route, "errors"))
        histogram(sm, "http.server.duration", CUMULATIVE, route)
        histogram(sm, "delta.http.server.duration", DELTA, route)
    return request.SerializeToString()


# -- the store ---------------------------------------------------------------------------------------

LEGACY = "legacy"  # a service with a minute rolled up before migration 0007 (see its test)
LONG = "long"  # 30 days of per-minute counters
LONG_DAYS = 30
LONG_START_S = BASE_S - (LONG_DAYS + 1) * 86_400


def long_counters() -> bytes:
    """30 days of requests_total/errors_total exported every minute: 5 requests, 1 error per minute."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = LONG
    sm = rm.scope_metrics.add()
    for name, per_minute in (("requests_total", 5), ("errors_total", 1)):
        metric = sm.metrics.add(name=name)
        metric.sum.aggregation_temporality = CUMULATIVE
        metric.sum.is_monotonic = True
        for m in range(LONG_DAYS * 1440):
            metric.sum.data_points.add(
                start_time_unix_nano=(LONG_START_S - 1) * 10**9,
                time_unix_nano=(LONG_START_S + (m + 1) * 60) * 10**9,
                as_int=per_minute * (m + 1),
            )
    return request.SerializeToString()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    store = EmbeddedBackend(tmp_path_factory.mktemp("slo-sli") / "store")
    migrations.migrate(store)
    migrations.ensure_retention(store, 0)  # keep forever: the 30-day counters are older than 7 days
    writer = OtlpWriter(store, [])
    writer.write("traces", [span_request(), span_request(LEGACY)], "spans")
    writer.write("logs", [log_request()], "logs")
    writer.write("metrics", [metric_request(), long_counters()], "metrics")
    try:
        yield store
    finally:
        store.close()


def span_slo(group_by: tuple[str, ...] = (), service: str = "shop", **fields: object) -> Slo:
    return Slo("checkout", service, Decimal("99.9"), SpanSli(**fields), group_by=group_by)  # type: ignore[arg-type]


def counts(backend: EmbeddedBackend, slo: Slo, roll_up: bool = True) -> dict[tuple[str, ...], MinuteCounts]:
    return sli.minute_counts(backend, slo, START_S, END_S, roll_up=roll_up)


def as_lists(result: dict[tuple[str, ...], MinuteCounts]) -> dict[tuple[str, ...], tuple[list, list]]:
    for value in result.values():
        assert value.start_s == START_S and len(value.total) == MINUTES
    return {k: (v.total.tolist(), v.bad.tolist()) for k, v in result.items()}


def model(bad: str, routes: tuple[str, ...] | None = None) -> dict[tuple[str, ...], tuple[list, list]]:
    if routes is None:
        total, bads = expected(bad)
        return {(): (total.tolist(), bads.tolist())}
    return {(r,): tuple(a.tolist() for a in expected(bad, r)) for r in routes}  # type: ignore[misc]


# -- spans -------------------------------------------------------------------------------------------

ERROR_SLO = span_slo(bad_error=True)
LATENCY_SLO = span_slo(bad_latency_ms=THRESHOLD_MS)
EITHER_SLO = span_slo(bad_error=True, bad_latency_ms=THRESHOLD_MS)


@pytest.mark.parametrize(
    ("slo", "bad"), [(ERROR_SLO, "error"), (LATENCY_SLO, "slow"), (EITHER_SLO, "either")]
)
def test_span_counts_per_minute_are_exact_from_the_roll_up(
    backend: EmbeddedBackend, slo: Slo, bad: str
) -> None:
    assert sli.uses_roll_up(slo) and sli.roll_up_blocker(slo) is None
    assert as_lists(counts(backend, slo)) == model(bad)
    # Traffic varies by minute, and so does the share of bad requests: not a constant ratio.
    total, bads = expected(bad)
    assert len(set(total)) > 3 and len(set(bads / total)) > 3


# SLOs the roll-up answers, each compared with raw spans (roll_up=False reads them).
ROLL_UP_SLOS = [
    ERROR_SLO,
    LATENCY_SLO,
    EITHER_SLO,
    span_slo(bad_status=(Filter("http.response.status_code", ">=", 500),)),
    span_slo(bad_status=(Filter("http.status_code", ">", 499),), bad_latency_ms=250),
    span_slo(
        bad_error=True, bad_status=(Filter("http.response.status_code", ">=", 500),), bad_latency_ms=100
    ),
    span_slo(("http.route",), bad_error=True, bad_latency_ms=THRESHOLD_MS),
    span_slo(bad_error=True, filters=(Filter("http.route", "=", "/a"),), kinds=("SERVER",)),
    span_slo(bad_error=True, operation="GET /items", filters=(Filter("http.route", "not in", ("/b", "/c")),)),
    span_slo(bad_latency_ms=THRESHOLD_MS, filters=(Filter("http.response.status_code", "<", 500),)),
    span_slo(("service.version",), bad_error=True, filters=(Filter("service.version", "!=", "0.9"),)),
    span_slo(bad_error=True, operation="no such operation"),
]


@pytest.mark.parametrize("slo", ROLL_UP_SLOS)
def test_roll_up_and_raw_spans_give_identical_counts(backend: EmbeddedBackend, slo: Slo) -> None:
    assert sli.uses_roll_up(slo), sli.roll_up_blocker(slo)
    rolled, raw = as_lists(counts(backend, slo)), as_lists(counts(backend, slo, roll_up=False))
    assert rolled == raw
    # The route filters of the list keep /a only; the status filter drops the 503s.
    only_a = any(f.key == "http.route" for f in slo.sli.filters)
    no_5xx = any(f.key == "http.response.status_code" for f in slo.sli.filters)
    wanted = sum((not only_a or r.route == "/a") and not (no_5xx and r.status >= 500) for r in REQUESTS)
    if slo.sli.operation == "no such operation":
        wanted = 0
    assert sum(sum(t) for t, _ in raw.values()) == wanted
    assert (sum(sum(b) for _, b in raw.values()) > 0) == (wanted > 0)


def test_group_by_gives_one_entry_per_value(backend: EmbeddedBackend) -> None:
    result = counts(backend, span_slo(("http.route",), bad_error=True, bad_latency_ms=THRESHOLD_MS))
    assert as_lists(result) == model("either", ("/a", "/b"))
    # A key nothing carries reads as '' (one group); two keys give tuples of both values.
    missing = counts(backend, span_slo(("http.route", "no.such.key"), bad_error=True))
    assert set(missing) == {("/a", ""), ("/b", "")}


@pytest.mark.parametrize(
    ("slo", "reason"),
    [
        (span_slo(bad_latency_ms=101.3), "not a bound"),
        (span_slo(("tenant",), bad_error=True), "group_by"),
        (span_slo(bad_error=True, filters=(Filter("tenant", "=", "t1"),)), "tenant"),
        (span_slo(bad_status=(Filter("http.response.status_code", "=", 503),)), "status classes"),
        (span_slo(bad_error=True, kinds=("CLIENT",)), "kinds"),
    ],
)
def test_what_the_roll_up_cannot_answer_falls_back_to_raw_spans(
    backend: EmbeddedBackend, slo: Slo, reason: str
) -> None:
    blocker = sli.roll_up_blocker(slo)
    assert not sli.uses_roll_up(slo) and blocker is not None and reason in blocker
    result = as_lists(counts(backend, slo))
    assert result == as_lists(counts(backend, slo, roll_up=False))
    total, _ = expected("error")
    if slo.sli.kinds == ("CLIENT",):  # every request has one failing CLIENT child
        assert result == {(): (total.tolist(), total.tolist())}
    elif slo.group_by == ("tenant",):
        assert result == {
            ("t1",): model("error", ("/a",))[("/a",)],
            ("t2",): model("error", ("/b",))[("/b",)],
        }
    elif slo.sli.filters:
        assert result == {(): model("error", ("/a",))[("/a",)]}
    elif slo.sli.bad_status:
        bad = np.zeros(MINUTES)
        for r in REQUESTS:
            bad[r.minute] += r.status == 503
        assert result == {(): (total.tolist(), bad.tolist())}
    else:
        bad = np.zeros(MINUTES)
        for r in REQUESTS:
            bad[r.minute] += r.duration_ns > 101.3 * MS
        assert result == {(): (total.tolist(), bad.tolist())}


def test_minutes_rolled_up_before_migration_7_are_read_from_spans(backend: EmbeddedBackend) -> None:
    """A red_1m row without the 0007 columns (detailed_requests 0) makes its minute come from spans."""
    slo = span_slo(service=LEGACY, bad_error=True, bad_latency_ms=THRESHOLD_MS)
    assert as_lists(counts(backend, slo)) == model("either")
    backend.command(
        "INSERT INTO red_1m (minute, service_name, operation, kind, requests, errors, latency) "
        "VALUES (toDateTime({m:UInt32}, 'UTC'), {s:String}, 'GET /items', 'SERVER', 1000, 1000, ([1], [1000]))",
        {"m": START_S + 120, "s": LEGACY},
    )
    assert as_lists(counts(backend, slo)) == model("either")
    # The error count itself is the stored one: the old row's 1000 errors are visible there.
    assert (
        counts(backend, span_slo(service=LEGACY, bad_error=True))[()].total[2]
        == expected("error")[0][2] + 1000
    )


def test_no_events_is_all_zeros(backend: EmbeddedBackend) -> None:
    result = counts(backend, span_slo(service="nobody", bad_error=True))
    assert as_lists(result) == {(): ([0.0] * MINUTES, [0.0] * MINUTES)}
    assert counts(backend, span_slo(("http.route",), service="nobody", bad_error=True)) == {}


# -- logs --------------------------------------------------------------------------------------------


def log_slo(total: LogFilter, bad: LogFilter, group_by: tuple[str, ...] = ()) -> Slo:
    return Slo("logs", "shop", Decimal("99"), LogSli(total, bad), group_by=group_by)


def test_log_counts_by_severity_body_token_and_attributes(backend: EmbeddedBackend) -> None:
    requests_only = LogFilter(severity_min=9)
    assert as_lists(counts(backend, log_slo(requests_only, LogFilter(severity_min=17)))) == model("error")
    # A whole token: "timeout" is in the error bodies; the DEBUG noise says "timeouts" and is not counted.
    by_body = log_slo(requests_only, LogFilter(body="upstream timeout"))
    assert as_lists(counts(backend, by_body)) == model("error")
    everything = as_lists(counts(backend, log_slo(LogFilter(), LogFilter(body="timeouts"))))
    total, _ = expected("error")
    assert everything == {(): ((2 * total).tolist(), total.tolist())}
    # Numeric attribute comparison, and a filter narrowing the total, grouped.
    slow = log_slo(
        LogFilter(severity_min=9, filters=(Filter("http.route", "=", "/a"),)),
        LogFilter(filters=(Filter("duration_ms", ">", THRESHOLD_MS),)),
        ("http.route",),
    )
    assert as_lists(counts(backend, slow)) == model("slow", ("/a",))


def test_log_filter_errors_name_the_slo() -> None:
    slo = log_slo(LogFilter(), LogFilter(body="!!!"))
    with pytest.raises(ValueError, match="SLO 'logs': body '!!!'"):
        sli.minute_counts(None, slo, START_S, END_S)  # type: ignore[arg-type]
    bad_op = log_slo(LogFilter(filters=(Filter("x", "~", "y"),)), LogFilter())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown operator '~'"):
        sli.minute_counts(None, bad_op, START_S, END_S)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a number"):
        sli.minute_counts(
            None, log_slo(LogFilter(filters=(Filter("x", ">", "high"),)), LogFilter()), START_S, END_S
        )  # type: ignore[arg-type]


# -- metrics -----------------------------------------------------------------------------------------


def metric_slo(sli_: MetricSli, group_by: tuple[str, ...] = ()) -> Slo:
    return Slo("metrics", "shop", Decimal("99"), sli_, group_by=group_by)


@pytest.mark.parametrize("prefix", ["", "delta_", "reset_"])
def test_counters_cumulative_delta_and_with_a_reset_give_the_same_counts(
    backend: EmbeddedBackend, prefix: str
) -> None:
    bad = metric_slo(
        MetricSli(MetricSelector(f"{prefix}requests_total"), bad=MetricSelector(f"{prefix}errors_total"))
    )
    assert as_lists(counts(backend, bad)) == model("error")
    routed = metric_slo(
        MetricSli(
            MetricSelector(f"{prefix}requests_total", (Filter("http.route", "in", ("/a",)),)),
            bad=MetricSelector(f"{prefix}errors_total", (Filter("http.route", "=", "/a"),)),
        ),
        ("http.route",),
    )
    assert as_lists(counts(backend, routed)) == model("error", ("/a",))


def test_good_counter_gives_bad_as_total_minus_good(backend: EmbeddedBackend) -> None:
    # "Good" here is the error counter, so bad = total - errors: the non-error requests.
    slo = metric_slo(MetricSli(MetricSelector("requests_total"), good=MetricSelector("errors_total")))
    total, errors = expected("error")
    assert as_lists(counts(backend, slo)) == {(): (total.tolist(), (total - errors).tolist())}


def test_a_point_counts_in_the_minute_before_its_timestamp(backend: EmbeddedBackend) -> None:
    # One minute, [BASE + 3 min, BASE + 4 min): the point at BASE + 4 min carries it, not the one at + 3 min.
    slo = metric_slo(
        MetricSli(MetricSelector("delta_requests_total"), bad=MetricSelector("delta_errors_total"))
    )
    one = sli.minute_counts(backend, slo, START_S + 180, START_S + 240)
    total, errors = expected("error")
    assert one[()].total.tolist() == [total[3]] and one[()].bad.tolist() == [errors[3]]


@pytest.mark.parametrize("name", ["http.server.duration", "delta.http.server.duration"])
def test_histogram_threshold_on_a_bound(backend: EmbeddedBackend, name: str) -> None:
    slo = metric_slo(MetricSli(MetricSelector(name), threshold=THRESHOLD_MS), ("http.route",))
    assert as_lists(counts(backend, slo)) == model("slow", ("/a", "/b"))


def test_histogram_threshold_off_a_bound_names_the_metric_and_its_bounds(backend: EmbeddedBackend) -> None:
    slo = metric_slo(MetricSli(MetricSelector("http.server.duration"), threshold=120))
    with pytest.raises(ValueError, match=r"'http.server.duration' \(its bounds: \[50, 100, 250, 1000\]\)"):
        counts(backend, slo)


# -- the same requests from every source ---------------------------------------------------------


@pytest.mark.parametrize("group_by", [(), ("http.route",)])
def test_spans_logs_and_metrics_carrying_the_same_requests_give_identical_counts(
    backend: EmbeddedBackend, group_by: tuple[str, ...]
) -> None:
    errors = [
        span_slo(group_by, bad_error=True),
        log_slo(LogFilter(severity_min=9), LogFilter(severity_min=17), group_by),
        metric_slo(MetricSli(MetricSelector("requests_total"), bad=MetricSelector("errors_total")), group_by),
    ]
    latency = [
        span_slo(group_by, bad_latency_ms=THRESHOLD_MS),
        log_slo(
            LogFilter(severity_min=9),
            LogFilter(filters=(Filter("duration_ms", ">", THRESHOLD_MS),)),
            group_by,
        ),
        metric_slo(MetricSli(MetricSelector("http.server.duration"), threshold=THRESHOLD_MS), group_by),
    ]
    for slos, bad in ((errors, "error"), (latency, "slow")):
        results = [as_lists(counts(backend, slo)) for slo in slos]
        assert results[0] == results[1] == results[2] == model(bad, ("/a", "/b") if group_by else None)


def test_thirty_days_of_minute_counters_load_in_seconds(backend: EmbeddedBackend) -> None:
    slo = Slo(
        "long",
        LONG,
        Decimal("99"),
        MetricSli(MetricSelector("requests_total"), bad=MetricSelector("errors_total")),
    )
    end_s = LONG_START_S + LONG_DAYS * 86_400
    began = time.perf_counter()
    result = sli.minute_counts(backend, slo, LONG_START_S, end_s)[()]
    took = time.perf_counter() - began
    print(f"\n30 days of per-minute counters ({LONG_DAYS * 1440} minutes x 2 counters): {took:.2f} s")
    assert len(result.total) == LONG_DAYS * 1440
    assert (result.total == 5).all() and (result.bad == 1).all()
