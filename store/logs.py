"""The log views: volume by severity over a range, the lines around a line, and the live tail.

The histogram and the tail count and list exactly the lines the log search (``store/explore.py``)
matches: the same :class:`~store.explore.LogSearch`, the same SQL filters. Request values reach the
engine only as bound parameters (``store/sql/logs.py``); a malformed one raises :class:`ValueError`
naming the parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from store import explore
from store.backend import Backend
from store.sql import logs as sql
from store.traces import TRACE_ID

#: Severity classes of the histogram, by the index SEVERITY_CLASS computes: OpenTelemetry's six
#: severity names, and UNSPECIFIED for 0 (or a number outside 1..24).
SEVERITY_CLASSES = ["UNSPECIFIED", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
#: Round bucket widths in seconds; the histogram takes the smallest giving at most TARGET_BUCKETS.
STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
TARGET_BUCKETS = 80  # at most; 1 h -> 1 min (60), 15 min -> 15 s (60), 24 h -> 30 min (48), 7 d -> 3 h (56)
MAX_BUCKETS = 10_000  # a given step may not cut the range finer than this

#: Context: each side is looked for at most this far from the anchor (a day's partitions at most).
CONTEXT_LOOKBACK_NS = 24 * 3600 * 10**9
CONTEXT_DEFAULT_N, CONTEXT_MAX_N = 25, 500
#: Most lines of one side sharing the time of its n-th line (WITH TIES) beyond n.
CONTEXT_MAX_TIES = 1000

#: Tail: lines are read up to now minus this delay, so that a line exported a little after its own
#: time (SDK and collector batching) is still ahead of the cursor when it lands.
TAIL_SETTLE_NS = 2 * 10**9
#: Without a cursor, the tail starts with the newest lines of this last stretch.
TAIL_START_NS = 5 * 60 * 10**9
#: A cursor older than this resumes from this far back (a tab left paused for a day reads one hour).
TAIL_MAX_LOOKBACK_NS = 3600 * 10**9
TAIL_DEFAULT_LIMIT, TAIL_MAX_LIMIT = 500, 1000
#: Most lines at one nanosecond a cursor remembers; beyond, it moves past that nanosecond.
TAIL_MAX_TIES = 256

INT64_MAX = 2**63 - 1
_TAIL_CURSOR = re.compile(r"^(\d{1,19})((?:\.[0-9a-f]{1,16}){0,256})$")  # 256: TAIL_MAX_TIES
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


# -- histogram ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One bucket [start_ns, end_ns) of the histogram: counts per severity class (SEVERITY_CLASSES)."""

    start_ns: int
    end_ns: int
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Histogram:
    """Matching logs per bucket of ``step_ns`` (multiples of it since the epoch) over [start_ns, end_ns]."""

    start_ns: int
    end_ns: int
    step_ns: int
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(b.total for b in self.buckets)

    @property
    def peak(self) -> int:
        return max((b.total for b in self.buckets), default=0)


