"""A user bound to a tenant sees only that tenant's data, on every page and endpoint: the JSON API,
the Jaeger API, search, the service map, SLOs, alerts, incidents and silences; another tenant's
trace is 404, not 403 (its existence is not confirmed).

Two tenants' data arrive the real way, through OTLP/HTTP with ingest tokens pinned to the tenants,
into a real embedded store; both tenants use the same service name ``shop``, each with its own
downstream service (acme: ``postgres``, globex: ``redis``) and its own counts.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import argon2
import httpx
import pytest
from conftest import InProcess, in_process
from fastapi import FastAPI
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.concurrency import run_in_threadpool

from collector.auth import token_entry
from sloscope.app import SloscopeServer
from store.tenancy import current_tenant
from ui.auth import AuthConfig, Authenticator, AuthMiddleware
from ui.users import User

FAST = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORDS = {"ann": "ann-password", "gus": "gus-password", "root": "root-password"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}
HTML = {"Accept": "text/html"}
SCRIPT = {"X-Requested-By": "test"}
NOW = time.time_ns() - 30 * 10**9
#: Per tenant: (number of traces, the downstream service).
TENANTS = {"acme": (5, "postgres"), "globex": (3, "redis")}
CORRELATION = "order-shared-by-both"

SLOS = """apiVersion: sloscope/v1
slos:
  - name: acme-shop
    service: shop
    tenant: acme
    objective: 99
    window: 30d
    sli: {spans: {bad: {error: true}}}
  - name: globex-shop
    service: shop
    tenant: globex
    objective: 99
    window: 30d
    sli: {spans: {bad: {error: true}}}
  - name: everyone-shop
    service: shop
    objective: 99
    window: 30d
    sli: {spans: {bad: {error: true}}}
