"""Slack incoming webhook: Block Kit message with a ``text`` fallback (notifications, old clients).

Layout: a header with the headline; per alert a section with its state and fields for SLO,
service, severity, objective, burn rates and budget; a context with the attribution; an actions
block with buttons for runbook, incident and dashboard. Slack's limits (header 150 characters,
text 3000, 10 fields per section, 50 blocks) are respected by truncation.
"""

from __future__ import annotations

from typing import Any

from alerts.model import Alert, Notification, ReceiverConfig
from alerts.receivers import DEFAULT_TIMEOUT_S
from alerts.receivers import content as c
from alerts.receivers.transport import post_json, require_url
from alerts.redact import receiver_secrets

#: Alert sections shown; an incident with more says how many it left out.
MAX_ALERT_SECTIONS = 10
_HEADER_CHARS = 150
_TEXT_CHARS = 3000
_FIELD_CHARS = 2000
_BUTTON_TEXT_CHARS = 75


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only ``&``, ``<`` and ``>`` are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int = _TEXT_CHARS) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def alert_section(notification: Notification, alert: Alert) -> dict[str, Any]:
    ann = alert.annotation_map
    lines = [f"*{escape(c.alert_headline(alert, notification.kind))}*", c.state_text(notification, alert)]
    if ann.get("summary"):
        lines.append(escape(ann["summary"]))
    return {
        "type": "section",
        "text": _mrkdwn("\n".join(lines)),
        "fields": [_mrkdwn(f"*{name}*\n{escape(value)}", _FIELD_CHARS) for name, value in c.facts(alert)],
    }


def attribution_context(notification: Notification) -> dict[str, Any] | None:
    """Top contributors with their bad counts, and example traces with their first error log line."""
    att = notification.attribution
    elements = []
    if att.contributors:
        top = "; ".join(escape(c.contributor_text(x)) for x in c.contributors(att))
        elements.append(_mrkdwn(f"*Top contributors:* {top}"))
    for ex in c.examples(att):
        logs = c.example_logs(ex)
        log = f" — `{escape(logs[0])}`" if logs else ""
        elements.append(_mrkdwn(f"*Trace* `{escape(ex.trace_id)}` ({escape(ex.operation)}){log}"))
    return {"type": "context", "elements": elements} if elements else None


def actions(notification: Notification) -> dict[str, Any] | None:
    buttons = []
    for link in c.links(notification):
        button: dict[str, Any] = {
            "type": "button",
            "text": {"type": "plain_text", "text": _cut(link.text, _BUTTON_TEXT_CHARS)},
            "url": link.url,
            "action_id": f"sloscope_{link.text.lower()}",
        }
        if link.text == "Runbook" and not c.is_resolved(notification):
            button["style"] = "primary"
        buttons.append(button)
    return {"type": "actions", "elements": buttons} if buttons else None


def fallback_text(notification: Notification) -> str:
    """The ``text`` Slack shows in notifications and where blocks cannot render."""
    lead = c.lead_alert(notification)
    parts = [f"{c.tag(notification)} {c.headline(notification)}", f"service {lead.service}"]
    parts.append(f"budget remaining {c.percent(lead.error_budget_remaining)}")
    runbook = lead.annotation_map.get("runbook_url")
    if runbook:
        parts.append(f"runbook <{runbook}>")
    if notification.incident_url:
        parts.append(f"incident <{notification.incident_url}>")
    return escape(parts[0]) + " — " + ", ".join(parts[1:])


def message(notification: Notification) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(f"{c.tag(notification)} {c.headline(notification)}", _HEADER_CHARS),
                "emoji": True,
            },
        }
    ]
    shown = notification.alerts[:MAX_ALERT_SECTIONS]
    blocks.extend(alert_section(notification, a) for a in shown)
    if len(notification.alerts) > len(shown):
        left = len(notification.alerts) - len(shown)
        blocks.append({"type": "section", "text": _mrkdwn(f"… and {left} more alerts on the incident page")})
    for block in (attribution_context(notification), actions(notification)):
        if block is not None:
            blocks.append(block)
    return {"text": fallback_text(notification), "blocks": blocks}


class SlackReceiver:
    """POSTs a Block Kit message to a Slack incoming webhook ``url`` (the URL is the secret)."""

    kind = "slack"

    def __init__(self, config: ReceiverConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = config.name
        self.secrets = receiver_secrets(config)
        self.url = require_url(config)
        self.timeout_s = timeout_s

    def send(self, notification: Notification) -> None:
        """One POST; Slack answers 200 ``ok``, or 4xx with a reason such as ``invalid_payload``."""
        post_json(self.url, message(notification), timeout_s=self.timeout_s)
