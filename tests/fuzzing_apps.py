"""Fuzzing through the real applications: the OTLP/HTTP and Zipkin receivers over real durable
queues and a real store, and every GET route of the UI/API application over a store holding a
little of everything. Shared by ``tests/test_fuzz_decoders.py``, ``tests/test_fuzz_api.py`` and
``bench/fuzz.py``; the surfaces' contract and :class:`~tests.fuzzing.Finding` are in
``tests/fuzzing.py``.

The API's query parameters are found, not listed: each GET route is called while
``QueryParams`` records every name a handler reads, with plausible values for the names found so
far, until no new name appears. A parameter a handler reads only past another check is found once
that check passes; one no handler reads cannot break anything.
"""

from __future__ import annotations

import contextlib
import gzip
import random
import re
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry
from starlette.datastructures import QueryParams
from starlette.routing import Mount

from collector import decode, otlp_http, zipkin
from collector.intake import Intake
from collector.queue import DurableQueue, QueueLimits
from collector.telemetry import CollectorMetrics
from store import migrations
from store.embedded import EmbeddedBackend
from store.otlp_writer import OtlpWriter
from tests import fuzzing
from tests.fuzzing import Finding, crash, show

with warnings.catch_warnings():  # starlette would rather have httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
RECEIVER_LIMIT = 1 << 20  # the receivers' body limit here: small, so bombs are cheap to refuse


def open_store(directory: Path) -> EmbeddedBackend:
    """A migrated embedded store (chDB: one data directory per process at a time)."""
    backend = EmbeddedBackend(directory)
    migrations.migrate(backend)
    return backend


# -- receivers -----------------------------------------------------------------------------------


@dataclass
class Receivers:
    """The OTLP/HTTP and Zipkin applications over real durable queues, with in-process clients."""

    otlp: TestClient
    zipkin: TestClient
    queues: dict[str, DurableQueue]


@contextlib.contextmanager
def receivers(backend: EmbeddedBackend, wal_dir: Path) -> Iterator[Receivers]:
    """The receivers as ``sloscope serve`` builds them (sloscope/app.py), queues started."""
    registry = CollectorRegistry()
    metrics = CollectorMetrics.create(registry)
    writer = OtlpWriter(backend, ["correlation.id"])
    limits = QueueLimits(max_batch_delay=0.2)
    queues = {s: DurableQueue(s, wal_dir / s, writer, metrics, limits) for s in decode.SIGNALS}
    for q in queues.values():
        q.start()
    intake = Intake(queues, metrics)
    otlp_app = otlp_http.create_app(intake, otlp_http.HttpLimits(max_body_bytes=RECEIVER_LIMIT))
    zipkin_app = zipkin.create_app(intake, max_body_bytes=RECEIVER_LIMIT)
    try:
        with (
            TestClient(otlp_app, follow_redirects=False) as otlp,
            TestClient(zipkin_app, follow_redirects=False) as zip_client,
        ):
            yield Receivers(otlp, zip_client, queues)
    finally:
        for q in queues.values():
            # Mutated bodies the engine refuses are retried, then quarantined: not worth waiting for.
            q.stop(drain_timeout=1.0)


@dataclass(frozen=True)
class Post:
    """One request to a receiver."""

    app: str  # "otlp" or "zipkin"
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:
        return f"POST {self.app}{self.path} {dict(self.headers)} {show(self.body, 200)}"


_OTLP_TYPES = [
    "application/x-protobuf",
    "application/json",
    "application/protobuf",
    "application/json; charset=utf-8",
]
_OTHER_TYPES = ["", "text/plain", "application/x-www-form-urlencoded", "application/JSON", "*/*", ";", "\x7f"]
_ENCODINGS = ["", "identity", "gzip", "x-gzip", "GZIP", " gzip ", "deflate", "br", "gzip, identity"]


