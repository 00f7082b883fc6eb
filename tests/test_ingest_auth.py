"""Ingest authentication: tokens on OTLP/HTTP, OTLP/gRPC and Zipkin, tenants pinned by tokens, rate limits.

One in-process ``sloscope serve`` with a tokens file serves the module; the real OpenTelemetry SDK
exporters send to it with and without headers. A second pair of receivers over the same queues
reads tokens from ``x-api-key``. The bucket and the token file are unit-tested with injected clocks
and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import pytest
import uvicorn
import yaml
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector import otlp_grpc, otlp_http
from collector.auth import (
    IngestAuth,
    IngestToken,
    RateLimit,
    RateLimited,
    TokenFileErrors,
    TokenSet,
    Unauthenticated,
    digest,
    token_entry,
)
from collector.decode import Decoded
from collector.intake import Intake, Overloaded
from collector.rate_limit import TokenBucket
from collector.telemetry import CollectorMetrics
from sloscope import cli
from sloscope import settings as settings_mod
from sloscope.app import SloscopeServer, StartupError
from tests.conftest import ROOT, InProcess, free_port, in_process, wait_until

T = TypeVar("T")

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"content-type": "application/x-protobuf"}
#: The tiny limits: 5 items at once, then one item every 100 s, so the test never sees a refill.
TINY = RateLimit(items_per_second=0.01, burst=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the token bucket --------------------------------------------------------------------------------


def test_bucket_admits_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert bucket.take(15) == 0 and bucket.take(5) == 0
    # Empty: one item needs 0.1 s, rounded up to the whole second Retry-After can say.
    assert bucket.take(1) == 1 and bucket.retry_after() == 1
    clock.now += 0.5
    assert bucket.take(6) == 1  # holds 5: refused, and nothing taken
    assert bucket.level == pytest.approx(5)
    assert bucket.take(5) == 0
    clock.now += 100
    assert bucket.level == 20  # never more than the burst


def test_bucket_retry_after_is_the_time_until_enough_items() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=10, clock=clock)
    assert bucket.take(10) == 0
    assert bucket.take(7) == 4  # 7 items at 2/s: 3.5 s, rounded up
    assert bucket.take(8) == 4  # exactly 4.0 s: not 5
    clock.now += 3.9
    assert bucket.take(8) == 1  # holds 7.8: 0.1 s short, still at least 1
    clock.now += 0.1
    assert bucket.take(8) == 0


def test_bucket_larger_than_burst_is_admitted_from_a_full_bucket_into_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert bucket.take(50) == 0  # full bucket: a batch larger than the burst passes once
    assert bucket.level == -30
    assert bucket.retry_after() == 4  # the debt is paid back first: 31 items at 10/s
    assert bucket.take(1) == 4
    clock.now += 3.0
    assert bucket.take(50) == 2  # debt paid, empty: it needs a full bucket again, 20 items at 10/s
    clock.now += 2.0
    assert bucket.take(50) == 0
    assert bucket.take(0) == 0  # nothing costs nothing, even in debt


def test_bucket_gives_back_what_was_not_accepted_and_survives_a_clock_step_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=10, clock=clock)
    assert bucket.take(8) == 0
    bucket.give_back(8)
    assert bucket.level == 10
    bucket.give_back(5)
    assert bucket.level == 10  # never above the burst
    assert bucket.take(10) == 0
    clock.now -= 50  # a clock stepping back neither refills nor drains
    assert bucket.level == 0
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1, burst=0)


def test_bucket_is_thread_safe() -> None:
    clock = FakeClock()  # frozen: no refill, so exactly `burst` single items are admitted
    bucket = TokenBucket(rate=1, burst=4000, clock=clock)
    admitted: list[int] = []

    def take() -> None:
        admitted.append(sum(1 for _ in range(1000) if bucket.take(1) == 0))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 4000


# -- the tokens file ---------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "tokens.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_token_set_loads_entries_and_authenticates_by_digest(tmp_path: Path) -> None:
    a, b = "sloscope_first-token-for-tests", "sloscope_second-token-for-tests"
    path = _write(
        tmp_path,
        f"""\
tokens:
  - name: checkout-prod
    sha256: {digest(a).hex()}
    tenant: acme
    rate_limit: {{items_per_second: 5000, burst: 20000}}
  - name: batch
    sha256: {digest(b).hex().upper()}
    rate_limit:
      items_per_second: 2.5
""",
    )
    tokens = TokenSet.load(path)
    first, second = tokens.tokens
    assert first == IngestToken(
        "checkout-prod", digest(a), "acme", RateLimit(5000, 20000), source=f"{path}:2"
    )
    assert (second.name, second.tenant, second.rate_limit) == ("batch", "", RateLimit(2.5, 3))
    assert tokens.authenticate(a) is first and tokens.authenticate(b) is second
    assert tokens.authenticate("sloscope_not-a-known-token") is None
    assert tokens.authenticate(digest(a).hex()) is None  # the digest is not the token
    assert tokens.authenticate("") is None


def test_token_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    same = digest("sloscope_duplicate-token-x").hex()
    path = _write(
        tmp_path,
        f"""\
