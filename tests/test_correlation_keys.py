"""Correlation ids from header attributes, which the semantic conventions make string arrays."""

from __future__ import annotations

import time

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import InProcess, wait_until

HEADER = "http.request.header.x-correlation-id"


def _spans(sloscope: InProcess) -> list[str]:
    provider = TracerProvider(resource=Resource.create({"service.name": "corr-array"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{sloscope.otlp}/v1/traces")))
    tracer = provider.get_tracer("test")
    ids = []
    for attributes in (
        {HEADER: ["order-41", "order-42"]},  # the first value is the id
        {HEADER: [], "correlation.id": "order-43"},  # an empty header falls through to the next key
        {HEADER: "order-44"},  # a plain string, as older instrumentations send it
    ):
        with tracer.start_as_current_span("checkout", attributes=attributes) as span:
            ids.append(format(span.get_span_context().span_id, "016x"))
    provider.shutdown()
    return ids


def test_an_array_header_gives_its_first_value(sloscope: InProcess) -> None:
    ids = _spans(sloscope)
    sloscope.drain()

    def stored() -> dict[str, str] | None:
        rows = sloscope.rows(
            "SELECT hex(span_id) AS id, correlation_id FROM spans WHERE service_name = 'corr-array'"
        )
        return {r["id"].lower(): r["correlation_id"] for r in rows} if len(rows) == 3 else None

    assert wait_until(stored) == dict(zip(ids, ["order-41", "order-43", "order-44"], strict=True))
    found = httpx.get(f"{sloscope.api}/api/v1/correlations/order-41").json()
    assert [s["span_id"] for s in found["spans"]] == [ids[0]]


def test_a_log_records_array_header_gives_its_first_value(sloscope: InProcess) -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "corr-array-logs"
    record = rl.scope_logs.add().log_records.add(time_unix_nano=time.time_ns(), severity_number=9)
    record.body.string_value = "paid"
    values = record.attributes.add(key=HEADER).value.array_value.values
    values.add().string_value = "order-51"
    values.add().string_value = "order-52"
    reply = httpx.post(
        f"{sloscope.otlp}/v1/logs",
        content=req.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert reply.status_code == 200
    sloscope.drain()
    rows = sloscope.rows("SELECT correlation_id FROM logs WHERE service_name = 'corr-array-logs'")
    assert rows == [{"correlation_id": "order-51"}]
