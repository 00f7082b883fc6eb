"""Reading HTTP request bodies safely: size limits before and after gzip, and typed refusals."""

from __future__ import annotations

import re
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


class GzipError(ValueError):
    """A gzip body that cannot be inflated; ``too_large`` when it inflates past the limit."""

    def __init__(self, problem: str, too_large: bool = False) -> None:
        super().__init__(problem)
        self.problem, self.too_large = problem, too_large


# Input is fed to zlib in pieces of this size, so that what is left over after a member (zlib
# copies it into ``unused_data``) stays small however many members a body holds.
_GZIP_CHUNK = 64 << 10
_NOT_ZERO = re.compile(b"[^\x00]")


def inflate(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body, refusing to produce more than ``limit`` bytes.

    A gzip body may hold several members, whose data is concatenated, and zero bytes may pad the
    end of each (RFC 1952, gzip(1), Python's ``gzip.decompress``): reading only the first would
    acknowledge the request and silently drop the rest. Raises GzipError naming the problem.
    """
    out = bytearray()
    view = memoryview(body)
    pos = 0
    while True:
        # At most limit+1 bytes in all, so that a small bomb cannot expand into memory.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not inflater.eof:
            if pos >= len(body):
                raise GzipError("truncated stream")
            chunk = view[pos : pos + _GZIP_CHUNK]
            pos += len(chunk)
            try:
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error as exc:
                raise GzipError(str(exc)) from exc
            if len(out) > limit or inflater.unconsumed_tail:
                raise GzipError(f"decompressed body exceeds the limit of {limit} bytes", too_large=True)
        pos -= len(inflater.unused_data)
        following = _NOT_ZERO.search(body, pos)
        if following is None:
            return bytes(out)
        pos = following.start()


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body (see ``inflate``); 413 past ``limit`` bytes, 400 when it is not valid gzip."""
    try:
        return inflate(body, limit)
    except GzipError as exc:
        if exc.too_large:
            raise Reject(413, code_pb2.INVALID_ARGUMENT, exc.problem) from None
        raise Reject(400, code_pb2.INVALID_ARGUMENT, f"body is not valid gzip: {exc.problem}") from None
