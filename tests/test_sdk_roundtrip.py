"""The real OpenTelemetry SDK exports over OTLP/HTTP protobuf; every field comes back from the store."""

from __future__ import annotations

import time

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from tests.conftest import wait_until
from tests.otel_scenarios import check_logs, check_metrics, check_trace, send_logs, send_metrics, send_trace


def test_traces_round_trip_every_field(sloscope) -> None:  # noqa: ANN001
    sent = send_trace(
        OTLPSpanExporter(endpoint=f"{sloscope.otlp}/v1/traces"), "roundtrip", "x-correlation-id"
    )

    def fetch() -> dict | None:
        reply = httpx.get(f"{sloscope.api}/api/v1/traces/{sent.trace_id}")
        return reply.json() if reply.status_code == 200 and len(reply.json()["spans"]) == 5 else None

    check_trace(wait_until(fetch)["spans"], sent, "roundtrip")


def test_logs_round_trip(sloscope) -> None:  # noqa: ANN001
    trace_id, span_id = send_logs(OTLPLogExporter(endpoint=f"{sloscope.otlp}/v1/logs"), "roundtrip")
    sloscope.drain()
    check_logs(sloscope.rows, "roundtrip", trace_id, span_id)


def test_metrics_round_trip_all_point_kinds(sloscope) -> None:  # noqa: ANN001
    send_metrics(OTLPMetricExporter(endpoint=f"{sloscope.otlp}/v1/metrics"), "roundtrip")
    sloscope.drain()
    check_metrics(sloscope.rows, "roundtrip")


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
    rows = wait_until(
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
    spans = wait_until(
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


def test_event_and_link_attributes_keep_their_kinds_in_both_apis(sloscope) -> None:  # noqa: ANN001
    """The SDK's typed event and link attributes come back typed from the JSON API, and as typed Jaeger
    log fields (arrays as JSON text, as Jaeger renders array tags)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    provider = TracerProvider(resource=Resource.create({"service.name": "kinds"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{sloscope.otlp}/v1/traces")))
    other = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, True, TraceFlags(1))
    tracer = provider.get_tracer("kinds.test")
    with tracer.start_as_current_span("op", links=[Link(other, {"l.int": 5, "l.dbl": 0.25})]) as span:
        span.add_event("e", {"e.int": 1, "e.bool": True, "e.arr": [1, 2], "e.ratio": 0.5, "e.text": "1"})
    provider.shutdown()
    trace_id = format(span.get_span_context().trace_id, "032x")

    def fetch() -> list | None:
        reply = httpx.get(f"{sloscope.api}/api/v1/traces/{trace_id}")
        return reply.json()["spans"] if reply.status_code == 200 else None

    (stored,) = wait_until(fetch)
    attributes = stored["events"][0]["attributes"]
    assert attributes == {"e.int": 1, "e.bool": True, "e.arr": [1, 2], "e.ratio": 0.5, "e.text": "1"}
    kinds = [type(v) for v in attributes.values()]
    assert kinds == [int, bool, list, float, str]  # 1 == True in Python: the kinds themselves
    (link,) = stored["links"]
    assert link["attributes"] == {"l.int": 5, "l.dbl": 0.25} and type(link["attributes"]["l.int"]) is int

    reply = httpx.get(f"{sloscope.api}/jaeger/api/traces/{trace_id}")
    assert reply.status_code == 200, reply.text
    (jaeger_span,) = reply.json()["data"][0]["spans"]
    assert jaeger_span["logs"][0]["fields"] == [
        {"key": "event", "type": "string", "value": "e"},
        {"key": "e.int", "type": "int64", "value": 1},
        {"key": "e.bool", "type": "bool", "value": True},
        {"key": "e.arr", "type": "string", "value": "[1,2]"},
        {"key": "e.ratio", "type": "float64", "value": 0.5},
        {"key": "e.text", "type": "string", "value": "1"},
    ]
