"""Reading HTTP request bodies safely: size limits before and after gzip, and typed refusals."""

from __future__ import annotations

import zlib

from google.rpc import code_pb2
from starlette.requests import Request


class Reject(Exception):
    """A request refused with an HTTP status, a google.rpc code and a message."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Reject(
            413, code_pb2.INVALID_ARGUMENT, f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Reject(413, code_pb2.INVALID_ARGUMENT, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body; 413 past ``limit`` bytes, 400 when it is not valid gzip."""
    # Decompress at most limit+1 bytes, so a small bomb cannot expand into memory.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Reject(400, code_pb2.INVALID_ARGUMENT, f"body is not valid gzip: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise Reject(413, code_pb2.INVALID_ARGUMENT, f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise Reject(400, code_pb2.INVALID_ARGUMENT, "body is not valid gzip: truncated stream")
    return out
