"""Tests for collector.otlp_json against the opentelemetry-proto example payloads and built messages."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.otlp_json import OtlpJsonError, parse_request, response_json
from tests.conftest import DATA

FIXTURES = DATA / "otlp"
ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ids_to(node: Any, convert: Any) -> Any:
    """Apply ``convert`` to every id, found by key name anywhere (independent of the module's schema walk)."""
    if isinstance(node, dict):
        return {k: convert(v) if k in ID_KEYS else ids_to(v, convert) for k, v in node.items()}
    if isinstance(node, list):
        return [ids_to(v, convert) for v in node]
    return node


def b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def to_otlp_json(message: Message, **options: Any) -> bytes:
    return json.dumps(ids_to(json_format.MessageToDict(message, **options), b64_to_hex)).encode()


def attrs(key_values: Any) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in key_values}


def span_json(**fields: Any) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [fields]}]}]}).encode()


def one_span(body: bytes) -> trace_pb2.Span:
    request = parse_request("traces", body)
    return request.resource_spans[0].scope_spans[0].spans[0]


# --- the opentelemetry-proto example payloads ---


@pytest.mark.parametrize(
    ("name", "signal"),
    [("trace.json", "traces"), ("metrics.json", "metrics"), ("logs.json", "logs"), ("events.json", "logs")],
)
def test_fixture_matches_json_format_after_hex_conversion(name: str, signal: str) -> None:
    # Oracle: json_format on the same document once the hex ids are rewritten as base64.
    expected = json_format.ParseDict(ids_to(json.loads(fixture(name)), hex_to_b64), REQUESTS[signal]())
    parsed = parse_request(signal, fixture(name))
    assert type(parsed) is REQUESTS[signal]
    assert parsed == expected


def test_trace_fixture() -> None:
    request = parse_request("traces", fixture("trace.json"))
    resource_spans = request.resource_spans[0]
    assert attrs(resource_spans.resource.attributes)["service.name"].string_value == "my.service"
    scope_spans = resource_spans.scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("my.library", "1.0.0")
    assert attrs(scope_spans.scope.attributes)["my.scope.attribute"].string_value == "some scope attribute"
    (span,) = scope_spans.spans
    # The fixture writes ids in upper case; they must come back as the same bytes, not base64 garbage.
    assert span.trace_id == bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
    assert span.trace_id.hex().upper() == "5B8EFFF798038103D269B633813FC60C"
    assert span.span_id == bytes.fromhex("EEE19B7EC3C1B174")
    assert span.parent_span_id == bytes.fromhex("EEE19B7EC3C1B173")
    assert (len(span.trace_id), len(span.span_id)) == (16, 8)
    assert span.name == "I'm a server span"
    assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000
    assert attrs(span.attributes)["my.span.attr"].string_value == "some value"


def test_logs_fixture_has_every_any_value_kind() -> None:
    request = parse_request("logs", fixture("logs.json"))
    (record,) = request.resource_logs[0].scope_logs[0].log_records
    assert record.trace_id == bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
    assert record.span_id == bytes.fromhex("EEE19B7EC3C1B174")
    assert record.time_unix_nano == record.observed_time_unix_nano == 1544712660300000000
    assert record.severity_number == logs_pb2.SEVERITY_NUMBER_INFO2
    assert record.severity_text == "Information"
    assert record.body.string_value == "Example log record"
    values = attrs(record.attributes)
    assert values["string.attribute"].string_value == "some string"
    assert values["boolean.attribute"].bool_value is True
    assert values["int.attribute"].int_value == 10
    assert values["double.attribute"].double_value == 637.704
    assert [v.string_value for v in values["array.attribute"].array_value.values] == ["many", "values"]
    kvlist = attrs(values["map.attribute"].kvlist_value.values)
    assert kvlist["some.map.key"].string_value == "some value"
    assert {key: value.WhichOneof("value") for key, value in values.items()} == {
        "string.attribute": "string_value",
        "boolean.attribute": "bool_value",
        "int.attribute": "int_value",
        "double.attribute": "double_value",
        "array.attribute": "array_value",
        "map.attribute": "kvlist_value",
    }


