"""The SLO engine's outer surfaces over a real in-process server: GET /api/v1/slos (now and any past
instant), the stored history, the /metrics gauges, and the same requests carried as spans, logs and
metric counters giving identical answers. Every number is worked out by hand from the stream below.

The stream (also used by tests/test_slo_cli.py): three hours of minutes 0..179 from START_S, service
``shop``, routes /a and /b, SERVER root spans (real SDK), one log record per request, and cumulative
``requests_total``/``errors_total`` counters per route exported at the end of every minute.

    /a: 6 requests a minute; all 6 bad in minutes 30..39 (the burst), 1 bad a minute in 120..179
    /b: 4 requests a minute in 0..119 and 2 in 120..179; all 4 bad in 30..39, 1 a minute in 120..179

So per minute: 10 requests (8 in the third hour); 10 bad in the burst, 2 bad in the third hour.
Totals: /a 1080 requests, 120 bad; /b 600, 100 bad; all 1680, 220 bad.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from slo import evaluator, history
from sloscope.app import SLO_EVALUATION_DELAY_S, evaluation_trigger
from store import migrations, open_backend
from store.backend import Backend
from store.otlp_writer import OtlpWriter
from tests.conftest import InProcess, in_process, wait_until

HOUR_S = 3600
# The stream ends a whole hour at least an hour ago, so "now" sees none of it in its 5m..1h windows
# but all of it in its 6h, 1d, 3d and SLO windows, whatever minute the tests run in.
END_S = (int(time.time()) // HOUR_S - 1) * HOUR_S
START_S = END_S - 3 * HOUR_S
MINUTES = 180
CUMULATIVE = 2


def minute_counts(route: str, minute: int) -> tuple[int, int]:
    """(requests, bad) of ``route`` in ``minute``: the stream of the module docstring."""
    if route == "/a":
        return 6, 6 if 30 <= minute < 40 else 1 if minute >= 120 else 0
    return (2 if minute >= 120 else 4), 4 if 30 <= minute < 40 else 1 if minute >= 120 else 0


def at(minute: int) -> int:
    """The evaluation instant ``minute`` minutes after START_S: it sees minutes 0..minute-1."""
    return START_S + minute * 60


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _requests() -> Iterator[tuple[int, str, int, bool]]:
    """(minute, route, start ns, bad) of every request."""
    for m in range(MINUTES):
        for route in ("/a", "/b"):
            n, bad = minute_counts(route, m)
            for i in range(n):
                offset = (0 if route == "/a" else 30) + i * 5  # distinct seconds inside the minute
                yield m, route, (at(m) + offset) * 10**9 + 1234, i < bad


def span_request() -> bytes:
    """The requests as SERVER root spans, encoded by the real SDK exporter's encoder."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_slo_api")
    for _, route, start_ns, bad in _requests():
        span = tracer.start_span("GET /items", kind=SpanKind.SERVER, start_time=start_ns)
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", 200)
        if bad:
            span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=start_ns + 20_000_000)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def log_request() -> bytes:
    """One record per request: ERROR for the bad ones, INFO for the others; DEBUG noise besides."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "shop"
    scope = rl.scope_logs.add()
    for _, route, start_ns, bad in _requests():
        record = scope.log_records.add(
            time_unix_nano=start_ns,
            severity_number=17 if bad else 9,
            severity_text="ERROR" if bad else "INFO",
        )
        record.body.string_value = "request failed" if bad else "request served"
        record.attributes.add(key="http.route").value.string_value = route
        noise = scope.log_records.add(time_unix_nano=start_ns + 1, severity_number=5, severity_text="DEBUG")
        noise.body.string_value = "cache lookup"
    return request.SerializeToString()


def metric_request() -> bytes:
    """Cumulative counters per route; the point at the end of minute m carries minute m."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "shop"
    sm = rm.scope_metrics.add()
    for name, index in (("requests_total", 0), ("errors_total", 1)):
        metric = sm.metrics.add(name=name, unit="1")
        metric.sum.aggregation_temporality = CUMULATIVE
        metric.sum.is_monotonic = True
        for route in ("/a", "/b"):
            value = 0
            for m in range(MINUTES):
                value += minute_counts(route, m)[index]
                point = metric.sum.data_points.add(
                    start_time_unix_nano=(START_S - 1) * 10**9, time_unix_nano=at(m + 1) * 10**9, as_int=value
                )
                point.attributes.add(key="http.route").value.string_value = route
    return request.SerializeToString()


