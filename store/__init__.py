"""ClickHouse storage: schema migrations and two backends behind one small interface."""

from __future__ import annotations

from pathlib import Path

from store.backend import Backend, StoreError, StoreUnavailable

__all__ = ["Backend", "StoreError", "StoreUnavailable", "open_backend"]


def open_backend(
    data_dir: Path,
    clickhouse_url: str = "",
    insert_parallelism: int = 2,
    *,
    user: str = "",
    password: str = "",
) -> Backend:
    """A ClickHouse server when ``clickhouse_url`` is set (``user`` and ``password``, when given,
    instead of the URL's), else embedded chDB under ``data_dir``."""
    if clickhouse_url:
        from store.server import ServerBackend

        return ServerBackend(clickhouse_url, user=user, password=password)
    from store.embedded import EmbeddedBackend

    return EmbeddedBackend(data_dir / "store", insert_sessions=insert_parallelism)