def test_events_fixture() -> None:
    request = parse_request("logs", fixture("events.json"))
    (record,) = request.resource_logs[0].scope_logs[0].log_records
    assert record.event_name == "browser.page_view"
    assert record.severity_number == logs_pb2.SEVERITY_NUMBER_INFO
    assert record.trace_id == b"" and record.span_id == b""
    assert attrs(record.attributes)["event.attribute"].string_value == "some event attribute"
    body = attrs(record.body.kvlist_value.values)
    # intValue "0" is the default value, but inside a oneof it must still count as set.
    assert body["type"].WhichOneof("value") == "int_value"
    assert body["type"].int_value == 0
    assert body["url"].string_value == "https://www.guidgenerator.com/online-guid-generator.aspx"
    assert body["title"].string_value == "Free Online GUID Generator"


def test_metrics_fixture_point_types() -> None:
    request = parse_request("metrics", fixture("metrics.json"))
    metrics = {m.name: m for m in request.resource_metrics[0].scope_metrics[0].metrics}
    assert {name: m.WhichOneof("data") for name, m in metrics.items()} == {
        "my.counter": "sum",
        "my.gauge": "gauge",
        "my.histogram": "histogram",
        "my.exponential.histogram": "exponential_histogram",
    }
    counter = metrics["my.counter"].sum
    assert counter.is_monotonic
    assert counter.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    (point,) = counter.data_points
    assert point.WhichOneof("value") == "as_double" and point.as_double == 5.0
    assert point.start_time_unix_nano == point.time_unix_nano == 1544712660300000000
    assert metrics["my.gauge"].gauge.data_points[0].as_double == 10.0

    (hist,) = metrics["my.histogram"].histogram.data_points
    assert (hist.count, hist.sum, hist.min, hist.max) == (2, 2.0, 0.0, 2.0)
    assert list(hist.bucket_counts) == [1, 1]
    assert list(hist.explicit_bounds) == [1.0]

    (exp,) = metrics["my.exponential.histogram"].exponential_histogram.data_points
    assert (exp.count, exp.sum, exp.scale, exp.zero_count, exp.max) == (3, 10.0, 0, 1, 5.0)
    assert exp.positive.offset == 1
    assert list(exp.positive.bucket_counts) == [0, 2]
    # "min": 0 is an explicit value of an optional field: presence must survive.
    assert exp.HasField("min") and exp.min == 0.0 and exp.HasField("sum")


# --- round trips of messages built in code ---


def _kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


EVERY_KIND = [
    _kv("s", string_value="text"),
    _kv("b", bool_value=False),
    _kv("i", int_value=-(2**63)),
    _kv("d", double_value=-1.5),
    _kv("raw", bytes_value=b"\x00\xff\xfe binary"),
    _kv("arr", array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="x")])),
    _kv("map", kvlist_value=KeyValueList(values=[_kv("nested", double_value=2.0)])),
    KeyValue(key="empty"),
]


def _trace_request() -> ExportTraceServiceRequest:
    span = trace_pb2.Span(
        trace_id=bytes(range(16)),
        span_id=b"\xff" * 8,
        parent_span_id=bytes.fromhex("00000000000000ab"),
        trace_state="a=b",
        flags=0x101,
        name="op",
        kind=trace_pb2.Span.SPAN_KIND_CONSUMER,
        start_time_unix_nano=2**64 - 1,
        end_time_unix_nano=1,
        attributes=EVERY_KIND,
        dropped_attributes_count=3,
        events=[trace_pb2.Span.Event(time_unix_nano=5, name="ev", attributes=EVERY_KIND[:2])],
        links=[trace_pb2.Span.Link(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, trace_state="x=y", flags=1)],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
    )
    return ExportTraceServiceRequest(
        resource_spans=[{"resource": {"attributes": EVERY_KIND}, "scope_spans": [{"spans": [span, span]}]}]
    )


