"""``sloscope.client`` over a real server on 127.0.0.1 and then, the server stopped, over its data
directory: every frame's dtypes exactly, its values against the JSON API's answer, and the embedded
client's frames equal to the HTTP client's.

The stream (also used by tests/test_slo_formats.py and tests/test_docs_analysis.py), real SDK spans
written through the engine's Protobuf input as the collector writes them, minutes 0..29 from T0:

* ``shop`` version 1.0: GET /cart at second 0 and 40, GET /items at second 20 of every minute, 20 ms;
  the one at second 0 fails in minutes 10..19. Each GET /cart calls ``pay`` (a SERVER span
  ``charge``, 10 ms, child of the shop span, same trace).
* ``shop`` version 2.0: GET /cart at second 50, 30 ms; fails in minutes 20..24.
* One log record per shop request with its trace and span id: ERROR "payment declined" when it
  failed, INFO "cart served" otherwise.

So shop has 4 requests a minute (120 in all, 15 failed), pay 2 a minute (60, none failed), logs 120
(15 ERROR). Evaluations of the SLOs of SPEC are stored every 5 minutes from minute 5 to 30.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from slo import evaluator, history, spec
from sloscope.client import Client, ClientError, EmbeddedClient
from store import migrations, open_backend
from store.otlp_writer import OtlpWriter
from tests.conftest import free_port, in_process

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())
MINUTES = 30
START = "2025-06-02T10:00:00Z"
END = "2025-06-02T10:30:00Z"
CANARY_AVAILABLE = importlib.util.find_spec("slo.canary") is not None

SPEC = """\
x-rules: &rules
  rules:
    - {severity: page, long: 1h, short: 5m, factor: 1}
slos:
  - name: shop-availability
    service: shop
    objective: 90
    window: 1d
    sli: {spans: {bad: {error: true}}}
    alerting: *rules
  - name: shop-routes
    service: shop
    objective: 90
    window: 1d
    group_by: [http.route]
    sli: {spans: {bad: {error: true}}}
    alerting: *rules
"""
POLICY = """\
route:
  receiver: hook
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 30m
receivers:
  - name: hook
    webhook: {url_file: hook-url}