tokens:
  - name: a
    sha256: abc123
  - name: b
    token: sloscope_secret-value-in-the-file
    sha256: {digest("sloscope_b-token-value").hex()}
    tenant: "not a tenant!"
    rate_limit: {{items_per_second: -1, burts: 3}}
  - name: a
    sha256: {same}
  - name: c
    sha256: {same}
    tennant: x
  - name: "bad name"
    sha256: {digest("sloscope_c-token-value").hex()}
    tenant: 7
""",
    )
    with pytest.raises(TokenFileErrors) as info:
        TokenSet.load(path)
    lines = [str(e) for e in info.value.errors]
    f = str(path)
    assert lines == [
        f"{f}:3: tokens[0].sha256: must be 64 hex digits (a SHA-256), got 6 characters",
        f"{f}:5: tokens[1].token: the token itself must never be in this file: give its sha256 instead "
        "(`sloscope token new` prints the entry)",
        f"{f}:7: tokens[1].tenant: 'not a tenant!' is not a tenant name: use 1 to 64 letters, digits, '_', "
        "'.' or '-', starting with a letter or digit",
        f"{f}:8: tokens[1].rate_limit.burts: unknown key 'burts' (did you mean 'burst'?)",
        f"{f}:8: tokens[1].rate_limit.items_per_second: must be a number greater than 0, got '-1'",
        f"{f}:9: tokens[2].name: duplicate name 'a' (first at line 2)",
        f"{f}:12: tokens[3].sha256: the same token as the entry at line 9",
        f"{f}:13: tokens[3].tennant: unknown key 'tennant' (did you mean 'tenant'?)",
        f"{f}:14: tokens[4].name: 'bad name' is not a valid name (letters, digits, '.', '_' and '-', "
        "starting and ending with a letter or digit, at most 128 characters)",
        f"{f}:16: tokens[4].tenant: must be text, got '7' (quote it)",
    ]
    # The token written into the file by mistake is never repeated in a message.
    assert "secret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [": (document): the file is empty: list the tokens under tokens:"]),
        ("tokens: []\n", [":1: tokens: must be a list of at least one token, got an empty list"]),
        ("tokens: [\n", [":2: (yaml): expected the node content, but found '<stream end>'"]),
        (
            "tokenz: []\n",
            [":1: tokenz: unknown key 'tokenz' (did you mean 'tokens'?)", ":1: tokens: is required"],
        ),
        ("- name: a\n", [":1: (document): must be a mapping, got a list"]),
        ("tokens:\n  - name: a\n", [":2: tokens[0].sha256: is required"]),
    ],
)
def test_token_file_shapes(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TokenFileErrors) as info:
        TokenSet.load(path)
    assert [str(e).replace(str(path), "") for e in info.value.errors] == expected


def test_missing_tokens_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TokenFileErrors, match=r"missing\.yaml: \(file\): cannot read it: No such file"):
        TokenSet.load(tmp_path / "missing.yaml")


# -- reading the header ------------------------------------------------------------------------------


def _auth(
    tokens: list[IngestToken], header: str = "authorization", clock: Any = None
) -> tuple[IngestAuth, CollectorRegistry]:
    registry = CollectorRegistry()
    kwargs = {"clock": clock} if clock else {}
    return IngestAuth(TokenSet(tokens), CollectorMetrics.create(registry), header, **kwargs), registry


def test_bearer_header_parsing_and_messages() -> None:
    good = "sloscope_bearer-token-for-tests"
    auth, registry = _auth([IngestToken("t", digest(good))])
    assert auth.admit("traces", f"Bearer {good}").name == "t"
    assert auth.admit("traces", f"bearer   {good}  ").name == "t"  # the scheme is case-insensitive
    cases = {
        None: "missing bearer token in the Authorization header",
        "": "missing bearer token in the Authorization header",
        "Bearer ": "missing bearer token in the Authorization header",
        f"Basic {good}": "the Authorization header must use the Bearer scheme (Authorization: Bearer <token>)",
        good: "the Authorization header must use the Bearer scheme (Authorization: Bearer <token>)",
        "Bearer sloscope_wrong-token": "unknown token in the Authorization header",
    }
    for value, message in cases.items():
        with pytest.raises(Unauthenticated) as info:
            auth.admit("traces", value)
        assert info.value.message == message
        assert good not in info.value.message and "wrong-token" not in info.value.message
        assert info.value.challenge.startswith('Bearer realm="sloscope"')
    labels = {"signal": "traces", "reason": "unauthenticated"}
    assert registry.get_sample_value("sloscope_ingest_refusals_total", labels) == len(cases)


def test_custom_header_carries_the_raw_token() -> None:
    good = "sloscope_api-key-token-for-test"
    auth, _ = _auth([IngestToken("k", digest(good))], header="X-Api-Key")
    assert auth.header == "x-api-key"
    assert auth.admit("logs", good).name == "k"
    with pytest.raises(Unauthenticated, match="^missing token in the x-api-key header$"):
        auth.admit("logs", None)
    with pytest.raises(Unauthenticated, match="^unknown token in the x-api-key header$"):
        auth.admit("logs", f"Bearer {good}")
    for bad in ("grpc-timeout", "x-token-bin", "two words", ""):
        with pytest.raises(ValueError, match="cannot carry tokens"):
            _auth([], header=bad)


class _Intake:
    """An Intake stand-in that refuses or accepts, recording the tenant it was given."""

    def __init__(self, refuse: bool) -> None:
        self.refuse, self.tenants = refuse, []

    async def accept(self, signal: str, decoded: Decoded, tenant: str = "") -> ExportTraceServiceResponse:
        self.tenants.append(tenant)
        if self.refuse:
            raise Overloaded("traces queue holds 1 bytes not yet stored; retry later")
        return ExportTraceServiceResponse()


def test_accept_charges_items_pins_the_tenant_and_refunds_refused_requests() -> None:
    clock = FakeClock()
    token = IngestToken("acme-token", digest("sloscope_acme-token-for-tests"), "acme", RateLimit(1, 10))
    auth, registry = _auth([token], clock=clock)
    bucket = auth._buckets["acme-token"]
    ok, full = _Intake(refuse=False), _Intake(refuse=True)
    decoded = Decoded(b"", items=4, rejected=2)  # invalid items cost the receiver work too

    with pytest.raises(Overloaded):
        asyncio.run(auth.accept(full, "traces", decoded, token))  # type: ignore[arg-type]
    assert full.tenants == ["acme"] and bucket.level == 10  # given back: the retry is not charged twice
    asyncio.run(auth.accept(ok, "traces", decoded, token))  # type: ignore[arg-type]
    assert ok.tenants == ["acme"] and bucket.level == 4
    asyncio.run(auth.accept(ok, "traces", Decoded(b"", 3, 0), token))  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as info:
        asyncio.run(auth.accept(ok, "traces", decoded, token))  # type: ignore[arg-type]
    assert info.value.retry_after == 5  # holds 1, needs 6, at 1/s
    assert info.value.message == (
        "rate limit of token 'acme-token' exceeded (1 items per second, burst 10); retry in 5 s"
    )
    assert len(ok.tenants) == 2  # the refused request never reached the intake
    items = {"token": "acme-token", "signal": "traces"}
    assert registry.get_sample_value("sloscope_ingest_token_items_total", items) == 4 + 3
    rejected = {"signal": "traces", "reason": "rate_limited"}
    assert registry.get_sample_value("sloscope_items_rejected_total", rejected) == 6


# -- the CLI ----------------------------------------------------------------------------------------


def test_token_new_prints_the_token_once_and_an_entry_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["token", "new", "--name", "checkout", "--tenant", "acme", "--items-per-second", "50"]) == 0
    )
    out, err = capsys.readouterr()
    token = err.strip().splitlines()[-1]
    assert token.startswith("sloscope_") and len(token) >= 40
    assert token not in out  # stdout is the entry only: `>> tokens.yaml` never writes the token
    path = _write(tmp_path, "tokens:\n" + out)
    (entry,) = TokenSet.load(path).tokens
    assert (entry.name, entry.tenant, entry.rate_limit, entry.sha256) == (
        "checkout",
        "acme",
        RateLimit(50, 50),
        digest(token),
    )
    assert cli.main(["token", "check", str(path)]) == 0
    assert capsys.readouterr().out == "checkout  tenant=acme  rate_limit=50/s burst 50\n1 token OK\n"


def test_token_new_from_stdin_quotes_values_yaml_would_misread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-token-from-a-secret-manager\n"))
    entry = token_entry("1.5", "7", given=sys.stdin)
    assert entry.token == "a-token-from-a-secret-manager"
    assert entry.yaml == f'  - name: "1.5"\n    sha256: {digest(entry.token).hex()}\n    tenant: "7"\n'
    with pytest.raises(ValueError, match="--stdin: the token must be one word of at least 16 characters"):
        token_entry("x", given=io.StringIO("short"))
    with pytest.raises(ValueError, match="--tenant: 'a b' is not a tenant name"):
        token_entry("x", "a b")
    with pytest.raises(ValueError, match="--burst: needs --items-per-second"):
        token_entry("x", burst=3)


def test_token_check_lists_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "tokens:\n  - name: a\n    sha256: 12\n")
    assert cli.main(["token", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{path}:3: tokens[0].sha256: must be 64 hex digits (a SHA-256), got 2 characters\n"
    assert err == "1 error\n"


# -- settings and start-up ---------------------------------------------------------------------------


def test_settings_check_the_header_and_the_demo(tmp_path: Path) -> None:
    loaded = settings_mod.load(
        {"ingest_tokens_file": "x.yaml", "ingest_auth_header": "X-Api-Key"}, environ={}
    )
    assert (loaded.ingest_tokens_file, loaded.ingest_auth_header) == ("x.yaml", "X-Api-Key")
    from_env = settings_mod.load(environ={"SLOSCOPE_INGEST_TOKENS_FILE": "/etc/t.yaml"})
    assert from_env.ingest_tokens_file == "/etc/t.yaml" and from_env.ingest_auth_header == "authorization"
    with pytest.raises(settings_mod.SettingsError, match="^ingest_auth_header: 'grpc-x' cannot carry tokens"):
        settings_mod.load({"ingest_auth_header": "grpc-x"}, environ={})
    with pytest.raises(settings_mod.SettingsError, match="^demo: sends without an ingest token"):
        settings_mod.load({"ingest_tokens_file": "x.yaml", "demo": True}, environ={})


def test_a_tokens_file_with_errors_stops_the_start(tmp_path: Path) -> None:
    path = _write(tmp_path, "tokens:\n  - name: a\n    sha256: nothex\n    rate_limit: {burst: 2}\n")
    expected = (
        "the ingest tokens file has errors (ingest_tokens_file):\n"
        f"  {path}:3: tokens[0].sha256: must be 64 hex digits (a SHA-256), got 6 characters\n"
        f"  {path}:4: tokens[0].rate_limit.items_per_second: is required"
    )
    config = settings_mod.load({"data_dir": tmp_path / "data", "ingest_tokens_file": str(path)}, environ={})
    with pytest.raises(StartupError) as info:
        SloscopeServer(config)  # refused before the store is opened
    assert str(info.value) == expected
    # The real command line says the same and exits 1.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sloscope",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--ingest-tokens-file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert f"sloscope: error: {expected}\n" in done.stderr


# -- a server with ingest auth on ---------------------------------------------------------------------


@dataclass
class Tokens:
    plain: str
    acme: str
    tiny_http: str
    tiny_grpc: str
    tiny_zipkin: str


@dataclass
class Harness:
    server: InProcess
    tokens: Tokens
    grpc: str
    zipkin: str
    api_key_http: str  #: a second OTLP/HTTP receiver reading x-api-key, over the same queues
    api_key_grpc: str
    loop: asyncio.AbstractEventLoop

    def rows(self, sql: str, params: dict | None = None) -> list[dict]:
        return self.server.rows(sql, params)

    def spans_of(self, service: str) -> list[dict]:
        self.server.drain()
        return self.rows(
            "SELECT lower(hex(span_id)) AS span_id, tenant FROM spans WHERE service_name = {s:String} "
            "ORDER BY span_id",
            {"s": service},
        )

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the server's /metrics, as Prometheus scrapes it."""
        text = httpx.get(f"{self.server.api}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # not on the main thread: no signal handlers
        yield


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("ingest-auth")
    entries = {
        "plain": token_entry("plain"),
        "acme": token_entry("acme-prod", "acme"),
        "tiny_http": token_entry("tiny-http", items_per_second=TINY.items_per_second, burst=TINY.burst),
        "tiny_grpc": token_entry("tiny-grpc", items_per_second=TINY.items_per_second, burst=TINY.burst),
        "tiny_zipkin": token_entry("tiny-zipkin", items_per_second=TINY.items_per_second, burst=TINY.burst),
    }
    path = tmp / "tokens.yaml"
    path.write_text("tokens:\n" + "".join(e.yaml for e in entries.values()), encoding="utf-8")
    tokens = Tokens(**{key: e.token for key, e in entries.items()})
    with in_process(tmp / "data", ingest_tokens_file=str(path)) as server:
        sloscope = server.server
        assert sloscope.metrics is not None
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="api-key-receivers", daemon=True)
        thread.start()

        def on_loop(coro: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

        api_key = IngestAuth(TokenSet.load(path), sloscope.metrics, "x-api-key")
        intake = Intake(sloscope.queues, sloscope.metrics)
        port = free_port()
        http_server = _Uvicorn(
            uvicorn.Config(
                otlp_http.create_app(intake, otlp_http.HttpLimits(), auth=api_key),
                host="127.0.0.1",
                port=port,
                log_config=None,
                lifespan="off",
            )
        )
        serving = asyncio.run_coroutine_threadsafe(http_server.serve(), loop)

        async def grpc_server() -> tuple[grpc.aio.Server, int]:
            server = otlp_grpc.create_server(intake, auth=api_key)
            return server, await otlp_grpc.start(server, "127.0.0.1", 0)

        grpc_api_key, grpc_port = on_loop(grpc_server())
        wait_until(lambda: http_server.started, timeout=10)
        try:
            yield Harness(
                server,
                tokens,
                sloscope.otlp_grpc_address,
                sloscope.zipkin_url,
                f"http://127.0.0.1:{port}",
                f"127.0.0.1:{grpc_port}",
                loop,
            )
        finally:
            http_server.should_exit = True
            serving.result(15)
            on_loop(grpc_api_key.stop(None))
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


def _spans(service: str, n: int, attributes: dict[str, str] | None = None) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, **(attributes or {})}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("ingest-auth.test")
    for i in range(n):
        with tracer.start_as_current_span(f"{service}-{i}"):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def _ids(spans: list[ReadableSpan]) -> list[str]:
    return sorted(format(s.context.span_id, "016x") for s in spans)


