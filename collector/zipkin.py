"""Zipkin v2 receiver: ``POST /api/v2/spans`` with a JSON list of spans, optionally gzip, zstd or deflate.

Zipkin spans are converted into an OTLP ``ExportTraceServiceRequest`` and handed to the same accept
path as OTLP exports, so checks, write-ahead log, storage and acknowledgement are identical. The
mapping follows the OpenTelemetry Collector's Zipkin receiver (``pkg/translator/zipkin/zipkinv2``);
where sloscope differs, the comment at the code says so. Zipkin is not the hot path: the conversion
is plain Python.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from collector import decode
from collector.auth import IngestAuth, RateLimited, Unauthenticated
from collector.http_body import DEFAULT_BODY_TIMEOUT, Aborted, Reject, codec_for, decompress, read_body
from collector.intake import Intake, Overloaded, Unavailable

log = logging.getLogger(__name__)

JSON = "application/json"

_HEX = re.compile(r"[0-9a-fA-F]+")
_MAX_MICROS = (1 << 64) // 1000 - 1  # larger values overflow uint64 nanoseconds

_KINDS = {
    "CLIENT": Span.SPAN_KIND_CLIENT,
    "SERVER": Span.SPAN_KIND_SERVER,
    "PRODUCER": Span.SPAN_KIND_PRODUCER,
    "CONSUMER": Span.SPAN_KIND_CONSUMER,
}
# Names the OpenTelemetry Zipkin exporters have written into ``otel.status_code`` over time.
_STATUS_CODES = {
    "UNSET": Status.STATUS_CODE_UNSET,
    "OK": Status.STATUS_CODE_OK,
    "ERROR": Status.STATUS_CODE_ERROR,
    "STATUS_CODE_UNSET": Status.STATUS_CODE_UNSET,
    "STATUS_CODE_OK": Status.STATUS_CODE_OK,
    "STATUS_CODE_ERROR": Status.STATUS_CODE_ERROR,
}

#: Span attributes the endpoints become (the collector's current network conventions).
LOCAL_ADDRESS = "network.local.address"
LOCAL_PORT = "network.local.port"
PEER_ADDRESS = "network.peer.address"
PEER_PORT = "network.peer.port"
PEER_SERVICE = "service.peer.name"
#: Span attributes keeping what OTLP has no field for.
SHARED = "zipkin.shared"
DEBUG = "zipkin.debug"
START_ABSENT = "otel.zipkin.absentField.startTime"

AttributeValue = str | int | bool


class ZipkinError(ValueError):
    """The body is not a valid Zipkin v2 JSON list of spans; the message names the span and field."""


def parse(body: bytes) -> ExportTraceServiceRequest:
    """Parse a Zipkin v2 JSON body into an OTLP trace request, or raise ZipkinError."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ZipkinError(f"body is not valid JSON: {exc}") from exc
    return to_request(document)


def to_request(document: Any) -> ExportTraceServiceRequest:
    """Map a decoded Zipkin v2 JSON document (a list of span objects) onto an OTLP trace request.

    Spans are grouped into one resource per local service name and one scope per instrumentation
    library tag, in the order they first appear.
    """
    if not isinstance(document, list):
        raise ZipkinError(f"body must be a JSON list of spans, got {_kind_of(document)}")
    request = ExportTraceServiceRequest()
    scopes: dict[tuple[str, str, str], ScopeSpans] = {}
    resources: dict[str, ResourceSpans] = {}
    for index, item in enumerate(document):
        where = f"spans[{index}]"
        if not isinstance(item, dict):
            raise ZipkinError(f"{where} must be an object, got {_kind_of(item)}")
        service, scope_name, scope_version, span = _span(item, where)
        resource = resources.get(service)
        if resource is None:
            resource = resources[service] = request.resource_spans.add()
            if service:
                # Without a local service name the resource stays without service.name, as in the
                # collector; the store then files the spans under "unknown_service".
                resource.resource.attributes.add(key="service.name").value.string_value = service
        key = (service, scope_name, scope_version)
        scope = scopes.get(key)
        if scope is None:
            scope = scopes[key] = resource.scope_spans.add()
            scope.scope.name, scope.scope.version = scope_name, scope_version
        scope.spans.append(span)
    return request


