"""The dispatcher: alerts -> incidents -> notifications, with Alertmanager's semantics, as a pure step.

:meth:`Dispatcher.step` takes the previous :class:`DispatchState`, the alerts of one evaluation
(firing and resolved; inactive ones may be left out), the evaluation time, the silences and the
acknowledged incident ids, and returns the next state and the notifications to send. It reads no
clock and keeps nothing between calls, so live alerting, ``sloscope slo backtest`` and a restarted
server make the same decisions; the state is JSON (:meth:`DispatchState.to_json`) and lives in
ClickHouse between evaluations.

How a step works (``docs/alerting.md`` has the long version):

1. Each alert is routed through the route tree (:meth:`alerts.policy.Route.match`) and lands in the
   aggregation group of (route, group labels): an incident. A firing alert with no open incident
   opens one; a resolved alert never does. An alert an open incident holds that is missing from the
   input counts as resolved now (Alertmanager resolves alerts that stop being sent).
2. Every incident whose timer is due flushes: its alerts minus the silenced and inhibited ones are
   compared with what its receiver was last told (Alertmanager's notification log), which decides
   between nothing, a ``trigger`` (new or changed set of firing alerts), a ``repeat`` (unchanged,
   ``repeat_interval`` since the last one, not acknowledged) and a ``resolve`` (nothing firing).
   The first flush is ``group_wait`` after the incident opened (under a minute: at once, since
   alerts arrive once a minute, all together), later ones every ``group_interval``.
3. After a flush the resolved alerts leave the incident; an incident with none left is closed. An
   alert firing again later opens a new incident, whose first notification waits at least
   ``group_interval`` after the last one of the closed incident, so input that flaps every minute
   gets at most one notification per ``group_interval``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from alerts.links import resolve_all
from alerts.model import Alert, FiringPair, Notification, NotificationKind, Silence
from alerts.policy import InhibitRule, Policy, Route
from alerts.silences import alert_labels, matches_all, silenced_by
from slo.model import MINUTE_S

Labels = tuple[tuple[str, str], ...]
STATE_VERSION = 1


def _digest(*parts: object) -> str:
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def group_key(route_key: str, group_labels: Labels) -> str:
    """The aggregation group of an alert: its route and its group labels."""
    return json.dumps([route_key, [list(p) for p in group_labels]], separators=(",", ":"), ensure_ascii=False)


def incident_id(receiver: str | None, route_key: str, group_labels: Labels, opened_s: int) -> str:
    """Deterministic: the receiver, the route, the group labels and the time the incident opened."""
    return _digest("incident", receiver or "", route_key, [list(p) for p in group_labels], opened_s)


def notification_id(incident: str, receiver: str, kind: str, at_s: int) -> str:
    """Deterministic, so a delivery retried after a crash carries the same idempotency key."""
    return _digest("notification", incident, receiver, kind, at_s)


# -- state -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationRecord:
    """A notification an incident produced, for its page: what was sent to whom, when."""

    id: str
    kind: NotificationKind
    receiver: str
    at_s: int
    #: The alerts it carried (firing, and resolved ones with send_resolved).
    alert_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incident:
    """An aggregation group: the alerts of one route with the same group labels, from the first
    firing alert until the flush after the last one resolved."""

    id: str
    #: :func:`group_key` of the route and group labels.
    key: str
    route: str
    #: None in a policy without receivers: the incident is recorded, nothing is sent.
    receiver: str | None
    group_labels: Labels
    opened_s: int
    closed_s: int | None = None
    #: When the next flush is due (group_wait after opening, then every group_interval).
    next_flush_s: int = 0
    #: Ids of the alerts in the group now (resolved ones leave at the next flush).
    members: tuple[str, ...] = ()
    #: The latest state of every alert that was ever part of the incident, members or not.
    alerts: tuple[Alert, ...] = ()
    #: What the receiver was last told (Alertmanager's notification log entry): None before the
    #: first flush that had something to say.
    notified_firing: tuple[str, ...] | None = None
    notified_resolved: tuple[str, ...] = ()
    notified_at_s: int | None = None
    notifications: tuple[NotificationRecord, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.closed_s is None

    @property
    def firing(self) -> tuple[Alert, ...]:
        """The member alerts that are firing."""
        members = set(self.members)
        return tuple(a for a in self.alerts if a.id in members and a.state == "firing")

    def summary(self) -> dict[str, Any]:
        """The row ``alerts.store.save_incidents`` stores."""
        return {
            "id": self.id,
            "receiver": self.receiver or "",
            "group_labels": dict(self.group_labels),
            "status": "open" if self.is_open else "resolved",
            "opened_at_s": self.opened_s,
            "closed_at_s": self.closed_s,
            "alert_ids": [a.id for a in self.alerts],
            "slos": sorted({a.slo for a in self.alerts}),
            "services": sorted({a.service for a in self.alerts}),
            "severities": sorted({a.severity for a in self.alerts}),
        }


@dataclass(frozen=True)
class DispatchState:
    """What the dispatcher carries from one evaluation to the next."""

    #: The time of the step that made this state (None before the first).
    at_s: int | None = None
    #: Open incidents, ordered by opening time and key.
    incidents: tuple[Incident, ...] = ()
    #: Incidents that closed in the step that made this state: the caller records them, the next
    #: step drops them.
    closed: tuple[Incident, ...] = ()
    #: Group key -> the time before which a new incident of that group may not notify (the last
    #: notification of its closed predecessor plus group_interval); dropped once past.
    holds: tuple[tuple[str, int], ...] = ()

    def incident(self, incident_id: str) -> Incident | None:
        """An open incident, or one that closed in the last step."""
        return next((i for i in (*self.incidents, *self.closed) if i.id == incident_id), None)

    def to_json(self) -> str:
        """Compact JSON, sorted keys: the same state always gives the same text."""
        return json.dumps(
            {
                "version": STATE_VERSION,
                "at_s": self.at_s,
                "incidents": [_incident_json(i) for i in self.incidents],
                "closed": [_incident_json(i) for i in self.closed],
                "holds": [list(h) for h in self.holds],
            },
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> DispatchState:
        """The state :meth:`to_json` wrote; ValueError for anything else."""
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown dispatch state version {data.get('version')!r}")
            return cls(
                at_s=data["at_s"],
                incidents=tuple(_incident_from(i) for i in data["incidents"]),
                closed=tuple(_incident_from(i) for i in data["closed"]),
                holds=tuple((str(k), int(t)) for k, t in data["holds"]),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a dispatch state: {exc!r}") from None


def _labels(pairs: Any) -> Labels:
    return tuple((str(k), str(v)) for k, v in pairs)


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as JSON-ready data (see :func:`alert_from_json`)."""
    pair = alert.pair
    return {
        "id": alert.id,
        "slo": alert.slo,
        "service": alert.service,
        "severity": alert.severity,
        "group": [list(p) for p in alert.group],
        "labels": [list(p) for p in alert.labels],
        "state": alert.state,
        "firing_since_s": alert.firing_since_s,
        "resolved_at_s": alert.resolved_at_s,
        "annotations": [list(p) for p in alert.annotations],
        "objective": alert.objective,
        "error_budget_remaining": alert.error_budget_remaining,
        "pair": None
        if pair is None
        else {
            "long": pair.long,
            "short": pair.short,
            "factor": pair.factor,
            "long_burn_rate": pair.long_burn_rate,
            "short_burn_rate": pair.short_burn_rate,
        },
    }


