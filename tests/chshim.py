"""A minimal ClickHouse HTTP interface for tests, answered by the real ClickHouse engine (chDB).

There is no ClickHouse server in the test environment, so ``ChShim`` speaks just enough of the
server's HTTP protocol for clickhouse-connect and runs every statement in one chDB session: results
are the engine's own bytes (``Native``, ``Arrow``, ``TabSeparated``...), errors are the engine's own
exceptions. Only the transport is imitated; nothing is computed in Python.

What a real server does and the shim reproduces:

* the query comes from the ``query`` URL parameter, the request body, or both (parameter, newline,
  body); ``multipart/form-data`` carries ``query`` and ``param_*`` fields;
* ``param_<name>`` values bind ``{name:Type}`` placeholders (chDB parses them as the server does);
* other URL parameters are settings for this request only: applied with ``SET`` before the
  statement and reset after it, leaving out the ones that only steer the HTTP transport;
* ``INSERT ... FORMAT <fmt>`` takes its data from what follows the statement (the body): plain
  inserts stream it through chDB's ``send_insert``; ``INSERT ... SELECT ... FROM input('<structure>')``
  writes it to a temporary file and reads it with ``file(<tmp>, <fmt>, '<structure>')`` instead,
  because chDB has no ``input()`` source;
* errors are HTTP 500 with the engine's message and ``X-ClickHouse-Exception-Code``.

chDB allows one data directory per process at a time: while a shim runs, do not open an
EmbeddedBackend on another path.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import socket
import sys
import threading
import uuid
import zlib
from base64 import b64decode
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

from store.backend import sql_string
from store.embedded import schema_as_file

#: URL parameters that steer the HTTP exchange, not the query; a server consumes them itself.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "stacktrace",
        "close_session",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header",
    }
)

# A quoted literal or identifier (skipped, so keywords inside strings do not count), or FORMAT <name>.
_FORMAT_TOKEN = re.compile(
    r"""'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|"(?:[^"\\]|\\.)*"|\bFORMAT\s+([A-Za-z0-9_]+)""",
    re.IGNORECASE | re.DOTALL,
)
_INSERT = re.compile(r"\s*INSERT\b", re.IGNORECASE)
_INPUT_FUNCTION = re.compile(r"\binput\s*\(\s*('(?:[^'\\]|\\.)*')\s*\)", re.IGNORECASE)
_ERROR_CODE = re.compile(r"\bCode:\s*(\d+)")
_RESULT_KEYWORDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "CHECK")
_TEXT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
}


