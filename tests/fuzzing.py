"""Fuzzing surfaces shared by ``tests/test_fuzz_*.py`` (short seeded runs) and ``bench/fuzz.py``
(100,000 inputs per surface): seed inputs, mutations, hypothesis strategies, and each surface's
oracle.

An oracle takes one input, runs it through the code under test and raises :class:`Finding` when
the answer breaks the contract every input surface has: bad input is refused with the documented
rejection (an exception type for a pure function, a 4xx for HTTP) carrying a message that names the
problem, and anything else is not an error at all. A finding is one of

* ``crash``: an exception other than the documented rejection;
* ``5xx``: an HTTP status of 500 or more;
* ``no-message``: a rejection whose message is empty;
* ``wrong``: an answer that breaks a property of the surface (a stored payload that would not pass
  its own check again, a gzip body inflated to other bytes than ``gzip.decompress`` gives).

Mutations are functions of a ``random.Random`` so the bench can run them in plain loops; the
tests draw the seed from hypothesis, which makes every run reproducible. Structured inputs
(valid shapes with invalid values) are hypothesis strategies, run by the bench with
``max_examples``.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
import os
import random
import re
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector import decode, http_body, otlp_grpc, otlp_json, zipkin

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = decode.SIGNALS

# -- findings ------------------------------------------------------------------------------------

KINDS = ("crash", "5xx", "no-message", "wrong")


class Finding(AssertionError):
    """An input that broke the surface's contract: ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def crash(what: str) -> Finding:
    """A Finding for the exception being handled, with its traceback's last lines."""
    lines = traceback.format_exc().strip().splitlines()
    return Finding("crash", f"{what} raised {' | '.join(lines[-3:])}")


def need_message(message: object, what: str) -> None:
    """A rejection must say what is wrong."""
    if not str(message).strip():
        raise Finding("no-message", f"{what} was refused without a message")


def show(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


@dataclass
class Tally:
    """Counts of one surface's run: inputs tried and findings by kind, with the first few examples."""

    surface: str
    tried: int = 0
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""  # what the inputs were, for the bench's report

    def run(self, oracle: Callable[[Any], object], value: Any) -> None:
        """Run ``oracle`` on ``value``, counting instead of raising."""
        self.tried += 1
        try:
            oracle(value)
        except Finding as finding:
            self.add(finding.kind, f"{finding.detail} <- {show(value)}")
        except Exception:  # the oracle itself failed: count it, it needs a look all the same
            self.add("crash", f"oracle: {traceback.format_exc().splitlines()[-1]} <- {show(value)}")

    def add(self, kind: str, example: str) -> None:
        self.found[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {example}")

    def merge(self, other: Tally) -> None:
        self.tried += other.tried
        self.seconds += other.seconds
        for kind, n in other.found.items():
            self.found[kind] = self.found.get(kind, 0) + n
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])

    @property
    def total_findings(self) -> int:
        return sum(self.found.values())


# -- byte mutations ------------------------------------------------------------------------------

#: One mutation: (kind, position, value, bytes); positions wrap around the current length.
Op = tuple[int, int, int, bytes]
MUTATIONS = 8
_LENGTH_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)


def mutate(data: bytes, ops: Sequence[Op], other: bytes = b"") -> bytes:
    """``data`` after ``ops``: bit flips, byte sets, deletions, insertions, truncation, duplicated
    runs, varint-breaking bytes and a splice with ``other`` (another seed)."""
    buf = bytearray(data)
    for kind, pos, value, chunk in ops:
        n = len(buf)
        at = pos % (n + 1)
        kind %= MUTATIONS
        if kind == 0 and n:
            buf[at % n] ^= 1 << (value % 8)
        elif kind == 1 and n:
            buf[at % n] = value & 0xFF
        elif kind == 2:
            del buf[at : at + 1 + value % 16]
        elif kind == 3:
            buf[at:at] = chunk
        elif kind == 4:
            del buf[at:]
        elif kind == 5:
            buf[at:at] = buf[at : at + 1 + value % 64]
        elif kind == 6 and n:
            buf[at % n] = _LENGTH_BYTES[value % len(_LENGTH_BYTES)]
        elif kind == 7:
            buf[at:] = other[value % (len(other) + 1) :]
    return bytes(buf)


def random_ops(rng: random.Random, most: int = 6) -> list[Op]:
    return [
        (
            rng.randrange(MUTATIONS),
            rng.randrange(1 << 20),
            rng.randrange(256),
            rng.randbytes(rng.randrange(12)),
        )
        for _ in range(rng.randint(1, most))
    ]


def mutate_randomly(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """A seed of ``corpus`` with a few random mutations (now and then random bytes instead)."""
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(64))
    return mutate(rng.choice(corpus), random_ops(rng), rng.choice(corpus))


ops_strategy = st.lists(
    st.tuples(
        st.integers(0, MUTATIONS - 1), st.integers(0, 1 << 20), st.integers(0, 255), st.binary(max_size=12)
    ),
    min_size=1,
    max_size=8,
)