def _metrics_request() -> ExportMetricsServiceRequest:
    exemplar = metrics_pb2.Exemplar(
        filtered_attributes=EVERY_KIND[:1],
        time_unix_nano=9,
        as_int=-7,
        trace_id=b"\xab" * 16,
        span_id=b"\xcd" * 8,
    )
    metrics = [
        metrics_pb2.Metric(name="g", gauge={"data_points": [{"as_int": 4, "exemplars": [exemplar]}]}),
        metrics_pb2.Metric(
            name="s",
            sum={"aggregation_temporality": 2, "is_monotonic": True, "data_points": [{"as_double": 0.5}]},
        ),
        metrics_pb2.Metric(
            name="h",
            histogram={
                "data_points": [
                    {"count": 3, "bucket_counts": [1, 2], "explicit_bounds": [0.1], "exemplars": [exemplar]}
                ]
            },
        ),
        metrics_pb2.Metric(
            name="e",
            exponential_histogram={
                "data_points": [
                    {"scale": -3, "negative": {"offset": -2, "bucket_counts": [5]}, "exemplars": [exemplar]}
                ]
            },
        ),
        metrics_pb2.Metric(
            name="q",
            summary={"data_points": [{"count": 1, "quantile_values": [{"quantile": 0.99, "value": 12.0}]}]},
            metadata=EVERY_KIND[:1],
        ),
    ]
    return ExportMetricsServiceRequest(resource_metrics=[{"scope_metrics": [{"metrics": metrics}]}])


def _logs_request() -> ExportLogsServiceRequest:
    record = logs_pb2.LogRecord(
        time_unix_nano=1,
        severity_number=logs_pb2.SEVERITY_NUMBER_FATAL4,
        body=AnyValue(bytes_value=b"\x00\x01"),
        attributes=EVERY_KIND,
        flags=1,
        trace_id=b"\x10" * 16,
        span_id=b"\x20" * 8,
        event_name="e",
    )
    return ExportLogsServiceRequest(resource_logs=[{"scope_logs": [{"log_records": [record]}]}])


ROUND_TRIPS = [("traces", _trace_request), ("metrics", _metrics_request), ("logs", _logs_request)]


@pytest.mark.parametrize(("signal", "build"), ROUND_TRIPS)
@pytest.mark.parametrize(
    "options",
    [{}, {"preserving_proto_field_name": True}, {"use_integers_for_enums": True}],
    ids=["camelCase", "snake_case", "enum-numbers"],
)
def test_round_trip_through_otlp_json(signal: str, build: Any, options: dict[str, Any]) -> None:
    message = build()
    assert parse_request(signal, to_otlp_json(message, **options)) == message


def test_ids_in_links_exemplars_and_logs_are_hex() -> None:
    body = to_otlp_json(_metrics_request())
    assert "abababababababababababababababab" in body.decode()
    exemplar = parse_request("metrics", body).resource_metrics[0].scope_metrics[0].metrics[0].gauge
    assert exemplar.data_points[0].exemplars[0].trace_id == b"\xab" * 16
    link = one_span(span_json(links=[{"traceId": "0102" * 8, "span_id": "ffFF" * 4}])).links[0]
    assert (link.trace_id, link.span_id) == (bytes.fromhex("0102" * 8), b"\xff" * 8)


# --- individual encoding rules ---