def _export(exporter: Any, spans: list[ReadableSpan]) -> SpanExportResult:
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def _request(service: str, n: int) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = service
    now = time.time_ns()
    for i in range(1, n + 1):
        rs.scope_spans.add().spans.add(
            trace_id=now.to_bytes(16, "big")[:-4] + i.to_bytes(4, "big"),
            span_id=(now + i).to_bytes(8, "big"),
            name=f"{service}-{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
    return request.SerializeToString()


def _grpc_call(address: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    with grpc.insecure_channel(address) as channel:
        method = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        return method(body, timeout=20, metadata=metadata)


def _grpc_refusal(address: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _grpc_call(address, body, metadata)
    return info.value


def test_sdk_http_exporter_with_a_token_is_stored_and_without_is_refused(harness: Harness) -> None:
    h = harness
    spans = _spans("auth-http-ok", 3)
    exporter = HttpSpanExporter(
        endpoint=f"{h.server.otlp}/v1/traces", headers={"authorization": f"Bearer {h.tokens.plain}"}
    )
    assert _export(exporter, spans) == SpanExportResult.SUCCESS
    assert [r["span_id"] for r in h.spans_of("auth-http-ok")] == _ids(spans)
    assert {r["tenant"] for r in h.spans_of("auth-http-ok")} == {""}  # no tenant: the default one
    assert h.metric("sloscope_ingest_token_items_total", token="plain", signal="traces") >= 3

    before = h.metric("sloscope_ingest_refusals_total", signal="traces", reason="unauthenticated")
    for headers in ({}, {"authorization": "Bearer sloscope_not-a-token-of-the-file"}):
        refused = _spans("auth-http-refused", 2)
        exporter = HttpSpanExporter(endpoint=f"{h.server.otlp}/v1/traces", headers=headers, timeout=5)
        assert _export(exporter, refused) == SpanExportResult.FAILURE  # 401 is not retried
    after = h.metric("sloscope_ingest_refusals_total", signal="traces", reason="unauthenticated")
    assert after - before == 2
    assert h.spans_of("auth-http-refused") == []


def test_sdk_reads_the_token_from_otel_exporter_otlp_headers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What docs/security/ingest-auth.md tells `sloscope demo` and other SDK clients to set."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{harness.tokens.plain}")
    spans = _spans("auth-http-env", 2)
    assert (
        _export(HttpSpanExporter(endpoint=f"{harness.server.otlp}/v1/traces"), spans)
        == SpanExportResult.SUCCESS
    )
    assert [r["span_id"] for r in harness.spans_of("auth-http-env")] == _ids(spans)


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_http_401_is_a_status_in_the_request_encoding_and_comes_before_the_body(
    harness: Harness, encoding: str
) -> None:
    h = harness
    url = f"{h.server.otlp}/v1/traces"
    content_type = "application/x-protobuf" if encoding == "protobuf" else "application/json"
    # Not gzip at all: a 400 would mean the body was read first.
    headers = {"content-type": content_type, "content-encoding": "gzip"}
    for auth_header, message in (
        (None, "missing bearer token in the Authorization header"),
        ("Bearer sloscope_wrong", "unknown token in the Authorization header"),
        (
            "Basic dXNlcjpwYXNz",
            "the Authorization header must use the Bearer scheme (Authorization: Bearer <token>)",
        ),
    ):
        sent = {**headers, **({"authorization": auth_header} if auth_header else {})}
        reply = httpx.post(url, content=b"not gzip", headers=sent, timeout=10)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith('Bearer realm="sloscope"')
        if encoding == "json":
            assert reply.headers["content-type"] == "application/json"
            status = json_format.Parse(reply.text, status_pb2.Status())
        else:
            assert reply.headers["content-type"] == "application/x-protobuf"
            status = status_pb2.Status.FromString(reply.content)
        assert (status.code, status.message) == (code_pb2.UNAUTHENTICATED, message)
        assert "wrong" not in reply.text and "dXNlcjpwYXNz" not in reply.text
    # An unsupported content type without a token: 401 (in JSON), not 415.
    reply = httpx.post(url, content=b"x", headers={"content-type": "text/plain"}, timeout=10)
    assert reply.status_code == 401 and json.loads(reply.text)["code"] == code_pb2.UNAUTHENTICATED


def test_sdk_grpc_exporter_with_a_token_is_stored_and_without_is_unauthenticated(harness: Harness) -> None:
    h = harness
    spans = _spans("auth-grpc-ok", 3)
    exporter = GrpcSpanExporter(
        endpoint=h.grpc, insecure=True, headers={"authorization": f"Bearer {h.tokens.plain}"}
    )
    assert _export(exporter, spans) == SpanExportResult.SUCCESS
    assert [r["span_id"] for r in h.spans_of("auth-grpc-ok")] == _ids(spans)

    refused = _spans("auth-grpc-refused", 2)
    for headers in (None, {"authorization": "Bearer sloscope_not-a-token-of-the-file"}):
        exporter = GrpcSpanExporter(endpoint=h.grpc, insecure=True, headers=headers, timeout=5)
        assert _export(exporter, refused) == SpanExportResult.FAILURE  # UNAUTHENTICATED is not retried
    # The status and message, raw; garbage bytes are refused for the token, before they are decoded.
    for metadata, message in (
        ((), "missing bearer token in the Authorization header"),
        ((("authorization", "Bearer sloscope_wrong"),), "unknown token in the Authorization header"),
    ):
        error = _grpc_refusal(h.grpc, b"\x0a\xff\xff not protobuf", metadata)
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, message)
        status = status_pb2.Status.FromString(dict(error.trailing_metadata())[otlp_grpc.STATUS_DETAILS_KEY])
        assert (status.code, status.message) == (code_pb2.UNAUTHENTICATED, message)
        assert otlp_grpc.RETRY_INFO_KEY not in dict(error.trailing_metadata())
    assert h.spans_of("auth-grpc-refused") == []


def test_x_api_key_header_variant(harness: Harness) -> None:
    h = harness
    spans = _spans("auth-api-key-http", 2)
    exporter = HttpSpanExporter(endpoint=f"{h.api_key_http}/v1/traces", headers={"x-api-key": h.tokens.plain})
    assert _export(exporter, spans) == SpanExportResult.SUCCESS
    grpc_spans = _spans("auth-api-key-grpc", 2)
    exporter = GrpcSpanExporter(endpoint=h.api_key_grpc, insecure=True, headers={"x-api-key": h.tokens.plain})
    assert _export(exporter, grpc_spans) == SpanExportResult.SUCCESS
    assert [r["span_id"] for r in h.spans_of("auth-api-key-http")] == _ids(spans)
    assert [r["span_id"] for r in h.spans_of("auth-api-key-grpc")] == _ids(grpc_spans)
    # A Bearer header is not what this receiver reads.
    reply = httpx.post(
        f"{h.api_key_http}/v1/traces",
        content=_request("auth-api-key-bearer", 1),
        headers={**PROTOBUF, "authorization": f"Bearer {h.tokens.plain}"},
        timeout=10,
    )
    assert reply.status_code == 401
    assert status_pb2.Status.FromString(reply.content).message == "missing token in the x-api-key header"
    assert reply.headers["www-authenticate"] == 'ApiKey realm="sloscope", header="x-api-key"'
    error = _grpc_refusal(
        h.api_key_grpc, _request("auth-api-key-bearer", 1), (("x-api-key", "sloscope_nope"),)
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "unknown token in the x-api-key header",
    )
    assert h.spans_of("auth-api-key-bearer") == []


def _zipkin_spans(service: str, n: int) -> list[dict[str, Any]]:
    now_us = time.time_ns() // 1000
    trace_id = f"{time.time_ns():032x}"
    return [
        {
            "traceId": trace_id,
            "id": f"{now_us + i:016x}",
            "name": "op",
            "timestamp": now_us,
            "duration": 100,
            "localEndpoint": {"serviceName": service},
        }
        for i in range(n)
    ]


def test_zipkin_with_and_without_a_token(harness: Harness) -> None:
    h = harness
    url = f"{h.zipkin}/api/v2/spans"
    spans = _zipkin_spans("auth-zipkin-ok", 2)
    reply = httpx.post(url, json=spans, headers={"authorization": f"Bearer {h.tokens.acme}"}, timeout=10)
    assert reply.status_code == 202, reply.text
    assert h.spans_of("auth-zipkin-ok") == [
        {"span_id": s["id"], "tenant": "acme"} for s in sorted(spans, key=lambda s: s["id"])
    ]
    for headers, message in (
        ({}, "missing bearer token in the Authorization header"),
        ({"authorization": "Bearer sloscope_wrong"}, "unknown token in the Authorization header"),
    ):
        reply = httpx.post(url, content=b"[not json", headers=headers, timeout=10)  # refused before parsing
        assert (reply.status_code, reply.text) == (401, message + "\n")
        assert reply.headers["www-authenticate"].startswith('Bearer realm="sloscope"')
    reply = httpx.post(url, json=_zipkin_spans("auth-zipkin-refused", 1), timeout=10)
    assert reply.status_code == 401
    assert h.spans_of("auth-zipkin-refused") == []


def test_a_tenant_token_pins_the_tenant_whatever_the_payload_says(harness: Harness) -> None:
    h = harness
    claims = {"tenant": "other", "sloscope.tenant": "other"}
    spans = _spans("auth-tenant-http", 2, claims)
    exporter = HttpSpanExporter(
        endpoint=f"{h.server.otlp}/v1/traces", headers={"authorization": f"Bearer {h.tokens.acme}"}
    )
    assert _export(exporter, spans) == SpanExportResult.SUCCESS
    grpc_spans = _spans("auth-tenant-grpc", 2, claims)
    exporter = GrpcSpanExporter(
        endpoint=h.grpc, insecure=True, headers={"authorization": f"Bearer {h.tokens.acme}"}
    )
    assert _export(exporter, grpc_spans) == SpanExportResult.SUCCESS
    # Without a tenant on the token, the same claims land in the default tenant.
    plain = _spans("auth-tenant-plain", 1, claims)
    exporter = HttpSpanExporter(
        endpoint=f"{h.server.otlp}/v1/traces", headers={"authorization": f"Bearer {h.tokens.plain}"}
    )
    assert _export(exporter, plain) == SpanExportResult.SUCCESS
    assert h.spans_of("auth-tenant-http") == [{"span_id": i, "tenant": "acme"} for i in _ids(spans)]
    assert h.spans_of("auth-tenant-grpc") == [{"span_id": i, "tenant": "acme"} for i in _ids(grpc_spans)]
    assert h.spans_of("auth-tenant-plain") == [{"span_id": i, "tenant": ""} for i in _ids(plain)]
    # The claim is kept as an attribute (it is data), but it never chose the tenant.
    (row,) = h.rows(
        "SELECT resource_attributes['sloscope.tenant'] AS claim, tenant FROM spans "
        "WHERE service_name = 'auth-tenant-plain'"
    )
    assert row == {"claim": "other", "tenant": ""}


def _retry_info_seconds(error: grpc.RpcError) -> tuple[float, float]:
    trailers = dict(error.trailing_metadata())
    exporter_view = error_details_pb2.RetryInfo.FromString(trailers[otlp_grpc.RETRY_INFO_KEY])
    status = status_pb2.Status.FromString(trailers[otlp_grpc.STATUS_DETAILS_KEY])
    [detail] = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return exporter_view.retry_delay.seconds, info.retry_delay.seconds


def test_http_rate_limit_is_429_with_retry_after(harness: Harness) -> None:
    h = harness
    url = f"{h.server.otlp}/v1/traces"
    headers = {**PROTOBUF, "authorization": f"Bearer {h.tokens.tiny_http}"}
    rejected = h.metric("sloscope_items_rejected_total", signal="traces", reason="rate_limited")
    limited = h.metric("sloscope_ingest_refusals_total", signal="traces", reason="rate_limited")
    assert (
        httpx.post(url, content=_request("auth-rate-http", 3), headers=headers, timeout=10).status_code == 200
    )
    # 2 left: 3 more are refused after decoding (and nothing is taken), 2 pass.
    reply = httpx.post(url, content=_request("auth-rate-http-refused", 3), headers=headers, timeout=10)
    assert reply.status_code == 429
    status = status_pb2.Status.FromString(reply.content)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    # 1 item short at 0.01 items/s: 100 s (a little less for each second the test has taken).
    assert 95 <= int(reply.headers["retry-after"]) <= 100
    assert status.message == (
        "rate limit of token 'tiny-http' exceeded (0.01 items per second, burst 5); "
        f"retry in {reply.headers['retry-after']} s"
    )
    assert (
        httpx.post(url, content=_request("auth-rate-http", 2), headers=headers, timeout=10).status_code == 200
    )
    # Empty bucket: refused before the body is read (garbage would otherwise be a 400).
    reply = httpx.post(url, content=b"garbage", headers=headers, timeout=10)
    assert reply.status_code == 429 and 90 <= int(reply.headers["retry-after"]) <= 100
    # The real exporter is told to wait longer than its timeout allows: it gives up rather than hammer.
    exporter = HttpSpanExporter(
        endpoint=url, headers={"authorization": f"Bearer {h.tokens.tiny_http}"}, timeout=3
    )
    assert _export(exporter, _spans("auth-rate-http-sdk", 1)) == SpanExportResult.FAILURE
    assert len(h.spans_of("auth-rate-http")) == 5
    assert h.spans_of("auth-rate-http-refused") == h.spans_of("auth-rate-http-sdk") == []
    assert h.metric("sloscope_items_rejected_total", signal="traces", reason="rate_limited") - rejected == 3
    assert h.metric("sloscope_ingest_refusals_total", signal="traces", reason="rate_limited") - limited == 3
    assert h.metric("sloscope_export_requests_total", signal="traces", transport="http", code="429") >= 3
    # Other tokens have buckets of their own.
    plain = {**PROTOBUF, "authorization": f"Bearer {h.tokens.plain}"}
    assert (
        httpx.post(url, content=_request("auth-rate-other", 6), headers=plain, timeout=10).status_code == 200
    )


def test_grpc_rate_limit_is_resource_exhausted_with_retry_info(harness: Harness) -> None:
    h = harness
    metadata = (("authorization", f"Bearer {h.tokens.tiny_grpc}"),)
    ExportTraceServiceResponse.FromString(_grpc_call(h.grpc, _request("auth-rate-grpc", 4), metadata))
    error = _grpc_refusal(h.grpc, _request("auth-rate-grpc-refused", 2), metadata)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delays = _retry_info_seconds(error)
    assert delays[0] == delays[1] and 95 <= delays[0] <= 100
    assert error.details() == (
        f"rate limit of token 'tiny-grpc' exceeded (0.01 items per second, burst 5); retry in {delays[0]} s"
    )
    _grpc_call(h.grpc, _request("auth-rate-grpc", 1), metadata)
    error = _grpc_refusal(h.grpc, b"\x0a\xff\xff not protobuf", metadata)  # empty: refused before decoding
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and 90 <= _retry_info_seconds(error)[0] <= 100
    assert len(h.spans_of("auth-rate-grpc")) == 5 and h.spans_of("auth-rate-grpc-refused") == []
    assert (
        h.metric(
            "sloscope_export_requests_total", signal="traces", transport="grpc", code="RESOURCE_EXHAUSTED"
        )
        >= 2
    )


def test_zipkin_rate_limit_is_429_with_retry_after(harness: Harness) -> None:
    h = harness
    url = f"{h.zipkin}/api/v2/spans"
    headers = {"authorization": f"Bearer {h.tokens.tiny_zipkin}"}
    assert (
        httpx.post(url, json=_zipkin_spans("auth-rate-zipkin", 5), headers=headers, timeout=10).status_code
        == 202
    )
    reply = httpx.post(url, json=_zipkin_spans("auth-rate-zipkin-refused", 1), headers=headers, timeout=10)
    assert reply.status_code == 429 and 90 <= int(reply.headers["retry-after"]) <= 100
    assert reply.text.startswith("rate limit of token 'tiny-zipkin' exceeded")
    assert h.spans_of("auth-rate-zipkin-refused") == []


# -- the compose deployment ---------------------------------------------------------------------------


def test_compose_turns_ingest_auth_on_with_a_token_the_gateway_sends() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    env_example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    tokens_file = ROOT / env_example["INGEST_AUTH_FILE"]
    tokens = TokenSet.load(tokens_file)
    for name in ("sloscope", "collector"):
        service = compose["services"][name]
        target = service["environment"]["SLOSCOPE_INGEST_TOKENS_FILE"]
        mounts = [v for v in service["volumes"] if v.endswith(f":{target}:ro")]
        assert mounts == ["${INGEST_AUTH_FILE:?set INGEST_AUTH_FILE in .env}:" + f"{target}:ro"], name
    # Roles without receivers neither mount nor need it.
    for name in ("evaluator", "ui"):
        assert "SLOSCOPE_INGEST_TOKENS_FILE" not in compose["services"][name]["environment"]
    gateway = yaml.safe_load((ROOT / "deploy/otel-gateway.yaml").read_text(encoding="utf-8"))
    (exporter,) = gateway["exporters"].values()
    assert exporter["headers"] == {"authorization": "Bearer ${env:INGEST_TOKEN}"}
    assert compose["services"]["otel-gateway"]["environment"]["INGEST_TOKEN"].startswith("${INGEST_TOKEN:?")
    # The placeholder token of .env.example is the one the example file lists (and must be replaced).
    token = tokens.authenticate(env_example["INGEST_TOKEN"])
    assert token is not None and token.name == "gateway"
    assert "REPLACE" in tokens_file.read_text(encoding="utf-8")


def test_the_embedded_demo_stays_without_auth() -> None:
    assert settings_mod.load({"demo": True}, environ={}).ingest_tokens_file == ""
    assert settings_mod.Settings().ingest_tokens_file == ""