def mutated(corpus: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Hypothesis: a seed of ``corpus`` under a list of mutations (shrinks towards fewer, smaller ones)."""
    return st.builds(
        mutate, st.sampled_from(list(corpus)), ops_strategy, st.sampled_from(list(corpus))
    ) | st.binary(max_size=64)


# -- OTLP seeds ----------------------------------------------------------------------------------

_JSON_FIXTURES = {"traces": ["trace.json"], "logs": ["logs.json", "events.json"], "metrics": ["metrics.json"]}


def _fixture(kind: str, name: str) -> bytes:
    """An upstream sample from ``tests/data`` (origins in its README)."""
    return (ROOT / "tests" / "data" / kind / name).read_bytes()


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _rich_attributes() -> list[KeyValue]:
    nested = AnyValue()
    nested.kvlist_value.values.add(key="inner").value.array_value.values.add(int_value=-7)
    return [
        _kv("s", AnyValue(string_value="text ünïcode")),
        _kv("i", AnyValue(int_value=-(2**63))),
        _kv("d", AnyValue(double_value=2.5)),
        _kv("b", AnyValue(bool_value=True)),
        _kv("bytes", AnyValue(bytes_value=b"\x00\xff")),
        _kv("nested", nested),
    ]


def built_requests() -> dict[str, list[Message]]:
    """Requests with every part the checks look at: links, parents, events, exemplars, summaries."""
    trace = ExportTraceServiceRequest()
    rs = trace.resource_spans.add()
    rs.resource.attributes.extend(_rich_attributes())
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "fuzz", "1.0"
    for i in range(3):
        span = ss.spans.add(
            trace_id=bytes(range(1, 17)),
            span_id=bytes([i + 1] * 8),
            parent_span_id=bytes([9] * 8) if i else b"",
            name=f"op-{i}",
            kind=i + 1,
            start_time_unix_nano=1_700_000_000_000_000_000 + i,
            end_time_unix_nano=1_700_000_000_000_000_999 + i,
            trace_state="k=v",
            flags=0x301,
        )
        span.attributes.extend(_rich_attributes())
        span.events.add(time_unix_nano=1_700_000_000_000_000_500, name="ev").attributes.extend(
            _rich_attributes()[:2]
        )
        span.links.add(trace_id=bytes(range(2, 18)), span_id=bytes([7] * 8), trace_state="a=b")
        span.status.code, span.status.message = 2, "boom"
    logs = ExportLogsServiceRequest()
    sl = logs.resource_logs.add().scope_logs.add()
    for i in range(2):
        record = sl.log_records.add(
            time_unix_nano=1_700_000_000_000_000_000,
            severity_number=9 + i,
            severity_text="INFO",
            trace_id=bytes(range(1, 17)) if i else b"",
            span_id=bytes([1] * 8) if i else b"",
            event_name="e" if i else "",
        )
        record.body.string_value = "hello"
        record.attributes.extend(_rich_attributes())
    metrics = ExportMetricsServiceRequest()
    sm = metrics.resource_metrics.add().scope_metrics.add()
    gauge = sm.metrics.add(name="g", unit="1").gauge.data_points.add(as_double=1.5, time_unix_nano=1)
    gauge.exemplars.add(trace_id=bytes(range(1, 17)), span_id=bytes([1] * 8), as_double=1.5)
    total = sm.metrics.add(name="c").sum
    total.is_monotonic, total.aggregation_temporality = True, 2
    total.data_points.add(as_int=3, time_unix_nano=1).exemplars.add(as_int=3)
    hist = sm.metrics.add(name="h").histogram.data_points.add(count=2, sum=3.0, time_unix_nano=1)
    hist.bucket_counts.extend([1, 1])
    hist.explicit_bounds.append(1.0)
    exp = sm.metrics.add(name="e").exponential_histogram.data_points.add(count=1, scale=2, time_unix_nano=1)
    exp.positive.bucket_counts.append(1)
    summary = sm.metrics.add(name="s").summary.data_points.add(count=1, sum=1.0, time_unix_nano=1)
    summary.quantile_values.add(quantile=0.5, value=1.0)
    return {"traces": [trace], "logs": [logs], "metrics": [metrics]}


def json_seeds() -> dict[str, list[bytes]]:
    """OTLP/JSON bodies: the upstream examples and the built requests written as OTLP/JSON."""
    seeds: dict[str, list[bytes]] = {signal: [] for signal in SIGNALS}
    for signal, names in _JSON_FIXTURES.items():
        for name in names:
            seeds[signal].append(_fixture("otlp", name))
    for signal, messages in built_requests().items():
        seeds[signal].extend(to_otlp_json(m) for m in messages)
    return seeds


def protobuf_seeds() -> dict[str, list[bytes]]:
    """OTLP protobuf bodies: the built requests and the upstream JSON examples as protobuf."""
    seeds = {signal: [m.SerializeToString() for m in ms] for signal, ms in built_requests().items()}
    for signal, names in _JSON_FIXTURES.items():
        for name in names:
            body = _fixture("otlp", name)
            seeds[signal].append(otlp_json.parse_request(signal, body).SerializeToString())
    return seeds


def _hex_ids(node: Any) -> Any:
    """json_format writes bytes as base64; OTLP/JSON writes trace and span ids as hex."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def to_otlp_json(message: Message) -> bytes:
    return json.dumps(_hex_ids(json_format.MessageToDict(message))).encode()


# -- OTLP protobuf: oracles and structured requests ----------------------------------------------


def check_protobuf(signal: str, body: bytes) -> str:
    """Oracle: a protobuf body is refused with BadRequest and a message, or checked; what is kept
    must pass the check again unchanged (it is what gets stored)."""
    return _check_otlp(signal, body, is_json=False)


def check_json(signal: str, body: bytes) -> str:
    """Oracle: the same for an OTLP/JSON body; the refusal's message names a field path."""
    return _check_otlp(signal, body, is_json=True)


def _check_otlp(signal: str, body: bytes, is_json: bool) -> str:
    what = f"decode.parse({signal!r}, is_json={is_json})"
    try:
        request = decode.parse(signal, body, is_json)
    except decode.BadRequest as exc:
        need_message(exc, what)
        if is_json and not re.search(r"request: .+: .+", str(exc)):
            raise Finding("no-message", f"{what}: the message names no field: {exc}") from None
        return "rejected"
    except Exception:
        raise crash(what) from None
    try:
        decoded = decode.check(signal, request, None if is_json else body)
        decode.response(signal, decoded.rejected, decoded.message).SerializeToString()
    except Exception:
        raise crash(f"decode.check({signal!r})") from None
    if decoded.rejected and not decoded.message:
        raise Finding("no-message", f"{decoded.rejected} items rejected without a message")
    try:
        again = decode.check(signal, decode.parse(signal, decoded.payload, False), decoded.payload)
    except Exception as exc:
        raise Finding("wrong", f"the payload to store does not parse again: {exc!r}") from None
    if again.rejected or again.items != decoded.items:
        raise Finding("wrong", f"the payload to store fails its check again: {again}")
    return "partial" if decoded.rejected else "accepted"


def _id_ok(value: bytes, size: int, required: bool) -> bool:
    if not value:
        return not required
    return len(value) == size and (not required or value != bytes(size))


def expected_rejections(signal: str, request: Message) -> tuple[int, int]:
    """(valid items, invalid items) of a full request, by the rules of docs/ingest.md, computed
    independently of ``collector.decode``."""
    good = bad = 0
    if signal == "traces":
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    ok = (
                        _id_ok(span.trace_id, 16, True)
                        and _id_ok(span.span_id, 8, True)
                        and _id_ok(span.parent_span_id, 8, False)
                        and all(
                            _id_ok(x.trace_id, 16, True) and _id_ok(x.span_id, 8, True) for x in span.links
                        )
                    )
                    good, bad = good + ok, bad + (not ok)
    elif signal == "logs":
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    ok = _id_ok(r.trace_id, 16, False) and _id_ok(r.span_id, 8, False)
                    good, bad = good + ok, bad + (not ok)
    else:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    for p in getattr(metric, kind).data_points:
                        ok = kind == "summary" or all(
                            _id_ok(e.trace_id, 16, False) and _id_ok(e.span_id, 8, False) for e in p.exemplars
                        )
                        good, bad = good + ok, bad + (not ok)
    return good, bad


def check_structured(signal: str, request: Message) -> str:
    """Oracle for a well-formed request with arbitrary values: exactly the items with bad ids are
    rejected, by protobuf and by OTLP/JSON alike."""
    good, bad = expected_rejections(signal, request)
    for is_json, body in ((False, request.SerializeToString()), (True, to_otlp_json(request))):
        what = f"{signal} {'JSON' if is_json else 'protobuf'}"
        try:
            decoded = decode.check(signal, decode.parse(signal, body, is_json), None if is_json else body)
        except decode.BadRequest as exc:
            raise Finding("wrong", f"{what}: a well-formed request was refused: {exc}") from None
        except Exception:
            raise crash(what) from None
        if (decoded.items, decoded.rejected) != (good, bad):
            raise Finding(
                "wrong", f"{what}: kept/rejected {decoded.items}/{decoded.rejected}, expected {good}/{bad}"
            )
        if bad and not decoded.message:
            raise Finding("no-message", f"{what}: {bad} rejected without a message")
    return "partial" if bad else "accepted"


def _id_strategy(size: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(min_size=size, max_size=size),
        st.sampled_from([b"", bytes(size), b"\x01" * (size - 1), b"\x01" * (size + 1), bytes(16 - size + 8)]),
        st.binary(max_size=24),
    )


_texts = st.text(max_size=20) | st.sampled_from(["", "\x00", "ünïcode", "a" * 300, "\u202e"])
_u64 = st.integers(0, 2**64 - 1)


def _any_values() -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        st.builds(AnyValue, string_value=_texts),
        st.builds(AnyValue, int_value=st.integers(-(2**63), 2**63 - 1)),
        st.builds(AnyValue, double_value=st.floats()),
        st.builds(AnyValue, bool_value=st.booleans()),
        st.builds(AnyValue, bytes_value=st.binary(max_size=16)),
        st.just(AnyValue()),
    )

    def arrays(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
        def build(items: list[AnyValue], as_map: bool) -> AnyValue:
            value = AnyValue()
            if as_map:
                for i, item in enumerate(items):
                    value.kvlist_value.values.add(key=f"k{i}").value.CopyFrom(item)
            else:
                value.array_value.values.extend(items)
            return value

        return st.builds(build, st.lists(children, max_size=3), st.booleans())

    return st.recursive(scalars, arrays, max_leaves=8)


_attributes = st.lists(st.builds(KeyValue, key=_texts, value=_any_values()), max_size=3)


@st.composite
def trace_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """Well-formed trace requests whose ids, enums, times and values are anything protobuf allows."""
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(draw(_attributes))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(_texts)
            for _ in range(draw(st.integers(0, 4))):
                span = ss.spans.add(
                    trace_id=draw(_id_strategy(16)),
                    span_id=draw(_id_strategy(8)),
                    parent_span_id=draw(_id_strategy(8)),
                    name=draw(_texts),
                    kind=draw(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 5)),
                    start_time_unix_nano=draw(_u64),
                    end_time_unix_nano=draw(_u64),
                    flags=draw(st.integers(0, 2**32 - 1)),
                )
                span.attributes.extend(draw(_attributes))
                for _ in range(draw(st.integers(0, 2))):
                    span.links.add(trace_id=draw(_id_strategy(16)), span_id=draw(_id_strategy(8)))
                for _ in range(draw(st.integers(0, 2))):
                    span.events.add(time_unix_nano=draw(_u64), name=draw(_texts))
                span.status.code = draw(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 2))
    return request


