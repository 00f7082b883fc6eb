"""Reading HTTP request bodies safely: size limits before and after decompression, a deadline for
the upload, and typed refusals."""

from __future__ import annotations

import asyncio

from google.rpc import code_pb2
from starlette.requests import ClientDisconnect, Request

from collector import compression
from collector.compression import DecompressionError


class Reject(Exception):
    """A request refused with an HTTP status, a google.rpc code and a message."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Aborted(Exception):
    """The client closed the connection before its whole body arrived: there is no one to answer."""

    def __init__(self, received: int, declared: str | None) -> None:
        super().__init__(f"client disconnected after {received} of {declared or 'unknown'} body bytes")
        self.received, self.declared = received, declared


#: Seconds a client has to send a request body once its headers are in (``body_read_timeout``).
DEFAULT_BODY_TIMEOUT = 30.0


async def read_body(request: Request, limit: int, timeout: float | None = DEFAULT_BODY_TIMEOUT) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed), and
    with 408 when it has not all arrived ``timeout`` seconds after its headers (None: no deadline).

    The deadline is for the whole body, not between pieces of it: a client trickling a byte now
    and then would otherwise hold its connection and buffers for ever. The 408 closes the
    connection (the rest of the body may still be on its way). Raises Aborted when the client
    disconnects first.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Reject(
            413, code_pb2.INVALID_ARGUMENT, f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Reject(
                        413, code_pb2.INVALID_ARGUMENT, f"request body exceeds the limit of {limit} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        of = f" of {declared}" if declared is not None else ""
        raise Reject(
            408,
            code_pb2.DEADLINE_EXCEEDED,
            f"request body not received within {timeout:g} s ({size}{of} bytes arrived)",
            {"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise Aborted(size, declared) from None
    return b"".join(chunks)


# The names collector/otlp_grpc.py inflates gzip messages with.
GzipError = DecompressionError
inflate = compression.gunzip

# Inflating a larger body is worth the hop to a worker thread: a body of many tiny gzip members
# (or a bomb inflating to the limit) costs seconds of CPU, and inline it would stall every
# listener on the event loop. Smaller ones cost less than the hop (at most a few milliseconds).
_THREAD_BYTES = 64 << 10


def codec_for(content_encoding: str | None) -> str | None:
    """The codec (collector.compression) of a ``Content-Encoding`` header, None for identity;
    415 naming the encodings accepted for anything else."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    codec = compression.ENCODINGS.get(encoding)
    if codec is None:
        raise Reject(
            415,
            code_pb2.INVALID_ARGUMENT,
            f"unsupported content encoding {encoding!r}: use gzip, zstd or deflate",
        )
    return codec


def _decompress(codec: str, body: bytes, limit: int) -> bytes:
    try:
        return compression.decompress(codec, body, limit)
    except DecompressionError as exc:
        if exc.too_large:
            raise Reject(413, code_pb2.INVALID_ARGUMENT, exc.problem) from None
        raise Reject(400, code_pb2.INVALID_ARGUMENT, f"body is not valid {codec}: {exc.problem}") from None


async def decompress(codec: str | None, body: bytes, limit: int) -> bytes:
    """``body`` decoded by ``codec`` (see ``codec_for``; None: as it is), off the event loop when
    large: 413 past ``limit`` bytes, 400 naming the problem when it is not valid ``codec``."""
    if codec is None:
        return body
    if len(body) > _THREAD_BYTES:
        return await asyncio.to_thread(_decompress, codec, body, limit)
    return _decompress(codec, body, limit)


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, inline (see ``compression.gunzip``); 413 past ``limit`` bytes, 400 when
    it is not valid gzip."""
    return _decompress(compression.GZIP, body, limit)