"""
HISTORY_MINUTES = range(5, 31, 5)


def _request_plan() -> Iterator[tuple[int, str, str, int, int, bool]]:
    """(minute, version, route, start ns, duration ns, failed) of every shop request."""
    for m in range(MINUTES):
        base = (T0_S + m * 60) * 10**9
        yield m, "1.0", "/cart", base, 20_000_000, 10 <= m < 20
        yield m, "1.0", "/items", base + 20 * 10**9, 20_000_000, False
        yield m, "1.0", "/cart", base + 40 * 10**9, 20_000_000, False
        yield m, "2.0", "/cart", base + 50 * 10**9, 30_000_000, 20 <= m < 25


def span_and_log_requests() -> tuple[bytes, bytes, bytes]:
    """The stream's spans of version 1.0, of version 2.0 (both encoded by the real SDK's encoder)
    and its logs."""
    exporters = {v: InMemorySpanExporter() for v in ("1.0", "2.0")}
    providers = {}
    for version, exporter in exporters.items():
        provider = TracerProvider(
            resource=Resource.create({"service.name": "shop", "service.version": version})
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers[version] = provider
    pay_exporter = InMemorySpanExporter()
    pay_provider = TracerProvider(resource=Resource.create({"service.name": "pay"}))
    pay_provider.add_span_processor(SimpleSpanProcessor(pay_exporter))
    pay = pay_provider.get_tracer("pay")
    logs = ExportLogsServiceRequest()
    rl = logs.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "shop"
    scope = rl.scope_logs.add()
    for _, version, route, start_ns, duration_ns, failed in _request_plan():
        tracer = providers[version].get_tracer("shop")
        span = tracer.start_span(f"GET {route}", kind=SpanKind.SERVER, start_time=start_ns)
        span.set_attribute("http.route", route)
        if failed:
            span.set_status(Status(StatusCode.ERROR, "declined"))
        if route == "/cart" and version == "1.0":
            child = pay.start_span(
                "charge",
                kind=SpanKind.SERVER,
                start_time=start_ns + 5_000_000,
                context=otel_trace.set_span_in_context(span),
            )
            child.end(end_time=start_ns + 15_000_000)
        span.end(end_time=start_ns + duration_ns)
        ctx = span.get_span_context()
        record = scope.log_records.add(
            time_unix_nano=start_ns + 1_000_000,
            observed_time_unix_nano=start_ns + 2_000_000,
            severity_number=17 if failed else 9,
            severity_text="ERROR" if failed else "INFO",
            trace_id=ctx.trace_id.to_bytes(16, "big"),
            span_id=ctx.span_id.to_bytes(8, "big"),
        )
        record.body.string_value = "payment declined" if failed else "cart served"
        record.attributes.add(key="http.route").value.string_value = route
    for provider in (*providers.values(), pay_provider):
        provider.shutdown()
    shop_spans = [*exporters["1.0"].get_finished_spans(), *exporters["2.0"].get_finished_spans()]
    return (
        encode_spans(shop_spans).SerializeToString(),
        encode_spans(pay_exporter.get_finished_spans()).SerializeToString(),
        logs.SerializeToString(),
    )


@dataclass(frozen=True)
class Prepared:
    data_dir: Path
    spec: Path
    policy: Path


def prepare(root: Path) -> Prepared:
    """A migrated data directory holding the stream and the stored evaluations, closed again (chDB:
    one process per data directory), and the spec and policy files."""
    data_dir = root / "data"
    spec_path = root / "slos.yaml"
    spec_path.write_text(SPEC)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    (root / "hook-url").write_text("http://127.0.0.1:9/never-called\n")  # a backtest sends nothing
    slos, errors = spec.load(spec_path)
    assert not errors
    shop, pay, logs = span_and_log_requests()
    store = open_backend(data_dir)
    try:
        migrations.migrate(store)
        migrations.ensure_retention(store, 0)  # keep forever: June 2025 is long past 7 days
        writer = OtlpWriter(store, [])
        writer.write("traces", [shop], "client-shop")
        writer.write("traces", [pay], "client-pay")
        writer.write("logs", [logs], "client-logs")
        for minute in HISTORY_MINUTES:
            history.record(store, evaluator.evaluate(store, slos, T0_S + minute * 60))
    finally:
        store.close()
    return Prepared(data_dir, spec_path, policy)


# -- the calls, made once over HTTP and once embedded --------------------------------------------------------
CALLS: dict[str, Any] = {
    "services": lambda c: c.services(start=START, end=END),
    "operations": lambda c: c.operations("shop", start=T0, end=T0 + timedelta(minutes=30)),
    "red": lambda c: c.red("shop", start=pd.Timestamp(START), end=END, step="5m"),
    "red_cart": lambda c: c.red("shop", "GET /cart", start=START, end=END, step=timedelta(minutes=10)),
    "red_unknown": lambda c: c.red("nobody", start=START, end=END, step="10m"),
    "traces": lambda c: c.search_traces(service="shop", status="error", start=START, end=END, limit=5),
    "traces_attr": lambda c: c.search_traces(
        service="shop", attrs={"http.route": "/items"}, start=START, end=END, limit=1000, sort="oldest"
    ),
    "traces_none": lambda c: c.search_traces(service="nobody", start=START, end=END),
    "logs": lambda c: c.logs(service="shop", severity_min="ERROR", start=START, end=END, limit=1000),
    "logs_none": lambda c: c.logs(q="nothing", start=START, end=END),
    "history": lambda c: c.slo_history("shop-routes", start=START, end="2025-06-02T11:00:00Z"),
    "history_group": lambda c: c.slo_history(
        "shop-routes", start=START, end="2025-06-02T11:00:00Z", group={"http.route": "/cart"}
    ),
    "history_none": lambda c: c.slo_history("shop-availability", start="2025-06-01T00:00:00Z", end=START),
    "slos": lambda c: c.slos(at="2025-06-02T10:30:00Z"),
    "red_v2": lambda c: c.red("shop", start=START, end=END, step="10m", version="2.0"),
    "red_versions": lambda c: c.red_by_version("shop", start=START, end=END, step="10m"),
    "operations_v2": lambda c: c.operations("shop", start=START, end=END, version="2.0"),
}
if CANARY_AVAILABLE:
    CALLS["canary"] = lambda c: c.canary("shop", "1.0", "2.0", start=START, end=END, slo="shop-availability")
ERRORS: dict[str, Any] = {
    "negative_duration": lambda c: c.search_traces(start=START, end=END, min_duration_ms=-1),
    "bad_step": lambda c: c.red("shop", start=START, end=END, step="90s"),
    "bad_sort": lambda c: c.search_traces(start=START, end=END, sort="sideways"),
    "unknown_trace": lambda c: c.trace("0" * 31 + "1"),
    "backwards": lambda c: c.services(start=END, end=START),
}
#: JSON API requests whose answers the frames are checked against.
RAW = {
    "services": ("/api/v1/services", {"start": START, "end": END}),
    "operations": ("/api/v1/services/shop/operations", {"start": START, "end": END}),
    "red": ("/api/v1/red", {"service": "shop", "start": START, "end": END, "step": "5m"}),
    "traces": (
        "/api/v1/traces",
        {"service": "shop", "status": "error", "start": START, "end": END, "limit": 5},
    ),
    "logs": (
        "/api/v1/logs",
        {"service": "shop", "severity_min": "ERROR", "start": START, "end": END, "limit": 1000},
    ),
    "history": ("/api/v1/slos/shop-routes/history", {"start": START, "end": "2025-06-02T11:00:00Z"}),
    "slos": ("/api/v1/slos", {"at": "2025-06-02T10:30:00Z"}),
    "red_versions": (
        "/api/v1/red",
        {"service": "shop", "start": START, "end": END, "step": "10m", "group_by": "version"},
    ),
    # the newest failed request before minute 20: a GET /cart of 1.0 with its pay span
    "pick": (
        "/api/v1/traces",
        {"service": "shop", "status": "error", "start": START, "end": "2025-06-02T10:20:00Z", "limit": 1},
    ),
}


if CANARY_AVAILABLE:
    RAW["canary"] = (
        "/api/v1/canary",
        {
            "service": "shop",
            "baseline": "1.0",
            "candidate": "2.0",
            "start": START,
            "end": END,
            "slo": "shop-availability",
        },
    )


@dataclass
class Phase:
    """What one client gave: frames by call name, refusals by call name."""

    frames: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, ClientError] = field(default_factory=dict)


def run_calls(client: Any, phase: Phase, trace_id: str) -> None:
    for name, call in CALLS.items():
        phase.frames[name] = call(client)
    phase.frames["trace"] = client.trace(trace_id)
    phase.frames["trace_logs"] = client.trace_logs(trace_id.upper())
    for name, call in ERRORS.items():
        with pytest.raises(ClientError) as caught:
            call(client)
        phase.errors[name] = caught.value


@dataclass
class Recorded:
    prepared: Prepared
    http: Phase
    embedded: Phase
    raw: dict[str, Any]
    trace_id: str
    embedded_client: EmbeddedClient


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Every call over HTTP against a running server (and the JSON API's own answers), then, the
    server stopped, every call again over the same data directory."""
    prepared = prepare(tmp_path_factory.mktemp("client"))
    http, embedded, raw = Phase(), Phase(), {}
    with in_process(prepared.data_dir, slos=str(prepared.spec), retention_days=0) as server:
        with httpx.Client(base_url=server.api, timeout=60) as api:
            for name, (path, params) in RAW.items():
                response = api.get(path, params=params)
                assert response.status_code == 200, response.text
                raw[name] = response.json()
            trace_id = raw["pick"]["traces"][0]["trace_id"]
            response = api.get(f"/api/v1/traces/{trace_id}")
            assert response.status_code == 200, response.text
            raw["trace"] = response.json()
        run_calls(Client(server.api), http, trace_id)
        with pytest.raises(ClientError) as caught:
            Client(server.api).backtest(prepared.spec, START, END)
        http.errors["backtest"] = caught.value
    with EmbeddedClient(prepared.data_dir, slos=prepared.spec) as local:
        run_calls(local, embedded, trace_id)
        yield Recorded(prepared, http, embedded, raw, trace_id, local)