@st.composite
def log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        sl = request.resource_logs.add().scope_logs.add()
        for _ in range(draw(st.integers(0, 4))):
            record = sl.log_records.add(
                trace_id=draw(_id_strategy(16)),
                span_id=draw(_id_strategy(8)),
                time_unix_nano=draw(_u64),
                observed_time_unix_nano=draw(_u64),
                severity_number=draw(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 24)),
                severity_text=draw(_texts),
                flags=draw(st.integers(0, 2**32 - 1)),
            )
            record.body.CopyFrom(draw(_any_values()))
            record.attributes.extend(draw(_attributes))
    return request


@st.composite
def metric_requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    sm = request.resource_metrics.add().scope_metrics.add()
    for _ in range(draw(st.integers(0, 4))):
        metric = sm.metrics.add(name=draw(_texts), unit=draw(_texts))
        kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary", None]))
        if kind is None:
            continue
        data = getattr(metric, kind)
        for _ in range(draw(st.integers(0, 3))):
            point = data.data_points.add(time_unix_nano=draw(_u64), start_time_unix_nano=draw(_u64))
            point.attributes.extend(draw(_attributes))
            if kind != "summary":
                for _ in range(draw(st.integers(0, 2))):
                    point.exemplars.add(
                        trace_id=draw(_id_strategy(16)),
                        span_id=draw(_id_strategy(8)),
                        as_double=draw(st.floats()),
                    )
            if kind in ("gauge", "sum"):
                point.as_double = draw(st.floats())
            elif kind == "histogram":
                point.bucket_counts.extend(draw(st.lists(_u64, max_size=4)))
                point.explicit_bounds.extend(draw(st.lists(st.floats(), max_size=3)))
            elif kind == "summary":
                point.quantile_values.add(quantile=draw(st.floats()), value=draw(st.floats()))
    return request


