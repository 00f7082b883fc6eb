"""Metrics API (/api/v1/metrics...): known answers for rates, resets, gauges, histogram quantiles
(explicit and exponential buckets) and summaries."""

from __future__ import annotations

import math
import random
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


def export(otlp: str, service: str, fill: Any, host: str = "h1") -> None:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    rm.resource.attributes.add(key="host.name").value.string_value = host
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


def exp_point(
    metric: Any,
    temporality: int,
    t: int,
    scale: int,
    pos: tuple[int, list[int]] = (0, []),
    neg: tuple[int, list[int]] = (0, []),
    zero: int = 0,
    zero_threshold: float = 0.0,
    total: float = 0.0,
    **labels: str,
) -> None:
    """One exponential-histogram point; ``pos``/``neg`` are (offset, bucket counts)."""
    metric.exponential_histogram.aggregation_temporality = temporality
    p = metric.exponential_histogram.data_points.add(
        start_time_unix_nano=t - MINUTE if temporality == DELTA else BASE - SECOND,
        time_unix_nano=t,
        scale=scale,
        zero_count=zero,
        zero_threshold=zero_threshold,
        count=zero + sum(pos[1]) + sum(neg[1]),
        sum=total,
    )
    p.positive.offset = pos[0]
    p.positive.bucket_counts.extend(pos[1])
    p.negative.offset = neg[0]
    p.negative.bucket_counts.extend(neg[1])
    attrs(p, **labels)


def fill_exponential(sm: metrics_pb2.ScopeMetrics) -> None:
    # Scale 0 (base 2): minute 0 (1,2] 2, (2,4] 4, (4,8] 4; minute 1 (8,16] 5; minutes 2, 3 (2,4] 1, 2.
    delta = sm.metrics.add(name="e.delta", unit="ms")
    for i, (pos, total) in enumerate(
        (((0, [2, 4, 4]), 40.0), ((3, [5]), 50.0), ((1, [1]), 3.0), ((1, [2]), 6.0))
    ):
        exp_point(delta, DELTA, BASE + i * MINUTE, 0, pos=pos, total=total)
    # The same increases, cumulative, with a reset at minute 2 (the count went down).
    cumulative = sm.metrics.add(name="e.cumulative", unit="ms")
    for i, (pos, total) in enumerate(
        (((0, [2, 4, 4]), 40.0), ((0, [2, 4, 4, 5]), 90.0), ((1, [1]), 3.0), ((1, [3]), 9.0))
    ):
        exp_point(cumulative, CUMULATIVE, BASE + i * MINUTE, 0, pos=pos, total=total)
    # A cumulative stream whose SDK downscaled at minute 1 (scale 1 -> 0: the previous point's
    # buckets 0..3 become 0, 0, 1, 1 before subtracting), then three resets that only one rule each
    # sees (the count never goes down): minute 2 the scale went up (as in Prometheus), minute 3 a
    # bucket went down, minute 4 the zero count went down.
    scales = sm.metrics.add(name="e.scales")
    exp_point(scales, CUMULATIVE, BASE, 1, pos=(0, [1, 1, 1, 1]))
    exp_point(scales, CUMULATIVE, BASE + MINUTE, 0, pos=(0, [2, 2, 4]))
    exp_point(scales, CUMULATIVE, BASE + 2 * MINUTE, 1, pos=(0, [4, 4, 4, 4]))
    exp_point(scales, CUMULATIVE, BASE + 3 * MINUTE, 1, pos=(4, [20]), zero=5)
    exp_point(scales, CUMULATIVE, BASE + 4 * MINUTE, 1, pos=(4, [25]))
    # Two streams of different scales in one step; negative bucket indices (values below 1).
    merge = sm.metrics.add(name="e.merge")
    exp_point(merge, DELTA, BASE, 1, pos=(-3, [1, 1]), route="/a")  # (2^-1.5, 2^-1], (2^-1, 2^-0.5]
    exp_point(merge, DELTA, BASE + 30 * SECOND, 0, pos=(2, [4]), route="/b")  # (4, 8]
    # The zero bucket and negative buckets, scale 0.
    zero = sm.metrics.add(name="e.zero")
    exp_point(zero, DELTA, BASE, 0, neg=(0, [2]), zero=2, pos=(0, [2]))  # [-2,-1) 2, {0} 2, (1,2] 2
    exp_point(zero, DELTA, BASE + MINUTE, 0, zero=2, zero_threshold=0.001, pos=(0, [2]))
    exp_point(zero, DELTA, BASE + 2 * MINUTE, 0, neg=(1, [4]))  # [-4,-2) 4
    exp_point(zero, DELTA, BASE + 3 * MINUTE, 0, neg=(0, [1, 1]))  # [-2,-1) 1, [-4,-2) 1


