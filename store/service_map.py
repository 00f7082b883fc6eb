"""The stored service map: caller -> callee edges rolled up per minute into ``service_edges_1m``.

A parent and its child span usually arrive in different batches, so an edge cannot be counted on
insert. :func:`roll_up` instead joins spans once per finished minute, ``ROLL_UP_LAG_NS`` after the
minute ended (the spans of that minute and their parents have been exported and flushed by then),
and records the minute in ``service_edges_progress``. Reads (:func:`store.explore.dependencies`)
take the recorded minutes from the table and join spans for the rest (:func:`coverage`).

Every minute is written by one ``INSERT ... SELECT`` with the deduplication token
``service_edges_1m:<minute>``: a retry after a crash between the insert and its record, or two
processes rolling up the same minute against one server, store it once. Spans of a minute that
arrive after it was rolled up (an exporter that was down, a parent running more than the lag past
the minute) are not added later: a minute is written once.

After a downtime, at most ``MAX_CATCH_UP_NS`` (6 hours) of minutes are rolled up; older ones stay
answered by the join, which is slower but gives the same edges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from store.backend import Backend, StoreError, settings_clause
from store.red import quantile_ns
from store.sql import explore as explore_sql
from store.sql import service_map as sql

log = logging.getLogger(__name__)

MINUTE_NS = 60 * 10**9
#: How long after a minute ends it is rolled up. Spans reach the store within ~6 s of ending (SDK
#: batches wait up to 5 s, flushes ~1 s); the rest is for parents, which end (and are exported)
#: after their children: a parent still running 5 minutes after its child's minute is missed.
ROLL_UP_LAG_NS = 5 * MINUTE_NS
#: Oldest minute rolled up, counted back from now: bounds the work after a long downtime.
MAX_CATCH_UP_NS = 6 * 60 * MINUTE_NS
#: Minutes recorded per progress insert while catching up (progress of a pass shows in steps).
CHUNK_MINUTES = 60
#: How much earlier than its child a parent span may start and still be joined to it.
PARENT_SLACK_NS = 5 * MINUTE_NS
#: Most stored runs one read uses; shorter runs beyond that are joined instead (few queries per read).
MAX_RUNS = 4


def dedup_token(minute_s: int) -> str:
    """The deduplication token of one minute's insert: the same in every process and attempt."""
    return f"service_edges_1m:{minute_s}"


def _minutes(start_s: int, end_s: int) -> range:
    return range(start_s, end_s, 60)


