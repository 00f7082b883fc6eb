"""The alerting data model: alerts of SLO burn-rate rules, the incidents that group them, and the
notifications sent for incidents.

Plain frozen data shared by the state machine (``alerts/state.py``), the notification policy and its
dispatcher (``alerts/policy.py``, ``alerts/dispatch.py``), burn attribution (``alerts/attribution.py``)
and the receivers (``alerts/receivers/``). Times are unix seconds (whole minutes: the evaluator's
clock).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

AlertState = Literal["inactive", "firing", "resolved"]
NotificationKind = Literal["trigger", "repeat", "resolve"]


def alert_id(slo: str, severity: str, group: Mapping[str, str]) -> str:
    """The stable identity of an alert: one per (SLO, severity, group labels). Also PagerDuty's
    ``dedup_key``, so a repeat never opens a second PagerDuty incident."""
    text = json.dumps([slo, severity, sorted(group.items())], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


#: The label naming one SLO instance: what "the same SLO" means to inhibition and grouping.
SLO_INSTANCE_LABEL = "slo_instance"


def slo_instance(slo: str, group: tuple[tuple[str, str], ...] | Mapping[str, str] = ()) -> str:
    """``checkout`` for an SLO without group labels, ``checkout{region="eu"}`` with them (in the
    SLO's group_by order, values quoted as in PromQL): the ``slo_instance`` label of its alerts."""
    items = list(group.items()) if isinstance(group, Mapping) else list(group)
    if not items:
        return slo
    inner = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in items)
    return f"{slo}{{{inner}}}"


@dataclass(frozen=True)
class FiringPair:
    """The burn-rate pair that made an alert fire (the one with the highest short-window burn)."""

    long: str  # '1h'
    short: str  # '5m'
    factor: float
    long_burn_rate: float | None
    short_burn_rate: float | None


@dataclass(frozen=True)
class Alert:
    """One alert at one evaluation: its identity, labels and current state.

    ``labels`` hold ``alertname`` (``SLOBurnRate``), ``slo``, ``service``, ``severity``,
    ``slo_instance`` (:func:`slo_instance`: the SLO and its group labels, one value per SLO series),
    the SLO's own labels and its group labels: what routes, groupings, inhibitions and silences match
    on, and what every receiver sends. Alerts built elsewhere without ``slo_instance`` (tests, payloads
    stored by older versions) get it from :func:`alerts.silences.alert_labels`, which the policy and
    the receivers read labels through.
    """

    id: str
    slo: str
    service: str
    severity: str
    group: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    state: AlertState
    #: When it started firing (the current or last firing spell); None if it never fired.
    firing_since_s: int | None = None
    #: When it resolved (``state == "resolved"``).
    resolved_at_s: int | None = None
    #: Annotations of the SLO: runbook_url, dashboard_url, summary, ...
    annotations: tuple[tuple[str, str], ...] = ()
    objective: float = 0.0
    error_budget_remaining: float | None = None
    pair: FiringPair | None = None

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def annotation_map(self) -> dict[str, str]:
        return dict(self.annotations)


@dataclass(frozen=True)
class Transition:
    """An alert changed state at ``at_s`` (inactive -> firing, firing -> resolved, resolved -> firing)."""

    alert_id: str
    at_s: int
    from_state: AlertState
    to_state: AlertState


@dataclass(frozen=True)
class Contributor:
    """Part of the SLO's traffic and how many of its bad events fell in the short window."""

    operation: str
    bad: float
    total: float
    http_route: str = ""
    service_version: str = ""
    group: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExampleTrace:
    """A failing request: its trace id and its error log lines."""

    trace_id: str
    operation: str
    logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attribution:
    """What burned the budget in the short window: top contributors and example failing traces."""

    contributors: tuple[Contributor, ...] = ()
    examples: tuple[ExampleTrace, ...] = ()
    #: The SLO instance's bad and total events in the window (what the contributors are shares of).
    bad: float = 0.0
    total: float = 0.0
    #: Contributors with bad events left out of ``contributors`` by its limit.
    omitted: int = 0


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about one incident."""

    id: str  # deterministic: incident, receiver, kind and time; the idempotency key of a delivery
    receiver: str
    kind: NotificationKind
    incident_id: str
    at_s: int
    #: The group labels of the incident (the route's group_by values).
    group_labels: tuple[tuple[str, str], ...]
    #: The incident's alerts: firing ones, and on a resolve the resolved ones. With the receiver's
    #: ``send_resolved`` every notification also carries the alerts resolved since the previous one
    #: (Alertmanager's webhook shape). A ``trigger`` is the first message of an incident and also an
    #: update when its set of firing alerts changed; a ``repeat`` re-sends an unchanged set.
    alerts: tuple[Alert, ...]
    #: Link to the incident page (``{external_url}/incidents/{incident_id}``).
    incident_url: str = ""
    attribution: Attribution = field(default_factory=Attribution)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.state == "firing")


ReceiverKind = Literal["webhook", "alertmanager", "pagerduty", "slack", "email"]


@dataclass(frozen=True)
class ReceiverConfig:
    """A receiver of the notification policy, its secrets already read from the environment or files.

    ``settings`` per kind (all strings): webhook ``url``; alertmanager ``url`` (the base URL, alerts go
    to ``{url}/api/v2/alerts``); pagerduty ``routing_key`` and ``url`` (default the Events API v2
    endpoint); slack ``url`` (an incoming webhook); email ``to`` (comma-separated), ``from``,
    ``smarthost`` (host:port) and optionally ``username``, ``password``, ``starttls`` ("true"/"false").
    """

    name: str
    kind: ReceiverKind
    settings: tuple[tuple[str, str], ...] = ()
    #: Send ``resolve`` notifications (and resolved alerts in updates): Alertmanager's per-receiver
    #: ``send_resolved``; true by default for every kind here (Alertmanager: false for Slack and email).
    send_resolved: bool = True

    @property
    def setting_map(self) -> dict[str, str]:
        return dict(self.settings)


MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True)
class Matcher:
    """An Alertmanager label matcher: ``severity = page``, ``service =~ "pay.*"`` (regexes anchored)."""

    label: str
    op: MatchOp
    value: str


@dataclass(frozen=True)
class Silence:
    """Alerts matching every matcher are not notified between ``starts_at_s`` and ``ends_at_s``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at_s: int
    ends_at_s: int
    created_by: str = ""
    comment: str = ""
