"""Secrets never reach a log line: a registry of this process's secret values and a logging filter.

Secrets come only from the environment or from files: the ClickHouse password
(``SLOSCOPE_CLICKHOUSE_PASSWORD``, ``clickhouse_password_file`` or, still accepted, inside
``clickhouse_url``) and the notification policy's receiver URLs, routing keys and SMTP passwords
(``*_env`` / ``*_file``, :mod:`alerts.policy`). At start-up :func:`collect` gathers them into
:data:`registry`; :class:`RedactingFilter` (installed by :func:`sloscope.logs.configure` on the log
handler, so it sees every logger's records, uvicorn's and the libraries' too) replaces each
occurrence in the message, its arguments, ``extra`` fields, tracebacks and stack traces by ``***``,
and masks the password of any ``scheme://user:password@`` URL, registered or not.

The packages mask their own secrets where their errors leave them (a receiver's delivery errors in
:mod:`alerts.delivery`, the store's in :mod:`store.server`), since they cannot import this module;
this registry is the process-wide net under them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from alerts.redact import MASK, MIN_SECRET_CHARS, secret_pieces

if TYPE_CHECKING:
    from alerts.policy import Policy
    from sloscope.settings import Settings

#: ``//user:password@`` in any URL-like text: the password part, up to the last ``@`` before the
#: host (a password may hold ``@`` only percent-encoded, and a path never holds the pattern).
_USERINFO = re.compile(r"(//[^/\s:@]*:)[^/\s]*@")
#: Attributes every LogRecord has; the others were passed through ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def mask_userinfo(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``."""
    return _USERINFO.sub(rf"\g<1>{MASK}@", text) if "@" in text else text


class SecretRegistry:
    """The secret values to mask in this process's output (thread-safe; values only grow)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()  # longest first, so a secret containing another goes whole

    def add(self, *values: str) -> None:
        """Register ``values`` (and their percent-encoded forms; a value shorter than
        ``MIN_SECRET_CHARS`` is ignored: masking it would blank out unrelated text)."""
        found = {v for v in values if v and len(v) >= MIN_SECRET_CHARS}
        found |= {quote(v, safe="") for v in found} | {unquote(v) for v in found}
        with self._lock:
            merged = set(self._values) | {v for v in found if len(v) >= MIN_SECRET_CHARS}
            self._values = tuple(sorted(merged, key=len, reverse=True))

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret and every URL password masked."""
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, MASK)
        return mask_userinfo(text)

    def redact_value(self, value: object) -> object:
        """A log field: strings redacted; anything else kept as is unless its text holds a secret
        (then its redacted text), so numbers stay numbers in JSON logs."""
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        text = str(value)
        redacted = self.redact(text)
        return value if redacted == text else redacted


#: The process's registry: sloscope/app.py fills it at start-up, the log filter reads it.
registry = SecretRegistry()


def collect(settings: Settings, policy: Policy | None = None) -> list[str]:
    """The secret values in ``settings`` and the notification ``policy``: the ClickHouse password
    (also the one inside ``clickhouse_url``) and every receiver's secrets and their parts."""
    found = [settings.clickhouse_password]
    if settings.clickhouse_url:
        url_password = urlsplit(settings.clickhouse_url).password
        if url_password:
            found += [url_password, unquote(url_password)]
    if policy is not None:
        found += policy.secrets()
    return [v for v in found if v]


def register(values: Iterable[str]) -> None:
    """Add ``values`` to :data:`registry`, with the secret parts of the URLs among them."""
    pieces: list[str] = []
    for value in values:
        pieces += secret_pieces(value) or [value]
    registry.add(*pieces)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record before any handler formats it. Installed on a handler, so that
    records propagated from every logger pass through it."""

    def __init__(self, secrets: SecretRegistry | None = None) -> None:
        super().__init__()
        self.secrets = secrets or registry

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; rewrites its text fields in place."""
        redact = self.secrets.redact
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself when formatting
            message = None
        if message is not None:
            record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, self.secrets.redact_value(value))
        if record.exc_info and not record.exc_text:
            # Formatted here (and cached where formatters look for it) so the traceback is masked too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
