"""Unit tests for the demo traffic generator, using in-memory exporters instead of a live collector."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from alerts.policy import load_policy
from slo.burn_rate import exceeds
from slo.evaluator import policy as evaluator_policy
from slo.model import Slo
from slo.spec import load_slos
from sloscope import demo as demo_mod
from sloscope.demo import Demo, DemoConfig


class CollectingMetricExporter(MetricExporter):
    """The SDK's InMemoryMetricReader is a reader, but Demo injects exporters: collect batches instead."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(self, data: MetricsData, timeout_millis: float = 10_000, **_: object) -> MetricExportResult:
        self.batches.append(data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **_: object) -> None:
        pass


@dataclass
class Sinks:
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    logs: InMemoryLogRecordExporter = field(default_factory=InMemoryLogRecordExporter)
    metrics: CollectingMetricExporter = field(default_factory=CollectingMetricExporter)
    urls: list[str] = field(default_factory=list)

    def make(self, config: DemoConfig) -> Demo:
        def spans(url: str) -> InMemorySpanExporter:
            self.urls.append(url)
            return self.spans

        return Demo(
            config,
            span_exporter_factory=spans,
            log_exporter_factory=lambda _url: self.logs,
            metric_exporter_factory=lambda _url: self.metrics,
        )


@pytest.fixture
def sinks() -> Iterator[Sinks]:
    yield Sinks()


def _service(item: ReadableSpan | ReadableLogRecord) -> str:
    return str(item.resource.attributes["service.name"])


def _one(spans: Sequence[ReadableSpan], service: str, kind: SpanKind, name: str) -> ReadableSpan:
    found = [s for s in spans if _service(s) == service and s.kind == kind and s.name == name]
    assert len(found) == 1, f"expected one {service} {kind} {name!r}, got {[s.name for s in spans]}"
    return found[0]


