"""Items older than the retention are refused with a reason, never acknowledged and then deleted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import DATA, InProcess, in_process

PROTOBUF = {"Content-Type": "application/x-protobuf"}
DAY = 86_400 * 10**9


def _rejected(server: InProcess, signal: str, reason: str) -> float:
    value = server.server.registry.get_sample_value(
        "sloscope_items_rejected_total", {"signal": signal, "reason": reason}
    )
    return value or 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(Path(tmp_path_factory.mktemp("expired")), retention_days=7) as app:
        yield app


def test_spans_older_than_the_retention_are_refused_in_partial_success(server: InProcess) -> None:
    now = time.time_ns()
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "expiry"
    spans = rs.scope_spans.add().spans
    for i, start in enumerate((now - 60 * 10**9, now - 8 * DAY, now - 6 * DAY)):
        spans.add(
            trace_id=(0xE0 + i).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"op-{i}",
            start_time_unix_nano=start,
            end_time_unix_nano=start + 1000,
        )
    reply = httpx.post(f"{server.otlp}/v1/traces", content=req.SerializeToString(), headers=PROTOBUF)
    assert reply.status_code == 200
    answer = ExportTraceServiceResponse.FromString(reply.content)
    assert answer.partial_success.rejected_spans == 1
    message = answer.partial_success.error_message
    assert "spans[1]" in message and "older than the retention of 7 days" in message
    assert _rejected(server, "traces", "expired") == 1
    assert _rejected(server, "traces", "invalid") == 0
    server.drain()
    rows = server.rows("SELECT name FROM spans WHERE service_name = 'expiry' ORDER BY name")
    assert [r["name"] for r in rows] == ["op-0", "op-2"]


def test_old_log_records_and_metric_points_are_refused_too(server: InProcess) -> None:
    now = time.time_ns()
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add(time_unix_nano=now - 30 * DAY).body.string_value = "old"
    records.add(time_unix_nano=0, observed_time_unix_nano=now).body.string_value = "observed now"
    records.add(time_unix_nano=0, observed_time_unix_nano=now - 30 * DAY).body.string_value = "observed old"
    reply = httpx.post(f"{server.otlp}/v1/logs", content=logs.SerializeToString(), headers=PROTOBUF)
    assert ExportLogsServiceResponse.FromString(reply.content).partial_success.rejected_log_records == 2

    metrics = ExportMetricsServiceRequest()
    gauge = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="expiry.gauge").gauge
    gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    gauge.data_points.add(time_unix_nano=now - 30 * DAY, as_double=2.0)
    # OTLP/JSON goes through the same check
    body = json.dumps(
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "expiry.json",
                                    "gauge": {
                                        "dataPoints": [{"timeUnixNano": str(now - 30 * DAY), "asInt": "3"}]
                                    },
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    reply = httpx.post(f"{server.otlp}/v1/metrics", content=metrics.SerializeToString(), headers=PROTOBUF)
    assert ExportMetricsServiceResponse.FromString(reply.content).partial_success.rejected_data_points == 1
    reply = httpx.post(
        f"{server.otlp}/v1/metrics", content=body, headers={"Content-Type": "application/json"}
    )
    assert reply.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert "retention of 7 days" in reply.json()["partialSuccess"]["errorMessage"]
    assert _rejected(server, "logs", "expired") == 2
    assert _rejected(server, "metrics", "expired") == 2


def test_zipkin_refuses_a_batch_with_nothing_inside_the_retention(server: InProcess) -> None:
    before = _rejected(server, "traces", "expired")
    sample = (DATA / "zipkin" / "sample3.json").read_bytes()  # from 2016
    reply = httpx.post(
        f"{server.server.zipkin_url}/api/v2/spans",
        content=sample,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert "older than the retention of 7 days" in reply.text
    assert _rejected(server, "traces", "expired") == before + 1

    fresh = {**json.loads(sample)[0], "timestamp": time.time_ns() // 1000, "traceId": "e" * 32}
    old = {**fresh, "id": "00000000000000e2", "timestamp": (time.time_ns() - 30 * DAY) // 1000}
    reply = httpx.post(f"{server.server.zipkin_url}/api/v2/spans", json=[fresh, old])
    assert reply.status_code == 202  # Zipkin has no partial success: the metric tells
    assert _rejected(server, "traces", "expired") == before + 2
