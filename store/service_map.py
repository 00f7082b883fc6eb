"""The stored service map: caller -> callee edges rolled up per minute into ``service_edges_1m``.

What an edge is: a child span whose parent span (same tenant and trace, starting at most
``PARENT_SLACK_NS`` before the child or ``PARENT_SKEW_NS`` after it) belongs to another service. It
belongs to the minute in which the child started. The rule depends on the pair alone, never on the
range asked for, so an answer over a range is a sum over the children starting in it: a stored
minute and a join of that minute agree, and a range never shows more calls than a wider one.

A parent and its child usually arrive in different batches, and spans may arrive late (an exporter
that was down, a back-fill hours in the past), so an edge cannot be counted on insert. :func:`roll_up`
joins spans per minute instead, and a stored minute is used only while it is still exact:

* ``span_counts_1m`` (migration 0012) counts the spans stored per minute, on insert. The edges of a
  minute ``m`` can change only through spans starting in ``[m - 5 min, m + 2 min)``
  (:func:`window_of`); their count is the minute's *window*.
* A roll-up of ``m`` reads its window first, checks that the spans it can see in the window are
  those counted (count and hash sum: an insert's spans and its counts become visible at different
  moments, in either order), then joins, and writes the edges and the minute's row in
  ``service_edges_progress`` under ``version = window + 1``: every counted span was seen.
* A read (:func:`current_minutes`, :func:`coverage`) takes a minute from the table only if a version
  equal to its window + 1 now is recorded. Otherwise spans have arrived for it since (late children,
  late parents, a back-fill), and it is joined from spans until the next pass (:func:`pending_minutes`)
  rolls it up again under the new version. Spans only arrive (retention drops whole days), so an
  unchanged count means unchanged spans: a late span is counted at once, and exactly once.

Each roll-up is one ``INSERT ... SELECT`` with the deduplication token
``service_edges_1m:<minute>:<version>``: a retry after a crash between the insert and its record, or
two processes rolling up the same minute against one server, store it once. Versions no longer
current stay in the table, unread, until the retention drops them.

A pass rolls up minutes ``ROLL_UP_LAG_NS`` after they ended (most late children and parents are in by
then, which saves rolling a minute up twice), newest first, at most ``MAX_MINUTES_PER_PASS``: every
minute whose spans changed since it was rolled up, within ``LATE_LOOKBACK_NS``; minutes without any
span in their window only within ``MAX_CATCH_UP_NS`` (they hold no edges, unless their spans were
stored before migration 0012 counted spans; older such minutes are answered by the join).
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
#: How long after a minute ends it is first rolled up. Spans reach the store within ~6 s of ending (SDK
#: batches wait up to 5 s, flushes ~1 s); the rest is for parents, which end (and are exported) after
#: their children. Spans arriving later make the minute roll up again: the lag only saves that work.
ROLL_UP_LAG_NS = 5 * MINUTE_NS
#: Minutes without any span in their window are recorded (as holding no edges) this far back only.
MAX_CATCH_UP_NS = 6 * 60 * MINUTE_NS
#: Minutes whose spans changed are rolled up again this far back (the tables' default retention);
#: spans arriving for older minutes are answered by the join.
LATE_LOOKBACK_NS = 7 * 24 * 60 * MINUTE_NS
#: Most minutes one pass rolls up, newest first: bounds a pass after a downtime or a large back-fill.
#: The rest follows in the next passes and is joined when read until then.
MAX_MINUTES_PER_PASS = 360
#: Minutes recorded per progress insert (progress of a long pass shows in steps).
CHUNK_MINUTES = 60
#: How much earlier than its child a parent span may start and still be joined to it.
PARENT_SLACK_NS = 5 * MINUTE_NS
#: How much later than its child a parent span may start (clock skew between hosts) and still be joined.
PARENT_SKEW_NS = MINUTE_NS
#: Most stored runs one read uses; shorter runs beyond that are joined instead (few queries per read).
MAX_RUNS = 4


def dedup_token(minute_s: int, version: int) -> str:
    """The deduplication token of one minute's insert: the same in every process and attempt."""
    return f"service_edges_1m:{minute_s}:{version}"


def join_params(start_ns: int, end_ns: int) -> dict[str, int]:
    """Parameters of an edge join (``store/sql/explore.py``) of the children starting in
    ``[start_ns, end_ns]``: parents are read as far as the pair rule can reach."""
    return {
        "start": start_ns,
        "end": end_ns,
        "parent_start": max(0, start_ns - PARENT_SLACK_NS),
        "parent_end": end_ns + PARENT_SKEW_NS,
        "slack": PARENT_SLACK_NS,
        "skew": PARENT_SKEW_NS,
    }


