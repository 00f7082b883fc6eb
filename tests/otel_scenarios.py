"""One trace scenario sent through the real SDK, and the checks that it came back whole.

Shared by the OTLP/HTTP and OTLP/gRPC round-trip tests: the store must give back the same spans
whichever receiver took them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

#: Attribute values of every kind the Python SDK can send.
ATTRIBUTES = {
    "str": "text with 'quotes' and ünïcode",
    "int": -42,
    "float": 2.5,
    "bool": True,
    "false": False,
    "zero": 0,
    "empty": "",
    "strings": ("a", "b"),
    "ints": (1, 2, 3),
    "floats": (0.5, 1.5),
    "bools": (True, False),
}
SCOPE = ("roundtrip.scope", "9.9")
SCOPE_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
SCOPE_ATTRIBUTES = {"scope.shard": 7, "scope.tags": ("x", "y"), "scope.name": "lib"}
RESOURCE_SCHEMA_URL = "https://opentelemetry.io/schemas/1.24.0"
#: Event and link attributes of several kinds: they keep them as span attributes do.
EVENT_ATTRIBUTES = {"attempt": 2, "reason": "timeout", "e.bool": True, "e.arr": [1, 2], "e.ratio": 0.5}
LINK_ATTRIBUTES = {"link.attr": "x", "link.n": 3, "link.ok": False}


def resource(service: str) -> Resource:
    """A resource with attributes of several kinds."""
    return Resource.create(
        {"service.name": service, "service.version": "1.2.3", "pod.replicas": 3, "cloud.enabled": True},
        schema_url=RESOURCE_SCHEMA_URL,
    )


def _as_stored(attributes: object) -> dict:
    """SDK attributes as the store gives them back (sequences as lists)."""
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in dict(attributes).items()}


@dataclass(frozen=True)
class SentTrace:
    trace_id: str
    root_span_id: str
    spans: tuple[ReadableSpan, ...]
    resource: Resource


def send_trace(exporter: SpanExporter, service: str, correlation_key: str) -> SentTrace:
    """Export one trace of five spans (every kind, status, an event, links) through ``exporter``."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource(service))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(*SCOPE, schema_url=SCOPE_SCHEMA_URL, attributes=SCOPE_ATTRIBUTES)
    linked = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0x00F067AA0BA902B7,
        True,
        TraceFlags(1),
        TraceState([("vendor", "v")]),
    )
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=ATTRIBUTES) as root:
        root.set_status(Status(StatusCode.ERROR, "payment declined"))
        root.add_event("retry", EVENT_ATTRIBUTES)
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with tracer.start_as_current_span(
                f"child-{kind.name}", kind=kind, links=[Link(linked, LINK_ATTRIBUTES)]
            ) as child:
                child.set_status(Status(StatusCode.OK))
                child.set_attribute(correlation_key, "corr-123")
    provider.shutdown()
    context = root.get_span_context()
    return SentTrace(
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        tuple(memory.get_finished_spans()),
        resource(service),
    )


