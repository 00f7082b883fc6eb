"""What every receiver says about a notification, computed once: headline, facts, links, attribution.

Each receiver lays these out in its own format (JSON annotations, PagerDuty details, Slack blocks,
an email), so all of them carry the same SLO name, service, severity, objective, burn rates, budget,
runbook, dashboard and incident links and the same attribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from alerts.model import SLO_INSTANCE_LABEL, Alert, Attribution, Contributor, ExampleTrace, Notification
from alerts.silences import alert_labels

#: Alertmanager's ``endsAt`` for an alert that has not ended (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"

#: Contributors and example traces a message shows; more is noise to the person paged.
MAX_CONTRIBUTORS = 5
MAX_EXAMPLES = 3
MAX_LOG_LINES = 3

_SEVERITY_RANK = {"page": 0, "ticket": 1}
_SPEED = {"page": "burning fast", "ticket": "burning slowly"}


def rfc3339(unix_s: int | float) -> str:
    """``2024-05-01T12:00:00Z``: RFC 3339 in UTC, whole seconds (the evaluator's clock is minutes)."""
    return datetime.fromtimestamp(int(unix_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(notification: Notification) -> str:
    """``firing`` while any alert fires, else ``resolved``: Alertmanager's group status."""
    return "firing" if notification.firing else "resolved"


def is_resolved(notification: Notification) -> bool:
    return status(notification) == "resolved"


def lead_alert(notification: Notification) -> Alert:
    """The alert a headline is about: firing before resolved, page before ticket, fastest burn first."""
    if not notification.alerts:
        raise ValueError(f"notification {notification.id!r} has no alerts")

    def key(a: Alert) -> tuple[int, int, float]:
        return (
            0 if a.state == "firing" else 1,
            _SEVERITY_RANK.get(a.severity, 2),
            -(headline_burn(a) or 0.0),
        )

    return min(notification.alerts, key=key)


def headline_burn(alert: Alert) -> float | None:
    """The burn rate a headline quotes: the firing pair's long window (what has been sustained),
    else its short window."""
    if alert.pair is None:
        return None
    return alert.pair.long_burn_rate if alert.pair.long_burn_rate is not None else alert.pair.short_burn_rate


def alert_headline(alert: Alert, kind: str = "trigger") -> str:
    """``checkout SLO burning fast (14.9x)``, ``checkout SLO still burning fast (14.9x)`` on a repeat,
    ``checkout SLO no longer burning (resolved)`` once resolved. A no-data alert (SLONoData):
    ``checkout SLO has no data``, ``... still has no data``, ``... has data again (resolved)``."""
    if alert.label_map.get("alertname") == "SLONoData":
        if alert.state == "resolved":
            return f"{alert.slo} SLO has data again (resolved)"
        return f"{alert.slo} SLO {'still ' if kind == 'repeat' else ''}has no data"
    if alert.state == "resolved":
        return f"{alert.slo} SLO no longer burning (resolved)"
    speed = _SPEED.get(alert.severity, "burning")
    if kind == "repeat":
        speed = "still " + speed
    burn = headline_burn(alert)
    return f"{alert.slo} SLO {speed}" + (f" ({burn:.1f}x)" if burn is not None else "")


def headline(notification: Notification) -> str:
    """The lead alert's headline, with ``+N more`` when the incident holds several alerts."""
    text = alert_headline(lead_alert(notification), notification.kind)
    others = len(notification.alerts) - 1
    if others:
        text += f" (+{others} more alert{'s' if others > 1 else ''})"
    return text


def tag(notification: Notification) -> str:
    """``[PAGE]``, ``[TICKET]``; ``[RESOLVED] [PAGE]`` on a resolve."""
    severity = f"[{lead_alert(notification).severity.upper()}]"
    return f"[RESOLVED] {severity}" if is_resolved(notification) else severity


def title(notification: Notification) -> str:
    """The one-line summary: ``[PAGE] checkout SLO burning fast (14.9x)`` (the email subject)."""
    return f"{tag(notification)} {headline(notification)}"


def percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def objective_text(alert: Alert) -> str:
    """``99.9%``. The SLO spec and ``/api/v1/slos`` state objectives in percent (99.9); a value of at
    most 1 is read as a ratio (0.999), since no real objective is below 1%."""
    value = alert.objective * 100 if 0 < alert.objective <= 1 else alert.objective
    return f"{round(value, 6):g}%"


def objective_ratio(alert: Alert) -> float:
    return alert.objective if 0 < alert.objective <= 1 else alert.objective / 100


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def burn_rates(alert: Alert) -> dict[str, float | None]:
    """``{"1h": 14.9, "5m": 20.3}``: the firing pair's windows and their burn rates."""
    if alert.pair is None:
        return {}
    return {alert.pair.long: alert.pair.long_burn_rate, alert.pair.short: alert.pair.short_burn_rate}


def burn_text(alert: Alert) -> str:
    """``14.90x over 1h, 20.30x over 5m (threshold 14.4x)``."""
    if alert.pair is None:
        return "n/a"
    p = alert.pair
    return f"{rate(p.long_burn_rate)} over {p.long}, {rate(p.short_burn_rate)} over {p.short} (threshold {p.factor:g}x)"


def labels(alert: Alert) -> dict[str, str]:
    """The labels a payload carries: the alert's, with ``slo_instance`` even on an alert built
    without it (the policy matches on the same set)."""
    return alert_labels(alert)


def instance(alert: Alert) -> str:
    """The alert's SLO instance: ``checkout``, or ``checkout{region="eu"}`` for one series of a
    grouped SLO (the ``slo_instance`` label)."""
    return labels(alert)[SLO_INSTANCE_LABEL]


def facts(alert: Alert) -> list[tuple[str, str]]:
    """The labelled facts every message shows for an alert. The SLO instance is shown even when it is
    just the SLO's name, so every message has the same fields to parse."""
    return [
        ("SLO", alert.slo),
        ("SLO instance", instance(alert)),
        ("Service", alert.service),
        ("Severity", alert.severity),
        ("Objective", objective_text(alert)),
        ("Burn rate", burn_text(alert)),
        ("Error budget remaining", percent(alert.error_budget_remaining)),
    ]


def external_url(notification: Notification) -> str:
    """sloscope's external URL: the incident URL without its ``/incidents/{id}`` tail."""
    url = notification.incident_url
    tail = f"/incidents/{notification.incident_id}"
    return url[: -len(tail)] if url.endswith(tail) else url.rstrip("/")


def generator_url(notification: Notification, alert: Alert) -> str:
    """Where the alert came from: the SLO in sloscope's API (Alertmanager's ``generatorURL``)."""
    base = external_url(notification)
    return f"{base}/api/v1/slos/{quote(alert.slo, safe='')}" if base else ""


@dataclass(frozen=True)
class Link:
    text: str
    url: str


def links(notification: Notification, alert: Alert | None = None) -> list[Link]:
    """Runbook, dashboard (from the SLO annotations) and incident links, those that exist."""
    lead = alert or lead_alert(notification)
    ann = lead.annotation_map
    candidates = [
        Link("Runbook", ann.get("runbook_url", "")),
        Link("Dashboard", ann.get("dashboard_url", "")),
        Link("Incident", notification.incident_url),
    ]
    return [link for link in candidates if link.url]


def contributor_text(c: Contributor) -> str:
    """``POST /pay (route /pay/{id}, version 1.4.2, region=eu): 120 bad of 4000``."""
    details = [f"route {c.http_route}"] if c.http_route else []
    if c.service_version:
        details.append(f"version {c.service_version}")
    details.extend(f"{k}={v}" for k, v in c.group)
    where = f" ({', '.join(details)})" if details else ""
    return f"{c.operation}{where}: {c.bad:g} bad of {c.total:g}"


def contributors(attribution: Attribution) -> tuple[Contributor, ...]:
    return attribution.contributors[:MAX_CONTRIBUTORS]


def omitted(attribution: Attribution) -> int:
    """Contributors with bad events that a message leaves out (the attribution's and ours)."""
    return attribution.omitted + max(0, len(attribution.contributors) - MAX_CONTRIBUTORS)


def examples(attribution: Attribution) -> tuple[ExampleTrace, ...]:
    return attribution.examples[:MAX_EXAMPLES]


def example_logs(example: ExampleTrace) -> tuple[str, ...]:
    return example.logs[:MAX_LOG_LINES]


def attribution_lines(attribution: Attribution) -> list[str]:
    """Attribution as plain lines: top contributors, then example traces with their error logs."""
    lines: list[str] = []
    if attribution.contributors:
        lines.append("Top contributors (bad events in the short window):")
        lines.extend(f"  - {contributor_text(c)}" for c in contributors(attribution))
        more = omitted(attribution)
        if more:
            lines.append(f"  - and {more} more with bad events")
    if attribution.examples:
        lines.append("Example failing traces:")
        for ex in examples(attribution):
            lines.append(f"  - trace {ex.trace_id} ({ex.operation})")
            lines.extend(f"      {log}" for log in example_logs(ex))
    return lines


def attribution_data(attribution: Attribution) -> dict[str, Any]:
    """Attribution as JSON-ready data (PagerDuty details, webhook annotation)."""
    return {
        "bad": attribution.bad,
        "total": attribution.total,
        "omitted_contributors": omitted(attribution),
        "contributors": [
            {
                "operation": c.operation,
                "bad": c.bad,
                "total": c.total,
                "http_route": c.http_route,
                "service_version": c.service_version,
                "group": dict(c.group),
            }
            for c in contributors(attribution)
        ],
        "examples": [
            {"trace_id": ex.trace_id, "operation": ex.operation, "logs": list(example_logs(ex))}
            for ex in examples(attribution)
        ],
    }


def state_text(notification: Notification, alert: Alert) -> str:
    """``firing since 2024-05-01T12:00:00Z`` or ``resolved at ... (fired since ...)``."""
    since = f" since {rfc3339(alert.firing_since_s)}" if alert.firing_since_s is not None else ""
    if alert.state == "resolved":
        at = f" at {rfc3339(alert.resolved_at_s)}" if alert.resolved_at_s is not None else ""
        return f"RESOLVED{at} (was firing{since})"
    return f"FIRING{since}"


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' label-set fingerprint (FNV-1a 64 over sorted names and values, each followed by
    0xff), as 16 hex digits: the value Alertmanager puts in ``fingerprint``."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def number(value: float) -> str:
    """A float as an annotation string: short, exact enough to compare against a threshold."""
    return f"{value:.6g}"
