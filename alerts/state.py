"""Alert states: one alert per (SLO, severity, group labels), moved on by each evaluation.

An alert's condition at an evaluation is "some burn-rate pair of its severity fires" (two pairs of one
severity are one alert). States go inactive -> firing -> resolved (-> firing again), with Prometheus'
``keep_firing_for``: once the condition is false, the alert keeps firing until the condition has been
false for that long, counted from the first evaluation that found it false; the condition coming back
in the meantime cancels the countdown. With ``keep_firing_for`` 0 an alert resolves at the first
evaluation whose condition is false. The hold is the alert's severity's
(:meth:`slo.model.AlertPolicy.keep_firing_for`: per rule, per severity or for the whole policy).

:func:`advance` is the whole state machine; the live evaluator and ``sloscope slo backtest`` both run
it, so they produce the same transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from alerts.model import SLO_INSTANCE_LABEL, Alert, AlertState, FiringPair, Transition, alert_id, slo_instance
from slo.evaluator import InstanceResult, RuleState, policy
from slo.model import Slo, format_duration

ALERTNAME = "SLOBurnRate"
#: The alert of an SLO with ``on_no_data: alert`` while its evaluations report no data.
NO_DATA_ALERTNAME = "SLONoData"


@dataclass(frozen=True)
class AlertRecord:
    """What is stored of an alert between evaluations."""

    id: str
    slo: str
    severity: str
    group: tuple[tuple[str, str], ...]
    state: AlertState = "inactive"
    firing_since_s: int | None = None
    resolved_at_s: int | None = None
    #: The first evaluation that found the condition false while firing (the keep_firing_for clock).
    keep_firing_since_s: int | None = None
    updated_at_s: int = 0


def advance(
    record: AlertRecord, condition: bool, at_s: int, keep_firing_for_s: int
) -> tuple[AlertRecord, Transition | None]:
    """The record after an evaluation at ``at_s`` whose condition is ``condition``, and the
    transition it made (None if it stayed)."""
    if at_s <= record.updated_at_s and record.updated_at_s:
        return record, None  # an instant already evaluated (a retry, a restart in the same minute)
    if condition:
        if record.state == "firing":
            return replace(record, keep_firing_since_s=None, updated_at_s=at_s), None
        fired = replace(
            record,
            state="firing",
            firing_since_s=at_s,
            resolved_at_s=None,
            keep_firing_since_s=None,
            updated_at_s=at_s,
        )
        return fired, Transition(record.id, at_s, record.state, "firing")
    if record.state != "firing":
        return replace(record, updated_at_s=at_s), None
    since = record.keep_firing_since_s if record.keep_firing_since_s is not None else at_s
    if at_s - since < keep_firing_for_s:
        return replace(record, keep_firing_since_s=since, updated_at_s=at_s), None
    resolved = replace(
        record, state="resolved", resolved_at_s=at_s, keep_firing_since_s=None, updated_at_s=at_s
    )
    return resolved, Transition(record.id, at_s, "firing", "resolved")


def severities(slo: Slo) -> list[str]:
    """The severities of the SLO's rules, in the order they first appear."""
    return list(dict.fromkeys(rule.severity for rule in policy(slo).rules))


def no_data_severity(slo: Slo) -> str:
    """The severity of the SLO's no-data alert: its first rule's (``page`` without rules)."""
    return next(iter(severities(slo)), "page")


def no_data_alert_id(slo: str, severity: str) -> str:
    """The no-data alert's id: apart from every burn-rate alert's, and derived from what is stored of
    an alert (SLO and severity), so a loaded record is recognised (:func:`is_no_data`)."""
    return alert_id(slo, severity, {"alertname": NO_DATA_ALERTNAME})


def is_no_data(record: AlertRecord) -> bool:
    return record.id == no_data_alert_id(record.slo, record.severity)


def conditions(result: InstanceResult) -> dict[str, bool]:
    """Per severity of the SLO's policy: does some pair of that severity fire?"""
    out = dict.fromkeys(severities(result.slo), False)
    for state in result.rules:
        out[state.rule.severity] = out[state.rule.severity] or state.firing
    return out


def labels(
    slo: Slo, severity: str, group: Sequence[tuple[str, str]], alertname: str = ALERTNAME
) -> tuple[tuple[str, str], ...]:
    """The alert's labels: what routes, groupings, inhibitions and silences match on, and what every
    receiver's payload carries. ``slo_instance`` names the SLO series (the SLO and its group labels,
    :func:`alerts.model.slo_instance`), so Alertmanager-style grouping by it gives one group per series.
    The SLO's own labels and the group labels come after ours and never replace them."""
    ours = {
        "alertname": alertname,
        "slo": slo.name,
        "service": slo.service,
        "severity": severity,
        SLO_INSTANCE_LABEL: slo_instance(slo.name, tuple(group)),
    }
    extra = {k: v for k, v in (*slo.labels, *group) if k not in ours}
    return tuple(sorted({**ours, **extra}.items()))


