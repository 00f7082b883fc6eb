"""RED roll-up (migration 0004, store/red.py, ui/api_red.py) over real OTLP ingest into chDB."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from store import red
from store.otlp_writer import OtlpWriter
from tests.conftest import InProcess, in_process

PROTOBUF = {"Content-Type": "application/x-protobuf"}
MINUTE = 60 * 10**9
MS = 10**6
# Aligned to 10 minutes, 40 to 50 minutes ago: every minute (and 5-minute step) bucket is known.
BASE = (time.time_ns() // (10 * MINUTE) - 4) * 10 * MINUTE
Span = trace_pb2.Span
SERVER, CLIENT, INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
PRODUCER, CONSUMER = Span.SPAN_KIND_PRODUCER, Span.SPAN_KIND_CONSUMER
ERROR = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom")
KIND_NAME = {
    SERVER: "SERVER",
    CLIENT: "CLIENT",
    INTERNAL: "INTERNAL",
    PRODUCER: "PRODUCER",
    CONSUMER: "CONSUMER",
}


def _value(value: Any) -> AnyValue:
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=value)


def _attrs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in values.items()]


@dataclass
class Model:
    """What was sent, and the RED answer the issue's rules give for it (computed independently)."""

    requests: Counter = field(default_factory=Counter)  # (service, operation, kind, minute) -> n
    errors: Counter = field(default_factory=Counter)
    ids: int = 0

    def span_id(self) -> bytes:
        self.ids += 1
        return self.ids.to_bytes(8, "big")

    def add(
        self,
        scope: trace_pb2.ScopeSpans,
        service: str,
        name: str,
        kind: int,
        start: int,
        ms: float,
        parent: bytes = b"",
        status: trace_pb2.Status | None = None,
        **attributes: Any,
    ) -> bytes:
        span_id = self.span_id()
        trace_id = (0xFEED0000 + self.ids).to_bytes(16, "big")
        scope.spans.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                kind=kind,
                start_time_unix_nano=start,
                end_time_unix_nano=start + int(ms * MS),
                status=status,
                attributes=_attrs({k.replace("__", "."): v for k, v in attributes.items()}),
            )
        )
        is_request = kind in (SERVER, CONSUMER) or not parent
        if is_request:
            key = (service, name, KIND_NAME[kind], (start - BASE) // MINUTE)
            self.requests[key] += 1
            code = attributes.get("http__response__status_code", attributes.get("http__status_code", 0))
            failed = (status is not None and status.code == trace_pb2.Status.STATUS_CODE_ERROR) or (
                kind == SERVER and int(code) >= 500
            )
            self.errors[key] += failed
        return span_id


def _scope(request: ExportTraceServiceRequest, service: str, **resource: str) -> trace_pb2.ScopeSpans:
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(_attrs({"service.name": service, **resource}))
    return rs.scope_spans.add()


def generate(model: Model) -> ExportTraceServiceRequest:
    """A deterministic mix of span kinds, parents, statuses and HTTP codes over minutes 0-2."""
    request = ExportTraceServiceRequest()
    shop = _scope(request, "shop", **{"service.version": "1.2.3", "deployment.environment": "prod"})
    pay = _scope(request, "pay", **{"deployment.environment.name": "staging"})
    worker = _scope(request, "worker")
    for minute in range(3):
        for i in range(10 + minute):
            start = BASE + minute * MINUTE + i * 1000 * MS
            code = 503 if i % 5 == 0 else 200  # 503 with status UNSET: an error on a SERVER span
            root = model.add(
                shop,
                "shop",
                "GET /cart",
                SERVER,
                start,
                10 + 7 * i,
                http__route="/cart",
                http__status_code=code,
            )
            # Children that are not requests: a CLIENT call answered 500 and an INTERNAL step.
            model.add(
                shop, "shop", "POST /pay", CLIENT, start + MS, 5, parent=root, http__response__status_code=500
            )
            model.add(shop, "shop", "render", INTERNAL, start + 2 * MS, 1, parent=root)
            # The callee: a SERVER span with a (remote) parent counts; status ERROR is an error.
            model.add(
                pay,
                "pay",
                "POST /pay",
                SERVER,
                start + MS,
                3 + i,
                parent=root,
                status=ERROR if i % 4 == 0 else None,
                http__response__status_code=200,
                rpc__method="Charge",
            )
        # worker: a CONSUMER with a parent counts, its PRODUCER child does not; a root INTERNAL counts,
        # and so does a root CLIENT, whose 500 is not an error (only SERVER spans judge HTTP codes).
        start = BASE + minute * MINUTE + 5 * 10**9
        consumer = model.add(worker, "worker", "orders process", CONSUMER, start, 40, parent=b"\x01" * 8)
        model.add(worker, "worker", "audit publish", PRODUCER, start + MS, 2, parent=consumer)
        model.add(worker, "worker", "cron tick", INTERNAL, start + 10**9, 80 + minute)
        model.add(
            worker, "worker", "GET /health-of-upstream", CLIENT, start + 2 * 10**9, 3, http__status_code=500
        )
    return request


UNIFORM_MINUTE = 5  # "uniform": 1000 SERVER spans of 1, 2, ..., 1000 ms in minute 5


def uniform(model: Model) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = _scope(request, "uniform")
    for ms in range(1, 1001):
        start = BASE + UNIFORM_MINUTE * MINUTE + ms * 50 * MS
        model.add(scope, "uniform", "GET /u", SERVER, start, ms, parent=b"\x02" * 8)
    return request


def send_with_sdk(endpoint: str) -> None:
    """A root SERVER span with an error status and a CLIENT child, through the real SDK exporter."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("test_red")
    for i in range(3):
        start = BASE + 7 * MINUTE + i * 10**9
        root = tracer.start_span("GET /sdk", kind=SpanKind.SERVER, start_time=start)
        root.set_attribute("http.route", "/sdk")
        root.set_attribute("http.response.status_code", 200)
        if i == 0:
            root.set_status(Status(StatusCode.ERROR, "failed"))
        child = tracer.start_span(
            "GET /dep", kind=SpanKind.CLIENT, context=set_span_in_context(root), start_time=start
        )
        child.end(end_time=start + 5 * MS)
        root.end(end_time=start + 20 * MS)
    provider.shutdown()


@dataclass
class Env:
    server: InProcess
    model: Model
    client: httpx.Client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    model = Model()
    with in_process(tmp_path_factory.mktemp("red-data")) as server:
        for request in (generate(model), uniform(model)):
            reply = httpx.post(
                f"{server.otlp}/v1/traces", content=request.SerializeToString(), headers=PROTOBUF
            )
            assert reply.status_code == 200, reply.text
        send_with_sdk(f"{server.otlp}/v1/traces")
        server.drain()
        with httpx.Client(base_url=server.api, timeout=30) as client:
            yield Env(server, model, client)


RANGE = (BASE, BASE + 10 * MINUTE)


def _rollup_counts(backend: Any, service: str) -> tuple[Counter, Counter]:
    """Requests and errors per (service, operation, kind, minute) through red_series."""
    requests: Counter = Counter()
    errors: Counter = Counter()
    for op in red.operations(backend, service, *RANGE):
        series = red.red_series(backend, service, op.operation, *RANGE, MINUTE)
        assert [p.time_s for p in series.points] == list(
            range(BASE // 10**9, (BASE + 10 * MINUTE) // 10**9, 60)
        )
        for point in series.points:
            if point.stats.requests:
                key = (service, op.operation, op.kind, (point.time_s * 10**9 - BASE) // MINUTE)
                requests[key] += point.stats.requests
                errors[key] += point.stats.errors
    return requests, errors


# -- bucket design --------------------------------------------------------------------------------


def test_bucket_bounds_are_exact_integers_and_at_most_five_percent_wide() -> None:
    bounds = red.LOWER_BOUNDS_NS
    assert len(bounds) == 632 and bounds[:3] == (0, 1000, 1050) and bounds[-1] == 10**12
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    assert red.MAX_RELATIVE_ERROR == pytest.approx(0.05)
    for ms in (1, 2, 2.5, 3, 5, 7.5, 10, 20, 25, 50, 100, 200, 250, 300, 400, 500, 750, 1000, 2500, 10000):
        assert round(ms * MS) in bounds, ms
    assert red.bucket_of(999) == 0 and red.bucket_of(1000) == 1 and red.bucket_of(10**12) == red.LAST_BUCKET


def test_sql_bucket_expression_matches_python_bounds(env: Env) -> None:
    """Every bound, and its neighbours, land in the same bucket in the view as in store/red.py."""
    text = (Path(red.__file__).parent / "sql" / "migrations" / "0004_red.sql").read_text(encoding="utf-8")
    start = text.index("least(greatest(")
    columns = text[start : text.index(" AS bucket", start)]  # the view's per-span columns, up to the bucket
    durations = sorted({d for b in red.LOWER_BOUNDS_NS for d in (b, max(0, b - 1), b + 1)} | {2**64 - 1})
    rows = env.server.rows(
        f"SELECT duration, {columns} AS bucket_id FROM (SELECT arrayJoin({{d:Array(UInt64)}}) AS duration)",
        {"d": durations},
    )
    assert {r["duration"]: r["bucket_id"] for r in rows} == {d: red.bucket_of(d) for d in durations}


# -- counts --------------------------------------------------------------------------------------


def test_request_and_error_counts_per_service_operation_minute_are_exact(env: Env) -> None:
    backend = env.server.backend
    requests: Counter = Counter()
    errors: Counter = Counter()
    for service in ("shop", "pay", "worker"):
        r, e = _rollup_counts(backend, service)
        requests += r
        errors.update(e)
    expected_requests = {k: v for k, v in env.model.requests.items() if k[0] != "uniform"}
    expected_errors = {k: v for k, v in env.model.errors.items() if k[0] != "uniform"}
    assert dict(requests) == expected_requests
    assert {k: v for k, v in errors.items()} == expected_errors
    # The rules, spelled out for the cases the issue names.
    assert ("shop", "POST /pay", "CLIENT", 0) not in requests  # CLIENT child with 500: not a request
    assert ("shop", "render", "INTERNAL", 0) not in requests
    assert ("worker", "audit publish", "PRODUCER", 0) not in requests
    assert requests[("worker", "cron tick", "INTERNAL", 1)] == 1  # root INTERNAL counts
    assert requests[("worker", "orders process", "CONSUMER", 2)] == 1
    assert requests[("worker", "GET /health-of-upstream", "CLIENT", 0)] == 1  # root CLIENT counts ...
    assert errors[("worker", "GET /health-of-upstream", "CLIENT", 0)] == 0  # ... and its 500 is no error
    assert (requests[("shop", "GET /cart", "SERVER", 1)], errors[("shop", "GET /cart", "SERVER", 1)]) == (
        11,
        3,
    )
    assert (requests[("pay", "POST /pay", "SERVER", 2)], errors[("pay", "POST /pay", "SERVER", 2)]) == (12, 3)


def test_sdk_spans_are_rolled_up(env: Env) -> None:
    [op] = red.operations(env.server.backend, "sdk-svc", *RANGE)
    assert (op.operation, op.kind, op.stats.requests, op.stats.errors) == ("GET /sdk", "SERVER", 3, 1)
    assert op.stats.p50_ms == pytest.approx(20, rel=red.MAX_RELATIVE_ERROR)


def test_dimensions_are_stored(env: Env) -> None:
    rows = env.server.rows(
        """SELECT service_name, operation, http_route, http_status_class, rpc_method, service_version,
                  deployment_environment, sum(requests) AS n
           FROM red_1m WHERE service_name IN ('shop', 'pay')
           GROUP BY ALL ORDER BY ALL"""
    )
    got = {tuple(r.values()) for r in rows}
    assert got == {
        ("pay", "POST /pay", "", "2xx", "Charge", "", "staging", 33),
        ("shop", "GET /cart", "/cart", "2xx", "", "1.2.3", "prod", 25),
        ("shop", "GET /cart", "/cart", "5xx", "", "1.2.3", "prod", 8),
    }


def test_replayed_insert_with_the_same_token_adds_nothing(env: Env) -> None:
    model = Model()
    request = ExportTraceServiceRequest()
    scope = _scope(request, "replayed")
    for i in range(5):
        model.add(
            scope, "replayed", "op", SERVER, BASE + 8 * MINUTE + i, 10, status=ERROR if i == 0 else None
        )
    writer = OtlpWriter(env.server.backend, [])
    for _ in range(2):
        writer.write("traces", [request.SerializeToString()], "test-red-replay")
    [svc] = [s for s in red.services_overview(env.server.backend, *RANGE) if s.service == "replayed"]
    assert (svc.stats.requests, svc.stats.errors) == (5, 1)


# -- latency -------------------------------------------------------------------------------------


def test_quantiles_of_a_uniform_distribution_are_within_the_bound(env: Env) -> None:
    [op] = red.operations(env.server.backend, "uniform", *RANGE)
    assert op.stats.requests == 1000
    bound = red.MAX_RELATIVE_ERROR
    assert op.stats.p50_ms == pytest.approx(501, rel=bound)
    assert op.stats.p95_ms == pytest.approx(951, rel=bound)
    assert op.stats.p99_ms == pytest.approx(991, rel=bound)
    # In practice far closer than the bound: within 1 %.
    assert op.stats.p99_ms == pytest.approx(991, rel=0.01)


@pytest.mark.parametrize("threshold_ms", [1, 10, 100, 250, 300, 500, 750, 1000, 5000])
def test_fraction_under_is_exact_at_bucket_bounds(env: Env, threshold_ms: int) -> None:
    got = red.fraction_under(env.server.backend, "uniform", "GET /u", threshold_ms, *RANGE)
    faster = min(1000, threshold_ms - 1)  # durations 1..1000 ms strictly below the threshold
    assert got.exact
    assert (got.requests, got.under, got.fraction) == (1000, faster, faster / 1000)


def test_fraction_under_between_bounds_is_interpolated(env: Env) -> None:
    got = red.fraction_under(env.server.backend, "uniform", None, 333, *RANGE)
    assert not got.exact
    assert got.fraction == pytest.approx(0.332, abs=0.005)
    none = red.fraction_under(env.server.backend, "no-such-service", None, 100, *RANGE)
    assert (none.requests, none.fraction) == (0, None)


def test_rollup_equals_raw_spans(env: Env) -> None:
    """Per service: counts exactly, quantiles within the bound of quantileExact over raw spans."""
    raw = env.server.rows(
        """SELECT service_name AS svc,
                  count() AS n,
                  countIf(status_code = 'ERROR' OR (kind = 'SERVER' AND toUInt16OrZero(
                      if(mapContains(attributes, 'http.response.status_code'),
                         attributes['http.response.status_code'], attributes['http.status_code'])) >= 500)) AS e,
                  quantilesExact(0.5, 0.95, 0.99)(duration) AS qs
           FROM spans
           WHERE timestamp >= fromUnixTimestamp64Nano({start:Int64})
             AND timestamp < fromUnixTimestamp64Nano({end:Int64})
             AND (kind IN ('SERVER', 'CONSUMER') OR parent_span_id = toFixedString('', 8))
           GROUP BY svc ORDER BY svc""",
        {"start": RANGE[0], "end": RANGE[1]},
    )
    rolled = {s.service: s.stats for s in red.services_overview(env.server.backend, *RANGE)}
    assert set(rolled) == {r["svc"] for r in raw}
    for row in raw:
        stats = rolled[row["svc"]]
        assert (stats.requests, stats.errors) == (row["n"], row["e"]), row["svc"]
        for got, exact in zip((stats.p50_ms, stats.p95_ms, stats.p99_ms), row["qs"], strict=True):
            assert abs(got * MS - exact) <= red.MAX_RELATIVE_ERROR * exact + 1, (row["svc"], got, exact)


# -- HTTP API --------------------------------------------------------------------------------------


def _params(**extra: Any) -> dict[str, Any]:
    return {"start": str(RANGE[0] // MS), "end": str(RANGE[1] // MS), **extra}


def test_services_endpoint(env: Env) -> None:
    reply = env.client.get("/api/v1/services", params=_params())
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["start"] == red_iso(RANGE[0]) and body["end"] == red_iso(RANGE[1])
    by_name = {s["service"]: s for s in body["services"]}
    assert body["services"][0]["service"] == "uniform"  # busiest first
    shop = by_name["shop"]
    assert set(shop) == {
        "service",
        "requests",
        "errors",
        "rate",
        "error_rate",
        "error_ratio",
        "p50_ms",
        "p95_ms",
        "p99_ms",
    }
    assert (shop["requests"], shop["errors"]) == (33, 8)
    assert shop["rate"] == pytest.approx(33 / 600) and shop["error_ratio"] == pytest.approx(8 / 33)
    limited = env.client.get("/api/v1/services", params=_params(limit="2")).json()["services"]
    assert [s["service"] for s in limited] == [s["service"] for s in body["services"][:2]]


def red_iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9))


def test_operations_endpoint(env: Env) -> None:
    reply = env.client.get("/api/v1/services/worker/operations", params=_params())
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["service"] == "worker"
    ops = {(o["operation"], o["kind"]): o["requests"] for o in body["operations"]}
    assert ops == {
        ("orders process", "CONSUMER"): 3,
        ("cron tick", "INTERNAL"): 3,
        ("GET /health-of-upstream", "CLIENT"): 3,
    }


def test_red_series_endpoint(env: Env) -> None:
    reply = env.client.get("/api/v1/red", params=_params(service="shop", operation="GET /cart", step="5m"))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["service"], body["operation"], body["step"]) == ("shop", "GET /cart", 300)
    points = body["points"]
    assert [p["time"] for p in points] == [red_iso(RANGE[0]), red_iso(RANGE[0] + 5 * MINUTE)]
    assert (points[0]["requests"], points[0]["errors"]) == (33, 8)
    assert points[0]["rate"] == pytest.approx(33 / 300) and points[0]["error_rate"] == pytest.approx(8 / 300)
    assert points[1]["requests"] == 0 and points[1]["error_ratio"] is None and points[1]["p99_ms"] is None
    whole = env.client.get("/api/v1/red", params=_params(service="shop", step="1m")).json()
    assert len(whole["points"]) == 10 and whole["operation"] is None
    assert sum(p["requests"] for p in whole["points"]) == 33


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/api/v1/services", {"start": "yesterday"}, "start"),
        ("/api/v1/services", {"end": "2026-01-01T00:00:00"}, "time zone"),
        ("/api/v1/services", {"start": "2000", "end": "1000"}, "before end"),
        ("/api/v1/services", {"limit": "0"}, "limit"),
        ("/api/v1/services", {"limit": "-1"}, "limit"),
        ("/api/v1/services", {"start": "9" * 400}, "range"),
        ("/api/v1/services", {"end": "99999999999999"}, "2106"),
        ("/api/v1/services/x/operations", {"limit": "many"}, "limit"),
        ("/api/v1/red", {}, "service is required"),
        ("/api/v1/red", {"service": ""}, "service is required"),
        ("/api/v1/red", {"service": "shop", "step": "30s"}, "whole number of minutes"),
        ("/api/v1/red", {"service": "shop", "step": "5 fortnights"}, "step"),
        ("/api/v1/red", {"service": "shop", "step": "0m"}, "step"),
        ("/api/v1/red", {"service": "shop", "start": "0", "end": "4000000000000", "step": "1m"}, "points"),
    ],
)
def test_bad_parameters_are_400_naming_the_problem(env: Env, path: str, params: dict, needle: str) -> None:
    reply = env.client.get(path, params=params)
    assert reply.status_code == 400, reply.text
    assert needle in reply.json()["detail"]


def test_injection_attempts_find_nothing_and_change_nothing(env: Env) -> None:
    def counts() -> tuple[int, int]:
        spans = env.server.rows("SELECT count() AS n FROM spans")[0]["n"]
        rolled = env.server.rows("SELECT sum(requests) AS n FROM red_1m")[0]["n"]
        return spans, rolled

    before = counts()
    for evil in ("x' OR 1=1 --", "shop' --", "a\\", "\\' ; DROP TABLE red_1m; --", "shop\\"):
        replies = [
            env.client.get(
                f"/api/v1/services/{httpx.URL(path=evil).raw_path.decode()}/operations", params=_params()
            ),
            env.client.get("/api/v1/red", params=_params(service=evil)),
            env.client.get("/api/v1/red", params=_params(service="shop", operation=evil)),
        ]
        for reply in replies:
            assert reply.status_code == 200, reply.text
        assert replies[0].json()["operations"] == []
        assert all(p["requests"] == 0 for r in replies[1:] for p in r.json()["points"])
        assert red.fraction_under(env.server.backend, evil, evil, 100, *RANGE).requests == 0
    assert counts() == before
