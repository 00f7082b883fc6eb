"""Burn attribution: what burned an SLO instance's budget in an alert's short window.

:func:`attribute` answers two questions for the person paged. *Where?* The contributors: the parts
of the instance's traffic, one per (operation, ``http.route``, ``service.version``), with their bad
and total events, most bad first. *What does a failure look like?* A few example failing traces,
each with its operation and error log lines.

The counts are the SLI's own (the same request and bad definitions, from the same SQL fragments and
parameters as ``slo/sli.py``, and from ``red_1m`` exactly when the SLI reads it), so the bad events
of all contributors add up to the SLI's bad events of the window. Conventions are in
``docs/attribution.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from alerts import sql
from alerts.model import Attribution, Contributor, ExampleTrace
from slo import sli as slis
from slo.model import MINUTE_S, LogSli, MetricSli, Slo, SpanSli
from store.backend import Backend
from store.tenancy import tenant_scope

NS = 10**9
#: The breakdown dimensions besides the operation (span name). Log and metric SLIs, which have no
#: span name, are broken down by these alone (``operation`` is '').
DIMENSIONS = ("http.route", "service.version")
#: Log lines shown with an example trace: records of severity ERROR (17) or above. WARN lines are
#: mostly retries and deprecations, noise next to a page; the failure itself logs an error.
ERROR_SEVERITY = 17
MAX_LOG_LINES = 5
MAX_LINE_CHARS = 300
#: How far around the window a trace's spans and logs are looked for: a failing request found in the
#: window may have started (its root span) a little before it and logged a little after it.
TRACE_MARGIN_S = 600
#: Upper bounds of ``top`` and ``examples``: a notification is read by a person.
MAX_TOP = 100
MAX_EXAMPLES = 20


def attribute(
    backend: Backend,
    slo: Slo,
    group: Sequence[tuple[str, str]],
    start_s: int,
    end_s: int,
    top: int = 5,
    examples: int = 3,
) -> Attribution:
    """Burn attribution of the SLO instance ``group`` (its ``group_by`` labels as (name, value)
    pairs, ``()`` without ``group_by``) over ``[start_s, end_s)`` (unix seconds, whole minutes).

    ``contributors``: at most ``top`` (operation, http.route, service.version) parts with bad
    events, by bad events descending (then total descending, then the names); ``bad``/``total``:
    the instance's events in the window; ``omitted``: the parts with bad events left out.
    ``examples``: at most ``examples`` failing traces, most recent first. ``top`` and ``examples``
    are capped at :data:`MAX_TOP` and :data:`MAX_EXAMPLES`. Raises ValueError for a bad range or
    group, or an SLO that ``slo.sli.minute_counts`` rejects.
    """
    if start_s % MINUTE_S or end_s % MINUTE_S:
        raise ValueError(f"start_s and end_s must be whole minutes, got {start_s} and {end_s}")
    if end_s < start_s:
        raise ValueError(f"end_s ({end_s}) is before start_s ({start_s})")
    if top < 0 or examples < 0:
        raise ValueError(f"top and examples must not be negative, got {top} and {examples}")
    labels = _group_labels(slo, group)
    if end_s == start_s:
        return Attribution()
    top, examples = min(top, MAX_TOP), min(examples, MAX_EXAMPLES)
    with tenant_scope(slo.tenant or None):  # the SLO's tenant's events, traces and logs only
        return _attribute(_Window(backend, slo, labels, start_s, end_s), slo, top, examples)


def _attribute(window: _Window, slo: Slo, top: int, examples: int) -> Attribution:
    sli = slo.sli
    if isinstance(sli, SpanSli):
        attribution = window.span_contributors(top)
        found = window.span_examples(examples) if examples else []
    elif isinstance(sli, LogSli):
        attribution = window.breakdown(top)
        found = window.log_examples(examples) if examples else []
    elif isinstance(sli, MetricSli):
        attribution = window.breakdown(top)
        found = window.metric_examples(sli, examples) if examples else []
    else:
        raise TypeError(f"SLO {slo.name!r}: unknown SLI type {type(sli).__name__}")
    if not found:
        return attribution
    return dataclasses.replace(attribution, examples=window.with_logs(found))


def _group_labels(slo: Slo, group: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The group labels in ``group_by`` order; ValueError unless they name exactly its attributes."""
    labels = dict(group)
    if len(labels) != len(tuple(group)) or set(labels) != set(slo.group_by):
        raise ValueError(
            f"SLO {slo.name!r} groups by {list(slo.group_by)}; group labels {[k for k, _ in group]} "
            "must name exactly those attributes, once each"
        )
    return tuple((key, labels[key]) for key in slo.group_by)


