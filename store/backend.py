"""The small interface every storage backend implements.

Two implementations exist: :class:`store.embedded.EmbeddedBackend` (chDB, in-process) and
:class:`store.server.ServerBackend` (a ClickHouse server through clickhouse-connect). Both run the
same SQL; anything backend-specific (how bulk data reaches the engine) hides behind ``insert_from``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pyarrow as pa

#: Placeholder that ``insert_from`` replaces with the backend's table function for raw input data.
INPUT = "__SLOSCOPE_INPUT__"


class StoreUnavailable(RuntimeError):
    """The engine could not be reached or refused the operation for a transient reason."""


class StoreError(RuntimeError):
    """The engine rejected a statement: a bug or bad data, not an outage."""


class Backend(Protocol):
    """What the rest of sloscope needs from ClickHouse."""

    name: str

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a SELECT with ``{name:Type}`` parameters and return the result as an Arrow table."""

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        """Insert an Arrow table whose column names match ``table``'s columns."""

    def insert_from(
        self,
        sql: str,
        data: bytes,
        fmt: str,
        structure: str,
        settings: Mapping[str, str | int],
    ) -> None:
        """Run ``sql`` (an INSERT ... SELECT ... FROM __SLOSCOPE_INPUT__ ...) over ``data``.

        ``data`` is in format ``fmt`` with columns ``structure``; the engine decodes it itself.
        """

    def close(self) -> None:
        """Release the engine or connection."""


def sql_string(value: str) -> str:
    """Quote ``value`` as a ClickHouse string literal (for constants that cannot be parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def settings_clause(settings: Mapping[str, str | int]) -> str:
    """Render a SETTINGS clause from our own constants (never from request data)."""
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        if not key.replace("_", "").isalnum():
            raise ValueError(f"bad setting name {key!r}")
        parts.append(f"{key}={value if isinstance(value, int) else sql_string(str(value))}")
    return " SETTINGS " + ", ".join(parts)
