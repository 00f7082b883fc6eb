"""Generic webhook: the Alertmanager webhook v4 JSON, so existing Alertmanager consumers work unchanged.

sloscope's own data rides in each alert's ``annotations`` (strings, as Alertmanager's are), under
``sloscope_*`` keys so they never collide with the SLO's own annotations, which are passed through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from alerts.model import Alert, Notification, ReceiverConfig
from alerts.receivers import DEFAULT_TIMEOUT_S
from alerts.receivers import content as c
from alerts.receivers.transport import post_json, require_url
from alerts.redact import receiver_secrets


def _label_string(labels: Mapping[str, str]) -> str:
    """Prometheus' label-set syntax, ``{a="1", b="2"}``, as Alertmanager writes group keys."""
    return (
        "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"
    )


def _common(maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The pairs present, with the same value, in every map (``commonLabels``, ``commonAnnotations``)."""
    maps = list(maps)
    if not maps:
        return {}
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in rest)}


def annotations(notification: Notification, alert: Alert) -> dict[str, str]:
    """The SLO's annotations plus sloscope's: ``summary`` (unless the SLO has one), objective, burn
    rates of the firing pair, budget remaining, incident URL and attribution (text and JSON)."""
    out = dict(alert.annotation_map)
    out.setdefault("summary", c.alert_headline(alert, notification.kind))
    # Alertmanager templates conventionally print ``description``: give them every fact in one line.
    out.setdefault("description", "; ".join(f"{k}: {v}" for k, v in c.facts(alert)))
    out["sloscope_objective"] = c.objective_text(alert)
    if alert.pair is not None:
        p = alert.pair
        out["sloscope_burn_windows"] = f"{p.long}/{p.short}"
        out["sloscope_burn_factor"] = c.number(p.factor)
        if p.long_burn_rate is not None:
            out["sloscope_burn_rate_long"] = c.number(p.long_burn_rate)
        if p.short_burn_rate is not None:
            out["sloscope_burn_rate_short"] = c.number(p.short_burn_rate)
    if alert.error_budget_remaining is not None:
        out["sloscope_error_budget_remaining"] = c.number(alert.error_budget_remaining)
    if notification.incident_url:
        out["sloscope_incident_url"] = notification.incident_url
    out["sloscope_incident_id"] = notification.incident_id
    attribution = notification.attribution
    if attribution.contributors or attribution.examples:
        out["sloscope_attribution"] = "\n".join(c.attribution_lines(attribution))
        out["sloscope_attribution_json"] = json.dumps(
            c.attribution_data(attribution), ensure_ascii=False, separators=(",", ":")
        )
    return out


def alert_json(notification: Notification, alert: Alert) -> dict[str, Any]:
    """One alert as Alertmanager's webhook writes it."""
    labels = c.labels(alert)
    starts = alert.firing_since_s if alert.firing_since_s is not None else notification.at_s
    if alert.state == "resolved":
        ends = c.rfc3339(alert.resolved_at_s if alert.resolved_at_s is not None else notification.at_s)
    else:
        ends = c.ZERO_TIME
    return {
        "status": "resolved" if alert.state == "resolved" else "firing",
        "labels": labels,
        "annotations": annotations(notification, alert),
        "startsAt": c.rfc3339(starts),
        "endsAt": ends,
        "generatorURL": c.generator_url(notification, alert),
        "fingerprint": c.fingerprint(labels),
    }


def message(notification: Notification) -> dict[str, Any]:
    """The webhook v4 message for ``notification`` (``template.Data`` plus version, groupKey and
    truncatedAlerts, as Alertmanager's ``notify/webhook`` sends it)."""
    alerts = [alert_json(notification, a) for a in notification.alerts]
    group_labels = dict(notification.group_labels)
    return {
        "receiver": notification.receiver,
        "status": c.status(notification),
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": _common(a["labels"] for a in alerts),
        "commonAnnotations": _common(a["annotations"] for a in alerts),
        "externalURL": c.external_url(notification),
        "version": "4",
        # Alertmanager's is "{route path}:{group labels}"; the incident id stands in for the route path,
        # since it is what identifies the group in sloscope.
        "groupKey": f"{{{notification.incident_id}}}:{_label_string(group_labels)}",
        "truncatedAlerts": 0,
    }


class WebhookReceiver:
    """POSTs the Alertmanager webhook v4 JSON to ``url``; optional ``bearer_token`` setting."""

    kind = "webhook"

    def __init__(self, config: ReceiverConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = config.name
        self.secrets = receiver_secrets(config)
        self.url = require_url(config)
        token = config.setting_map.get("bearer_token", "")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s

    def send(self, notification: Notification) -> None:
        """One POST; :class:`~alerts.receivers.DeliveryError` unless the answer is 2xx."""
        post_json(self.url, message(notification), timeout_s=self.timeout_s, headers=self.headers)
