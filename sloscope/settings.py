"""Settings from command-line flags, then ``SLOSCOPE_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from store.cluster import check_cluster_name

DEFAULT_CORRELATION_KEYS = (
    "correlation.id",
    "correlation_id",
    "x-correlation-id",
    "http.request.header.x-correlation-id",
)

#: What one ``sloscope serve`` process runs (docs/deploy.md): ``all`` of it, or one part, so that
#: collectors scale out while the evaluator and the UI run beside them on one ClickHouse server.
ROLES = ("all", "collector", "evaluator", "ui")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".sloscope-data")
    clickhouse_url: str = ""
    #: A ClickHouse cluster name: migrations run ``ON CLUSTER`` it (empty: a single server).
    clickhouse_cluster: str = ""
    #: The ClickHouse user, instead of one in ``clickhouse_url`` (empty: the URL's, else ``default``).
    clickhouse_user: str = ""
    #: The ClickHouse password: only from SLOSCOPE_CLICKHOUSE_PASSWORD (no flag: command lines are
    #: visible to every user of the machine) or read from ``clickhouse_password_file``.
    clickhouse_password: str = field(default="", repr=False)
    #: A file holding the ClickHouse password (a Docker or Kubernetes secret); surrounding white
    #: space is not part of it.
    clickhouse_password_file: str = ""
    #: One of ROLES; anything but ``all`` needs ``clickhouse_url``.
    role: str = "all"
    host: str = "127.0.0.1"
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    zipkin_port: int = 9411
    api_port: int = 8080
    #: The URL people and receivers reach this server at (behind a proxy or a load balancer, its
    #: public address): the base of every absolute link the server makes (notifications' incident
    #: URL, relative runbook and dashboard links). Empty: derived from host and api_port
    #: (:func:`default_external_url`), which the notification policy's own external_url overrides.
    external_url: str = ""
    #: PEM certificate (chain) and private key: every listener (API and UI, OTLP/HTTP, OTLP/gRPC,
    #: Zipkin) serves TLS with them. Both or neither; empty: plain HTTP and gRPC.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: PEM CA certificates: the ingest listeners (OTLP/HTTP, OTLP/gRPC, Zipkin) then require a client
    #: certificate signed by one of them (mutual TLS). The API and UI port stays server-TLS only.
    tls_client_ca_file: str = ""
    #: The ingest tokens file (docs/security/ingest-auth.md): when set, the receivers accept only
    #: requests carrying one of its tokens; empty: no ingest authentication (the embedded demo).
    ingest_tokens_file: str = ""
    #: The header carrying the token: ``authorization`` (``Authorization: Bearer <token>``), or any
    #: other header name such as ``x-api-key``, whose whole value is then the token.
    ingest_auth_header: str = "authorization"
    #: The web UI's and the API's users (docs/security/ui-auth.md): a YAML file of names, password
    #: hashes, roles and tenants. With users (or auth_proxy_header) configured, every page and
    #: endpoint but health, readiness, metrics and the login page needs a user; without: all open.
    users_file: str = ""
    #: The same document inline (SLOSCOPE_USERS, YAML or JSON), for deployments without files.
    users: str = field(default="", repr=False)
    #: A file holding the secret that signs login sessions (32 bytes or more); UI replicas must
    #: share one. Neither it nor SLOSCOPE_SESSION_SECRET: a random secret per process, so a restart
    #: signs everyone out.
    session_secret_file: str = ""
    session_secret: str = field(default="", repr=False)
    #: Seconds a login session lasts (then sign in again).
    session_max_age: int = 12 * 3600
    #: A header naming the user, set by an authenticating reverse proxy (e.g. X-Forwarded-User);
    #: honoured only on requests from auth_proxy_trusted. Empty: no proxy authentication.
    auth_proxy_header: str = ""
    #: Addresses and CIDR blocks of that proxy, comma-separated (10.0.0.5,10.1.0.0/16).
    auth_proxy_trusted: tuple[str, ...] = ()
    #: The role of a proxy user missing from the users file; empty: such users are refused (403).
    auth_proxy_default_role: str = ""
    #: Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (the client's address for
    #: login throttling, and TLS for Secure cookies), comma-separated addresses or CIDR blocks.
    trusted_proxies: tuple[str, ...] = ()
    #: /metrics needs a user of every tenant too (Prometheus: basic_auth); default: open.
    metrics_auth: bool = False
    retention_days: int = 7
    correlation_keys: tuple[str, ...] = DEFAULT_CORRELATION_KEYS
    max_body_bytes: int = 16 << 20
    #: Seconds an OTLP/HTTP or Zipkin client has to send a whole request body once its headers
    #: are in; a slower or stalled upload is answered 408 and its connection closed.
    body_read_timeout: float = 30.0
    #: Acknowledged but not yet stored, per signal, while the store takes data: beyond it exports
    #: are answered 429 (slow down). Not applied while the store takes nothing (see max_wal_bytes).
    max_queue_bytes: int = 512 << 20
    #: The disk the write-ahead log of one signal may take (its segment files; 0: no cap). At the
    #: cap exports are answered 503 and /readyz says why (docs/reliability/wal-and-outage.md).
    max_wal_bytes: int = 2 << 30
    #: Free space the write-ahead log leaves on its filesystem (for the embedded store, the
    #: checkpoint and logs); below it exports are answered 503. 0: no reserve.
    min_free_disk_bytes: int = 256 << 20
    #: Resident memory (RSS) of the whole process, the embedded engine included: from 85% of it
    #: on, new exports are answered 429 / RESOURCE_EXHAUSTED with a retry delay
    #: (collector/admission.py, docs/reliability/overload.md). The flusher's batches are capped
    #: at a 10th of the room it leaves (52 MiB of requests at 1 GiB), the engine's share of a
    #: flush. 0: no bound.
    max_memory_bytes: int = 1 << 30
    #: Request bytes being decoded or written to the write-ahead log at once; beyond it exports
    #: are answered 429 (one request is always let in). 0: no cap.
    max_inflight_bytes: int = 32 << 20
    # Each insert statement costs ~175 ms of query planning in the engine, whatever its size:
    # batches must be large for that to vanish (docs/ingest.md). The 1 s bound keeps latency low.
    batch_rows: int = 200_000
    batch_delay: float = 1.0
    #: Statements writing one batch at once. One core is left to receiving, merges and queries: on
    #: 2 cores two statements stored at the same rate as one, for a third more CPU per span and
    #: ~130 MiB more memory (docs/ingest.md).
    insert_parallelism: int = field(default_factory=lambda: max(1, min(2, (os.cpu_count() or 2) - 1)))
    log_format: str = "text"
    log_level: str = "INFO"
    demo: bool = False
    demo_rate: float = 5.0
    #: A spec file or a directory of them (native YAML or OpenSLO v1); empty: no SLOs.
    slos: str = ""
    #: The notification policy (routes, receivers, inhibitions); empty: record alerts, send nothing.
    notification_policy: str = ""
    #: Seconds between SLO evaluations (whole minutes); 60 evaluates every minute.
    slo_interval: int = 60
    #: Seconds after an evaluation found the store unreachable during which evaluations report "no
    #: data": collectors elsewhere are still writing what their logs kept (docs/slo-semantics.md).
    slo_recovery_s: int = 120
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def store_label(self) -> str:
        return "clickhouse-server" if self.clickhouse_url else f"embedded chDB at {self.data_dir}"

    @property
    def receives(self) -> bool:
        """This process runs the receivers, the write-ahead log and the flushers."""
        return self.role in ("all", "collector")

    @property
    def evaluates(self) -> bool:
        """This process runs the SLO schedule, alerting and the service map roll-up."""
        return self.role in ("all", "evaluator")

    @property
    def serves_ui(self) -> bool:
        """The API port serves the web UI and the query API, not only health and metrics."""
        return self.role in ("all", "ui")


def _convert(name: str, raw: str, kind: type) -> object:
    try:
        if kind is Path:
            return Path(raw)
        if kind is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError as exc:
        raise SettingsError(f"SLOSCOPE_{name.upper()}: cannot use {raw!r}: {exc}") from exc


_KINDS: dict[str, type] = {
    "data_dir": Path,
    "clickhouse_url": str,
    "clickhouse_cluster": str,
    "clickhouse_user": str,
    "clickhouse_password": str,
    "clickhouse_password_file": str,
    "role": str,
    "host": str,
    "otlp_http_port": int,
    "otlp_grpc_port": int,
    "zipkin_port": int,
    "api_port": int,
    "external_url": str,
    "tls_cert_file": str,
    "tls_key_file": str,
    "tls_client_ca_file": str,
    "ingest_tokens_file": str,
    "ingest_auth_header": str,
    "users_file": str,
    "users": str,
    "session_secret_file": str,
    "session_secret": str,
    "session_max_age": int,
    "auth_proxy_header": str,
    "auth_proxy_trusted": tuple,
    "auth_proxy_default_role": str,
    "trusted_proxies": tuple,
    "metrics_auth": bool,
    "retention_days": int,
    "correlation_keys": tuple,
    "max_body_bytes": int,
    "body_read_timeout": float,
    "max_queue_bytes": int,
    "max_wal_bytes": int,
    "min_free_disk_bytes": int,
    "max_memory_bytes": int,
    "max_inflight_bytes": int,
    "batch_rows": int,
    "batch_delay": float,
    "insert_parallelism": int,
    "log_format": str,
    "log_level": str,
    "demo": bool,
    "demo_rate": float,
    "slos": str,
    "notification_policy": str,
    "slo_interval": int,
    "slo_recovery_s": int,
}


def load(overrides: dict[str, object] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build Settings: ``overrides`` (flags given on the command line) win over the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name not in _KINDS:
            continue
        raw = env.get(f"SLOSCOPE_{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, raw, _KINDS[f.name])
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if values.get("clickhouse_password_file"):
        if values.get("clickhouse_password"):
            raise SettingsError(
                "clickhouse_password_file: give the password in SLOSCOPE_CLICKHOUSE_PASSWORD or in "
                "clickhouse_password_file, not both"
            )
        values["clickhouse_password"] = _read_secret(
            "clickhouse_password_file", values["clickhouse_password_file"]
        )
    if values.get("session_secret_file"):
        if values.get("session_secret"):
            raise SettingsError(
                "session_secret_file: give the secret in SLOSCOPE_SESSION_SECRET or in "
                "session_secret_file, not both"
            )
        values["session_secret"] = _read_secret("session_secret_file", values["session_secret_file"])
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def _read_secret(name: str, path: object) -> str:
    """The secret held in the file ``path`` of setting ``name``, without surrounding white space."""
    target = Path(str(path)).expanduser()
    try:
        value = target.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"{name}: cannot read {target}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if not value:
        raise SettingsError(f"{name}: {target} is empty")
    return value


def _check_readable(name: str, path: str) -> None:
    target = Path(path).expanduser()
    if not target.exists():
        raise SettingsError(f"{name}: {target} does not exist")
    if not target.is_file():
        raise SettingsError(f"{name}: {target} is not a file")
    try:
        with target.open("rb"):
            pass
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {target}: {exc.strerror or exc}") from None


def _validate_tls(s: Settings) -> None:
    if s.tls_key_file and not s.tls_cert_file:
        raise SettingsError("tls_key_file: is set without tls_cert_file (give both, or neither for no TLS)")
    if s.tls_cert_file and not s.tls_key_file:
        raise SettingsError("tls_cert_file: is set without tls_key_file (give both, or neither for no TLS)")
    if s.tls_client_ca_file and not s.tls_cert_file:
        raise SettingsError(
            "tls_client_ca_file: mutual TLS needs TLS first: set tls_cert_file and tls_key_file too"
        )
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        if getattr(s, name):
            _check_readable(name, getattr(s, name))
    if not s.tls_cert_file:
        return
    from sloscope import tls  # the files' contents: a certificate, a key that matches it, CAs

    try:
        tls.check(tls.TlsFiles.of(s))
    except tls.TlsError as exc:
        raise SettingsError(str(exc)) from None
    if s.demo and s.tls_client_ca_file:
        raise SettingsError(
            "demo: cannot send to listeners that require client certificates (tls_client_ca_file); "
            "run the demo without mutual TLS, or `sloscope demo` with a client certificate elsewhere"
        )


def _validate_ingest_auth(s: Settings) -> None:
    from collector.auth import check_header_name  # lazily: the settings load before the collector

    try:
        check_header_name(s.ingest_auth_header)
    except ValueError as exc:
        raise SettingsError(f"ingest_auth_header: {exc}") from None
    if s.demo and s.ingest_tokens_file:
        # The demo is the embedded try-out and sends without a token: it would be refused.
        raise SettingsError(
            "demo: sends without an ingest token, so it cannot run with ingest_tokens_file; run the demo "
            "without it, or `sloscope demo` with OTEL_EXPORTER_OTLP_HEADERS carrying a token"
        )


def _validate_clickhouse_credentials(s: Settings) -> None:
    if not s.clickhouse_url:
        for name in ("clickhouse_user", "clickhouse_password"):
            if getattr(s, name):
                raise SettingsError(f"{name}: needs a ClickHouse server: set clickhouse_url too")
        return
    url = urlsplit(s.clickhouse_url)
    if s.clickhouse_user and url.username:
        raise SettingsError("clickhouse_user: the user is also in clickhouse_url; give it in one place")
    if s.clickhouse_password and url.password is not None:
        source = "clickhouse_password_file" if s.clickhouse_password_file else "clickhouse_password"
        raise SettingsError(
            f"{source}: the password is also in clickhouse_url; give it in one place "
            "(SLOSCOPE_CLICKHOUSE_PASSWORD or clickhouse_password_file, not in the URL)"
        )


def _validate_external_url(url: str) -> None:
    if not url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise SettingsError(f"external_url: {url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"external_url: must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        # Links are made by appending paths to it: a query or fragment would end up in the middle.
        raise SettingsError(f"external_url: must have no query (?) or fragment (#), got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise SettingsError("external_url: must not carry a user or password (it is sent in every link)")


#: Wildcard addresses: listening on every interface says nothing about where the server is reached.
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def default_external_url(host: str, port: int, tls: bool) -> str:
    """The external URL when none is configured: the API port's own address (https with TLS),
    ``127.0.0.1`` for a wildcard host, IPv6 addresses in brackets."""
    name = "127.0.0.1" if host in _WILDCARDS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{'https' if tls else 'http'}://{name}:{port}"


def external_url(s: Settings, api_port: int | None = None, policy_url: str = "") -> str:
    """The base of the server's absolute links, without a trailing slash: ``external_url`` if set,
    else the notification policy's ``external_url`` (``policy_url``), else
    :func:`default_external_url` with ``api_port`` (the port actually bound, which differs from the
    setting when that is 0)."""
    chosen = s.external_url or policy_url
    if chosen:
        return chosen.rstrip("/")
    port = s.api_port if api_port is None else api_port
    return default_external_url(s.host, port, bool(s.tls_cert_file))


def _validate(s: Settings) -> None:
    for name in ("otlp_http_port", "otlp_grpc_port", "zipkin_port", "api_port"):
        port = getattr(s, name)
        if not 0 <= port <= 65535:
            raise SettingsError(f"{name}: {port} is not a TCP port")
    if s.retention_days < 0:
        raise SettingsError(f"retention_days: must be 0 (keep forever) or more, got {s.retention_days}")
    if s.log_format not in ("text", "json"):
        raise SettingsError(f"log_format: must be 'text' or 'json', got {s.log_format!r}")
    if s.batch_rows < 1 or s.batch_delay <= 0 or s.insert_parallelism < 1:
        raise SettingsError("batch_rows, batch_delay and insert_parallelism must be positive")
    if s.clickhouse_url and not s.clickhouse_url.startswith(("http://", "https://")):
        raise SettingsError(
            "clickhouse_url: must start with http:// or https:// (the server's HTTP interface)"
        )
    if s.role not in ROLES:
        raise SettingsError(f"role: must be one of {', '.join(ROLES)}, got {s.role!r}")
    if s.role != "all" and not s.clickhouse_url:
        # The embedded store belongs to one process: separate roles only share a server.
        raise SettingsError(
            f"role: {s.role!r} needs a ClickHouse server: set clickhouse_url (SLOSCOPE_CLICKHOUSE_URL or "
            "--clickhouse-url); with the embedded store one process runs every role (role 'all')"
        )
    if s.clickhouse_cluster and not s.clickhouse_url:
        raise SettingsError(
            "clickhouse_cluster: needs a ClickHouse server: set clickhouse_url (SLOSCOPE_CLICKHOUSE_URL "
            "or --clickhouse-url)"
        )
    if s.clickhouse_cluster:
        try:
            check_cluster_name(s.clickhouse_cluster)
        except ValueError as exc:
            raise SettingsError(f"clickhouse_cluster: {exc}") from None
    if s.demo and s.role != "all":
        raise SettingsError(
            f"demo: sends traffic to this process's receivers, and role {s.role!r} has none (use role 'all')"
        )
    if s.slo_recovery_s < 0:
        raise SettingsError(f"slo_recovery_s: must be 0 or more seconds, got {s.slo_recovery_s}")
    if s.slo_interval < 60 or s.slo_interval % 60:
        # Evaluations see whole minutes: a shorter or uneven interval would repeat or skip minutes.
        raise SettingsError(
            f"slo_interval: {s.slo_interval} must be a whole number of minutes in seconds (60, 120, ...)"
        )
    if s.max_body_bytes < 1024:
        raise SettingsError(f"max_body_bytes: {s.max_body_bytes} is too small (at least 1024)")
    if not 0 < s.body_read_timeout < float("inf"):  # also refuses NaN
        raise SettingsError(
            f"body_read_timeout: must be a positive number of seconds, got {s.body_read_timeout}"
        )
    if s.max_wal_bytes < 0 or s.min_free_disk_bytes < 0:
        raise SettingsError("max_wal_bytes and min_free_disk_bytes must be 0 or more")
    if s.max_wal_bytes and s.max_wal_bytes < s.max_body_bytes:
        # A request the log could never hold would be refused forever.
        raise SettingsError(
            f"max_wal_bytes: {s.max_wal_bytes} is smaller than max_body_bytes ({s.max_body_bytes}); "
            "use at least that, or 0 for no cap"
        )
    if s.max_memory_bytes and s.max_memory_bytes < 64 << 20:
        # The interpreter and the embedded engine alone hold more: every export would be refused.
        raise SettingsError(
            f"max_memory_bytes: {s.max_memory_bytes} is too small (at least 64 MiB, or 0 for no bound)"
        )
    if s.max_memory_bytes < 0 or s.max_inflight_bytes < 0:
        raise SettingsError("max_memory_bytes and max_inflight_bytes must be 0 or more")
    _validate_external_url(s.external_url)
    _validate_clickhouse_credentials(s)
    _validate_tls(s)
    _validate_ingest_auth(s)
    _validate_ui_auth(s)


def _validate_ui_auth(s: Settings) -> None:
    from ui.auth import parse_networks  # lazily: the settings load before the UI
    from ui.identity import ROLES
    from ui.sessions import MIN_SECRET_BYTES

    if s.users_file and s.users:
        raise SettingsError("users_file: give the users in users_file or in SLOSCOPE_USERS, not both")
    if s.users_file:
        _check_readable("users_file", s.users_file)
    if s.session_secret and len(s.session_secret.encode()) < MIN_SECRET_BYTES:
        source = "session_secret_file" if s.session_secret_file else "session_secret"
        raise SettingsError(
            f"{source}: the session secret must be at least {MIN_SECRET_BYTES} bytes "
            "(e.g. `openssl rand -base64 48`)"
        )
    if not 60 <= s.session_max_age <= 30 * 86_400:
        raise SettingsError(f"session_max_age: {s.session_max_age} must be from 60 seconds to 30 days")
    for name in ("auth_proxy_trusted", "trusted_proxies"):
        try:
            parse_networks(getattr(s, name), name)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    if s.auth_proxy_header:
        if not s.auth_proxy_header.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(f"auth_proxy_header: {s.auth_proxy_header!r} is not a header name")
        if not s.auth_proxy_trusted:
            raise SettingsError(
                "auth_proxy_header: needs auth_proxy_trusted, the proxy's addresses (the header is "
                "believed from those only)"
            )
    if s.auth_proxy_default_role and s.auth_proxy_default_role not in ROLES:
        raise SettingsError(
            f"auth_proxy_default_role: {s.auth_proxy_default_role!r} must be one of {', '.join(ROLES)}"
        )
    if s.auth_proxy_default_role and not s.auth_proxy_header:
        raise SettingsError("auth_proxy_default_role: needs auth_proxy_header")
