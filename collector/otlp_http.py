"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs``.

Protobuf or JSON bodies, optionally gzip, zstd or deflate; answers as the OTLP specification says,
in the encoding of the request. A request is answered 200 only after its data is in the write-ahead
log; one whose body has not arrived within ``body_timeout_seconds`` is answered 408, and one whose
client leaves before sending all of it is logged on one line and counted
(``sloscope_requests_aborted_total``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector import decode, otlp_json
from collector.auth import IngestAuth, RateLimited, Unauthenticated
from collector.http_body import DEFAULT_BODY_TIMEOUT, Aborted, Reject, codec_for, decompress, read_body
from collector.intake import Intake, Overloaded, Unavailable

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CONTENT_TYPES = {PROTOBUF: False, "application/protobuf": False, JSON: True}


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 16 << 20
    retry_after_seconds: int = 1
    #: Seconds a client has to send its whole body (408 after); None: no deadline.
    body_timeout_seconds: float | None = DEFAULT_BODY_TIMEOUT


def _encode(message: Message, is_json: bool) -> tuple[bytes, str]:
    if is_json:
        if isinstance(message, status_pb2.Status):
            return json_format.MessageToJson(message, indent=None).encode(), JSON
        return otlp_json.response_json(message), JSON
    return message.SerializeToString(), PROTOBUF


def _auth_refusal(exc: Unauthenticated | RateLimited) -> Reject:
    if isinstance(exc, Unauthenticated):
        return Reject(401, code_pb2.UNAUTHENTICATED, exc.message, {"WWW-Authenticate": exc.challenge})
    return Reject(429, code_pb2.RESOURCE_EXHAUSTED, exc.message, {"Retry-After": str(exc.retry_after)})


def create_app(intake: Intake, limits: HttpLimits, auth: IngestAuth | None = None) -> Starlette:
    """The OTLP/HTTP application handing requests to ``intake``; with ``auth``, every request needs
    a valid token (401 before the body is read, 429 past the token's rate limit)."""
    metrics = intake.metrics
    retry = {"Retry-After": str(limits.retry_after_seconds)}

    async def export(request: Request, signal: str) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        # An unsupported type is answered in JSON: the client cannot read protobuf it did not send.
        is_json = _CONTENT_TYPES.get(content_type, True)
        try:
            # Authentication first: a request without a valid token learns nothing else and costs
            # nothing more (its body is never read).
            token = None
            if auth is not None:
                try:
                    token = auth.admit(signal, request.headers.get(auth.header))
                except (Unauthenticated, RateLimited) as exc:
                    raise _auth_refusal(exc) from None
            if content_type not in _CONTENT_TYPES:
                raise Reject(
                    415,
                    code_pb2.INVALID_ARGUMENT,
                    f"unsupported content type {content_type or '(none)'!r}: use {PROTOBUF} or {JSON}",
                )
            # An unsupported encoding is refused before the body is read: it could not be used.
            codec = codec_for(request.headers.get("content-encoding"))
            body = await read_body(request, limits.max_body_bytes, limits.body_timeout_seconds)
            body = await decompress(codec, body, limits.max_body_bytes)
            try:
                decoded = await intake.decode(signal, body, is_json)
                if auth is not None and token is not None:
                    reply = await auth.accept(intake, signal, decoded, token)
                else:
                    reply = await intake.accept(signal, decoded)
            except decode.BadRequest as exc:
                raise Reject(400, code_pb2.INVALID_ARGUMENT, str(exc)) from exc
            except RateLimited as exc:
                raise _auth_refusal(exc) from None
            except Overloaded as exc:
                raise Reject(429, code_pb2.RESOURCE_EXHAUSTED, str(exc), retry) from exc
            except Unavailable as exc:
                raise Reject(503, code_pb2.UNAVAILABLE, str(exc), retry) from exc
            content, media = _encode(reply, is_json)
            metrics.requests.labels(signal, "http", "200").inc()
            return Response(content, 200, media_type=media)
        except Reject as reject:
            metrics.requests.labels(signal, "http", str(reject.status)).inc()
            log.info(
                "export rejected", extra={"signal": signal, "status": reject.status, "reason": reject.message}
            )
            content, media = _encode(status_pb2.Status(code=reject.code, message=reject.message), is_json)
            return Response(content, reject.status, headers=reject.headers, media_type=media)
        except Aborted as aborted:
            # A client timing out or going away mid-upload is its own affair, not the server's
            # error: one line and a counter, no traceback.
            metrics.aborted.labels("otlp_http").inc()
            log.warning("export aborted by the client", extra={"signal": signal, "reason": str(aborted)})
            return Response(status_code=400)  # nobody is left to read it

    def route(signal: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await export(request, signal)

        return Route(f"/v1/{signal}", endpoint, methods=["POST"])

    return Starlette(routes=[route(signal) for signal in decode.SIGNALS])
