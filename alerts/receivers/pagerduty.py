"""PagerDuty Events API v2: one event per alert of the notification.

``dedup_key`` is the alert id (:func:`alerts.model.alert_id`), stable across trigger, repeat and
resolve, so a repeat (a trigger with the same key) adds to the open PagerDuty alert instead of
opening a second incident, and the resolve closes it. For the same reason, a retry of a notification
whose first events already went through is harmless.
"""

from __future__ import annotations

from typing import Any

from alerts.model import Alert, Notification, ReceiverConfig
from alerts.receivers import DEFAULT_TIMEOUT_S
from alerts.receivers import content as c
from alerts.receivers.transport import post_json, require_url
from alerts.redact import receiver_secrets

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"

#: PagerDuty's limit on ``payload.summary``.
MAX_SUMMARY = 1024
_PD_SEVERITIES = ("critical", "error", "warning", "info")
_SEVERITY = {"page": "critical", "ticket": "warning"}


def pd_severity(severity: str) -> str:
    """page -> critical, ticket -> warning; PagerDuty's own names pass through; anything else is
    ``error`` (PagerDuty refuses unknown severities)."""
    if severity in _SEVERITY:
        return _SEVERITY[severity]
    return severity if severity in _PD_SEVERITIES else "error"


def custom_details(notification: Notification, alert: Alert) -> dict[str, Any]:
    """Everything the responder needs, as structured JSON (PagerDuty shows it as a table)."""
    ann = alert.annotation_map
    details: dict[str, Any] = {
        "slo": alert.slo,
        "slo_instance": c.instance(alert),
        "service": alert.service,
        "severity": alert.severity,
        "state": alert.state,
        "objective": c.objective_text(alert),
        "burn_rates": c.burn_rates(alert),
        "burn_rate_threshold": alert.pair.factor if alert.pair else None,
        "error_budget_remaining": c.percent(alert.error_budget_remaining),
        "firing_since": c.rfc3339(alert.firing_since_s) if alert.firing_since_s is not None else None,
        "labels": c.labels(alert),
        "incident_id": notification.incident_id,
        "incident_url": notification.incident_url,
        "runbook_url": ann.get("runbook_url", ""),
        "dashboard_url": ann.get("dashboard_url", ""),
        "attribution": c.attribution_data(notification.attribution),
    }
    if alert.state == "resolved" and alert.resolved_at_s is not None:
        details["resolved_at"] = c.rfc3339(alert.resolved_at_s)
    return details


def event(routing_key: str, notification: Notification, alert: Alert) -> dict[str, Any]:
    """The Events API v2 event for one alert. A resolve carries the payload too (as Alertmanager
    sends it): PagerDuty ignores it, and a log of the raw events stays self-explanatory."""
    summary = c.alert_headline(alert, notification.kind)
    summary = f"[{alert.severity.upper()}] {summary}"
    starts = alert.firing_since_s if alert.firing_since_s is not None else notification.at_s
    links = [{"href": link.url, "text": link.text} for link in c.links(notification, alert)]
    return {
        "routing_key": routing_key,
        "event_action": "resolve" if alert.state == "resolved" else "trigger",
        "dedup_key": alert.id,
        "payload": {
            "summary": summary[:MAX_SUMMARY],
            "source": alert.service,
            "severity": pd_severity(alert.severity),
            "timestamp": c.rfc3339(starts),
            "component": alert.service,
            "group": alert.slo,
            "class": "slo_burn_rate",
            "custom_details": custom_details(notification, alert),
        },
        "links": links,
        "client": "sloscope",
        "client_url": notification.incident_url or c.external_url(notification),
    }


class PagerDutyReceiver:
    """Sends Events API v2 events to ``url`` (default PagerDuty's) with ``routing_key``."""

    kind = "pagerduty"

    def __init__(self, config: ReceiverConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = config.name
        self.secrets = receiver_secrets(config)
        self.url = require_url(config, default=DEFAULT_URL)
        self.routing_key = config.setting_map.get("routing_key", "").strip()
        if not self.routing_key:
            raise ValueError(f"receiver {config.name!r} (pagerduty): setting 'routing_key' is required")
        self.timeout_s = timeout_s

    def events(self, notification: Notification) -> list[dict[str, Any]]:
        return [event(self.routing_key, notification, a) for a in notification.alerts]

    def send(self, notification: Notification) -> None:
        """One POST per alert, in order; the first failure stops the rest and is raised (a retry
        resends the ones already accepted, which ``dedup_key`` makes harmless)."""
        for body in self.events(notification):
            post_json(self.url, body, timeout_s=self.timeout_s)