# -- dtypes ---------------------------------------------------------------------------------------------
TIME = "datetime64[ns, UTC]"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
RED_DTYPES = {
    "requests": "Int64",
    "errors": "Int64",
    "rate": "float64",
    "error_rate": "float64",
    "error_ratio": "float64",
    "p50_ms": "float64",
    "p95_ms": "float64",
    "p99_ms": "float64",
}
DTYPES = {
    "services": {"service": "string", **RED_DTYPES},
    "operations": {"operation": "string", "kind": "string", **RED_DTYPES},
    "red": {"time": TIME, **RED_DTYPES},
    "traces": {
        "trace_id": "string",
        "root_service": "string",
        "root_operation": "string",
        "root_span_missing": "boolean",
        "start_time": TIME,
        "duration_ns": "Int64",
        "duration_ms": "float64",
        "span_count": "Int64",
        "error_count": "Int64",
        "services": "object",
    },
    "trace": {
        "trace_id": "string",
        "span_id": "string",
        "parent_span_id": "string",
        "trace_state": "string",
        "flags": "Int64",
        "name": "string",
        "kind": "string",
        "service_name": "string",
        "start_time": TIME,
        "end_time": TIME,
        "duration_ns": "Int64",
        "status_code": "string",
        "status_message": "string",
        "attributes": "object",
        "resource_attributes": "object",
        "resource_schema_url": "string",
        "scope_name": "string",
        "scope_version": "string",
        "scope_attributes": "object",
        "scope_schema_url": "string",
        "events": "object",
        "links": "object",
        "dropped_attributes_count": "Int64",
        "dropped_events_count": "Int64",
        "dropped_links_count": "Int64",
        "correlation_id": "string",
    },
    "logs": {
        "time": TIME,
        "observed_time": TIME,
        "severity_number": "Int64",
        "severity_text": "string",
        "body": "string",
        "event_name": "string",
        "service_name": "string",
        "trace_id": "string",
        "span_id": "string",
        "flags": "Int64",
        "attributes": "object",
        "resource_attributes": "object",
        "scope_name": "string",
        "scope_version": "string",
        "correlation_id": "string",
    },
    "history": {
        "at": TIME,
        "slo": "string",
        "service": "string",
        "group": "string",
        "objective": "float64",
        "window": "string",
        "budgeting": "string",
        "window_start": TIME,
        "total": "float64",
        "bad": "float64",
        "sli": "float64",
        "budget": "float64",
        "consumed": "float64",
        "remaining": "float64",
        "time_to_exhaustion_s": "float64",
        # the evaluator's burn-rate windows (those of the report table, with the SLO's 1d), shortest first
        **{f"burn_rate_{w}": "float64" for w in WINDOWS},
        "alert_rules": "object",
        "error": "string",
        "no_data": "string",
    },
}
CANARY_DTYPES = {
    "metric": "string",
    "unit": "string",
    "baseline": "float64",
    "candidate": "float64",
    "baseline_requests": "Int64",
    "candidate_requests": "Int64",
    "test": "string",
    "p_value": "float64",
    "effect_size": "float64",
    "verdict": "string",
    "reason": "string",
    "baseline_burn_rate": "float64",
    "candidate_burn_rate": "float64",
}
DTYPES |= {
    "red_v2": DTYPES["red"],
    "red_versions": {"version": "string", "share": "float64", **DTYPES["red"]},
    "operations_v2": DTYPES["operations"],
    **({"canary": CANARY_DTYPES} if CANARY_AVAILABLE else {}),
    "red_cart": DTYPES["red"],
    "red_unknown": DTYPES["red"],
    "traces_attr": DTYPES["traces"],
    "traces_none": DTYPES["traces"],
    "logs_none": DTYPES["logs"],
    "trace_logs": DTYPES["logs"],
    "history_group": DTYPES["history"],
    # no evaluation, so no burn-rate window to make a column of
    "history_none": {k: v for k, v in DTYPES["history"].items() if not k.startswith("burn_rate_")},
}


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


