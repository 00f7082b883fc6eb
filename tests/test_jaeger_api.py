"""Jaeger query API (/jaeger/api/...): golden OTLP->Jaeger output, Jaeger's JSON model, search, bounds."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from store.sql import queries
from tests.conftest import DATA, InProcess, in_process
from ui.jaeger import parse_duration

FIXTURES = DATA / "jaeger"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
MINUTE = 60 * 10**9
MS = 10**6
NOW = time.time_ns()
BASE = NOW - 10 * MINUTE  # every synthetic trace starts within the last 10 minutes

Span = trace_pb2.Span


class Server(InProcess):
    """The in-process server, with a helper for the Jaeger API."""

    def jaeger(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.api}/jaeger/api/{path}", params=params, timeout=30)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on free ports; 20-year retention because the golden fixture is from 2024."""
    with in_process(tmp_path_factory.mktemp("jaeger-data"), retention_days=7300) as running:
        yield Server(running.server, running.otlp, running.api)


# -- synthetic traces: three services, parent/child across them, events, links ------------------


def tid(n: int) -> bytes:
    return bytes.fromhex(f"{0xABC0 + n:016x}{n:016x}")


def sid(trace: int, n: int) -> bytes:
    return bytes.fromhex(f"{trace:08x}{n:08x}")


ODD_SERVICE = "odd\\svc\t1"  # a backslash and a tab: engine parameters are escaped text
SHORT_TRACE = bytes.fromhex("0" * 16 + "00000000000000aa")  # upper 64 bits zero: Jaeger prints 16 digits


def _attrs(**values: Any) -> list[KeyValue]:
    out = []
    for key, value in values.items():
        key = key.replace("__", ".")
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        elif isinstance(value, bytes):
            any_value = AnyValue(bytes_value=value)
        elif isinstance(value, list):
            any_value = AnyValue()
            any_value.array_value.values.extend(AnyValue(string_value=v) for v in value)
        else:
            any_value = AnyValue(string_value=value)
        out.append(KeyValue(key=key, value=any_value))
    return out


def _span(trace: bytes, span: bytes, name: str, kind: int, start: int, ms: int, **extra: Any) -> Span:
    s = Span(
        trace_id=trace,
        span_id=span,
        name=name,
        kind=kind,
        start_time_unix_nano=start,
        end_time_unix_nano=start + ms * MS,
        **extra,
    )
    return s


def synthetic_request() -> ExportTraceServiceRequest:
    """frontend -> payment -> db in traces 1 and 2, single-service traces 3-5."""
    t1, t2, t3, t4 = BASE + MINUTE, BASE + 2 * MINUTE, BASE + 3 * MINUTE, BASE + 4 * MINUTE
    server, client, internal = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
    error = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom")
    frontend = [
        _span(
            tid(1),
            sid(1, 1),
            "GET /checkout",
            server,
            t1,
            400,
            flags=0x301,
            status=error,
            attributes=_attrs(
                http__status_code=500, big=2**53 + 1, blob=b"\x00\x01\xfe", labels=["a", "b"], ratio=0.5
            ),
            events=[
                Span.Event(
                    time_unix_nano=t1 + 5 * MS, name="exception", attributes=_attrs(exception__message="bad")
                )
            ],
        ),
        _span(tid(1), sid(1, 2), "POST /pay", client, t1 + MS, 300, parent_span_id=sid(1, 1)),
        _span(tid(2), sid(2, 1), "GET /checkout", server, t2, 50, attributes=_attrs(http__status_code=200)),
        _span(tid(2), sid(2, 2), "POST /pay", client, t2 + MS, 30, parent_span_id=sid(2, 1)),
        _span(tid(3), sid(3, 1), "GET /home", server, t3, 20, attributes=_attrs(http__status_code=200)),
        _span(
            tid(4),
            sid(4, 1),
            "GET /checkout",
            server,
            t4,
            600,
            status=error,
            attributes=_attrs(http__status_code=500),
        ),
        _span(SHORT_TRACE, sid(5, 1), "cron", internal, BASE + 5 * MINUTE, 10),
        _span(
            SHORT_TRACE,
            sid(5, 2),
            "cron-step",
            internal,
            BASE + 5 * MINUTE + MS,
            5,
            parent_span_id=sid(5, 1),
            links=[
                Span.Link(
                    trace_id=SHORT_TRACE,
                    span_id=sid(5, 1),
                    attributes=_attrs(opentracing__ref_type="follows_from"),
                ),
                Span.Link(
                    trace_id=tid(1), span_id=sid(1, 1), attributes=_attrs(opentracing__ref_type="child_of")
                ),
            ],
        ),
    ]
    payment = [
        _span(
            tid(1),
            sid(1, 3),
            "charge",
            server,
            t1 + 2 * MS,
            250,
            parent_span_id=sid(1, 2),
            trace_state="k=v",
            links=[Span.Link(trace_id=tid(2), span_id=sid(2, 1))],
        ),
        _span(tid(1), sid(1, 4), "SELECT", client, t1 + 3 * MS, 50, parent_span_id=sid(1, 3)),
        _span(tid(2), sid(2, 3), "charge", server, t2 + 2 * MS, 20, parent_span_id=sid(2, 2)),
    ]
    db = [_span(tid(1), sid(1, 5), "query", server, t1 + 4 * MS, 40, parent_span_id=sid(1, 4))]
    odd = [
        _span(
            tid(6), sid(6, 1), "odd\\op", server, BASE + MINUTE // 2, 1, attributes=_attrs(path="C:\\tmp\tx")
        )
    ]

    req = ExportTraceServiceRequest()
    resources = [
        (
            _attrs(
                service__name="frontend",
                host__name="web-1",
                process__pid=4242,
                deployment__canary=True,
                sample__ratio=0.25,
            ),
            frontend,
        ),
        (_attrs(service__name="payment"), payment),
        (_attrs(service__name="db"), db),
        (_attrs(service__name=ODD_SERVICE), odd),
    ]
    for attributes, spans in resources:
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(attributes)
        ss = rs.scope_spans.add()
        ss.scope.name = "fe-lib"
        ss.scope.version = "1.2"
        ss.spans.extend(spans)
    return req


