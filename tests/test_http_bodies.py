"""Request bodies of the HTTP receivers (OTLP/HTTP and Zipkin): gzip, zstd and deflate under the same
size bound, inflating off the event loop, a deadline for the upload (408), and uploads the client
abandons (one log line and a counter, no traceback).

Real parts: an in-process ``sloscope serve`` (chDB, write-ahead log, uvicorn on loopback ports),
httpx for whole requests and raw sockets for bodies that never finish.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector import compression, http_body
from sloscope import settings
from tests.conftest import InProcess, in_process, wait_until
from tests.test_http_receiver import _status

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef]

PROTOBUF = "application/x-protobuf"
BODY_TIMEOUT = 1.0  # seconds: short, so that the stalled uploads below are answered quickly


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


#: Content-Encoding -> how a client compresses a body that way
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "zstd": zstd.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as HTTP says
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("data"), body_read_timeout=BODY_TIMEOUT) as running:
        yield running


def _zipkin(server: InProcess) -> str:
    assert server.server.zipkin_url
    return server.server.zipkin_url


def _trace_request(trace_id: bytes, name: str) -> ExportTraceServiceRequest:
    now = time.time_ns()
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "bodies"
    resource.scope_spans.add().spans.add(
        trace_id=trace_id,
        span_id=b"\x01" * 8,
        name=name,
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1,
    )
    return request


def _stored_names(server: InProcess, trace_id: bytes) -> list[str]:
    server.drain()
    rows = server.rows("SELECT name FROM spans WHERE trace_id = unhex({t:String})", {"t": trace_id.hex()})
    return [row["name"] for row in rows]


# -- zstd and deflate ---------------------------------------------------------------------------------

COMPRESSED = [*ENCODERS.items(), ("deflate", _raw_deflate), ("zlib", zlib.compress), ("ZSTD", zstd.compress)]


@pytest.mark.parametrize("encoding,encode", COMPRESSED, ids=[f"{e}-{f.__name__}" for e, f in COMPRESSED])
def test_compressed_bodies_are_stored_by_both_receivers(
    server: InProcess, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    otlp_trace, zipkin_trace = time.time_ns().to_bytes(16, "big"), (time.time_ns() + 1).to_bytes(16, "big")
    protobuf = _trace_request(otlp_trace, f"otlp-{encoding}").SerializeToString()
    reply = httpx.post(
        f"{server.otlp}/v1/traces",
        content=encode(protobuf),
        headers={"Content-Type": PROTOBUF, "Content-Encoding": encoding},
    )
    assert reply.status_code == 200, _status(reply).message
    now_us = time.time_ns() // 1000
    span = {"traceId": zipkin_trace.hex(), "id": "00000000000000c1", "name": f"zipkin-{encoding}"}
    spans = json.dumps([{**span, "timestamp": now_us, "duration": 10}]).encode()
    reply = httpx.post(
        f"{_zipkin(server)}/api/v2/spans",
        content=encode(spans),
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert reply.status_code == 202, reply.text
    assert _stored_names(server, otlp_trace) == [f"otlp-{encoding}"]
    assert _stored_names(server, zipkin_trace) == [f"zipkin-{encoding}"]


def test_zstd_frames_and_json_are_all_read(server: InProcess) -> None:
    """Several frames (and a skippable one) are one body, as zstd(1) reads them: none is dropped."""
    first, second = time.time_ns().to_bytes(16, "big"), (time.time_ns() + 1).to_bytes(16, "big")
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    # Two OTLP/JSON documents do not concatenate; two protobuf messages do (repeated fields merge).
    body = (
        zstd.compress(_trace_request(first, "frame-1").SerializeToString())
        + skippable
        + zstd.compress(_trace_request(second, "frame-2").SerializeToString())
    )
    reply = httpx.post(
        f"{server.otlp}/v1/traces",
        content=body,
        headers={"Content-Type": PROTOBUF, "Content-Encoding": "zstd"},
    )
    assert reply.status_code == 200, _status(reply).message
    assert _stored_names(server, first) == ["frame-1"]
    assert _stored_names(server, second) == ["frame-2"]


BOMB_CASES = list(ENCODERS.items())


@pytest.mark.parametrize("encoding,encode", BOMB_CASES, ids=[e for e, _ in BOMB_CASES])
def test_a_bomb_in_any_encoding_is_413_on_both_receivers(
    server: InProcess, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    limit = server.server.settings.max_body_bytes
    bomb = encode(b"\x00" * (limit * 4))
    assert len(bomb) < limit // 100
    reply = httpx.post(
        f"{server.otlp}/v1/traces",
        content=bomb,
        headers={"Content-Type": PROTOBUF, "Content-Encoding": encoding},
    )
    assert reply.status_code == 413
    assert f"decompressed body exceeds the limit of {limit} bytes" in _status(reply).message
    reply = httpx.post(
        f"{_zipkin(server)}/api/v2/spans", content=bomb, headers={"Content-Encoding": encoding}
    )
    assert reply.status_code == 413
    assert "decompressed body exceeds the limit" in reply.text


def _zstd_streamed(data: bytes) -> bytes:
    """A frame without its content size (a streaming encoder's): nothing to refuse it by up front."""
    packer = zstd.ZstdCompressor()
    return packer.compress(data) + packer.flush()


UNIT_BOMBS = [*ENCODERS.items(), ("zstd", _zstd_streamed), ("deflate", _raw_deflate)]


@pytest.mark.parametrize("codec,encode", UNIT_BOMBS, ids=[f"{c}-{f.__name__}" for c, f in UNIT_BOMBS])
def test_a_bomb_is_refused_without_being_inflated(codec: str, encode: Callable[[bytes], bytes]) -> None:
    """At most limit+1 bytes come out, however much the body would inflate to."""
    assert {codec for codec, _ in UNIT_BOMBS} == set(compression.ENCODINGS.values())
    limit = 1 << 20
    bomb = encode(bytes(64 * limit))
    tracemalloc.start()
    try:
        with pytest.raises(compression.DecompressionError) as refused:
            compression.decompress(codec, bomb, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.too_large
    assert peak < 3 * limit  # inflating it all would take 64 MiB


def _zstd_with_window_log(window_log: int, data: bytes) -> bytes:
    # A streamed frame (no content size) keeps the window it names.
    packer = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: window_log})
    return packer.compress(data) + packer.flush()


