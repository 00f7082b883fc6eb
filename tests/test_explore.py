"""Explore API (/api/v1/dependencies, traces, logs, correlations) over real chDB and real OTLP exports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from store.red import MAX_RELATIVE_ERROR
from tests.conftest import InProcess, in_process

PROTOBUF = {"Content-Type": "application/x-protobuf"}
MS = 10**6
MINUTE = 60_000 * MS
NOW = time.time_ns()
GRAPH_BASE = NOW - 40 * MINUTE  # the call graph lives alone in [NOW-40m, NOW-35m]
CORR_BASE = NOW - 20 * MINUTE  # the correlation scenario in [NOW-20m, NOW-19m]
N_TRACES = 10
PAYMENT_ERRORS = {1, 4, 7}
INVENTORY_ERRORS = {4}
CORRELATION = "order-7f3a-corr"


def ms(ns: int) -> str:
    return str(ns // MS)


def tid(prefix: int, n: int) -> bytes:
    return bytes.fromhex(f"{prefix:08x}{'0' * 16}{n:08x}")


def sid(prefix: int, trace: int, n: int) -> bytes:
    return bytes.fromhex(f"{prefix:04x}{trace:06x}{n:06x}")


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _post(url: str, body: bytes) -> None:
    reply = httpx.post(url, content=body, headers=PROTOBUF, timeout=30)
    assert reply.status_code == 200, reply.text


def send_spans(otlp: str, service: str, spans: list[dict[str, Any]]) -> None:
    """One export request holding ``spans`` of one service (its own batch)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", service)])
    out = rs.scope_spans.add().spans
    for s in spans:
        span = out.add(
            trace_id=s["trace_id"],
            span_id=s["span_id"],
            parent_span_id=s.get("parent", b""),
            name=s["name"],
            kind=s.get("kind", trace_pb2.Span.SPAN_KIND_SERVER),
            start_time_unix_nano=s["start"],
            end_time_unix_nano=s["start"] + s["duration"],
        )
        span.attributes.extend(_kv(k, v) for k, v in s.get("attrs", {}).items())
        if s.get("error"):
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    _post(f"{otlp}/v1/traces", req.SerializeToString())


def send_logs(otlp: str, service: str, logs: list[dict[str, Any]]) -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([_kv("service.name", service)])
    out = rl.scope_logs.add().log_records
    for entry in logs:
        record = out.add(
            time_unix_nano=entry["time"],
            severity_number=entry["severity"],
            severity_text=entry.get("severity_text", ""),
            trace_id=entry.get("trace_id", b""),
            span_id=entry.get("span_id", b""),
        )
        record.body.string_value = entry["body"]
        record.attributes.extend(_kv(k, v) for k, v in entry.get("attrs", {}).items())
    _post(f"{otlp}/v1/logs", req.SerializeToString())