def write_stream(backend: Backend) -> None:
    """The stream as spans, logs and metrics, through the engine's Protobuf input (as the collector)."""
    writer = OtlpWriter(backend, [])
    writer.write("traces", [span_request()], "slo-api-spans")
    writer.write("logs", [log_request()], "slo-api-logs")
    writer.write("metrics", [metric_request()], "slo-api-metrics")


def prepare_data_dir(data_dir: Path) -> None:
    """A migrated store holding the stream, closed again (chDB: one process per data directory)."""
    store = open_backend(data_dir)  # where `sloscope serve --data-dir` keeps it
    try:
        migrations.migrate(store)
        write_stream(store)
    finally:
        store.close()


# Three SLOs over the whole service (one per source) and three grouped by route (one per source).
SPEC = """\
x-service: &service
  service: shop
  objective: 90
  window: 7d
  alerting:
    rules:
      - {severity: page, long: 1h, short: 5m, factor: 2}
      - {severity: ticket, long: 1d, short: 6h, factor: 1}
x-routes: &routes
  service: shop
  objective: 80
  window: 1d
  group_by: [http.route]
  alerting:
    rules:
      - {severity: page, long: 1h, short: 5m, factor: 2}
      - {severity: ticket, long: 1d, short: 6h, factor: 0.7}
x-logs: &logs
  logs: {total: {severity_min: INFO}, bad: {severity_min: ERROR}}
x-metrics: &metrics
  metrics: {total: requests_total, bad: errors_total}
slos:
  - {<<: *service, name: shop-availability, sli: {spans: {bad: {error: true}}}}
  - {<<: *service, name: shop-logs, sli: *logs}
  - {<<: *service, name: shop-metrics, sli: *metrics}
  - {<<: *routes, name: shop-routes, sli: {spans: {bad: {error: true}}}}
  - {<<: *routes, name: routes-logs, sli: *logs}
  - {<<: *routes, name: routes-metrics, sli: *metrics}
"""
NAMES = ["shop-availability", "shop-logs", "shop-metrics", "shop-routes", "routes-logs", "routes-metrics"]
TRIOS = [NAMES[:3], NAMES[3:]]


def write_spec(directory: Path) -> Path:
    path = directory / "slos.yaml"
    path.write_text(SPEC)
    return path


# -- hand-computed answers ---------------------------------------------------------------------------