STRUCTURED = {"traces": trace_requests, "logs": log_requests, "metrics": metric_requests}


# -- JSON trees ----------------------------------------------------------------------------------

_NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "\ud800",  # a lone surrogate: json.loads makes it from "\ud800", UTF-8 cannot encode it
    "\udfff",
    "a\ud83d",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-0",
    "0x10",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "00f067aa0ba902b7",
    "00000000000000000000000000000000",
    "0000000000000000",
    "zz",
    "abc",
    "AQID",
    "====",
    "\u202e\u0301",
    "x" * 1000,
    "SPAN_KIND_SERVER",
    "STATUS_CODE_ERROR",
    "SEVERITY_NUMBER_WARN",
    "AGGREGATION_TEMPORALITY_DELTA",
]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(_NASTY_TEXT)
    alphabet = "abcdef0123456789ABCDEF-_ :/.\"'\\\n\té€😀\u0000\ud800"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))


def random_scalar(rng: random.Random) -> Any:
    choice = rng.randrange(8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**31) - 1, 2**32, 2**53 + 1, 2**63, 2**64, -(2**64), 10**400])
    if choice == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), 1e-320, 3.0])
    if choice == 4:
        return rng.randrange(-1000, 1000)
    return random_text(rng)


def random_json(rng: random.Random, depth: int = 2) -> Any:
    if depth <= 0 or rng.random() < 0.6:
        return random_scalar(rng)
    if rng.random() < 0.5:
        return [random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {random_text(rng): random_json(rng, depth - 1) for _ in range(rng.randrange(4))}


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a JSON tree, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _slots(value, out)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((node, index))
            _slots(value, out)
    return out


def mutate_tree(
    rng: random.Random, tree: Any, values: Callable[[random.Random], Any] = random_json, steps: int = 3
) -> Any:
    """A copy of a JSON-like tree with a few structural mutations: a value replaced by one of
    another type, a key dropped or added, a value wrapped in a list or object, a list item doubled,
    a number turned into a string and back."""
    tree = copy.deepcopy(tree)
    for _ in range(rng.randint(1, steps)):
        slots = _slots(tree, [])
        if not slots:
            return values(rng)
        parent, key = rng.choice(slots)
        action = rng.randrange(8)
        value = parent[key]
        if action == 0:
            parent[key] = values(rng)
        elif action == 1:
            del parent[key]
        elif action == 2:
            parent[key] = [value]
        elif action == 3:
            parent[key] = {"value": value}
        elif action == 4 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
        elif action == 4 and isinstance(parent, dict):
            parent[random_text(rng)] = values(rng)
        elif action == 5:
            if isinstance(value, bool | int | float):
                parent[key] = str(value)
            elif isinstance(value, str):
                parent[key] = int(value) if value.lstrip("-").isdigit() else value + random_text(rng)
            else:
                parent[key] = values(rng)
        elif action == 6:
            parent[key] = None
        elif action == 7 and isinstance(value, str):
            parent[key] = value[: rng.randrange(len(value) + 1)]
    return tree


def dumps(tree: Any) -> bytes:
    return json.dumps(tree).encode()


def deep_json(rng: random.Random) -> bytes:
    """Nesting deep enough to reach recursion limits: bare arrays, or AnyValue arrays in a span."""
    depth = rng.choice([50, 99, 100, 101, 150, 500, 5000, 100_000])
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth * rng.randrange(2)
    inner = '{"stringValue":"x"}'
    for _ in range(min(depth, 2000)):
        inner = '{"arrayValue":{"values":[' + inner + "]}}"
    return (
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736",'
        '"spanId":"00f067aa0ba902b7","attributes":[{"key":"k","value":' + inner + "}]}]}]}]}"
    ).encode()


def random_otlp_json(rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """A mutated OTLP/JSON body: structure mutations of a seed, text mutations, or deep nesting."""
    roll = rng.random()
    if roll < 0.03:
        return deep_json(rng)
    seed = rng.choice(seeds)
    if roll < 0.2:
        return mutate(seed, random_ops(rng, 3), rng.choice(seeds))
    return dumps(mutate_tree(rng, json.loads(seed)))


_JSON_WRONG = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(_NASTY_TEXT),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


def _good_json_value(field_: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field_.type
    if t == FieldDescriptor.TYPE_BYTES:
        if field_.name in ("trace_id", "span_id", "parent_span_id"):
            return st.binary(max_size=20).map(bytes.hex) | st.sampled_from(_NASTY_TEXT)
        return st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()) | st.sampled_from(
            _NASTY_TEXT
        )
    if t == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field_.enum_type.values]
        return (
            st.sampled_from(names) | st.integers(-(2**31) - 1, 2**31) | st.sampled_from(["NOPE", "1", "-3"])
        )
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=10) | st.sampled_from(_NASTY_TEXT)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats() | st.integers(-(2**70), 2**70) | st.sampled_from(["NaN", "Infinity", "1.5", "x"])
    return (
        st.integers(-(2**65), 2**65)
        | st.integers(0, 2**64).map(str)
        | st.sampled_from(["1.0", "1e3", " 1", "+1"])
    )