@pytest.mark.parametrize("mode", ["http", "embedded"])
@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_frame_has_its_typed_columns_also_when_empty(recorded: Recorded, mode: str, name: str) -> None:
    frame = getattr(recorded, mode).frames[name]
    assert dtypes(frame) == DTYPES[name]


def test_empty_answers_are_empty_frames(recorded: Recorded) -> None:
    for name in ("traces_none", "logs_none", "history_none"):
        assert len(recorded.http.frames[name]) == 0, name
    # An unknown service is every step without requests, not an error.
    unknown = recorded.http.frames["red_unknown"]
    assert len(unknown) == 3 and unknown["requests"].tolist() == [0, 0, 0]
    assert unknown["error_ratio"].isna().all() and unknown["p99_ms"].isna().all()


# -- values against the JSON API ---------------------------------------------------------------------------
def nan_none(value: Any) -> Any:
    return None if value is pd.NA or (isinstance(value, float) and value != value) else value


def test_services_and_operations_are_the_apis_numbers(recorded: Recorded) -> None:
    frame = recorded.http.frames["services"]
    answer = recorded.raw["services"]
    rows = [{k: nan_none(v) for k, v in row.items()} for row in frame.to_dict("records")]
    assert rows == answer["services"]
    # and the stream's: shop 4 requests a minute for 30 minutes, 15 failed; pay 2 a minute
    assert [(r["service"], r["requests"], r["errors"]) for r in rows] == [("shop", 120, 15), ("pay", 60, 0)]
    assert frame.attrs["start"] == pd.Timestamp(START) and frame.attrs["end"] == pd.Timestamp(END)
    operations = recorded.http.frames["operations"]
    rows = [{k: nan_none(v) for k, v in row.items()} for row in operations.to_dict("records")]
    assert rows == recorded.raw["operations"]["operations"]
    assert {(r["operation"], r["requests"]) for r in rows} == {("GET /cart", 90), ("GET /items", 30)}


