"""Settings from command-line flags, then ``SLOSCOPE_*`` environment variables, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

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
    #: One of ROLES; anything but ``all`` needs ``clickhouse_url``.
    role: str = "all"
    host: str = "127.0.0.1"
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    zipkin_port: int = 9411
    api_port: int = 8080
    retention_days: int = 7
    correlation_keys: tuple[str, ...] = DEFAULT_CORRELATION_KEYS
    max_body_bytes: int = 16 << 20
    max_queue_bytes: int = 512 << 20
    # Each insert statement costs ~90 ms of query planning in the engine, whatever its size:
    # batches must be large for that to vanish (docs/ingest.md). The 1 s bound keeps latency low.
    batch_rows: int = 200_000
    batch_delay: float = 1.0
    insert_parallelism: int = 2
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
    "role": str,
    "host": str,
    "otlp_http_port": int,
    "otlp_grpc_port": int,
    "zipkin_port": int,
    "api_port": int,
    "retention_days": int,
    "correlation_keys": tuple,
    "max_body_bytes": int,
    "max_queue_bytes": int,
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
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


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
    if s.slo_interval < 60 or s.slo_interval % 60:
        # Evaluations see whole minutes: a shorter or uneven interval would repeat or skip minutes.
        raise SettingsError(
            f"slo_interval: {s.slo_interval} must be a whole number of minutes in seconds (60, 120, ...)"
        )
    if s.max_body_bytes < 1024:
        raise SettingsError(f"max_body_bytes: {s.max_body_bytes} is too small (at least 1024)")