def check_trace(stored_spans: list[dict], sent: SentTrace, service: str) -> None:
    """Every field of every sent span is stored as sent (compared with the exporter's own encoding)."""
    stored = {s["span_id"]: s for s in stored_spans}
    expected = {format(s.context.span_id, "016x"): s for s in sent.spans}
    on_wire = {s.span_id.hex(): s for s in encode_spans(sent.spans).resource_spans[0].scope_spans[0].spans}
    assert set(stored) == set(expected)
    for span_id, want in expected.items():
        got = stored[span_id]
        assert got["trace_id"] == sent.trace_id
        assert got["parent_span_id"] == (format(want.parent.span_id, "016x") if want.parent else "")
        assert (got["name"], got["kind"], got["service_name"]) == (want.name, want.kind.name, service)
        assert int(got["start_time_unix_nano"]) == want.start_time
        assert int(got["end_time_unix_nano"]) == want.end_time
        assert got["duration_ns"] == want.end_time - want.start_time
        assert got["status"] == {
            "code": want.status.status_code.name,
            "message": want.status.description or "",
        }
        assert got["flags"] == on_wire[span_id].flags
        assert got["scope"] == {
            "name": SCOPE[0],
            "version": SCOPE[1],
            "attributes": _as_stored(SCOPE_ATTRIBUTES),
            "schema_url": SCOPE_SCHEMA_URL,
        }
        assert got["resource"] == {
            "attributes": {**sent.resource.attributes},
            "schema_url": RESOURCE_SCHEMA_URL,
        }
        assert got["attributes"] == _as_stored(want.attributes)
        # Typed, exactly: 2 == 2.0 and True == 1 in Python, so the kinds are compared too.
        assert [(e["name"], e["attributes"], int(e["time_unix_nano"])) for e in got["events"]] == [
            (e.name, _as_stored(e.attributes), e.timestamp) for e in want.events
        ]
        for event in got["events"]:
            kinds = {k: type(v) for k, v in event["attributes"].items()}
            assert kinds == {k: type(v) for k, v in _as_stored(EVENT_ATTRIBUTES).items()}
        # The SDK's encoder does not send a link's trace_state: compare with what was sent.
        assert [
            (ln["trace_id"], ln["span_id"], ln["trace_state"], ln["flags"], ln["attributes"])
            for ln in got["links"]
        ] == [
            (ln.trace_id.hex(), ln.span_id.hex(), ln.trace_state, ln.flags, LINK_ATTRIBUTES)
            for ln in on_wire[span_id].links
        ]
        assert all(ln.flags for ln in on_wire[span_id].links)  # the exporter sets them: 0 would prove nothing
        for link in got["links"]:
            kinds = {k: type(v) for k, v in link["attributes"].items()}
            assert kinds == {k: type(v) for k, v in LINK_ATTRIBUTES.items()}
        assert len(got["links"]) == len(want.links)
    root = stored[sent.root_span_id]
    assert root["attributes"]["zero"] == 0 and root["attributes"]["false"] is False
    assert root["attributes"]["int"] == -42 and root["attributes"]["float"] == 2.5
    assert root["correlation_id"] == ""
    assert {s["correlation_id"] for s in stored.values() if s["parent_span_id"]} == {"corr-123"}


# -- logs ------------------------------------------------------------------------------------------

SEVERITIES = [
    (SeverityNumber.TRACE, "TRACE"),
    (SeverityNumber.DEBUG, "DEBUG"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.WARN, "WARN"),
    (SeverityNumber.ERROR, "ERROR"),
    (SeverityNumber.FATAL, "FATAL"),
]
LOG_SCOPE = ("roundtrip.logs", "0.1")

#: Reads rows from the store: (sql, parameters) -> rows as dicts.
Rows = Callable[..., list[dict]]


def send_logs(exporter: LogExporter, service: str) -> tuple[str, str]:
    """Export a log record per severity and one structured record, inside a span; return its ids."""
    provider = LoggerProvider(resource=resource(service))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger(*LOG_SCOPE)
    with (
        TracerProvider(resource=resource(service)).get_tracer("t").start_as_current_span("with-logs") as span
    ):
        for number, text in SEVERITIES:
            logger.emit(
                LogRecord(
                    severity_number=number,
                    severity_text=text,
                    body=f"message at {text}",
                    attributes={"level.int": number.value, "correlation.id": f"log-{text}"},
                )
            )
        logger.emit(
            LogRecord(
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body={"structured": True, "count": 2},
                attributes=ATTRIBUTES,
            )
        )
    provider.shutdown()
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def check_logs(rows_of: Rows, service: str, trace_id: str, span_id: str) -> None:
    """The records of ``send_logs`` are stored with severities, bodies, kinds, ids and correlation ids."""
    rows = rows_of(
        "SELECT severity_number, severity_text, body, toString(body_type) AS body_kind, attributes, "
        "CAST(attribute_types, 'Map(String, String)') AS kinds, correlation_id, "
        "lower(hex(trace_id)) AS tid, lower(hex(span_id)) AS sid, service_name, scope_name, scope_version, "
        "resource_attributes FROM logs WHERE trace_id = unhex({t:String}) ORDER BY timestamp",
        {"t": trace_id},
    )
    assert len(rows) == 7, rows
    for row, (number, text) in zip(rows, SEVERITIES, strict=False):
        assert (row["severity_number"], row["severity_text"]) == (number.value, text)
        assert row["body"] == f"message at {text}" and row["correlation_id"] == f"log-{text}"
        assert dict(row["attributes"])["level.int"] == str(number.value)
        assert dict(row["kinds"]) == {"level.int": "int"}
    for row in rows:
        assert (row["tid"], row["sid"], row["service_name"]) == (trace_id, span_id, service)
        assert (row["scope_name"], row["scope_version"]) == LOG_SCOPE
        assert dict(row["resource_attributes"])["pod.replicas"] == "3"
    structured = rows[-1]
    assert structured["body_kind"] == "kvlist"
    assert structured["body"] == '{"structured":true,"count":2}'
    assert dict(structured["attributes"])["strings"] == '["a","b"]'
    assert dict(structured["kinds"])["bools"] == "array"