def alert_from_json(data: Mapping[str, Any]) -> Alert:
    """The alert :func:`alert_json` wrote."""
    pair = data["pair"]
    return Alert(
        id=data["id"],
        slo=data["slo"],
        service=data["service"],
        severity=data["severity"],
        group=_labels(data["group"]),
        labels=_labels(data["labels"]),
        state=data["state"],
        firing_since_s=data["firing_since_s"],
        resolved_at_s=data["resolved_at_s"],
        annotations=_labels(data["annotations"]),
        objective=data["objective"],
        error_budget_remaining=data["error_budget_remaining"],
        pair=None if pair is None else FiringPair(**pair),
    )


def _incident_json(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "key": incident.key,
        "route": incident.route,
        "receiver": incident.receiver,
        "group_labels": [list(p) for p in incident.group_labels],
        "opened_s": incident.opened_s,
        "closed_s": incident.closed_s,
        "next_flush_s": incident.next_flush_s,
        "members": list(incident.members),
        "alerts": [alert_json(a) for a in incident.alerts],
        "notified_firing": None if incident.notified_firing is None else list(incident.notified_firing),
        "notified_resolved": list(incident.notified_resolved),
        "notified_at_s": incident.notified_at_s,
        "notifications": [
            {
                "id": n.id,
                "kind": n.kind,
                "receiver": n.receiver,
                "at_s": n.at_s,
                "alert_ids": list(n.alert_ids),
            }
            for n in incident.notifications
        ],
    }