# shop-availability (objective 90: b = 0.1, window 7d) at END_S: 1680 requests, 220 bad.
SHOP_AT_END = {
    "total": 1680,
    "bad": 220,
    "sli": 1460 / 1680,
    "budget": 168,  # 0.1 x 1680
    "consumed": 220 / 168,
    "remaining": 1 - 220 / 168,  # overspent: negative, unclamped
    "exhausted": True,
    "time_to_exhaustion_s": 0,
    "burn_rates": {
        "5m": 2.5,  # minutes 175..179: 10 bad of 40 = 25%, / 0.1
        "30m": 2.5,
        "1h": 2.5,
        "2h": 120 / 1080 / 0.1,  # minutes 60..179: 60 x 10 + 60 x 8 requests, 120 bad
        "6h": 220 / 1680 / 0.1,
        "1d": 220 / 1680 / 0.1,
        "3d": 220 / 1680 / 0.1,
        "7d": 220 / 1680 / 0.1,
    },
}
# shop-routes (objective 80: b = 0.2, window 1d) at END_S, per route.
ROUTES_AT_END = {
    "/a": {
        "total": 1080,
        "bad": 120,
        "sli": 960 / 1080,
        "budget": 216,
        "consumed": 120 / 216,
        "remaining": 1 - 120 / 216,
        "exhausted": False,
        # remaining x W / burn(1h) = (4/9) x 86400 / (5/6)
        "time_to_exhaustion_s": 46_080,
        "burn_rates": {
            "5m": 5 / 30 / 0.2,
            "30m": 30 / 180 / 0.2,
            "1h": 60 / 360 / 0.2,
            "2h": 60 / 720 / 0.2,
            "6h": 120 / 1080 / 0.2,
            "1d": 120 / 1080 / 0.2,
            "3d": 120 / 1080 / 0.2,
        },
        "firing": [],  # 1h 0.83 < 2; 1d 0.56 < 0.7
    },
    "/b": {
        "total": 600,
        "bad": 100,
        "sli": 500 / 600,
        "budget": 120,
        "consumed": 100 / 120,
        "remaining": 1 - 100 / 120,
        "exhausted": False,
        "time_to_exhaustion_s": 5_760,  # (1/6) x 86400 / 2.5
        "burn_rates": {
            "5m": 2.5,  # 5 bad of 10
            "30m": 2.5,
            "1h": 2.5,
            "2h": 60 / 360 / 0.2,  # 60 x 4 + 60 x 2 requests
            "6h": 100 / 600 / 0.2,
            "1d": 100 / 600 / 0.2,
            "3d": 100 / 600 / 0.2,
        },
        "firing": ["page", "ticket"],  # 1h and 5m 2.5 > 2; 1d and 6h 0.83 > 0.7
    },
}