# -- metrics ---------------------------------------------------------------------------------------

METRIC_SCOPE = ("roundtrip.metrics", "2.0")


def send_metrics(exporter: MetricExporter, service: str) -> None:
    """Export one export's worth of a counter, an up-down counter, a gauge and two histogram kinds."""
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [
        View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation(max_size=20))
    ]
    provider = MeterProvider(metric_readers=[reader], resource=resource(service), views=views)
    meter = provider.get_meter(*METRIC_SCOPE)
    meter.create_counter("requests", unit="1", description="served requests").add(5, {"route": "/a"})
    meter.create_up_down_counter("inflight").add(-3, {"route": "/a"})
    meter.create_observable_gauge("temperature", callbacks=[lambda _: [Observation(21.5, {"room": "x"})]])
    histogram = meter.create_histogram("latency", unit="ms")
    exp_histogram = meter.create_histogram("latency.exp", unit="ms")
    for value in (3, 7, 30, 700):
        histogram.record(value, {"route": "/a"})
        exp_histogram.record(value, {"route": "/a"})
    provider.shutdown()


def check_metrics(rows_of: Rows, service: str) -> None:
    """The points of ``send_metrics`` are stored in the table of their kind, values intact."""

    def one(table: str, name: str) -> dict:
        rows = rows_of(
            f"SELECT * FROM {table} WHERE service_name = {{s:String}} AND metric_name = {{m:String}}",
            {"s": service, "m": name},
        )
        assert len(rows) == 1, rows
        return rows[0]

    counter = one("metrics_sum", "requests")
    assert (counter["value"], counter["is_monotonic"], counter["aggregation_temporality"]) == (5.0, True, 2)
    assert (counter["metric_unit"], counter["metric_description"]) == ("1", "served requests")
    assert dict(counter["attributes"]) == {"route": "/a"}
    assert (counter["scope_name"], counter["scope_version"]) == METRIC_SCOPE
    updown = one("metrics_sum", "inflight")
    assert (updown["value"], updown["is_monotonic"]) == (-3.0, False)
    gauge = one("metrics_gauge", "temperature")
    assert gauge["value"] == 21.5 and dict(gauge["attributes"]) == {"room": "x"}
    hist = one("metrics_histogram", "latency")
    assert (hist["count"], hist["sum"], hist["min"], hist["max"]) == (4, 740.0, 3.0, 700.0)
    assert sum(hist["bucket_counts"]) == 4 and len(hist["bucket_counts"]) == len(hist["explicit_bounds"]) + 1
    assert hist["explicit_bounds"][:3] == [0.0, 5.0, 10.0]
    exp = one("metrics_exponential_histogram", "latency.exp")
    assert (exp["count"], exp["sum"], exp["min"], exp["max"]) == (4, 740.0, 3.0, 700.0)
    assert sum(exp["positive_bucket_counts"]) + exp["zero_count"] == 4
    assert exp["scale"] <= 20
