"""Parse and check OTLP export requests before they are acknowledged.

Only what could make the engine refuse a batch later is checked here (id lengths), and what the
store would drop at once (items older than the retention); the items that fail are removed and
reported through ``partial_success``, so one bad span never blocks the queue and nothing is
acknowledged only to vanish. The walk touches ids and times only: values, attributes and events are
decoded by ClickHouse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

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
    #: of ``rejected``, the items older than the retention
    expired: int = 0


class _Expired(str):
    """A problem that is the item's age: counted apart from malformed items."""


def _horizon(retention_days: int) -> tuple[int, int]:
    """(oldest time kept in ns, days); 0 when data is kept for ever."""
    if retention_days <= 0:
        return 0, 0
    return time.time_ns() - retention_days * 86_400 * 10**9, retention_days


def _age_problem(name: str, ns: int, horizon: tuple[int, int]) -> str | None:
    oldest, days = horizon
    if ns >= oldest:
        return None
    when = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _Expired(f"{name} {when} is older than the retention of {days} days: it would be deleted at once")


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


def check(signal: str, request: Message, original: bytes | None, retention_days: int = 0) -> Decoded:
    """Count the items, drop the invalid ones and those older than ``retention_days`` (0: none), and
    return what to store.

    ``original`` is the protobuf body as received; it is stored unchanged when nothing was dropped.
    """
    tally = _Tally()
    _CHECKERS[signal](request, tally, _horizon(retention_days))
    if tally.rejected:
        payload = request.SerializeToString()
        message = f"{tally.rejected} of {tally.kept + tally.rejected} {_NOUN[signal]} rejected; first: {tally.first}"
        return Decoded(payload, tally.kept, tally.rejected, message, tally.expired)
    return Decoded(original if original is not None else request.SerializeToString(), tally.kept, 0)


class _Tally:
    """What a check found: items kept and removed, the first problem, how many were too old."""

    def __init__(self) -> None:
        self.kept = self.rejected = self.expired = 0
        self.first = ""


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


def _span_problem(span, horizon: tuple[int, int]) -> str | None:  # noqa: ANN001 - a generated Span
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
    return problem or _age_problem("start_time_unix_nano", span.start_time_unix_nano, horizon)


def _log_problem(record, horizon: tuple[int, int]) -> str | None:  # noqa: ANN001 - a generated LogRecord
    tid, sid = record.trace_id, record.span_id
    if not (len(tid) in (0, 16) and len(sid) in (0, 8)):
        return _id_problem(tid, 16, "trace_id", False) or _id_problem(sid, 8, "span_id", False)
    # The store dates a record by its time, else by when it was observed.
    if record.time_unix_nano:
        return _age_problem("time_unix_nano", record.time_unix_nano, horizon)
    return _age_problem("observed_time_unix_nano", record.observed_time_unix_nano, horizon)


def _point_problem(point, horizon: tuple[int, int]) -> str | None:  # noqa: ANN001 - a data point
    return _exemplar_problem(point.exemplars) or _age_problem("time_unix_nano", point.time_unix_nano, horizon)


def _exemplar_problem(exemplars) -> str | None:  # noqa: ANN001 - repeated Exemplar
    for ex in exemplars:
        problem = _id_problem(ex.trace_id, 16, "exemplars.trace_id", False) or _id_problem(
            ex.span_id, 8, "exemplars.span_id", False
        )
        if problem:
            return problem
    return None


def _filter(container, where: str, problem_of: Callable, tally: _Tally) -> None:  # noqa: ANN001
    """Remove the items of a repeated field that have a problem, and count them in ``tally``."""
    bad = []
    for index, item in enumerate(container):
        problem = problem_of(item)
        if problem:
            if not tally.first:
                tally.first = f"{where}[{index}]: {problem}"
            tally.expired += isinstance(problem, _Expired)
            bad.append(index)
    for index in reversed(bad):
        del container[index]
    tally.kept += len(container)
    tally.rejected += len(bad)


def _spans_look_valid(spans, oldest: int) -> bool:  # noqa: ANN001 - repeated Span
    # One pass in a generator is several times cheaper than a call per span; the rare request that
    # fails it is walked again to say which span is wrong.
    return all(
        len(sp.trace_id) == 16
        and len(sp.span_id) == 8
        and len(sp.parent_span_id) in (0, 8)
        and sp.trace_id != _ZERO_TRACE
        and sp.span_id != _ZERO_SPAN
        and not sp.links
        and sp.start_time_unix_nano >= oldest
        for sp in spans
    )


def _check_traces(request: ExportTraceServiceRequest, tally: _Tally, horizon: tuple[int, int]) -> None:
    for r, rs in enumerate(request.resource_spans):
        for s, ss in enumerate(rs.scope_spans):
            if _spans_look_valid(ss.spans, horizon[0]):
                tally.kept += len(ss.spans)
                continue
            where = f"resource_spans[{r}].scope_spans[{s}].spans"
            _filter(ss.spans, where, lambda span: _span_problem(span, horizon), tally)


def _check_logs(request: ExportLogsServiceRequest, tally: _Tally, horizon: tuple[int, int]) -> None:
    for r, rl in enumerate(request.resource_logs):
        for s, sl in enumerate(rl.scope_logs):
            where = f"resource_logs[{r}].scope_logs[{s}].log_records"
            _filter(sl.log_records, where, lambda record: _log_problem(record, horizon), tally)


def _check_metrics(request: ExportMetricsServiceRequest, tally: _Tally, horizon: tuple[int, int]) -> None:
    for r, rm in enumerate(request.resource_metrics):
        for s, sm in enumerate(rm.scope_metrics):
            for m, metric in enumerate(sm.metrics):
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                points = getattr(metric, kind).data_points
                where = f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}].{kind}.data_points"
                if kind == "summary":  # no exemplars
                    _filter(
                        points,
                        where,
                        lambda p: _age_problem("time_unix_nano", p.time_unix_nano, horizon),
                        tally,
                    )
                else:
                    _filter(points, where, lambda p: _point_problem(p, horizon), tally)


_CHECKERS: dict[str, Callable[[Message, _Tally, tuple[int, int]], None]] = {
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