def _span(item: Mapping[str, Any], where: str) -> tuple[str, str, str, Span]:
    """One Zipkin span as (local service, scope name, scope version, OTLP span)."""
    trace_id = _hex_id(item.get("traceId"), (16, 32), f"{where}.traceId", required=True)
    span_id = _hex_id(item.get("id"), (16,), f"{where}.id", required=True)
    parent_id = _hex_id(item.get("parentId"), (16,), f"{where}.parentId", required=False)
    # A span naming itself as parent is a root (the collector drops that parent too); so is one whose
    # parent is all zeros, which B3 and Zipkin use for "no parent".
    if parent_id in (span_id, bytes(8)):
        parent_id = b""
    span = Span(
        trace_id=trace_id.rjust(16, b"\x00"),  # 64-bit trace ids are the low half of 128 bits
        span_id=span_id,
        parent_span_id=parent_id,
        name=_string(item.get("name"), f"{where}.name"),
    )
    tags = _tags(item.get("tags"), f"{where}.tags")
    span.kind = _kind(item.get("kind"), tags, f"{where}.kind")
    scope_name = tags.pop("otel.scope.name", "") or tags.pop("otel.library.name", "")
    scope_version = tags.pop("otel.scope.version", "") or tags.pop("otel.library.version", "")
    tags.pop("otel.library.name", None)
    tags.pop("otel.library.version", None)
    span.trace_state = tags.pop("w3c.tracestate", "")
    _status(tags, span.status)

    attributes: dict[str, AttributeValue] = dict(tags)
    service = ""
    local = _endpoint(item.get("localEndpoint"), f"{where}.localEndpoint")
    if local is not None:
        service, address, port = local
        _put_address(attributes, LOCAL_ADDRESS, LOCAL_PORT, address, port)
    remote = _endpoint(item.get("remoteEndpoint"), f"{where}.remoteEndpoint")
    if remote is not None:
        peer, address, port = remote
        if peer:
            attributes[PEER_SERVICE] = peer
        _put_address(attributes, PEER_ADDRESS, PEER_PORT, address, port)
    if _flag(item.get("shared"), f"{where}.shared"):
        attributes[SHARED] = True
    if _flag(item.get("debug"), f"{where}.debug"):
        attributes[DEBUG] = True

    start = _micros(item.get("timestamp"), f"{where}.timestamp")
    duration = _micros(item.get("duration"), f"{where}.duration") or 0
    if start is None:
        # Zipkin allows a span without a start (reported in parts); like the collector, start it at
        # the Unix epoch and say so, rather than invent a time.
        start = 0
        attributes[START_ABSENT] = True
    if start + duration > _MAX_MICROS:
        raise ZipkinError(f"{where}.timestamp + duration is out of range")
    span.start_time_unix_nano = start * 1000
    span.end_time_unix_nano = (start + duration) * 1000
    for key, value in attributes.items():
        _add_attribute(span.attributes.add(key=key), value)
    _annotations(item.get("annotations"), span, f"{where}.annotations")
    return service, scope_name, scope_version, span


def _status(tags: dict[str, str], status: Status) -> None:
    """Set the span status from ``otel.status_*`` and ``error`` tags, removing the ones consumed."""
    code_name = tags.get("otel.status_code")
    if code_name is not None and code_name.upper() in _STATUS_CODES:
        # An unknown code stays an attribute (the collector would silently turn it into UNSET).
        status.code = _STATUS_CODES[code_name.upper()]
        del tags["otel.status_code"]
        status.message = tags.pop("otel.status_description", "")
    if "error" in tags:
        # Zipkin marks a failed span with an ``error`` tag, whatever its value. As in the collector,
        # the bare "true" is dropped and a message is kept as an attribute; sloscope also makes the
        # message the status message, so the UI shows it where it shows OTLP errors.
        status.code = Status.STATUS_CODE_ERROR
        value = tags["error"]
        if value == "true":
            del tags["error"]
        elif value and not status.message:
            status.message = value


def _kind(value: Any, tags: dict[str, str], where: str) -> int:
    if value is None:
        # No kind is UNSPECIFIED, as in the collector; its own Zipkin exporter marks INTERNAL spans
        # with a ``span.kind`` tag instead.
        hint = tags.pop("span.kind", None)
        return Span.SPAN_KIND_INTERNAL if hint == "internal" else Span.SPAN_KIND_UNSPECIFIED
    if not isinstance(value, str) or value.upper() not in _KINDS:
        raise ZipkinError(f"{where} must be one of CLIENT, SERVER, PRODUCER, CONSUMER, got {_show(value)}")
    return _KINDS[value.upper()]