def _is_repeated(field_: FieldDescriptor) -> bool:
    repeated = getattr(field_, "is_repeated", None)
    return field_.label == FieldDescriptor.LABEL_REPEATED if repeated is None else repeated


def json_message(desc: Descriptor, depth: int = 5) -> st.SearchStrategy[dict[str, Any]]:
    """OTLP/JSON objects of message ``desc``: each field absent, right, of a wrong type or null, its
    key in lowerCamelCase or snake_case, with unknown keys now and then."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in desc.fields:
            mode = draw(st.integers(0, 9))
            if mode <= 4:
                continue  # absent: shrinks towards the empty object
            key = f.json_name if draw(st.booleans()) else f.name
            if mode == 8:
                out[key] = draw(_JSON_WRONG)
                continue
            if mode == 9:
                out[key] = None
                continue
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth <= 0:
                    continue
                item: st.SearchStrategy[Any] = json_message(f.message_type, depth - 1)
            else:
                item = _good_json_value(f)
            out[key] = draw(st.lists(item, max_size=3)) if _is_repeated(f) else draw(item)
        if draw(st.integers(0, 9)) == 0:
            out[draw(st.text(max_size=6))] = draw(_JSON_WRONG)
        return out

    return build()


JSON_REQUESTS = {
    "traces": ExportTraceServiceRequest.DESCRIPTOR,
    "logs": ExportLogsServiceRequest.DESCRIPTOR,
    "metrics": ExportMetricsServiceRequest.DESCRIPTOR,
}


def json_trees(signal: str) -> st.SearchStrategy[bytes]:
    """Hypothesis: OTLP/JSON bodies shaped like ``signal``'s request, with wrong types here and there."""
    return json_message(JSON_REQUESTS[signal]).map(dumps)


# -- gzip ----------------------------------------------------------------------------------------

GZIP_LIMIT = 1 << 16  # small, so bombs are cheap to build and to refuse


