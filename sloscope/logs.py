"""Structured logging for sloscope itself: text for people, JSON lines for log pipelines.

Every record passes :class:`sloscope.secrets.RedactingFilter` on the way out, so no secret the
process knows of (and no URL password) is written, whichever logger wrote it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from sloscope.secrets import RedactingFilter, SecretRegistry

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    # The redacting filter leaves the traceback, masked, in exc_text: use it rather than format again.
    if not record.exc_text and record.exc_info:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or ""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info or record.exc_text:
            entry["exception"] = _exception(self, record)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f" {extra}"
        if record.exc_info or record.exc_text:
            line += "\n" + _exception(self, record)
        return line


def handler(
    fmt: str = "text", stream: TextIO | None = None, secrets: SecretRegistry | None = None
) -> logging.Handler:
    """The log handler: ``fmt`` ("text" or "json") to ``stream`` (default stderr), every record
    redacted with ``secrets`` (default the process's :data:`sloscope.secrets.registry`) first."""
    out = logging.StreamHandler(sys.stderr if stream is None else stream)
    out.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    out.addFilter(RedactingFilter(secrets))
    return out


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send sloscope's logs to stderr in ``fmt`` ("text" or "json") at ``level``, secrets masked."""
    root = logging.getLogger()
    root.handlers[:] = [handler(fmt)]
    root.setLevel(level.upper())
    # APScheduler logs every run of the per-minute SLO evaluation at INFO.
    for noisy in ("uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