def _hex_id(value: Any, lengths: tuple[int, ...], where: str, required: bool) -> bytes:
    if value is None or value == "":
        if required:
            raise ZipkinError(f"{where} is required")
        return b""
    if not isinstance(value, str):
        raise ZipkinError(f"{where} must be a hex string, got {_kind_of(value)}")
    if len(value) not in lengths:
        digits = " or ".join(str(n) for n in lengths)
        raise ZipkinError(f"{where} must be {digits} hex digits, got {len(value)}: {_show(value)}")
    if not _HEX.fullmatch(value):
        raise ZipkinError(f"{where} is not hexadecimal: {_show(value)}")
    return bytes.fromhex(value)


def _micros(value: Any, where: str) -> int | None:
    """A Zipkin time or duration in microseconds (None when absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ZipkinError(f"{where} must be an integer number of microseconds, got {_show(value)}")
    if value < 0 or value > _MAX_MICROS:
        raise ZipkinError(f"{where} is out of range: {value}")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ZipkinError(f"{where} must be a string, got {_kind_of(value)}")
    return _utf8(value, where)


def _utf8(text: str, where: str) -> str:
    """``text``, refused when UTF-8 cannot encode it: JSON's ``"\\ud800"`` escapes decode to lone
    surrogates, which protobuf strings cannot hold."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise ZipkinError(f"{where} is not valid Unicode text: {exc.reason} at character {exc.start}") from None
    return text


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ZipkinError(f"{where} must be true or false, got {_show(value)}")
    return value


def _tags(value: Any, where: str) -> dict[str, str]:
    """Zipkin tags are strings; numbers and booleans are taken as their JSON text, as Zipkin does."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ZipkinError(f"{where} must be an object of strings, got {_kind_of(value)}")
    tags = {}
    for key, tag in value.items():
        _utf8(key, f"{where} key {_show(key)}")
        if isinstance(tag, str):
            tags[key] = _utf8(tag, f"{where}[{key!r}]")
        elif isinstance(tag, bool | int | float):
            tags[key] = json.dumps(tag)
        elif tag is not None:
            raise ZipkinError(f"{where}[{key!r}] must be a string, got {_kind_of(tag)}")
    return tags


def _endpoint(value: Any, where: str) -> tuple[str, str, int] | None:
    """(service name, address, port) of an endpoint; "" and 0 where absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ZipkinError(f"{where} must be an object, got {_kind_of(value)}")
    service = _string(value.get("serviceName"), f"{where}.serviceName")
    address = ""
    ipv4 = _string(value.get("ipv4"), f"{where}.ipv4")
    if ipv4:
        try:
            address = str(ipaddress.IPv4Address(ipv4))
        except ValueError as exc:
            raise ZipkinError(f"{where}.ipv4 is not an IPv4 address: {_show(ipv4)}") from exc
    ipv6 = _string(value.get("ipv6"), f"{where}.ipv6")
    if ipv6:
        try:
            parsed = ipaddress.IPv6Address(ipv6)
        except ValueError as exc:
            raise ZipkinError(f"{where}.ipv6 is not an IPv6 address: {_show(ipv6)}") from exc
        # As in the collector the IPv6 address wins when both are given; an IPv4-mapped one is
        # written as the IPv4 address it maps.
        address = str(parsed.ipv4_mapped or parsed)
    port = value.get("port")
    if port is None:
        port = 0
    elif isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ZipkinError(f"{where}.port must be an integer from 0 to 65535, got {_show(port)}")
    return service, address, port


def _put_address(
    attributes: dict[str, AttributeValue], key: str, port_key: str, address: str, port: int
) -> None:
    if address:
        attributes[key] = address
    if port > 0:
        attributes[port_key] = port


