"""Alertmanager forwarding: ``POST {url}/api/v2/alerts`` with postable alerts, so an existing
Alertmanager does the routing, grouping and receivers.

Alertmanager resolves an alert by itself once ``endsAt`` passes, and when ``endsAt`` is absent after
its ``resolve_timeout`` (5m by default). sloscope posts only on trigger, repeat and resolve, not every
evaluation as Prometheus does, so a firing alert carries ``endsAt = now + firing_ttl`` (default 24h,
above any sane ``repeat_interval``): long enough not to resolve between repeats, short enough that
an alert left behind by a sloscope that died resolves by itself. A resolve sets ``endsAt`` to the
resolve time.
"""

from __future__ import annotations

import re
from typing import Any

from alerts.model import Alert, Notification, ReceiverConfig
from alerts.receivers import DEFAULT_TIMEOUT_S
from alerts.receivers import content as c
from alerts.receivers.transport import post_json, require_url
from alerts.receivers.webhook import annotations
from alerts.redact import receiver_secrets

DEFAULT_FIRING_TTL_S = 24 * 3600
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(config: ReceiverConfig, key: str, default_s: int) -> int:
    """A setting like ``90s``, ``30m``, ``24h``, ``2d`` or plain seconds; ValueError naming it."""
    text = config.setting_map.get(key, "").strip()
    if not text:
        return default_s
    m = re.fullmatch(r"(\d+)([smhd]?)", text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(
            f"receiver {config.name!r} ({config.kind}): setting {key!r} must be a positive duration "
            f"like 24h, got {text!r}"
        )
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def postable_alert(notification: Notification, alert: Alert, firing_ttl_s: int) -> dict[str, Any]:
    """One ``postableAlert`` of Alertmanager's v2 API."""
    starts = alert.firing_since_s if alert.firing_since_s is not None else notification.at_s
    if alert.state == "resolved":
        ends = alert.resolved_at_s if alert.resolved_at_s is not None else notification.at_s
    else:
        ends = notification.at_s + firing_ttl_s
    return {
        "labels": c.labels(alert),
        "annotations": annotations(notification, alert),
        "startsAt": c.rfc3339(starts),
        "endsAt": c.rfc3339(ends),
        "generatorURL": c.generator_url(notification, alert),
    }


class AlertmanagerReceiver:
    """Forwards the notification's alerts to an Alertmanager (``url`` is its base URL; optional
    ``bearer_token`` and ``firing_ttl`` settings)."""

    kind = "alertmanager"

    def __init__(self, config: ReceiverConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = config.name
        self.secrets = receiver_secrets(config)
        self.url = require_url(config).rstrip("/") + "/api/v2/alerts"
        token = config.setting_map.get("bearer_token", "")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.firing_ttl_s = parse_duration(config, "firing_ttl", DEFAULT_FIRING_TTL_S)
        self.timeout_s = timeout_s

    def payload(self, notification: Notification) -> list[dict[str, Any]]:
        return [postable_alert(notification, a, self.firing_ttl_s) for a in notification.alerts]

    def send(self, notification: Notification) -> None:
        """One POST of every alert of the notification; Alertmanager answers 200 with an empty body."""
        post_json(self.url, self.payload(notification), timeout_s=self.timeout_s, headers=self.headers)
