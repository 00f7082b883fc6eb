"""Versioned schema migrations, applied at start-up and recorded in ``schema_migrations``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from store.backend import Backend
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


def migrate(backend: Backend) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now (empty: a no-op)."""
    done = applied_versions(backend)
    applied = []
    for migration in load_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements:
            backend.command(statement)
        backend.command(queries.RECORD_MIGRATION, {"version": migration.version, "name": migration.name})
        log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
        applied.append(migration.version)
    return applied


def pending(backend: Backend) -> list[int]:
    """Versions known to this build but not applied to the store."""
    done = applied_versions(backend)
    return [m.version for m in load_migrations() if m.version not in done]


def ensure_retention(backend: Backend, days: int) -> list[str]:
    """Make every table keep ``days`` days of data (0: keep forever); return the tables changed.

    ``CREATE TABLE IF NOT EXISTS`` never alters an existing table, so a changed retention needs
    an explicit ALTER; it is skipped when the TTL already matches, because it rewrites TTL info.
    """
    if days < 0:
        raise ValueError("retention must be 0 (keep forever) or a number of days")
    changed = []
    for table, column in TTL_COLUMNS.items():
        engine = backend.query_arrow(queries.TABLE_ENGINE, {"table": table}).column("engine_full")[0].as_py()
        has_ttl = " TTL " in engine
        if days == 0:
            if not has_ttl:
                continue
            backend.command(queries.REMOVE_TTL.format(table=table))
        elif has_ttl and f"toIntervalDay({days})" in engine:
            continue
        else:
            backend.command(queries.MODIFY_TTL.format(table=table, column=column, days=int(days)))
        changed.append(table)
    return changed