@dataclasses.dataclass(frozen=True)
class _Found:
    """An example before its logs are read: (trace, span) and what is known of it."""

    trace_id: str
    span_id: str
    operation: str = ""
    #: The bad record itself (log SLIs): the first line shown.
    line: str = ""


@dataclasses.dataclass(frozen=True)
class _Window:
    backend: Backend
    slo: Slo
    labels: tuple[tuple[str, str], ...]
    start_s: int
    end_s: int

    @property
    def group(self) -> list[str]:
        return [value for _, value in self.labels]

    def _ranked(self, statement: str, params: Mapping[str, Any], top: int) -> tuple[Attribution, list[dict]]:
        # LIMIT at least 1: the window totals ride on the rows.
        rows = self.backend.query_arrow(
            statement, {**params, "group": self.group, "top": max(top, 1)}
        ).to_pylist()
        if not rows:
            return Attribution(), rows
        contributors = tuple(
            Contributor(
                operation=r["operation"],
                bad=float(r["n_bad"]),
                total=float(r["n_total"]),
                http_route=r["http_route"],
                service_version=r["service_version"],
                group=self.labels,
            )
            for r in rows[:top]
            if r["n_bad"] > 0
        )
        first = rows[0]
        return Attribution(
            contributors=contributors,
            bad=float(first["window_bad"]),
            total=float(first["window_total"]),
            omitted=int(first["n_parts"]) - len(contributors),
        ), rows

    # -- contributors ---------------------------------------------------------------------------

    def span_contributors(self, top: int) -> Attribution:
        """From red_1m when the SLI reads it, else (or for minutes without latency details) spans."""
        sli = self.slo.sli
        assert isinstance(sli, SpanSli)
        if slis.uses_roll_up(self.slo):
            params = {
                **slis.span_params(self.slo, roll_up=True),
                "start_s": self.start_s,
                "end_s": self.end_s,
            }
            attribution, rows = self._ranked(sql.CONTRIBUTORS_ROLL_UP, params, top)
            stale = bool(rows) and rows[0]["window_detailed"] != rows[0]["window_total"]
            if not (stale and sli.bad_latency_ms is not None):
                return attribution
        params = {**slis.span_params(self.slo, roll_up=False), **self._ns_range()}
        return self._ranked(sql.CONTRIBUTORS_RAW, params, top)[0]

    def breakdown(self, top: int) -> Attribution:
        """Log and metric SLIs: the SLI's own per-minute counts, grouped also by :data:`DIMENSIONS`.

        Read through ``minute_counts`` so that counters' resets, temporalities and lookback stay
        the SLI's; the rows are bounded by the window and the few values of the dimensions.
        """
        extra = tuple(d for d in DIMENSIONS if d not in self.slo.group_by)
        wide = dataclasses.replace(self.slo, group_by=self.slo.group_by + extra)
        at = {d: wide.group_by.index(d) for d in DIMENSIONS}
        n = len(self.slo.group_by)
        parts, bad, total = [], 0.0, 0.0
        for key, counts in slis.minute_counts(self.backend, wide, self.start_s, self.end_s).items():
            if list(key[:n]) != self.group:
                continue
            part_bad, part_total = float(counts.bad.sum()), float(counts.total.sum())
            bad, total = bad + part_bad, total + part_total
            if part_bad > 0:
                parts.append(
                    Contributor(
                        "",
                        part_bad,
                        part_total,
                        key[at["http.route"]],
                        key[at["service.version"]],
                        self.labels,
                    )
                )
        parts.sort(key=lambda c: (-c.bad, -c.total, c.http_route, c.service_version))
        return Attribution(
            contributors=tuple(parts[:top]), bad=bad, total=total, omitted=max(0, len(parts) - top)
        )

    # -- examples -------------------------------------------------------------------------------

    def _ns_range(self) -> dict[str, int]:
        return {"start_ns": self.start_s * NS, "end_ns": self.end_s * NS}

    def span_examples(self, limit: int) -> list[_Found]:
        params = {
            **slis.span_params(self.slo, roll_up=False),
            **self._ns_range(),
            "group": self.group,
            "examples": limit,
        }
        rows = self.backend.query_arrow(sql.SPAN_EXAMPLES, params).to_pylist()
        return [_Found(r["trace_hex"], r["span_hex"], r["operation"]) for r in rows]

    def log_examples(self, limit: int) -> list[_Found]:
        base, n_total, n_bad = slis.log_params(self.slo)
        params = {
            **base,
            **self._ns_range(),
            "group": self.group,
            "examples": limit,
            "max_chars": MAX_LINE_CHARS,
        }
        rows = self.backend.query_arrow(sql.log_examples(n_total, n_bad), params).to_pylist()
        return self._with_operations([_Found(r["trace_hex"], r["span_hex"], line=r["line"]) for r in rows])

    def metric_examples(self, sli: MetricSli, limit: int) -> list[_Found]:
        """Exemplars of the bad counter's points, or of the histogram's observations above the
        threshold. A good counter's exemplars are not failures, and the total's cannot be told
        apart: none then."""
        if sli.is_histogram:
            statement, selector, above = sql.HISTOGRAM_EXEMPLARS, sli.total, float(sli.threshold)  # type: ignore[arg-type]
        elif sli.bad is not None:
            statement, selector, above = sql.SUM_EXEMPLARS, sli.bad, None
        else:
            return []
        params = {
            **slis.metric_params(self.slo, selector, self.start_s, self.end_s),
            "start_ns": self.start_s * NS,
            "group": self.group,
            "examples": limit,
            "min_value_on": int(above is not None),
            "min_value": above if above is not None else 0.0,
        }
        rows = self.backend.query_arrow(statement, params).to_pylist()
        return self._with_operations([_Found(r["trace_hex"], r["span_hex"]) for r in rows])

    def _lookup_range(self) -> dict[str, int]:
        return {
            "start_ns": max(0, self.start_s - TRACE_MARGIN_S) * NS,
            "end_ns": (self.end_s + TRACE_MARGIN_S) * NS,
        }

    def _with_operations(self, found: list[_Found]) -> list[_Found]:
        """The operation of each example: its span's name, else its trace's root span's, else ''."""
        if not found:
            return found
        params = {
            **self._lookup_range(),
            "trace_ids": [f.trace_id for f in found],
            "span_ids": [f.span_id for f in found],
            "max_rows": 10 * len(found),
        }
        by_span: dict[tuple[str, str], str] = {}
        roots: dict[str, str] = {}
        for r in self.backend.query_arrow(sql.EXAMPLE_SPANS, params).to_pylist():
            by_span[(r["trace_hex"], r["span_hex"])] = r["operation"]
            if r["is_root"]:
                roots.setdefault(r["trace_hex"], r["operation"])
        return [
            dataclasses.replace(f, operation=by_span.get((f.trace_id, f.span_id), roots.get(f.trace_id, "")))
            for f in found
        ]

    def with_logs(self, found: list[_Found]) -> tuple[ExampleTrace, ...]:
        """The examples with their traces' error log lines (any service), oldest first."""
        params = {
            **self._lookup_range(),
            "trace_ids": [f.trace_id for f in found],
            "min_severity": ERROR_SEVERITY,
            "lines": MAX_LOG_LINES,
            "max_rows": MAX_LOG_LINES * len(found),
            "max_chars": MAX_LINE_CHARS,
        }
        lines: dict[str, list[str]] = {}
        for r in self.backend.query_arrow(sql.ERROR_LOGS, params).to_pylist():
            lines.setdefault(r["trace_hex"], []).append(r["line"])
        out = []
        for f in found:
            shown = lines.get(f.trace_id, [])
            if f.line:
                # A log SLI's bad record first; it is among the error lines too if it is an error.
                rest = list(shown)
                if f.line in rest:
                    rest.remove(f.line)
                shown = [f.line, *rest]
            out.append(ExampleTrace(f.trace_id, f.operation, tuple(shown[:MAX_LOG_LINES])))
        return tuple(out)


#: A version "holds most of the bad events" from this share of the window's bad events on.
DOMINANT_SHARE = 0.5


def dominant_version(contributors: Sequence[Mapping[str, Any]], bad: float) -> tuple[str, str] | None:
    """(the version holding more than half of ``bad``, the window's bad events, and another version
    seen with bad events to compare it with, or ''), from a notification's contributors; None when
    no version does, or when the one that does is unversioned (''). For the incident page's link to
    the canary view."""
    by_version: dict[str, float] = {}
    for c in contributors:
        version = str(c.get("service_version") or "")
        by_version[version] = by_version.get(version, 0.0) + stored_count(c.get("bad"))
    if not by_version or bad <= 0:
        return None
    version, held = max(by_version.items(), key=lambda item: (item[1], item[0]))
    if not version or held <= bad * DOMINANT_SHARE:
        return None
    others = sorted(((n, v) for v, n in by_version.items() if v and v != version), reverse=True)
    return version, others[0][1] if others else ""


def stored_count(value: Any) -> float:
    """A stored contributor's bad events; 0 when absent or malformed (a payload never breaks a page)."""
    try:
        count = float(value)
    except (TypeError, ValueError):
        return 0.0
    return count if math.isfinite(count) and count > 0 else 0.0