def summary_point(
    metric: Any, t: int, count: int, total: float, quantiles: dict[float, float], **labels: str
) -> None:
    p = metric.summary.data_points.add(
        start_time_unix_nano=BASE - SECOND, time_unix_nano=t, count=count, sum=total
    )
    for q, value in quantiles.items():
        p.quantile_values.add(quantile=q, value=value)
    attrs(p, **labels)


def fill_summary(sm: metrics_pb2.ScopeMetrics) -> None:
    # Count 10, 30, 60, 5 (reset), 25 -> increases 10, 20, 30, 5, 20; sum 100, 300, 300, 50, 250.
    latency = sm.metrics.add(name="sm.latency", unit="ms")
    for i, (count, total) in enumerate(((10, 100), (30, 400), (60, 700), (5, 50), (25, 300))):
        summary_point(latency, BASE + i * MINUTE, count, total, {0.5: i + 1, 0.99: 10 * (i + 1)}, route="/a")


def fill_host_summary(value: float) -> Any:
    def fill(sm: metrics_pb2.ScopeMetrics) -> None:
        summary_point(sm.metrics.add(name="sm.hosts"), BASE, 4, 4 * value, {0.5: value})

    return fill


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with in_process(tmp_path_factory.mktemp("metrics-api")) as running:
        api = running.api
        export(running.otlp, "shop", fill_all)
        export(running.otlp, "shop", fill_exponential)
        export(running.otlp, "shop", fill_summary)
        export(running.otlp, "shop", fill_host_summary(1.0), host="h1")
        export(running.otlp, "shop", fill_host_summary(3.0), host="h2")
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
    assert srv.points("h.delta", agg="sum_increase") == {0: 50, 1: 100}
    assert srv.points("h.delta", agg="sum_rate") == pytest.approx({0: 50 / 60, 1: 100 / 60})


def test_cumulative_histogram_with_reset(srv: Server) -> None:
    # Increases per minute: [1,1,0,0] (new stream), [1,3,4,0], reset -> [0,1,0,0], [0,2,2,0].
    assert srv.points("h.cumulative", agg="count") == {0: 2, 1: 8, 2: 1, 3: 4}
    assert srv.points("h.cumulative", agg="p50") == pytest.approx({0: 1.0, 1: 5.0, 2: 3.0, 3: 5.0})
    assert srv.points("h.cumulative", agg="p95")[3] == pytest.approx(9.5)
    assert srv.points("h.cumulative", agg="avg") == pytest.approx({0: 2.0, 1: 4.5, 2: 3.0, 3: 5.0})


# -- exponential histograms ------------------------------------------------------------------------
# Prometheus' native-histogram interpolation: inside a bucket (b^i, b^(i+1)] with base b, a fraction f
# of its count lies below b^(i+f) (linear in log2); in the zero bucket linearly.


