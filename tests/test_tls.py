"""TLS and mutual TLS on every listener, with certificates from a throwaway CA (trustme).

Two in-process servers, one after the other (chDB holds one data directory per process):

* ``TestMutualTls``: ``tls_client_ca_file`` set. The real OpenTelemetry SDK exporters (OTLP/HTTP and
  OTLP/gRPC) with a client certificate of the CA get their spans stored; without a certificate, or
  with one of another CA, the handshake fails (HTTP) or the call is UNAVAILABLE (gRPC); plain HTTP
  and plaintext gRPC to the TLS ports fail; Zipkin takes the same client certificates; the API port
  serves https with the server certificate and asks no client certificate.
* ``TestServerTls``: certificate and key only. The SDK exporters trusting the CA (no client
  certificate) get their spans stored.

The settings tests check that a half or broken TLS configuration is a SettingsError naming the setting.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sloscope import settings as settings_mod
from sloscope.app import demo_tls
from sloscope.demo import Demo, DemoConfig
from tests.conftest import InProcess, in_process, wait_until

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, the server's certificate (chain) and key, a client's, another CA's client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _write(ca: trustme.CA, directory: Path, name: str, *identities: str) -> tuple[Path, Path]:
    issued = ca.issue_cert(*identities)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = _write(ca, directory, "server", "127.0.0.1", "localhost")
    client = _write(ca, directory, "client", "client.sloscope.test")
    other = _write(rogue, directory, "rogue", "client.sloscope.test")
    return Pki(directory / "ca.pem", *server, *client, *other)


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE (set on many machines, this one too) override the Python
    # OTLP/HTTP exporter's certificate_file: the exporters here must use the test CA.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def spans(service: str, n: int = 3) -> list[ReadableSpan]:
    """``n`` finished SDK spans of ``service``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_tls")
    for i in range(n):
        tracer.start_span(f"op-{i}").end()
    provider.shutdown()
    return list(exporter.get_finished_spans())


def stored(server: InProcess, service: str) -> int:
    server.drain()
    rows = server.rows("SELECT count() AS n FROM spans WHERE service_name = {s:String}", {"s": service})
    return rows[0]["n"]


def grpc_credentials(pki: Pki, client: tuple[Path, Path] | None) -> grpc.ChannelCredentials:
    key, cert = (client[1].read_bytes(), client[0].read_bytes()) if client else (None, None)
    return grpc.ssl_channel_credentials(pki.ca.read_bytes(), private_key=key, certificate_chain=cert)