"""


def trace_id(tenant: str, n: int) -> str:
    return f"{'a' if tenant == 'acme' else 'b'}{n:031x}"


def _traces(tenant: str) -> bytes:
    count, downstream = TENANTS[tenant]
    request = ExportTraceServiceRequest()
    for n in range(count):
        tid = bytes.fromhex(trace_id(tenant, n))
        root_id, child_id = (n * 2 + 1).to_bytes(8, "big"), (n * 2 + 2).to_bytes(8, "big")
        start = NOW + n * 10**6
        for service, span_id, parent, name, kind in (
            ("shop", root_id, b"", f"GET /{tenant}", 2),
            (downstream, child_id, root_id, f"query {tenant}", 2),
        ):
            rs = request.resource_spans.add()
            rs.resource.attributes.add(key="service.name").value.string_value = service
            span = rs.scope_spans.add().spans.add(
                trace_id=tid,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                kind=kind,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 2 * 10**6,
            )
            span.attributes.add(key="correlation.id").value.string_value = CORRELATION
            span.status.code = 2  # every request fails: the SLOs' alerts fire
    return request.SerializeToString()


def _logs(tenant: str) -> bytes:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "shop"
    record = rl.scope_logs.add().log_records.add(time_unix_nano=NOW, severity_number=17)
    record.body.string_value = f"{tenant} log line"
    record.trace_id = bytes.fromhex(trace_id(tenant, 0))
    record.attributes.add(key="correlation.id").value.string_value = CORRELATION
    return request.SerializeToString()


def _metrics(tenant: str) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "shop"
    metric = rm.scope_metrics.add().metrics.add(name=f"{tenant}.queue.depth")
    metric.gauge.data_points.add(time_unix_nano=NOW, as_int=7)
    return request.SerializeToString()


def run_async(coroutine: Any) -> Any:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps a loop running in the
    main thread once a browser test has run in the session."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class World:
    server: InProcess
    incidents: dict[str, str]  # SLO name -> its incident's id

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.api, timeout=20)


def auth(user: str) -> dict[str, str]:
    raw = f"{user}:{PASSWORDS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tenants")
    tokens = {tenant: token_entry(f"{tenant}-ingest", tenant=tenant) for tenant in TENANTS}
    (root / "tokens.yaml").write_text("tokens:\n" + "".join(t.yaml for t in tokens.values()))
    (root / "users.yaml").write_text(
        "users:\n"
        f'  - {{name: ann, role: responder, tenant: acme, password_hash: "{FAST.hash(PASSWORDS["ann"])}"}}\n'
        f'  - {{name: gus, role: responder, tenant: globex, password_hash: "{FAST.hash(PASSWORDS["gus"])}"}}\n'
        f'  - {{name: root, role: admin, password_hash: "{FAST.hash(PASSWORDS["root"])}"}}\n'
    )
    (root / "slos.yaml").write_text(SLOS)
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setattr(SloscopeServer, "_start_scheduler", lambda self: None)  # the test evaluates
        server = stack.enter_context(
            in_process(
                root / "data",
                ingest_tokens_file=str(root / "tokens.yaml"),
                users_file=str(root / "users.yaml"),
                slos=str(root / "slos.yaml"),
            )
        )
        for tenant, entry in tokens.items():
            bearer = {**PROTOBUF, "Authorization": f"Bearer {entry.token}"}
            for signal, body in (
                ("traces", _traces(tenant)),
                ("logs", _logs(tenant)),
                ("metrics", _metrics(tenant)),
            ):
                reply = httpx.post(f"{server.otlp}/v1/{signal}", content=body, headers=bearer, timeout=20)
                assert reply.status_code == 200, reply.text
        server.drain()
        server.server.evaluate_slos(NOW // 10**9 // 60 * 60 + 60)  # the minute after the spans
        with httpx.Client(base_url=server.api, timeout=20) as client:
            found = client.get("/api/v1/incidents", headers=auth("root")).json()["incidents"]
        incidents = {i["slos"][0]: i["id"] for i in found}
        assert {"acme-shop", "globex-shop"} <= set(incidents), found
        yield World(server, incidents)


def _get(client: httpx.Client, user: str, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=auth(user))
    assert response.status_code == 200, (path, response.text)
    return response.json()


def test_the_json_api_answers_with_the_users_tenants_rows_only(world: World) -> None:
    acme_ids = {trace_id("acme", n) for n in range(5)}
    with world.client() as c:
        for user, mine, theirs in (("ann", "acme", "globex"), ("gus", "globex", "acme")):
            count, downstream = TENANTS[mine]
            services = {s["service"] for s in _get(c, user, "/api/v1/services")["services"]}
            assert services == {"shop", downstream}, (user, services)
            found = {t["trace_id"] for t in _get(c, user, "/api/v1/traces", service="shop")["traces"]}
            assert found == {trace_id(mine, n) for n in range(count)}
            assert c.get(f"/api/v1/traces/{trace_id(mine, 0)}", headers=auth(user)).status_code == 200
            other = c.get(f"/api/v1/traces/{trace_id(theirs, 0)}", headers=auth(user))
            assert other.status_code == 404 and "not found" in other.json()["detail"]  # not 403
            assert [lg["body"] for lg in _get(c, user, "/api/v1/logs")["logs"]] == [f"{mine} log line"]
            assert _get(c, user, "/api/v1/logs", q=theirs)["logs"] == []
            correlated = _get(c, user, f"/api/v1/correlations/{CORRELATION}")
            assert {s["trace_id"] for s in correlated["spans"]} == {trace_id(mine, n) for n in range(count)}
            assert [lg["body"] for lg in correlated["logs"]] == [f"{mine} log line"]
            edges = {(e["caller"], e["callee"]) for e in _get(c, user, "/api/v1/dependencies")["edges"]}
            assert edges == {("shop", downstream)}
            assert [m["name"] for m in _get(c, user, "/api/v1/metrics")["metrics"]] == [f"{mine}.queue.depth"]
            series = c.get(f"/api/v1/metrics/{theirs}.queue.depth/series", headers=auth(user))
            assert series.status_code == 404 and "not found" in series.json()["detail"]
            red = _get(c, user, "/api/v1/red", service="shop", step="1m")
            assert sum(p["requests"] for p in red["points"]) == count
            operations = _get(c, user, "/api/v1/services/shop/operations")["operations"]
            assert [o["operation"] for o in operations] == [f"GET /{mine}"]
        # Users without a tenant see both.
        everything = {t["trace_id"] for t in _get(c, "root", "/api/v1/traces", service="shop")["traces"]}
        assert acme_ids < everything and len(everything) == 8
        assert {s["service"] for s in _get(c, "root", "/api/v1/services")["services"]} == {
            "shop",
            "postgres",
            "redis",
        }


def test_the_jaeger_api_answers_with_the_users_tenants_rows_only(world: World) -> None:
    with world.client() as c:
        assert _get(c, "ann", "/jaeger/api/services")["data"] == ["postgres", "shop"]
        found = _get(c, "ann", "/jaeger/api/traces", service="shop")["data"]
        assert {t["traceID"] for t in found} == {trace_id("acme", n) for n in range(5)}
        assert all(p["serviceName"] != "redis" for t in found for p in t["processes"].values())
        other = c.get(f"/jaeger/api/traces/{trace_id('globex', 0)}", headers=auth("ann"))
        assert other.status_code == 404 and other.json()["errors"][0]["msg"] == "trace not found"
        by_id = _get(c, "ann", "/jaeger/api/traces", traceID=[trace_id("globex", 1), trace_id("acme", 1)])
        assert [t["traceID"] for t in by_id["data"]] == [trace_id("acme", 1)]
        assert [e["traceID"] for e in by_id["errors"]] == [trace_id("globex", 1)]
        operations = _get(c, "ann", "/jaeger/api/operations", service="shop")["data"]
        assert [o["name"] for o in operations] == ["GET /acme"]
        links = _get(c, "ann", "/jaeger/api/dependencies")["data"]
        assert [(d["parent"], d["child"], d["callCount"]) for d in links] == [("shop", "postgres", 5)]


def test_the_pages_show_the_users_tenants_data_only(world: World) -> None:
    with world.client() as c:

        def page(path: str, status: int = 200) -> str:
            response = c.get(path, headers={**auth("ann"), **HTML})
            assert response.status_code == status, (path, response.text[:500])
            return response.text

        services = page("/")
        assert 'data-service="postgres"' in services and "redis" not in services
        shop = page("/services/shop?last=1h")
        assert "postgres" in shop and "redis" not in shop and "acme-shop" in shop
        assert "globex-shop" not in shop and "everyone-shop" not in shop
        assert "No such service" in page("/services/redis", 404)
        search = page("/traces?service=shop")
        assert trace_id("acme", 0) in search and trace_id("globex", 0) not in search
        assert "Trace not found" in page(f"/traces/{trace_id('globex', 0)}", 404)
        assert "query acme" in page(f"/traces/{trace_id('acme', 0)}")
        logs = page("/logs")
        assert "acme log line" in logs and "globex log line" not in logs
        correlated = page(f"/correlations/{CORRELATION}")
        assert trace_id("acme", 0) in correlated and trace_id("globex", 0) not in correlated
        slos = page("/slos")
        assert "acme-shop" in slos and "globex-shop" not in slos and "everyone-shop" not in slos
        assert "acme-shop" in page("/slos/acme-shop")
        assert "There is no SLO named &#39;globex-shop&#39; (known: acme-shop)" in page(
            "/slos/globex-shop", 404
        )
        incidents = page("/incidents")
        assert world.incidents["acme-shop"] in incidents and world.incidents["globex-shop"] not in incidents
        page(f"/incidents/{world.incidents['acme-shop']}")
        page(f"/incidents/{world.incidents['globex-shop']}", 404)


def test_slos_alerts_and_incidents_are_the_users_tenants(world: World) -> None:
    acme, globex = world.incidents["acme-shop"], world.incidents["globex-shop"]
    with world.client() as c:
        assert {s["slo"] for s in _get(c, "ann", "/api/v1/slos")["slos"]} == {"acme-shop"}
        assert {s["slo"] for s in _get(c, "root", "/api/v1/slos")["slos"]} == {
            "acme-shop",
            "globex-shop",
            "everyone-shop",
        }
        for path in (
            "/api/v1/slos/globex-shop",
            "/api/v1/slos/everyone-shop",
            "/api/v1/slos/globex-shop/history",
        ):
            missing = c.get(path, headers=auth("ann"))
            assert missing.status_code == 404 and "known: acme-shop" in missing.json()["detail"], path
        # The acme SLO's budget is computed from acme's requests only (the SLI's own tenant scope).
        at = str((NOW // 10**9 // 60 * 60 + 60) * 1000)
        (instance,) = _get(c, "ann", "/api/v1/slos/acme-shop", at=at)["instances"]
        assert (instance["total"], instance["bad"]) == (5, 5)
        totals = {s["slo"]: s["total"] for s in _get(c, "root", "/api/v1/slos", at=at)["slos"]}
        assert totals == {"acme-shop": 5, "globex-shop": 3, "everyone-shop": 8}
        alerts = _get(c, "ann", "/api/v1/alerts")["alerts"]
        assert alerts and {a["slo"] for a in alerts} == {"acme-shop"}
        listed = [i["id"] for i in _get(c, "ann", "/api/v1/incidents")["incidents"]]
        assert acme in listed and globex not in listed
        assert c.get(f"/api/v1/incidents/{globex}", headers=auth("ann")).status_code == 404
        # Acknowledging another tenant's incident: 404 as well, and nothing changes.
        ack = c.post(f"/api/v1/incidents/{globex}/ack", json={"by": "ann"}, headers=auth("ann"))
        assert ack.status_code == 404
        assert _get(c, "root", f"/api/v1/incidents/{globex}")["acknowledged"] is None
        mine = c.post(f"/api/v1/incidents/{acme}/ack", json={"by": "ann"}, headers=auth("ann"))
        assert mine.status_code == 200
        page = c.post(
            f"/incidents/{globex}/ack", data={"by": "ann"}, headers={**auth("ann"), **SCRIPT, **HTML}
        )
        assert page.status_code == 404


def test_silences_are_the_tenants_own(world: World) -> None:
    with world.client() as c:

        def create(user: str, matchers: list[str]) -> httpx.Response:
            return c.post(
                "/api/v1/silences", json={"matchers": matchers, "duration": "1h"}, headers=auth(user)
            )

        theirs = create("root", ["slo = globex-shop"])
        everyone = create("root", ["severity = page"])
        assert theirs.status_code == everyone.status_code == 201
        refused = [create("ann", m) for m in (["slo = globex-shop"], ["severity = page"], ["slo =~ acme-.*"])]
        for response in refused:
            assert response.status_code == 403, response.text
            assert "must pin slo to the tenant's SLOs" in response.json()["detail"]
        mine = create("ann", ["slo = acme-shop", "severity = page"])
        listed = create("ann", ['slo =~ "acme-shop|acme-shop"'])
        assert mine.status_code == listed.status_code == 201, listed.text
        seen = {s["id"] for s in _get(c, "ann", "/api/v1/silences")["silences"]}
        assert seen == {mine.json()["id"], listed.json()["id"]}
        assert {s["id"] for s in _get(c, "gus", "/api/v1/silences")["silences"]} == {theirs.json()["id"]}
        assert len(_get(c, "root", "/api/v1/silences")["silences"]) == 4
        gone = c.delete(f"/api/v1/silences/{theirs.json()['id']}", headers={**auth("ann"), **SCRIPT})
        assert gone.status_code == 404
        still = [s for s in _get(c, "root", "/api/v1/silences")["silences"] if s["id"] == theirs.json()["id"]]
        assert still[0]["active"] is True
        assert (
            c.delete(f"/api/v1/silences/{mine.json()['id']}", headers={**auth("ann"), **SCRIPT}).status_code
            == 200
        )
        # The incident page's Silence form writes a silence of the incident's SLO: the tenant's own.
        form = c.post(
            f"/incidents/{world.incidents['acme-shop']}/silence",
            data={"duration": "1h"},
            headers={**auth("ann"), **SCRIPT},
        )
        assert form.status_code == 303
        shown = _get(c, "ann", "/api/v1/silences")["silences"]  # expired ones are listed too
        assert len(shown) == 3 and {"slo = acme-shop", "severity =~ page|ticket"} in [
            set(x["matchers"]) for x in shown
        ]


def test_the_tenant_scope_reaches_the_handler_and_the_thread_pool() -> None:
    """The middleware's ContextVar is seen by async handlers, sync handlers (which Starlette runs in
    its thread pool) and run_in_threadpool; and it ends with the request."""
    user = User("ann", "viewer", "acme", FAST.hash("pw"))
    app = FastAPI()
    app.add_middleware(AuthMiddleware, auth=Authenticator(AuthConfig(users={"ann": user})))
    seen: dict[str, Any] = {}

    @app.get("/async")
    async def in_loop() -> dict[str, Any]:
        seen["loop"] = threading.current_thread().name
        return {"loop": current_tenant(), "pool": await run_in_threadpool(current_tenant)}

    @app.get("/sync")
    def in_pool() -> dict[str, Any]:
        seen["thread"] = threading.current_thread().name
        return {"tenant": current_tenant()}

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}
            return [await client.get(path, headers=headers) for path in ("/async", "/sync")]

    first, second = run_async(run())
    assert first.json() == {"loop": "acme", "pool": "acme"}
    assert second.json() == {"tenant": "acme"}
    assert seen["thread"] != seen["loop"]  # the sync handler did run in another thread
    assert current_tenant() is None  # the scope ended with the request


def test_a_tenant_cannot_be_widened_by_the_request(world: World) -> None:
    """Parameters or headers naming another tenant change nothing (the tenant is the user's)."""
    with world.client() as c:
        for headers in ({"X-Scope-OrgID": "globex"}, {"X-Tenant": "globex"}):
            found = c.get("/api/v1/traces", params={"service": "shop"}, headers={**auth("ann"), **headers})
            assert {t["trace_id"][0] for t in found.json()["traces"]} == {"a"}
        refused = c.get("/api/v1/traces", params={"service": "shop", "tenant": "globex"}, headers=auth("ann"))
        assert refused.status_code == 400  # an unknown parameter, as always


@pytest.mark.parametrize(
    ("matchers", "pinned"),
    [
        ([("slo", "=", "a")], {"a"}),
        ([("slo", "=~", "a|b\\.c")], {"a", "b.c"}),
        ([("slo", "=~", "acme-shop|acme\\-api")], {"acme-shop", "acme-api"}),
        ([("slo", "=", "a"), ("slo", "=~", "a|b")], {"a"}),  # both must hold
        ([("slo", "=~", "a.*")], None),  # could match another tenant's SLO
        ([("slo", "=~", "a\\d")], None),
        ([("slo", "!=", "b")], None),
        ([("severity", "=", "page")], None),
    ],
)
def test_a_silence_is_pinned_to_slos_only_by_literal_matchers(
    matchers: list[tuple[str, str, str]], pinned: set[str] | None
) -> None:
    from alerts.model import Matcher
    from ui.scoping import silence_slos

    assert silence_slos([Matcher(label, op, value) for label, op, value in matchers]) == pinned  # type: ignore[arg-type]