def _reference_gunzip(body: bytes, limit: int) -> bytes | None:
    """What Python's gzip module reads of ``body`` (at most limit+1 bytes); None when it cannot."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as reader:
            return reader.read(limit + 1)
    except (OSError, EOFError, zlib.error):
        return None


def check_gunzip(body: bytes, limit: int = GZIP_LIMIT) -> str:
    """Oracle: both receivers' gunzip agree with ``gzip.decompress`` (every member, zero padding
    between members skipped), refuse what it cannot read with 400 / INVALID_ARGUMENT, and refuse
    more than ``limit`` bytes with 413 / RESOURCE_EXHAUSTED, with messages."""
    expected = _reference_gunzip(body, limit)
    try:
        out = http_body.gunzip(body, limit)
    except http_body.Reject as reject:
        need_message(reject.message, "http_body.gunzip")
        if reject.status == 413:
            if expected is not None and len(expected) <= limit:
                raise Finding("wrong", f"413 for {len(expected)} bytes under the limit {limit}") from None
        elif reject.status != 400:
            raise Finding("wrong", f"{reject.status} {reject.message}: neither 400 nor 413") from None
        # Python's gzip module ignores reserved header flags, which RFC 1952 says to refuse, and
        # the header's CRC16 (FHCRC), which zlib checks; past the limit it has not read to the end,
        # where the problem may be.
        elif (
            expected is not None
            and body
            and len(expected) <= limit
            and not any(strict in reject.message for strict in ("header flags", "header crc"))
        ):
            raise Finding(
                "wrong", f"{reject.status} {reject.message} for a body gzip.decompress reads"
            ) from None
        out = None
    except Exception:
        raise crash("http_body.gunzip") from None
    if out is not None and out != expected:
        raise Finding("wrong", f"inflated {len(out)} bytes, gzip.decompress gives {show(expected, 60)}")
    try:
        grpc_out = otlp_grpc._gunzip(body, limit)
    except otlp_grpc._Refused as refused:
        need_message(refused.message, "otlp_grpc._gunzip")
        grpc_out = None
    except Exception:
        raise crash("otlp_grpc._gunzip") from None
    if grpc_out != out:
        raise Finding("wrong", "the OTLP/HTTP and OTLP/gRPC receivers inflate this body differently")
    return "accepted" if out is not None else "rejected"


def gzip_seeds() -> list[bytes]:
    plain = [b"", b"x", b"hello " * 50, bytes(range(256)) * 4, random.Random(1).randbytes(3000)]
    seeds = [gzip.compress(p) for p in plain]
    seeds.append(gzip.compress(b"a") + gzip.compress(b"b"))  # two members
    seeds.append(gzip.compress(b"a") + b"\x00" * 4)  # zero padding after the member
    seeds.append(zlib.compress(b"deflate, not gzip"))
    return seeds


def gzip_specials() -> list[bytes]:
    """Bodies at and past the limit, and bombs (a few KB inflating to 10-1000 times the limit):
    built once, they are costly to compress."""
    rng = random.Random(2)
    sizes = [GZIP_LIMIT - 1, GZIP_LIMIT, GZIP_LIMIT + 1]
    bodies = [gzip.compress(rng.randbytes(n), 1) for n in sizes] + [gzip.compress(bytes(n)) for n in sizes]
    bodies += [gzip.compress(bytes(GZIP_LIMIT * factor), 9) for factor in (10, 100, 1000)]
    bodies.append(gzip.compress(bytes(GZIP_LIMIT // 2)) * 3)  # members that pass the limit together
    bodies.append(b"".join(gzip.compress(b"m") for _ in range(2000)))  # many tiny members
    return bodies


def random_gzip(rng: random.Random, seeds: Sequence[bytes], specials: Sequence[bytes] = ()) -> bytes:
    """Gzip bodies: valid ones of random data, mutated or truncated ones, bombs and junk."""
    roll = rng.random()
    if roll < 0.1:
        data = rng.randbytes(rng.randrange(2000)) if rng.random() < 0.5 else bytes(rng.randrange(5000))
        return gzip.compress(data, rng.choice([0, 1, 6, 9]))
    if roll < 0.15 and specials:
        body = rng.choice(specials)
        return body if rng.random() < 0.7 else mutate(body, random_ops(rng, 2))
    if roll < 0.25:
        body = rng.choice(seeds)
        return body[: rng.randrange(len(body) + 1)]
    if roll < 0.3:
        members = [gzip.compress(rng.randbytes(rng.randrange(50))) for _ in range(rng.randint(2, 4))]
        return b"".join(m + b"\x00" * rng.choice([0, 0, 1, 8]) for m in members)
    return mutate_randomly(rng, seeds)


# -- Zipkin --------------------------------------------------------------------------------------


def check_zipkin(body: bytes) -> str:
    """Oracle: a Zipkin body is refused with ZipkinError and a message naming the span and field, or
    converted into a request whose every span is either kept or rejected with a message."""
    try:
        decoded = zipkin.convert(body)
    except zipkin.ZipkinError as exc:
        need_message(exc, "zipkin.convert")
        return "rejected"
    except Exception:
        raise crash("zipkin.convert") from None
    spans = json.loads(body)
    if decoded.items + decoded.rejected != len(spans):
        raise Finding("wrong", f"{len(spans)} spans in, {decoded.items} kept + {decoded.rejected} rejected")
    if decoded.rejected and not decoded.message:
        raise Finding("no-message", f"{decoded.rejected} spans rejected without a message")
    return "accepted"


def zipkin_seeds() -> list[bytes]:
    seeds = [_fixture("zipkin", name) for name in ("sample3.json", "sample4.json")]
    seeds.append(
        dumps(
            [
                {
                    "traceId": "5af7183fb1d4cf5f",
                    "id": "352bff9a74ca9ad2",
                    "parentId": "6b221d5bc9e6496c",
                    "name": "get /api",
                    "kind": "SERVER",
                    "timestamp": 1556604172355737,
                    "duration": 1431,
                    "shared": True,
                    "debug": False,
                    "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306},
                    "remoteEndpoint": {"ipv6": "::ffff:10.0.0.1", "port": 80},
                    "annotations": [{"timestamp": 1556604172355800, "value": "wr"}],
                    "tags": {"http.method": "GET", "error": "boom", "otel.scope.name": "s", "n": 5},
                }
            ]
        )
    )
    return seeds


def _hex(rng: random.Random, digits: Sequence[int]) -> str:
    return "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(rng.choice(digits)))


def zipkin_value(rng: random.Random) -> Any:
    """Values Zipkin fields are likely to be confused with."""
    roll = rng.random()
    if roll < 0.2:
        return _hex(rng, [0, 1, 15, 16, 17, 31, 32, 33])
    if roll < 0.3:
        return rng.choice(
            ["CLIENT", "server", "Producer", "CONSUMER", "INTERNAL", "", "::1", "1.2.3.4", "256.0.0.1"]
        )
    if roll < 0.4:
        return rng.choice(
            [0, -1, 1472470996199000, 2**64, 18446744073709551, 18446744073709552, 65535, 65536]
        )
    return random_json(rng)


def random_zipkin(rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    roll = rng.random()
    seed = rng.choice(seeds)
    if roll < 0.15:
        return mutate(seed, random_ops(rng, 3), rng.choice(seeds))
    if roll < 0.2:
        return deep_json(rng)
    return dumps(mutate_tree(rng, json.loads(seed), zipkin_value))


_ZIPKIN_ID = st.one_of(
    st.integers(0, 40).flatmap(lambda n: st.text("0123456789abcdefABCDEF", min_size=n, max_size=n)),
    st.sampled_from(["", "0" * 16, "0" * 32, "g" * 16, " " * 16, "١" * 16]),
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Absent (the sentinel ...), the right kind of value, a wrong one, or null."""
    return st.one_of(st.just(...), strategy, _JSON_WRONG, st.none())


_endpoints = st.fixed_dictionaries(
    {},
    optional={
        "serviceName": _maybe(_texts),
        "ipv4": _maybe(st.ip_addresses(v=4).map(str) | _texts),
        "ipv6": _maybe(st.ip_addresses(v=6).map(str) | _texts),
        "port": _maybe(st.integers(-1, 70000)),
    },
)