def test_red_series_are_the_apis_points_with_times(recorded: Recorded) -> None:
    frame = recorded.http.frames["red"]
    answer = recorded.raw["red"]
    assert len(frame) == len(answer["points"]) == 6
    for row, point in zip(frame.to_dict("records"), answer["points"], strict=True):
        assert row["time"] == pd.Timestamp(point["time"])
        assert {k: nan_none(v) for k, v in row.items() if k != "time"} == {
            k: v for k, v in point.items() if k != "time"
        }
    assert frame["time"].tolist() == [pd.Timestamp(T0) + pd.Timedelta(minutes=5 * i) for i in range(6)]
    # minutes 10..19 fail one request a minute, 20..24 one (version 2.0)
    assert frame["errors"].tolist() == [0, 0, 5, 5, 5, 0]
    assert frame.attrs["step"] == pd.Timedelta(minutes=5)
    assert frame.attrs["service"] == "shop" and frame.attrs["operation"] is None
    cart = recorded.http.frames["red_cart"]
    assert cart["requests"].tolist() == [30, 30, 30] and cart.attrs["operation"] == "GET /cart"
    # A groupby: the failed minutes per 10 minutes, from the 5-minute series.
    per_ten = frame.groupby(frame["time"].dt.floor("10min"))["errors"].sum()
    assert per_ten.tolist() == cart["errors"].tolist() == [0, 10, 5]


def test_trace_search_rows_are_the_apis_summaries(recorded: Recorded) -> None:
    frame = recorded.http.frames["traces"]
    answer = recorded.raw["traces"]
    assert len(frame) == len(answer["traces"]) == 5
    for row, summary in zip(frame.to_dict("records"), answer["traces"], strict=True):
        assert row["start_time"].value == int(summary["start_time_unix_nano"])
        assert {k: v for k, v in row.items() if k != "start_time"} == {
            k: v for k, v in summary.items() if k != "start_time_unix_nano"
        }
    assert frame.attrs == {"total": 15, "next_cursor": answer["next_cursor"], "sort": "newest"}
    assert frame.attrs["next_cursor"]
    items = recorded.http.frames["traces_attr"]
    assert len(items) == 30 and items.attrs["total"] == 30
    assert items["start_time"].is_monotonic_increasing
    assert set(items["root_operation"]) == {"GET /items"}


