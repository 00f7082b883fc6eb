"""Tenants in the store: rows carry the tenant they were written for, and a read inside a tenant's
scope sees only that tenant's rows — in raw spans, the trace projection, logs, metrics, the RED
roll-up and the stored service map — whatever the query (store/tenancy.py, migration 0010)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from store import migrations, red, service_map
from store.embedded import EmbeddedBackend
from store.explore import LogSearch, TraceSearch, dependencies, search_logs, search_traces
from store.otlp_writer import OtlpWriter
from store.tenancy import ScopeError, check_tenant, current_tenant, scoped, tenant_scope
from store.traces import get_trace

MINUTE_NS = 60 * 10**9
# Ten minutes ago, on the minute: finished long enough for the service map roll-up to take it.
T0 = (time.time_ns() // MINUTE_NS - 10) * MINUTE_NS
TENANTS = {"acme": 1, "globex": 2}


def traces(tenant_no: int) -> bytes:
    """A trace of frontend -> <tenant>-api: a SERVER root and its SERVER child in another service,
    the child failing; ids differ by tenant."""
    request = ExportTraceServiceRequest()
    for service, span_no, parent_no in (("frontend", 1, 0), (f"api-{tenant_no}", 2, 1)):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = service
        # A payload cannot choose its tenant: this attribute is data, not the row's tenant.
        rs.resource.attributes.add(key="tenant").value.string_value = "globex"
        span = rs.scope_spans.add().spans.add(
            trace_id=tenant_no.to_bytes(16, "big"),
            span_id=(tenant_no * 10 + span_no).to_bytes(8, "big"),
            parent_span_id=(tenant_no * 10 + parent_no).to_bytes(8, "big") if parent_no else b"",
            name=f"GET /{tenant_no}",
            kind=2,
            start_time_unix_nano=T0 + span_no * 10**6,
            end_time_unix_nano=T0 + span_no * 10**6 + 5 * 10**6,
        )
        if parent_no:
            span.status.code = 2
    return request.SerializeToString()


def logs(tenant_no: int) -> bytes:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "frontend"
    record = rl.scope_logs.add().log_records.add(time_unix_nano=T0, severity_number=17)
    record.body.string_value = f"failure of tenant {tenant_no}"
    record.trace_id = tenant_no.to_bytes(16, "big")
    return request.SerializeToString()


def metrics(tenant_no: int) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "frontend"
    metric = rm.scope_metrics.add().metrics.add(name="queue.depth")
    metric.gauge.data_points.add(time_unix_nano=T0, as_int=tenant_no)
    return request.SerializeToString()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    db = EmbeddedBackend(tmp_path_factory.mktemp("tenancy") / "db")
    migrations.migrate(db)
    writer = OtlpWriter(db, [])
    for tenant, number in TENANTS.items():
        writer.write("traces", [traces(number)], f"traces-{tenant}", tenant)
        writer.write("logs", [logs(number)], f"logs-{tenant}", tenant)
        writer.write("metrics", [metrics(number)], f"metrics-{tenant}", tenant)
    writer.write("traces", [traces(3)], "traces-default")  # the default tenant
    service_map.roll_up(db, time.time_ns())
    yield db
    db.close()


def test_rows_carry_the_writers_tenant_not_the_payloads(backend: EmbeddedBackend) -> None:
    rows = backend.query_arrow("SELECT tenant, count() AS n FROM spans GROUP BY tenant ORDER BY tenant")
    assert rows.to_pydict() == {"tenant": ["", "acme", "globex"], "n": [2, 2, 2]}
    expected = {"logs": ["acme", "globex"], "metrics_gauge": ["acme", "globex"]}
    for table in ("logs", "metrics_gauge", "red_1m", "service_edges_1m"):
        found = backend.query_arrow(f"SELECT DISTINCT tenant FROM {table} ORDER BY tenant")
        assert found.column("tenant").to_pylist() == expected.get(table, ["", "acme", "globex"]), table


def test_every_read_in_a_scope_sees_only_its_tenant(backend: EmbeddedBackend) -> None:
    start, end = T0 - MINUTE_NS, T0 + MINUTE_NS
    with tenant_scope("acme"):
        assert current_tenant() == "acme"
        assert [s["service_name"] for s in get_trace(backend, f"{1:032x}")] == ["frontend", "api-1"]
        assert get_trace(backend, f"{2:032x}") == []  # globex's trace: as if it did not exist
        found = search_traces(backend, TraceSearch(start, end, limit=50))
        assert [t["trace_id"] for t in found] == [f"{1:032x}"]
        assert [entry["body"] for entry in search_logs(backend, LogSearch(start, end))] == [
            "failure of tenant 1"
        ]
        assert sorted(s.service for s in red.services_overview(backend, start, end)) == ["api-1", "frontend"]
        assert [(e["caller"], e["callee"]) for e in dependencies(backend, start, end)] == [
            ("frontend", "api-1")
        ]
        values = backend.query_arrow("SELECT value FROM metrics_gauge").column("value").to_pylist()
        assert values == [1.0]
        # A hand-written query with its own SETTINGS and a subquery is scoped as well.
        sql = "SELECT count() AS n FROM (SELECT * FROM spans UNION ALL SELECT * FROM spans) SETTINGS max_threads = 1"
        assert backend.query_arrow(sql).column("n").to_pylist() == [4]
    assert current_tenant() is None
    everyone = search_traces(backend, TraceSearch(start, end, limit=50))
    assert len(everyone) == 3


def test_the_service_map_never_joins_across_tenants(backend: EmbeddedBackend) -> None:
    start, end = T0 - MINUTE_NS, T0 + MINUTE_NS
    edges = {(e["caller"], e["callee"]): e["calls"] for e in dependencies(backend, start, end)}
    assert edges == {("frontend", "api-1"): 1, ("frontend", "api-2"): 1, ("frontend", "api-3"): 1}
    stored = backend.query_arrow(
        "SELECT tenant, callee, sum(calls) AS n FROM service_edges_1m GROUP BY tenant, callee ORDER BY tenant"
    ).to_pydict()
    assert stored == {"tenant": ["", "acme", "globex"], "callee": ["api-3", "api-1", "api-2"], "n": [1, 1, 1]}


def test_a_scope_only_narrows_and_follows_into_threads_it_is_copied_to(backend: EmbeddedBackend) -> None:
    with tenant_scope("globex"):
        with tenant_scope(None):  # an inner "every tenant" keeps the outer scope
            assert current_tenant() == "globex"
        with pytest.raises(ScopeError, match="out of scope"):
            with tenant_scope("acme"):
                pass
        seen: list[object] = []
        context = contextvars.copy_context()
        thread = threading.Thread(target=lambda: seen.append(context.run(current_tenant)))
        thread.start()
        thread.join()
        assert seen == ["globex"]
        assert "additional_table_filters" in scoped("SELECT 1")
    assert scoped("SELECT 1") == "SELECT 1"


def test_tenant_names_are_checked() -> None:
    assert check_tenant("team-a.prod_1") == "team-a.prod_1"
    for bad in ("", "-x", "a b", "x'; DROP TABLE spans", "é", "a" * 65):
        with pytest.raises(ValueError, match="not a tenant name"):
            check_tenant(bad)


def test_rows_written_without_a_tenant_are_the_default_tenants(backend: EmbeddedBackend) -> None:
    """As data stored before migration 0010: ``tenant_scope("")`` sees it, a named tenant does not."""
    with tenant_scope(""):
        assert len(get_trace(backend, f"{3:032x}")) == 2
        assert get_trace(backend, f"{1:032x}") == []
    with tenant_scope("acme"):
        assert get_trace(backend, f"{3:032x}") == []


def test_an_slo_of_a_tenant_counts_only_that_tenants_events(backend: EmbeddedBackend) -> None:
    """Through the RED roll-up and through raw spans: acme's SLO sees acme's frontend request, an SLO
    without a tenant sees the three tenants' ones; a user scoped to globex cannot read acme's SLO."""
    from decimal import Decimal

    from slo import sli
    from slo.model import Slo, SpanSli

    minute_s = T0 // 10**9
    for roll_up in (True, False):
        counts = {}
        for tenant in ("acme", ""):
            slo = Slo("s", "frontend", Decimal(99), SpanSli(bad_latency_ms=1), tenant=tenant)
            found = sli.minute_counts(backend, slo, minute_s, minute_s + 60, roll_up=roll_up)
            counts[tenant] = (int(found[()].total.sum()), int(found[()].bad.sum()))
        assert counts == {"acme": (1, 1), "": (3, 3)}, roll_up
    with tenant_scope("globex"), pytest.raises(ScopeError):
        sli.minute_counts(
            backend, Slo("s", "frontend", Decimal(99), SpanSli(bad_latency_ms=1), tenant="acme"), 0, 60
        )
