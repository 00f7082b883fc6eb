"""RED by ``service.version`` (store/red.py, ``/api/v1/red?group_by=``) over real OTLP ingest into chDB.

The data, SERVER spans of "shop" in the minutes of ``tests.test_red.BASE`` (10-minute aligned, 40 to
50 minutes ago), written as tests/test_red.py writes its spans:

    version     operation  minute  requests  errors
    1.4.2       GET /cart  0       6         1 (status ERROR)
    1.4.2       GET /cart  1       6         0
    1.4.2       GET /home  2       4         2 (HTTP 503)
    1.5.0-rc1   GET /cart  1       3         2 (status ERROR)
    1.5.0-rc1   GET /home  6       1         0
    (none)      GET /cart  7       2         0 (each with a CLIENT child, which is no request)

So shop has 22 requests: 1.4.2 16 (3 errors, share 16/22), 1.5.0-rc1 4 (2 errors, 4/22) and the
requests without service.version 2 (0 errors, 2/22); of GET /cart alone 17: 12, 3 and 2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from store import red
from tests.conftest import in_process
from tests.test_red import BASE, CLIENT, ERROR, MINUTE, MS, PROTOBUF, SERVER, Env, Model, _scope, red_iso

CART, HOME = "GET /cart", "GET /home"
NEW, CANARY, NONE = "1.4.2", "1.5.0-rc1", ""
RANGE = (BASE, BASE + 10 * MINUTE)
#: (version, operation, minute, durations in ms, how many of them, the first ones, are errors, how)
PLAN = [
    (NEW, CART, 0, [10, 11, 12, 13, 14, 15], 1, "status"),
    (NEW, CART, 1, [20, 21, 22, 23, 24, 25], 0, "status"),
    (NEW, HOME, 2, [100, 110, 120, 130], 2, "http"),
    (CANARY, CART, 1, [40, 41, 42], 2, "status"),
    (CANARY, HOME, 6, [300], 0, "status"),
    (NONE, CART, 7, [5, 6], 0, "status"),
]


def _durations(version: str, operation: str | None = None) -> list[float]:
    return [
        ms
        for v, op, _, durations, _, _ in PLAN
        if v == version and operation in (None, op)
        for ms in durations
    ]


def _quantiles(durations: list[float]) -> tuple[float | None, ...]:
    """p50/p95/p99 in ms as store/red.py places them in the Python twin of the view's buckets."""
    buckets = Counter(red.bucket_of(round(ms * MS)) for ms in durations)
    ids = sorted(buckets)
    counts = [buckets[i] for i in ids]
    return tuple(
        None if (ns := red.quantile_ns(ids, counts, q)) is None else round(ns / 1e6, 4)
        for q in (0.5, 0.95, 0.99)
    )


def generate(model: Model) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scopes = {
        version: _scope(request, "shop", **({"service.version": version} if version else {}))
        for version in (NEW, CANARY, NONE)
    }
    for version, operation, minute, durations, errors, how in PLAN:
        for i, ms in enumerate(durations):
            failed = i < errors
            start = BASE + minute * MINUTE + i * 1000 * MS
            attributes: dict[str, Any] = {"http__route": operation.split()[1]}
            if how == "http":
                attributes["http__response__status_code"] = 503 if failed else 200
            status = ERROR if failed and how == "status" else None
            root = model.add(
                scopes[version], "shop", operation, SERVER, start, ms, status=status, **attributes
            )
            if version == NONE:
                model.add(scopes[version], "shop", "GET /stock", CLIENT, start + MS, 1, parent=root)
    # Another service with the same versions: never part of shop's totals or shares.
    other = _scope(request, "other", **{"service.version": NEW})
    for i in range(5):
        model.add(other, "other", CART, SERVER, BASE + i * 1000 * MS, 7, status=ERROR)
    return request


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    model = Model()
    with in_process(tmp_path_factory.mktemp("red-versions")) as server:
        reply = httpx.post(
            f"{server.otlp}/v1/traces", content=generate(model).SerializeToString(), headers=PROTOBUF
        )
        assert reply.status_code == 200, reply.text
        server.drain()
        with httpx.Client(base_url=server.api, timeout=30) as client:
            yield Env(server, model, client)


# -- store/red.py -------------------------------------------------------------------------------------


