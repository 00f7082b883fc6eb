"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.{trace,metrics,logs}.v1.*Service/Export``.

The handlers take the request bytes as received (no deserializer), so ``Intake`` stores the
original protobuf and keeps its trimmed-parse fast path. An export is answered only after its data
is in the write-ahead log. Status codes follow the OTLP specification:

* INVALID_ARGUMENT with the parser's message for a request that does not parse;
* RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` when the queue is full;
* UNAVAILABLE (also with RetryInfo) when the log cannot take data;
* RESOURCE_EXHAUSTED for a message over ``max_message_bytes`` (grpc's own check on the wire size,
  ours on the size after gzip);
* OK with ``partial_success`` when some items were rejected;
* with ingest authentication (``auth``): UNAUTHENTICATED without a valid token in the metadata
  (checked before the request is inflated or decoded), RESOURCE_EXHAUSTED with the token bucket's
  own RetryInfo delay past the token's rate limit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from collector import decode
from collector.auth import IngestAuth, RateLimited, Unauthenticated
from collector.http_body import GzipError, inflate
from collector.intake import Intake, Overloaded, Unavailable

log = logging.getLogger(__name__)

#: gRPC service of each signal; each has one method, ``Export``
SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}

#: the standard trailer holding a serialized ``google.rpc.Status`` with its details
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: the trailer the OpenTelemetry Python exporter reads the retry delay from (it ignores the above)
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"

_GZIP_MAGIC = b"\x1f\x8b"
# Inflating more than this is worth the hop to a worker thread, off the event loop.
_THREAD_BYTES = 256 << 10
# We inflate requests ourselves (see create_server) and can only tell gzip from identity by the
# payload, so grpc refuses other encodings (deflate) with UNIMPLEMENTED naming the algorithm.
_ACCEPTED_COMPRESSION = (1 << grpc.Compression.NoCompression.value) | (1 << grpc.Compression.Gzip.value)


class _Refused(Exception):
    def __init__(
        self, code: grpc.StatusCode, message: str, retry: bool = False, delay: int | None = None
    ) -> None:
        # ``delay``: this refusal's own retry delay in seconds, instead of the server's default.
        super().__init__(message)
        self.code, self.message, self.retry, self.delay = code, message, retry or delay is not None, delay


def _gunzip(body: bytes, limit: int) -> bytes:
    # Every gzip member, at most limit+1 bytes in all (a small gzip bomb cannot expand into memory).
    try:
        return inflate(body, limit)
    except GzipError as exc:
        if exc.too_large:
            raise _Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request exceeds the maximum message size of {limit} bytes after gzip decompression",
            ) from None
        raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"request is not valid gzip: {exc.problem}") from None


def _trailers(code: grpc.StatusCode, message: str, retry_after: int | None) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata for a refusal: the ``google.rpc.Status``, and RetryInfo when given a delay."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_after is None:
        return ((STATUS_DETAILS_KEY, status.SerializeToString()),)
    retry_info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=retry_after))
    status.details.add().Pack(retry_info)
    return (
        (STATUS_DETAILS_KEY, status.SerializeToString()),
        (RETRY_INFO_KEY, retry_info.SerializeToString()),
    )


_Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """The value of metadata ``key`` (lower case, as gRPC delivers keys), None when absent."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


def _export_handler(
    intake: Intake, signal: str, max_message_bytes: int, retry_after: int, auth: IngestAuth | None
) -> _Handler:
    requests = intake.metrics.requests

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        token = None
        if auth is not None:
            # Before inflating or decoding anything: a request without a valid token costs nothing more.
            try:
                token = auth.admit(signal, _metadata(context, auth.header))
            except Unauthenticated as exc:
                raise _Refused(grpc.StatusCode.UNAUTHENTICATED, exc.message) from None
            except RateLimited as exc:
                raise _Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, delay=exc.retry_after
                ) from None
        body = request
        # A protobuf message never starts with 0x1f (wire type 7 does not exist): this is gzip.
        if body[:2] == _GZIP_MAGIC:
            if len(body) > _THREAD_BYTES:
                body = await asyncio.to_thread(_gunzip, body, max_message_bytes)
            else:
                body = _gunzip(body, max_message_bytes)
        try:
            decoded = await intake.decode(signal, body, False)
            if auth is not None and token is not None:
                reply = await auth.accept(intake, signal, decoded, token)
            else:
                reply = await intake.accept(signal, decoded)
        except decode.BadRequest as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        except RateLimited as exc:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, delay=exc.retry_after) from None
        except Overloaded as exc:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), retry=True) from exc
        except Unavailable as exc:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, str(exc), retry=True) from exc
        return reply.SerializeToString()

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            reply = await answer(request, context)
        except _Refused as refused:
            code, message, retry = refused.code, refused.message, refused.retry
            delay = refused.delay if refused.delay is not None else retry_after
        except Exception:
            log.exception("export failed", extra={"signal": signal})
            code, message, retry = grpc.StatusCode.INTERNAL, "internal error; see the collector's log", False
            delay = None
        else:
            requests.labels(signal, "grpc", grpc.StatusCode.OK.name).inc()
            return reply
        requests.labels(signal, "grpc", code.name).inc()
        log.info("export rejected", extra={"signal": signal, "status": code.name, "reason": message})
        # abort() raises, ending the call with this status and these trailers.
        await context.abort(code, message, _trailers(code, message, delay if retry else None))

    return export


def create_server(
    intake: Intake,
    max_message_bytes: int = 16 << 20,
    retry_after_seconds: int = 1,
    auth: IngestAuth | None = None,
) -> grpc.aio.Server:
    """The OTLP/gRPC server handing exports to ``intake``; not started, no port added yet. With
    ``auth``, every call needs a valid token in its metadata (``auth.header``).

    Call it on the event loop that will run the server (grpc.aio binds to the current loop), then
    ``await start(server, host, port)``; stop it with ``await server.stop(grace)``. Keep a
    reference to it: grpc.aio shuts down a server that is garbage collected.
    """
    if max_message_bytes < 1:
        raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
    options = [
        # grpc's default receive limit is 4 MiB; OTLP batches can be larger.
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # grpc sets SO_REUSEPORT by default: a second server on a taken port would then start and
        # silently share its connections instead of failing.
        ("grpc.so_reuseport", 0),
        # grpc's own inflating refuses an oversized result only with "Decompressed message larger
        # than max" (no sizes); we inflate in the handler instead, bounded, with a message naming
        # the limit. grpc still checks the compressed size on the wire.
        ("grpc.per_message_decompression", 0),
        ("grpc.compression_enabled_algorithms_bitset", _ACCEPTED_COMPRESSION),
    ]
    server = grpc.aio.server(options=options)
    handlers = tuple(
        grpc.method_handlers_generic_handler(
            SERVICES[signal],
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    _export_handler(intake, signal, max_message_bytes, retry_after_seconds, auth),
                    request_deserializer=None,  # the raw bytes, stored as received
                    response_serializer=None,  # the handler serializes its reply itself
                )
            },
        )
        for signal in decode.SIGNALS
    )
    server.add_generic_rpc_handlers(handlers)
    return server


def _bind_problem(host: str, port: int) -> str:
    # grpc says only that binding failed; the operating system's reason is worth showing.
    try:
        with socket.create_server((host, port)):
            return "grpc could not bind it"
    except OSError as exc:
        return exc.strerror or str(exc)


async def start(
    server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None = None
) -> int:
    """Listen on ``host:port`` (port 0 picks a free one), start ``server`` and return the bound port.

    With ``credentials`` (``grpc.ssl_server_credentials``) the port speaks TLS only, and requires
    client certificates if the credentials say so; without, plaintext. Raises OSError naming the
    address when it cannot be bound.
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is not None:
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc 1.85 raises "Failed to bind to address ..."; older ones return 0
        bound = 0
    if not bound:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}: {_bind_problem(host, port)}")
    await server.start()
    return bound
