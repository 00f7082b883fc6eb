"""Email over SMTP (``smtplib``): a plain-text part and an HTML part with everything escaped.

Settings: ``to`` (comma-separated), ``from``, ``smarthost`` (``host:port``, port 25 by default; port
465 means implicit TLS), optional ``username``/``password`` and ``starttls``. ``starttls`` defaults
to ``true``, as Alertmanager's ``require_tls`` does, so credentials never cross the network in clear
by accident; a relay without TLS needs ``starttls: "false"``.

SMTP's codes mean the opposite of HTTP's: 4xx is transient (retry), 5xx permanent (do not).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formatdate
from html import escape

from alerts.model import Alert, Notification, ReceiverConfig
from alerts.receivers import DEFAULT_TIMEOUT_S, DeliveryError
from alerts.receivers import content as c
from alerts.redact import receiver_secrets

log = logging.getLogger(__name__)

#: RFC 5322's hard line limit rather than the 78 soft one: Python folds a long subject right after
#: ``Subject:``, which some clients show as a leading blank.
_POLICY = default_policy.clone(max_line_length=998)


def _bool(config: ReceiverConfig, key: str, default: bool) -> bool:
    text = config.setting_map.get(key, "").strip().lower()
    if not text:
        return default
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"receiver {config.name!r} (email): setting {key!r} must be true or false, got {text!r}")


def plain_text(notification: Notification) -> str:
    lines = [c.title(notification), ""]
    if c.is_resolved(notification):
        lines += ["This incident is RESOLVED: no alert of it is firing any more.", ""]
    for alert in notification.alerts:
        lines.append(f"{c.alert_headline(alert, notification.kind)} — {c.state_text(notification, alert)}")
        lines += [f"  {name}: {value}" for name, value in c.facts(alert)]
        summary = alert.annotation_map.get("summary")
        if summary:
            lines.append(f"  Summary: {summary}")
        lines += [
            f"  {link.text}: {link.url}" for link in c.links(notification, alert) if link.text != "Incident"
        ]
        lines.append("")
    if notification.incident_url:
        lines += [f"Incident: {notification.incident_url}", ""]
    attribution = c.attribution_lines(notification.attribution)
    if attribution:
        lines += [*attribution, ""]
    return "\n".join(lines)


def _alert_html(notification: Notification, alert: Alert) -> str:
    rows = "".join(
        f"<tr><th align='left'>{escape(name)}</th><td>{escape(value)}</td></tr>"
        for name, value in c.facts(alert)
    )
    summary = alert.annotation_map.get("summary")
    links = " | ".join(
        f"<a href='{escape(link.url)}'>{escape(link.text)}</a>"
        for link in c.links(notification, alert)
        if link.text != "Incident"
    )
    return (
        f"<h3>{escape(c.alert_headline(alert, notification.kind))}</h3>"
        f"<p>{escape(c.state_text(notification, alert))}</p>"
        + (f"<p>{escape(summary)}</p>" if summary else "")
        + f"<table>{rows}</table>"
        + (f"<p>{links}</p>" if links else "")
    )


def _attribution_html(notification: Notification) -> str:
    att = notification.attribution
    out = []
    if att.contributors:
        items = "".join(f"<li>{escape(c.contributor_text(x))}</li>" for x in c.contributors(att))
        out.append(f"<h3>Top contributors (bad events in the short window)</h3><ul>{items}</ul>")
    if att.examples:
        items = "".join(
            f"<li><code>{escape(ex.trace_id)}</code> ({escape(ex.operation)})"
            + "".join(f"<pre>{escape(log)}</pre>" for log in c.example_logs(ex))
            + "</li>"
            for ex in c.examples(att)
        )
        out.append(f"<h3>Example failing traces</h3><ul>{items}</ul>")
    return "".join(out)


def html_text(notification: Notification) -> str:
    resolved = (
        "<p><strong>This incident is RESOLVED: no alert of it is firing any more.</strong></p>"
        if c.is_resolved(notification)
        else ""
    )
    incident = (
        f"<p><a href='{escape(notification.incident_url)}'>Open the incident</a></p>"
        if notification.incident_url
        else ""
    )
    body = "".join(_alert_html(notification, a) for a in notification.alerts)
    return (
        "<!DOCTYPE html><html><body>"
        f"<h2>{escape(c.title(notification))}</h2>{resolved}{body}{incident}{_attribution_html(notification)}"
        "</body></html>"
    )


class EmailReceiver:
    """Sends the notification as one multipart/alternative email to every address in ``to``."""

    kind = "email"

    def __init__(self, config: ReceiverConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        s = config.setting_map
        self.name = config.name
        self.secrets = receiver_secrets(config)
        self.to = [a.strip() for a in s.get("to", "").split(",") if a.strip()]
        self.sender = s.get("from", "").strip()
        smarthost = s.get("smarthost", "").strip()
        for key, value in (("to", self.to), ("from", self.sender), ("smarthost", smarthost)):
            if not value:
                raise ValueError(f"receiver {config.name!r} (email): setting {key!r} is required")
        host, _, port = smarthost.rpartition(":") if ":" in smarthost else (smarthost, "", "25")
        if not host or not port.isdigit():
            raise ValueError(
                f"receiver {config.name!r} (email): setting 'smarthost' must be host:port, got {smarthost!r}"
            )
        self.host, self.port = host.strip("[]"), int(port)
        self.username = s.get("username", "")
        self.password = s.get("password", "")
        self.starttls = _bool(config, "starttls", True)
        self.timeout_s = timeout_s

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage(policy=_POLICY)
        msg["Subject"] = c.title(notification)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(notification.at_s, usegmt=True)
        # Deterministic, so a retry after a lost answer is recognisably the same message.
        msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9._-]', '-', notification.id)}@sloscope>"
        # The same reference on trigger, repeats and resolve threads them in mail clients.
        msg["References"] = f"<incident-{notification.incident_id}@sloscope>"
        msg["X-Sloscope-Incident"] = notification.incident_id
        msg["X-Sloscope-Kind"] = notification.kind
        msg.set_content(plain_text(notification))
        msg.add_alternative(html_text(notification), subtype="html")
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self.port == 465:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.starttls:
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, notification: Notification) -> None:
        """Connect, optionally STARTTLS and log in, send, quit; :class:`DeliveryError` on failure."""
        where = f"{self.host}:{self.port}"
        try:
            with self._connect() as smtp:
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(
                    self.message(notification), from_addr=self.sender, to_addrs=self.to
                )
            if refused:
                # Some recipients got it: a retry would send them a second copy, so report and move on.
                log.warning(
                    "receiver %s: SMTP server %s refused some recipients: %s", self.name, where, refused
                )
        except smtplib.SMTPNotSupportedError as e:
            raise DeliveryError(f"SMTP server {where} does not support it: {e}", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            raise DeliveryError(
                f"SMTP server {where} refused every recipient: {e.recipients}",
                retryable=all(400 <= code < 500 for code in codes),
                status=codes[0] if codes else None,
            ) from None
        except smtplib.SMTPResponseException as e:
            text = (
                e.smtp_error.decode(errors="replace")
                if isinstance(e.smtp_error, bytes)
                else str(e.smtp_error)
            )
            raise DeliveryError(
                f"SMTP {e.smtp_code} from {where}: {text}",
                retryable=400 <= e.smtp_code < 500,
                status=e.smtp_code,
            ) from None
        except ssl.SSLCertVerificationError as e:
            raise DeliveryError(f"TLS certificate of {where} not trusted: {e}", retryable=False) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP to {where} failed: {e!r}", retryable=True) from None
