"""The real OpenTelemetry SDK exports over OTLP/HTTP protobuf; every field comes back from the store."""

from __future__ import annotations

import time

import httpx
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

RESOURCE = Resource.create(
    {"service.name": "roundtrip", "service.version": "1.2.3", "pod.replicas": 3, "cloud.enabled": True}
)

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


def _wait(predicate, timeout: float = 20.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_traces_round_trip_every_field(sloscope) -> None:  # noqa: ANN001
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{sloscope.otlp}/v1/traces")))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("roundtrip.scope", "9.9")
    linked = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0x00F067AA0BA902B7,
        True,
        TraceFlags(1),
        TraceState([("vendor", "value")]),
    )
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=ATTRIBUTES) as root:
        root.set_status(Status(StatusCode.ERROR, "payment declined"))
        root.add_event("retry", {"attempt": 2, "reason": "timeout"})
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with tracer.start_as_current_span(
                f"child-{kind.name}", kind=kind, links=[Link(linked, {"link.attr": "x"})]
            ) as child:
                child.set_status(Status(StatusCode.OK))
                child.set_attribute("x-correlation-id", "corr-123")
    provider.shutdown()
    expected = {format(s.context.span_id, "016x"): s for s in memory.get_finished_spans()}
    # The exporter's own encoder says which flag bits went on the wire.
    sent = encode_spans(memory.get_finished_spans()).resource_spans[0].scope_spans[0].spans
    sent_by_id = {s.span_id.hex(): s for s in sent}
    trace_id = format(root.get_span_context().trace_id, "032x")

    def fetch() -> dict | None:
        reply = httpx.get(f"{sloscope.api}/api/v1/traces/{trace_id}")
        return reply.json() if reply.status_code == 200 and len(reply.json()["spans"]) == 5 else None

    stored = {s["span_id"]: s for s in _wait(fetch)["spans"]}
    assert set(stored) == set(expected)
    for span_id, want in expected.items():
        got = stored[span_id]
        assert got["trace_id"] == trace_id
        assert got["parent_span_id"] == (format(want.parent.span_id, "016x") if want.parent else "")
        assert got["name"] == want.name
        assert got["kind"] == want.kind.name
        assert got["service_name"] == "roundtrip"
        assert int(got["start_time_unix_nano"]) == want.start_time
        assert int(got["end_time_unix_nano"]) == want.end_time
        assert got["duration_ns"] == want.end_time - want.start_time
        assert got["status"] == {
            "code": want.status.status_code.name,
            "message": want.status.description or "",
        }
        assert got["flags"] == sent_by_id[span_id].flags
        assert got["scope"] == {"name": "roundtrip.scope", "version": "9.9"}
        assert got["resource"]["attributes"] == {**RESOURCE.attributes}
        assert got["attributes"] == {
            k: list(v) if isinstance(v, tuple) else v for k, v in want.attributes.items()
        }
        assert [(e["name"], e["attributes"], int(e["time_unix_nano"])) for e in got["events"]] == [
            (e.name, {k: str(v) for k, v in e.attributes.items()}, e.timestamp) for e in want.events
        ]
        # (The SDK's encoder does not send a link's trace_state; compare with what was sent.)
        assert [
            (ln["trace_id"], ln["span_id"], ln["trace_state"], ln["attributes"]) for ln in got["links"]
        ] == [
            (ln.trace_id.hex(), ln.span_id.hex(), ln.trace_state, {"link.attr": "x"})
            for ln in sent_by_id[span_id].links
        ]
        assert len(got["links"]) == len(want.links)
    root_row = stored[format(root.get_span_context().span_id, "016x")]
    assert root_row["attributes"]["zero"] == 0 and root_row["attributes"]["false"] is False
    assert root_row["correlation_id"] == ""
    assert {s["correlation_id"] for s in stored.values() if s["parent_span_id"]} == {"corr-123"}


SEVERITIES = [
    (SeverityNumber.TRACE, "TRACE"),
    (SeverityNumber.DEBUG, "DEBUG"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.WARN, "WARN"),
    (SeverityNumber.ERROR, "ERROR"),
    (SeverityNumber.FATAL, "FATAL"),
]


