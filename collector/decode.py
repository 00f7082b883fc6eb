"""Parse and check OTLP export requests before they are acknowledged.

Only what could make the engine refuse a batch later is checked here (id lengths); the items that
fail are removed and reported through ``partial_success``, so one bad span never blocks the queue.
The walk touches ids only: values, attributes and events are decoded by ClickHouse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
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

from collector import otlp_json, trimmed

SIGNALS = ("traces", "metrics", "logs")

REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
RESPONSES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceResponse,
    "metrics": ExportMetricsServiceResponse,
    "logs": ExportLogsServiceResponse,
}
#: partial_success field counting the rejected items of each signal
REJECTED_FIELD = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


class BadRequest(ValueError):
    """The body is not a valid export request; the message says why."""


@dataclass(frozen=True)
class Decoded:
    """A checked request: ``payload`` is the protobuf to store, holding ``items`` valid items."""

    payload: bytes
    items: int
    rejected: int
    message: str = ""


def parse(signal: str, body: bytes, is_json: bool) -> Message:
    """Turn a request body into a protobuf message to check, or raise BadRequest.

    Protobuf trace and log requests come back as trimmed messages (see ``collector.trimmed``).
    """
    if is_json:
        try:
            return otlp_json.parse_request(signal, body)
        except otlp_json.OtlpJsonError as exc:
            raise BadRequest(f"invalid OTLP/JSON {signal} request: {exc}") from exc
    request = trimmed.REQUESTS.get(signal, REQUESTS[signal])()
    try:
        request.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise BadRequest(f"invalid OTLP protobuf {signal} request: {exc}") from exc
    return request


def check(signal: str, request: Message, original: bytes | None) -> Decoded:
    """Count the items, drop the invalid ones, and return what to store.

    ``original`` is the protobuf body as received; it is stored unchanged when nothing was dropped.
    """
    items, rejected, first_problem = _CHECKERS[signal](request)
    if rejected:
        payload = request.SerializeToString()
        message = f"{rejected} of {items + rejected} {_NOUN[signal]} rejected; first: {first_problem}"
        return Decoded(payload, items, rejected, message)
    return Decoded(original if original is not None else request.SerializeToString(), items, 0)


_NOUN = {"traces": "spans", "metrics": "data points", "logs": "log records"}


def _id_problem(value: bytes, size: int, name: str, required: bool) -> str | None:
    n = len(value)
    if n == 0:
        return f"{name} is missing" if required else None
    if n != size:
        return f"{name} must be {size} bytes, got {n}"
    if required and value == bytes(size):
        return f"{name} must not be all zeros"
    return None


def _span_problem(span) -> str | None:  # noqa: ANN001 - a generated protobuf Span
    tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
    if len(tid) == 16 and len(sid) == 8 and len(pid) in (0, 8) and tid != _ZERO_TRACE and sid != _ZERO_SPAN:
        problem = None
    else:
        problem = (
            _id_problem(tid, 16, "trace_id", True)
            or _id_problem(sid, 8, "span_id", True)
            or _id_problem(pid, 8, "parent_span_id", False)
        )
    if problem is None:
        for link in span.links:
            problem = _id_problem(link.trace_id, 16, "links.trace_id", True) or _id_problem(
                link.span_id, 8, "links.span_id", True
            )
            if problem:
                break
    return problem


def _log_problem(record) -> str | None:  # noqa: ANN001 - a generated protobuf LogRecord
    tid, sid = record.trace_id, record.span_id
    if len(tid) in (0, 16) and len(sid) in (0, 8):
        return None
    return _id_problem(tid, 16, "trace_id", False) or _id_problem(sid, 8, "span_id", False)


def _exemplar_problem(exemplars) -> str | None:  # noqa: ANN001 - repeated Exemplar
    for ex in exemplars:
        problem = _id_problem(ex.trace_id, 16, "exemplars.trace_id", False) or _id_problem(
            ex.span_id, 8, "exemplars.span_id", False
        )
        if problem:
            return problem
    return None


def _filter(container, where: str, problem_of: Callable) -> tuple[int, int, str]:  # noqa: ANN001
    """Remove the items of a repeated field that have a problem; return (kept, removed, first problem)."""
    bad = []
    first = ""
    for index, item in enumerate(container):
        problem = problem_of(item)
        if problem:
            if not bad:
                first = f"{where}[{index}]: {problem}"
            bad.append(index)
    for index in reversed(bad):
        del container[index]
    return len(container), len(bad), first


def _spans_look_valid(spans) -> bool:  # noqa: ANN001 - repeated Span
    # One pass in a generator is several times cheaper than a call per span; the rare request that
    # fails it is walked again to say which span is wrong.
    return all(
        len(sp.trace_id) == 16
        and len(sp.span_id) == 8
        and len(sp.parent_span_id) in (0, 8)
        and sp.trace_id != _ZERO_TRACE
        and sp.span_id != _ZERO_SPAN
        and not sp.links
        for sp in spans
    )


def _check_traces(request: ExportTraceServiceRequest) -> tuple[int, int, str]:
    kept = rejected = 0
    first = ""
    for r, rs in enumerate(request.resource_spans):
        for s, ss in enumerate(rs.scope_spans):
            if _spans_look_valid(ss.spans):
                kept += len(ss.spans)
                continue
            k, bad, problem = _filter(ss.spans, f"resource_spans[{r}].scope_spans[{s}].spans", _span_problem)
            kept += k
            rejected += bad
            first = first or problem
    return kept, rejected, first


def _check_logs(request: ExportLogsServiceRequest) -> tuple[int, int, str]:
    kept = rejected = 0
    first = ""
    for r, rl in enumerate(request.resource_logs):
        for s, sl in enumerate(rl.scope_logs):
            where = f"resource_logs[{r}].scope_logs[{s}].log_records"
            k, bad, problem = _filter(sl.log_records, where, _log_problem)
            kept += k
            rejected += bad
            first = first or problem
    return kept, rejected, first


def _check_metrics(request: ExportMetricsServiceRequest) -> tuple[int, int, str]:
    kept = rejected = 0
    first = ""
    for r, rm in enumerate(request.resource_metrics):
        for s, sm in enumerate(rm.scope_metrics):
            for m, metric in enumerate(sm.metrics):
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                points = getattr(metric, kind).data_points
                where = f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}].{kind}.data_points"
                if kind == "summary":
                    kept += len(points)
                    continue
                k, bad, problem = _filter(points, where, lambda p: _exemplar_problem(p.exemplars))
                kept += k
                rejected += bad
                first = first or problem
    return kept, rejected, first


_CHECKERS: dict[str, Callable[[Message], tuple[int, int, str]]] = {
    "traces": _check_traces,  # type: ignore[dict-item]
    "logs": _check_logs,  # type: ignore[dict-item]
    "metrics": _check_metrics,  # type: ignore[dict-item]
}


def response(signal: str, rejected: int = 0, message: str = "") -> Message:
    """The Export*ServiceResponse for a request, with partial_success when items were rejected."""
    reply = RESPONSES[signal]()
    if rejected or message:
        setattr(reply.partial_success, REJECTED_FIELD[signal], rejected)
        reply.partial_success.error_message = message
    return reply