def test_the_data_is_what_the_plan_says(env: Env) -> None:
    """Guards the hand-computed numbers below: the roll-up holds the plan's requests per version."""
    rows = env.server.rows(
        """SELECT service_version AS v, sum(requests) AS n, sum(errors) AS e FROM red_1m
           WHERE service_name = 'shop' GROUP BY v ORDER BY v"""
    )
    assert [(r["v"], r["n"], r["e"]) for r in rows] == [(NONE, 2, 0), (NEW, 16, 3), (CANARY, 4, 2)]


def test_versions_busiest_first_with_their_share_of_the_service(env: Env) -> None:
    found = red.versions(env.server.backend, "shop", *RANGE)
    assert (found.total, found.requests) == (3, 22)
    assert found.window == red.Window(BASE // 10**9, BASE // 10**9 + 600)
    got = [
        (v.version, v.share, v.stats.requests, v.stats.errors, v.stats.error_ratio) for v in found.versions
    ]
    assert got == [
        (NEW, 16 / 22, 16, 3, 3 / 16),
        (CANARY, 4 / 22, 4, 2, 2 / 4),
        (NONE, 2 / 22, 2, 0, 0.0),
    ]
    assert sum(v.share for v in found.versions) == pytest.approx(1.0)
    for v in found.versions:
        assert (v.stats.rate, v.stats.error_rate) == (v.stats.requests / 600, v.stats.errors / 600)
        assert (v.stats.p50_ms, v.stats.p95_ms, v.stats.p99_ms) == _quantiles(_durations(v.version)), (
            v.version
        )


def test_versions_of_one_operation_share_that_operations_requests(env: Env) -> None:
    found = red.versions(env.server.backend, "shop", *RANGE, operation=CART)
    assert (found.total, found.requests) == (3, 17)
    got = [(v.version, v.share, v.stats.requests, v.stats.errors) for v in found.versions]
    assert got == [(NEW, 12 / 17, 12, 1), (CANARY, 3 / 17, 3, 2), (NONE, 2 / 17, 2, 0)]
    assert found.versions[0].stats.p99_ms == _quantiles(_durations(NEW, CART))[2]
    home = red.versions(env.server.backend, "shop", *RANGE, operation=HOME)
    assert [(v.version, v.share, v.stats.requests) for v in home.versions] == [
        (NEW, 4 / 5, 4),
        (CANARY, 1 / 5, 1),
    ]


def test_a_limit_keeps_the_busiest_and_shares_stay_of_the_whole_service(env: Env) -> None:
    found = red.versions(env.server.backend, "shop", *RANGE, limit=1)
    assert [(v.version, v.share) for v in found.versions] == [(NEW, 16 / 22)]
    assert (found.total, found.requests) == (3, 22)
    with pytest.raises(ValueError, match="limit"):
        red.versions(env.server.backend, "shop", *RANGE, limit=0)


def test_a_range_or_service_without_requests_has_no_versions(env: Env) -> None:
    quiet = red.versions(env.server.backend, "shop", BASE + 8 * MINUTE, BASE + 10 * MINUTE)
    assert (quiet.versions, quiet.total, quiet.requests) == ([], 0, 0)
    assert red.versions(env.server.backend, "no-such-service", *RANGE).versions == []
    assert red.version_series(env.server.backend, "no-such-service", None, *RANGE, MINUTE) == []


def test_version_series_per_minute(env: Env) -> None:
    groups = red.version_series(env.server.backend, "shop", None, *RANGE, MINUTE)
    assert [g.version for g in groups] == [NEW, CANARY, NONE]
    expected = {
        NEW: ({0: 6, 1: 6, 2: 4}, {0: 1, 2: 2}),
        CANARY: ({1: 3, 6: 1}, {1: 2}),
        NONE: ({7: 2}, {}),
    }
    for group in groups:
        series = group.series
        assert (series.step_s, series.window) == (60, red.Window(BASE // 10**9, BASE // 10**9 + 600))
        assert [p.time_s for p in series.points] == list(range(BASE // 10**9, BASE // 10**9 + 600, 60))
        requests, errors = expected[group.version]
        minute = {(p.time_s - BASE // 10**9) // 60: p.stats for p in series.points}
        assert {m: s.requests for m, s in minute.items() if s.requests} == requests, group.version
        assert {m: s.errors for m, s in minute.items() if s.errors} == errors, group.version
        assert all(s.p50_ms is None and s.error_ratio is None for s in minute.values() if not s.requests)
    # The minute of 1.4.2's GET /home: four durations of 100-130 ms, two errors.
    home = groups[0].series.points[2].stats
    assert (home.requests, home.errors, home.rate, home.error_ratio) == (4, 2, 4 / 60, 0.5)
    assert (home.p50_ms, home.p95_ms, home.p99_ms) == _quantiles([100, 110, 120, 130])


def test_version_series_add_up_to_the_ungrouped_series_over_a_widened_range(env: Env) -> None:
    # 2..8 minutes widened to the 5-minute steps [0, 10): groups and series cover the same steps.
    start, end, step = BASE + 2 * MINUTE + 7 * 10**9, BASE + 8 * MINUTE, 5 * MINUTE
    whole = red.red_series(env.server.backend, "shop", None, start, end, step)
    groups = red.version_series(env.server.backend, "shop", None, start, end, step)
    assert whole.window == red.Window(BASE // 10**9, BASE // 10**9 + 600)
    assert all(g.series.window == whole.window for g in groups)
    assert [p.stats.requests for p in whole.points] == [19, 3]
    for i, point in enumerate(whole.points):
        assert sum(g.series.points[i].stats.requests for g in groups) == point.stats.requests
        assert sum(g.series.points[i].stats.errors for g in groups) == point.stats.errors
    assert sum(g.stats.requests for g in groups) == 22 and sum(g.stats.errors for g in groups) == 5
    assert [(g.version, g.stats.requests, g.stats.rate) for g in groups] == [
        (NEW, 16, 16 / 600),
        (CANARY, 4, 4 / 600),
        (NONE, 2, 2 / 600),
    ]


def test_version_series_of_one_version_keeps_its_share_of_the_service(env: Env) -> None:
    [group] = red.version_series(env.server.backend, "shop", None, *RANGE, 5 * MINUTE, version=CANARY)
    assert (group.version, group.share, group.stats.requests, group.stats.errors) == (CANARY, 4 / 22, 4, 2)
    assert [p.stats.requests for p in group.series.points] == [3, 1]
    [none] = red.version_series(env.server.backend, "shop", CART, *RANGE, 5 * MINUTE, version=NONE)
    assert (none.version, none.share, [p.stats.requests for p in none.series.points]) == (
        NONE,
        2 / 17,
        [0, 2],
    )


def test_red_series_and_operations_of_one_version(env: Env) -> None:
    backend = env.server.backend
    series = red.red_series(backend, "shop", None, *RANGE, 5 * MINUTE, version=NEW)
    assert [(p.stats.requests, p.stats.errors) for p in series.points] == [(16, 3), (0, 0)]
    # '' is the group of requests sent without service.version, not "any version".
    series = red.red_series(backend, "shop", None, *RANGE, 5 * MINUTE, version=NONE)
    assert [p.stats.requests for p in series.points] == [0, 2]
    assert [p.stats.requests for p in red.red_series(backend, "shop", CART, *RANGE, 10 * MINUTE).points] == [
        17
    ]
    ops = red.operations(backend, "shop", *RANGE, version=NEW)
    assert [(o.operation, o.kind, o.stats.requests, o.stats.errors) for o in ops] == [
        (CART, "SERVER", 12, 1),
        (HOME, "SERVER", 4, 2),
    ]
    assert ops[1].stats.error_ratio == 0.5 and ops[1].stats.p99_ms == _quantiles(_durations(NEW, HOME))[2]
    ops = red.operations(backend, "shop", *RANGE, version=CANARY)
    assert [(o.operation, o.stats.requests, o.stats.errors) for o in ops] == [(CART, 3, 2), (HOME, 1, 0)]
    assert [
        (o.operation, o.stats.requests) for o in red.operations(backend, "shop", *RANGE, version=NONE)
    ] == [(CART, 2)]
    assert red.operations(backend, "shop", *RANGE, version="9.9.9") == []
    assert sum(o.stats.requests for o in red.operations(backend, "shop", *RANGE)) == 22


# -- HTTP API ------------------------------------------------------------------------------------------


def _params(**extra: Any) -> dict[str, Any]:
    return {"start": str(RANGE[0] // MS), "end": str(RANGE[1] // MS), **extra}


STATS = {"requests", "errors", "rate", "error_rate", "error_ratio", "p50_ms", "p95_ms", "p99_ms"}


def test_group_by_version(env: Env) -> None:
    reply = env.client.get("/api/v1/red", params=_params(service="shop", step="5m", group_by="version"))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"service", "operation", "group_by", "step", "start", "end", "groups"}
    assert (body["service"], body["operation"], body["group_by"], body["step"]) == (
        "shop",
        None,
        "version",
        300,
    )
    assert (body["start"], body["end"]) == (red_iso(RANGE[0]), red_iso(RANGE[1]))
    groups = body["groups"]
    assert all(set(g) == {"version", "share", "points"} | STATS for g in groups)
    got = [(g["version"], g["share"], g["requests"], g["errors"], g["error_ratio"]) for g in groups]
    assert got == [(NEW, 16 / 22, 16, 3, 3 / 16), (CANARY, 4 / 22, 4, 2, 0.5), (NONE, 2 / 22, 2, 0, 0.0)]
    assert [g["rate"] for g in groups] == [16 / 600, 4 / 600, 2 / 600]
    assert [g["error_rate"] for g in groups] == [3 / 600, 2 / 600, 0.0]
    assert [(g["p50_ms"], g["p95_ms"], g["p99_ms"]) for g in groups] == [
        _quantiles(_durations(v)) for v in (NEW, CANARY, NONE)
    ]
    times = [red_iso(RANGE[0]), red_iso(RANGE[0] + 5 * MINUTE)]
    assert all([p["time"] for p in g["points"]] == times for g in groups)
    assert [[(p["requests"], p["errors"]) for p in g["points"]] for g in groups] == [
        [(16, 3), (0, 0)],
        [(3, 2), (1, 0)],
        [(0, 0), (2, 0)],
    ]
    empty = groups[0]["points"][1]
    assert empty == {
        "time": times[1],
        "requests": 0,
        "errors": 0,
        "rate": 0.0,
        "error_rate": 0.0,
    } | dict.fromkeys(("error_ratio", "p50_ms", "p95_ms", "p99_ms"))


def test_group_by_version_totals_equal_the_ungrouped_series(env: Env) -> None:
    for extra in ({}, {"operation": CART}, {"operation": HOME}):
        params = _params(service="shop", step="1m", **extra)
        whole = env.client.get("/api/v1/red", params=params).json()
        grouped = env.client.get("/api/v1/red", params={**params, "group_by": "version"}).json()
        assert grouped["start"] == whole["start"] and grouped["end"] == whole["end"]
        for i, point in enumerate(whole["points"]):
            for key in ("requests", "errors"):
                assert sum(g["points"][i][key] for g in grouped["groups"]) == point[key], (extra, i, key)
        for key in ("requests", "errors"):
            assert sum(g[key] for g in grouped["groups"]) == sum(p[key] for p in whole["points"])
        assert sum(g["share"] for g in grouped["groups"]) == pytest.approx(1.0)
    assert sum(p["requests"] for p in whole["points"]) == 5  # the last: GET /home


def test_group_by_version_of_one_operation_limit_and_version(env: Env) -> None:
    params = _params(service="shop", step="10m", group_by="version")
    body = env.client.get("/api/v1/red", params={**params, "operation": CART}).json()
    assert body["operation"] == CART
    assert [(g["version"], g["share"], g["requests"]) for g in body["groups"]] == [
        (NEW, 12 / 17, 12),
        (CANARY, 3 / 17, 3),
        (NONE, 2 / 17, 2),
    ]
    limited = env.client.get("/api/v1/red", params={**params, "limit": "2"}).json()["groups"]
    assert [(g["version"], g["share"]) for g in limited] == [(NEW, 16 / 22), (CANARY, 4 / 22)]
    one = env.client.get("/api/v1/red", params={**params, "version": CANARY}).json()
    assert one["version"] == CANARY
    assert [(g["version"], g["share"], g["requests"], g["errors"]) for g in one["groups"]] == [
        (CANARY, 4 / 22, 4, 2)
    ]
    nobody = env.client.get("/api/v1/red", params={**params, "service": "no-such-service"}).json()
    assert nobody["groups"] == [] and (nobody["start"], nobody["end"]) == (
        red_iso(RANGE[0]),
        red_iso(RANGE[1]),
    )


def test_version_filters_the_ungrouped_series(env: Env) -> None:
    plain = env.client.get("/api/v1/red", params=_params(service="shop", step="5m")).json()
    assert "version" not in plain and "group_by" not in plain  # the answer from before versions
    assert [p["requests"] for p in plain["points"]] == [19, 3]
    body = env.client.get("/api/v1/red", params=_params(service="shop", step="5m", version=CANARY)).json()
    assert (body["service"], body["operation"], body["version"], body["step"]) == ("shop", None, CANARY, 300)
    assert [(p["requests"], p["errors"]) for p in body["points"]] == [(3, 2), (1, 0)]
    assert body["points"][0]["error_ratio"] == 2 / 3
    none = env.client.get("/api/v1/red", params=_params(service="shop", step="5m", version="")).json()
    assert none["version"] == "" and [p["requests"] for p in none["points"]] == [0, 2]
    cart = env.client.get(
        "/api/v1/red", params=_params(service="shop", step="5m", version=NEW, operation=CART)
    ).json()
    assert [(p["requests"], p["errors"]) for p in cart["points"]] == [(12, 1), (0, 0)]


def test_group_by_operation_within_a_version(env: Env) -> None:
    reply = env.client.get("/api/v1/red", params=_params(service="shop", group_by="operation", version=NEW))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"service", "version", "group_by", "start", "end", "groups"}
    assert (body["service"], body["version"], body["group_by"]) == ("shop", NEW, "operation")
    assert all(set(g) == {"operation", "kind"} | STATS for g in body["groups"])
    got = [(g["operation"], g["kind"], g["requests"], g["errors"], g["error_ratio"]) for g in body["groups"]]
    assert got == [(CART, "SERVER", 12, 1, 1 / 12), (HOME, "SERVER", 4, 2, 0.5)]
    assert body["groups"][0]["rate"] == 12 / 600
    assert (
        body["groups"][1]["p50_ms"],
        body["groups"][1]["p95_ms"],
        body["groups"][1]["p99_ms"],
    ) == _quantiles(_durations(NEW, HOME))
    none = env.client.get(
        "/api/v1/red", params=_params(service="shop", group_by="operation", version="")
    ).json()
    assert [(g["operation"], g["requests"]) for g in none["groups"]] == [(CART, 2)]
    every = env.client.get("/api/v1/red", params=_params(service="shop", group_by="operation")).json()
    assert every["version"] is None
    assert [(g["operation"], g["requests"], g["errors"]) for g in every["groups"]] == [
        (CART, 17, 3),
        (HOME, 5, 2),
    ]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"service": "shop", "group_by": "route"}, "group_by"),
        ({"service": "shop", "group_by": "Version"}, "group_by"),
        ({"service": "shop", "group_by": "version,operation"}, "group_by"),
        ({"service": "shop", "group_by": "operation", "operation": CART}, "operation"),
        ({"service": "shop", "group_by": "version", "limit": "0"}, "limit"),
        ({"service": "shop", "group_by": "version", "step": "30s"}, "whole number of minutes"),
        ({"group_by": "version"}, "service is required"),
    ],
)
def test_bad_grouping_parameters_are_400_naming_the_parameter(env: Env, params: dict, needle: str) -> None:
    reply = env.client.get("/api/v1/red", params=_params(**params))
    assert reply.status_code == 400, reply.text
    assert needle in reply.json()["detail"]


def test_injection_attempts_in_version_find_nothing(env: Env) -> None:
    before = env.server.rows("SELECT sum(requests) AS n FROM red_1m")[0]["n"]
    for evil in ("x' OR 1=1 --", "1.4.2' --", "\\' ; DROP TABLE red_1m; --", "1.4.2\\"):
        for extra in ({"version": evil}, {"version": evil, "group_by": "version"}):
            reply = env.client.get("/api/v1/red", params=_params(service="shop", step="10m", **extra))
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body.get("groups", []) == [] and all(p["requests"] == 0 for p in body.get("points", []))
        ops = env.client.get(
            "/api/v1/red", params=_params(service="shop", group_by="operation", version=evil)
        )
        assert ops.json()["groups"] == []
    assert env.server.rows("SELECT sum(requests) AS n FROM red_1m")[0]["n"] == before