class QueryFailed(Exception):
    """A statement the engine (or the shim's request parsing) rejected: becomes an HTTP error."""

    def __init__(self, message: str, code: int = 1001, status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Sent:
    """One statement as the shim received it."""

    sql: str
    params: dict[str, str]
    user: str
    password: str


class ChShim:
    """A ClickHouse HTTP endpoint on 127.0.0.1 backed by chDB at ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._lock = threading.Lock()  # one chDB session, one statement at a time
        self._seq = itertools.count()
        self._session: chdb_session.Session | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._defaults: dict[str, tuple[str, bool]] = {}
        self._timezone = "UTC"
        self._database = "default"
        #: Every statement run, for tests to inspect what clickhouse-connect sent.
        self.log: list[Sent] = []

    def start(self) -> str:
        """Open the engine, serve in a background thread, return the base URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self.data_dir / "shim-input"
        self._tmp.mkdir(exist_ok=True)
        self._session = chdb_session.Session(str(self.data_dir / "clickhouse"))
        try:
            self._timezone = self._text("SELECT timezone()").strip()
            self._database = self._text("SELECT currentDatabase()").strip()
            self._load_defaults()
            self._server = _Server(("127.0.0.1", 0), _Handler, self)
        except BaseException:
            # chDB holds one data directory per process: never leave it open behind a failed start.
            self._session.close()
            self._session = None
            raise
        # A short poll interval: shutdown() waits for it, and every test stops a shim.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="chshim", daemon=True
        )
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections, close the engine."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request execution -------------------------------------------------------------------------

    def execute(
        self, params: dict[str, str], body: bytes, credentials: tuple[str, str] = ("default", "")
    ) -> tuple[bytes, str | None, dict[str, Any]]:
        """Run one HTTP request's statement; return (response body, output format, summary).

        ``credentials`` are only recorded: the shim is for tests and has no users.
        """
        query = params.get("query", "")
        # Like the server: the query parameter, a newline, then the body form one text.
        full = (query.encode() + b"\n" + body) if query else body
        if not full.strip():
            raise QueryFailed("Empty query", code=62, status=400)
        bind = {key[len("param_") :]: value for key, value in params.items() if key.startswith("param_")}
        settings = {
            key: value
            for key, value in params.items()
            if key not in TRANSPORT_PARAMS and not key.startswith(("param_", "http_"))
        }
        with self._lock:
            if self._session is None:
                raise QueryFailed("shim is stopped", code=210)
            self._use_database(params.get("database"))
            # A server keeps schemas given as text in its own cache; so does the shim, in its data dir.
            restore = self._apply_settings(
                {str(k): str(v) for k, v in schema_as_file(settings, self._tmp).items()}
            )
            try:
                insert = _split_insert(full)
                if insert is not None:
                    head, fmt, data = insert
                    self.log.append(Sent(f"{head} FORMAT {fmt}", params, *credentials))
                    return b"", None, self._insert(head, fmt, data, bind)
                sql = full.decode()
                self.log.append(Sent(sql, params, *credentials))
                fmt = _output_format(sql) or params.get("default_format") or "TabSeparated"
                result = self._run(sql, fmt, bind)
                summary = {
                    "read_rows": result.rows_read(),
                    "read_bytes": result.bytes_read(),
                    "elapsed_ns": int(result.elapsed() * 1e9),
                }
                raw = result.bytes()
                has_result = bool(raw) or sql.lstrip(" \t\r\n(").upper().startswith(_RESULT_KEYWORDS)
                return raw, fmt if has_result else None, summary
            finally:
                if restore:
                    self._run(restore, "TabSeparated", None)

    def _insert(self, head: str, fmt: str, data: bytes, bind: dict[str, str]) -> dict[str, Any]:
        match = _INPUT_FUNCTION.search(head)
        if match is not None:
            # INSERT ... SELECT ... FROM input('<structure>'): chDB has no input(); the same format
            # reader over the body saved as a file is file('<tmp>', '<fmt>', '<structure>').
            path = self._tmp / f"body-{os.getpid()}-{next(self._seq)}.bin"
            path.write_bytes(data)
            try:
                source = f"file({sql_string(str(path))}, {sql_string(fmt)}, {match.group(1)})"
                result = self._run(head[: match.start()] + source + head[match.end() :], "TabSeparated", bind)
            finally:
                path.unlink(missing_ok=True)
            return {"written_rows": result.rows_written(), "written_bytes": result.bytes_written()}
        if bind:
            raise QueryFailed("shim: parameters are not supported with INSERT ... FORMAT data", code=1)
        assert self._session is not None
        try:
            with self._session.send_insert(head, fmt) as inserter:
                if data:
                    inserter.append(data)
                done = inserter.finish()
        except RuntimeError as exc:
            raise _failed(exc) from exc
        return {"written_rows": done.rows_written, "written_bytes": done.bytes_written}

    def _run(self, sql: str, fmt: str, bind: dict[str, str] | None) -> Any:
        assert self._session is not None
        try:
            return self._session.query(sql, fmt, params=bind or None)
        except RuntimeError as exc:
            raise _failed(exc) from exc

    def _text(self, sql: str) -> str:
        assert self._session is not None
        return self._session.query(sql, "TabSeparated").bytes().decode()

    def _load_defaults(self) -> None:
        """Remember every setting's session value, to skip no-op settings and to restore the rest."""
        self._defaults = {}
        rows = self._text("SELECT name, value, changed FROM system.settings FORMAT JSONEachRow")
        for line in rows.splitlines():
            row = json.loads(line)
            self._defaults[row["name"]] = (row["value"], bool(row["changed"]))

    def _apply_settings(self, settings: dict[str, str]) -> str:
        """SET the request's settings that differ from the session; return the statement undoing it."""
        changed = {k: v for k, v in settings.items() if self._defaults.get(k, (None, False))[0] != v}
        if not changed:
            return ""
        for key in changed:
            if not re.fullmatch(r"\w+", key):
                raise QueryFailed(f"Unknown setting {key!r}", code=115, status=400)
        assignments = ", ".join(f"{k} = {sql_string(v)}" for k, v in changed.items())
        self._run("SET " + assignments, "TabSeparated", None)
        undo = []
        for key in changed:
            value, was_changed = self._defaults.get(key, ("", False))
            # chDB itself changes a few settings at start-up; DEFAULT would lose those values.
            undo.append(f"{key} = {sql_string(value)}" if was_changed else f"{key} = DEFAULT")
        return "SET " + ", ".join(undo)

    def _use_database(self, database: str | None) -> None:
        if database and database != self._database:
            self._run(f"USE `{database.replace('`', '``')}`", "TabSeparated", None)
            self._database = database


def _split_insert(full: bytes) -> tuple[str, str, bytes] | None:
    """For ``INSERT ... FORMAT <fmt>`` return (statement without FORMAT, fmt, data after it).

    As in the server, data starts after the format name, spaces and at most one newline. Quoted
    strings are skipped while looking for FORMAT (an input structure may name a column ``format``).
    """
    if not _INSERT.match(full[:64].decode("latin-1")):
        return None
    text = full.decode("latin-1")  # one character per byte: offsets match the bytes
    for token in _FORMAT_TOKEN.finditer(text):
        if token.group(1) is None:
            continue
        end = token.end()
        while end < len(full) and full[end] in b" \t":
            end += 1
        if full[end : end + 2] == b"\r\n":
            end += 2
        elif full[end : end + 1] == b"\n":
            end += 1
        data = full[end:]
        if data.strip(b" \t\r\n;") == b"":
            data = b""
        return full[: token.start()].decode().rstrip(), token.group(1), data
    return None


def _output_format(sql: str) -> str | None:
    """The format named by a trailing ``FORMAT <name>`` clause, if any."""
    last = None
    for token in _FORMAT_TOKEN.finditer(sql):
        if token.group(1) is not None and sql[token.end() :].strip(" \t\r\n;") == "":
            last = token.group(1)
    return last


def _failed(exc: BaseException) -> QueryFailed:
    message = str(exc)
    match = _ERROR_CODE.search(message)
    return QueryFailed(message, code=int(match.group(1)) if match else 1001)


def _decode_body(body: bytes, encoding: str) -> bytes:
    """Undo a request Content-Encoding (clickhouse-connect compresses only some insert bodies)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    # lz4/zstd/br: clickhouse-connect's own decoder understands the framing it produced.
    from clickhouse_connect.driver._backend.httpcommon import decompress_response

    return decompress_response(body, encoding)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], shim: ChShim) -> None:
        self.shim = shim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        # Without TCP_NODELAY a small response waits ~40 ms for the client's delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            self._connections.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up, or a connection cut by stop(), is not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        # Keep-alive handler threads would otherwise wait for the next request on a stopped shim.
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet test output; failures surface through the client

    def _handle(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            body = _decode_body(self._read_body(), self.headers.get("Content-Encoding", ""))
        except Exception as exc:  # noqa: BLE001 (any decoding failure is the client's error)
            self._reply(400, f"Code: 1001. shim: cannot read request body: {exc}\n".encode(), code=1001)
            return
        if url.path.rstrip("/") in ("/ping", "") and not params.get("query") and not body:
            self._reply(200, b"Ok.\n")
            return
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                params.update(_form_fields(content_type, body))
                body = b""
            payload, fmt, summary = self.server.shim.execute(params, body, self._credentials())
        except QueryFailed as exc:
            self._reply(exc.status, (str(exc).rstrip("\n") + "\n").encode(), code=exc.code, query_id=query_id)
            return
        except Exception as exc:  # noqa: BLE001 (a shim bug must reach the client as an error, not a hang-up)
            self._reply(500, f"Code: 1001. shim: {exc!r}\n".encode(), code=1001, query_id=query_id)
            return
        headers = {"X-ClickHouse-Summary": json.dumps({k: str(v) for k, v in summary.items()})}
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        content_type = next((v for k, v in _TEXT_TYPES.items() if fmt and fmt.startswith(k)), None)
        self._reply(200, payload, query_id=query_id, content_type=content_type, extra=headers)

    def _credentials(self) -> tuple[str, str]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = b64decode(auth[len("Basic ") :]).decode().partition(":")
            return user, password
        return self.headers.get("X-ClickHouse-User", "default"), self.headers.get("X-ClickHouse-Key", "")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(
        self,
        status: int,
        payload: bytes,
        *,
        code: int | None = None,
        query_id: str | None = None,
        content_type: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
            content_type = "text/plain; charset=UTF-8"
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chshim")
        self.send_header("X-ClickHouse-Timezone", self.server.shim._timezone)
        if query_id:
            self.send_header("X-ClickHouse-Query-Id", query_id)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Connection", "Keep-Alive")
        self.end_headers()
        self.wfile.write(payload)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Plain fields of a multipart/form-data body (clickhouse-connect sends long parameters so)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            raise QueryFailed("shim: external data tables are not supported", code=1)
        if name:
            fields[str(name)] = part.get_payload(decode=True).decode()
    return fields
