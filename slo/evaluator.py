"""Evaluating SLOs: per-minute counts from the SLI sources, then budgets, burn rates and alert rules.

The clock is a parameter. The schedule evaluates "now", ``sloscope slo report --at`` and the API any
past instant, and a backtest every step of a range, through the same two functions:
:func:`evaluate` for one instant and :func:`backtest` for many, both through ``slo.budget.evaluate_many``
(prefix sums; it makes exactly the decisions of the reference ``slo.budget.evaluate``).

An evaluation at T reads the minutes before T back to the earliest of the window's start, the
longest alert window and the 3-day burn-rate window (:func:`data_start_s`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo import sli
from slo.budget import Evaluation, Evaluations, Ledger, evaluate_many
from slo.burn_rate import BURN_WINDOWS
from slo.counts_cache import CountsCache
from slo.model import MINUTE_S, AlertPolicy, BurnRule, Slo, default_rules, format_duration
from slo.series import MinuteCounts
from slo.windows import floor_minute, previous_close_s, window_bounds
from store.backend import Backend, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

Group = tuple[tuple[str, str], ...]


def policy(slo: Slo) -> AlertPolicy:
    """The SLO's alerting policy, or the SRE Workbook's default rules for its window."""
    return slo.alerting or AlertPolicy(default_rules(slo.window.nominal_s))


def rule_label(rule: BurnRule) -> str:
    """``page 1h/5m``: how a rule is named in results, history and messages."""
    return f"{rule.severity} {format_duration(rule.long_s)}/{format_duration(rule.short_s)}"


@dataclass(frozen=True)
class RuleState:
    """One burn-rate rule at one instant: it fires when both windows burn strictly faster than its
    factor and the long window holds at least the policy's ``min_events``."""

    rule: BurnRule
    long_burn_rate: float | None
    short_burn_rate: float | None
    long_events: float
    firing: bool

    @property
    def label(self) -> str:
        return rule_label(self.rule)


@dataclass(frozen=True)
class InstanceResult:
    """One SLO instance (the SLO, or one group value of a grouped SLO) evaluated at ``at_s``."""

    slo: Slo
    group: Group
    at_s: int
    evaluation: Evaluation | None
    rules: tuple[RuleState, ...] = ()
    #: Why there is no evaluation (a threshold that is not a bucket bound, a store error, ...).
    error: str = ""
    #: Why the data of this instant cannot be trusted (the store unreachable, ingest behind): then
    #: there is no evaluation either, and alerting follows the SLO's ``on_no_data``.
    no_data: str = ""

    @property
    def firing(self) -> list[str]:
        """Severities with a firing rule: two pairs of one severity are one alert."""
        return sorted({r.rule.severity for r in self.rules if r.firing})


def data_start_s(slo: Slo, at_s: int, closing: bool = False) -> int:
    """The first minute an evaluation at ``at_s`` reads, aligned to the SLO's slices."""
    start = min(
        window_bounds(slo.window, at_s, closing).start_s,
        at_s - max(seconds for _, seconds in BURN_WINDOWS),
        at_s - max((r.long_s for r in policy(slo).rules), default=0),
    )
    align = slo.budgeting.slice_s if slo.budgeting.method != "occurrences" else MINUTE_S
    return start // align * align


def _group(slo: Slo, key: tuple[str, ...]) -> Group:
    return tuple(zip(slo.group_by, key, strict=True))


@dataclass(frozen=True)
class RuleArrays:
    """One rule at many instants: its burn rates, the long window's events and whether it fired."""

    rule: BurnRule
    long_burn_rate: np.ndarray  # NaN: no events in the window
    short_burn_rate: np.ndarray
    long_events: np.ndarray
    firing: np.ndarray

    def state(self, i: int) -> RuleState:
        return RuleState(
            self.rule,
            _nan_none(self.long_burn_rate[i]),
            _nan_none(self.short_burn_rate[i]),
            float(self.long_events[i]),
            bool(self.firing[i]),
        )


def rule_arrays(slo: Slo, ledger: Ledger, times_s: Any) -> list[RuleArrays]:
    """Every rule of the SLO's policy at each time (whole minutes), decided exactly."""
    rules = policy(slo)
    times = np.asarray(times_s, dtype=np.int64)
    sums = ledger.burn_windows(times, sorted({w for r in rules.rules for w in (r.long_s, r.short_s)}))
    out = []
    for rule in rules.rules:
        long, short = sums[rule.long_s], sums[rule.short_s]
        events = ledger.events(times - rule.long_s, times).total
        fires = (
            long.exceeds(ledger.error_budget, rule.factor)
            & short.exceeds(ledger.error_budget, rule.factor)
            & (events >= rules.min_events)
        )
        out.append(
            RuleArrays(
                rule,
                long.burn_rate(ledger.error_budget),
                short.burn_rate(ledger.error_budget),
                events,
                np.asarray(fires, dtype=bool),
            )
        )
    return out