def test_exponential_histogram_quantiles_interpolate_exponentially(srv: Server) -> None:
    # Minute 0, 10 values: rank 5 is 3/4 into (2,4] -> 2^1.75; rank 9.5 7/8 into (4,8]; rank 1 1/2 into (1,2].
    assert srv.points("e.delta") == pytest.approx({0: 2**1.75, 1: 2**3.5, 2: 2**1.5, 3: 2**1.5})
    assert srv.points("e.delta", agg="p95")[0] == pytest.approx(2**2.875)
    assert srv.points("e.delta", agg="quantile:0.1")[0] == pytest.approx(2**0.5)
    assert srv.points("e.delta", agg="quantile:0")[0] == pytest.approx(1.0)
    assert srv.points("e.delta", agg="quantile:1")[0] == pytest.approx(8.0)
    assert srv.points("e.delta", agg="count") == {0: 10, 1: 5, 2: 1, 3: 2}
    assert srv.points("e.delta", agg="avg") == pytest.approx({0: 4, 1: 10, 2: 3, 3: 3})
    assert srv.points("e.delta", agg="rate") == pytest.approx({0: 10 / 60, 1: 5 / 60, 2: 1 / 60, 3: 2 / 60})
    assert srv.points("e.delta", agg="sum_increase") == pytest.approx({0: 40, 1: 50, 2: 3, 3: 6})
    assert srv.points("e.delta", agg="sum_rate") == pytest.approx(
        {0: 40 / 60, 1: 50 / 60, 2: 3 / 60, 3: 6 / 60}
    )
    body = srv.series("e.delta")
    assert body["type"] == "exponential_histogram" and body["agg"] == "quantile:0.5" and body["unit"] == "ms"
    # Two minutes merged: (1,2] 2, (2,4] 4, (4,8] 4, (8,16] 5; rank 7.5 is 1.5/4 into (4,8].
    assert srv.points("e.delta", step="2m", end=ms(BASE + 2 * MINUTE)) == pytest.approx(
        {0: 2 ** (2 + 1.5 / 4)}
    )


@pytest.mark.parametrize("agg", ["p50", "p95", "quantile:0.1", "count", "avg", "rate", "sum_rate"])
def test_exponential_cumulative_with_reset_equals_delta(srv: Server, agg: str) -> None:
    delta = srv.points("e.delta", agg=agg)
    assert len(delta) == 4
    assert srv.points("e.cumulative", agg=agg) == pytest.approx(delta)


def test_exponential_scale_change_in_a_cumulative_stream(srv: Server) -> None:
    # Minute 0 at scale 1: four values, one each in (1,√2], (√2,2], (2,2√2], (2√2,4]: rank 2 ends (√2,2].
    # Minute 1 at scale 0: [2,2,4] minus the downscaled [2,2] = 4 in (4,8]. Minutes 2-4: resets, so
    # each counts in full: 16 in (1,4] at scale 1; zero 5 + 20 in (4,4√2]; 25 in (4,4√2].
    assert srv.points("e.scales", agg="count") == {0: 4, 1: 4, 2: 16, 3: 25, 4: 25}
    assert srv.points("e.scales") == pytest.approx(
        {0: 2.0, 1: 2**2.5, 2: 2.0, 3: 2 ** ((4 + 7.5 / 20) / 2), 4: 2 ** ((4 + 0.5) / 2)}
    )


def test_exponential_series_of_different_scales_merge_at_the_smallest(srv: Server) -> None:
    apart = srv.series("e.merge")
    assert {s["labels"]["route"]: s["points"][0][1] for s in apart["series"]} == pytest.approx(
        {"/a": 0.5, "/b": 2**2.5}
    )
    # Merged at scale 0: /a's buckets -3, -2 at scale 1 become -2 (0.25,0.5] and -1 (0.5,1]; /b (4,8] 4.
    assert srv.points("e.merge", group_by="service.name") == pytest.approx({0: 2**2.25})
    assert srv.points("e.merge", group_by="service.name", agg="quantile:0.1") == pytest.approx({0: 2**-1.4})
    assert srv.points("e.merge", group_by="service.name", agg="quantile:0.25") == pytest.approx({0: 2**-0.5})