def auto_step_ns(span_ns: int) -> int:
    """The smallest round step cutting ``span_ns`` into at most TARGET_BUCKETS buckets (a day at most)."""
    for step_s in STEPS_S:
        if span_ns <= step_s * 10**9 * TARGET_BUCKETS:
            return step_s * 10**9
    days = -(-span_ns // (86400 * 10**9 * TARGET_BUCKETS))
    return days * 86400 * 10**9


def check_step(step_ns: int, span_ns: int) -> None:
    """A given step: whole seconds, at most MAX_BUCKETS buckets over the range; ValueError naming step."""
    if step_ns < 10**9 or step_ns % 10**9:
        raise ValueError(f"step must be a whole number of seconds, at least 1, got {step_ns / 1e9:g}")
    if span_ns // step_ns + 1 > MAX_BUCKETS:
        raise ValueError(f"step: {step_ns // 10**9} s cuts this range into more than {MAX_BUCKETS} buckets")


def histogram(backend: Backend, q: explore.LogSearch, step_ns: int | None = None) -> Histogram:
    """Logs matching ``q`` (its limit aside) per bucket and severity class, counted in one query.

    Every bucket from the one holding ``q.start_ns`` to the one holding ``q.end_ns`` is listed, empty
    ones too; the first and last may reach beyond the range (only lines inside it are counted)."""
    explore.check_range(q.start_ns, q.end_ns)
    span = q.end_ns - q.start_ns
    if step_ns is None:
        step_ns = auto_step_ns(span)
    check_step(step_ns, span)
    filters, params = explore.log_filters(q)
    params.update(start=q.start_ns, end=q.end_ns, step=step_ns)
    table = backend.query_arrow(sql.HISTOGRAM_HEAD + filters + sql.HISTOGRAM_TAIL, params)
    first = q.start_ns // step_ns * step_ns
    last = q.end_ns // step_ns * step_ns
    counts = [[0] * len(SEVERITY_CLASSES) for _ in range((last - first) // step_ns + 1)]
    if table.num_rows:
        for bucket_ns, sev, n in zip(
            table.column("bucket_ns").to_pylist(),
            table.column("sev_class").to_pylist(),
            table.column("n").to_pylist(),
            strict=True,
        ):
            index = (bucket_ns - first) // step_ns
            if 0 <= index < len(counts):  # intDiv truncates towards zero: before 1970, not ours
                counts[index][sev] += n
    buckets = [Bucket(first + i * step_ns, first + (i + 1) * step_ns, c) for i, c in enumerate(counts)]
    return Histogram(q.start_ns, q.end_ns, step_ns, buckets)


# -- context -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextQuery:
    """The lines around the line at ``at_ns`` of its service (``by='service'``) or trace (``'trace'``).

    The line itself is matched by its time and whichever of service, trace id and span id are given.
    ``anchor_ns`` (default ``at_ns``) is where the window is cut: the ``n`` newest lines at or before
    it and the ``n`` oldest after it (paging moves the anchor, the marked line stays)."""

    at_ns: int
    by: str
    service: str = ""
    trace_id: str = ""
    span_id: str = ""
    anchor_ns: int | None = None
    n: int = CONTEXT_DEFAULT_N


@dataclass(frozen=True)
class Context:
    """Lines in time order, each with ``is_target``; anchors of the earlier and later pages (None:
    no further line within CONTEXT_LOOKBACK_NS on that side, or fewer than n)."""

    lines: list[dict[str, Any]]
    before_count: int
    after_count: int
    earlier_anchor_ns: int | None
    later_anchor_ns: int | None


def check_context(q: ContextQuery) -> None:
    """ValueError naming the parameter of ``q`` that is wrong."""
    if q.by not in sql.CONTEXT_SCOPES:
        raise ValueError(f"by: {q.by[:32]!r} must be service or trace")
    for name, value in (("at", q.at_ns), ("anchor", q.anchor_ns)):
        if value is not None and not 0 <= value <= INT64_MAX:
            raise ValueError(f"{name} must be unix nanoseconds from 0 to {INT64_MAX}")
    if not 1 <= q.n <= CONTEXT_MAX_N:
        raise ValueError(f"n must be a whole number from 1 to {CONTEXT_MAX_N}, got {q.n}")
    explore.bounded_text(q.service, "service")
    if q.trace_id and not TRACE_ID.match(q.trace_id):
        raise ValueError(f"trace_id must be 32 hex digits, got {q.trace_id[:64]!r}")
    if q.span_id and not _SPAN_ID.match(q.span_id.lower()):
        raise ValueError(f"span_id must be 16 hex digits, got {q.span_id[:64]!r}")
    if q.by == "service" and not q.service:
        raise ValueError("service is needed for the lines of the same service (by=service)")
    if q.by == "trace" and not q.trace_id:
        raise ValueError("trace_id is needed for the lines of the same trace (by=trace)")


def _is_target(q: ContextQuery, row: dict[str, Any]) -> bool:
    return (
        row["t_ns"] == q.at_ns
        and (not q.service or row["service_name"] == q.service)
        and (not q.trace_id or row["trace_hex"] == q.trace_id.lower())
        and (not q.span_id or row["span_hex"] == q.span_id.lower())
    )


def context(backend: Backend, q: ContextQuery) -> Context:
    """The ``n`` lines at or before the anchor and the ``n`` after it (all lines sharing the time of
    the n-th too), of the same service or trace, in time order; each side reads at most a day."""
    check_context(q)
    anchor = q.at_ns if q.anchor_ns is None else q.anchor_ns
    params = {
        "at": anchor,
        "lo": max(0, anchor - CONTEXT_LOOKBACK_NS),
        "hi": min(INT64_MAX, anchor + CONTEXT_LOOKBACK_NS),
        "n": q.n,
        "cap": q.n + CONTEXT_MAX_TIES,
        "service": q.service,
        "trace_id": q.trace_id.lower(),
    }
    before = backend.query_arrow(sql.CONTEXT_BEFORE[q.by], params).to_pylist()
    after = backend.query_arrow(sql.CONTEXT_AFTER[q.by], params).to_pylist()
    rows = before + after
    return Context(
        lines=[{**explore.log_row(row), "is_target": _is_target(q, row)} for row in rows],
        before_count=len(before),
        after_count=len(after),
        earlier_anchor_ns=before[0]["t_ns"] - 1 if len(before) >= q.n and before[0]["t_ns"] > 0 else None,
        later_anchor_ns=after[-1]["t_ns"] if len(after) >= q.n else None,
    )


# -- live tail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TailCursor:
    """Where a tail is: every line after ``after_ns`` is new, and at exactly ``after_ns`` every line
    but those in ``seen`` (line hashes, repeated for identical lines: a multiset)."""

    after_ns: int
    seen: tuple[int, ...] = ()

    def encode(self) -> str:
        """``<unix ns>`` then ``.<hex hash>`` per line seen at that nanosecond (URL-safe as it is)."""
        return str(self.after_ns) + "".join(f".{h:x}" for h in sorted(self.seen))


def decode_tail_cursor(text: str) -> TailCursor:
    """The cursor of :meth:`TailCursor.encode`; ValueError naming ``after``."""
    match = _TAIL_CURSOR.fullmatch(text.strip())
    if not match or int(match.group(1)) > INT64_MAX:
        raise ValueError(
            f"after: {text[:64]!r} is not a tail cursor (pass a next_cursor unchanged, or unix nanoseconds)"
        )
    return TailCursor(int(match.group(1)), tuple(int(h, 16) for h in match.group(2).split(".")[1:]))


def page_cursor(end_ns: int) -> TailCursor:
    """The cursor after a search page ending at ``end_ns`` (which showed the lines up to it included)."""
    return TailCursor(end_ns + 1)


@dataclass(frozen=True)
class TailPage:
    """New lines, newest first; the cursor to ask with next; how many new lines were left out (more
    than the limit arrived since the cursor: the newest are kept)."""

    logs: list[dict[str, Any]]
    next_cursor: TailCursor
    skipped: int


def tail(
    backend: Backend, q: explore.LogSearch, cursor: TailCursor | None, now_ns: int, limit: int
) -> TailPage:
    """Lines matching ``q`` (its range and limit aside) that are new after ``cursor``, read up to
    ``now_ns`` minus TAIL_SETTLE_NS; without a cursor, the newest of the last TAIL_START_NS.

    Each line is delivered once along a chain of cursors: a line is new if it is later than the
    cursor's time, or at that time and not in its multiset of lines already delivered there."""
    if not 1 <= limit <= TAIL_MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {TAIL_MAX_LIMIT}, got {limit}")
    if cursor is None:
        cursor = TailCursor(max(0, now_ns - TAIL_START_NS))
    start = max(cursor.after_ns, now_ns - TAIL_MAX_LOOKBACK_NS)
    end = now_ns - TAIL_SETTLE_NS
    if start > end:
        return TailPage([], cursor, 0)
    counts: dict[int, int] = {}
    for h in cursor.seen:
        counts[h] = counts.get(h, 0) + 1
    filters, params = explore.log_filters(q)
    params.update(
        start=start,
        end=end,
        after=cursor.after_ns,
        seen_hashes=list(counts),
        seen_counts=list(counts.values()),
        limit=limit,
    )
    rows = backend.query_arrow(sql.TAIL_HEAD + filters + sql.TAIL_TAIL, params).to_pylist()
    if not rows:
        return TailPage([], cursor, 0)
    top = rows[0]["t_ns"]
    at_top = tuple(int(r["row_key"], 16) for r in rows if r["t_ns"] == top)
    seen = (cursor.seen if top == cursor.after_ns else ()) + at_top
    following = TailCursor(top, seen) if len(seen) <= TAIL_MAX_TIES else TailCursor(top + 1)
    return TailPage([explore.log_row(r) for r in rows], following, rows[0]["total"] - len(rows))