def test_a_trace_is_one_row_per_span_with_exact_times(recorded: Recorded) -> None:
    spans = recorded.http.frames["trace"]
    answer = recorded.raw["trace"]["spans"]
    assert len(spans) == len(answer) == 2
    for row, span in zip(spans.to_dict("records"), answer, strict=True):
        assert row["span_id"] == span["span_id"] and row["parent_span_id"] == span["parent_span_id"]
        assert row["start_time"].value == int(span["start_time_unix_nano"])
        assert row["end_time"].value == int(span["end_time_unix_nano"])
        assert row["status_code"] == span["status"]["code"]
        assert row["attributes"] == span["attributes"]
        assert row["resource_attributes"] == span["resource"]["attributes"]
    assert spans["service_name"].tolist() == ["shop", "pay"]
    assert spans["parent_span_id"].iloc[1] == spans["span_id"].iloc[0]
    assert (spans["end_time"] - spans["start_time"]).tolist() == [
        pd.Timedelta(milliseconds=20),
        pd.Timedelta(milliseconds=10),
    ]
    logs = recorded.http.frames["trace_logs"]
    assert len(logs) == 1 and logs["span_id"].iloc[0] == spans["span_id"].iloc[0]
    assert logs["body"].iloc[0] == "payment declined"


def test_logs_are_the_apis_records(recorded: Recorded) -> None:
    frame = recorded.http.frames["logs"]
    answer = recorded.raw["logs"]["logs"]
    assert len(frame) == len(answer) == 15
    for row, record in zip(frame.to_dict("records"), answer, strict=True):
        assert row["time"].value == int(record["time_unix_nano"])
        assert row["observed_time"].value == int(record["observed_time_unix_nano"])
        assert row["body"] == record["body"] and row["severity_number"] == record["severity_number"]
        assert row["attributes"] == record["attributes"] and row["trace_id"] == record["trace_id"]
    assert frame["time"].is_monotonic_decreasing  # newest first, as the API
    assert frame.groupby("severity_text").size().to_dict() == {"ERROR": 15}


def test_slo_history_is_the_stored_evaluations(recorded: Recorded) -> None:
    frame = recorded.http.frames["history"]
    answer = recorded.raw["history"]["evaluations"]
    assert len(frame) == len(answer) == 2 * len(HISTORY_MINUTES)
    for row, evaluation in zip(frame.to_dict("records"), answer, strict=True):
        assert row["at"] == pd.Timestamp(evaluation["at_s"], unit="s", tz="UTC")
        assert row["window_start"] == pd.Timestamp(evaluation["window_start_s"], unit="s", tz="UTC")
        assert json.loads(row["group"]) == evaluation["group_labels"]
        for key in ("total", "bad", "sli", "remaining", "objective"):
            assert nan_none(row[key]) == evaluation[key], key
        for window, rate in evaluation["burn_rates"].items():
            assert row[f"burn_rate_{window}"] == rate
        assert row["alert_rules"] == evaluation["alert_rules"]
    # By route: /cart has 3 requests a minute, of which 10 + 5 failed by minute 30; /items none.
    last = frame[frame["at"] == frame["at"].max()].set_index("group")
    assert last.loc['{"http.route":"/cart"}', ["total", "bad"]].tolist() == [90.0, 15.0]
    assert last.loc['{"http.route":"/items"}', ["total", "bad"]].tolist() == [30.0, 0.0]
    assert frame.groupby("group")["bad"].max().to_dict() == {
        '{"http.route":"/cart"}': 15.0,
        '{"http.route":"/items"}': 0.0,
    }
    one = recorded.http.frames["history_group"]
    assert set(one["group"]) == {'{"http.route":"/cart"}'} and len(one) == len(HISTORY_MINUTES)