@dataclass
class PostMaker:
    """Random receiver requests: bodies from the decoder surfaces, with every content type and
    encoding (the body gzipped when the encoding says so, most of the time)."""

    protobuf: dict[str, list[bytes]] = field(default_factory=fuzzing.protobuf_seeds)
    json: dict[str, list[bytes]] = field(default_factory=fuzzing.json_seeds)
    zipkin: list[bytes] = field(default_factory=fuzzing.zipkin_seeds)

    def __call__(self, rng: random.Random) -> Post:
        roll = rng.random()
        if roll < 0.25:
            app, path, body = "zipkin", "/api/v2/spans", fuzzing.random_zipkin(rng, self.zipkin)
            if rng.random() < 0.05:
                path = rng.choice(["/api/v1/spans", "/api/v2/span", "/"])
            ctype = rng.choice(["application/json", "", "application/json", "text/plain"])
        else:
            app, signal = "otlp", rng.choice(decode.SIGNALS)
            path = f"/v1/{signal}" if rng.random() < 0.97 else rng.choice(["/v1/spans", "/v1/traces/", "/"])
            if rng.random() < 0.5:
                ctype, body = "application/x-protobuf", fuzzing.mutate_randomly(rng, self.protobuf[signal])
            else:
                ctype, body = "application/json", fuzzing.random_otlp_json(rng, self.json[signal])
            if rng.random() < 0.1:
                ctype = rng.choice(_OTLP_TYPES + _OTHER_TYPES)
        headers = [("content-type", ctype)] if ctype or rng.random() < 0.5 else []
        encoding = rng.choice(_ENCODINGS) if rng.random() < 0.4 else ""
        if encoding:
            headers.append(("content-encoding", encoding))
            if "gzip" in encoding.lower() and rng.random() < 0.9:
                body = gzip.compress(body, 1)
                if rng.random() < 0.2:
                    body = fuzzing.mutate(body, fuzzing.random_ops(rng, 2))
        if rng.random() < 0.01:
            body = gzip.compress(bytes(RECEIVER_LIMIT * 4))  # a bomb, gzip or not
        return Post(app, path, tuple(headers), body)


def posts(seed_max: int = 2**32 - 1) -> st.SearchStrategy[Post]:
    """Hypothesis: receiver requests from a drawn seed (reproducible, printed when one fails)."""
    maker = PostMaker()
    return st.integers(0, seed_max).map(lambda seed: maker(random.Random(seed)))


def _otlp_status(response: Any) -> str:
    ctype = response.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        return str(response.json().get("message", ""))
    if ctype.startswith("application/x-protobuf"):
        status = status_pb2.Status()
        status.ParseFromString(response.content)
        return status.message
    return response.text


def check_post(apps: Receivers, post: Post) -> str:
    """Oracle: no 5xx; a refusal's body says why (google.rpc.Status in the request's encoding for
    OTLP, text for Zipkin); an acceptance is a valid Export*ServiceResponse."""
    client = apps.otlp if post.app == "otlp" else apps.zipkin
    try:
        response = client.post(post.path, content=post.body, headers=list(post.headers))
    except Exception:
        raise crash(f"POST {post.path}") from None
    status = response.status_code
    if status >= 500:
        raise Finding("5xx", f"POST {post.path} answered {status}: {response.text[:300]}")
    if status >= 400:
        try:
            message = _otlp_status(response) if post.app == "otlp" else response.text
        except Exception as exc:
            raise Finding("no-message", f"{status} with an unreadable body: {exc!r}") from None
        fuzzing.need_message(message, f"POST {post.path} ({status})")
        return "rejected"
    if status >= 300:
        return "redirected"  # /v1/traces/ -> /v1/traces: what the client does next is its own affair
    if post.app == "otlp":
        signal = post.path.rsplit("/", 1)[-1]
        reply = decode.RESPONSES[signal]()
        try:
            if response.headers["content-type"].startswith("application/json"):
                json_format.Parse(response.content, reply)
            else:
                reply.ParseFromString(response.content)
        except Exception as exc:
            raise Finding("wrong", f"200 with a body that is no {type(reply).__name__}: {exc!r}") from None
        partial = reply.partial_success
        if getattr(partial, decode.REJECTED_FIELD[signal]) and not partial.error_message:
            raise Finding("no-message", "partial success without an error message")
    return "accepted"


# -- a store with a little of everything ---------------------------------------------------------

SERVICES = ("gateway", "payments", "frontend", "orders", "inventory", "mailer", "cart", "search", "shipping")


@dataclass
class Known:
    """Values that exist in the loaded store: path and query parameters that reach deep."""

    trace_ids: list[str]
    services: list[str]
    operations: list[str]
    slos: list[str]
    incidents: list[str]
    silences: list[str]
    metrics: list[str]
    correlation_ids: list[str]
    now_s: int