def hexid(raw: bytes) -> str:
    return raw.hex()


@pytest.fixture(scope="module")
def loaded(srv: Server) -> Server:
    """The golden fixture, the synthetic traces, and filler rows on earlier days (for the bounds test)."""
    golden = (FIXTURES / "otlp2jaeger-in.json").read_bytes()
    reply = httpx.post(f"{srv.otlp}/v1/traces", content=golden, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text
    reply = httpx.post(
        f"{srv.otlp}/v1/traces", content=synthetic_request().SerializeToString(), headers=PROTOBUF
    )
    assert reply.status_code == 200, reply.text
    srv.drain()
    # 150k spans of another service over three earlier days: a search of the last minutes must not read them.
    for day in (2, 3, 4):
        srv.server.backend.command(
            f"""INSERT INTO spans (timestamp, trace_id, span_id, service_name, name, duration)
            SELECT now64(9) - toIntervalDay({day}) - toIntervalSecond(number % 3600),
                   toFixedString(unhex(hex(cityHash64(number, {day})) || hex(number + 1)), 16),
                   toFixedString(unhex(hex(number + 1)), 8), 'filler', 'op' || toString(number % 7), number
            FROM numbers(50000)"""
        )
    return srv


# -- Jaeger's JSON model (model/json in jaegertracing/jaeger) ------------------------------------

ENVELOPE_KEYS = {"data", "total", "limit", "offset", "errors"}
SPAN_KEYS = {
    "traceID",
    "spanID",
    "operationName",
    "references",
    "startTime",
    "duration",
    "tags",
    "logs",
    "processID",
    "warnings",
}
HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX_TRACE = re.compile(r"^[0-9a-f]{16}([0-9a-f]{16})?$")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_kv(kv: Any) -> None:
    assert isinstance(kv, dict) and set(kv) == {"key", "type", "value"}, kv
    assert isinstance(kv["key"], str)
    kind, value = kv["type"], kv["value"]
    if kind == "string":
        assert isinstance(value, str), kv
    elif kind == "bool":
        assert isinstance(value, bool), kv
    elif kind == "int64":
        # Jaeger prints integers beyond JavaScript's 2^53 as decimal strings
        assert is_int(value) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value)), kv
    elif kind == "float64":
        assert isinstance(value, int | float) and not isinstance(value, bool), kv
    elif kind == "binary":
        assert isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9+/]*=*", value), kv
    else:
        raise AssertionError(f"unknown tag type in {kv}")