def test_slos_are_the_apis_instances(recorded: Recorded) -> None:
    frame = recorded.http.frames["slos"]
    answer = recorded.raw["slos"]["slos"]
    assert len(frame) == len(answer) == 3
    for row, instance in zip(frame.to_dict("records"), answer, strict=True):
        assert (row["slo"], json.loads(row["group"])) == (instance["slo"], instance["group"])
        assert row["at"] == pd.Timestamp(instance["at"], unit="s", tz="UTC")
        assert (row["total"], row["bad"], row["sli"]) == (instance["total"], instance["bad"], instance["sli"])
        assert row["alert_rules"] == instance["alert_rules"] and row["firing"] == instance["firing"]
        assert row["burn_rate_1h"] == instance["burn_rates"]["1h"]
    assert str(frame["exhausted"].dtype) == "boolean" and str(frame["slices"].dtype) == "Int64"


def test_refusals_carry_the_servers_detail(recorded: Recorded) -> None:
    errors = recorded.http.errors
    assert errors["bad_step"].status == 400 and "step" in errors["bad_step"].detail
    assert "whole number of minutes" in errors["bad_step"].detail
    assert errors["bad_sort"].status == 400 and errors["bad_sort"].detail.startswith("sort:")
    assert errors["unknown_trace"].status == 404
    assert errors["unknown_trace"].detail == f"trace {'0' * 31}1 not found"
    assert errors["backwards"].status == 400 and "start must be before end" in errors["backwards"].detail
    assert "/api/v1/services" in errors["backwards"].url and "400" in str(errors["backwards"])
    assert errors["backtest"].status is None and "Client.open" in errors["backtest"].detail
    assert errors["negative_duration"].status == 400
    assert (
        errors["negative_duration"].detail
        == "min_duration_ms: '-1.0' must be a non-negative number of milliseconds"
    )


def test_a_server_that_is_not_there_is_a_client_error_without_status() -> None:
    with pytest.raises(ClientError) as caught:
        Client(f"http://127.0.0.1:{free_port()}", timeout=5).services(start=START, end=END)
    assert caught.value.status is None and "cannot reach the server" in caught.value.detail


def test_the_embedded_client_answers_as_the_server_did(recorded: Recorded) -> None:
    """The same calls over the stopped server's data directory: equal frames (attrs included) and
    the same refusals."""
    for name, frame in recorded.http.frames.items():
        local = recorded.embedded.frames[name]
        pd.testing.assert_frame_equal(local, frame, check_exact=True, obj=name)
        assert local.attrs == frame.attrs, name
    for name, error in recorded.http.errors.items():
        if name == "backtest":
            continue
        assert (recorded.embedded.errors[name].status, recorded.embedded.errors[name].detail) == (
            error.status,
            error.detail,
        ), name


def test_times_are_datetimes_timestamps_or_the_apis_texts(recorded: Recorded) -> None:
    local = recorded.embedded_client
    as_text = local.services(start=START, end=END)
    for start, end in [
        (T0, T0 + timedelta(minutes=30)),
        (pd.Timestamp(START), pd.Timestamp(END)),
        (str(T0_S * 1000), str((T0_S + 1800) * 1000)),  # unix milliseconds, as the API reads them
        (pd.Timestamp(START).tz_convert("Asia/Tokyo"), END),
    ]:
        pd.testing.assert_frame_equal(local.services(start=start, end=end), as_text)
    with pytest.raises(ValueError, match="no time zone"):
        local.services(start=datetime(2025, 6, 2, 10), end=END)
    with pytest.raises(ClientError, match="start:"):
        local.services(start="yesterday-ish", end=END)