def assert_matches(result: dict[str, Any], wanted: dict[str, Any]) -> None:
    """``result`` (one instance's JSON) has ``wanted``'s values; floats to rounding."""
    for key, value in wanted.items():
        if key == "burn_rates" or (isinstance(value, int | float) and not isinstance(value, bool)):
            if key in ("total", "bad"):  # counts are exact
                assert result[key] == value, key
            else:
                assert result[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert result[key] == value, key


# -- the server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """A server started with the spec over a store that already holds the stream, so its start-up
    evaluation sees the data."""
    root = tmp_path_factory.mktemp("slo-api")
    prepare_data_dir(root / "data")
    with in_process(root / "data", slos=str(write_spec(root))) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: InProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api, timeout=30) as c:
        yield c


def get(client: httpx.Client, path: str, **params: object) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def by_group(instances: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["group"].get("http.route", ""): i for i in instances}


def test_every_slo_instance_at_a_past_instant_has_the_hand_computed_budget(client: httpx.Client) -> None:
    body = get(client, "/api/v1/slos", at=rfc3339(END_S))
    assert body["at"] == END_S
    found = [(r["slo"], r["group"]) for r in body["slos"]]
    routes = [{"http.route": "/a"}, {"http.route": "/b"}]
    assert found == [(n, {}) for n in NAMES[:3]] + [(n, g) for n in NAMES[3:] for g in routes]
    results = {(r["slo"], r["group"].get("http.route", "")): r for r in body["slos"]}
    shop = results["shop-availability", ""]
    assert (shop["service"], shop["objective"], shop["window"], shop["error"]) == ("shop", 90.0, "7d", None)
    assert_matches(shop, SHOP_AT_END)
    rules = {r["rule"]: r for r in shop["alert_rules"]}
    assert rules["page 1h/5m"]["firing"] and rules["ticket 1d/6h"]["firing"]
    assert rules["page 1h/5m"]["long_events"] == 480  # the third hour: 60 x 8 requests
    assert shop["firing"] == ["page", "ticket"]
    for route, wanted in ROUTES_AT_END.items():
        instance = results["shop-routes", route]
        assert instance["window"] == "1d" and instance["objective"] == 80.0
        assert_matches(instance, wanted)


def test_one_slo_at_a_past_instant_gives_the_past_answer(client: httpx.Client) -> None:
    # Minute 40, just after the burst, in unix milliseconds and 59 s past the minute (floored).
    body = get(client, "/api/v1/slos/shop-availability", at=str(at(40) * 1000 + 59_000))
    assert body["at"] == at(40) and body["slo"] == "shop-availability"
    [instance] = body["instances"]
    # Minutes 0..39: 400 requests, the burst's 100 bad. 5m: all bad (10 / b); 1h: only 40 minutes of data.
    assert_matches(
        instance,
        {
            "total": 400,
            "bad": 100,
            "sli": 0.75,
            "budget": 40,
            "consumed": 2.5,
            "remaining": -1.5,
            "exhausted": True,
            "burn_rates": {
                "5m": 10,
                "30m": 100 / 300 / 0.1,
                "1h": 2.5,
                "2h": 2.5,
                "6h": 2.5,
                "1d": 2.5,
                "3d": 2.5,
                "7d": 2.5,
            },
        },
    )
    assert instance["firing"] == ["page", "ticket"]
    # Before the burst nothing is bad; RFC 3339 with an offset gives the same instant.
    earlier = datetime.fromtimestamp(at(30), UTC).astimezone().isoformat()
    [quiet] = get(client, "/api/v1/slos/shop-availability", at=earlier)["instances"]
    assert_matches(quiet, {"total": 300, "bad": 0, "sli": 1.0, "consumed": 0.0, "remaining": 1.0})
    assert quiet["burn_rates"]["1h"] == 0 and quiet["time_to_exhaustion_s"] is None
    assert quiet["firing"] == []


def test_a_burn_rate_exactly_at_the_factor_does_not_fire(client: httpx.Client) -> None:
    # Minute 100: 100 bad of 1000 over the ticket's 1d and 6h windows is a burn rate of exactly 1
    # (in floats (100/1000)/(1-0.9) is 1.0000000000000002 and would fire).
    [instance] = get(client, "/api/v1/slos/shop-availability", at=str(at(100) * 1000))["instances"]
    ticket = {r["rule"]: r for r in instance["alert_rules"]}["ticket 1d/6h"]
    assert ticket["long_burn_rate"] == pytest.approx(1) and ticket["short_burn_rate"] == pytest.approx(1)
    assert ticket["firing"] is False and instance["firing"] == []
    [later] = get(client, "/api/v1/slos/shop-availability", at=str(at(99) * 1000))["instances"]
    assert later["firing"] == ["ticket"]  # 100 of 990


def test_now_sees_the_whole_stream_in_its_long_windows_and_none_in_its_short_ones(
    client: httpx.Client,
) -> None:
    body = get(client, "/api/v1/slos")
    now_s = int(time.time())
    assert now_s - 120 <= body["at"] <= now_s and body["at"] % 60 == 0
    results = {(r["slo"], r["group"].get("http.route", "")): r for r in body["slos"]}
    shop = results["shop-availability", ""]
    assert_matches(shop, {k: v for k, v in SHOP_AT_END.items() if k != "burn_rates"})
    assert {w: shop["burn_rates"][w] for w in ("5m", "30m", "1h")} == {"5m": None, "30m": None, "1h": None}
    for w in ("6h", "1d", "3d", "7d"):
        assert shop["burn_rates"][w] == pytest.approx(220 / 1680 / 0.1)
    assert shop["firing"] == ["ticket"]
    routes_b = results["shop-routes", "/b"]
    assert_matches(routes_b, {k: ROUTES_AT_END["/b"][k] for k in ("total", "bad", "sli", "remaining")})
    assert routes_b["time_to_exhaustion_s"] is None  # nothing burns in the last hour
    assert routes_b["firing"] == ["ticket"]


def test_an_unknown_slo_is_404_naming_the_known_ones(client: httpx.Client) -> None:
    for path in ("/api/v1/slos/nope", "/api/v1/slos/nope/history"):
        response = client.get(path)
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert "'nope'" in detail and all(name in detail for name in NAMES), detail


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/v1/slos", {"at": "yesterday"}, "at"),
        ("/api/v1/slos", {"at": "2026-01-01T00:00:00"}, "at"),  # no time zone
        ("/api/v1/slos", {"at": "1" * 30}, "at"),  # unix ms past year 9999
        ("/api/v1/slos", {"at": "1" * 400}, "at"),  # more than a float holds
        ("/api/v1/slos", {"at": "-60000"}, "at"),  # before 1970
        ("/api/v1/slos/shop-routes", {"at": "1970-01-01T12:00:00Z"}, "at"),  # its 3d reach before 1970
        ("/api/v1/slos/shop-routes", {"at": "12:00"}, "at"),
        ("/api/v1/slos/shop-routes/history", {"start": "soon"}, "start"),
        ("/api/v1/slos/shop-routes/history", {"end": "later"}, "end"),
        ("/api/v1/slos/shop-routes/history", {"end": "9" * 400}, "end"),
        ("/api/v1/slos/shop-routes/history", {"group": "http.route=/a"}, "group"),
        ("/api/v1/slos/shop-routes/history", {"group": '["/a"]'}, "group"),
        ("/api/v1/slos/shop-routes/history", {"group": '{"http.route": 1}'}, "group"),
        ("/api/v1/slos/shop-routes/history", {"limit": "0"}, "limit"),
        ("/api/v1/slos/shop-routes/history", {"limit": "ten"}, "limit"),
        ("/api/v1/slos/shop-routes/history", {"limit": "100001"}, "limit"),
        (
            "/api/v1/slos/shop-routes/history",
            {"start": str(at(60) * 1000), "end": str(at(0) * 1000)},
            "start",
        ),
    ],
)
def test_a_bad_parameter_is_400_naming_it(
    client: httpx.Client, path: str, params: dict[str, str], parameter: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(parameter), response.json()["detail"]


def _history(client: httpx.Client, name: str, **params: object) -> list[dict[str, Any]]:
    body = get(client, f"/api/v1/slos/{name}/history", **params)
    assert body["slo"] == name
    return body["evaluations"]


def test_scheduled_evaluations_are_stored_and_read_back_per_group(
    server: InProcess, client: httpx.Client
) -> None:
    # The start-up evaluation has stored one row per instance; one more cycle now. Only the scheduled
    # rows (since END_S + 1h): those of the next test are at the stream's minutes.
    since = rfc3339(END_S + HOUR_S)
    wait_until(lambda: len(_history(client, "shop-routes", start=since)) >= 2)
    server.server.evaluate_slos()
    rows = _history(client, "shop-routes", start=since)
    minutes = sorted({r["at_s"] for r in rows})
    assert 1 <= len(minutes) <= 3 and all(m % 60 == 0 for m in minutes)
    assert [(r["group_labels"], r["at_s"]) for r in rows] == [
        ({"http.route": route}, m) for route in ("/a", "/b") for m in minutes
    ]
    for row in rows:
        wanted = ROUTES_AT_END[row["group_labels"]["http.route"]]
        assert (row["total"], row["bad"], row["error"]) == (wanted["total"], wanted["bad"], None)
        assert row["sli"] == pytest.approx(wanted["sli"]) and row["remaining"] == pytest.approx(
            wanted["remaining"]
        )
        assert "1h" not in row["burn_rates"]  # no events in the last hour: not stored
        assert row["burn_rates"]["1d"] == pytest.approx(wanted["burn_rates"]["1d"])
        assert row["alert_rules"] == {
            "page 1h/5m": False,
            "ticket 1d/6h": row["group_labels"]["http.route"] == "/b",
        }
    only_b = _history(client, "shop-routes", start=since, group=json.dumps({"http.route": "/b"}))
    rows_b = [r for r in rows if r["group_labels"] == {"http.route": "/b"}]
    assert only_b[: len(rows_b)] == rows_b  # (a scheduled cycle in between may add a later row)
    assert all(r["group_labels"] == {"http.route": "/b"} for r in only_b)
    [shop] = wait_until(lambda: _history(client, "shop-availability", start=since, limit=1))
    assert (shop["total"], shop["bad"], shop["group_labels"]) == (1680, 220, {})


def test_history_range_and_limit_over_past_evaluations(server: InProcess, client: httpx.Client) -> None:
    slo = next(s for s in server.server.slos if s.name == "shop-routes")
    for minute in (40, 180):
        history.record(server.backend, evaluator.evaluate_slo(server.backend, slo, at(minute)))
    params = {"start": rfc3339(at(40)), "end": str(at(181) * 1000)}
    rows = _history(client, "shop-routes", **params)
    assert [(r["group_labels"]["http.route"], r["at_s"]) for r in rows] == [
        ("/a", at(40)),
        ("/a", at(180)),
        ("/b", at(40)),
        ("/b", at(180)),
    ]
    # Minute 40: /a 240 requests with the burst's 60 bad, /b 160 with 40; both 25% bad against 20%.
    assert [(r["total"], r["bad"], r["remaining"]) for r in rows if r["at_s"] == at(40)] == [
        (240, 60, pytest.approx(-0.25)),
        (160, 40, pytest.approx(-0.25)),
    ]
    assert [r["remaining"] for r in rows if r["at_s"] == at(180)] == pytest.approx(
        [1 - 120 / 216, 1 - 100 / 120]
    )
    # end is exclusive; limit cuts; group narrows.
    assert [
        r["at_s"] for r in _history(client, "shop-routes", start=params["start"], end=rfc3339(at(180)))
    ] == [
        at(40),
        at(40),
    ]
    assert len(_history(client, "shop-routes", limit=3, **params)) == 3
    only_a = _history(client, "shop-routes", group='{"http.route": "/a"}', **params)
    assert [r["at_s"] for r in only_a] == [at(40), at(180)]
    assert _history(client, "shop-routes", group='{"http.route": "/c"}', **params) == []


def test_a_re_evaluated_minute_replaces_its_stored_row(server: InProcess, client: httpx.Client) -> None:
    slo = next(s for s in server.server.slos if s.name == "shop-availability")
    history.record(server.backend, evaluator.evaluate_slo(server.backend, slo, at(100)))
    # The same minute evaluated again once more data is in (simulated: the results at minute 150).
    later = evaluator.evaluate_slo(server.backend, slo, at(150))
    history.record(server.backend, [dataclasses.replace(r, at_s=at(100)) for r in later])
    rows = _history(client, "shop-availability", start=str(at(100) * 1000), end=str(at(101) * 1000))
    assert [r["total"] for r in rows] == [1200 + 30 * 8]


def test_evaluations_run_on_the_minute_for_any_interval(server: InProcess) -> None:
    def fire_times(interval_s: int, after: datetime) -> list[datetime]:
        trigger, previous, out = evaluation_trigger(interval_s), None, []
        for _ in range(3):
            previous = trigger.get_next_fire_time(previous, after)
            out.append(previous)
            after = previous + timedelta(seconds=1)
        return out

    start = datetime(2026, 3, 1, 0, 50, 30, tzinfo=UTC)
    minute = timedelta(minutes=1)
    delay = timedelta(seconds=SLO_EVALUATION_DELAY_S)
    base = start.replace(second=0)
    assert fire_times(60, start) == [base + k * minute + delay for k in (1, 2, 3)]
    # Seven minutes apart across the hour (a cron */7 would run at 0:56 and 1:00), and two hours.
    seven = fire_times(420, start)
    assert seven == [base + k * minute + delay for k in (5, 12, 19)]
    assert all(t.timestamp() % 420 == SLO_EVALUATION_DELAY_S for t in seven)
    hours = [datetime(2026, 3, 1, h, tzinfo=UTC) + delay for h in (2, 4, 6)]
    assert fire_times(7200, start) == hours
    # The running server's minute job (the start-up run has gone) fires 10 s past a minute.
    jobs = server.server._scheduler.get_jobs()
    [job] = [j for j in jobs if getattr(j.trigger, "interval", None) == timedelta(seconds=60)]
    assert job.next_run_time.second == SLO_EVALUATION_DELAY_S
    assert job.next_run_time - datetime.now(UTC) <= timedelta(seconds=61)


def _samples(client: httpx.Client) -> dict[str, list[Any]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name.startswith("sloscope_slo_"):
            out[family.name] = family.samples
    return out


def _value(samples: list[Any], **labels: str) -> float:
    [found] = [s.value for s in samples if s.labels == labels]
    return found


def test_metrics_export_the_latest_cycle_with_slo_service_and_group_labels(
    server: InProcess, client: httpx.Client
) -> None:
    wait_until(lambda: _samples(client).get("sloscope_slo_sli"))
    server.server.evaluate_slos()
    m = _samples(client)
    shop = {"slo": "shop-availability", "service": "shop"}
    assert _value(m["sloscope_slo_objective"], **shop) == pytest.approx(0.9)
    assert _value(m["sloscope_slo_sli"], **shop) == pytest.approx(1460 / 1680)
    assert _value(m["sloscope_slo_error_budget_remaining"], **shop) == pytest.approx(1 - 220 / 168)
    burn = {
        s.labels["window"]: s.value
        for s in m["sloscope_slo_burn_rate"]
        if s.labels["slo"] == "shop-availability"
    }
    # Windows without events (the stream ended over an hour ago) have no series; 2h depends on the
    # minute (it holds part of the last hour of the stream).
    assert set(burn) - {"2h"} == {"6h", "1d", "3d", "7d"}
    assert [burn[w] for w in ("6h", "1d", "3d", "7d")] == pytest.approx([220 / 1680 / 0.1] * 4)
    firing = m["sloscope_slo_alert_rule_firing"]
    assert _value(firing, **shop, rule="page 1h/5m", severity="page") == 0
    assert _value(firing, **shop, rule="ticket 1d/6h", severity="ticket") == 1
    for route, wanted in ROUTES_AT_END.items():
        labels = {"slo": "shop-routes", "service": "shop", "http_route": route}
        assert _value(m["sloscope_slo_objective"], **labels) == pytest.approx(0.8)
        assert _value(m["sloscope_slo_sli"], **labels) == pytest.approx(wanted["sli"])
        assert _value(m["sloscope_slo_error_budget_remaining"], **labels) == pytest.approx(
            wanted["remaining"]
        )
        assert _value(m["sloscope_slo_burn_rate"], **labels, window="1d") == pytest.approx(
            wanted["burn_rates"]["1d"]
        )
        assert _value(firing, **labels, rule="ticket 1d/6h", severity="ticket") == (route == "/b")
    # Every instance has its series: 3 ungrouped SLOs + 3 grouped ones x 2 routes.
    assert len(m["sloscope_slo_sli"]) == len(m["sloscope_slo_objective"]) == 9


@pytest.mark.parametrize("when", [None, at(40), at(100), at(150), END_S, END_S + 30 * 60])
def test_spans_logs_and_metric_counters_give_identical_results(
    client: httpx.Client, when: int | None
) -> None:
    params = {} if when is None else {"at": str(when * 1000)}
    results = get(client, "/api/v1/slos", **params)["slos"]
    for trio in TRIOS:
        per_source = [
            {
                (r["group"].get("http.route", "")): {k: v for k, v in r.items() if k != "slo"}
                for r in results
                if r["slo"] == name
            }
            for name in trio
        ]
        spans, logs, metrics = per_source
        assert spans and spans == logs == metrics, trio
        for instance in spans.values():
            assert instance["total"] > 0 and instance["error"] is None
    # And the spans' answers are the hand-computed ones at the end of the stream.
    if when == END_S:
        by_name = {(r["slo"], r["group"].get("http.route", "")): r for r in results}
        assert_matches(by_name["shop-metrics", ""], SHOP_AT_END)
        assert_matches(by_name["routes-logs", "/b"], ROUTES_AT_END["/b"])
