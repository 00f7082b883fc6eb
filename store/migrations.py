"""Versioned schema migrations, applied at start-up and recorded in ``schema_migrations``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from store.backend import Backend
from store.cluster import check_cluster_name, cluster_statements, local_table
from store.sql import queries

log = logging.getLogger(__name__)

#: Tables with a retention TTL, and the time column the TTL counts from.
TTL_COLUMNS = {
    "spans": "timestamp",
    "logs": "timestamp",
    "metrics_gauge": "timestamp",
    "metrics_sum": "timestamp",
    "metrics_histogram": "timestamp",
    "metrics_exponential_histogram": "timestamp",
    "metrics_summary": "timestamp",
    "red_1m": "minute",
    "service_edges_1m": "minute",
    "service_edges_progress": "minute",
    "span_counts_1m": "minute",
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]


def load_migrations() -> list[Migration]:
    """Read ``store/sql/migrations/NNNN_name.sql`` in version order."""
    found = []
    for entry in resources.files("store.sql").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        found.append(Migration(int(match.group(1)), match.group(2), split_statements(text)))
    return sorted(found, key=lambda m: m.version)


def split_statements(text: str) -> list[str]:
    """Split a migration file on semicolons that end a line, dropping comment-only chunks."""
    statements = []
    for chunk in re.split(r";\s*$", text, flags=re.MULTILINE):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if code:
            statements.append(code)
    return statements


def applied_versions(backend: Backend) -> set[int]:
    """Versions already recorded (empty before the first migration created the table)."""
    exists = backend.query_arrow(queries.MIGRATIONS_TABLE_EXISTS)
    if exists.column("n")[0].as_py() == 0:
        return set()
    rows = backend.query_arrow(queries.APPLIED_MIGRATIONS)
    return {int(v) for v in rows.column("version").to_pylist()}


def migrate(backend: Backend, cluster: str | None = None) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now (empty: a no-op).

    ``cluster``: a cluster of the server's ``remote_servers``; the statements then run ``ON CLUSTER``
    with replicated local tables behind Distributed ones (store/cluster.py, docs/deploy.md). Every
    statement is idempotent (IF [NOT] EXISTS), so instances that start together may both run them.
    """
    if cluster:
        _check_cluster_backend(backend, cluster)
    done = applied_versions(backend)
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        statements = cluster_statements(migration.statements, cluster) if cluster else migration.statements
        for statement in statements:
            backend.command(statement)
        backend.command(queries.RECORD_MIGRATION, {"version": migration.version, "name": migration.name})
        log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
        applied.append(migration.version)
    return applied


def pending(backend: Backend) -> list[int]:
    """Versions known to this build but not applied to the store."""
    done = applied_versions(backend)
    return [m.version for m in load_migrations() if m.version not in done]


def ensure_retention(backend: Backend, days: int, cluster: str | None = None) -> list[str]:
    """Make every table keep ``days`` days of data (0: keep forever); return the tables changed.

    ``CREATE TABLE IF NOT EXISTS`` never alters an existing table, so a changed retention needs
    an explicit ALTER; it is skipped when the TTL already matches, because it rewrites TTL info.
    With ``cluster`` the TTL lives on the local tables and the ALTER runs ``ON CLUSTER``.
    """
    if days < 0:
        raise ValueError("retention must be 0 (keep forever) or a number of days")
    if cluster:
        _check_cluster_backend(backend, cluster)
    changed = []
    for table, column in TTL_COLUMNS.items():
        stored = local_table(table) if cluster else table
        engine = backend.query_arrow(queries.TABLE_ENGINE, {"table": stored}).column("engine_full")[0].as_py()
        has_ttl = " TTL " in engine
        if days == 0:
            if not has_ttl:
                continue
            statement = queries.REMOVE_TTL.format(table=table)
        elif has_ttl and f"toIntervalDay({days})" in engine:
            continue
        else:
            statement = queries.MODIFY_TTL.format(table=table, column=column, days=int(days))
        for sql in cluster_statements([statement], cluster) if cluster else [statement]:
            backend.command(sql)
        changed.append(table)
    return changed


def _check_cluster_backend(backend: Backend, cluster: str) -> None:
    check_cluster_name(cluster)
    if backend.name == "embedded":
        raise ValueError(
            f"cluster {cluster!r} needs a ClickHouse server (SLOSCOPE_CLICKHOUSE_URL): the embedded store "
            "has no replication or Distributed tables"
        )