def _nan_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def evaluate_slo(
    backend: Backend, slo: Slo, at_s: float, cache: CountsCache | None = None, closing: bool = False
) -> list[InstanceResult]:
    """Every instance of ``slo`` at ``at_s`` (floored to the minute), one per group value seen.

    ``cache`` (the schedule's) keeps the counts between evaluations, so each reads only the newest
    minutes. An SLO that cannot be evaluated (bad threshold, store error) gives one result with
    ``error``; a store that is unreachable raises :class:`StoreUnavailable`. ``closing``: at a
    calendar boundary, evaluate the period that closes there (``slo.windows.window_bounds``).
    """
    at = floor_minute(at_s)
    read = cache.minute_counts if cache is not None else sli.minute_counts
    try:
        found = read(backend, slo, data_start_s(slo, at, closing), at)
    except StoreUnavailable:
        raise
    except (ValueError, StoreError) as exc:
        return [InstanceResult(slo, (), at, None, error=str(exc))]
    return _instances(slo, at, found, closing)


def _instances(
    slo: Slo, at: int, found: dict[tuple[str, ...], MinuteCounts] | Exception, closing: bool = False
) -> list[InstanceResult]:
    """The results of ``slo`` at ``at`` from its counts, or one result with the error of its read."""
    try:
        if isinstance(found, Exception):
            raise found
        results = []
        for key, counts in sorted(found.items()):
            # The prefix-sum path makes the exact path's decisions and is far cheaper for slice methods.
            ledger = Ledger(slo, counts)
            evaluation = evaluate_many(slo, counts, [at], ledger, closing).at(0)
            results.append(
                InstanceResult(
                    slo,
                    _group(slo, key),
                    at,
                    evaluation,
                    tuple(r.state(0) for r in rule_arrays(slo, ledger, [at])),
                )
            )
    except StoreUnavailable:
        raise
    except (ValueError, StoreError) as exc:
        return [InstanceResult(slo, (), at, None, error=str(exc))]
    return results


def evaluate(
    backend: Backend, slos: Iterable[Slo], at_s: float, cache: CountsCache | None = None
) -> list[InstanceResult]:
    """:func:`evaluate_slo` for each SLO, in the given order, with the same results.

    One cycle reads the counts of all SLOs together (``sli.minute_counts_many``): the SLOs that
    the RED roll-up answers share one statement per tenant instead of one statement each.
    """
    at = floor_minute(at_s)
    return _evaluate_all(backend, [(slo, at, False) for slo in slos], cache)


def _evaluate_all(
    backend: Backend, instants: list[tuple[Slo, int, bool]], cache: CountsCache | None = None
) -> list[InstanceResult]:
    """:func:`evaluate_slo` of each (SLO, minute, closing), in order, reading all counts at once."""
    found: list[Any] = []
    reads: list[sli.Read] = []
    for slo, at, closing in instants:
        try:
            reads.append((slo, data_start_s(slo, at, closing), at))
            found.append(None)  # filled from the read below
        except ValueError as exc:
            found.append(exc)
    read = cache.minute_counts_many if cache is not None else sli.minute_counts_many
    answers = iter(read(backend, reads))
    found = [next(answers) if f is None else f for f in found]
    return [
        result
        for (slo, at, closing), counts in zip(instants, found, strict=True)
        for result in _instances(slo, at, counts, closing)
    ]


#: What ``period`` may ask for: the window of the instant, or the one that closed before it.
PERIODS = ("current", "previous")


def evaluate_previous_slo(backend: Backend, slo: Slo, at_s: float) -> list[InstanceResult]:
    """The final result of the period before the one at ``at_s``: the evaluation at the instant it
    closed, over that period exactly (a calendar period complete, or for a rolling window W the
    window ``[T - 2W, T - W)`` that ended where the current one starts). ``at_s`` of each result
    is the closing instant."""
    return evaluate_slo(backend, slo, previous_close_s(slo.window, floor_minute(at_s)), closing=True)


def evaluate_period(backend: Backend, slos: Iterable[Slo], at_s: float, period: str) -> list[InstanceResult]:
    """:func:`evaluate` (``period="current"``) or :func:`evaluate_previous_slo` for each SLO."""
    if period not in PERIODS:
        raise ValueError(f"period: {period!r} must be one of {', '.join(PERIODS)}")
    if period == "current":
        return evaluate(backend, slos, at_s)
    at = floor_minute(at_s)
    return _evaluate_all(backend, [(slo, floor_minute(previous_close_s(slo.window, at)), True) for slo in slos])


def period_reach_s(slo: Slo, at_s: int, period: str) -> int:
    """:func:`data_start_s` of what ``period`` at ``at_s`` reads (to refuse reads before 1970)."""
    if period == "previous":
        return data_start_s(slo, previous_close_s(slo.window, at_s), closing=True)
    return data_start_s(slo, at_s)


def no_data(slos: Iterable[Slo], at_s: float, reason: str) -> list[InstanceResult]:
    """One "no data" result per SLO at ``at_s``: nothing is computed from data that may be missing
    (docs/slo-semantics.md, "No data")."""
    at = floor_minute(at_s)
    return [InstanceResult(slo, (), at, None, no_data=reason) for slo in slos]