def pending_minutes(backend: Backend, now_ns: int) -> list[int]:
    """Whole minutes (unix seconds) that ended ``ROLL_UP_LAG_NS`` before ``now_ns`` and are not yet
    rolled up, no older than ``MAX_CATCH_UP_NS``; oldest first."""
    first = -(-max(0, now_ns - MAX_CATCH_UP_NS) // MINUTE_NS) * 60
    end = (now_ns - ROLL_UP_LAG_NS) // MINUTE_NS * 60  # a minute [m, m + 60 s) qualifies if m + 60 <= end
    if end <= first:
        return []
    done = set(_rolled(backend, first, end))
    return [m for m in _minutes(first, end) if m not in done]


def roll_up_minute(backend: Backend, minute_s: int) -> None:
    """Store the edges of children starting in ``[minute_s, minute_s + 60 s)`` (not recorded)."""
    start = minute_s * 10**9
    params = {
        "minute": minute_s,
        "start": start,
        "end": start + MINUTE_NS - 1,
        "parent_start": max(0, start - PARENT_SLACK_NS),
    }
    settings = {**explore_sql.JOIN_SETTINGS, "insert_deduplication_token": dedup_token(minute_s)}
    backend.command(sql.ROLL_UP_MINUTE + settings_clause(settings), params)


def record_minutes(backend: Backend, minutes: list[int]) -> None:
    """Mark ``minutes`` as rolled up (after their edges are written)."""
    if minutes:
        backend.command(sql.RECORD_MINUTES, {"minutes": minutes})


def roll_up(backend: Backend, now_ns: int, stop: threading.Event | None = None) -> list[int]:
    """Roll up every pending minute (see :func:`pending_minutes`); return the minutes recorded.

    A minute whose insert the engine rejects is logged and left pending (tried again next time); a
    store that is unreachable stops the pass (``StoreUnavailable`` propagates). ``stop`` ends a long
    catch-up early, between minutes, keeping what is done.
    """
    recorded: list[int] = []
    pending = pending_minutes(backend, now_ns)
    for i in range(0, len(pending), CHUNK_MINUTES):
        chunk = pending[i : i + CHUNK_MINUTES]
        window = {"start": chunk[0] * 10**9, "end": (chunk[-1] + 60) * 10**9}
        rows = backend.query_arrow(sql.MINUTES_WITH_CHILDREN, window)
        busy = set(rows.column("busy_minute").to_pylist()) if rows.num_rows else set()
        done = []
        for minute in chunk:
            if stop is not None and stop.is_set():
                break
            if minute in busy:
                try:
                    roll_up_minute(backend, minute)
                except StoreError:
                    log.exception("service map roll-up failed", extra={"minute": minute})
                    continue
            done.append(minute)
        record_minutes(backend, done)
        recorded += done
        if stop is not None and stop.is_set():
            break
    return recorded


def _rolled(backend: Backend, start_s: int, end_s: int) -> list[int]:
    rows = backend.query_arrow(sql.ROLLED_MINUTES, {"start": start_s, "end": end_s})
    return rows.column("rolled_minute").to_pylist() if rows.num_rows else []


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """How a range ``[start_ns, end_ns]`` is answered: stored ``runs`` ``[a, b)`` in unix seconds
    (whole rolled-up minutes inside the range) and ``gaps`` ``[lo, hi]`` in ns joined from spans."""

    runs: list[tuple[int, int]]
    gaps: list[tuple[int, int]]


def _runs(minutes: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for m in minutes:
        if runs and runs[-1][1] == m:
            runs[-1] = (runs[-1][0], m + 60)
        else:
            runs.append((m, m + 60))
    return runs


def _full_minutes(start_ns: int, end_ns: int) -> tuple[int, int]:
    # Minutes [m, m + 60 s) wholly inside [start_ns, end_ns], as [first, end) in unix seconds.
    return -(-max(0, start_ns) // MINUTE_NS) * 60, (end_ns + 1) // MINUTE_NS * 60


def rolled_minutes(backend: Backend, start_ns: int, end_ns: int) -> list[int]:
    """The rolled-up minutes (unix seconds) that lie wholly inside ``[start_ns, end_ns]``."""
    first, end = _full_minutes(start_ns, end_ns)
    return _rolled(backend, first, end) if end > first else []


def coverage(start_ns: int, end_ns: int, rolled: Iterable[int]) -> Coverage:
    """Split ``[start_ns, end_ns]`` into runs of the ``rolled`` minutes (sorted, wholly inside the
    range) and the stretches between them, which are joined (partial minutes at either end too)."""
    runs = _runs(rolled)
    if len(runs) > MAX_RUNS:
        keep = set(sorted(runs, key=lambda r: (r[0] - r[1], r[0]))[:MAX_RUNS])  # the longest
        runs = [r for r in runs if r in keep]
    gaps = []
    cursor = start_ns
    for a, b in runs:
        if a * 10**9 > cursor:
            gaps.append((cursor, a * 10**9 - 1))
        cursor = b * 10**9
    if cursor <= end_ns:
        gaps.append((cursor, end_ns))
    return Coverage(runs, gaps)


def _run_params(runs: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "start": runs[0][0],
        "end": runs[-1][1],
        "run_starts": [a for a, _ in runs],
        "run_ends": [b for _, b in runs],
    }


def stored_edges(backend: Backend, runs: list[tuple[int, int]], limit: int) -> list[dict[str, Any]]:
    """Edge sums over the stored ``runs`` (the first ``limit`` by caller, callee)."""
    if not runs:
        return []
    return backend.query_arrow(sql.STORED_EDGES, {**_run_params(runs), "limit": limit}).to_pylist()


def stored_series(backend: Backend, runs: list[tuple[int, int]], step_s: int) -> list[dict[str, Any]]:
    """Edge sums over the stored ``runs`` per ``step_s`` seconds (a whole number of minutes)."""
    if not runs:
        return []
    if step_s % 60:
        raise ValueError("stored minutes make steps of whole minutes only")
    return backend.query_arrow(sql.STORED_SERIES, {**_run_params(runs), "step_s": step_s}).to_pylist()


@dataclass
class EdgeSums:
    """Calls, errors, duration sum and latency histogram of one edge, added up from any parts."""

    calls: int = 0
    errors: int = 0
    duration_sum: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        """Add a row of an edge read (``n_calls``, ``n_errors``, ``dur_sum``, ``bucket_ids``/``_counts``)."""
        self.calls += int(row["n_calls"])
        self.errors += int(row["n_errors"])
        self.duration_sum += int(row["dur_sum"])
        for bucket, count in zip(row["bucket_ids"], row["bucket_counts"], strict=True):
            self.histogram[bucket] = self.histogram.get(bucket, 0) + int(count)

    def stats(self) -> dict[str, Any]:
        """The API's numbers: calls, errors, and the callee latency in ms (histogram quantiles)."""
        ids = sorted(self.histogram)
        counts = [self.histogram[i] for i in ids]
        p50, p95 = quantile_ns(ids, counts, 0.50), quantile_ns(ids, counts, 0.95)
        return {
            "calls": self.calls,
            "errors": self.errors,
            "p50_ms": (p50 or 0.0) / 1e6,
            "p95_ms": (p95 or 0.0) / 1e6,
            "avg_ms": self.duration_sum / self.calls / 1e6 if self.calls else 0.0,
        }