def _incident_from(data: Mapping[str, Any]) -> Incident:
    firing = data["notified_firing"]
    return Incident(
        id=data["id"],
        key=data["key"],
        route=data["route"],
        receiver=data["receiver"],
        group_labels=_labels(data["group_labels"]),
        opened_s=data["opened_s"],
        closed_s=data["closed_s"],
        next_flush_s=data["next_flush_s"],
        members=tuple(data["members"]),
        alerts=tuple(alert_from_json(a) for a in data["alerts"]),
        notified_firing=None if firing is None else tuple(firing),
        notified_resolved=tuple(data["notified_resolved"]),
        notified_at_s=data["notified_at_s"],
        notifications=tuple(
            NotificationRecord(n["id"], n["kind"], n["receiver"], n["at_s"], tuple(n["alert_ids"]))
            for n in data["notifications"]
        ),
    )


# -- inhibition --------------------------------------------------------------------------------


def inhibited(
    rules: Sequence[InhibitRule], target: Mapping[str, str], sources: Sequence[Mapping[str, str]]
) -> bool:
    """Whether an alert with labels ``target`` is muted by one of the firing ``sources`` (labels of
    every firing alert, silenced or not, routed anywhere or nowhere: Alertmanager's inhibitor).

    When the target matches a rule's source side too, sources that also match its target side are
    skipped, so two alerts matching both sides cannot mute each other (nor one itself)."""
    for rule in rules:
        if not matches_all(rule.target_matchers, target):
            continue
        two_sided = matches_all(rule.source_matchers, target)
        for source in sources:
            if not matches_all(rule.source_matchers, source):
                continue
            if two_sided and matches_all(rule.target_matchers, source):
                continue
            if all(source.get(label, "") == target.get(label, "") for label in rule.equal):
                return True
    return False