def _checkout(sinks: Sinks, **config: object) -> tuple[str, list[ReadableSpan], list[ReadableLogRecord]]:
    demo = sinks.make(DemoConfig(seed=42, **config))
    trace_id = demo.run_once("/api/checkout")
    demo.stop()  # flushes the batch processors into the in-memory exporters
    spans = [s for s in sinks.spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    return trace_id, spans, list(sinks.logs.get_finished_logs())


def test_checkout_trace_spans_services_and_links_parents(sinks: Sinks) -> None:
    trace_id, spans, _ = _checkout(sinks, payment_error_rate=0.0)
    assert len(sinks.spans.get_finished_spans()) == len(spans), "run_once emitted spans for another trace"
    assert {_service(s) for s in spans} == {"gateway", "orders", "payments", "inventory", "email"}
    assert len(trace_id) == 32 and int(trace_id, 16) != 0

    root = _one(spans, "gateway", SpanKind.SERVER, "GET /api/checkout")
    assert root.parent is None
    assert root.attributes["http.route"] == "/api/checkout"
    assert root.attributes["url.path"] == "/api/checkout"
    assert root.attributes["http.request.method"] == "GET"
    assert root.attributes["http.response.status_code"] == 200

    # Every cross-service hop: the callee's inbound span hangs off the caller's outbound span.
    client, server = SpanKind.CLIENT, SpanKind.SERVER
    producer, consumer = SpanKind.PRODUCER, SpanKind.CONSUMER
    hops = [
        ("gateway", client, "POST /orders", "orders", server, "POST /orders"),
        ("orders", client, "POST /charge", "payments", server, "POST /charge"),
        ("orders", client, "POST /reservations", "inventory", server, "POST /reservations"),
        ("orders", producer, "send order.confirmed", "email", consumer, "process order.confirmed"),
    ]
    for hop in hops:
        caller, callee = _one(spans, *hop[:3]), _one(spans, *hop[3:])
        assert callee.parent is not None and callee.parent.is_remote
        assert callee.parent.span_id == caller.context.span_id, f"{callee.name} not under {caller.name}"
        assert callee.parent.trace_id == caller.context.trace_id

    payments_client = _one(spans, "orders", SpanKind.CLIENT, "POST /charge")
    payments_server = _one(spans, "payments", SpanKind.SERVER, "POST /charge")
    assert payments_client.start_time <= payments_server.start_time
    assert payments_server.start_time < payments_server.end_time <= payments_client.end_time

    db = [s for s in spans if s.attributes.get("db.system.name") == "postgresql"]
    assert db and all(s.kind == SpanKind.CLIENT and _service(s) == "orders" for s in db)

    email = _one(spans, "email", SpanKind.CONSUMER, "process order.confirmed")
    assert email.attributes["messaging.system"] == "kafka"
    assert email.attributes["messaging.destination.name"] == "order.confirmed"


def test_resources_are_per_service_and_globals_untouched(sinks: Sinks) -> None:
    before = trace.get_tracer_provider()
    _, spans, _ = _checkout(sinks)
    assert trace.get_tracer_provider() is before
    for span in spans:
        attrs = span.resource.attributes
        assert attrs["deployment.environment"] == "demo"
        assert attrs["service.version"] and attrs["host.name"]
    assert sinks.urls and all(u == "http://127.0.0.1:4318/v1/traces" for u in sinks.urls)
    assert len(sinks.urls) == len(demo_mod.SERVICES)  # one exporter (and provider) per service


def test_correlation_id_on_gateway_span_and_logs_with_trace_context(sinks: Sinks) -> None:
    trace_id, spans, logs = _checkout(sinks, payment_error_rate=0.0)
    cid = _one(spans, "gateway", SpanKind.SERVER, "GET /api/checkout").attributes["correlation.id"]
    uuid.UUID(str(cid))
    span_ids = {s.context.span_id for s in spans}
    assert len({_service(rec) for rec in logs}) >= 3
    for rec in logs:
        log = rec.log_record
        assert log.attributes["correlation.id"] == cid
        assert format(log.trace_id, "032x") == trace_id
        assert log.span_id in span_ids
        assert log.severity_text in {"INFO", "WARN"} and log.severity_number.name == log.severity_text
        assert isinstance(log.body, str) and log.body


def test_payment_failure_marks_error_records_exception_and_logs(sinks: Sinks) -> None:
    trace_id, spans, logs = _checkout(sinks, payment_error_rate=1.0)
    payments = _one(spans, "payments", SpanKind.SERVER, "POST /charge")
    assert payments.status.status_code == StatusCode.ERROR
    assert payments.attributes["http.response.status_code"] == 500
    assert any(
        e.name == "exception" and "PaymentDeclinedError" in str(e.attributes["exception.type"])
        for e in payments.events
    )
    root = _one(spans, "gateway", SpanKind.SERVER, "GET /api/checkout")
    assert root.status.status_code == StatusCode.ERROR and root.attributes["http.response.status_code"] >= 500
    assert not any(_service(s) == "email" for s in spans), "no confirmation email for a failed order"

    by_level = {(_service(r), r.log_record.severity_text) for r in logs}
    assert ("payments", "ERROR") in by_level and ("orders", "WARN") in by_level
    error = next(r.log_record for r in logs if _service(r) == "payments")
    assert error.severity_number.name == "ERROR"
    assert format(error.trace_id, "032x") == trace_id and error.span_id == payments.context.span_id
    assert "PaymentDeclinedError" in str(error.attributes["exception.type"])


def test_attribute_value_types_cover_all_kinds(sinks: Sinks) -> None:
    _, spans, logs = _checkout(sinks, payment_error_rate=0.0)
    values = [v for s in spans for v in s.attributes.values()]
    values += [v for r in logs for v in r.log_record.attributes.values()]
    for kind in (str, int, float, bool):
        assert any(type(v) is kind for v in values), kind
    assert any(isinstance(v, tuple | list) and v and all(isinstance(x, str) for x in v) for v in values)


def test_durations_are_synthetic_and_nonzero(sinks: Sinks) -> None:
    _, spans, _ = _checkout(sinks, payment_error_rate=0.0)
    assert all(s.end_time > s.start_time for s in spans)
    root = _one(spans, "gateway", SpanKind.SERVER, "GET /api/checkout")
    for span in spans:
        if _service(span) != "email":  # the consumer runs asynchronously, after the response
            assert root.start_time <= span.start_time and span.end_time <= root.end_time


def test_metrics_exported_per_service(sinks: Sinks) -> None:
    demo = sinks.make(DemoConfig(seed=3, payment_error_rate=0.0))
    for _ in range(5):
        demo.run_once("/api/checkout")
    demo.stop()
    seen: dict[str, dict[str, str]] = {}
    for batch in sinks.metrics.batches:
        for rm in batch.resource_metrics:
            for sm in rm.scope_metrics:
                service = seen.setdefault(str(rm.resource.attributes["service.name"]), {})
                service.update({metric.name: metric.unit for metric in sm.metrics})
    assert set(seen) == set(demo_mod.SERVICES)
    for metrics in seen.values():
        assert {"demo.requests", "demo.queue.depth", "http.server.request.duration"} <= set(metrics)
        assert metrics["http.server.request.duration"] == "s"


def test_background_thread_respects_duration_and_stop_is_idempotent(sinks: Sinks) -> None:
    demo = sinks.make(DemoConfig(rate=200.0, duration=0.3, seed=1))
    demo.start()
    assert demo.wait(timeout=10), "generator did not stop after its duration"
    demo.stop()
    demo.stop()
    assert demo.requests_sent > 0
    traces = {s.context.trace_id for s in sinks.spans.get_finished_spans()}
    assert len(traces) == demo.requests_sent


def test_main_parses_args_and_returns_zero(sinks: Sinks, monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[DemoConfig] = []

    def fake_demo(config: DemoConfig) -> Demo:
        configs.append(config)
        return sinks.make(config)

    monkeypatch.setattr(demo_mod, "Demo", fake_demo)
    argv = ["--endpoint", "http://collector:4318", "--rate", "50", "--duration", "0.2", "--seed", "9"]
    assert demo_mod.main(argv) == 0
    assert configs == [DemoConfig(endpoint="http://collector:4318", rate=50.0, duration=0.2, seed=9)]
    assert sinks.spans.get_finished_spans()


def test_rejects_non_positive_rate(sinks: Sinks) -> None:
    with pytest.raises(ValueError):
        sinks.make(DemoConfig(rate=0))


def test_the_payments_fault_schedule() -> None:
    config = DemoConfig(fault_start_s=120, fault_every_s=900, fault_for_s=240, fault_error_rate=0.6)
    assert config.payment_error_rate_at(0) == config.payment_error_rate
    assert config.payment_error_rate_at(119.9) == config.payment_error_rate
    assert config.payment_error_rate_at(120) == 0.6
    assert config.payment_error_rate_at(359.9) == 0.6
    assert config.payment_error_rate_at(360) == config.payment_error_rate
    assert config.payment_error_rate_at(120 + 900 + 10) == 0.6  # every 15 minutes again
    assert DemoConfig(fault_for_s=0).payment_error_rate_at(200) == DemoConfig().payment_error_rate


# ---- the demo's story: quiet baseline, a page within minutes of each fault, resolved after it ------

DEMO_SLOS = Path(__file__).resolve().parents[1] / "examples/demo"
SAMPLE = 5000  # requests per phase: about 1 s of generator time per 2000


def _is_request(span: ReadableSpan) -> bool:
    """The span SLIs' requests: SERVER and CONSUMER spans and roots (slo.model.SpanSli)."""
    return span.kind in (SpanKind.SERVER, SpanKind.CONSUMER) or span.parent is None


def _is_error(span: ReadableSpan) -> bool:
    status = span.attributes.get("http.response.status_code", 0)
    return span.status.status_code == StatusCode.ERROR or (span.kind == SpanKind.SERVER and status >= 500)


def _last_points(sinks: Sinks, service: str, metric: str) -> list:
    """The cumulative points of one service's metric in its last export."""
    points: list = []
    for batch in sinks.metrics.batches:
        for rm in batch.resource_metrics:
            if rm.resource.attributes["service.name"] != service:
                continue
            found = [
                p
                for sm in rm.scope_metrics
                for m in sm.metrics
                if m.name == metric
                for p in m.data.data_points
            ]
            points = found or points
    return points


def _phase_counts(payment_error_rate: float, seed: int) -> dict[str, tuple[int, int]]:
    """(bad, total) per demo SLO instance over SAMPLE requests of the generator at one error rate,
    counted as each SLO's SLI counts them (examples/demo/slos.yaml)."""
    sinks = Sinks()
    demo = sinks.make(DemoConfig(seed=seed, payment_error_rate=payment_error_rate, fault_for_s=0))
    for n in range(SAMPLE):
        demo.run_once()
        if n % 100 == 99:
            demo.flush()  # before the batch processors' queues fill up and drop spans
    demo.stop()
    spans = sinks.spans.get_finished_spans()
    requests = [s for s in spans if _is_request(s)]
    charges = [s for s in spans if s.name == "POST /charge"]
    assert sum(1 for s in requests if s.parent is None) == SAMPLE, "spans were dropped"
    assert len(charges) == 2 * sum(1 for s in charges if s.kind == SpanKind.SERVER), "spans were dropped"
    counts: dict[str, tuple[int, int]] = {}

    def add(instance: str, bad: bool) -> None:
        b, t = counts.get(instance, (0, 0))
        counts[instance] = (b + bad, t + 1)

    for span in requests:
        service = _service(span)
        if service == "gateway":
            add("gateway-availability", _is_error(span))
            slow = span.end_time - span.start_time > 500e6
            add(f"gateway-routes-latency{{{span.attributes['http.route']}}}", _is_error(span) or slow)
        elif service == "payments":
            add("payments-availability", _is_error(span))
        elif service == "orders":
            add("orders-monthly", _is_error(span))
    requests_5xx = [
        (p.value, p.attributes["status"] >= 500) for p in _last_points(sinks, "gateway", "demo.requests")
    ]
    counts["gateway-requests-counter"] = (
        sum(v for v, bad in requests_5xx if bad),
        sum(v for v, _ in requests_5xx),
    )
    slow_total = (0, 0)
    for p in _last_points(sinks, "gateway", "http.server.request.duration"):
        over = sum(p.bucket_counts[list(p.explicit_bounds).index(0.5) + 1 :])
        slow_total = (slow_total[0] + over, slow_total[1] + p.count)
    counts["gateway-latency-histogram"] = slow_total
    return counts


def _fault_shares(config: DemoConfig, minutes: int) -> list[Fraction]:
    """Per demo minute, the share of it under the payments fault (second by second)."""
    return [
        Fraction(
            sum(
                config.payment_error_rate_at(s + 0.5) == config.fault_error_rate
                for s in range(60 * m, 60 * m + 60)
            ),
            60,
        )
        for m in range(minutes)
    ]


def _firing_minutes(
    slo: Slo, base: tuple[int, int], fault: tuple[int, int], shares: list[Fraction], rate: float
) -> set[int]:
    """The minutes at which an evaluation finds one of the SLO's rules firing, from the per-phase
    (bad, total) samples and each minute's fault share; a minute holds as many events in the fault
    as out of it (the fault fails requests, it does not change how many come), ``rate`` x 60 x the
    instance's share of the sampled requests. Windows see only whole minutes before the evaluation,
    and no data before the demo's first minute (slo-semantics.md)."""
    alerting = evaluator_policy(slo)
    ratio_base, ratio_fault = Fraction(*base), Fraction(*fault)
    events = Fraction(base[1], SAMPLE) * Fraction(rate) * 60
    bad = [(1 - s) * ratio_base + s * ratio_fault for s in shares]
    firing = set()
    for at in range(1, len(shares) + 1):

        def window(length_s: int, at: int = at) -> tuple[Fraction, Fraction]:
            first = max(0, at - length_s // 60)
            return sum(bad[first:at], Fraction(0)) * events, (at - first) * events

        for rule in alerting.rules:
            (long_bad, long_total), (short_bad, short_total) = window(rule.long_s), window(rule.short_s)
            if (
                long_total >= alerting.min_events
                and exceeds(long_bad, long_total, slo.error_budget, rule.factor)
                and exceeds(short_bad, short_total, slo.error_budget, rule.factor)
            ):
                firing.add(at)
    return firing


def _rounds(shares: list[Fraction]) -> list[tuple[int, int]]:
    """(first minute, minute after the last) of each fault round."""
    starts = [m for m, s in enumerate(shares) if s and not (m and shares[m - 1])]
    ends = [m for m in range(1, len(shares)) if shares[m - 1] and not shares[m]]
    return list(zip(starts, ends, strict=False))


def test_the_demo_timeline_fault_pages_within_five_minutes_and_resolves_before_the_next() -> None:
    """The README's story, generator-level and deterministic (seeded): counted per phase as each SLO
    counts, then minute by minute through the windows of the demo SLOs' rules for three hours of the
    schedule (an end-to-end run would take that long): nothing fires before the first fault, the
    availability SLOs page within five minutes of every fault, and every alert has resolved, and
    its resolve gone out, before the next fault."""
    config = DemoConfig()
    slos = {slo.name: slo for slo in load_slos(DEMO_SLOS / "slos.yaml")}
    base = _phase_counts(config.payment_error_rate, seed=11)
    fault = _phase_counts(config.fault_error_rate, seed=12)
    assert {instance.split("{")[0] for instance in base} == set(slos), "a demo SLO without a count here"
    group_interval_m = (
        load_policy(
            DEMO_SLOS / "policy.yaml", environ={"SLOSCOPE_DEMO_WEBHOOK_URL": "http://127.0.0.1:1/w"}
        ).route.group_interval_s
        // 60
    )
    shares = _fault_shares(config, 180)
    rounds = _rounds(shares)
    assert rounds[:2] == [(2, 6), (17, 21)] and len(rounds) == 12  # the README's schedule

    # Per instance and round: (minute the trigger is written, minute the resolve is written).
    notified: dict[str, dict[int, tuple[int, int]]] = {}
    for instance, counts in base.items():
        slo = slos[instance.split("{")[0]]
        baseline_burn = Fraction(*counts) / slo.error_budget
        assert baseline_burn < Fraction(1, 2), (instance, float(baseline_burn))
        assert all(baseline_burn < rule.factor / 4 for rule in evaluator_policy(slo).rules), instance
        firing = _firing_minutes(slo, counts, fault[instance], shares, config.rate)
        assert not {at for at in firing if at <= rounds[0][0]}, f"{instance} fires before the first fault"
        last_sent = -group_interval_m
        for (start, end), (following, _) in zip(rounds, rounds[1:], strict=False):
            this_round = sorted(at for at in firing if start < at <= following)
            if not this_round:
                continue
            # One stretch, over by five minutes after the fault. The incident flushes at once, then
            # every group_interval, and a new incident of the same SLO waits group_interval after
            # the last notification of the one before (alerts/dispatch.py).
            assert this_round == list(range(this_round[0], this_round[-1] + 1)), (instance, this_round)
            resolved = this_round[-1] + 1
            assert resolved <= end + 5 and resolved <= following, (instance, start, this_round)
            triggered = max(this_round[0], last_sent + group_interval_m)
            last_sent = next(f for f in range(triggered, 10**6, group_interval_m) if f >= resolved)
            assert triggered < resolved and last_sent <= following, (instance, start, this_round)
            notified.setdefault(instance, {})[start] = (triggered, last_sent)
    paging = {
        "payments-availability",
        "orders-monthly",
        "gateway-availability",
        "gateway-requests-counter",
        "gateway-routes-latency{/api/checkout}",
    }
    # The README's first round: pages at minute 3, every resolve written by minute 14.
    first = rounds[0][0]
    assert {i for i, by_round in notified.items() if by_round.get(first, (0,))[0] == 3} == paging
    assert max(by_round[first][1] for by_round in notified.values()) <= 14
    for instance in paging:  # and every round pages within five minutes of the fault's start
        pages = {start for start, (triggered, _) in notified[instance].items() if triggered <= start + 5}
        assert pages == {start for start, _ in rounds[:-1]}, (instance, notified[instance])