def window_of(minute_s: int) -> tuple[int, int]:
    """The minutes ``[first, end)`` (unix seconds) whose spans can change the edges of the minute
    ``minute_s``: its children and whatever could be their parents."""
    first = (minute_s * 10**9 - PARENT_SLACK_NS) // MINUTE_NS * 60
    last = ((minute_s + 60) * 10**9 - 1 + PARENT_SKEW_NS) // MINUTE_NS * 60
    return max(0, first), last + 60


@dataclass(frozen=True)
class Window:
    """The spans that can change a minute's edges: how many, and the sum of their hashes (modulo
    2**64, as ``span_counts_1m`` adds them up)."""

    spans: int
    hash_sum: int


@dataclass(frozen=True)
class Pending:
    """A minute to roll up: its start (unix seconds) and its window as counted (read before the join;
    the version written is ``window.spans + 1``)."""

    minute: int
    window: Window


def windows(
    backend: Backend, first_s: int, end_s: int, minutes: Iterable[int] | None = None
) -> dict[int, Window]:
    """The :class:`Window` of every minute in ``[first_s, end_s)`` (unix seconds), or of ``minutes``
    only, as counted on insert (``span_counts_1m``)."""
    if end_s <= first_s:
        return {}
    params = {"start": window_of(first_s)[0], "end": window_of(end_s - 60)[1]}
    rows = backend.query_arrow(sql.MINUTE_COUNTS, params).to_pylist()
    counted = {r["count_minute"]: (int(r["n_spans"]), int(r["hash_sum"])) for r in rows}
    out = {}
    for minute in range(first_s, end_s, 60) if minutes is None else minutes:
        inside = [counted.get(m, (0, 0)) for m in range(*window_of(minute), 60)]
        out[minute] = Window(sum(n for n, _ in inside), sum(h for _, h in inside) % 2**64)
    return out


def seen_in_window(backend: Backend, minute_s: int) -> tuple[Window, bool]:
    """The :class:`Window` of ``minute_s`` as its spans are visible now, and whether the minute has
    spans with a parent (read from ``spans`` itself)."""
    first, end = window_of(minute_s)
    params = {
        "start": first * 10**9,
        "end": end * 10**9,
        "minute_start": minute_s * 10**9,
        "minute_end": (minute_s + 60) * 10**9,
    }
    row = backend.query_arrow(sql.SEEN_IN_WINDOW, params).to_pylist()[0]
    return Window(int(row["n_spans"]), int(row["hash_sum"]) % 2**64), bool(row["n_children"])


def rolled_versions(backend: Backend, first_s: int, end_s: int) -> dict[int, set[int]]:
    """The versions recorded per minute in ``[first_s, end_s)`` (unix seconds)."""
    out: dict[int, set[int]] = {}
    if end_s > first_s:
        rows = backend.query_arrow(sql.ROLLED_VERSIONS, {"start": first_s, "end": end_s}).to_pylist()
        for r in rows:
            out.setdefault(r["rolled_minute"], set()).add(int(r["rolled_version"]))
    return out