def load_data(backend: EmbeddedBackend, slos: Sequence[Any]) -> Known:
    """Spans and logs of a few services over the last 3 minutes, metrics over 20, the service map, an
    evaluation of ``slos`` in their history, and an alert with its incident and a silence."""
    from alerts import store as alert_store
    from alerts.model import Matcher, Silence, Transition
    from alerts.state import AlertRecord
    from slo import evaluator, history
    from store import service_map

    rng = random.Random(7)
    now_ns = time.time_ns()
    writer = OtlpWriter(backend, ["correlation.id"])
    traces = ExportTraceServiceRequest()
    logs = ExportLogsServiceRequest()
    metrics = ExportMetricsServiceRequest()
    trace_ids, operations = [], ["GET /stock", "POST /payments/authorize", "POST /orders", "GET /search"]
    for t in range(40):
        trace_id = rng.randbytes(16)
        trace_ids.append(trace_id.hex())
        start = now_ns - rng.randrange(3 * 60) * 10**9  # a few minutes: the service map rolls up each
        parent = b""
        for depth, service in enumerate(rng.sample(SERVICES, 3)):
            rs = traces.resource_spans.add()
            rs.resource.attributes.add(key="service.name").value.string_value = service
            span_id = rng.randbytes(8)
            span = rs.scope_spans.add().spans.add(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=rng.choice(operations),
                kind=2 if depth == 0 else 3,
                start_time_unix_nano=start + depth * 1000,
                end_time_unix_nano=start + rng.randrange(10**6, 10**9),
            )
            for key, value in (("http.route", "/search"), ("correlation.id", f"corr-{t % 5}")):
                span.attributes.add(key=key).value.string_value = value
            span.attributes.add(key="http.response.status_code").value.int_value = rng.choice([200, 500])
            span.events.add(time_unix_nano=start + 10, name="retry")
            if rng.random() < 0.3:
                span.status.code, span.status.message = 2, "failed"
            record = logs.resource_logs.add()
            record.resource.attributes.add(key="service.name").value.string_value = service
            log = record.scope_logs.add().log_records.add(
                time_unix_nano=start + 100,
                severity_number=rng.choice([9, 13, 17]),
                severity_text="INFO",
                trace_id=trace_id,
                span_id=span_id,
            )
            log.body.string_value = rng.choice(["mail queued", "card declined", "ok"])
            log.attributes.add(key="mail.stage").value.string_value = "relay"
            parent = span_id
    rm = metrics.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "cart"
    sm = rm.scope_metrics.add()
    total = sm.metrics.add(name="cart.requests").sum
    total.is_monotonic, total.aggregation_temporality = True, 2
    hist = sm.metrics.add(name="http.server.request.duration", unit="s").histogram
    hist.aggregation_temporality = 2
    for minute in range(20):
        at = now_ns - (20 - minute) * 60 * 10**9
        for outcome in ("ok", "error"):
            point = total.data_points.add(as_int=minute * 10, start_time_unix_nano=now_ns - 3600 * 10**9)
            point.time_unix_nano = at
            point.attributes.add(key="outcome").value.string_value = outcome
        point = hist.data_points.add(
            count=10, sum=2.0, time_unix_nano=at, start_time_unix_nano=at - 60 * 10**9
        )
        point.bucket_counts.extend([5, 3, 2])
        point.explicit_bounds.extend([0.1, 0.5])
        point.attributes.add(key="http.route").value.string_value = "/search"
        point.exemplars.add(trace_id=bytes.fromhex(trace_ids[0]), span_id=b"\x01" * 8, as_double=0.7)
    sm.metrics.add(name="queue.depth").gauge.data_points.add(as_double=3.0, time_unix_nano=now_ns)
    for signal, message in (("traces", traces), ("logs", logs), ("metrics", metrics)):
        writer.write(signal, [message.SerializeToString()], f"fuzz-{signal}-{uuid.uuid4().hex}")
    service_map.roll_up(backend, now_ns)
    now_s = now_ns // 10**9
    at_s = now_s // 60 * 60
    results = evaluator.evaluate(backend, slos, at_s)
    history.record(backend, results)

    alert = AlertRecord("alert-1", slos[0].name, "page", (), "firing", at_s - 600, None, None, at_s)
    alert_store.save_alerts(backend, [alert])
    alert_store.save_transitions(
        backend, [Transition("alert-1", at_s - 600, "inactive", "firing")], {"alert-1": alert}
    )
    incident = {
        "id": "incident-1",
        "receiver": "hook",
        "group_labels": {"slo_instance": slos[0].name},
        "status": "open",
        "opened_at_s": at_s - 600,
        "alert_ids": ["alert-1"],
        "slos": [slos[0].name],
        "services": [slos[0].service],
        "severities": ["page"],
    }
    alert_store.save_incidents(backend, [incident], at_s)
    silence = Silence(
        "silence-1", (Matcher("slo", "=", slos[0].name),), now_s - 60, now_s + 3600, "fuzz", "c"
    )
    alert_store.save_silence(backend, silence, now_ns // 10**6)
    return Known(
        trace_ids=trace_ids,
        services=list(SERVICES),
        operations=operations,
        slos=[slo.name for slo in slos],
        incidents=["incident-1"],
        silences=["silence-1"],
        metrics=["cart.requests", "http.server.request.duration", "queue.depth"],
        correlation_ids=[f"corr-{i}" for i in range(5)],
        now_s=now_s,
    )


#: SLOs of examples/slos the application answers for: one of each SLI source, budgeting method,
#: grouped and OpenSLO (all eleven would make the SLO pages, which evaluate them, twice as slow).
FUZZ_SLOS = (
    "gateway-availability",
    "checkout-routes",
    "inventory-timeslices",
    "mailer-delivery",
    "search-latency-histogram",
    "shipping-label-latency",
)


def example_slos() -> list[Any]:
    """The :data:`FUZZ_SLOS` of examples/slos (native and OpenSLO)."""
    from slo import spec

    slos, errors = spec.load(ROOT / "examples" / "slos")
    assert not errors, errors
    by_name = {slo.name: slo for slo in slos}
    return [by_name[name] for name in FUZZ_SLOS]


def api_app(backend: EmbeddedBackend, slos: Sequence[Any]) -> Any:
    """The UI/API application as ``sloscope serve`` builds it (no users: everything open)."""
    import inspect

    from ui import api

    options: dict[str, Any] = {}
    if "admin" in inspect.signature(api.create_app).parameters:
        from ui.api_admin import AdminHooks

        # As sloscope/app.py supplies them: the SLOs reload, and the (here: no) ingest tokens.
        options["admin"] = AdminHooks(reload_slos=lambda: list(slos), tokens=lambda: [])
    return api.create_app(backend, CollectorRegistry(), lambda: [], slos=slos, **options)


# -- routes and their parameters -----------------------------------------------------------------


@dataclass
class ApiRoute:
    """A GET route: its path template, path parameters (name -> convertor) and query parameters."""

    path: str
    path_params: dict[str, str]
    query: set[str] = field(default_factory=set)

    def url(self, values: dict[str, str]) -> str:
        out = self.path
        for name, convertor in self.path_params.items():
            value = values[name]
            out = out.replace(
                "{" + name + (":" + convertor if convertor != "str" else "") + "}",
                _quote(value, safe="/" if convertor == "path" else ""),
            )
        return out


def _quote(value: str, safe: str = "") -> str:
    # Lone surrogates go on the wire as the bytes "surrogatepass" gives: invalid UTF-8, as a client can send.
    return quote(value.encode("utf-8", "surrogatepass"), safe=safe)


def query_string(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params)


_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")


def _flat_routes(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(prefix, route) of every route, inside included routers too (FastAPI 0.16x keeps an included
    router as one ``_IncludedRouter`` holding the original router and its prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _flat_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        else:
            yield prefix, route


def get_routes(app: Any) -> list[ApiRoute]:
    """Every GET route of ``app``, and ``/static/{path}`` for the static files mount."""
    routes = []
    for prefix, route in _flat_routes(app.routes):
        if isinstance(route, Mount):
            routes.append(ApiRoute(prefix + route.path + "/{path:path}", {"path": "path"}))
            continue
        methods = getattr(route, "methods", None) or set()
        if "GET" not in methods:
            continue
        path = prefix + route.path
        params = {m.group(1): m.group(2) or "str" for m in _PARAM.finditer(path)}
        routes.append(ApiRoute(path, params))
    return routes


@contextlib.contextmanager
def recording_query_names() -> Iterator[list[str]]:
    """The query parameter names handlers read while this is active, in order (QueryParams
    instrumented)."""
    names: list[str] = []
    methods = ("get", "getlist", "__getitem__", "__contains__")
    originals = {name: getattr(QueryParams, name) for name in methods}

    def wrap(name: str) -> Any:
        original = originals[name]

        def recorded(self: QueryParams, key: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(key, str):
                names.append(key)
            return original(self, key, *args, **kwargs)

        return recorded

    for name in originals:
        setattr(QueryParams, name, wrap(name))
    try:
        yield names
    finally:
        for name, original in originals.items():
            setattr(QueryParams, name, original)


def discover_query_params(client: TestClient, routes: Sequence[ApiRoute], known: Known) -> None:
    """Fill each route's ``query`` with the names its handler reads. Each route is called with
    plausible values for the names found so far; when that finds nothing new, again without the last
    name read, which may be the one that ended the handler early (Jaeger's ``traceID`` makes its
    search read nothing else)."""
    for route in routes:
        if route.path.startswith("/static"):
            continue
        # Seeded by the route: the values one route is tried with do not change when routes are added.
        rng = random.Random(route.path)
        for path_values in (plausible_path(route, known, rng, good=True),):
            left_out: set[str] = set()
            for _ in range(8):
                params = [(n, plausible(n, known, rng, good=True)) for n in sorted(route.query - left_out)]
                with recording_query_names() as names, contextlib.suppress(Exception):
                    url = route.url(path_values) + "?" + query_string(params)
                    client.get(url, headers={"accept": "text/html"})
                new = set(names) - route.query
                route.query |= new
                if new:
                    continue
                if not names or names[-1] in left_out:
                    break
                left_out.add(names[-1])


# -- values --------------------------------------------------------------------------------------

_NASTY = [
    "",
    " ",
    "0",
    "-1",
    "1e400",
    "9" * 400,
    "NaN",
    "inf",
    "-inf",
    "1.5",
    "null",
    "true",
    "[]",
    "{}",
    '{"a": 1}',
    '{"a": "b"}',
    "'; DROP TABLE spans; --",
    "%00",
    "\x00",
    "\u202e",
    "ünïcode",
    "😀",
    "a" * 5000,
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "a=b",
    "a:b",
    "a = b",
    "k=~(",
    "http.response.status_code >= 500",
]


def _times(known: Known) -> list[str]:
    now_ms = known.now_s * 1000
    return [
        str(now_ms),
        str(now_ms - 3_600_000),
        str(now_ms * 1000),  # microseconds, as Jaeger takes them
        str((known.now_s - 3600) * 10**6),
        datetime.fromtimestamp(known.now_s, UTC).isoformat().replace("+00:00", "Z"),
        datetime.fromtimestamp(known.now_s - 7200, UTC).isoformat(),
        "2026-12-01T10:00:00",
        "2026-13-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1970-01-01T00:00:00Z",
        "2106-02-07T06:28:16Z",
        "2262-04-11T23:47:17Z",
        "0",
        "-1",
        "-9223372036854775808",
        "9223372036854775807",
        "18446744073709551616",
        "1.5",
        "1e3",
    ]


_DURATIONS = [
    "0",
    "1",
    "1.5",
    "-1",
    "1e308",
    "nan",
    "100ms",
    "1.2s",
    "1h30m",
    ".5us",
    "1µs",
    "99999999999h",
    "5",
    "0s",
]
_STEPS = ["1m", "30s", "0s", "5m", "1h", "1d", "7d", "5", "-1m", "1000000000000d", "1ms", "1M", "61s"]
_LIMITS = [
    "1",
    "0",
    "-1",
    "20",
    "100",
    "1000",
    "1500",
    "1501",
    "10000",
    "10001",
    "100000",
    "9" * 30,
    "1.5",
    "٣",
]


def plausible(name: str, known: Known, rng: random.Random, good: bool = False) -> str:
    """A value for query parameter ``name``: one that exists or parses (``good``), or anything."""
    lowered = name.lower()
    choices: list[str]
    if lowered in ("start", "end", "at", "endts", "lookback"):
        choices = _times(known)[:6] if good else _times(known)
    elif lowered in ("limit",):
        choices = ["20", "100"] if good else _LIMITS
    elif lowered in ("step",):
        choices = ["1m", "5m"] if good else _STEPS
    elif "duration" in lowered:
        choices = ["1", "100ms"] if good else _DURATIONS
    elif lowered in ("service",):
        choices = known.services
    elif lowered in ("operation",):
        choices = known.operations
    elif lowered in ("trace_id", "traceid"):
        choices = known.trace_ids[:3] + ([] if good else ["abc", "0" * 32, "g" * 32, "1" * 33])
    elif lowered in ("correlation_id", "q"):
        choices = known.correlation_ids + ["mail"]
    elif lowered in ("attr", "tag"):
        choices = ["http.route=/search", "http.route:/search", "correlation.id=corr-1"]
    elif lowered == "tags":
        choices = ['{"http.route": "/search"}', '{"http.response.status_code": 500}', '{"error": true}']
    elif lowered == "group":
        choices = ['{"http.route": "/search"}', "{}"]
    elif lowered in ("status", "state"):
        choices = ["error", "ok", "open", "resolved", "firing", "inactive", "unset"]
    elif lowered in ("severity_min",):
        choices = ["ERROR", "warn", "9", "INFO2", "FATAL4"]
    elif lowered == "spankind":
        choices = ["server", "client", "internal", "producer", "consumer"]
    elif lowered == "last":
        choices = ["15m", "1h", "6h", "24h", "7d"]
    elif lowered == "agg":
        choices = ["sum", "rate", "avg", "p95", "max", "min", "count", "last"]
    elif lowered == "type":
        choices = ["gauge", "sum", "histogram", "exponential_histogram"]
    elif lowered == "group_by":
        choices = ["outcome", "http.route", "service.name"]
    elif lowered == "name":
        choices = known.metrics + known.slos
    else:
        choices = []
    if good and choices:
        return rng.choice(choices)
    if choices and rng.random() < 0.6:
        value = rng.choice(choices)
        return value if rng.random() < 0.8 else _twist(value, rng)
    return rng.choice(_NASTY) if rng.random() < 0.7 else fuzzing.random_text(rng)


def _twist(value: str, rng: random.Random) -> str:
    """A small change to a good value: a character dropped or doubled, case, spaces, a sign."""
    roll = rng.randrange(6)
    if roll == 0 and value:
        i = rng.randrange(len(value))
        return value[:i] + value[i + 1 :]
    if roll == 1 and value:
        i = rng.randrange(len(value))
        return value[:i] + value[i] + value[i:]
    if roll == 2:
        return value.upper() if rng.random() < 0.5 else value.lower()
    if roll == 3:
        return f" {value} "
    if roll == 4:
        return "-" + value
    return value + rng.choice(["0", "x", "%", "/", ".5", "e9"])


def plausible_path(route: ApiRoute, known: Known, rng: random.Random, good: bool = False) -> dict[str, str]:
    values = {}
    for name, convertor in route.path_params.items():
        lowered = name.lower()
        if "trace" in lowered:
            # A 64-bit short id is no good value: the trace pages do not find a trace by it.
            choices = known.trace_ids[:3] + ([] if good else [t[16:] for t in known.trace_ids[:1]])
        elif "correlation" in lowered:
            choices = known.correlation_ids
        elif "incident" in lowered:
            choices = known.incidents
        elif "silence" in lowered:
            choices = known.silences
        elif lowered == "service":
            choices = known.services
        elif lowered == "path":
            choices = ["app.css", "app.js", "vendor", "nope.js", "../pyproject.toml", "%2e%2e/x"]
        elif lowered == "name" and "metrics" in route.path:
            choices = known.metrics + ["a/b/c"]
        elif lowered == "name" and "runbook" in route.path:
            choices = ["checkout", "nope", "a" * 81]
        elif lowered == "name":
            choices = known.slos + known.services
        else:
            choices = ["x"]
        if good or rng.random() < 0.5:
            value = rng.choice(choices)
            values[name] = value if good or rng.random() < 0.8 else _twist(value, rng)
        else:
            value = rng.choice(_NASTY) if rng.random() < 0.7 else fuzzing.random_text(rng)
            values[name] = value or "x"  # an empty segment is another route
        if convertor != "path":
            values[name] = values[name].replace("/", "%2F")
    return values


@dataclass(frozen=True)
class Get:
    """One GET request to the UI/API application."""

    path: str
    params: tuple[tuple[str, str], ...]
    html: bool

    def __repr__(self) -> str:
        return f"GET {self.path} {list(self.params)}{' (html)' if self.html else ''}"


@dataclass
class GetMaker:
    """Random requests: a route, its path parameters, a random subset of its query parameters (each
    given once or twice, now and then one of another route), values good, twisted or hostile."""

    routes: Sequence[ApiRoute]
    known: Known
    all_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.all_names = sorted({n for r in self.routes for n in r.query} | {"start", "end", "limit"})

    def __call__(self, rng: random.Random) -> Get:
        route = rng.choice(self.routes)
        path = route.url(plausible_path(route, self.known, rng))
        names = sorted(route.query)
        chosen = [n for n in names if rng.random() < 0.5]
        if rng.random() < 0.1:
            chosen.append(rng.choice(self.all_names + ["nope", ""]))
        params = []
        for name in chosen:
            for _ in range(2 if rng.random() < 0.1 else 1):
                params.append((name, plausible(name, self.known, rng, good=rng.random() < 0.4)))
        return Get(path, tuple(params), html=rng.random() < 0.5)


def gets(maker: GetMaker) -> st.SearchStrategy[Get]:
    """Hypothesis: API requests from a drawn seed (reproducible, printed when one fails)."""
    return st.integers(0, 2**32 - 1).map(lambda seed: maker(random.Random(seed)))


_HTML_ERROR = re.compile(r'<section class="error">\s*<h1>(.*?)</h1>\s*<p>(.*?)</p>', re.S)
# A search page keeps its form and says above it why the search cannot run.
_FORM_ERROR = re.compile(r'<div class="form-error" role="alert"><strong>[^<]*</strong>(.*?)</div>', re.S)


def api_message(response: Any) -> str:
    """The message of a refusal: JSON ``detail`` (or Jaeger's ``errors[].msg``), the HTML error
    page's text, or a plain-text body."""
    ctype = response.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and body.get("errors"):
            return " ".join(str(e.get("msg", "")) for e in body["errors"])
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list):  # FastAPI's validation errors
            return "; ".join(str(d.get("msg", "")) for d in detail if isinstance(d, dict))
        return "" if detail is None else str(detail)
    if ctype.startswith("text/html"):
        found = _HTML_ERROR.search(response.text)
        if found:
            return found.group(2).strip()
        found = _FORM_ERROR.search(response.text)
        return found.group(1).strip() if found else ""
    return response.text


def check_get(client: TestClient, request: Get) -> str:
    """Oracle: no exception and no 5xx; every 4xx carries a message."""
    headers = {"accept": "text/html,application/xhtml+xml" if request.html else "application/json"}
    try:
        url = request.path + ("?" + query_string(request.params) if request.params else "")
        response = client.get(url, headers=headers)
    except Exception:
        raise crash(repr(request)) from None
    status = response.status_code
    if status >= 500:
        raise Finding("5xx", f"{request!r} answered {status}: {response.text[:300]}")
    if status >= 400:
        try:
            message = api_message(response)
        except Exception as exc:
            raise Finding("no-message", f"{request!r}: {status} with an unreadable body: {exc!r}") from None
        fuzzing.need_message(message, f"{request!r} ({status})")
        return "rejected"
    return "accepted"


@dataclass
class Api:
    """The UI/API application over a loaded store, its client, routes and known values."""

    client: TestClient
    routes: list[ApiRoute]
    known: Known
    maker: GetMaker


@contextlib.contextmanager
def api(backend: EmbeddedBackend) -> Iterator[Api]:
    """Load data into ``backend``, build the application and discover its query parameters."""
    slos = example_slos()
    known = load_data(backend, slos)
    app = api_app(backend, slos)
    # Unhandled exceptions are raised in the test, with their traceback, instead of a bare 500.
    with TestClient(app, raise_server_exceptions=True, follow_redirects=False) as client:
        routes = get_routes(app)
        discover_query_params(client, routes, known)
        yield Api(client, routes, known, GetMaker(routes, known))
