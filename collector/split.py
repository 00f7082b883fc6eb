"""Halve an export request by its items, to find the few items the engine refuses.

The receiver checks ids and times only; a value malformed deep inside an attribute (a wrong wire
type, an out-of-range histogram offset) is found by the engine when it refuses the whole request.
The flusher then writes the request in halves, and halves of the halves that are refused, until the
refused items stand alone: every other item is stored. Traces and logs are parsed with the trimmed
classes, which keep attributes as unread bytes, so a request whose attributes the full classes could
not even parse still splits and re-serialises exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector import trimmed


def _span_lists(request: Any) -> Iterator[Any]:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            yield ss.spans


def _record_lists(request: Any) -> Iterator[Any]:
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            yield sl.log_records


def _point_lists(request: Any) -> Iterator[Any]:
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    yield getattr(metric, kind).data_points


_CLASSES: dict[str, type[Message]] = {**trimmed.REQUESTS, "metrics": ExportMetricsServiceRequest}
_ITEMS: dict[str, Callable[[Any], Iterator[Any]]] = {
    "traces": _span_lists,
    "logs": _record_lists,
    "metrics": _point_lists,
}


def count(signal: str, payload: bytes) -> int:
    """The items in a request (1 when it cannot be parsed: it is one unit then)."""
    try:
        request = _CLASSES[signal].FromString(payload)
    except DecodeError:
        return 1
    return sum(len(items) for items in _ITEMS[signal](request))


def halves(signal: str, payload: bytes) -> tuple[bytes, bytes] | None:
    """The request as two requests of about half its items each, in order; None when it holds one
    item or fewer, or cannot be parsed (it cannot be split then)."""
    try:
        request = _CLASSES[signal].FromString(payload)
    except DecodeError:
        return None
    total = sum(len(items) for items in _ITEMS[signal](request))
    if total < 2:
        return None
    middle = total // 2
    return _keep(signal, payload, 0, middle), _keep(signal, payload, middle, total)


def _keep(signal: str, payload: bytes, start: int, stop: int) -> bytes:
    """The request with only its items numbered ``start`` to ``stop - 1`` (counted across lists)."""
    request = _CLASSES[signal].FromString(payload)
    seen = 0
    for items in _ITEMS[signal](request):
        n = len(items)
        keep_from, keep_to = max(start - seen, 0), min(stop - seen, n)
        if keep_to <= keep_from:
            del items[:]
        else:
            del items[keep_to:]
            del items[:keep_from]
        seen += n
    return request.SerializeToString()
