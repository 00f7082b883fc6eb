"""One evaluation cycle of many SLOs (slo/evaluator.py ``evaluate``) over the real chDB engine: the
SLOs the RED roll-up answers share one statement per tenant (``sql.SPANS_ROLL_UP_MANY``), and every
budget, burn rate and rule state is exactly what evaluating each SLO alone gives, with or without
the schedule's counts cache; errors stay with their SLO."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from slo import evaluator, sli, sql
from slo.counts_cache import CountsCache
from slo.model import DAY_S, Budgeting, Filter, Slo, SpanSli, Window
from store import migrations
from store.backend import StoreError, StoreUnavailable
from store.embedded import EmbeddedBackend
from tests.conftest import id_columns

# A fixed clock (2026-01-01 00:00 UTC) with retention off: nothing depends on when the test runs.
END_S = 1_767_225_600
MINUTES = 90
START_S = END_S - MINUTES * 60
MS = 10**6
# Around the thresholds 100 ms and 300 ms (bounds of red_1m's buckets): on them is good, 1 ns over is bad.
DURATIONS_NS = [20 * MS, 100 * MS, 100 * MS + 1, 250 * MS, 300 * MS, 300 * MS + 1, 1200 * MS]
DAY = Window(rolling_s=DAY_S)


@dataclass(frozen=True)
class Request:
    """One SERVER root span: a request of red_1m."""

    tenant: str
    service: str
    minute: int
    operation: str
    route: str
    environment: str
    status: int  # HTTP status; 503 is an error of a SERVER span
    failed: bool  # status ERROR (with HTTP 200)
    duration_ns: int

    @property
    def error(self) -> bool:
        return self.failed or self.status >= 500


def requests() -> list[Request]:
    """Deterministic traffic of three instances: (default tenant, shop), (default, cart), (acme, shop);
    each with its own rate, error and latency pattern, so that mixing them up changes the answers."""
    out = []
    for t, (tenant, service) in enumerate((("", "shop"), ("", "cart"), ("acme", "shop"))):
        for m in range(MINUTES):
            for i in range(2 + (m * (3 + t) + 2 * t + 1) % 7):
                k = m * 5 + i * 3 + t
                out.append(
                    Request(
                        tenant,
                        service,
                        m,
                        "GET /a" if i % 3 else "POST /b",
                        "/a" if i % 3 else "/b",
                        "canary" if (m + i) % 5 == 0 else "prod",
                        503 if k % (7 + t) == 0 else 200,
                        k % (11 - t) == 0,
                        DURATIONS_NS[(k + t) % len(DURATIONS_NS)],
                    )
                )
    return out


REQUESTS = requests()


def _spans(rows: list[Request]) -> pa.Table:
    n = len(rows)

    def text_map(pairs: list[dict[str, str]]) -> pa.Array:
        return pa.array([list(p.items()) for p in pairs], pa.map_(pa.string(), pa.string()))

    return pa.table(
        {
            "timestamp": pa.array(
                [(START_S + r.minute * 60) * 10**9 + (i % 50) * 10**9 for i, r in enumerate(rows)],
                pa.timestamp("ns", tz="UTC"),
            ),
            **id_columns(n),
            "name": [r.operation for r in rows],
            "kind": ["SERVER"] * n,
            "service_name": [r.service for r in rows],
            "attributes": text_map(
                [{"http.route": r.route, "http.response.status_code": str(r.status)} for r in rows]
            ),
            "resource_attributes": text_map(
                [{"service.name": r.service, "deployment.environment.name": r.environment} for r in rows]
            ),
            "duration": pa.array([r.duration_ns for r in rows], pa.uint64()),
            "status_code": ["ERROR" if r.failed else "UNSET" for r in rows],
            "tenant": [r.tenant for r in rows],
        }
    )


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    store = EmbeddedBackend(tmp_path_factory.mktemp("slo-cycle") / "store")
    migrations.migrate(store)
    migrations.ensure_retention(store, 0)  # keep forever: the fixed clock is in the past
    store.insert_arrow("spans", _spans(REQUESTS))
    yield store
    store.close()


def _slo(
    name: str,
    service: str = "shop",
    tenant: str = "",
    group_by: tuple[str, ...] = (),
    objective: str = "99",
    window: Window = DAY,
    budgeting: Budgeting | None = None,
    **sli_args: Any,
) -> Slo:
    return Slo(
        name,
        service,
        Decimal(objective),
        SpanSli(**sli_args),
        window,
        budgeting or Budgeting(),
        group_by=group_by,
        tenant=tenant,
    )


SLOS = [
    _slo("shop-availability", objective="80", bad_error=True),
    _slo("shop-latency-100", objective="50", bad_latency_ms=100),
    _slo("shop-a-error-or-300", operation="GET /a", bad_error=True, bad_latency_ms=300),
    _slo("shop-route-b", filters=(Filter("http.route", "=", "/b"),), bad_error=True),
    _slo(
        "shop-canary-5xx",
        filters=(Filter("deployment.environment.name", "in", ("canary",)),),
        bad_status=(Filter("http.response.status_code", ">=", 500),),
    ),
    _slo(
        "shop-latency-by-route",
        group_by=("http.route",),
        budgeting=Budgeting("timeslices", 5 * 60, Fraction(1, 2)),
        bad_latency_ms=100,
    ),
    _slo("cart-availability-by-env", "cart", group_by=("deployment.environment.name",), bad_error=True),
    _slo(
        "cart-latency-300-not-b",
        "cart",
        objective="75",
        window=Window(rolling_s=7 * DAY_S),
        filters=(Filter("http.route", "!=", "/b"),),
        bad_latency_ms=300,
    ),
    _slo("acme-shop-availability", tenant="acme", objective="90", bad_error=True),
    _slo("acme-shop-latency-by-route", tenant="acme", group_by=("http.route",), bad_latency_ms=100),
    # Read from raw spans (red_1m has no such attribute), alone, amid the batch.
    _slo("shop-raw-filter", filters=(Filter("customer", "=", "x"),), bad_error=True),
    _slo("ghost-availability", "ghost", bad_error=True),  # no data: one instance, no events
    _slo("bad-operator", filters=(Filter("http.route", "~", "/a"),), bad_error=True),  # its own error
]


def _alone(backend: EmbeddedBackend, slos: list[Slo], at_s: int) -> list[dict[str, Any]]:
    return [evaluator.as_dict(r) for slo in slos for r in evaluator.evaluate_slo(backend, slo, at_s)]


def _dicts(results: list[evaluator.InstanceResult]) -> list[dict[str, Any]]:
    return [evaluator.as_dict(r) for r in results]


def test_the_batched_cycle_gives_what_each_slo_gives_alone(backend: EmbeddedBackend) -> None:
    for at_s in (END_S - 45 * 60, END_S, END_S + 3600):
        assert _dicts(evaluator.evaluate(backend, SLOS, at_s)) == _alone(backend, SLOS, at_s)


def test_the_batched_cycle_matches_the_hand_counts(backend: EmbeddedBackend) -> None:
    results = {(r.slo.name, r.group): r for r in evaluator.evaluate(backend, SLOS, END_S)}

    def check(name: str, keep: Any, bad: Any, group: tuple[tuple[str, str], ...] = ()) -> None:
        chosen = [r for r in REQUESTS if keep(r)]
        evaluation = results[(name, group)].evaluation
        assert evaluation is not None, name
        assert (evaluation.total, evaluation.bad) == (len(chosen), sum(1 for r in chosen if bad(r))), name

    # An SLO without a tenant counts every tenant's events; one of a tenant only that tenant's.
    def shop(r: Request) -> bool:
        return r.service == "shop"

    def cart(r: Request) -> bool:
        return (r.tenant, r.service) == ("", "cart")

    def acme(r: Request) -> bool:
        return (r.tenant, r.service) == ("acme", "shop")

    check("shop-availability", shop, lambda r: r.error)
    check("shop-latency-100", shop, lambda r: r.duration_ns > 100 * MS)
    check(
        "shop-a-error-or-300",
        lambda r: shop(r) and r.operation == "GET /a",
        lambda r: r.error or r.duration_ns > 300 * MS,
    )
    check("shop-route-b", lambda r: shop(r) and r.route == "/b", lambda r: r.error)
    check("shop-canary-5xx", lambda r: shop(r) and r.environment == "canary", lambda r: r.status >= 500)
    for route in ("/a", "/b"):
        check(
            "shop-latency-by-route",
            lambda r, route=route: shop(r) and r.route == route,
            lambda r: r.duration_ns > 100 * MS,
            (("http.route", route),),
        )
        check(
            "acme-shop-latency-by-route",
            lambda r, route=route: acme(r) and r.route == route,
            lambda r: r.duration_ns > 100 * MS,
            (("http.route", route),),
        )
    for env in ("canary", "prod"):
        check(
            "cart-availability-by-env",
            lambda r, env=env: cart(r) and r.environment == env,
            lambda r: r.error,
            (("deployment.environment.name", env),),
        )
    check("cart-latency-300-not-b", lambda r: cart(r) and r.route != "/b", lambda r: r.duration_ns > 300 * MS)
    check("acme-shop-availability", acme, lambda r: r.error)
    check("shop-raw-filter", lambda r: False, lambda r: False)
    check("ghost-availability", lambda r: False, lambda r: False)
    assert "unknown operator" in results[("bad-operator", ())].error
    # The tenant's SLO reads a part of what the SLO of the same service without a tenant reads.
    shop_total = results[("shop-availability", ())].evaluation
    acme_total = results[("acme-shop-availability", ())].evaluation
    assert shop_total is not None and acme_total is not None and 0 < acme_total.total < shop_total.total


def test_many_reads_give_the_counts_of_each_read_alone_over_its_own_range(backend: EmbeddedBackend) -> None:
    reads = [
        (slo, START_S - 60 * (n % 4) * 15, END_S - 60 * (n % 3) * 20)
        for n, slo in enumerate(SLOS)
        if slo.name != "bad-operator"
    ]
    for (slo, start_s, end_s), many in zip(reads, sli.minute_counts_many(backend, reads), strict=True):
        assert not isinstance(many, Exception), many
        alone = sli.minute_counts(backend, slo, start_s, end_s)
        assert sorted(many) == sorted(alone), slo.name
        for key, counts in alone.items():
            assert many[key].start_s == counts.start_s
            assert np.array_equal(many[key].total, counts.total), (slo.name, key)
            assert np.array_equal(many[key].bad, counts.bad), (slo.name, key)


def test_the_scheduled_cycle_with_its_cache_gives_what_each_slo_gives_alone(backend: EmbeddedBackend) -> None:
    cache = CountsCache(refresh_s=300, full_every_s=3600)
    evaluator.evaluate(backend, SLOS, END_S - 30 * 60, cache)
    full_reads = 0
    for minute in range(-29, 31, 10):  # through the end of the traffic, within an hour of the first
        at_s = END_S + minute * 60
        before = {name: entry.full_at_s for name, entry in cache._entries.items()}
        assert _dicts(evaluator.evaluate(backend, SLOS, at_s, cache)) == _alone(backend, SLOS, at_s)
        # Only the SLOs whose hour turned are read in full again; the others read the newest minutes.
        again = sum(cache._entries[name].full_at_s != at for name, at in before.items())
        assert again < len(before)
        full_reads += again
    assert full_reads <= len(SLOS)  # each at most once in the hour


class _FailingBatch:
    """The backend, but the batched statement fails (e.g. a memory limit) or the store is gone."""

    def __init__(self, backend: EmbeddedBackend, error: Exception) -> None:
        self.backend, self.error = backend, error

    def query_arrow(self, statement: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        if statement == sql.SPANS_ROLL_UP_MANY:
            raise self.error
        return self.backend.query_arrow(statement, params)


def test_a_failed_batch_is_read_one_slo_at_a_time(backend: EmbeddedBackend) -> None:
    failing = _FailingBatch(backend, StoreError("memory limit exceeded"))
    assert _dicts(evaluator.evaluate(failing, SLOS, END_S)) == _alone(backend, SLOS, END_S)  # type: ignore[arg-type]


def test_an_unreachable_store_stops_the_cycle(backend: EmbeddedBackend) -> None:
    with pytest.raises(StoreUnavailable):
        evaluator.evaluate(_FailingBatch(backend, StoreUnavailable("gone")), SLOS, END_S)  # type: ignore[arg-type]


class _Counting:
    """The backend, counting the statements it runs."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend, self.statements = backend, []  # type: list[str]

    def query_arrow(self, statement: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        self.statements.append(statement)
        return self.backend.query_arrow(statement, params)


def test_roll_up_slos_share_one_statement_per_tenant(backend: EmbeddedBackend) -> None:
    counting = _Counting(backend)
    evaluator.evaluate(counting, SLOS, END_S)  # type: ignore[arg-type]
    assert counting.statements.count(sql.SPANS_ROLL_UP_MANY) == 2  # the default tenant's and acme's
    assert sql.SPANS_ROLL_UP not in counting.statements
    assert counting.statements.count(sql.SPANS_RAW) == 1  # the SLO red_1m cannot answer


def test_the_previous_period_of_many_slos_is_what_each_gives_alone(backend: EmbeddedBackend) -> None:
    at_s = END_S + DAY_S + 600  # the previous day-long window holds the traffic
    slos = [*SLOS, _slo("shop-hourly", objective="90", window=Window(rolling_s=3600), bad_error=True)]
    many = _dicts(evaluator.evaluate_period(backend, slos, at_s, "previous"))
    alone = [evaluator.as_dict(r) for slo in slos for r in evaluator.evaluate_previous_slo(backend, slo, at_s)]
    assert many == alone
    assert any(r["total"] for r in many if r["error"] is None)


def test_full_reads_of_the_cache_are_spread_over_the_hour() -> None:
    """Each SLO is read in full once an hour, at its own minute: a schedule of 100 SLOs re-reads a
    few of them in a cycle, never all of them at once (that cycle would cost a cold one)."""
    cache = CountsCache(refresh_s=300, full_every_s=3600)
    slos = [_slo(f"slo-{i}") for i in range(100)]
    start = 1_700_000_000 // 60 * 60
    last_full = {slo.name: start for slo in slos}
    per_cycle = []
    for minute in range(1, 3 * 60 + 1):
        at = start + minute * 60
        due = [slo for slo in slos if cache._full_read_due(slo, last_full[slo.name], at)]
        for slo in due:
            last_full[slo.name] = at
        per_cycle.append(len(due))
    assert sum(per_cycle) == 300  # each SLO once an hour, for three hours
    assert max(per_cycle) <= 10
    assert sum(n > 0 for n in per_cycle) >= 120  # spread over most minutes of each hour