def test_exponential_zero_bucket_and_negatives(srv: Server) -> None:
    # Minute 0: [-2,-1) 2, zero 2, (1,2] 2. Negatives mirror: a fraction f is 2^(1-f) below zero.
    assert srv.points("e.zero", agg="quantile:0")[0] == pytest.approx(-2.0)
    assert srv.points("e.zero", agg="p25")[0] == pytest.approx(-(2**0.25))
    assert srv.points("e.zero", agg="p50")[0] == 0.0
    assert srv.points("e.zero", agg="p75")[0] == pytest.approx(2**0.25)
    assert srv.points("e.zero", agg="quantile:1")[0] == pytest.approx(2.0)
    # Minute 1: zero bucket (threshold 0.001) and positives only: the zero bucket is [0, 0.001].
    assert srv.points("e.zero", agg="p25")[1] == pytest.approx(0.0005)
    # Minute 2: [-4,-2) 4 only; minute 3: [-4,-2) 1 sorts below [-2,-1) 1.
    assert srv.points("e.zero", agg="p50")[2] == pytest.approx(-(2**1.5))
    assert srv.points("e.zero", agg="p90")[2] == pytest.approx(-(2**1.1))
    assert srv.points("e.zero", agg="p25")[3] == pytest.approx(-(2**1.5))
    assert srv.points("e.zero", agg="p75")[3] == pytest.approx(-(2**0.5))
    assert srv.points("e.zero", agg="count") == {0: 6, 1: 4, 2: 4, 3: 2}


# -- summaries -------------------------------------------------------------------------------------


def test_summary_count_sum_and_avg_with_reset(srv: Server) -> None:
    body = srv.series("sm.latency")
    assert body["type"] == "summary" and body["agg"] == "avg"
    assert srv.points("sm.latency") == pytest.approx({0: 10, 1: 15, 2: 10, 3: 10, 4: 12.5})
    assert srv.points("sm.latency", agg="count") == {0: 10, 1: 20, 2: 30, 3: 5, 4: 20}
    assert srv.points("sm.latency", agg="rate") == pytest.approx(
        {0: 10 / 60, 1: 20 / 60, 2: 0.5, 3: 5 / 60, 4: 20 / 60}
    )
    assert srv.points("sm.latency", agg="sum_increase") == {0: 100, 1: 300, 2: 300, 3: 50, 4: 250}
    # The range starts at minute 3: the reset's point still finds the previous point as its baseline.
    assert srv.points("sm.latency", agg="count", start=ms(BASE + 3 * MINUTE)) == {3: 5, 4: 20}


def test_summary_reported_quantiles(srv: Server) -> None:
    assert srv.points("sm.latency", agg="p50") == {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}
    assert srv.points("sm.latency", agg="p99") == {0: 10, 1: 20, 2: 30, 3: 40, 4: 50}
    # The latest point of each step.
    assert srv.points("sm.latency", agg="p50", step="2m") == {0: 2, 2: 4, 4: 5}
    reply = srv.get(
        "/api/v1/metrics/sm.latency/series", {"agg": "p90", "start": ms(BASE), "end": ms(BASE + 5 * MINUTE)}
    )
    assert reply.status_code == 400
    assert "0.9" in reply.json()["detail"] and "reports 0.5, 0.99" in reply.json()["detail"]