def test_embedded_backtest_frames(recorded: Recorded) -> None:
    local = recorded.embedded_client
    frames = local.backtest(
        recorded.prepared.spec,
        START,
        "2025-06-02T11:00:00Z",
        "1m",
        policy=recorded.prepared.policy,
        values=True,
    )
    rules, alerts, notifications, values = frames.rules, frames.alerts, frames.notifications, frames.values
    assert dtypes(rules) == {
        "slo": "string",
        "at": TIME,
        "group": "string",
        "rule": "string",
        "state": "string",
    }
    assert dtypes(alerts) == {
        "slo": "string",
        "at": TIME,
        "alert": "string",
        "severity": "string",
        "group": "string",
        "from_state": "string",
        "to_state": "string",
    }
    assert dtypes(notifications) == {
        "at": TIME,
        "receiver": "string",
        "kind": "string",
        "incident": "string",
        "notification": "string",
        "alert": "string",
        "slo": "string",
        "severity": "string",
        "group": "string",
        "state": "string",
    }
    assert dtypes(values) == {
        "slo": "string",
        "at": TIME,
        "group": "string",
        "total": "float64",
        "bad": "float64",
        "sli": "float64",
        "remaining": "float64",
        **{f"burn_rate_{w}": "float64" for w in WINDOWS},
    }
    # Both SLOs fire and resolve (the /cart failures of minutes 10..24), and are notified of.
    assert set(rules["slo"]) == {"shop-availability", "shop-routes"}
    assert set(rules["state"]) == {"firing", "resolved"}
    assert set(alerts["to_state"]) >= {"firing", "resolved"}
    assert len(notifications) > 0 and set(notifications["receiver"]) == {"hook"}
    # 61 steps of three instances (shop-availability; shop-routes /cart and /items)
    assert len(values) == 61 * 3
    assert values.groupby("slo").size().to_dict() == {"shop-availability": 61, "shop-routes": 122}
    # Without values: an empty frame with its typed columns.
    plain = local.backtest(recorded.prepared.spec, START, END)
    assert len(plain.values) == 0 and list(plain.values.columns) == list(values.columns)[:7]


def test_red_by_version_and_of_one_version(recorded: Recorded) -> None:
    frame = recorded.http.frames["red_versions"]
    answer = recorded.raw["red_versions"]
    expected = [
        {"version": g["version"], "share": g["share"], **point}
        for g in answer["groups"]
        for point in g["points"]
    ]
    rows = [{k: nan_none(v) for k, v in row.items()} for row in frame.to_dict("records")]
    assert [{**r, "time": r["time"]} for r in rows] == [
        {**e, "time": pd.Timestamp(e["time"])} for e in expected
    ]
    # 1.0: three requests a minute, 2.0 one: shares 3/4 and 1/4; 10 failures of 1.0 in minutes 10..19
    totals = frame.groupby("version").agg(
        share=("share", "first"), requests=("requests", "sum"), errors=("errors", "sum")
    )
    assert totals.to_dict("index") == {
        "1.0": {"share": 0.75, "requests": 90, "errors": 10},
        "2.0": {"share": 0.25, "requests": 30, "errors": 5},
    }
    v2 = recorded.http.frames["red_v2"]
    assert v2["requests"].tolist() == [10, 10, 10] and v2["errors"].tolist() == [0, 0, 5]
    assert v2.attrs["version"] == "2.0" and recorded.http.frames["red"].attrs["version"] is None
    ops = recorded.http.frames["operations_v2"]
    assert ops[["operation", "requests", "errors"]].values.tolist() == [["GET /cart", 30, 5]]
    assert ops.attrs["version"] == "2.0"


@pytest.mark.skipif(not CANARY_AVAILABLE, reason="slo.canary (the canary comparison) is not built yet")
def test_canary_rows_are_one_per_metric(recorded: Recorded) -> None:
    frame = recorded.http.frames["canary"]
    answer = recorded.raw["canary"]
    rows = [{k: nan_none(v) for k, v in row.items()} for row in frame.to_dict("records")]
    assert rows == answer["metrics"]
    assert frame["metric"].tolist()[:4] == ["error_ratio", "latency_p50", "latency_p95", "latency_p99"]
    assert "slo:shop-availability" in frame["metric"].tolist()
    assert frame.attrs == {
        **{k: answer[k] for k in ("service", "baseline", "candidate", "verdict", "reason")},
        "start": pd.Timestamp(START),
        "end": pd.Timestamp(END),
    }
    # 90 requests of 1.0 (10 failed), 30 of 2.0 (5 failed)
    error_ratio = frame.set_index("metric").loc["error_ratio"]
    assert (error_ratio["baseline_requests"], error_ratio["candidate_requests"]) == (90, 30)
    assert error_ratio["baseline"] == pytest.approx(10 / 90) and error_ratio["candidate"] == pytest.approx(
        5 / 30
    )


def test_a_directory_without_a_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no sloscope store"):
        EmbeddedClient(tmp_path)