BAD_BODIES = {
    "zstd-gzip": ("zstd", gzip.compress(b"{}"), "body is not valid zstd: Unknown frame descriptor"),
    "zstd-truncated": ("zstd", zstd.compress(b"x" * 1000)[:-4], "body is not valid zstd: truncated stream"),
    "zstd-trailing": ("zstd", zstd.compress(b"{}") + b"junk", "body is not valid zstd"),
    "zstd-window": (
        "zstd",
        _zstd_with_window_log(30, b"{}"),
        "window is larger than the 16 MiB this server allows",
    ),
    "deflate-zstd": ("deflate", zstd.compress(b"{}"), "body is not valid deflate"),
    "deflate-trailing": (
        "deflate",
        zlib.compress(b"{}") + b"more",
        "body is not valid deflate: 4 bytes after the end",
    ),
    "deflate-truncated": (
        "deflate",
        zlib.compress(b"{}" * 100)[:-6],
        "body is not valid deflate: truncated stream",
    ),
    "gzip-zlib": ("gzip", zlib.compress(b"{}"), "body is not valid gzip"),
}


@pytest.mark.parametrize("encoding,body,fragment", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
@pytest.mark.parametrize("content_type", [PROTOBUF, "application/json"])
def test_a_body_that_is_not_its_encoding_is_400_naming_the_problem(
    server: InProcess, content_type: str, encoding: str, body: bytes, fragment: str
) -> None:
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    reply = httpx.post(f"{server.otlp}/v1/traces", content=body, headers=headers)
    assert reply.status_code == 400
    # The google.rpc.Status comes in the request's own encoding.
    assert reply.headers["content-type"].startswith(content_type)
    status = _status(reply)
    assert status.code == code_pb2.INVALID_ARGUMENT and fragment in status.message
    if content_type == "application/json":
        reply = httpx.post(f"{_zipkin(server)}/api/v2/spans", content=body, headers=headers)
        assert reply.status_code == 400 and fragment in reply.text


def test_an_unknown_encoding_is_415_naming_the_ones_accepted(server: InProcess) -> None:
    headers = {"Content-Type": PROTOBUF, "Content-Encoding": "br"}
    reply = httpx.post(f"{server.otlp}/v1/traces", content=b"abc", headers=headers)
    assert reply.status_code == 415
    assert "unsupported content encoding 'br': use gzip, zstd or deflate" in _status(reply).message
    reply = httpx.post(f"{_zipkin(server)}/api/v2/spans", content=b"abc", headers={"Content-Encoding": "br"})
    assert reply.status_code == 415 and "use gzip, zstd or deflate" in reply.text


# -- inflating off the event loop ---------------------------------------------------------------------


def test_a_body_of_many_gzip_members_does_not_stall_other_listeners(server: InProcess) -> None:
    """786,432 empty gzip members (15 MiB) take seconds to inflate: meanwhile /healthz, served by the
    same event loop, must keep answering."""
    body = gzip.compress(b"") * (15 * (1 << 20) // 20)
    started = time.monotonic()
    assert http_body.gunzip(body, server.server.settings.max_body_bytes) == b""
    cost = time.monotonic() - started  # what inflating it inline would stall the loop for
    outcome: dict[str, Any] = {}

    def upload() -> None:
        headers = {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}
        outcome["reply"] = httpx.post(f"{server.otlp}/v1/traces", content=body, headers=headers, timeout=120)

    uploader = threading.Thread(target=upload)
    worst, probes = 0.0, 0
    with httpx.Client(timeout=60) as client:
        uploader.start()
        while uploader.is_alive():
            asked = time.monotonic()
            assert client.get(f"{server.api}/healthz").status_code == 200
            worst, probes = max(worst, time.monotonic() - asked), probes + 1
            time.sleep(0.01)
    uploader.join()
    assert outcome["reply"].status_code == 200
    assert probes >= 3
    assert worst < cost / 3, f"/healthz waited {worst:.2f} s; inflating inline takes {cost:.2f} s"


# -- slow and abandoned uploads -----------------------------------------------------------------------


def _start_upload(url: str, path: str, content_type: str, declared: int, sent: bytes) -> socket.socket:
    """A raw connection that sends headers declaring ``declared`` body bytes, then only ``sent``."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    conn.sendall(head.encode() + sent)
    return conn


def _read_until_closed(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("receiver", ["otlp", "zipkin"])
def test_a_body_that_never_finishes_is_408_and_closes_the_connection(
    server: InProcess, receiver: str
) -> None:
    url, path = (server.otlp, "/v1/traces") if receiver == "otlp" else (_zipkin(server), "/api/v2/spans")
    started = time.monotonic()
    with _start_upload(
        url, path, PROTOBUF if receiver == "otlp" else "application/json", 1000, b"ab"
    ) as conn:
        answer = _read_until_closed(conn)  # the server closes it: no 10 s socket timeout
    waited = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in head.lower()
    assert BODY_TIMEOUT * 0.9 <= waited < BODY_TIMEOUT + 5
    if receiver == "otlp":
        status = status_pb2.Status.FromString(body)
        assert status.code == code_pb2.DEADLINE_EXCEEDED
        message = status.message
    else:
        message = body.decode()
    assert f"request body not received within {BODY_TIMEOUT:g} s (2 of 1000 bytes arrived)" in message


@pytest.mark.parametrize("receiver", ["otlp_http", "zipkin"])
def test_a_client_leaving_mid_body_is_one_log_line_and_counted(
    server: InProcess, receiver: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, path = (server.otlp, "/v1/traces") if receiver == "otlp_http" else (_zipkin(server), "/api/v2/spans")
    registry = server.server.registry
    labels = {"receiver": receiver}

    def aborted() -> float:
        return registry.get_sample_value("sloscope_requests_aborted_total", labels) or 0.0

    before = aborted()
    with caplog.at_level(logging.INFO):
        _start_upload(url, path, "application/json", 100_000, b"[" * 10).close()
        wait_until(lambda: aborted() == before + 1, timeout=10)
        # The next request is served as usual, and whatever the abandoned one logged is logged by now.
        reply = httpx.post(f"{url}{path}", content=b"[1]", headers={"Content-Type": "application/json"})
        assert reply.status_code == 400
    records = [r for r in caplog.records if r.name.startswith(("collector", "uvicorn", "starlette"))]
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    lines = [r for r in records if "aborted" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and not lines[0].exc_info
    assert "client disconnected after 10 of 100000 body bytes" in lines[0].__dict__["reason"]


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf")])
def test_the_body_read_timeout_must_be_a_positive_number_of_seconds(value: float) -> None:
    with pytest.raises(
        settings.SettingsError, match="body_read_timeout: must be a positive number of seconds"
    ):
        settings.load({"body_read_timeout": value}, environ={})
    assert settings.load({}, environ={"SLOSCOPE_BODY_READ_TIMEOUT": "2.5"}).body_read_timeout == 2.5