def pending_minutes(backend: Backend, now_ns: int) -> list[Pending]:
    """Whole minutes that ended ``ROLL_UP_LAG_NS`` before ``now_ns`` and whose current window has no
    recorded version: never rolled up, or spans arrived for them since. Newest first, at most
    ``MAX_MINUTES_PER_PASS``, within ``LATE_LOOKBACK_NS``; minutes with an empty window only within
    ``MAX_CATCH_UP_NS``."""
    end = (now_ns - ROLL_UP_LAG_NS) // MINUTE_NS * 60  # a minute [m, m + 60 s) qualifies if m + 60 <= end
    first = -(-max(0, now_ns - LATE_LOOKBACK_NS) // MINUTE_NS) * 60
    catch_up = -(-max(0, now_ns - MAX_CATCH_UP_NS) // MINUTE_NS) * 60
    counted = windows(backend, first, end)
    rolled = rolled_versions(backend, first, end)
    pending = []
    for minute in range(end - 60, first - 1, -60):
        window = counted[minute]
        if window.spans + 1 in rolled.get(minute, ()) or (window.spans == 0 and minute < catch_up):
            continue
        pending.append(Pending(minute, window))
        if len(pending) == MAX_MINUTES_PER_PASS:
            break
    return pending


def roll_up_minute(backend: Backend, minute_s: int, version: int) -> None:
    """Store the edges of children starting in ``[minute_s, minute_s + 60 s)`` under ``version``
    (not recorded: see :func:`record_minutes`)."""
    start = minute_s * 10**9
    params = {**join_params(start, start + MINUTE_NS - 1), "minute": minute_s, "version": version}
    settings = {**explore_sql.JOIN_SETTINGS, "insert_deduplication_token": dedup_token(minute_s, version)}
    backend.command(sql.ROLL_UP_MINUTE + settings_clause(settings), params)


def record_minutes(backend: Backend, rolled: list[tuple[int, int]]) -> None:
    """Record ``(minute, version)`` pairs as rolled up (after their edges are written)."""
    if rolled:
        params = {"minutes": [m for m, _ in rolled], "versions": [v for _, v in rolled]}
        backend.command(sql.RECORD_MINUTES, params)


def roll_up(backend: Backend, now_ns: int, stop: threading.Event | None = None) -> list[int]:
    """Roll up every pending minute (see :func:`pending_minutes`); return the minutes recorded.

    Before it joins, a minute's visible spans are checked against its counted window
    (:func:`seen_in_window`): the engine makes an insert's spans and its counts visible at different
    moments, in either order, and a version must not claim spans its join could not see. A minute
    that does not match (an insert in flight) is left for the next pass, and joined when read.
    A window with nothing counted claims nothing: whatever the join sees is recorded under version 1
    (the spans of minutes stored before migration 0012 are not counted).

    A minute whose insert the engine rejects is logged and left pending (tried again next time); a
    store that is unreachable stops the pass (``StoreUnavailable`` propagates). ``stop`` ends a long
    catch-up early, between minutes, keeping what is done.
    """
    recorded: list[int] = []
    pending = pending_minutes(backend, now_ns)
    for i in range(0, len(pending), CHUNK_MINUTES):
        done = []
        for minute in pending[i : i + CHUNK_MINUTES]:
            if stop is not None and stop.is_set():
                break
            seen, children = seen_in_window(backend, minute.minute)
            if minute.window.spans and seen != minute.window:
                log.debug("service map: spans of minute %s still arriving", minute.minute)
                continue
            version = minute.window.spans + 1
            if children:
                try:
                    roll_up_minute(backend, minute.minute, version)
                except StoreError:
                    log.exception("service map roll-up failed", extra={"minute": minute.minute})
                    continue
            done.append((minute.minute, version))
        record_minutes(backend, done)
        recorded += [m for m, _ in done]
        if stop is not None and stop.is_set():
            break
    return recorded


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """How a range ``[start_ns, end_ns]`` is answered: ``stored`` minutes (unix seconds -> current
    version) read from ``service_edges_1m``, lying in ``runs`` ``[a, b)`` (unix seconds), and ``gaps``
    ``[lo, hi]`` in ns joined from spans."""

    stored: dict[int, int]
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


def current_minutes(backend: Backend, start_ns: int, end_ns: int) -> dict[int, int]:
    """The whole minutes inside ``[start_ns, end_ns]`` whose stored edges are exact now (a version
    equal to their window + 1 is recorded): minute (unix seconds) -> that version."""
    first, end = _full_minutes(start_ns, end_ns)
    rolled = rolled_versions(backend, first, end)
    if not rolled:
        return {}
    # Only the rolled minutes can be current: a range of decades (Jaeger's lookback) has millions of
    # minutes, and counting each window took minutes of Python.
    counted = windows(backend, first, end, sorted(rolled))
    return {m: w.spans + 1 for m, w in counted.items() if w.spans + 1 in rolled.get(m, ())}


def coverage(start_ns: int, end_ns: int, current: dict[int, int]) -> Coverage:
    """Split ``[start_ns, end_ns]`` into runs of the ``current`` minutes (wholly inside the range) and
    the stretches between them, which are joined (partial minutes at either end too)."""
    runs = _runs(sorted(current))
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
    stored = {m: v for m, v in current.items() if any(a <= m < b for a, b in runs)}
    return Coverage(stored, runs, gaps)


def _stored_params(stored: dict[int, int]) -> dict[str, Any]:
    minutes = sorted(stored)
    return {
        "start": minutes[0],
        "end": minutes[-1] + 60,
        "minutes": minutes,
        "versions": [stored[m] for m in minutes],
    }


def stored_edges(backend: Backend, stored: dict[int, int], limit: int) -> list[dict[str, Any]]:
    """Edge sums over the ``stored`` minutes at their versions (the first ``limit`` by caller, callee)."""
    if not stored:
        return []
    return backend.query_arrow(sql.STORED_EDGES, {**_stored_params(stored), "limit": limit}).to_pylist()


def stored_series(backend: Backend, stored: dict[int, int], step_s: int) -> list[dict[str, Any]]:
    """Edge sums over the ``stored`` minutes at their versions per ``step_s`` seconds (whole minutes)."""
    if not stored:
        return []
    if step_s % 60:
        raise ValueError("stored minutes make steps of whole minutes only")
    return backend.query_arrow(sql.STORED_SERIES, {**_stored_params(stored), "step_s": step_s}).to_pylist()


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
