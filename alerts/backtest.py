"""Alerts and notifications of a backtest: the live state machine and dispatcher over replayed steps.

``sloscope slo backtest`` evaluates SLOs at every step over stored data (``slo.evaluator.backtest``);
this replays those evaluations through :func:`alerts.state.step` and the notification policy's
:class:`~alerts.dispatch.Dispatcher`, exactly as :class:`alerts.service.Alerting` does live, but in
memory and without sending anything, so the two produce the same alerts and notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from alerts import state
from alerts.dispatch import Dispatcher, DispatchState
from alerts.model import Notification, Silence
from alerts.policy import Policy
from alerts.service import current_alerts
from slo.evaluator import Backtest


@dataclass(frozen=True)
class AlertChange:
    """An alert changed state at ``at_s``."""

    at_s: int
    alert_id: str
    slo: str
    severity: str
    group: tuple[tuple[str, str], ...]
    from_state: str
    to_state: str


@dataclass
class Replay:
    changes: list[AlertChange] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


def replay(runs: Sequence[Backtest], policy: Policy, silences: Sequence[Silence] = ()) -> Replay:
    """The alert changes and notifications of ``runs`` (backtests of several SLOs over the same
    steps), starting with no alert firing and no incident open."""
    out = Replay()
    if not runs:
        return out
    times = runs[0].times_s
    if any(len(r.times_s) != len(times) or (r.times_s != times).any() for r in runs):
        raise ValueError("the backtests of a replay must share their steps")
    slos = [run.slo for run in runs]
    dispatcher = Dispatcher(policy)
    dispatch = DispatchState()
    records: dict[str, state.AlertRecord] = {}
    for i, t in enumerate(times):
        at = int(t)
        condition = any(r.firing[i] for run in runs for g in run.groups for r in g.rules)
        # Nothing fires, nothing is firing, no incident is open: this step cannot change anything.
        if not condition and not dispatch.incidents and all(r.state != "firing" for r in records.values()):
            continue
        results = [g.instance(run.slo, i) for run in runs for g in run.groups]
        _, transitions = state.step(records, slos, results, at)
        for tr in transitions:
            record = records[tr.alert_id]
            out.changes.append(
                AlertChange(
                    at, tr.alert_id, record.slo, record.severity, record.group, tr.from_state, tr.to_state
                )
            )
        dispatch, sent = dispatcher.step(dispatch, current_alerts(records, slos, results), at, silences)
        out.notifications.extend(sent)
    return out