# -- the dispatcher ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dispatcher:
    """The notification policy applied step by step; holds nothing but the policy."""

    policy: Policy
    _routes: dict[str, Route] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_routes", {r.key: r for r in self.policy.route.walk()})

    def step(
        self,
        state: DispatchState,
        alerts: Sequence[Alert],
        at_s: int,
        silences: Sequence[Silence] = (),
        acked: Collection[str] = (),
    ) -> tuple[DispatchState, list[Notification]]:
        """The state after the evaluation at ``at_s`` and the notifications it sends.

        ``at_s`` must not go back in time; the same ``at_s`` again (a restart that re-runs the last
        evaluation) sends nothing new. Notifications come ordered by incident opening time, then
        group key."""
        if state.at_s is not None and at_s < state.at_s:
            raise ValueError(f"dispatch step at {at_s} is before the last step at {state.at_s}")
        current: dict[str, Alert] = {}
        for alert in alerts:
            if alert.id in current:
                raise ValueError(f"alert {alert.id} ({alert.slo} {alert.severity}) is given twice")
            if alert.state != "inactive":
                current[alert.id] = alert
        labels = {a.id: alert_labels(a) for a in current.values()}
        routed: dict[str, tuple[Route, Labels, dict[str, Alert]]] = {}
        for alert_id in sorted(current):
            for route in self.policy.route.match(labels[alert_id]):
                group = route.group_labels(labels[alert_id])
                key = group_key(route.key, group)
                routed.setdefault(key, (route, group, {}))[2][alert_id] = current[alert_id]

        incidents = [self._update(i, routed.get(i.key, (None, (), {}))[2], at_s) for i in state.incidents]
        holds = {k: t for k, t in state.holds if t > at_s}
        open_keys = {i.key for i in incidents}
        for key, (route, group, found) in sorted(routed.items()):
            if key in open_keys or not any(a.state == "firing" for a in found.values()):
                continue  # a resolved alert never opens an incident
            incidents.append(self._open(key, route, group, found, at_s, holds.get(key)))
        incidents.sort(key=lambda i: (i.opened_s, i.key))

        sources = [labels[a.id] for a in current.values() if a.state == "firing"]

        def muted(alert: Alert) -> bool:
            own = labels.get(alert.id) or alert_labels(alert)
            return bool(silenced_by(own, silences, at_s)) or inhibited(
                self.policy.inhibit_rules, own, sources
            )

        still_open: list[Incident] = []
        closed: list[Incident] = []
        sent: list[Notification] = []
        for incident in incidents:
            if incident.next_flush_s <= at_s:
                incident, notification = self._flush(incident, at_s, muted, incident.id in acked)
                if notification is not None:
                    sent.append(notification)
            if incident.is_open:
                still_open.append(incident)
                continue
            closed.append(incident)
            if incident.notifications:
                last = incident.notifications[-1].at_s
                holds[incident.key] = last + self._route(incident).group_interval_s
        holds = {k: t for k, t in holds.items() if t > at_s}
        return (
            DispatchState(
                at_s=at_s,
                incidents=tuple(still_open),
                closed=tuple(closed),
                holds=tuple(sorted(holds.items())),
            ),
            sent,
        )

    def _route(self, incident: Incident) -> Route:
        # An incident whose route left the policy (edited and reloaded) is wound down with the
        # root's timings: its alerts no longer reach it, so they count as resolved.
        return self._routes.get(incident.route, self.policy.route)

    def _open(
        self, key: str, route: Route, group: Labels, found: dict[str, Alert], at_s: int, hold: int | None
    ) -> Incident:
        firing = sorted(a for a, alert in found.items() if alert.state == "firing")
        # Under a minute of group_wait has nothing to wait for: alerts arrive once a minute.
        due = at_s + route.group_wait_s if route.group_wait_s >= MINUTE_S else at_s
        if hold is not None:
            due = max(due, hold)
        return Incident(
            id=incident_id(route.receiver, route.key, group, at_s),
            key=key,
            route=route.key,
            receiver=route.receiver,
            group_labels=group,
            opened_s=at_s,
            next_flush_s=due,
            members=tuple(firing),
            alerts=tuple(_sorted(found[a] for a in firing)),
        )

    def _update(self, incident: Incident, found: dict[str, Alert], at_s: int) -> Incident:
        """The incident with this evaluation's alerts: members updated (missing ones resolved now),
        newly firing alerts joined."""
        snapshots = {a.id: a for a in incident.alerts}
        members = list(incident.members)
        for alert_id in members:
            if alert_id in found:
                snapshots[alert_id] = found[alert_id]
            elif snapshots[alert_id].state == "firing":
                snapshots[alert_id] = replace(snapshots[alert_id], state="resolved", resolved_at_s=at_s)
        for alert_id, alert in sorted(found.items()):
            # A resolved alert that is not a member was already flushed (or never fired here).
            if alert_id not in members and alert.state == "firing":
                members.append(alert_id)
                snapshots[alert_id] = alert
        return replace(incident, members=tuple(sorted(members)), alerts=tuple(_sorted(snapshots.values())))

    def _flush(
        self, incident: Incident, at_s: int, muted: Callable[[Alert], bool], acked: bool
    ) -> tuple[Incident, Notification | None]:
        """Alertmanager's flush: the notify pipeline (inhibit, silence, dedup against the last
        notification), then the resolved alerts leave the group."""
        route = self._route(incident)
        receiver = self.policy.receiver(incident.receiver)
        send_resolved = receiver.send_resolved if receiver else True
        snapshots = {a.id: a for a in incident.alerts}
        group = [snapshots[a] for a in incident.members]
        notifiable = [a for a in group if not muted(a)]
        firing = {a.id for a in notifiable if a.state == "firing"}
        resolved = {a.id for a in notifiable if a.state == "resolved"}
        told = None if incident.notified_firing is None else set(incident.notified_firing)

        # Alertmanager's DedupStage.needsUpdate, plus acknowledgements, which stop repeats only.
        changed = True
        if told is None:
            needed = bool(firing)  # never notified: only if something fires (not for resolved-only)
        elif not firing <= told:
            needed = True
        elif not firing:
            needed = bool(told)  # all resolved (or muted): tell whoever was told it fires
        elif send_resolved and not resolved <= set(incident.notified_resolved):
            needed = True
        else:
            changed = False
            last = incident.notified_at_s if incident.notified_at_s is not None else incident.opened_s
            needed = not acked and at_s - last >= route.repeat_interval_s

        notification = None
        if needed:
            kind = cast(NotificationKind, "resolve" if not firing else "trigger" if changed else "repeat")
            carried = _sorted(a for a in notifiable if a.state == "firing" or send_resolved)
            records = incident.notifications
            if receiver is not None and carried:
                notification = Notification(
                    id=notification_id(incident.id, receiver.name, kind, at_s),
                    receiver=receiver.name,
                    kind=kind,
                    incident_id=incident.id,
                    at_s=at_s,
                    group_labels=incident.group_labels,
                    # Receivers are elsewhere: relative runbook and dashboard links get the
                    # server's external address (alerts/links.py).
                    alerts=resolve_all(carried, self.policy.external_url),
                    incident_url=self.policy.incident_url(incident.id),
                )
                record = NotificationRecord(
                    notification.id, kind, receiver.name, at_s, tuple(a.id for a in carried)
                )
                records = (*records, record)
            # The log is written even when nothing was sent (send_resolved off, no receiver), as
            # Alertmanager's SetNotifiesStage does, so the next flush compares with it.
            incident = replace(
                incident,
                notified_firing=tuple(sorted(firing)),
                notified_resolved=tuple(sorted(resolved)),
                notified_at_s=at_s,
                notifications=records,
            )
        members = tuple(a.id for a in group if a.state == "firing")
        return (
            replace(
                incident,
                members=members,
                next_flush_s=at_s + route.group_interval_s,
                closed_s=None if members else at_s,
            ),
            notification,
        )


def _sorted(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (a.slo, a.severity, a.group, a.id))