def check_trace(trace: Any) -> None:
    assert set(trace) == {"traceID", "spans", "processes", "warnings"}, trace.keys()
    assert HEX_TRACE.match(trace["traceID"])
    assert trace["warnings"] is None or isinstance(trace["warnings"], list)
    assert isinstance(trace["processes"], dict) and trace["processes"]
    for key, process in trace["processes"].items():
        assert re.fullmatch(r"p\d+", key)
        assert set(process) == {"serviceName", "tags"} and isinstance(process["serviceName"], str)
        for kv in process["tags"]:
            check_kv(kv)
    assert isinstance(trace["spans"], list) and trace["spans"]
    for span in trace["spans"]:
        assert set(span) - {"flags"} == SPAN_KEYS, span.keys()
        assert span["traceID"] == trace["traceID"]
        assert HEX16.match(span["spanID"])
        assert isinstance(span["operationName"], str)
        assert is_int(span["startTime"]) and is_int(span["duration"]) and span["duration"] >= 0
        assert span["processID"] in trace["processes"]
        assert span["warnings"] is None or isinstance(span["warnings"], list)
        if "flags" in span:
            assert is_int(span["flags"]) and span["flags"] > 0
        for ref in span["references"]:
            assert set(ref) == {"refType", "traceID", "spanID"} and ref["refType"] in (
                "CHILD_OF",
                "FOLLOWS_FROM",
            )
            assert HEX_TRACE.match(ref["traceID"]) and HEX16.match(ref["spanID"])
        for kv in span["tags"]:
            check_kv(kv)
        for entry in span["logs"]:
            assert set(entry) == {"timestamp", "fields"} and is_int(entry["timestamp"])
            for kv in entry["fields"]:
                check_kv(kv)


def envelope(reply: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert is_int(body["total"]) and body["limit"] == 0 and body["offset"] == 0
    return body


def error_of(reply: httpx.Response, status: int) -> str:
    body = envelope(reply, status)
    assert body["data"] is None and body["total"] == 0
    assert len(body["errors"]) == 1 and body["errors"][0]["code"] == status
    assert isinstance(body["errors"][0]["msg"], str) and body["errors"][0]["msg"]
    return body["errors"][0]["msg"]


def normalised(body: dict[str, Any]) -> dict[str, Any]:
    """A response with order removed: spans sorted, tags by key, process ids replaced by the processes."""
    body = json.loads(json.dumps(body))
    for trace in body["data"]:
        processes = trace.pop("processes")
        for process in processes.values():
            process["tags"].sort(key=lambda kv: kv["key"])
        for span in trace["spans"]:
            span["tags"].sort(key=lambda kv: kv["key"])
            span["process"] = processes[span.pop("processID")]
        trace["spans"].sort(key=lambda s: (s["spanID"], json.dumps(s, sort_keys=True)))
        trace["processes"] = sorted(json.dumps(p, sort_keys=True) for p in processes.values())
    return body


# -- tests -------------------------------------------------------------------------------------


def test_golden_otlp_to_jaeger(loaded: Server) -> None:
    expected = json.loads((FIXTURES / "otlp2jaeger-out.json").read_text())
    trace_id = expected["data"][0]["traceID"]
    body = envelope(loaded.jaeger(f"traces/{trace_id}"))
    check_trace(body["data"][0])
    # The fixture sends one span twice; Jaeger's translation keeps both, and so does the store.
    assert len(body["data"][0]["spans"]) == 2
    assert normalised(body) == normalised(expected)
    # Upper-case ids are the same trace.
    assert normalised(envelope(loaded.jaeger(f"traces/{trace_id.upper()}"))) == normalised(expected)


def test_single_trace_translation(loaded: Server) -> None:
    trace = envelope(loaded.jaeger(f"traces/{hexid(tid(1))}"))["data"][0]
    check_trace(trace)
    assert trace["traceID"] == hexid(tid(1))
    spans = {s["spanID"]: s for s in trace["spans"]}
    assert len(spans) == 5
    services = {trace["processes"][s["processID"]]["serviceName"] for s in spans.values()}
    assert services == {"frontend", "payment", "db"} and len(trace["processes"]) == 3
    assert sorted(trace["processes"]) == ["p1", "p2", "p3"]

    root = spans[hexid(sid(1, 1))]
    assert root["startTime"] == (BASE + MINUTE) // 1000 and root["duration"] == 400_000
    assert root["references"] == [] and root["flags"] == 1
    tags = {kv["key"]: (kv["type"], kv["value"]) for kv in root["tags"]}
    assert tags == {
        "otel.scope.name": ("string", "fe-lib"),
        "otel.scope.version": ("string", "1.2"),
        "http.status_code": ("int64", 500),
        "big": ("int64", str(2**53 + 1)),
        "blob": ("binary", "AAH+"),
        "labels": ("string", '["a","b"]'),
        "ratio": ("float64", 0.5),
        "span.kind": ("string", "server"),
        "otel.status_code": ("string", "ERROR"),
        "error": ("bool", True),
        "otel.status_description": ("string", "boom"),
    }
    assert [kv["key"] for kv in root["tags"]][:2] == ["otel.scope.name", "otel.scope.version"]
    assert root["logs"] == [
        {
            "timestamp": (BASE + MINUTE + 5 * MS) // 1000,
            "fields": [
                {"key": "event", "type": "string", "value": "exception"},
                {"key": "exception.message", "type": "string", "value": "bad"},
            ],
        }
    ]
    frontend = trace["processes"][root["processID"]]
    assert frontend["serviceName"] == "frontend"
    assert sorted(frontend["tags"], key=lambda kv: kv["key"]) == [
        {"key": "deployment.canary", "type": "bool", "value": True},
        {"key": "host.name", "type": "string", "value": "web-1"},
        {"key": "process.pid", "type": "int64", "value": 4242},
        {"key": "sample.ratio", "type": "float64", "value": 0.25},
    ]

    charge = spans[hexid(sid(1, 3))]
    assert "flags" not in charge
    assert charge["references"] == [
        {"refType": "CHILD_OF", "traceID": hexid(tid(1)), "spanID": hexid(sid(1, 2))},
        {"refType": "FOLLOWS_FROM", "traceID": hexid(tid(2)), "spanID": hexid(sid(2, 1))},
    ]
    assert {"key": "w3c.tracestate", "type": "string", "value": "k=v"} in charge["tags"]
    assert {"key": "span.kind", "type": "string", "value": "server"} in charge["tags"]


def test_short_trace_ids_and_link_reference_types(loaded: Server) -> None:
    short = "00000000000000aa"
    for path_id in (short, "aa", "0" * 16 + short):
        trace = envelope(loaded.jaeger(f"traces/{path_id}"))["data"][0]
        check_trace(trace)
        assert trace["traceID"] == short
    step = next(s for s in trace["spans"] if s["operationName"] == "cron-step")
    # A link to the parent sets the parent reference's type; opentracing.ref_type=child_of makes CHILD_OF.
    assert step["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": short, "spanID": hexid(sid(5, 1))},
        {"refType": "CHILD_OF", "traceID": hexid(tid(1)), "spanID": hexid(sid(1, 1))},
    ]


