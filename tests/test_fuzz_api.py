"""Fuzzing every GET route and query parameter of the UI/API application (JSON API, Jaeger API and
HTML pages) over a real embedded store holding spans, logs, metrics, SLO evaluations, an alert, an
incident and a silence.

The routes come from the application itself and their query parameters from what the handlers
read (``tests/fuzzing_apps.py``), so a route or parameter added later is fuzzed without a change
here. Any exception or 5xx fails; every 4xx must carry a message (JSON ``detail``, Jaeger's
``errors``, or the HTML error page's text). A short seeded run; ``bench/fuzz.py`` runs 100,000.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import fuzzing_apps
from tests.fuzzing import Finding, seeded
from tests.fuzzing_apps import Get


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzing_apps.Api]:
    """The application over a loaded store (module scope: chDB holds one data directory per process)."""
    backend = fuzzing_apps.open_store(tmp_path_factory.mktemp("fuzz-api") / "store")
    try:
        with fuzzing_apps.api(backend) as loaded:
            yield loaded
    finally:
        backend.close()


def _route(api: fuzzing_apps.Api, path: str) -> fuzzing_apps.ApiRoute:
    return next(r for r in api.routes if r.path == path)


def test_routes_and_their_parameters_are_found(api: fuzzing_apps.Api) -> None:
    """Discovery finds the JSON API, the Jaeger API and the pages, and parameters a handler reads
    only once an earlier one is valid (Jaeger's search reads ``limit`` after ``service``)."""
    paths = {r.path for r in api.routes}
    for path in (
        "/api/v1/traces/{trace_id}",
        "/jaeger/api/traces",
        "/slos/{name}",
        "/",
        "/static/{path:path}",
    ):
        assert path in paths
    assert {"service", "operation", "attr", "min_duration_ms", "status", "start", "end", "limit"} <= (
        _route(api, "/api/v1/traces").query
    )
    assert {"service", "tags", "tag", "limit", "minDuration", "maxDuration", "start", "end"} <= (
        _route(api, "/jaeger/api/traces").query
    )
    assert {"agg", "attr", "group_by", "step", "type"} <= _route(
        api, "/api/v1/metrics/{name:path}/series"
    ).query
    assert {"start", "end", "last"} <= _route(api, "/services/{name:path}").query


def test_the_loaded_data_is_served(api: fuzzing_apps.Api) -> None:
    """The fuzzing reaches past the "not found" answers: the known values exist."""
    trace_id = api.known.trace_ids[0]
    assert "q" in _route(api, "/traces/{trace_id}").query  # read only once the trace is found
    for path in (
        f"/api/v1/traces/{trace_id}",
        f"/traces/{trace_id}",
        f"/jaeger/api/traces/{trace_id}",
        f"/api/v1/slos/{api.known.slos[0]}",
        "/api/v1/incidents/incident-1",
        f"/services/{api.known.services[0]}",
        "/api/v1/metrics/cart.requests/series",
    ):
        assert fuzzing_apps.check_get(api.client, Get(path, (), html=False)) == "accepted", path


@seeded(100)
@given(seed=st.integers(0, 2**32 - 1))
def test_any_request_is_answered_without_5xx_and_refused_with_a_message(
    api: fuzzing_apps.Api, seed: int
) -> None:
    fuzzing_apps.check_get(api.client, api.maker(random.Random(seed)))


#: One hostile value per (route, parameter), taken in turn, so every parameter of every route meets one.
HOSTILE = [
    "9" * 400,
    "\ud800",
    "-1",
    "1e400",
    "",
    "2106-02-08T00:00:00Z",
    "\x00",
    "a" * 5000,
    "[]",
    "1000000000000d",
]


def test_every_parameter_of_every_route_meets_a_hostile_value(api: fuzzing_apps.Api) -> None:
    found: list[str] = []
    turn = 0
    for route in api.routes:
        path = route.url(fuzzing_apps.plausible_path(route, api.known, random.Random(0), good=True))
        for name in sorted(route.query) or [""]:
            turn += 1
            params = ((name, HOSTILE[turn % len(HOSTILE)]),) if name else ()
            try:
                fuzzing_apps.check_get(api.client, Get(path, params, html=turn % 2 == 0))
            except Finding as finding:
                found.append(str(finding))
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "path,params,html",
    [
        # Regression (fuzzing): an end in the year 58887 (unix microseconds given as milliseconds)
        # raised ValueError while the services page formatted its period: a 500.
        ("/", (("end", "1796143515000000"),), True),
        ("/services/gateway", (("start", "-1"),), True),
        # Regression (fuzzing): a step of a trillion days widened the RED series' window past every
        # calendar; formatting it raised OSError: a 500.
        ("/api/v1/red", (("service", "gateway"), ("step", "1000000000000d")), False),
        # Regression (fuzzing): an SLO history ending before 1970 reached the store, which refused
        # the negative UInt32 parameter: a 500.
        ("/api/v1/slos/mailer-delivery/history", (("end", "-1"),), False),
    ],
)
def test_regressions_are_refused_with_a_message(
    api: fuzzing_apps.Api, path: str, params: tuple[tuple[str, str], ...], html: bool
) -> None:
    request = Get(path, params, html)
    assert fuzzing_apps.check_get(api.client, request) == "rejected"
    reply = api.client.get(path, params=list(params), headers={"accept": "text/html" if html else "*/*"})
    assert reply.status_code == 400
    message = fuzzing_apps.api_message(reply)
    assert message in (
        "start and end must lie between 1970 and 2106",
        "step: '1000000000000d' is longer than a year",
        "start/end: out of range (1970-01-01 to 2106-02-07; got start=None, end=-1)",
    )