def call_graph(otlp: str) -> None:
    """gateway -> orders -> payments and orders -> inventory, each service exported separately."""
    by_service: dict[str, list[dict[str, Any]]] = {
        "gateway": [],
        "orders": [],
        "payments": [],
        "inventory": [],
    }
    graph_logs: list[dict[str, Any]] = []
    for n in range(N_TRACES):
        t = tid(0xA1, n)
        start = GRAPH_BASE + n * 20_000 * MS
        ids = {name: sid(0xA1, n, i + 1) for i, name in enumerate(("gw", "orders", "db", "pay", "inv"))}
        status_code = 500 if n in PAYMENT_ERRORS else 200
        by_service["gateway"].append(
            dict(
                trace_id=t,
                span_id=ids["gw"],
                name="GET /checkout",
                start=start,
                duration=(300 + n * 10) * MS,
                attrs={
                    "http.response.status_code": status_code,
                    "customer.tier": "gold" if n % 2 else "silver",
                },
                error=n in PAYMENT_ERRORS,
            )
        )
        by_service["orders"] += [
            dict(
                trace_id=t,
                span_id=ids["orders"],
                parent=ids["gw"],
                name="POST /orders",
                start=start + MS,
                duration=250 * MS,
            ),
            # same service: not an edge
            dict(
                trace_id=t,
                span_id=ids["db"],
                parent=ids["orders"],
                name="db.query",
                start=start + 2 * MS,
                duration=5 * MS,
                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            ),
        ]
        by_service["payments"].append(
            dict(
                trace_id=t,
                span_id=ids["pay"],
                parent=ids["orders"],
                name="charge",
                start=start + 10 * MS,
                duration=100 * MS,
                error=n in PAYMENT_ERRORS,
                attrs={"amount": 10.5 * (n + 1)},
            )
        )
        by_service["inventory"].append(
            dict(
                trace_id=t,
                span_id=ids["inv"],
                parent=ids["orders"],
                name="reserve",
                start=start + 120 * MS,
                duration=40 * MS,
                error=n in INVENTORY_ERRORS,
            )
        )
        graph_logs.append(
            dict(
                time=start + 50 * MS,
                severity=17 if n in PAYMENT_ERRORS else 9,
                trace_id=t,
                span_id=ids["pay"],
                body=f"charge declined card={n}" if n in PAYMENT_ERRORS else f"charge accepted card={n}",
                attrs={"attempt": n},
            )
        )
    # Children first, the root last: edges are joined at query time, whatever the arrival order.
    for service in ("payments", "inventory", "orders", "gateway"):
        send_spans(otlp, service, by_service[service])
    send_logs(otlp, "payments", graph_logs)


CORR_TRACE = tid(0xC0, 1)


def correlation_scenario(otlp: str) -> None:
    """One request through web -> api -> worker, with the correlation id on spans and logs of all three."""
    base = CORR_BASE
    corr = {"correlation.id": CORRELATION}
    s_web, s_api, s_worker = sid(0xC0, 1, 1), sid(0xC0, 1, 2), sid(0xC0, 1, 3)
    send_spans(
        otlp,
        "web",
        [dict(trace_id=CORR_TRACE, span_id=s_web, name="GET /", start=base, duration=900 * MS, attrs=corr)],
    )
    send_spans(
        otlp,
        "api",
        [
            dict(
                trace_id=CORR_TRACE,
                span_id=s_api,
                parent=s_web,
                name="handle",
                start=base + 100 * MS,
                duration=600 * MS,
                attrs=corr,
            )
        ],
    )
    send_spans(
        otlp,
        "worker",
        [
            dict(
                trace_id=CORR_TRACE,
                span_id=s_worker,
                parent=s_api,
                name="job",
                start=base + 200 * MS,
                duration=300 * MS,
                attrs=corr,
            )
        ],
    )
    # Logs arrive out of order and from three services; one carries the id but no trace context.
    send_logs(
        otlp,
        "worker",
        [
            dict(
                time=base + 450 * MS,
                severity=13,
                trace_id=CORR_TRACE,
                span_id=s_worker,
                body="job slow",
                attrs=corr,
            )
        ],
    )
    send_logs(
        otlp,
        "web",
        [
            dict(
                time=base + 10 * MS,
                severity=9,
                trace_id=CORR_TRACE,
                span_id=s_web,
                body="request received",
                attrs=corr,
            ),
            dict(time=base + 950 * MS, severity=9, body="response sent", attrs=corr),
        ],
    )
    send_logs(
        otlp,
        "api",
        [
            dict(
                time=base + 150 * MS,
                severity=9,
                trace_id=CORR_TRACE,
                span_id=s_api,
                body="handling order",
                attrs=corr,
            )
        ],
    )
    # Same services, another correlation id: must not come back.
    send_logs(
        otlp,
        "api",
        [
            dict(
                time=base + 160 * MS, severity=9, body="other request", attrs={"correlation.id": "other-corr"}
            )
        ],
    )