def test_services_and_operations(loaded: Server) -> None:
    body = envelope(loaded.jaeger("services"))
    assert all(isinstance(s, str) for s in body["data"]) and body["total"] == len(body["data"])
    assert {"frontend", "payment", "db", "filler"} <= set(body["data"])
    assert "telemetrygen" not in body["data"]  # 2024: outside the default 7-day window
    old = {"start": 1706678900000000, "end": 1706678999000000}
    assert envelope(loaded.jaeger("services", **old))["data"] == ["telemetrygen"]

    body = envelope(loaded.jaeger("services/frontend/operations"))
    assert body["data"] == ["GET /checkout", "GET /home", "POST /pay", "cron", "cron-step"]
    assert body["total"] == 5

    body = envelope(loaded.jaeger("operations", service="frontend", spanKind="server"))
    assert body["data"] == [
        {"name": "GET /checkout", "spanKind": "server"},
        {"name": "GET /home", "spanKind": "server"},
    ]
    body = envelope(loaded.jaeger("operations", service="payment"))
    assert body["data"] == [
        {"name": "SELECT", "spanKind": "client"},
        {"name": "charge", "spanKind": "server"},
    ]
    assert body["total"] == 2
    assert envelope(loaded.jaeger("operations", service="nobody"))["data"] == []


def search(srv: Server, **params: Any) -> list[dict[str, Any]]:
    body = envelope(srv.jaeger("traces", **params))
    assert body["errors"] is None
    for trace in body["data"]:
        check_trace(trace)
    return body["data"]


def ids(traces: list[dict[str, Any]]) -> list[str]:
    return [t["traceID"] for t in traces]


