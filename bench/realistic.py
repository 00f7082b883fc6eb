"""Realistic OTLP trace requests for benchmarks: whole traces of a small shop, as an SDK would send them.

    from bench.realistic import realistic_request, realistic_bodies
    body = realistic_request(seed=7)          # one serialised ExportTraceServiceRequest, 512 spans
    bodies = realistic_bodies(40)             # 40 of them (seeds 0..39)

Every request holds exactly ``spans`` spans in whole traces (the last trace is sized to fit): about 20
spans per trace over 6 services (frontend, checkout, cart, payment, product-catalog, shipping) as a
parent/child tree of SERVER, CLIENT and INTERNAL spans (a CLIENT call's SERVER span is its child, in
the callee). Spans carry about 10 attributes each with the repeating names and values that real
instrumentation produces (http.request.method, http.route, http.response.status_code, url.path,
server.address, db.system, db.query.text, ...), and only a few unique values (ids in URLs, peer
ports). Durations are lognormal and nested: a child starts and ends inside its parent. 2% of spans
are errors, each with an ``exception`` event. Resources carry service.version, host.name and the
SDK's attributes. Traces start within the last minute (``time.time_ns()``), so the store's TTL and
time-bounded queries treat them as fresh; everything else depends on ``seed`` only.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SPANS_PER_TRACE = 20
ERROR_RATE = 0.02

# service -> (services it calls, its datastore or None, its server routes)
SERVICES: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...]]] = {
    "frontend": (
        ("checkout", "cart", "product-catalog"),
        None,
        (
            "GET /api/products",
            "GET /api/products/{id}",
            "GET /api/cart",
            "POST /api/cart",
            "POST /api/checkout",
        ),
    ),
    "checkout": (
        ("payment", "cart", "shipping", "product-catalog"),
        "postgresql",
        ("POST /orders", "GET /orders/{id}"),
    ),
    "cart": (("product-catalog",), "redis", ("GET /cart/{userId}", "POST /cart/{userId}/items")),
    "payment": ((), "postgresql", ("POST /charge",)),
    "product-catalog": ((), "postgresql", ("GET /products", "GET /products/{id}")),
    "shipping": ((), None, ("POST /quote", "POST /ship")),
}
HOSTS = 3  # hosts per service: host.name repeats
VERSIONS = {name: f"1.{i}.{i * 3 % 7}" for i, name in enumerate(SERVICES)}
DB_QUERIES = {
    "postgresql": (
        ("SELECT", "orders", "SELECT id, status, total FROM orders WHERE user_id = $1"),
        ("SELECT", "products", "SELECT id, name, price FROM products WHERE id = $1"),
        ("INSERT", "orders", "INSERT INTO orders (user_id, total) VALUES ($1, $2)"),
        ("UPDATE", "inventory", "UPDATE inventory SET count = count - $1 WHERE product_id = $2"),
    ),
    "redis": (("HGETALL", "cart", "HGETALL cart:?"), ("HSET", "cart", "HSET cart:? ? ?")),
}
INTERNAL = ("render_page", "validate_request", "serialize_response", "load_session", "compute_quote")
EXCEPTIONS = (
    ("TimeoutError", "upstream request timed out after 2000 ms"),
    ("ConnectionResetError", "connection reset by peer"),
    ("ValueError", "invalid product id"),
)
SERVER, CLIENT, INTERNAL_KIND = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL


@dataclass
class _Node:
    service: str
    kind: int
    name: str
    attrs: list[tuple[str, str | int | float | bool]]
    depth: int
    children: list[_Node] = field(default_factory=list)
    span_id: bytes = b""
    start: int = 0
    duration: int = 0


def _value(v: str | int | float | bool) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=v)


def _path(rng: random.Random, route: str) -> str:
    """A concrete URL path for a route template: ids are the unique part of real attribute values."""
    path = route.split(" ", 1)[1]
    return path.replace("{id}", str(rng.randrange(1, 5000))).replace("{userId}", f"u{rng.randrange(10**5)}")


def _server(rng: random.Random, service: str, depth: int) -> _Node:
    route = rng.choice(SERVICES[service][2])
    method = route.split(" ", 1)[0]
    attrs: list[tuple[str, str | int | float | bool]] = [
        ("http.request.method", method),
        ("http.route", route.split(" ", 1)[1]),
        ("http.response.status_code", 200 if method == "GET" else 201),
        ("url.path", _path(rng, route)),
        ("url.scheme", "http"),
        ("server.address", f"{service}.shop.svc"),
        ("server.port", 8080),
        ("network.protocol.version", "1.1"),
        ("client.address", f"10.0.{rng.randrange(4)}.{rng.randrange(2, 250)}"),
        ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)" if depth == 0 else "python-httpx/0.28.1"),
    ]
    return _Node(service, SERVER, route, attrs, depth)


def _call(rng: random.Random, caller: _Node, callee: str) -> _Node:
    """A CLIENT span in ``caller``'s service with the callee's SERVER span as its child."""
    server = _server(rng, callee, caller.depth + 1)
    method = server.name.split(" ", 1)[0]
    attrs: list[tuple[str, str | int | float | bool]] = [
        ("http.request.method", method),
        ("http.response.status_code", server.attrs[2][1]),
        ("url.full", f"http://{callee}.shop.svc:8080{server.attrs[3][1]}"),
        ("url.template", server.attrs[1][1]),
        ("server.address", f"{callee}.shop.svc"),
        ("server.port", 8080),
        ("network.peer.address", f"10.1.{rng.randrange(4)}.{rng.randrange(2, 250)}"),
        ("network.peer.port", 8080),
        ("network.protocol.version", "1.1"),
        ("http.request.resend_count", 0),
    ]
    client = _Node(caller.service, CLIENT, method, attrs, caller.depth, [server])
    caller.children.append(client)
    return server


def _leaf(rng: random.Random, parent: _Node) -> None:
    """A datastore CLIENT span, or an INTERNAL one where the service has no datastore."""
    db = SERVICES[parent.service][1]
    if db is None or rng.random() < 0.25:
        function = rng.choice(INTERNAL)
        attrs: list[tuple[str, str | int | float | bool]] = [
            ("code.function.name", function),
            ("code.namespace", f"shop.{parent.service.replace('-', '_')}.handlers"),
            ("code.filepath", f"/app/{parent.service}/handlers.py"),
            ("code.lineno", 40 + INTERNAL.index(function) * 17),
            ("thread.name", f"worker-{rng.randrange(8)}"),
            ("thread.id", 140000 + rng.randrange(8)),
        ]
        parent.children.append(_Node(parent.service, INTERNAL_KIND, function, attrs, parent.depth))
        return
    operation, collection, text = rng.choice(DB_QUERIES[db])
    attrs = [
        ("db.system", db),
        ("db.namespace", "shop" if db == "postgresql" else "0"),
        ("db.operation.name", operation),
        ("db.collection.name", collection),
        ("db.query.text", text),
        ("server.address", f"{db}.shop.svc"),
        ("server.port", 5432 if db == "postgresql" else 6379),
        ("network.peer.address", f"10.2.0.{3 if db == 'postgresql' else 4}"),
        ("db.response.returned_rows", rng.randrange(0, 20)),
        ("thread.name", f"worker-{rng.randrange(8)}"),
    ]
    name = f"{operation} {collection}" if db == "postgresql" else operation
    parent.children.append(_Node(parent.service, CLIENT, name, attrs, parent.depth))


def _tree(rng: random.Random, n: int) -> _Node:
    """A trace of exactly ``n`` spans rooted at a frontend SERVER span."""
    root = _server(rng, "frontend", 0)
    servers, budget = [root], n - 1
    while budget > 0:
        parent = rng.choice(servers)
        callees = SERVICES[parent.service][0]
        if budget >= 2 and callees and parent.depth < 3 and rng.random() < 0.45:
            servers.append(_call(rng, parent, rng.choice(callees)))
            budget -= 2
        else:
            _leaf(rng, parent)
            budget -= 1
    return root


def _schedule(rng: random.Random, node: _Node, start: int, duration: int) -> None:
    """Times for ``node`` and, nested inside it and one after another, its children."""
    node.start, node.duration, node.span_id = start, duration, rng.randbytes(8)
    if not node.children:
        return
    if node.kind == CLIENT:  # the callee's server span: after the request leaves, before the reply
        lead = duration * rng.uniform(0.02, 0.06)
        _schedule(rng, node.children[0], start + int(lead), int(duration * rng.uniform(0.8, 0.92)))
        return
    slot = duration * 0.9 / len(node.children)
    at = start + duration * 0.05
    for child in node.children:
        _schedule(
            rng, child, int(at + slot * rng.uniform(0.0, 0.1)), max(1000, int(slot * rng.uniform(0.5, 0.85)))
        )
        at += slot


def _walk(node: _Node, parent: bytes) -> list[tuple[_Node, bytes]]:
    out = [(node, parent)]
    for child in node.children:
        out += _walk(child, node.span_id)
    return out


def _add_span(rng: random.Random, spans, node: _Node, trace_id: bytes, parent: bytes) -> None:  # noqa: ANN001
    span = spans.add(
        trace_id=trace_id,
        span_id=node.span_id,
        parent_span_id=parent,
        name=node.name,
        kind=node.kind,
        start_time_unix_nano=node.start,
        end_time_unix_nano=node.start + node.duration,
    )
    span.attributes.extend(KeyValue(key=k, value=_value(v)) for k, v in node.attrs)
    if rng.random() < ERROR_RATE:
        kind, message = rng.choice(EXCEPTIONS)
        span.status.code, span.status.message = 2, message
        event = span.events.add(time_unix_nano=node.start + node.duration // 2, name="exception")
        event.attributes.extend(
            [
                KeyValue(key="exception.type", value=AnyValue(string_value=kind)),
                KeyValue(key="exception.message", value=AnyValue(string_value=message)),
                KeyValue(
                    key="exception.stacktrace",
                    value=AnyValue(
                        string_value=f'Traceback (most recent call last):\n  File "/app/{node.service}/handlers.py", '
                        f"line {rng.randrange(40, 200)}, in handle\n{kind}: {message}"
                    ),
                ),
            ]
        )


def realistic_request(seed: int, spans: int = 512) -> bytes:
    """One serialised ``ExportTraceServiceRequest`` of exactly ``spans`` spans in whole traces.

    Deterministic for a ``seed`` except the timestamps, which fall in the minute before the call.
    """
    rng = random.Random(seed)
    now = time.time_ns()
    resources: dict[tuple[str, int], list[tuple[_Node, bytes, bytes]]] = {}
    left = spans
    while left > 0:
        # 16-24 spans per trace (20 on average); the last one takes what is left.
        size = left if left <= 24 else min(rng.randrange(16, 25), left // 2)
        root = _tree(rng, size)
        _schedule(
            rng, root, now - rng.randrange(10**9, 60 * 10**9), int(min(rng.lognormvariate(17.7, 0.7), 9e9))
        )
        trace_id = rng.randbytes(16)
        for node, parent in _walk(root, b""):
            host = node.span_id[0] % HOSTS
            resources.setdefault((node.service, host), []).append((node, trace_id, parent))
        left -= size
    request = ExportTraceServiceRequest()
    for (service, host), members in resources.items():
        rs = request.resource_spans.add()
        for key, value in (
            ("service.name", service),
            ("service.namespace", "shop"),
            ("service.version", VERSIONS[service]),
            ("host.name", f"{service}-{host}"),
            ("deployment.environment.name", "production"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.version", "1.39.0"),
        ):
            rs.resource.attributes.add(key=key).value.string_value = value
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "opentelemetry.instrumentation.asgi", "0.60b0"
        for node, trace_id, parent in members:
            _add_span(rng, ss.spans, node, trace_id, parent)
    return request.SerializeToString()


def realistic_bodies(n: int, spans: int = 512) -> list[bytes]:
    """``n`` requests of ``spans`` spans each (seeds 0 .. n-1): distinct traces, ids and values."""
    return [realistic_request(seed, spans) for seed in range(n)]