def firing_pair(rules: Sequence[RuleState], severity: str) -> FiringPair | None:
    """The pair of ``severity`` that fires with the fastest short-window burn (None if none fires)."""
    firing = [r for r in rules if r.rule.severity == severity and r.firing]
    if not firing:
        return None
    best = max(firing, key=lambda r: r.short_burn_rate or 0.0)
    return FiringPair(
        format_duration(best.rule.long_s),
        format_duration(best.rule.short_s),
        float(best.rule.factor),
        best.long_burn_rate,
        best.short_burn_rate,
    )


def alert(record: AlertRecord, slo: Slo, result: InstanceResult | None) -> Alert:
    """The Alert a notification carries, from its record and the evaluation that moved it. A no-data
    alert is named SLONoData and carries the reason as the ``no_data_reason`` annotation."""
    ev = result.evaluation if result is not None else None
    no_data = is_no_data(record)
    annotations = slo.annotations
    if no_data and result is not None and result.no_data:
        annotations = (*annotations, ("no_data_reason", result.no_data))
    return Alert(
        id=record.id,
        slo=slo.name,
        service=slo.service,
        severity=record.severity,
        group=record.group,
        labels=labels(slo, record.severity, record.group, NO_DATA_ALERTNAME if no_data else ALERTNAME),
        state=record.state,
        firing_since_s=record.firing_since_s,
        resolved_at_s=record.resolved_at_s,
        annotations=annotations,
        objective=float(slo.objective),
        error_budget_remaining=None if ev is None else ev.remaining,
        pair=None if result is None or no_data else firing_pair(result.rules, record.severity),
    )


def new_record(slo: Slo, severity: str, group: tuple[tuple[str, str], ...]) -> AlertRecord:
    return AlertRecord(alert_id(slo.name, severity, dict(group)), slo.name, severity, group)


def step(
    records: dict[str, AlertRecord], slos: Sequence[Slo], results: Sequence[InstanceResult], at_s: int
) -> tuple[list[AlertRecord], list[Transition]]:
    """Advance every alert of ``slos`` by one evaluation (updating ``records`` in place); return the
    records that changed and the transitions made.

    An alert of a group value that no longer shows up in the results (no traffic left in any
    window) is advanced with a false condition. An SLO that could not be evaluated keeps its alerts
    as they are: an error is no evidence that the budget stopped burning.

    An SLO whose result is "no data" follows its ``on_no_data``: ``keep`` leaves its alerts as they
    are, ``ok`` advances them with a false condition, ``alert`` fires its no-data alert (and keeps
    the others). The no-data alert resolves at the first evaluation with data.
    """
    by_name = {slo.name: slo for slo in slos}
    failed = {r.slo.name for r in results if r.evaluation is None and not r.no_data}
    no_data = {r.slo.name for r in results if r.no_data}
    seen: set[str] = set()
    touched, transitions = [], []

    def move(record: AlertRecord, condition: bool) -> None:
        # Per severity and rule (a page may hold for an hour while tickets resolve at once).
        keep = policy(by_name[record.slo]).keep_firing_for(record.severity)
        moved, transition = advance(record, condition, at_s, keep)
        if moved != record or record.id not in records:
            records[moved.id] = moved
            touched.append(moved)
        if transition is not None:
            transitions.append(transition)

    for result in results:
        if result.no_data and policy(result.slo).on_no_data == "alert":
            severity = no_data_severity(result.slo)
            fresh = AlertRecord(no_data_alert_id(result.slo.name, severity), result.slo.name, severity, ())
            seen.add(fresh.id)
            move(records.get(fresh.id, fresh), True)
        if result.evaluation is None:
            continue
        for severity, condition in conditions(result).items():
            fresh = new_record(result.slo, severity, result.group)
            seen.add(fresh.id)
            move(records.get(fresh.id, fresh), condition)
    for record in list(records.values()):
        if record.id in seen or record.slo not in by_name or record.slo in failed:
            continue
        if record.slo in no_data and not is_no_data(record):
            if policy(by_name[record.slo]).on_no_data == "ok":
                move(record, False)
            continue
        move(record, False)
    return touched, transitions