def test_trace_search(loaded: Server) -> None:
    t1, t2, t3, t4 = (hexid(tid(n)) for n in (1, 2, 3, 4))
    checkout = {"service": "frontend", "operation": "GET /checkout"}
    errors = search(loaded, **checkout, tags=json.dumps({"http.status_code": "500"}))
    assert ids(errors) == [t4, t1]  # newest first
    assert len(errors[1]["spans"]) == 5  # each trace in full, other services included
    assert ids(search(loaded, **checkout, tag="http.status_code:500", minDuration="500ms")) == [t4]
    assert ids(search(loaded, **checkout, tags='{"http.status_code": 500}', maxDuration="0.45s")) == [t1]
    assert ids(search(loaded, **checkout, minDuration="100ms", maxDuration="450ms")) == [t1]
    assert ids(search(loaded, **checkout, limit=1)) == [t4]
    assert ids(search(loaded, service="frontend", tag="error:true")) == [t4, t1]
    assert ids(search(loaded, service="frontend", tags='{"otel.status_code": "ERROR"}')) == [t4, t1]
    assert ids(search(loaded, service="frontend", tag="span.kind:client")) == [t2, t1]
    assert ids(search(loaded, service="frontend", tag="host.name:web-1", limit=3)) == [
        "00000000000000aa",
        t4,
        t3,
    ]
    assert ids(search(loaded, service="frontend", tag="exception.message:bad")) == [t1]
    assert ids(search(loaded, service="frontend", tag="event:exception")) == [t1]
    # One span must match everything: payment spans have no http.status_code.
    assert search(loaded, service="payment", tag="http.status_code:500") == []
    assert search(loaded, service="frontend", operation="GET /home", tag="error:true") == []
    # A time range before the traces finds nothing; one around trace 3 finds just it.
    assert search(loaded, service="frontend", start=(BASE - MINUTE) // 1000, end=BASE // 1000) == []
    around = {"start": (BASE + 3 * MINUTE) // 1000, "end": (BASE + 3 * MINUTE + MS) // 1000}
    assert ids(search(loaded, service="frontend", **around)) == [t3]
    # Jaeger's traceID form: named traces, the unknown one reported in errors.
    body = envelope(loaded.jaeger("traces", traceID=[t2, "abc"]))
    assert ids(body["data"]) == [t2]
    assert body["errors"] == [{"msg": "trace not found", "traceID": "0000000000000abc"}]


def test_dependencies(loaded: Server) -> None:
    body = envelope(loaded.jaeger("dependencies", endTs=NOW // MS + 60_000, lookback=3_600_000))
    assert body["errors"] is None
    for link in body["data"]:
        assert set(link) == {"parent", "child", "callCount"} and is_int(link["callCount"])
    assert sorted(body["data"], key=lambda d: d["parent"]) == [
        {"parent": "frontend", "child": "payment", "callCount": 2},
        {"parent": "payment", "child": "db", "callCount": 1},
    ]
    assert envelope(loaded.jaeger("dependencies"))["data"] == body["data"]  # defaults: now, 24 h
    filtered = envelope(loaded.jaeger("dependencies", service="db"))["data"]
    assert filtered == [{"parent": "payment", "child": "db", "callCount": 1}]
    assert envelope(loaded.jaeger("dependencies", endTs=NOW // MS - 3_600_000))["data"] == []


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("traces", {"service": "frontend", "start": "yesterday"}, "'start'"),
        ("traces", {"service": "frontend", "end": "1.5"}, "'end'"),
        ("traces", {"service": "frontend", "minDuration": "5 parsecs"}, "'minDuration'"),
        ("traces", {"service": "frontend", "maxDuration": "-1s"}, "'maxDuration'"),
        ("traces", {"service": "frontend", "minDuration": "2s", "maxDuration": "1s"}, "maxDuration"),
        ("traces", {"service": "frontend", "tags": "{not json"}, "'tags'"),
        ("traces", {"service": "frontend", "tags": '["a"]'}, "'tags'"),
        ("traces", {"service": "frontend", "tags": '{"a": {"b": 1}}'}, "'tags'"),
        ("traces", {"service": "frontend", "tag": "no-colon"}, "'tag'"),
        ("traces", {"service": "frontend", "limit": "many"}, "'limit'"),
        ("traces", {"service": "frontend", "start": "20", "end": "10"}, "'end'"),
        ("traces", {"operation": "GET /checkout"}, "'service'"),
        ("traces", {"traceID": "xyz"}, "trace id"),
        ("traces/not-hex", {}, "trace id"),
        ("traces/" + "a" * 33, {}, "trace id"),
        ("operations", {}, "'service'"),
        ("operations", {"service": "frontend", "spanKind": "sideways"}, "span kind"),
        ("dependencies", {"endTs": "soon"}, "'endTs'"),
        ("dependencies", {"lookback": "-5"}, "'lookback'"),
    ],
)
def test_bad_parameters_are_400(loaded: Server, path: str, params: dict[str, str], fragment: str) -> None:
    assert fragment in error_of(loaded.jaeger(path, **params), 400)


def test_unknown_trace_is_404(loaded: Server) -> None:
    assert error_of(loaded.jaeger("traces/" + "1" * 32), 404) == "trace not found"


def test_odd_strings_reach_the_engine_unchanged(loaded: Server) -> None:
    found = search(loaded, service=ODD_SERVICE, operation="odd\\op", tags=json.dumps({"path": "C:\\tmp\tx"}))
    assert ids(found) == [hexid(tid(6))]
    assert ODD_SERVICE in envelope(loaded.jaeger("services"))["data"]
    assert envelope(loaded.jaeger(f"services/{quote(ODD_SERVICE, safe='')}/operations"))["data"] == [
        "odd\\op"
    ]
    for text in ("back\\slash", "tab\there", "quote'\"", "new\nline", "ünï"):
        assert search(loaded, service=text, tags=json.dumps({text: text})) == []
        assert envelope(loaded.jaeger("operations", service=text))["data"] == []


def test_go_durations() -> None:
    assert parse_duration("1.2s") == 1_200_000_000
    assert parse_duration("100ms") == 100_000_000
    assert parse_duration("5us") == parse_duration("5µs") == 5_000
    assert parse_duration("1h30m") == 5_400 * 10**9
    assert parse_duration("0") == 0 and parse_duration("250ns") == 250
    for bad in ("", "5", "1.2", "s", "5 ms", "-1s", "1d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def _explain(srv: Server, sql: str, params: dict[str, Any]) -> list[str]:
    table = srv.server.backend.query_arrow("EXPLAIN indexes = 1 " + sql, params)
    return [str(line) for line in table.column(0).to_pylist()]


def _fractions(lines: list[str], what: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for line in lines if (m := re.search(rf"{what}: (\d+)/(\d+)", line))]


def test_search_reads_only_the_range_it_asks_for(loaded: Server) -> None:
    """The search SQL prunes day partitions and (service, timestamp) key ranges before reading."""
    total = loaded.server.backend.query_arrow("SELECT count() AS n FROM spans").to_pylist()[0]["n"]
    assert total > 150_000
    params = {
        "start": BASE,
        "end": NOW,
        "service": "frontend",
        "operation": "",
        "min_duration": 0,
        "max_duration": 2**64 - 1,
        "tag_keys": [],
        "tag_values": [],
        "limit": 20,
    }
    lines = _explain(loaded, queries.SEARCH_TRACE_IDS, params)
    text = "\n".join(lines)
    assert re.search(r"Condition: .*service_name in \['frontend', 'frontend'\]", text), text
    granules = _fractions(lines, "Granules")
    parts = _fractions(lines, "Parts")
    assert granules and parts, text
    table_granules, selected = granules[0][1], granules[-1][0]
    # Index analysis leaves a granule or two of the filler's many; day partitions drop whole parts.
    assert table_granules >= 15 and selected <= 3, text
    assert parts[0][0] < parts[0][1], text


def test_a_zipkin_error_tag_becomes_one_error_tag(srv: Server) -> None:
    trace_id = f"{time.time_ns():032x}"
    span = {
        "traceId": trace_id,
        "id": "00000000000000e1",
        "name": "charge",
        "timestamp": time.time_ns() // 1000,
        "duration": 1500,
        "localEndpoint": {"serviceName": "zipkin-payments"},
        "tags": {"error": "card declined"},
    }
    reply = httpx.post(f"{srv.server.zipkin_url}/api/v2/spans", json=[span])
    assert reply.status_code == 202, reply.text
    srv.drain()
    (trace,) = envelope(srv.jaeger(f"traces/{trace_id}"))["data"]
    tags = trace["spans"][0]["tags"]
    assert [t for t in tags if t["key"] == "error"] == [{"key": "error", "type": "bool", "value": True}]
    assert {"key": "otel.status_description", "type": "string", "value": "card declined"} in tags
