"""Metrics API (/api/v1/metrics...): known answers for rates, resets, gauges and histogram quantiles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.conftest import InProcess, in_process

MINUTE = 60 * 10**9
SECOND = 10**9
# Everything happens within the last hour; BASE is a multiple of 10 minutes, 30 to 40 minutes ago.
BASE = time.time_ns() // (10 * MINUTE) * (10 * MINUTE) - 30 * MINUTE
DELTA, CUMULATIVE = 1, 2


def ms(ns: int) -> int:
    return ns // 10**6


class Server:
    def __init__(self, running: InProcess, api: str) -> None:
        self.running = running
        self.api = api

    def get(self, path: str, params: Any = None) -> httpx.Response:
        return httpx.get(self.api + path, params=params, timeout=30)

    def series(self, name: str, **params: Any) -> dict[str, Any]:
        params.setdefault("start", ms(BASE))
        params.setdefault("end", ms(BASE + 5 * MINUTE))
        params.setdefault("step", "1m")
        reply = self.get(f"/api/v1/metrics/{quote(name, safe='')}/series", params)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def points(self, name: str, **params: Any) -> dict[int, float]:
        """{minutes after BASE: value} of the single series."""
        body = self.series(name, **params)
        assert len(body["series"]) == 1, body
        return {(t - ms(BASE)) // 60_000: v for t, v in body["series"][0]["points"]}


def export(otlp: str, service: str, fill: Any) -> None:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    rm.resource.attributes.add(key="host.name").value.string_value = "h1"
    fill(rm.scope_metrics.add())
    reply = httpx.post(
        f"{otlp}/v1/metrics",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert reply.status_code == 200, reply.text


def attrs(point: Any, **values: str) -> None:
    for key, value in values.items():
        point.attributes.add(key=key).value.string_value = value


def counter_points(
    metric: Any, temporality: int, values: list[float], starts: list[int] | None = None, **labels: str
) -> None:
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = True
    for i, value in enumerate(values):
        t = BASE + i * MINUTE
        if temporality == DELTA:
            start = t - MINUTE
        else:
            start = starts[i] if starts else BASE - SECOND
        p = metric.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=t, as_double=value)
        attrs(p, **labels)


def fill_all(sm: metrics_pb2.ScopeMetrics) -> None:
    # 0, 10, 20, 5 (the value dropped: reset), 15 -> increases 10, 10, 5, 10.
    counter_points(sm.metrics.add(name="c.cumulative", unit="1"), CUMULATIVE, [0, 10, 20, 5, 15], route="/a")
    # The same increases as deltas.
    counter_points(sm.metrics.add(name="c.delta", unit="1"), DELTA, [0, 10, 10, 5, 10], route="/a")
    # A restart seen only in the start time (the value did not drop): 0, 10, 20, 25*, 30 -> 10, 10, 25, 5.
    restart = BASE + 2 * MINUTE + 30 * SECOND
    counter_points(
        sm.metrics.add(name="c.restart"),
        CUMULATIVE,
        [0, 10, 20, 25, 30],
        starts=[BASE - SECOND] * 3 + [restart] * 2,
        route="/a",
    )
    # Two routes and two methods, for filters and grouping.
    for route, method, scale in (("/a", "GET", 1), ("/b", "GET", 2), ("/b", "POST", 4)):
        values = [scale * 60 * i for i in range(5)]  # rate: scale per second
        counter_points(sm.metrics.add(name="c.routes"), CUMULATIVE, values, route=route, method=method)
    # A stream that started long before the range: its first point is only a baseline.
    old = sm.metrics.add(name="c.old")
    counter_points(old, CUMULATIVE, [1000, 1060, 1120], starts=[BASE - 3600 * SECOND] * 3)

    gauge = sm.metrics.add(name="g.temp", unit="Cel")
    for offset, value in ((0, 1), (20, 5), (40, 3), (60, 10), (80, 20)):
        p = gauge.gauge.data_points.add(time_unix_nano=BASE + offset * SECOND, as_double=value)
        attrs(p, room="x")
    updown = sm.metrics.add(name="s.inflight")
    updown.sum.aggregation_temporality = CUMULATIVE
    updown.sum.is_monotonic = False
    for i, value in enumerate([5, -2, 7]):
        updown.sum.data_points.add(
            start_time_unix_nano=BASE - SECOND, time_unix_nano=BASE + i * MINUTE, as_int=value
        )

    hist = sm.metrics.add(name="h.delta", unit="ms")
    hist.histogram.aggregation_temporality = DELTA
    for i, counts in enumerate(([2, 4, 4, 0], [0, 0, 0, 5])):
        hist.histogram.data_points.add(
            start_time_unix_nano=BASE + (i - 1) * MINUTE,
            time_unix_nano=BASE + i * MINUTE,
            count=sum(counts),
            sum=50.0 * (i + 1),
            bucket_counts=counts,
            explicit_bounds=[1, 5, 10],
        )
    # Cumulative with a reset at minute 2 (the count went down).
    hist = sm.metrics.add(name="h.cumulative", unit="ms")
    hist.histogram.aggregation_temporality = CUMULATIVE
    for i, (counts, total) in enumerate(
        (([1, 1, 0, 0], 4.0), ([2, 4, 4, 0], 40.0), ([0, 1, 0, 0], 3.0), ([0, 3, 2, 0], 23.0))
    ):
        hist.histogram.data_points.add(
            start_time_unix_nano=BASE - SECOND,
            time_unix_nano=BASE + i * MINUTE,
            count=sum(counts),
            sum=total,
            bucket_counts=counts,
            explicit_bounds=[1, 5, 10],
        )


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with in_process(tmp_path_factory.mktemp("metrics-api")) as running:
        api = running.api
        export(running.otlp, "shop", fill_all)
        running.drain()
        yield Server(running, api)


# -- monotonic sums --------------------------------------------------------------------------------


def test_cumulative_counter_with_reset(srv: Server) -> None:
    assert srv.points("c.cumulative", agg="increase") == {0: 0, 1: 10, 2: 10, 3: 5, 4: 10}
    body = srv.series("c.cumulative")
    assert body["agg"] == "rate" and body["temporality"] == "cumulative" and body["monotonic"] is True
    assert [v for _, v in body["series"][0]["points"]] == pytest.approx(
        [0, 10 / 60, 10 / 60, 5 / 60, 10 / 60]
    )
    assert body["series"][0]["labels"] == {"service.name": "shop", "route": "/a"}


def test_delta_counter_gives_the_same_rate(srv: Server) -> None:
    assert srv.points("c.delta") == srv.points("c.cumulative")
    assert srv.series("c.delta")["temporality"] == "delta"


def test_restart_seen_in_start_time(srv: Server) -> None:
    assert srv.points("c.restart", agg="increase") == {0: 0, 1: 10, 2: 10, 3: 25, 4: 5}


def test_previous_point_before_the_range_is_the_baseline(srv: Server) -> None:
    # The range starts at minute 2: its increase still comes from the point at minute 1.
    assert srv.points("c.cumulative", agg="increase", start=ms(BASE + 2 * MINUTE)) == {2: 10, 3: 5, 4: 10}
    # A stream that started before what was read: its first point has no increase of its own.
    assert srv.points("c.old", agg="increase") == {1: 60, 2: 60}


def test_wide_step_sums_increases(srv: Server) -> None:
    body = srv.series("c.cumulative", agg="increase", step="10m", end=ms(BASE + 10 * MINUTE))
    assert sum(v for _, v in body["series"][0]["points"]) == 35


def test_filters_and_grouping(srv: Server) -> None:
    everything = srv.series("c.routes")
    assert [s["labels"] for s in everything["series"]] == [
        {"method": "GET", "route": "/a", "service.name": "shop"},
        {"method": "GET", "route": "/b", "service.name": "shop"},
        {"method": "POST", "route": "/b", "service.name": "shop"},
    ]
    assert srv.points("c.routes", attr=["route=/b", "method=POST"]) == {0: 0, 1: 4, 2: 4, 3: 4, 4: 4}
    by_route = srv.series("c.routes", group_by="route")
    assert {s["labels"]["route"]: s["points"][-1][1] for s in by_route["series"]} == {"/a": 1, "/b": 6}
    # A resource attribute groups too; service filter.
    by_host = srv.series("c.routes", group_by="host.name", service="shop")
    assert [(s["labels"], s["points"][-1][1]) for s in by_host["series"]] == [({"host.name": "h1"}, 7)]
    assert srv.get("/api/v1/metrics/c.routes/series", {"service": "other"}).status_code == 404
    limited = srv.series("c.routes", limit="2")
    assert len(limited["series"]) == 2 and limited["truncated"] is True


# -- gauges and non-monotonic sums -----------------------------------------------------------------


def test_gauge_aggregations(srv: Server) -> None:
    assert srv.points("g.temp") == {0: 3, 1: 15}
    assert srv.points("g.temp", agg="min") == {0: 1, 1: 10}
    assert srv.points("g.temp", agg="max") == {0: 5, 1: 20}
    assert srv.points("g.temp", agg="last") == {0: 3, 1: 20}
    assert srv.points("g.temp", step="2m", agg="avg") == {0: 39 / 5}
    assert srv.points("s.inflight", agg="last") == {0: 5, 1: -2, 2: 7}


# -- histograms ------------------------------------------------------------------------------------


def test_histogram_quantiles_interpolate(srv: Server) -> None:
    # Buckets (0,1] 2, (1,5] 4, (5,10] 4: rank 5 lies 3/4 into (1,5]; rank 9.5 7/8 into (5,10].
    assert srv.points("h.delta", agg="p50") == {0: 4.0, 1: 10.0}  # minute 1: all in +Inf
    assert srv.points("h.delta", agg="p95")[0] == pytest.approx(9.375)
    assert srv.points("h.delta", agg="quantile:0.1")[0] == pytest.approx(0.5)
    assert srv.points("h.delta", agg="count") == {0: 10, 1: 5}
    assert srv.points("h.delta", agg="avg") == {0: 5, 1: 20}
    assert srv.points("h.delta", agg="rate") == {0: 10 / 60, 1: 5 / 60}


def test_cumulative_histogram_with_reset(srv: Server) -> None:
    # Increases per minute: [1,1,0,0] (new stream), [1,3,4,0], reset -> [0,1,0,0], [0,2,2,0].
    assert srv.points("h.cumulative", agg="count") == {0: 2, 1: 8, 2: 1, 3: 4}
    assert srv.points("h.cumulative", agg="p50") == pytest.approx({0: 1.0, 1: 5.0, 2: 3.0, 3: 5.0})
    assert srv.points("h.cumulative", agg="p95")[3] == pytest.approx(9.5)
    assert srv.points("h.cumulative", agg="avg") == pytest.approx({0: 2.0, 1: 4.5, 2: 3.0, 3: 5.0})


# -- listing ---------------------------------------------------------------------------------------


def test_list_metrics(srv: Server) -> None:
    reply = srv.get("/api/v1/metrics", {"start": ms(BASE - MINUTE), "end": ms(BASE + 10 * MINUTE)})
    assert reply.status_code == 200, reply.text
    found = {m["name"]: m for m in reply.json()["metrics"]}
    assert found["c.routes"] == {
        "name": "c.routes",
        "type": "sum",
        "unit": "",
        "description": "",
        "services": ["shop"],
        "series": 3,
        "monotonic": True,
        "temporality": "cumulative",
    }
    assert found["g.temp"]["type"] == "gauge" and found["g.temp"]["unit"] == "Cel"
    assert found["h.delta"]["type"] == "histogram"
    assert found["s.inflight"]["monotonic"] is False
    short = srv.get("/api/v1/metrics", {"limit": "2"}).json()
    assert len(short["metrics"]) == 2 and short["truncated"] is True
    assert srv.get("/api/v1/metrics", {"service": "nobody"}).json()["metrics"] == []
    assert srv.get("/api/v1/metrics", {"limit": "x"}).status_code == 400
    assert srv.get("/api/v1/metrics", {"end": "99999999999999999999"}).status_code == 400


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"agg": "median"}, "agg"),
        ({"agg": "quantile:1.5"}, "quantile"),
        ({"agg": "avg"}, None),  # allowed on counters (raw values)
        ({"step": "5x"}, "step"),
        ({"step": "1s", "start": "0"}, "step"),
        ({"attr": "novalue"}, "attr"),
        ({"attr": "=x"}, "attr"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-01-01T00:00:00"}, "time zone"),
        ({"start": "-5"}, "1970"),
        ({"end": "99999999999999999999"}, "2200"),
        ({"start": "5", "end": "4"}, "before"),
        ({"limit": "0"}, "limit"),
        ({"bogus": "1"}, "bogus"),
        ({"type": "nope"}, "type"),
    ],
)
def test_bad_parameters(srv: Server, params: dict[str, str], needle: str | None) -> None:
    params = {"start": ms(BASE), "end": ms(BASE + 5 * MINUTE), **params}
    reply = srv.get("/api/v1/metrics/c.cumulative/series", params)
    if needle is None:
        assert reply.status_code == 200
        return
    assert reply.status_code == 400, reply.text
    assert needle in reply.json()["detail"]


def test_agg_must_fit_the_type(srv: Server) -> None:
    reply = srv.get("/api/v1/metrics/g.temp/series", {"agg": "rate"})
    assert reply.status_code == 400 and "gauge" in reply.json()["detail"]
    reply = srv.get("/api/v1/metrics/h.delta/series", {"agg": "last"})
    assert reply.status_code == 400


def test_unknown_metric_is_404(srv: Server) -> None:
    reply = srv.get("/api/v1/metrics/no.such.metric/series")
    assert reply.status_code == 404 and "no.such.metric" in reply.json()["detail"]
    # Known, but nothing in the range: an empty answer.
    assert (
        srv.series("c.cumulative", start=ms(BASE - 20 * MINUTE), end=ms(BASE - 15 * MINUTE))["series"] == []
    )


def test_injection_attempts_change_nothing(srv: Server) -> None:
    def counts() -> list[int]:
        return [
            srv.running.rows(f"SELECT count() AS n FROM {table}")[0]["n"]
            for table in ("metrics_sum", "metrics_gauge", "metrics_histogram")
        ]

    before = counts()
    evil = "x') OR 1=1; DROP TABLE metrics_sum; --"
    assert srv.get(f"/api/v1/metrics/{quote(evil, safe='')}/series").status_code == 404
    assert srv.series("c.routes", attr=f"route={evil}")["series"] == []
    assert srv.series("c.routes", attr=f"{evil}=1")["series"] == []
    assert srv.series("c.routes", group_by=evil)["series"][0]["labels"] == {evil: ""}
    assert srv.get("/api/v1/metrics", {"service": evil}).json()["metrics"] == []
    assert srv.get("/api/v1/metrics/c.routes/series", {"service": evil}).status_code == 404
    assert counts() == before


# -- the real OpenTelemetry SDK --------------------------------------------------------------------


def test_sdk_counter_total_increase(srv: Server) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(endpoint=f"{srv.running.otlp}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "sdk"}))
    counter = provider.get_meter("test").create_counter("sdk.requests")
    counter.add(3, {"route": "/x"})
    counter.add(4, {"route": "/x"})
    provider.force_flush()
    counter.add(5, {"route": "/x"})
    provider.shutdown()  # exports again: a second cumulative point, 12
    srv.running.drain()

    now = time.time_ns()
    body = srv.series(
        "sdk.requests", agg="increase", start=ms(now - 3600 * SECOND), end=ms(now + MINUTE), step="1h"
    )
    assert body["temporality"] == "cumulative"
    assert sum(v for s in body["series"] for _, v in s["points"]) == 12
