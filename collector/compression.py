"""Decompressing request bodies: gzip, zstd and deflate, each bounded to a size limit.

What the OpenTelemetry Collector's HTTP receivers accept (``confighttp``): gzip, zstd and deflate
(zlib-wrapped, RFC 1950; also a bare RFC 1951 stream, which some clients send under that name).
Every decoder produces at most ``limit + 1`` bytes, whatever the body claims, so that a small bomb
is refused after inflating no more than the limit, and reads every member or frame of the body:
stopping at the first would acknowledge the request and silently drop the rest.

These are plain functions, run inline or in a worker thread by the caller (``collector.http_body``,
``collector.otlp_grpc``); they raise DecompressionError naming the problem.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

try:  # Python 3.14 has Zstandard in the standard library; the backport is the same module before.
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[import-not-found,no-redef]

GZIP = "gzip"
ZSTD = "zstd"
DEFLATE = "deflate"

#: ``Content-Encoding`` values (lower case) and the codec each names. ``x-gzip`` is gzip's old name
#: (RFC 9110); ``zlib`` is what the Collector's own clients may send for zlib-wrapped deflate.
ENCODINGS = {"gzip": GZIP, "x-gzip": GZIP, "zstd": ZSTD, "deflate": DEFLATE, "zlib": DEFLATE}


class DecompressionError(ValueError):
    """A body that cannot be decompressed; ``too_large`` when it inflates past the limit."""

    def __init__(self, problem: str, too_large: bool = False) -> None:
        super().__init__(problem)
        self.problem, self.too_large = problem, too_large


def _too_large(limit: int) -> DecompressionError:
    return DecompressionError(f"decompressed body exceeds the limit of {limit} bytes", too_large=True)


# Input is fed to the decoders in pieces of this size, so that what is left over after a member
# (copied into ``unused_data``) stays small however many members a body holds.
_CHUNK = 64 << 10
_NOT_ZERO = re.compile(b"[^\x00]")


def gunzip(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body, refusing to produce more than ``limit`` bytes.

    A gzip body may hold several members, whose data is concatenated, and zero bytes may pad the
    end of each (RFC 1952, gzip(1), Python's ``gzip.decompress``).
    """
    out = bytearray()
    pos = 0
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pos = _inflate_stream(inflater, body, pos, out, limit)
        following = _NOT_ZERO.search(body, pos)
        if following is None:
            return bytes(out)
        pos = following.start()


def _inflate_stream(inflater: Any, body: bytes, pos: int, out: bytearray, limit: int) -> int:
    """Feed ``body`` from ``pos`` to ``inflater`` until its stream ends, appending to ``out`` and
    refusing past ``limit`` bytes; return where the stream's compressed data ended."""
    view = memoryview(body)
    while not inflater.eof:
        if pos >= len(body):
            raise DecompressionError("truncated stream")
        chunk = view[pos : pos + _CHUNK]
        pos += len(chunk)
        try:
            out += inflater.decompress(chunk, limit + 1 - len(out))
        except zlib.error as exc:
            raise DecompressionError(str(exc)) from exc
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
    return pos - len(inflater.unused_data)


def _is_zlib_header(body: bytes) -> bool:
    """RFC 1950: method 8 (deflate), a window of at most 32 KiB, and a header check multiple of 31."""
    return len(body) >= 2 and body[0] & 0x0F == 8 and body[0] >> 4 <= 7 and (body[0] << 8 | body[1]) % 31 == 0


def inflate_deflate(body: bytes, limit: int) -> bytes:
    """A deflate body, refusing to produce more than ``limit`` bytes.

    HTTP's ``deflate`` is zlib-wrapped (RFC 9110), but some clients send the bare stream: the
    header tells them apart (a bare stream passing the zlib header check is vanishingly rare, and
    would then fail the zlib checksum: 400, never wrong data). One stream; anything after it is
    refused rather than ignored.
    """
    wbits = zlib.MAX_WBITS if _is_zlib_header(body) else -zlib.MAX_WBITS
    out = bytearray()
    trailing = len(body) - _inflate_stream(zlib.decompressobj(wbits), body, 0, out, limit)
    if trailing:
        raise DecompressionError(f"{trailing} bytes after the end of the deflate stream")
    return bytes(out)


# Zstandard frames name the window their decoder must hold (up to 2 GiB); libzstd allocates it
# before producing a byte, and its default cap is 128 MiB. No valid frame of a body within the
# limit needs a window larger than the limit itself (nothing refers back further than its own
# output), so the cap follows the limit, and never falls below 8 MiB, the window zstd's levels up
# to 19 use when they stream without knowing the size.
_MIN_WINDOW_LOG = 23
_MAX_WINDOW_LOG = 31  # zstd's own maximum on 64-bit machines


def _window_log(limit: int) -> int:
    return min(max((limit - 1).bit_length(), _MIN_WINDOW_LOG), _MAX_WINDOW_LOG)


def unzstd(body: bytes, limit: int) -> bytes:
    """Every frame of a Zstandard body (skippable frames skipped), refusing to produce more than
    ``limit`` bytes or to decode a frame whose window exceeds what the limit needs."""
    options = {zstd.DecompressionParameter.window_log_max: _window_log(limit)}
    out = bytearray()
    view = memoryview(body)
    pos = 0
    while True:
        # A frame that declares its size (most do) is refused past the limit before it is decoded;
        # one too large for the window bound would otherwise be refused for its window instead.
        declared = _declared_size(view[pos : pos + _FRAME_HEADER])
        if declared is not None and len(out) + declared > limit:
            raise _too_large(limit)
        decoder = zstd.ZstdDecompressor(options=options)
        while not decoder.eof:
            if decoder.needs_input:
                if pos >= len(body):
                    raise DecompressionError("truncated stream")
                chunk: bytes | memoryview = view[pos : pos + _CHUNK]
                pos += len(chunk)
            else:  # output was held back by the size bound: ask for the rest without new input
                chunk = b""
            try:
                out += decoder.decompress(chunk, limit + 1 - len(out))
            except zstd.ZstdError as exc:
                raise DecompressionError(_zstd_problem(exc, limit)) from exc
            if len(out) > limit:
                raise _too_large(limit)
        pos -= len(decoder.unused_data)
        if pos >= len(body):
            return bytes(out)


_FRAME_HEADER = 18  # the longest Zstandard frame header


def _declared_size(header: memoryview) -> int | None:
    """The content size a frame's header declares; None when it declares none or is no frame
    header (the decoder then says what is wrong with it)."""
    try:
        return zstd.get_frame_info(header).decompressed_size
    except zstd.ZstdError:
        return None


def _zstd_problem(exc: Exception, limit: int) -> str:
    problem = str(exc).removeprefix("Unable to decompress Zstandard data: ")
    if "too much memory" in problem:
        window = 1 << _window_log(limit)
        problem += f" (its window is larger than the {window >> 20} MiB this server allows)"
    return problem


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {GZIP: gunzip, ZSTD: unzstd, DEFLATE: inflate_deflate}


def decompress(codec: str, body: bytes, limit: int) -> bytes:
    """``body`` decoded by ``codec`` (a value of ENCODINGS), at most ``limit`` bytes; raises
    DecompressionError (``too_large`` past the limit)."""
    return _DECODERS[codec](body, limit)
