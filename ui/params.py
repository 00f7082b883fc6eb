"""Query parameters of the JSON API (times, ranges, limits, steps) and its error answers."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import HTTPException

from slo import instants
from store.backend import StoreError, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_RANGE_NS = 3600 * 10**9  # the last hour, when a range is not given
MAX_LIMIT = 10_000
MAX_STEP_NS = 366 * 86_400 * 10**9
_STEP = re.compile(r"^(\d+)(s|m|h|d)$")
_STEP_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


def call_store(compute: Callable[[], T]) -> T:
    """Run a store call for an endpoint: refused input (ValueError) is 400, something unknown
    (LookupError) 404, an unreachable store 503, a failed query 500."""
    try:
        return compute()
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except StoreUnavailable as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from None
    except StoreError as exc:
        log.exception("query failed")
        raise HTTPException(500, f"query failed: {exc}") from None


def bad_request(message: str) -> HTTPException:
    """A 400 whose body is ``{"detail": message}``."""
    return HTTPException(400, message)


def parse_time(value: str, name: str, now_ns: int | None = None) -> int:
    """``now``, ``now-2h`` (before ``now_ns``, default the clock), RFC 3339 (``2026-11-22T10:00:00Z``,
    any fraction of a second) or unix milliseconds (decimals allowed), as exact unix nanoseconds;
    400 naming ``name`` otherwise. The CLI reads times with the same parser (``slo/instants.py``)."""
    try:
        return instants.parse_instant_ns(
            value, name, time.time_ns() if now_ns is None else now_ns, instants.UNIX_MILLISECONDS
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from None


@dataclass(frozen=True)
class TimeRange:
    start_ns: int
    end_ns: int


def parse_range(start: str | None, end: str | None, default_ns: int = DEFAULT_RANGE_NS) -> TimeRange:
    """[start, end): ``end`` defaults to now, ``start`` to ``end`` minus ``default_ns``."""
    now_ns = time.time_ns()  # one reading: start=now-1h&end=now is exactly an hour
    end_ns = parse_time(end, "end", now_ns) if end else now_ns
    start_ns = parse_time(start, "start", now_ns) if start else end_ns - default_ns
    if start_ns >= end_ns:
        raise bad_request(f"start must be before end (got start={start}, end={end})")
    return TimeRange(start_ns, end_ns)


def parse_limit(value: str | None, default: int = 100, maximum: int = MAX_LIMIT) -> int:
    """A positive whole number up to ``maximum``."""
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise bad_request(f"limit: {value!r} must be a whole number from 1 to {maximum}")
    return int(value)


def parse_step(value: str | None, span_ns: int, max_points: int = 11_000) -> int:
    """A step like ``30s``, ``1m``, ``5m``, ``1h`` (whole minutes for roll-ups); default: ~100 points."""
    if not value:
        minutes = max(1, span_ns // (100 * 60 * 10**9))
        return minutes * 60 * 10**9
    match = _STEP.fullmatch(value.strip())
    if not match or int(match.group(1)) == 0:
        raise bad_request(f"step: {value!r} must look like 30s, 1m, 5m or 1h")
    step_ns = int(match.group(1)) * _STEP_NS[match.group(2)]
    if step_ns > MAX_STEP_NS:  # ranges are widened to whole steps: a huge one leaves every calendar
        raise bad_request(f"step: {value!r} is longer than a year")
    if span_ns // step_ns > max_points:
        raise bad_request(f"step: {value!r} gives more than {max_points} points over this range")
    return step_ns