def test_summary_quantiles_of_several_streams_are_refused(srv: Server) -> None:
    params = {"agg": "p50", "start": ms(BASE), "end": ms(BASE + 5 * MINUTE)}
    reply = srv.get("/api/v1/metrics/sm.hosts/series", params)
    assert reply.status_code == 400
    detail = reply.json()["detail"]
    assert "2 streams" in detail and "cannot be combined" in detail and "group_by" in detail
    by_host = srv.series("sm.hosts", agg="p50", group_by="host.name")
    assert [(s["labels"], s["points"][0][1]) for s in by_host["series"]] == [
        ({"host.name": "h1"}, 1.0),
        ({"host.name": "h2"}, 3.0),
    ]
    assert srv.points("sm.hosts", agg="p50", attr="host.name=h2") == {0: 3.0}
    # Counts and sums do add up across streams.
    assert srv.points("sm.hosts", agg="count") == {0: 8}
    assert srv.points("sm.hosts", agg="avg") == {0: 2.0}


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
    assert found["e.delta"]["type"] == "exponential_histogram" and found["sm.latency"]["type"] == "summary"
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
    for name, agg in (
        ("e.delta", "last"),
        ("e.delta", "increase"),
        ("sm.latency", "increase"),
        ("sm.latency", "max"),
    ):
        reply = srv.get(f"/api/v1/metrics/{name}/series", {"agg": agg})
        assert reply.status_code == 400, (name, agg)
        assert repr(agg) in reply.json()["detail"] and "sum_rate" in reply.json()["detail"]


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


def test_sdk_exponential_histogram_quantiles(srv: Server) -> None:
    """Delta and cumulative SDK exports of the same values; quantiles within the buckets' error."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    rng = random.Random(7)
    # The second batch spans a wider range: the cumulative stream downscales between its two points.
    first = [rng.uniform(1, 10) for _ in range(200)]
    second = [0.0] * 5 + [math.exp(rng.uniform(math.log(0.5), math.log(1000))) for _ in range(300)]
    if time.time() % 86400 > 86400 - 30:  # both exports must fall in one 1-day step
        time.sleep(31)
    for temporality in ("cumulative", "delta"):
        preferred = {Histogram: AggregationTemporality.DELTA} if temporality == "delta" else {}
        exporter = OTLPMetricExporter(
            endpoint=f"{srv.running.otlp}/v1/metrics", preferred_temporality=preferred
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.create({"service.name": f"sdk-{temporality}"}),
            views=[View(instrument_name="sdk.latency", aggregation=ExponentialBucketHistogramAggregation())],
        )
        histogram = provider.get_meter("test").create_histogram("sdk.latency", unit="ms")
        for value in first:
            histogram.record(value)
        provider.force_flush()
        for value in second:
            histogram.record(value)
        provider.shutdown()
    srv.running.drain()

    stored = srv.running.rows(
        "SELECT service_name AS service, groupArray(scale) AS scales, min(scale) AS s "
        "FROM metrics_exponential_histogram WHERE metric_name = 'sdk.latency' GROUP BY service_name"
    )
    scales = {row["service"]: row for row in stored}
    assert len(set(scales["sdk-cumulative"]["scales"])) == 2  # the SDK did downscale
    # The estimate and the true value share a bucket (b^i, b^(i+1)]: relative error at most b - 1.
    bound = 2 ** (2.0 ** -min(row["s"] for row in stored)) - 1
    values = sorted(first + second)
    now = time.time_ns()
    window = {"start": ms(now - 3600 * SECOND), "end": ms(now + MINUTE), "step": "1d"}
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        truth = values[math.ceil(q * len(values)) - 1]  # the value of rank q·N
        for temporality in ("cumulative", "delta"):
            body = srv.series("sdk.latency", agg=f"quantile:{q}", service=f"sdk-{temporality}", **window)
            [[_, estimate]] = body["series"][0]["points"]
            assert abs(estimate - truth) <= bound * truth, (temporality, q, estimate, truth)
    for temporality in ("cumulative", "delta"):
        body = srv.series("sdk.latency", agg="count", service=f"sdk-{temporality}", **window)
        assert body["series"][0]["points"][0][1] == len(values)
        body = srv.series("sdk.latency", agg="avg", service=f"sdk-{temporality}", **window)
        assert body["series"][0]["points"][0][1] == pytest.approx(sum(values) / len(values))
    # The zero bucket holds the five zeros: the lowest quantile is 0.
    body = srv.series("sdk.latency", agg="quantile:0", service="sdk-delta", **window)
    assert body["series"][0]["points"][0][1] == 0.0