# -- many instants -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleChange:
    """A rule started (``firing=True``) or stopped firing at ``at_s``."""

    at_s: int
    group: Group
    rule: str
    firing: bool


@dataclass(frozen=True)
class GroupBacktest:
    group: Group
    evaluations: Evaluations
    rules: list[RuleArrays]

    @property
    def firing(self) -> dict[str, np.ndarray]:
        """Rule label -> whether it fired at each step."""
        return {rule_label(r.rule): r.firing for r in self.rules}

    def instance(self, slo: Slo, i: int) -> InstanceResult:
        """The :func:`evaluate_slo` result of step ``i``."""
        evaluation = self.evaluations.at(i)
        return InstanceResult(
            slo, self.group, evaluation.at_s, evaluation, tuple(r.state(i) for r in self.rules)
        )


@dataclass
class Backtest:
    slo: Slo
    times_s: np.ndarray
    groups: list[GroupBacktest] = field(default_factory=list)

    def changes(self) -> list[RuleChange]:
        """Every rule state change, in time order (a rule firing at the first step is a change)."""
        out = []
        for g in self.groups:
            for label, firing in g.firing.items():
                previous = np.concatenate(([False], firing[:-1]))
                for i in np.flatnonzero(firing != previous):
                    out.append(RuleChange(int(self.times_s[i]), g.group, label, bool(firing[i])))
        return sorted(out, key=lambda c: (c.at_s, c.group, c.rule))


def steps(from_s: float, to_s: float, step_s: int) -> np.ndarray:
    """Evaluation times from ``from_s`` to ``to_s`` inclusive, ``step_s`` apart, floored to minutes."""
    if step_s < MINUTE_S or step_s % MINUTE_S:
        raise ValueError(f"step must be a whole number of minutes, got {step_s} s")
    first, last = floor_minute(from_s), floor_minute(to_s)
    if last < first:
        raise ValueError("the end of the backtest is before its start")
    return np.arange(first, last + 1, step_s, dtype=np.int64)


def backtest(backend: Backend, slo: Slo, times_s: np.ndarray) -> Backtest:
    """Evaluate ``slo`` at every time in ``times_s`` over stored data, reading the store once."""
    if not len(times_s):
        raise ValueError("a backtest needs at least one evaluation time")
    # The first time reads furthest back: later times have later rolling starts and calendar periods.
    start, end = data_start_s(slo, int(times_s[0])), int(times_s[-1])
    return backtest_counts(slo, sli.minute_counts(backend, slo, start, end), times_s)


def backtest_counts(slo: Slo, counts: dict[tuple[str, ...], MinuteCounts], times_s: np.ndarray) -> Backtest:
    """:func:`backtest` over given per-minute counts (one entry per group value)."""
    result = Backtest(slo, times_s)
    for key, group_counts in sorted(counts.items()):
        ledger = Ledger(slo, group_counts)
        evaluations = evaluate_many(slo, group_counts, times_s, ledger)
        result.groups.append(GroupBacktest(_group(slo, key), evaluations, rule_arrays(slo, ledger, times_s)))
    return result


def as_dict(result: InstanceResult) -> dict[str, Any]:
    """The JSON shape of one result (API, ``slo report --format json``)."""
    slo, ev = result.slo, result.evaluation
    out: dict[str, Any] = {
        "slo": slo.name,
        "service": slo.service,
        "group": dict(result.group),
        "objective": float(slo.objective),
        "window": slo.window.label,
        "budgeting": slo.budgeting.method,
        "at": result.at_s,
        "labels": slo.label_map,
        "annotations": slo.annotation_map,
        "error": result.error or None,
        "no_data": result.no_data or None,
    }
    if ev is not None:
        out |= {
            "window_start": ev.window_start_s,
            "period_end": ev.period_end_s,
            "total": ev.total,
            "bad": ev.bad,
            "sli": ev.sli,
            "budget_unit": ev.budget_unit,
            "budget": ev.budget,
            "expected": ev.expected,
            "consumed": ev.consumed,
            "remaining": ev.remaining,
            "exhausted": ev.exhausted,
            "time_to_exhaustion_s": ev.time_to_exhaustion_s,
            "burn_rates": dict(ev.burn_rates),
            "met": ev.met,
            "slices": None
            if ev.slices is None
            else {
                "slices": ev.slices,
                "with_data": ev.data_slices,
                "good": ev.good_slices,
                "bad": ev.bad_slices,
                "no_data": ev.no_data_slices,
            },
        }
    out["alert_rules"] = [
        {
            "rule": r.label,
            "severity": r.rule.severity,
            "long": format_duration(r.rule.long_s),
            "short": format_duration(r.rule.short_s),
            "factor": float(r.rule.factor),
            "long_burn_rate": r.long_burn_rate,
            "short_burn_rate": r.short_burn_rate,
            "long_events": r.long_events,
            "firing": r.firing,
        }
        for r in result.rules
    ]
    out["firing"] = result.firing
    return out