def test_logs_round_trip(sloscope) -> None:  # noqa: ANN001
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{sloscope.otlp}/v1/logs"))
    )
    logger = provider.get_logger("roundtrip.logs", "0.1")
    tracer_provider = TracerProvider(resource=RESOURCE)
    with tracer_provider.get_tracer("t").start_as_current_span("with-logs") as span:
        for number, text in SEVERITIES:
            logger.emit(
                LogRecord(
                    severity_number=number,
                    severity_text=text,
                    body=f"message at {text}",
                    attributes={"level.int": number.value, "correlation_id": f"log-{text}"},
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
    trace_id = format(span.get_span_context().trace_id, "032x")
    span_id = format(span.get_span_context().span_id, "016x")
    sloscope.drain()
    rows = _wait(
        lambda: (
            (
                r := sloscope.rows(
                    "SELECT severity_number, severity_text, body, toString(body_type) AS body_kind, attributes, "
                    "CAST(attribute_types, 'Map(String, String)') AS kinds, "
                    "correlation_id, "
                    "lower(hex(trace_id)) AS tid, lower(hex(span_id)) AS sid, service_name, scope_name, scope_version, "
                    "resource_attributes FROM logs WHERE trace_id = unhex({t:String}) ORDER BY timestamp",
                    {"t": trace_id},
                )
            )
            and len(r) == 7
            and r
        )
    )
    for row, (number, text) in zip(rows, SEVERITIES, strict=False):
        assert (row["severity_number"], row["severity_text"], row["body"]) == (
            number.value,
            text,
            f"message at {text}",
        )
        assert row["correlation_id"] == f"log-{text}"
        assert dict(row["attributes"])["level.int"] == str(number.value)
        assert dict(row["kinds"]) == {"level.int": "int"}
    for row in rows:
        assert (row["tid"], row["sid"], row["service_name"]) == (trace_id, span_id, "roundtrip")
        assert (row["scope_name"], row["scope_version"]) == ("roundtrip.logs", "0.1")
        assert dict(row["resource_attributes"])["pod.replicas"] == "3"
    structured = rows[-1]
    assert structured["body_kind"] == "kvlist"
    assert structured["body"] == '{"structured":true,"count":2}'
    assert dict(structured["attributes"])["strings"] == '["a","b"]'
    assert dict(structured["kinds"])["bools"] == "array"


def test_metrics_round_trip_all_point_kinds(sloscope) -> None:  # noqa: ANN001
    exporter = OTLPMetricExporter(endpoint=f"{sloscope.otlp}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [
        View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation(max_size=20))
    ]
    provider = MeterProvider(metric_readers=[reader], resource=RESOURCE, views=views)
    meter = provider.get_meter("roundtrip.metrics", "2.0")
    meter.create_counter("requests", unit="1", description="served requests").add(5, {"route": "/a"})
    meter.create_up_down_counter("inflight").add(-3, {"route": "/a"})
    meter.create_observable_gauge("temperature", callbacks=[lambda _: [Observation(21.5, {"room": "x"})]])
    histogram = meter.create_histogram("latency", unit="ms")
    exp_histogram = meter.create_histogram("latency.exp", unit="ms")
    for value in (3, 7, 30, 700):
        histogram.record(value, {"route": "/a"})
        exp_histogram.record(value, {"route": "/a"})
    provider.shutdown()
    sloscope.drain()

    def one(sql: str) -> dict:
        rows = _wait(lambda: sloscope.rows(sql))
        assert len(rows) == 1, rows
        return rows[0]

    where = "WHERE service_name = 'roundtrip'"
    counter = one(f"SELECT * FROM metrics_sum {where} AND metric_name = 'requests'")
    assert (counter["value"], counter["is_monotonic"], counter["aggregation_temporality"]) == (5.0, True, 2)
    assert (counter["metric_unit"], counter["metric_description"]) == ("1", "served requests")
    assert dict(counter["attributes"]) == {"route": "/a"}
    assert (counter["scope_name"], counter["scope_version"]) == ("roundtrip.metrics", "2.0")
    updown = one(f"SELECT value, is_monotonic FROM metrics_sum {where} AND metric_name = 'inflight'")
    assert updown == {"value": -3.0, "is_monotonic": False}
    gauge = one(f"SELECT value, attributes FROM metrics_gauge {where} AND metric_name = 'temperature'")
    assert gauge["value"] == 21.5 and dict(gauge["attributes"]) == {"room": "x"}
    hist = one(f"SELECT * FROM metrics_histogram {where} AND metric_name = 'latency'")
    assert (hist["count"], hist["sum"], hist["min"], hist["max"]) == (4, 740.0, 3.0, 700.0)
    assert sum(hist["bucket_counts"]) == 4 and len(hist["bucket_counts"]) == len(hist["explicit_bounds"]) + 1
    assert hist["explicit_bounds"][:3] == [0.0, 5.0, 10.0]
    exp = one(f"SELECT * FROM metrics_exponential_histogram {where} AND metric_name = 'latency.exp'")
    assert (exp["count"], exp["sum"], exp["min"], exp["max"]) == (4, 740.0, 3.0, 700.0)
    assert sum(exp["positive_bucket_counts"]) + exp["zero_count"] == 4
    assert exp["scale"] <= 20


def test_summary_and_exemplars_from_raw_protobuf(sloscope) -> None:  # noqa: ANN001
    """The SDK emits no Summary and no exemplar ids by default: send them as a raw OTLP request."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    now = time.time_ns()
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "raw-metrics"
    sm = rm.scope_metrics.add()
    summary = sm.metrics.add(name="rpc.latency.summary", unit="s")
    point = summary.summary.data_points.add(
        time_unix_nano=now, start_time_unix_nano=now - 10**9, count=10, sum=4.5
    )
    point.quantile_values.add(quantile=0.5, value=0.3)
    point.quantile_values.add(quantile=0.99, value=1.2)
    gauge = sm.metrics.add(name="queue.size")
    gp = gauge.gauge.data_points.add(time_unix_nano=now, as_int=17)
    ex = gp.exemplars.add(
        time_unix_nano=now, as_int=9, trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9))
    )
    ex.filtered_attributes.add(key="user").value.string_value = "u1"
    reply = httpx.post(
        f"{sloscope.otlp}/v1/metrics",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert reply.status_code == 200
    sloscope.drain()
    rows = _wait(
        lambda: sloscope.rows(
            "SELECT count, sum, quantiles, quantile_values FROM metrics_summary "
            "WHERE service_name = 'raw-metrics'"
        )
    )
    assert rows == [{"count": 10, "sum": 4.5, "quantiles": [0.5, 0.99], "quantile_values": [0.3, 1.2]}]
    rows = sloscope.rows(
        "SELECT value, `exemplars.value` AS ev, `exemplars.filtered_attributes` AS ea, "
        "arrayMap(x -> lower(hex(x)), `exemplars.trace_id`) AS et FROM metrics_gauge "
        "WHERE service_name = 'raw-metrics'"
    )
    assert rows == [{"value": 17.0, "ev": [9.0], "ea": [[("user", "u1")]], "et": [bytes(range(1, 17)).hex()]}]


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_bytes_and_kvlist_values_and_resource_correlation(sloscope, encoding: str) -> None:  # noqa: ANN001
    """Attribute kinds the Python SDK cannot emit (bytes, kvlist, nested arrays) survive as well."""
    import gzip

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(
        [
            KeyValue(key="service.name", value=AnyValue(string_value="raw")),
            KeyValue(key="correlation.id", value=AnyValue(string_value="from-resource")),
        ]
    )
    span = rs.scope_spans.add().spans.add(
        trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"),
        span_id=bytes.fromhex("eee19b7ec3c1b174"),
        name=f"raw-{encoding}",
        kind=2,
        start_time_unix_nano=time.time_ns(),
        end_time_unix_nano=time.time_ns() + 5,
    )
    nested = ArrayValue(
        values=[AnyValue(int_value=1), AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=2)]))]
    )
    span.attributes.extend(
        [
            KeyValue(key="blob", value=AnyValue(bytes_value=b"\x00\xffbinary")),
            KeyValue(
                key="map",
                value=AnyValue(
                    kvlist_value=KeyValueList(
                        values=[
                            KeyValue(key="a", value=AnyValue(string_value='x"y')),
                            KeyValue(key="b", value=AnyValue(double_value=1.5)),
                        ]
                    )
                ),
            ),
            KeyValue(key="nested", value=AnyValue(array_value=nested)),
            KeyValue(key="unset", value=AnyValue()),
        ]
    )
    body = request.SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    assert httpx.post(f"{sloscope.otlp}/v1/traces", content=body, headers=headers).status_code == 200
    sloscope.drain()
    spans = _wait(
        lambda: [
            s
            for s in httpx.get(f"{sloscope.api}/api/v1/traces/5b8efff798038103d269b633813fc60c")
            .json()
            .get("spans", [])
            if s["name"] == f"raw-{encoding}"
        ]
    )
    attrs = spans[0]["attributes"]
    import base64

    assert base64.b64decode(attrs["blob"]["bytes"]) == b"\x00\xffbinary"
    assert attrs["map"] == {"a": 'x"y', "b": 1.5}
    # The engine decodes two levels; a third arrives as the base64 of its protobuf encoding.
    inner = ArrayValue(values=[AnyValue(int_value=2)]).SerializeToString()
    assert attrs["nested"] == [1, base64.b64encode(inner).decode()]
    assert attrs["unset"] is None
    assert spans[0]["correlation_id"] == "from-resource"