@st.composite
def zipkin_spans(draw: st.DrawFn) -> bytes:
    """Hypothesis: Zipkin v2 span lists, every field absent, right, wrong or null."""
    spans = []
    for _ in range(draw(st.integers(0, 3))):
        fields = {
            "traceId": _maybe(_ZIPKIN_ID),
            "id": _maybe(_ZIPKIN_ID),
            "parentId": _maybe(_ZIPKIN_ID),
            "name": _maybe(_texts),
            "kind": _maybe(st.sampled_from(["CLIENT", "SERVER", "PRODUCER", "CONSUMER", "client", "X"])),
            "timestamp": _maybe(st.integers(-1, 2**65)),
            "duration": _maybe(st.integers(-1, 2**65)),
            "localEndpoint": _maybe(_endpoints),
            "remoteEndpoint": _maybe(_endpoints),
            "annotations": _maybe(
                st.lists(
                    st.fixed_dictionaries(
                        {"timestamp": _maybe(st.integers(-1, 2**64)), "value": _maybe(_texts)}
                    )
                )
            ),
            "tags": _maybe(st.dictionaries(_texts, _JSON_WRONG | _texts, max_size=4)),
            "shared": _maybe(st.booleans()),
            "debug": _maybe(st.booleans()),
        }
        spans.append({k: draw(v) for k, v in fields.items()})
    return dumps(_drop_absent(spans))


def _drop_absent(node: Any) -> Any:
    """The tree without the keys whose value is the "absent" sentinel ``...``."""
    if isinstance(node, dict):
        return {k: _drop_absent(v) for k, v in node.items() if v is not ...}
    if isinstance(node, list):
        return [_drop_absent(v) for v in node if v is not ...]
    return node


# -- YAML ----------------------------------------------------------------------------------------

SLO_EXAMPLES = sorted((ROOT / "examples" / "slos").glob("*.yaml")) + [
    ROOT / "examples" / "demo" / "slos.yaml"
]
POLICY_EXAMPLES = [ROOT / "examples" / "alerting" / "policy.yaml", ROOT / "examples" / "demo" / "policy.yaml"]

#: Fields that may carry no line: problems of the file as a whole.
FILE_LEVEL_FIELDS = {"(path)", "(file)", "(yaml)", "(document)"}


def check_spec_errors(errors: Sequence[Any], path: Path, what: str) -> None:
    """Every error says ``file:line: field: problem`` (no line only for file-level problems)."""
    for error in errors:
        text = str(error)
        if error.file != str(path) or not text.startswith(str(path)):
            raise Finding("wrong", f"{what}: error names another file: {text}")
        if not error.field or not error.problem.strip():
            raise Finding("no-message", f"{what}: error without field or problem: {text!r}")
        if error.line <= 0 and error.field not in FILE_LEVEL_FIELDS:
            raise Finding("no-message", f"{what}: error without a line: {text!r}")


def check_slo_yaml(text: str, path: Path) -> str:
    """Oracle: ``slo.spec.load`` of a file holding ``text`` returns SLOs or errors, never raises, and
    every error is ``file:line: field: problem``."""
    from slo import spec

    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        slos, errors = spec.load(path)
    except Exception:
        raise crash("slo.spec.load") from None
    check_spec_errors(errors, path, "slo.spec.load")
    if not errors:
        names = [slo.name for slo in slos]
        if len(names) != len(set(names)):
            raise Finding("wrong", f"duplicate SLO names accepted: {names}")
    return "rejected" if errors else "accepted"


#: The secrets the example policies name (receiver URLs on a closed loopback port).
POLICY_ENVIRON = {
    "PAGERDUTY_ROUTING_KEY": "k",
    "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack",
    "TICKETS_WEBHOOK_URL": "http://127.0.0.1:9/tickets",
    "SLOSCOPE_DEMO_WEBHOOK_URL": "http://127.0.0.1:9/demo",
    "SMTP_PASSWORD": "p",
}


def check_policy_yaml(text: str, path: Path) -> str:
    """Oracle: the same for ``alerts.policy.load`` (secrets from a fixed environment)."""
    from alerts import policy

    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    environ = POLICY_ENVIRON
    try:
        loaded, errors = policy.load(path, environ)
    except Exception:
        raise crash("alerts.policy.load") from None
    check_spec_errors(errors, path, "alerts.policy.load")
    if loaded is None and not errors:
        raise Finding("no-message", "no policy and no error")
    return "rejected" if errors else "accepted"


_YAML_TOKENS = [
    "<<: *x",
    "<<: [*a, 1]",
    "&a",
    "*a",
    "!!binary",
    "!!python/object:os.system",
    "!!set",
    "!!omap",
    "!!timestamp",
    "? ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "'",
    '"',
    "|",
    ">-",
    "%YAML 1.1",
    "---",
    "...",
    "#",
    "\t",
    ": ",
    "~",
    "null",
    "1e400",
    ".nan",
    "-.inf",
    "0o17",
    "2020-13-45",
    "\ud800",
    "\x00",
]


