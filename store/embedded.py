"""Embedded backend: the real ClickHouse engine in-process through chDB, MergeTree on local disk."""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from chdb import session as chdb_session

from store.backend import INPUT, StoreError, StoreUnavailable, settings_clause, sql_string
from store.tenancy import scoped
from store.utf8 import valid_utf8


class EmbeddedBackend:
    """chDB at a data directory.

    chDB allows one process per directory. Within it we keep several sessions on the one path: one
    for statements, one for reads, and ``insert_sessions`` for bulk inserts. chDB releases the GIL
    during a query and sessions run in parallel, so a flush neither stalls the API nor is limited
    to one core. Each session runs one query at a time.
    """

    name = "embedded"

    def __init__(self, data_dir: str | os.PathLike[str], insert_sessions: int = 2) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self.data_dir / "tmp-input"
        self._tmp.mkdir(exist_ok=True)
        self._schemas = self.data_dir / "format-schemas"
        self._schemas.mkdir(exist_ok=True)
        for stale in self._tmp.iterdir():
            stale.unlink()
        engine_dir = str(self.data_dir / "clickhouse")
        try:
            self._writer = chdb_session.Session(engine_dir)
            self._reader = chdb_session.Session(engine_dir)
            self._inserters: queue.SimpleQueue[chdb_session.Session] = queue.SimpleQueue()
            for _ in range(max(1, insert_sessions)):
                self._inserters.put(chdb_session.Session(engine_dir))
        except Exception as exc:  # chDB raises a bare RuntimeError with the lock message
            raise StoreUnavailable(f"cannot open embedded store at {engine_dir}: {exc}") from exc
        self.insert_parallelism = max(1, insert_sessions)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._seq = itertools.count()

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self._write_lock:
            self._run(self._writer, sql, "Null", params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        with self._read_lock:
            result = self._run(self._reader, scoped(sql), "Arrow", params)
        raw = result.bytes()
        if not raw:
            return pa.table({})
        return valid_utf8(pa.ipc.open_file(pa.BufferReader(raw)).read_all())

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else {}
        columns = ", ".join(f"`{name}`" for name in data.column_names)
        # chDB resolves Python(name) against the local variables of the frame calling query().
        sql = f"INSERT INTO {table} ({columns}) SELECT * FROM Python(arrow_data)" + settings_clause(settings)
        with self._write_lock:
            try:
                arrow_data = data  # noqa: F841
                self._writer.query(sql, "Null")
            except RuntimeError as exc:
                raise StoreError(_short(str(exc))) from exc

    def insert_from(
        self, sql: str, data: bytes, fmt: str, structure: str, settings: Mapping[str, str | int]
    ) -> None:
        settings = schema_as_file(settings, self._schemas)
        path = self._tmp / f"input-{os.getpid()}-{next(self._seq)}.bin"
        path.write_bytes(data)
        try:
            source = f"file({sql_string(str(path))}, {sql_string(fmt)}, {sql_string(structure)})"
            session = self._inserters.get()  # one statement per session; callers may run several at once
            try:
                self._run(session, sql.replace(INPUT, source) + settings_clause(settings), "Null", None)
            finally:
                self._inserters.put(session)
        finally:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            for _ in range(self.insert_parallelism):
                self._inserters.get().close()
            self._reader.close()
            self._writer.close()

    @staticmethod
    def _run(sess: chdb_session.Session, sql: str, fmt: str, params: Mapping[str, Any] | None) -> Any:
        try:
            text = {name: _param_text(value) for name, value in params.items()} if params else None
            return sess.query(sql, fmt, params=text)
        except RuntimeError as exc:
            raise StoreError(_short(str(exc))) from exc


def _param_text(value: Any) -> str:
    """A query parameter as the engine parses it: strings escaped, arrays as literals.

    chDB hands parameter text to the engine as is; a server receives it escaped by clickhouse-connect.
    """
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(sql_string(v) if isinstance(v, str) else _param_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _short(message: str, limit: int = 600) -> str:
    # Engine errors echo the whole statement, schema included; keep logs and responses readable.
    return message if len(message) <= limit else message[:limit] + f"... ({len(message)} chars)"


def schema_as_file(settings: Mapping[str, str | int], directory: Path) -> dict[str, str | int]:
    """Settings that point the engine at a schema file in ``directory`` instead of passing its text.

    Given the text (``format_schema_source='string'``), chDB caches it in ``./__cache__`` under the
    process's working directory; a file of our own keeps the working directory clean.
    """
    settings = dict(settings)
    if settings.get("format_schema_source") != "string":
        return settings
    text = str(settings.pop("format_schema"))
    del settings["format_schema_source"]
    message = settings.pop("format_schema_message_name")
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.proto"
    if not path.exists():
        # Flushers of several signals may write the same schema at once: each its own temporary file.
        tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    settings["format_schema"] = f"{path}:{message}"
    return settings