def test_snake_case_keys() -> None:
    body = json.dumps(
        {
            "resource_spans": [
                {
                    "scope_spans": [
                        {
                            "spans": [
                                {
                                    "trace_id": "5B8EFFF798038103D269B633813FC60C",
                                    "parent_span_id": "eee19b7ec3c1b173",
                                    "start_time_unix_nano": "7",
                                    "attributes": [{"key": "k", "value": {"int_value": "3"}}],
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    ).encode()
    span = one_span(body)
    assert span.trace_id == bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
    assert span.parent_span_id == bytes.fromhex("EEE19B7EC3C1B173")
    assert span.start_time_unix_nano == 7
    assert span.attributes[0].value.int_value == 3


def test_int64_as_string_or_number() -> None:
    as_string = one_span(span_json(startTimeUnixNano="1544712660000000000", droppedEventsCount="4"))
    as_number = one_span(span_json(startTimeUnixNano=1544712660000000000, droppedEventsCount=4))
    assert as_string == as_number
    assert as_number.start_time_unix_nano == 1544712660000000000
    # Beyond 2**53 a JSON number must not be squeezed through a float.
    assert one_span(span_json(endTimeUnixNano=2**64 - 1)).end_time_unix_nano == 2**64 - 1
    assert one_span(span_json(endTimeUnixNano=1e3)).end_time_unix_nano == 1000
    value = one_span(span_json(attributes=[{"key": "k", "value": {"intValue": -5}}])).attributes[0].value
    assert value.int_value == -5


def test_enum_by_name_or_number() -> None:
    by_name = one_span(span_json(kind="SPAN_KIND_CLIENT", status={"code": "STATUS_CODE_OK"}))
    by_number = one_span(span_json(kind=3, status={"code": 1}))
    assert by_name == by_number
    assert by_name.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert by_name.status.code == trace_pb2.Status.STATUS_CODE_OK
    # A name from a newer spec version is treated like an unknown field: left at the default.
    assert one_span(span_json(kind="SPAN_KIND_FROM_THE_FUTURE", name="x")).kind == 0


def test_unknown_fields_ignored() -> None:
    document = json.loads(fixture("trace.json"))
    document["futureTopLevel"] = {"a": [1, 2]}
    document["resourceSpans"][0]["schemaUrlV2"] = "x"
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["newField"] = [{"nested": True}]
    span["attributes"][0]["value"]["unknownValueKind"] = None
    parsed = parse_request("traces", json.dumps(document).encode())
    assert parsed == parse_request("traces", fixture("trace.json"))


def test_null_means_unset() -> None:
    assert one_span(span_json(name=None, attributes=None, status=None)) == trace_pb2.Span()


def test_hex_ids_of_any_length_and_case() -> None:
    assert one_span(span_json(traceId="abCD")).trace_id == b"\xab\xcd"
    assert one_span(span_json(traceId="", spanId="")).trace_id == b""
    assert one_span(span_json(traceId="AB" * 16)).trace_id == one_span(span_json(traceId="ab" * 16)).trace_id


def test_bytes_value_is_base64() -> None:
    def decoded(text: str) -> bytes:
        span = one_span(span_json(attributes=[{"key": "k", "value": {"bytesValue": text}}]))
        return span.attributes[0].value.bytes_value

    assert decoded("AP/+") == b"\x00\xff\xfe"
    assert decoded("AP_-") == b"\x00\xff\xfe"  # URL-safe alphabet
    assert decoded("AQ") == b"\x01"  # padding omitted
    with pytest.raises(OtlpJsonError, match=r"attributes\[0\]\.value\.bytesValue: not base64"):
        decoded("not base64!")


def test_response_json_partial_success() -> None:
    response = ExportTraceServiceResponse(partial_success={"rejected_spans": 2, "error_message": "bad ids"})
    assert json.loads(response_json(response)) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad ids"}
    }
    assert response_json(ExportTraceServiceResponse()) == b"{}"


# --- errors ---


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", r"^request body: not valid JSON"),
        (b"\xff\xfe\xfa", r"^request body: not valid JSON"),
        (b"", r"^request body: not valid JSON"),
        (b"[]", r"^request body: expected an object, got an array"),
        (b'"resourceSpans"', r"^request body: expected an object, got a string"),
        (b'{"resourceSpans": {}}', r"^resourceSpans: expected an array, got an object"),
        (b'{"resourceSpans": [[]]}', r"^resourceSpans\[0\]: expected an object, got an array"),
    ],
)
def test_malformed_body(body: bytes, message: str) -> None:
    with pytest.raises(OtlpJsonError, match=message):
        parse_request("traces", body)


def test_bad_hex_names_the_path() -> None:
    spans = [{}, {}, {}, {"traceId": "5B8EFFF798038103D269B633813FC60G"}]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    with pytest.raises(OtlpJsonError) as caught:
        parse_request("traces", body)
    assert str(caught.value).startswith("resourceSpans[0].scopeSpans[0].spans[3].traceId: not hex")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spanId": "abc"}, "spanId: not hex: odd length 3"),
        ({"parentSpanId": "ab cd"}, "parentSpanId: not hex"),  # whitespace is not hex
        ({"traceId": "é0"}, "traceId: not hex"),
        ({"traceId": 12}, "traceId: expected a hex string, got a number"),
        ({"links": [{"traceId": "xy"}]}, "links[0].traceId: not hex"),
        ({"name": 5}, "name: expected a string, got a number"),
        ({"startTimeUnixNano": "soon"}, "startTimeUnixNano: expected an integer"),
        ({"startTimeUnixNano": -1}, "startTimeUnixNano: integer -1 out of range"),
        ({"startTimeUnixNano": 1.5}, "startTimeUnixNano: expected an integer"),
        ({"flags": True}, "flags: expected an integer"),
        ({"kind": [2]}, "kind: expected an integer"),
        ({"status": {"code": 2**40}}, f"status.code: integer {2**40} out of range"),
        ({"attributes": "k=v"}, "attributes: expected an array, got a string"),
        (
            {"attributes": [{"key": "k", "value": {"boolValue": "true"}}]},
            "attributes[0].value.boolValue: expected",
        ),
        ({"attributes": [{"key": 1}]}, "attributes[0].key: expected a string"),
        (
            {"attributes": [{"value": {"doubleValue": "x"}}]},
            "attributes[0].value.doubleValue: expected a number",
        ),
        (
            {"attributes": [{"value": {"stringValue": "a", "intValue": "1"}}]},
            "attributes[0].value: more than one",
        ),
    ],
)
def test_wrong_types_name_the_path(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(OtlpJsonError) as caught:
        parse_request("traces", span_json(**fields))
    assert str(caught.value).startswith("resourceSpans[0].scopeSpans[0].spans[0]." + message)


def test_bad_ids_in_logs_and_exemplars() -> None:
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"span_id": "zz"}]}]}]}
    with pytest.raises(
        OtlpJsonError, match=r"^resourceLogs\[0\]\.scopeLogs\[0\]\.logRecords\[0\]\.span_id: "
    ):
        parse_request("logs", json.dumps(logs).encode())
    point = {"exemplars": [{"traceId": "0"}]}
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": [point]}}]}]}]}
    with pytest.raises(OtlpJsonError, match=r"sum\.dataPoints\[0\]\.exemplars\[0\]\.traceId: not hex: odd"):
        parse_request("metrics", json.dumps(metrics).encode())


def test_special_doubles() -> None:
    value = {"key": "k", "value": {"doubleValue": "-Infinity"}}
    assert one_span(span_json(attributes=[value])).attributes[0].value.double_value == float("-inf")


def test_unknown_signal() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        parse_request("profiles", b"{}")


def test_absurd_nesting_is_a_clean_error() -> None:
    depth = 5000
    value = '{"arrayValue":{"values":[' * depth + '{"stringValue":"x"}' + "]}}" * depth
    body = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":' + value + "}]}]}]}"
    with pytest.raises(OtlpJsonError, match="nested too deeply"):
        parse_request("logs", body.encode())
