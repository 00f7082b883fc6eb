"""Fuzzing the receivers' decoders: OTLP protobuf and OTLP/JSON, gzip, Zipkin JSON.

A short seeded run (hypothesis, derandomized); ``bench/fuzz.py`` runs 100,000 inputs per surface.
Most inputs go to the pure functions (``collector.decode``, ``collector.http_body``,
``collector.zipkin``), some end to end through the OTLP/HTTP and Zipkin applications over real
durable queues and a real store. The oracles are in ``tests/fuzzing.py``: bad input is refused
with the documented rejection and a message, nothing else raises, no 5xx.

Each bug the fuzzing found is pinned below as an explicit example.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector import decode, http_body, otlp_grpc, zipkin
from tests import fuzzing, fuzzing_apps
from tests.fuzzing import seeded

PROTOBUF = fuzzing.protobuf_seeds()
JSON = fuzzing.json_seeds()
ZIPKIN = fuzzing.zipkin_seeds()
GZIP = fuzzing.gzip_seeds()
GZIP_SPECIALS = fuzzing.gzip_specials()
SIGNALS = pytest.mark.parametrize("signal", decode.SIGNALS)
TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_the_seeds_are_accepted_whole() -> None:
    """The mutations start from valid requests: every seed passes its oracle without a rejection."""
    for signal in decode.SIGNALS:
        assert PROTOBUF[signal] and JSON[signal]
        for body in PROTOBUF[signal]:
            assert fuzzing.check_protobuf(signal, body) == "accepted"
        for body in JSON[signal]:
            assert fuzzing.check_json(signal, body) == "accepted"
    assert all(fuzzing.check_zipkin(body) == "accepted" for body in ZIPKIN)


def test_the_oracles_catch_what_they_look_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """An oracle that cannot fail proves nothing: a crash, an empty message and a wrong answer."""
    tally = fuzzing.Tally("self-test")
    tally.run(lambda body: fuzzing.check_protobuf("nope", body), b"")  # unknown signal: KeyError
    tally.run(lambda message: fuzzing.need_message(message, "x"), "  ")
    assert (tally.tried, tally.found["crash"], tally.found["no-message"]) == (2, 1, 1)
    monkeypatch.setattr(http_body, "gunzip", lambda body, limit: b"not what gzip reads")
    with pytest.raises(fuzzing.Finding) as found:
        fuzzing.check_gunzip(gzip.compress(b"data"))
    assert found.value.kind == "wrong"


def _trace_with_span_ids(*span_ids: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for span_id in span_ids:
        spans.add(trace_id=bytes(range(1, 17)), span_id=span_id, name="s")
    return request


# -- OTLP protobuf -------------------------------------------------------------------------------


@SIGNALS
@seeded(150)
@given(data=st.data())
def test_mutated_protobuf_is_refused_with_a_message_or_checked(signal: str, data: st.DataObject) -> None:
    body = data.draw(fuzzing.mutated(PROTOBUF[signal]), label="body")
    fuzzing.check_protobuf(signal, body)


@SIGNALS
@seeded(40)
@given(data=st.data())
def test_well_formed_requests_lose_exactly_their_items_with_bad_ids(signal: str, data: st.DataObject) -> None:
    """Valid structure, invalid values (ids of every length, zero ids, any enum, time and value):
    protobuf and OTLP/JSON alike keep exactly the items with valid ids."""
    fuzzing.check_structured(signal, data.draw(fuzzing.STRUCTURED[signal](), label="request"))


def test_wrong_id_lengths_are_partial_success_with_the_first_problem() -> None:
    request = _trace_with_span_ids(b"\x01" * 8, b"\x02" * 7, b"", bytes(8))
    decoded = decode.check("traces", decode.parse("traces", request.SerializeToString(), False), None)
    assert (decoded.items, decoded.rejected) == (1, 3)
    assert decoded.message == (
        "3 of 4 spans rejected; first: resource_spans[0].scope_spans[0].spans[1]: span_id must be 8 bytes, got 7"
    )


# -- OTLP/JSON -----------------------------------------------------------------------------------


@SIGNALS
@seeded(80)
@given(data=st.data())
def test_otlp_json_trees_with_wrong_types_are_refused_naming_the_field(
    signal: str, data: st.DataObject
) -> None:
    fuzzing.check_json(signal, data.draw(fuzzing.json_trees(signal), label="body"))


@SIGNALS
@seeded(100)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_otlp_json_is_refused_naming_the_field_or_checked(signal: str, seed: int) -> None:
    import random

    fuzzing.check_json(signal, fuzzing.random_otlp_json(random.Random(seed), JSON[signal]))


@pytest.mark.parametrize("depth", [100, 101, 1000, 100_000])
def test_deep_json_is_refused_not_a_recursion_error(depth: int) -> None:
    attribute = '{"stringValue":"x"}'
    for _ in range(min(depth, 2000)):
        attribute = '{"arrayValue":{"values":[' + attribute + "]}}"
    for body in (
        b"[" * depth + b"]" * depth,
        _span_json(f'"attributes":[{{"key":"k","value":{attribute}}}]'),
    ):
        assert fuzzing.check_json("traces", body) in ("rejected", "accepted")


def _span_json(fields: str) -> bytes:
    span = f'{{"traceId":"{TRACE_ID}","spanId":"{SPAN_ID}",{fields}}}'
    return ('{"resourceSpans":[{"scopeSpans":[{"spans":[' + span + "]}]}]}").encode()


def test_a_lone_surrogate_is_refused_naming_its_field() -> None:
    """Regression (fuzzing): JSON's "\\ud800" escape is a lone surrogate, which protobuf strings
    cannot hold; the refusal used to name no field."""
    body = _span_json('"name":"\\ud800"')
    with pytest.raises(decode.BadRequest) as refused:
        decode.parse("traces", body, True)
    assert str(refused.value) == (
        "invalid OTLP/JSON traces request: resource_spans[0].scope_spans[0].spans[0].name: "
        "not valid Unicode text: surrogates not allowed"
    )


# -- gzip ----------------------------------------------------------------------------------------


@seeded(200)
@given(seed=st.integers(0, 2**32 - 1))
def test_gzip_bodies_inflate_as_gzip_reads_them_or_are_refused(seed: int) -> None:
    import random

    fuzzing.check_gunzip(fuzzing.random_gzip(random.Random(seed), GZIP, GZIP_SPECIALS))


@pytest.mark.parametrize("body", GZIP_SPECIALS, ids=lambda body: f"{len(body)}-bytes")
def test_bodies_at_and_past_the_limit_and_bombs(body: bytes) -> None:
    fuzzing.check_gunzip(body)


def test_every_gzip_member_is_read() -> None:
    """Regression (fuzzing): a body of several gzip members (RFC 1952), e.g. two requests' bytes
    compressed apart and concatenated, was inflated to its first member only, and the request
    acknowledged without the rest."""
    first = _trace_with_span_ids(b"\x01" * 8).SerializeToString()
    second = _trace_with_span_ids(b"\x02" * 8, b"\x03" * 8).SerializeToString()
    body = gzip.compress(first) + b"\x00\x00" + gzip.compress(second)
    assert http_body.gunzip(body, 1 << 20) == first + second
    assert otlp_grpc._gunzip(body, 1 << 20) == first + second
    decoded = decode.check("traces", decode.parse("traces", first + second, False), first + second)
    assert decoded.items == 3


def test_many_members_and_members_past_the_limit_together() -> None:
    members = b"".join(gzip.compress(b"m") for _ in range(2000))
    assert http_body.gunzip(members, 1 << 20) == b"m" * 2000
    half = gzip.compress(bytes(600))
    with pytest.raises(http_body.Reject) as refused:
        http_body.gunzip(half * 2, 1000)
    assert (refused.value.status, refused.value.message) == (
        413,
        "decompressed body exceeds the limit of 1000 bytes",
    )
    with pytest.raises(http_body.Reject) as refused:
        http_body.gunzip(half + b"junk", 1000)
    assert refused.value.status == 400 and refused.value.message.startswith("body is not valid gzip: ")


def test_a_wrong_header_crc_is_refused() -> None:
    """atheris found bodies whose optional header CRC16 (FHCRC) is wrong: Python's gzip module
    ignores it, zlib (and so sloscope) refuses them, as RFC 1952 allows. Not a bug; the oracle knows."""
    body = b"\x1f\x8b\x08\x02\xb5\xfe\x0ek\x02\xff\xff\xff\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    assert gzip.decompress(body) == b""
    with pytest.raises(http_body.Reject) as refused:
        http_body.gunzip(body, 1000)
    assert (refused.value.status, refused.value.message) == (
        400,
        "body is not valid gzip: Error -3 while decompressing data: header crc mismatch",
    )
    assert fuzzing.check_gunzip(body) == "rejected"


# -- Zipkin --------------------------------------------------------------------------------------

_SURROGATE_SPAN = (
    b'[{"traceId":"4d1e00c0db9010db86154a4ba6e91385","id":"4d1e00c0db9010db","name":"get",'
    b'"tags":{"http.path":"/api\\ud800"}}]'
)


@seeded(60)
@given(body=fuzzing.zipkin_spans())
@example(body=_SURROGATE_SPAN)
def test_zipkin_spans_with_wrong_fields_are_refused_naming_them(body: bytes) -> None:
    fuzzing.check_zipkin(body)


@seeded(150)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_zipkin_is_refused_with_a_message_or_converted(seed: int) -> None:
    import random

    fuzzing.check_zipkin(fuzzing.random_zipkin(random.Random(seed), ZIPKIN))


@pytest.mark.parametrize(
    "span,message",
    [
        (
            {"name": "a\udfff"},
            "spans[0].name is not valid Unicode text: surrogates not allowed at character 1",
        ),
        ({"tags": {"k": "\ud800"}}, "spans[0].tags['k'] is not valid Unicode text: surrogates not allowed"),
        ({"tags": {"\ud800": "v"}}, 'spans[0].tags key "\\ud800" is not valid Unicode text'),
        (
            {"localEndpoint": {"serviceName": "\ud800"}},
            "spans[0].localEndpoint.serviceName is not valid Unicode",
        ),
        (
            {"annotations": [{"timestamp": 1, "value": "\ud800"}]},
            "spans[0].annotations[0].value is not valid",
        ),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(span: dict, message: str) -> None:
    """Regression (fuzzing): a lone surrogate in a Zipkin string raised UnicodeEncodeError from
    protobuf, answered 500."""
    body = json.dumps([{"traceId": TRACE_ID, "id": SPAN_ID, **span}]).encode()
    with pytest.raises(zipkin.ZipkinError) as refused:
        zipkin.convert(body)
    assert str(refused.value).startswith(message)


# -- end to end through the receivers ------------------------------------------------------------


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzing_apps.Receivers]:
    """The OTLP/HTTP and Zipkin applications over real queues and a real store (module scope: chDB
    holds one data directory per process)."""
    base: Path = tmp_path_factory.mktemp("fuzz-receivers")
    backend = fuzzing_apps.open_store(base / "store")
    try:
        with fuzzing_apps.receivers(backend, base / "wal") as receivers:
            yield receivers
    finally:
        backend.close()


@seeded(150)
@given(post=fuzzing_apps.posts())
def test_receivers_answer_every_request_without_5xx_and_refuse_with_a_message(
    apps: fuzzing_apps.Receivers, post: fuzzing_apps.Post
) -> None:
    fuzzing_apps.check_post(apps, post)


def test_a_zipkin_surrogate_is_a_400_not_a_500(apps: fuzzing_apps.Receivers) -> None:
    """Regression (fuzzing), end to end."""
    post = fuzzing_apps.Post(
        "zipkin", "/api/v2/spans", (("content-type", "application/json"),), _SURROGATE_SPAN
    )
    assert fuzzing_apps.check_post(apps, post) == "rejected"
    reply = apps.zipkin.post(post.path, content=post.body, headers=dict(post.headers))
    assert (reply.status_code, reply.text) == (
        400,
        "spans[0].tags['http.path'] is not valid Unicode text: surrogates not allowed at character 4\n",
    )


def test_two_gzip_members_are_one_request_end_to_end(apps: fuzzing_apps.Receivers) -> None:
    """Regression (fuzzing), end to end: all three spans of a two-member body are counted."""
    first = _trace_with_span_ids(b"\x04" * 8).SerializeToString()
    second = _trace_with_span_ids(b"\x05" * 8, bytes(8)).SerializeToString()
    reply = apps.otlp.post(
        "/v1/traces",
        content=gzip.compress(first) + gzip.compress(second),
        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert reply.status_code == 200
    answer = decode.RESPONSES["traces"]()
    answer.ParseFromString(reply.content)
    assert answer.partial_success.rejected_spans == 1  # the zero span id of the second member
    assert "spans[1]: span_id must not be all zeros" in answer.partial_success.error_message