def sdk_traffic(otlp: str) -> tuple[str, str]:
    """A trace and a log through the real OpenTelemetry SDK and its OTLP/HTTP exporters."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, StatusCode

    resource = Resource.create({"service.name": "sdk-shop"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces")))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{otlp}/v1/logs"))
    )
    tracer = tracer_provider.get_tracer("explore-test")
    logger = logger_provider.get_logger("explore-test")
    with tracer.start_as_current_span("sdk checkout", kind=SpanKind.SERVER) as span:
        span.set_attribute("cart.items", 3)
        span.set_status(StatusCode.ERROR)
        ctx = span.get_span_context()
        logger.emit(
            LogRecord(
                timestamp=time.time_ns(),
                trace_id=ctx.trace_id,
                span_id=ctx.span_id,
                trace_flags=ctx.trace_flags,
                severity_number=SeverityNumber.ERROR,
                severity_text="ERROR",
                body="sdk checkout failed",
                attributes={"cart.items": 3},
            )
        )
    tracer_provider.shutdown()
    logger_provider.shutdown()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class Server(InProcess):
    sdk_trace: str = ""
    sdk_span: str = ""

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.api}{path}", params=params, timeout=30)

    def ok(self, path: str, **params: Any) -> dict[str, Any]:
        reply = self.get(path, **params)
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with in_process(tmp_path_factory.mktemp("explore-data")) as running:
        server = Server(running.server, running.otlp, running.api)
        call_graph(server.otlp)
        correlation_scenario(server.otlp)
        server.sdk_trace, server.sdk_span = sdk_traffic(server.otlp)
        server.drain()
        yield server


GRAPH_RANGE = {"start": ms(GRAPH_BASE - MINUTE), "end": ms(GRAPH_BASE + 5 * MINUTE)}


# -- service map -------------------------------------------------------------------------------


def test_dependencies_of_a_known_call_graph(srv: Server) -> None:
    edges = srv.ok("/api/v1/dependencies", **GRAPH_RANGE)["edges"]
    got = {(e["caller"], e["callee"]): (e["calls"], e["errors"]) for e in edges}
    assert got == {
        ("gateway", "orders"): (N_TRACES, 0),
        ("orders", "payments"): (N_TRACES, len(PAYMENT_ERRORS)),
        ("orders", "inventory"): (N_TRACES, len(INVENTORY_ERRORS)),
    }
    payments = next(e for e in edges if e["callee"] == "payments")
    # Quantiles come from red_1m's histogram buckets: off by less than one bucket width.
    assert payments["p50_ms"] == pytest.approx(100, rel=MAX_RELATIVE_ERROR)
    assert payments["p95_ms"] == pytest.approx(100, rel=MAX_RELATIVE_ERROR)
    assert payments["p50_ms"] != payments["avg_ms"]  # interpolated inside [100, 105) ms, not exact
    assert payments["avg_ms"] == pytest.approx(100)
    assert "series" not in payments


def test_dependencies_per_minute_series(srv: Server) -> None:
    edges = srv.ok("/api/v1/dependencies", step="1m", **GRAPH_RANGE)["edges"]
    for edge in edges:
        assert sum(point["calls"] for point in edge["series"]) == edge["calls"]
        assert sum(point["errors"] for point in edge["series"]) == edge["errors"]
        times = [int(p["time_unix_nano"]) for p in edge["series"]]
        assert times == sorted(times) and all(t % MINUTE == 0 for t in times)
    # 10 traces 20 s apart span 4 minutes (3 or 4 buckets, depending on where the minute starts)
    assert 3 <= len(edges[0]["series"]) <= 4


def test_dependencies_range_and_limit(srv: Server) -> None:
    empty = srv.ok("/api/v1/dependencies", start=ms(NOW - 90 * MINUTE), end=ms(NOW - 80 * MINUTE))
    assert empty["edges"] == []
    assert len(srv.ok("/api/v1/dependencies", limit="1", **GRAPH_RANGE)["edges"]) == 1
    assert srv.get("/api/v1/dependencies", step="soon", **GRAPH_RANGE).status_code == 400
    assert srv.get("/api/v1/dependencies", start="yesterday").status_code == 400


# -- trace search ------------------------------------------------------------------------------


def _ids(reply: dict[str, Any]) -> list[str]:
    return [t["trace_id"] for t in reply["traces"]]


def _graph_ids(ns: set[int] | range) -> set[str]:
    return {tid(0xA1, n).hex() for n in ns}


def test_trace_search_summaries_newest_first(srv: Server) -> None:
    found = srv.ok("/api/v1/traces", service="gateway", limit="100", **GRAPH_RANGE)["traces"]
    assert [t["trace_id"] for t in found] == [tid(0xA1, n).hex() for n in reversed(range(N_TRACES))]
    one = next(t for t in found if t["trace_id"] == tid(0xA1, 4).hex())
    assert one["root_service"] == "gateway" and one["root_operation"] == "GET /checkout"
    assert one["span_count"] == 5 and one["error_count"] == 3  # gateway, payments, inventory
    assert one["services"] == ["gateway", "inventory", "orders", "payments"]
    assert one["start_time_unix_nano"] == str(GRAPH_BASE + 4 * 20_000 * MS)
    assert one["duration_ns"] == 340 * MS and one["root_span_missing"] is False
    assert len(srv.ok("/api/v1/traces", service="gateway", limit="3", **GRAPH_RANGE)["traces"]) == 3


def test_trace_search_filters(srv: Server) -> None:
    def ids(**params: str) -> set[str]:
        return set(_ids(srv.ok("/api/v1/traces", limit="100", **GRAPH_RANGE, **params)))

    every = _graph_ids(range(N_TRACES))
    assert ids(service="payments", operation="charge") == every
    assert ids(service="payments", operation="nope") == set()
    assert ids(status="error") == _graph_ids(PAYMENT_ERRORS | INVENTORY_ERRORS)
    assert ids(service="inventory", status="error") == _graph_ids(INVENTORY_ERRORS)
    assert ids(attr="customer.tier=gold") == _graph_ids({n for n in range(N_TRACES) if n % 2})
    assert ids(attr="http.response.status_code=500") == _graph_ids(PAYMENT_ERRORS)
    assert ids(attr="http.response.status_code>=500") == _graph_ids(PAYMENT_ERRORS)
    assert ids(attr="http.response.status_code<500") == every - _graph_ids(PAYMENT_ERRORS)
    assert ids(attr="amount>50") == _graph_ids({n for n in range(N_TRACES) if 10.5 * (n + 1) > 50})
    # every filter must hold on ONE span: tier is on gateway spans, amount on payments spans
    assert ids(attr=["customer.tier=gold", "amount>0"]) == set()  # type: ignore[arg-type]
    assert ids(service="gateway", attr=["customer.tier=gold", "http.response.status_code>400"]) == _graph_ids(
        {1, 7}
    )  # type: ignore[arg-type]
    assert ids(service="gateway", min_duration_ms="370") == _graph_ids({7, 8, 9})
    assert ids(service="gateway", max_duration_ms="310.5") == _graph_ids({0, 1})
    assert ids(attr="customer.tier>1") == set()  # not a number: no match
    assert ids(attr="missing.key=x") == set()


def test_trace_search_bad_parameters(srv: Server) -> None:
    for params in (
        {"attr": "no-operator"},
        {"attr": "=value"},
        {"attr": "x>ten"},
        {"attr": "x<inf"},
        {"min_duration_ms": "-1"},
        {"max_duration_ms": "fast"},
        {"min_duration_ms": "10", "max_duration_ms": "5"},
        {"status": "broken"},
        {"limit": "0"},
        {"start": "2026-13-40"},
        {"servcie": "typo"},
    ):
        reply = srv.get("/api/v1/traces", **params)
        assert reply.status_code == 400, (params, reply.text)
        assert reply.json()["detail"]


def test_sdk_trace_is_found(srv: Server) -> None:
    found = srv.ok("/api/v1/traces", service="sdk-shop", attr="cart.items>=3", status="error")["traces"]
    assert _ids({"traces": found}) == [srv.sdk_trace]
    assert found[0]["root_operation"] == "sdk checkout" and found[0]["error_count"] == 1


# -- one trace ---------------------------------------------------------------------------------


def test_trace_by_id_includes_its_logs(srv: Server) -> None:
    body = srv.ok(f"/api/v1/traces/{CORR_TRACE.hex().upper()}")
    assert body["trace_id"] == CORR_TRACE.hex()
    assert [s["service_name"] for s in body["spans"]] == ["web", "api", "worker"]
    logs = body["logs"]
    assert [entry["body"] for entry in logs] == ["request received", "handling order", "job slow"]
    assert [entry["service_name"] for entry in logs] == ["web", "api", "worker"]
    assert logs[2]["span_id"] == sid(0xC0, 1, 3).hex() and logs[2]["severity_number"] == 13
    assert logs[0]["attributes"] == {"correlation.id": CORRELATION}
    graph = srv.ok(f"/api/v1/traces/{tid(0xA1, 3).hex()}")
    assert graph["logs"][0]["attributes"] == {"attempt": 3}  # typed like span attributes
    sdk = srv.ok(f"/api/v1/traces/{srv.sdk_trace}")
    assert [(entry["body"], entry["span_id"]) for entry in sdk["logs"]] == [
        ("sdk checkout failed", srv.sdk_span)
    ]
    assert srv.get("/api/v1/traces/not-hex").status_code == 400
    assert srv.get(f"/api/v1/traces/{'ab' * 16}").status_code == 404


# -- logs --------------------------------------------------------------------------------------


def test_log_search(srv: Server) -> None:
    def bodies(**params: Any) -> list[str]:
        return [entry["body"] for entry in srv.ok("/api/v1/logs", limit="1000", **params)["logs"]]

    graph = {"start": GRAPH_RANGE["start"], "end": GRAPH_RANGE["end"]}
    declined = [f"charge declined card={n}" for n in sorted(PAYMENT_ERRORS, reverse=True)]
    assert bodies(severity_min="ERROR", **graph) == declined  # newest first
    assert bodies(severity_min="17", **graph) == declined
    assert bodies(severity_min="error2", **graph) == []  # 18 and up
    assert len(bodies(severity_min="info", **graph)) == N_TRACES
    assert bodies(q="declined", **graph) == declined
    assert bodies(q="charge card=4", **graph) == ["charge declined card=4"]  # every word must occur
    assert bodies(q="Declined", **graph) == []  # the token index is case-sensitive
    assert bodies(trace_id=tid(0xA1, 2).hex(), **graph) == ["charge accepted card=2"]
    assert bodies(attr="attempt=5", **graph) == ["charge accepted card=5"]
    assert bodies(attr="attempt>7", **graph) == ["charge accepted card=9", "charge accepted card=8"]
    assert bodies(service="payments", attr="attempt<1", **graph) == ["charge accepted card=0"]
    assert bodies(service="web", **graph) == []
    assert bodies(correlation_id=CORRELATION) == [
        "response sent",
        "job slow",
        "handling order",
        "request received",
    ]
    assert bodies(correlation_id=CORRELATION, service="web", q="response") == ["response sent"]
    assert bodies(severity_min="ERROR", service="sdk-shop") == ["sdk checkout failed"]


def test_log_search_bad_parameters(srv: Server) -> None:
    for params in (
        {"severity_min": "LOUD"},
        {"severity_min": "25"},
        {"severity_min": "0"},
        {"trace_id": "xyz"},
        {"q": "--- ..."},
        {"q": " ".join(f"w{i}" for i in range(40))},
        {"attr": "a"},
        {"limit": "100000"},
        {"end": "1700000000000", "start": "1800000000000"},
    ):
        reply = srv.get("/api/v1/logs", **params)
        assert reply.status_code == 400, (params, reply.text)


# -- correlations ------------------------------------------------------------------------------


def test_correlation_across_three_services(srv: Server) -> None:
    body = srv.ok(f"/api/v1/correlations/{CORRELATION}")
    assert body["correlation_id"] == CORRELATION
    assert [t["trace_id"] for t in body["traces"]] == [CORR_TRACE.hex()]
    assert body["traces"][0]["services"] == ["api", "web", "worker"]
    assert [(s["service_name"], s["name"]) for s in body["spans"]] == [
        ("web", "GET /"),
        ("api", "handle"),
        ("worker", "job"),
    ]
    assert [(entry["service_name"], entry["body"]) for entry in body["logs"]] == [
        ("web", "request received"),
        ("api", "handling order"),
        ("worker", "job slow"),
        ("web", "response sent"),
    ]
    times = [int(entry["time_unix_nano"]) for entry in body["logs"]]
    assert times == sorted(times)
    outside = srv.ok(
        f"/api/v1/correlations/{CORRELATION}", start=ms(NOW - 90 * MINUTE), end=ms(NOW - 60 * MINUTE)
    )
    assert outside["traces"] == [] and outside["logs"] == [] and outside["spans"] == []
    unknown = srv.ok("/api/v1/correlations/nobody")
    assert unknown["traces"] == [] and unknown["logs"] == []


# -- injection ---------------------------------------------------------------------------------

NASTY = [
    "'",
    "\\",
    "\\'",
    "' OR 1=1 --",
    '" OR ""="',
    "x'); DROP TABLE spans; --",
    "{service:String}",
    "\t\n\r\x00",
    "é' ∑ \\N",
    "a" * 3000,
]


def _counts(srv: Server) -> tuple[int, int]:
    spans = srv.rows("SELECT count() AS n FROM spans")[0]["n"]
    logs = srv.rows("SELECT count() AS n FROM logs")[0]["n"]
    return spans, logs


def _empty_or_refused(reply: httpx.Response, key: str) -> None:
    assert reply.status_code in (200, 400, 404), reply.text
    if reply.status_code == 200:
        assert reply.json()[key] == [], reply.text
    else:
        assert reply.json()["detail"]


def test_injection_attempts_are_inert(srv: Server) -> None:
    before = _counts(srv)
    for nasty in NASTY:
        for name in ("service", "operation", "status", "min_duration_ms", "start", "end", "limit"):
            _empty_or_refused(srv.get("/api/v1/traces", **{name: nasty}), "traces")
        for attr in (f"k={nasty}", f"{nasty}=v", f"k>{nasty}", f"{nasty}<1"):
            _empty_or_refused(srv.get("/api/v1/traces", attr=attr), "traces")
        for attr in (f"k={nasty}", f"{nasty}<1"):
            _empty_or_refused(srv.get("/api/v1/logs", attr=attr), "logs")
        for name in ("service", "severity_min", "q", "trace_id", "correlation_id", "start", "limit"):
            _empty_or_refused(srv.get("/api/v1/logs", **{name: nasty}), "logs")
        for name in ("start", "end", "limit", "step"):
            _empty_or_refused(srv.get("/api/v1/dependencies", **{name: nasty}), "edges")
        reply = srv.get(f"/api/v1/correlations/{quote(nasty, safe='')}")
        _empty_or_refused(reply, "logs")
        if reply.status_code == 200:
            assert reply.json()["traces"] == []
        reply = srv.get(f"/api/v1/traces/{quote(nasty, safe='')}")
        assert reply.status_code in (400, 404)
    assert _counts(srv) == before
    assert before[0] > 0 and before[1] > 0