def raw_grpc_export(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """One empty trace export on a fresh channel: the status code (OK on success)."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        call = channel.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
        try:
            call(b"", timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _server_settings(pki: Pki, mutual: bool) -> dict[str, object]:
    values: dict[str, object] = {"tls_cert_file": str(pki.server_cert), "tls_key_file": str(pki.server_key)}
    if mutual:
        values["tls_client_ca_file"] = str(pki.ca)
    return values


class TestMutualTls:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
        with in_process(tmp_path_factory.mktemp("mtls"), **_server_settings(pki, mutual=True)) as s:
            yield s

    def test_urls_and_banner_say_https(self, server: InProcess) -> None:
        app = server.server
        assert app.api_url.startswith("https://") and app.otlp_url.startswith("https://")
        assert app.zipkin_url.startswith("https://")
        banner = app._banner()
        assert f"API and UI at {app.api_url}/" in banner and f"OTLP/HTTP at {app.otlp_url}" in banner
        assert f"OTLP/gRPC at https://{app.otlp_grpc_address}" in banner
        assert "client certificates required" in banner

    def test_api_serves_https_with_the_certificate_and_asks_no_client_certificate(
        self, server: InProcess, pki: Pki
    ) -> None:
        # Verified against the CA and the name 127.0.0.1: the server presents the certificate given.
        response = httpx.get(
            f"{server.api}/readyz", verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10
        )
        assert response.status_code == 200
        assert response.url.scheme == "https"
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        # The container health check speaks https by itself, trusting the server's own certificate.
        port = httpx.URL(server.api).port
        env = {
            **os.environ,
            "SLOSCOPE_API_PORT": str(port),
            "SLOSCOPE_TLS_CERT_FILE": str(pki.server_cert),
            "SLOSCOPE_TLS_KEY_FILE": str(pki.server_key),
        }
        health = subprocess.run(
            [sys.executable, "-m", "sloscope", "health"], env=env, capture_output=True, text=True, timeout=60
        )
        assert health.returncode == 0, health.stderr
        env.pop("SLOSCOPE_TLS_CERT_FILE"), env.pop("SLOSCOPE_TLS_KEY_FILE")
        plain = subprocess.run(
            [sys.executable, "-m", "sloscope", "health"], env=env, capture_output=True, text=True, timeout=60
        )
        assert plain.returncode == 1 and "not healthy" in plain.stderr
        # A client trusting only another CA refuses it: the chain is the one of tls_cert_file.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.api}/readyz", verify=ssl.create_default_context(), timeout=10)

    def test_plain_http_to_tls_ports_fails(self, server: InProcess) -> None:
        for url in (server.api, server.otlp, server.server.zipkin_url):
            plain = url.replace("https://", "http://")
            with pytest.raises(httpx.TransportError):
                httpx.post(f"{plain}/v1/traces", content=b"", timeout=5)
        assert raw_grpc_export(server.server.otlp_grpc_address, None) == grpc.StatusCode.UNAVAILABLE

    def test_sdk_http_exporter_with_client_certificate_is_stored(self, server: InProcess, pki: Pki) -> None:
        exporter = HttpSpanExporter(
            endpoint=f"{server.otlp}/v1/traces",
            certificate_file=str(pki.ca),
            client_certificate_file=str(pki.client_cert),
            client_key_file=str(pki.client_key),
            timeout=10,
        )
        try:
            assert exporter.export(spans("mtls-http", 3)) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert stored(server, "mtls-http") == 3

    def test_sdk_grpc_exporter_with_client_certificate_is_stored(self, server: InProcess, pki: Pki) -> None:
        exporter = GrpcSpanExporter(
            endpoint=server.server.otlp_grpc_address,
            credentials=grpc_credentials(pki, (pki.client_cert, pki.client_key)),
            timeout=10,
        )
        try:
            assert exporter.export(spans("mtls-grpc", 4)) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert stored(server, "mtls-grpc") == 4

    def test_http_client_without_or_with_a_foreign_certificate_is_refused(
        self, server: InProcess, pki: Pki
    ) -> None:
        for cert in (None, (str(pki.rogue_cert), str(pki.rogue_key))):
            context = ssl.create_default_context(cafile=str(pki.ca))
            if cert:
                context.load_cert_chain(*cert)
            # TLS 1.3 sends the refusal after the client's handshake finished: it surfaces on first read.
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                httpx.post(f"{server.otlp}/v1/traces", content=b"", verify=context, timeout=5)
        # The SDK exporter without a client certificate fails its export, and nothing is stored.
        exporter = HttpSpanExporter(
            endpoint=f"{server.otlp}/v1/traces", certificate_file=str(pki.ca), timeout=2
        )
        try:
            assert exporter.export(spans("mtls-nocert", 2)) == SpanExportResult.FAILURE
        finally:
            exporter.shutdown()
        assert stored(server, "mtls-nocert") == 0

    def test_grpc_client_without_or_with_a_foreign_certificate_is_unavailable(
        self, server: InProcess, pki: Pki
    ) -> None:
        address = server.server.otlp_grpc_address
        assert raw_grpc_export(address, grpc_credentials(pki, None)) == grpc.StatusCode.UNAVAILABLE
        rogue = grpc_credentials(pki, (pki.rogue_cert, pki.rogue_key))
        assert raw_grpc_export(address, rogue) == grpc.StatusCode.UNAVAILABLE
        # The same call with the CA's client certificate gets through to the handler (an empty
        # request is a valid, empty export).
        good = grpc_credentials(pki, (pki.client_cert, pki.client_key))
        assert raw_grpc_export(address, good) == grpc.StatusCode.OK

    def test_zipkin_takes_the_same_client_certificates(self, server: InProcess, pki: Pki) -> None:
        body = [
            {
                "traceId": "5af7183fb1d4cf5f5af7183fb1d4cf5f",
                "id": "5af7183fb1d4cf5f",
                "name": "get /zipkin",
                "timestamp": int(time.time() * 1e6),
                "duration": 1500,
                "localEndpoint": {"serviceName": "mtls-zipkin"},
            }
        ]
        url = f"{server.server.zipkin_url}/api/v2/spans"
        headers = {"Content-Type": "application/json"}
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        response = httpx.post(url, content=json.dumps(body), headers=headers, verify=context, timeout=10)
        assert response.status_code == 202, response.text
        assert wait_until(lambda: stored(server, "mtls-zipkin")) == 1
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            trusting = ssl.create_default_context(cafile=str(pki.ca))
            httpx.post(url, content=json.dumps(body), headers=headers, verify=trusting, timeout=5)


class TestServerTls:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
        with in_process(tmp_path_factory.mktemp("tls"), **_server_settings(pki, mutual=False)) as s:
            yield s

    def test_sdk_exporters_trusting_the_ca_are_stored(self, server: InProcess, pki: Pki) -> None:
        http = HttpSpanExporter(endpoint=f"{server.otlp}/v1/traces", certificate_file=str(pki.ca), timeout=10)
        grpc_exporter = GrpcSpanExporter(
            endpoint=server.server.otlp_grpc_address, credentials=grpc_credentials(pki, None), timeout=10
        )
        try:
            assert http.export(spans("tls-http", 2)) == SpanExportResult.SUCCESS
            assert grpc_exporter.export(spans("tls-grpc", 5)) == SpanExportResult.SUCCESS
        finally:
            http.shutdown()
            grpc_exporter.shutdown()
        assert (stored(server, "tls-http"), stored(server, "tls-grpc")) == (2, 5)
        assert "client certificates" not in server.server._banner()

    def test_demo_sends_over_tls_trusting_the_servers_own_certificate(
        self, server: InProcess, pki: Pki
    ) -> None:
        # What `serve --demo` does with TLS on: the certificate file holds no CA, yet it is trusted
        # as it is (the certificate itself is the anchor), and its name is checked.
        assert server.server.tls is not None
        demo = Demo(DemoConfig(endpoint=server.otlp, rate=1.0, seed=7), **demo_tls(server.server.tls))
        trace_ids = [demo.run_once() for _ in range(3)]
        demo.stop()
        server.drain()
        rows = server.rows(
            "SELECT count(DISTINCT trace_id) AS n FROM spans WHERE service_name = 'gateway' "
            "AND lower(hex(trace_id)) IN {ids:Array(String)}",
            {"ids": trace_ids},
        )
        assert rows[0]["n"] == 3

    def test_plaintext_exporter_to_the_tls_port_fails(self, server: InProcess) -> None:
        exporter = HttpSpanExporter(
            endpoint=server.otlp.replace("https://", "http://") + "/v1/traces", timeout=2
        )
        try:
            assert exporter.export(spans("tls-plain", 1)) == SpanExportResult.FAILURE
        finally:
            exporter.shutdown()
        assert raw_grpc_export(server.server.otlp_grpc_address, None) == grpc.StatusCode.UNAVAILABLE
        assert stored(server, "tls-plain") == 0


# -- settings ---------------------------------------------------------------------------------------


def _load(**values: object) -> settings_mod.Settings:
    return settings_mod.load(values, environ={})


def test_key_without_certificate_names_the_setting(pki: Pki) -> None:
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: is set without tls_cert_file"):
        _load(tls_key_file=str(pki.server_key))
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_cert_file: is set without tls_key_file"):
        _load(tls_cert_file=str(pki.server_cert))
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_client_ca_file: mutual TLS needs TLS"):
        _load(tls_client_ca_file=str(pki.ca))


def test_missing_or_unreadable_files_name_the_setting(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(settings_mod.SettingsError, match=rf"^tls_cert_file: {missing} does not exist"):
        _load(tls_cert_file=str(missing), tls_key_file=str(pki.server_key))
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_client_ca_file: .* does not exist"):
        _load(
            tls_cert_file=str(pki.server_cert),
            tls_key_file=str(pki.server_key),
            tls_client_ca_file=str(missing),
        )
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: .* is not a file"):
        _load(tls_cert_file=str(pki.server_cert), tls_key_file=str(tmp_path))
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked.key"
        locked.write_bytes(pki.server_key.read_bytes())
        locked.chmod(0)
        with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: cannot read"):
            _load(tls_cert_file=str(pki.server_cert), tls_key_file=str(locked))
    # From the environment too, as SLOSCOPE_TLS_*.
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: .* does not exist"):
        settings_mod.load(
            environ={"SLOSCOPE_TLS_CERT_FILE": str(pki.server_cert), "SLOSCOPE_TLS_KEY_FILE": str(missing)}
        )


def test_wrong_contents_name_the_setting(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_cert_file: .* holds no PEM certificate"):
        _load(tls_cert_file=str(not_pem), tls_key_file=str(pki.server_key))
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: .* holds no PEM private key"):
        _load(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_cert))
    # The client's key is a key, but not the server certificate's.
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: .* is not the private key"):
        _load(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.client_key))
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_client_ca_file: .* holds no PEM CA"):
        _load(
            tls_cert_file=str(pki.server_cert),
            tls_key_file=str(pki.server_key),
            tls_client_ca_file=str(not_pem),
        )
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter22"),
        )
    )
    with pytest.raises(settings_mod.SettingsError, match=r"^tls_key_file: .* is encrypted"):
        _load(tls_cert_file=str(pki.server_cert), tls_key_file=str(encrypted))
    ok = _load(
        tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key), tls_client_ca_file=str(pki.ca)
    )
    assert ok.tls_client_ca_file == str(pki.ca)


def test_demo_with_mutual_tls_is_refused(pki: Pki) -> None:
    with pytest.raises(settings_mod.SettingsError, match=r"^demo: cannot send to listeners that require"):
        _load(demo=True, **_server_settings(pki, mutual=True))