def yaml_value(rng: random.Random) -> Any:
    """Values an SLO or policy field is likely to be confused with."""
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(
            [
                "0m",
                "1m",
                "5m",
                "90s",
                "1.5h",
                "-3d",
                "28d",
                "2w",
                "1y",
                "0",
                "5",
                "1h30m",
                "P1D",
                "10000000000d",
            ]
        )
    if roll < 0.4:
        return rng.choice([0, 100, 99.9, -1, 100.1, "99.9", "99.9%", 1e400, 0.999, 10**30, True])
    if roll < 0.5:
        return rng.choice(
            [
                "http.response.status_code >= 500",
                "a in (1, 2",
                "x =~ (",
                "k != ",
                "SERVER",
                "ERROR4",
                "month",
                "Europe/Berlin",
                "Mars/Olympus",
                "{{ name }}",
                "{{ nope }}",
                "{{",
                "https://x.example/{{ service }}",
                "javascript:alert(1)",
                "sloscope",
                "burnrate",
                "openslo/v1",
                "sloscope/v1",
                "page",
                "env:NOPE",
            ]
        )
    return random_json(rng)


def _yaml_docs(path: Path) -> list[Any]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def yaml_seeds(paths: Sequence[Path]) -> tuple[list[str], list[list[Any]]]:
    """Seeds from example files, as text and as loaded documents (for tree mutations). A native
    file's SLOs are split into a document each: small seeds make many more inputs per second, and
    the example files themselves stay seeds too."""
    texts = [p.read_text(encoding="utf-8") for p in paths]
    docs = []
    for path in paths:
        loaded = _yaml_docs(path)
        if len(loaded) == 1 and isinstance(loaded[0], dict) and isinstance(loaded[0].get("slos"), list):
            docs += [[{**loaded[0], "slos": [slo]}] for slo in loaded[0]["slos"]]
        else:
            docs.append(loaded)
    return texts + [dump_yaml(d) for d in docs], docs


def dump_yaml(documents: Sequence[Any]) -> str:
    import yaml

    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)


def mutate_yaml_text(rng: random.Random, text: str) -> str:
    """Line-level mutations of YAML text: lines deleted, doubled, swapped, re-indented, or a YAML
    token (anchor, alias, merge key, tag, flow bracket, quote, document marker) put in."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = [rng.choice(_YAML_TOKENS)]
        i = rng.randrange(len(lines))
        action = rng.randrange(7)
        if action == 0:
            del lines[i]
        elif action == 1:
            lines.insert(i, lines[i])
        elif action == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == 3:
            lines[i] = (
                " " * rng.choice([1, 2, 3, 4, 8]) + lines[i] if rng.random() < 0.5 else lines[i].lstrip()
            )
        elif action == 4:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(_YAML_TOKENS) + lines[i][pos:]
        elif action == 5:
            key, sep, _ = lines[i].partition(":")
            lines[i] = (key + sep + " " + json.dumps(yaml_value(rng))) if sep else lines[i]
        else:
            lines[i] = "".join(c for c in lines[i] if rng.random() < 0.9)
    return "\n".join(lines) + ("\n" if rng.random() < 0.9 else "")


def deep_yaml(rng: random.Random) -> str:
    depth = rng.choice([50, 200, 600, 1500])  # PyYAML scans flow nesting in quadratic time
    if rng.random() < 0.5:
        return "slos: " + "[" * depth + "]" * depth * rng.randrange(2) + "\n"
    return "slos:\n" + "".join("  " * i + "- \n" for i in range(min(depth, 3000)))


def random_yaml(rng: random.Random, texts: Sequence[str], docs: Sequence[list[Any]]) -> str:
    """A mutated example: tree mutations of its documents, line mutations of its text, deep nesting,
    or a recursive alias."""
    roll = rng.random()
    if roll < 0.03:
        return deep_yaml(rng)
    if roll < 0.05:
        return rng.choice(["slos: &a [*a]\n", "a: &a {<<: *a}\n", "slos: &a\n  - <<: *a\n", "&a [*a, *a]\n"])
    if roll < 0.45:
        return mutate_yaml_text(rng, rng.choice(texts))
    documents = mutate_tree(rng, rng.choice(docs), yaml_value, steps=4)
    return dump_yaml(documents if isinstance(documents, list) else [documents])


_yaml_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["5m", "28d", "99.9", "SERVER", "{{ name }}", "a >= 1", "sloscope/v1", "openslo/v1"])
)
yaml_trees = st.recursive(
    _yaml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["slos", "name", "sli", "route"]), children, max_size=4
        )
    ),
    max_leaves=12,
)

_SLO_KEYS = [
    "name",
    "service",
    "description",
    "labels",
    "objective",
    "window",
    "sli",
    "annotations",
    "alerting",
    "group_by",
    "budgeting",
]


@st.composite
def native_slo_docs(draw: st.DrawFn) -> str:
    """Hypothesis: native documents, each SLO's keys absent, plausible or any YAML tree."""
    slos = []
    for _ in range(draw(st.integers(0, 3))):
        slo = {}
        for key in _SLO_KEYS:
            mode = draw(st.integers(0, 3))
            if mode == 1:
                slo[key] = draw(_yaml_scalars)
            elif mode == 2:
                slo[key] = draw(yaml_trees)
        slos.append(slo)
    doc: dict[str, Any] = {"slos": slos}
    if draw(st.booleans()):
        doc["apiVersion"] = draw(st.sampled_from(["sloscope/v1", "openslo/v1", "v2", 1]))
    return dump_yaml([doc])


def iter_forever(make: Callable[[random.Random], Any], seed: int) -> Iterator[Any]:
    rng = random.Random(seed)
    while True:
        yield make(rng)


def seeded(max_examples: int) -> Any:
    """Hypothesis settings for a short, reproducible run in ``make test``: derandomized, no example
    database, no deadline (a shared 2-core machine). ``SLOSCOPE_FUZZ_SCALE=10`` runs ten times as
    many examples, for a deeper look by hand."""
    from hypothesis import HealthCheck, settings

    scale = float(os.environ.get("SLOSCOPE_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(1, int(max_examples * scale)),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )
