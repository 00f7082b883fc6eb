"""Server backend: a ClickHouse server over HTTP through clickhouse-connect.

It runs exactly the SQL the embedded backend runs. The differences are transport details:
``{name:Type}`` parameters travel as the server's own ``param_<name>`` request parameters (never
formatted into the SQL by the client), and raw input for ``insert_from`` is the request body read by
the ``input()`` table function, so the server decodes it just as chDB decodes a file.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import Error as ClickHouseDriverError
from clickhouse_connect.driver.exceptions import OperationalError

from store.backend import INPUT, StoreError, StoreUnavailable, sql_string
from store.tenancy import scoped
from store.utf8 import valid_utf8

#: Server error codes after which the same statement may well succeed later: overload, back-pressure,
#: replication/keeper trouble, refused credentials (an operator fixes those; the data stays valid).
#: Callers retry on StoreUnavailable but give up on StoreError, so a batch must never be dropped for these.
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (replica lost its keeper session)
        252,  # TOO_MANY_PARTS (insert back-pressure)
        279,  # ALL_CONNECTION_TRIES_FAILED
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
    }
)


class ServerBackend:
    """A ClickHouse server reached at ``url`` (``http[s]://[user[:password]@]host:port/database``).

    ``user`` and ``password`` (sloscope's ``clickhouse_user`` and ``clickhouse_password``, from the
    environment or a file) take the place of the URL's; the password is masked in every error.

    One clickhouse-connect client serves all threads. It is created without a session id: HTTP
    sessions serialise requests (the client refuses concurrent use of one session), and we keep no
    per-session state such as temporary tables.
    """

    name = "server"

    def __init__(
        self,
        url: str,
        *,
        user: str = "",
        password: str = "",
        connect_timeout: int = 10,
        send_receive_timeout: int = 300,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"ClickHouse URL must start with http:// or https://, got {_redact(url)!r}")
        if not parts.hostname:
            raise ValueError(f"ClickHouse URL has no host: {_redact(url)!r}")
        secure = parts.scheme == "https"
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError as exc:  # urlsplit validates the port lazily
            raise ValueError(f"bad port in ClickHouse URL {_redact(url)!r}") from exc
        self.database = unquote(parts.path.strip("/")) or "default"
        self.url = _redact(url)
        username = user or (unquote(parts.username) if parts.username else "default")
        password = password or (unquote(parts.password) if parts.password else "")
        #: Masked in error messages: a driver or server message quoting the password must not reach
        #: a log, /readyz or a page.
        forms = {password, quote(password, safe=""), parts.password or ""}
        self._secrets = tuple(sorted((f for f in forms if len(f) >= 4), key=len, reverse=True))
        self._closed = False
        self._close_lock = threading.Lock()
        try:
            # get_client connects at once (version, timezone and settings probes), so a wrong host,
            # port or password surfaces here rather than on the first write.
            self._client = clickhouse_connect.get_client(
                host=parts.hostname,
                port=port,
                username=username,
                password=password,
                database=self.database,
                interface=parts.scheme,
                secure=secure,
                connect_timeout=connect_timeout,
                send_receive_timeout=send_receive_timeout,
                autogenerate_session_id=False,
                # Our own pool, closed by close(); the default pool is shared process-wide.
                dedicated_pool=True,
                client_name="sloscope",
            )
        except ClickHouseDriverError as exc:
            raise _translate(exc, f"cannot connect to ClickHouse at {self.url}: ", self._secrets) from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT)."""
        self._call(self._client.command, sql, parameters=dict(params) if params else None)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a SELECT and return its result as an Arrow table (the server's ``Arrow`` output).

        clickhouse-connect asks for String columns as Arrow strings, which is also chDB's default, so
        both backends return the same Arrow types.
        """
        return valid_utf8(
            self._call(self._client.query_arrow, scoped(sql), parameters=dict(params) if params else None)
        )

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        """Insert an Arrow table; a repeated ``dedup_token`` makes the server drop the repeat."""
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        self._call(self._client.insert_arrow, table, data, settings=settings)

    def insert_from(
        self, sql: str, data: bytes, fmt: str, structure: str, settings: Mapping[str, str | int]
    ) -> None:
        """Send ``data`` as the request body of ``sql`` with ``input(structure)`` as its source.

        The statement goes in the ``query`` URL parameter and the body carries only the data
        (clickhouse-connect's ``command(..., data=...)``); ``settings`` (protobuf schema, dedup
        token) are request settings, which apply to the input format too.
        """
        if not fmt.isalnum():
            raise ValueError(f"bad input format {fmt!r}")
        statement = sql.replace(INPUT, f"input({sql_string(structure)})") + f" FORMAT {fmt}"
        self._call(self._client.command, statement, data=data, settings=dict(settings))

    def close(self) -> None:
        """Close the connection pool; a second call does nothing."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ClickHouseDriverError as exc:
            raise _translate(exc, "", self._secrets) from exc


def _translate(
    exc: ClickHouseDriverError, prefix: str = "", secrets: tuple[str, ...] = ()
) -> StoreError | StoreUnavailable:
    """Map a clickhouse-connect error onto the store's two kinds.

    A transport failure (refused connection, timeout, reset, HTTP 503) has no server error code and
    is an OperationalError; a statement the server rejected carries its code.
    """
    text = str(exc)
    for secret in secrets:
        text = text.replace(secret, "***")
    message = prefix + _short(text)
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, OperationalError):
        return StoreUnavailable(message)
    if code in TRANSIENT_CODES:
        return StoreUnavailable(message)
    return StoreError(message)


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def _short(message: str, limit: int = 600) -> str:
    # Engine errors echo the whole statement, schema included; keep logs and responses readable.
    return message if len(message) <= limit else message[:limit] + f"... ({len(message)} chars)"
