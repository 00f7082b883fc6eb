"""TLS for sloscope's listeners: SSL contexts for the HTTP ports, credentials for OTLP/gRPC.

Everything is read from PEM files named by the settings ``tls_cert_file`` (the certificate, then
any intermediates), ``tls_key_file`` (its unencrypted private key) and ``tls_client_ca_file`` (CA
certificates that sign the clients' certificates, for mutual TLS). The files are read once, at
start-up: a renewed certificate takes effect on restart. TLS 1.2 is the oldest version offered.

Problems are :class:`TlsError` messages that name the setting and the file, so that a wrong path or
a key of another certificate is reported before any listener opens.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    import requests

    from sloscope.settings import Settings

_CERT_MARK = "-----BEGIN CERTIFICATE-----"
_KEY_MARK = "PRIVATE KEY-----"


class TlsError(ValueError):
    """A TLS file cannot be used; the message names the setting and the file."""


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of the TLS settings; ``client_ca_file`` None: no client certificates asked."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> TlsFiles:
        """The files named by ``settings`` (which must have ``tls_cert_file`` and ``tls_key_file``)."""
        ca = settings.tls_client_ca_file
        return cls(
            Path(settings.tls_cert_file).expanduser(),
            Path(settings.tls_key_file).expanduser(),
            Path(ca).expanduser() if ca else None,
        )

    @property
    def mutual(self) -> bool:
        """Ingest clients must present a certificate signed by ``client_ca_file``."""
        return self.client_ca_file is not None


def enabled(settings: Settings) -> TlsFiles | None:
    """The TLS files when ``settings`` turn TLS on, else None."""
    return TlsFiles.of(settings) if settings.tls_cert_file else None


def _read(setting: str, path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError as exc:
        raise TlsError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TlsError(f"{setting}: {path} is not a PEM file (binary DER is not read; convert it)") from None


def _no_password() -> bytes:
    # An encrypted key is refused with a message, never prompted for on the terminal (OpenSSL's
    # default), which would hang a server started without one.
    raise TlsError("the private key is encrypted")


def check(files: TlsFiles) -> None:
    """Read and parse every file of ``files``; :class:`TlsError` naming the setting on a problem."""
    if _CERT_MARK not in _read("tls_cert_file", files.cert_file):
        raise TlsError(f"tls_cert_file: {files.cert_file} holds no PEM certificate ({_CERT_MARK})")
    key = _read("tls_key_file", files.key_file)
    if _KEY_MARK not in key:
        raise TlsError(f"tls_key_file: {files.key_file} holds no PEM private key")
    if "ENCRYPTED" in key:
        raise TlsError(
            f"tls_key_file: {files.key_file} is encrypted; give the key unencrypted and protect the file "
            "instead (e.g. `openssl pkey -in key.pem -out plain.pem`, mode 0600)"
        )
    if files.client_ca_file is not None and _CERT_MARK not in _read(
        "tls_client_ca_file", files.client_ca_file
    ):
        raise TlsError(
            f"tls_client_ca_file: {files.client_ca_file} holds no PEM CA certificate ({_CERT_MARK})"
        )
    server_context(files, client_auth=True)


def server_context(files: TlsFiles, *, client_auth: bool) -> ssl.SSLContext:
    """A server-side context with the certificate and key; with ``client_auth`` and a client CA
    file, clients must present a certificate signed by one of its CAs (else the handshake fails)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # uvicorn speaks HTTP/1.1 only: say so in ALPN, so that a client offering h2 does not try it.
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(files.cert_file, files.key_file, password=_no_password)
    except TlsError as exc:
        raise TlsError(f"tls_key_file: {files.key_file}: {exc}") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TlsError(
                f"tls_key_file: {files.key_file} is not the private key of the certificate in "
                f"tls_cert_file ({files.cert_file})"
            ) from None
        raise TlsError(
            f"tls_cert_file, tls_key_file: cannot use {files.cert_file} with {files.key_file}: "
            f"{exc.reason or exc}"
        ) from None
    if client_auth and files.client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cafile=files.client_ca_file)
        except ssl.SSLError as exc:
            raise TlsError(
                f"tls_client_ca_file: cannot use {files.client_ca_file}: {exc.reason or exc}"
            ) from None
    return context


def grpc_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """OTLP/gRPC server credentials; with a client CA file, client certificates are required."""
    ca = files.client_ca_file.read_bytes() if files.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(files.key_file.read_bytes(), files.cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def own_certificate_context(cert_file: Path) -> ssl.SSLContext:
    """A client context trusting exactly the certificates in ``cert_file`` (the server's own), with
    partial chains accepted, so that the server certificate itself is the trust anchor."""
    context = ssl.create_default_context(cafile=str(cert_file))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def trusting_session(cert_file: Path) -> requests.Session:
    """A ``requests`` session (for the OpenTelemetry OTLP/HTTP exporters) that trusts exactly the
    certificates in ``cert_file``: the demo verifying the server it runs in by the server's own
    certificate file, whoever issued it. Partial chains are accepted, so the server certificate itself
    is the trust anchor (its CA need not be in the file); the name is checked as usual.
    """
    import requests
    from requests.adapters import HTTPAdapter

    context = own_certificate_context(cert_file)

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: object, **kwargs: object) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]

    session = requests.Session()
    # Else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment replace the exporter's
    # certificate_file (requests lets them override a session's verify), and proxies apply to loopback.
    session.trust_env = False
    session.mount("https://", _Adapter())
    return session