def _annotations(value: Any, span: Span, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise ZipkinError(f"{where} must be a list, got {_kind_of(value)}")
    for index, annotation in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(annotation, dict):
            raise ZipkinError(f"{at} must be an object, got {_kind_of(annotation)}")
        timestamp = _micros(annotation.get("timestamp"), f"{at}.timestamp")
        if timestamp is None:
            raise ZipkinError(f"{at}.timestamp is required")
        name = _string(annotation.get("value"), f"{at}.value")
        span.events.add(time_unix_nano=timestamp * 1000, name=name)


def _add_attribute(kv: KeyValue, value: AttributeValue) -> None:
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def _kind_of(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def convert(body: bytes, retention_days: int = 0) -> decode.Decoded:
    """Parse, map and check a Zipkin body: what ``Intake.accept`` takes. Raises ZipkinError."""
    return decode.check("traces", parse(body), None, retention_days)


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _auth_refusal(exc: Unauthenticated | RateLimited) -> _Refused:
    if isinstance(exc, Unauthenticated):
        return _Refused(401, exc.message, {"WWW-Authenticate": exc.challenge})
    return _Refused(429, exc.message, {"Retry-After": str(exc.retry_after)})


def create_app(
    intake: Intake,
    max_body_bytes: int = 16 << 20,
    retry_after_seconds: int = 1,
    auth: IngestAuth | None = None,
    body_timeout_seconds: float | None = DEFAULT_BODY_TIMEOUT,
) -> Starlette:
    """The Zipkin v2 application (``POST /api/v2/spans``) handing spans to ``intake``.

    Answers 202 once the spans are in the write-ahead log, 400 with a plain-text message naming the
    problem, 408 for a body not all received within ``body_timeout_seconds``, 413 for a body over
    ``max_body_bytes`` (before or after gzip, zstd or deflate), 415 for anything but JSON, and 429
    or 503 with Retry-After when the data cannot be taken now. With ``auth``, 401 without a valid
    token (before the body is read) and 429 past the token's rate limit.
    """
    metrics = intake.metrics
    retry = {"Retry-After": str(retry_after_seconds)}

    def refused(refusal: _Refused) -> Response:
        metrics.requests.labels("traces", "zipkin", str(refusal.status)).inc()
        log.info("zipkin spans refused", extra={"status": refusal.status, "reason": refusal.message})
        return PlainTextResponse(refusal.message + "\n", refusal.status, headers=refusal.headers)

    async def spans_v2(request: Request) -> Response:
        try:
            token = None
            if auth is not None:
                try:
                    token = auth.admit("traces", request.headers.get(auth.header))
                except (Unauthenticated, RateLimited) as exc:
                    raise _auth_refusal(exc) from None
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            # Zipkin reporters often send no content type at all; Zipkin itself reads that as JSON.
            if content_type not in (JSON, ""):
                raise _Refused(
                    415,
                    f"unsupported content type {content_type!r}: only Zipkin v2 JSON ({JSON}) is supported",
                )
            try:
                codec = codec_for(request.headers.get("content-encoding"))
                body = await read_body(request, max_body_bytes, body_timeout_seconds)
                body = await decompress(codec, body, max_body_bytes)
            except Reject as exc:
                raise _Refused(exc.status, exc.message, exc.headers) from exc
            except Aborted as aborted:
                # The client's own affair, not the server's error: one line and a counter.
                metrics.aborted.labels("zipkin").inc()
                log.warning("zipkin spans aborted by the client", extra={"reason": str(aborted)})
                return Response(status_code=400)  # nobody is left to read it
            try:
                decoded = await run_in_threadpool(convert, body, intake.retention_days)
            except ZipkinError as exc:
                raise _Refused(400, str(exc)) from exc
            if decoded.rejected and not decoded.items:
                # Zipkin has no partial success; when nothing at all is kept the client is told why.
                await intake.accept("traces", decoded)  # counts the refusals
                raise _Refused(400, decoded.message)
            try:
                if auth is not None and token is not None:
                    await auth.accept(intake, "traces", decoded, token)
                else:
                    await intake.accept("traces", decoded)
            except RateLimited as exc:
                raise _auth_refusal(exc) from None
            except Overloaded as exc:
                raise _Refused(429, str(exc), retry) from exc
            except Unavailable as exc:
                raise _Refused(503, str(exc), retry) from exc
        except _Refused as refusal:
            return refused(refusal)
        if decoded.rejected:
            # Zipkin has no partial success: the client sees 202; the metric and this log tell.
            log.warning(
                "zipkin spans rejected", extra={"rejected": decoded.rejected, "reason": decoded.message}
            )
        metrics.requests.labels("traces", "zipkin", "202").inc()
        return Response(status_code=202)

    async def spans_v1(request: Request) -> Response:
        return refused(
            _Refused(415, "Zipkin v1 (Thrift or JSON) is not supported: send Zipkin v2 JSON to /api/v2/spans")
        )

    return Starlette(
        routes=[
            Route("/api/v2/spans", spans_v2, methods=["POST"]),
            Route("/api/v1/spans", spans_v1, methods=["POST"]),
        ]
    )
