"""Receivers and deliveries against real servers on 127.0.0.1: each payload is checked field by field
as the receiving server saw it; retries, give-ups, isolation of a hanging receiver and the metrics."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from prometheus_client import CollectorRegistry

from alerts.delivery import Deliveries, RetryPolicy
from alerts.model import (
    Alert,
    Attribution,
    Contributor,
    ExampleTrace,
    FiringPair,
    Notification,
    ReceiverConfig,
    alert_id,
)
from alerts.receivers import DeliveryError, build
from alerts.receivers.content import fingerprint
from tests.conftest import free_port, wait_until

# -- the notification under test -------------------------------------------------------------------

T0 = 1714564800  # 2024-05-01T12:00:00Z: both alerts started firing
AT = T0 + 300  # the trigger
RESOLVED_AT = T0 + 3600  # 13:00:00Z
EXTERNAL = "http://sloscope.test:8080"
INCIDENT = "inc-7f3a"


def _alert(
    slo: str,
    severity: str,
    group: dict[str, str],
    pair: FiringPair,
    budget: float,
    runbook: str,
    summary: str = "",
) -> Alert:
    labels = {
        "alertname": "SLOBurnRate",
        "slo": slo,
        "service": "checkout",
        "severity": severity,
        "team": "payments",
    }
    labels.update(group)
    return Alert(
        id=alert_id(slo, severity, group),
        slo=slo,
        service="checkout",
        severity=severity,
        group=tuple(group.items()),
        labels=tuple(sorted(labels.items())),
        state="firing",
        firing_since_s=T0,
        annotations=(("runbook_url", runbook), ("dashboard_url", "https://grafana.test/d/checkout"))
        + ((("summary", summary),) if summary else ()),
        objective=99.9,
        error_budget_remaining=budget,
        pair=pair,
    )


PAGE = _alert(
    "checkout",
    "page",
    {"region": "eu"},
    FiringPair("1h", "5m", 14.4, 14.9123, 20.31),
    0.4213,
    "https://runbooks.test/checkout?step=1&x=<2>",
    summary='Checkout <b>errors</b> & "timeouts"',
)
TICKET = _alert(
    "checkout-latency",
    "ticket",
    {},
    FiringPair("1d", "2h", 3.0, 3.4, 4.1),
    -0.125,
    "https://runbooks.test/latency",
)
#: What every payload carries as the alerts' labels: theirs plus ``slo_instance`` (the SLO and its
#: group labels), which the alerts above, built by hand, lack.
PAGE_LABELS = dict(PAGE.labels) | {"slo_instance": 'checkout{region="eu"}'}
TICKET_LABELS = dict(TICKET.labels) | {"slo_instance": "checkout-latency"}
ATTRIBUTION = Attribution(
    contributors=(
        Contributor("POST /pay", bad=120, total=4000, http_route="/pay/{id}", service_version="1.4.2"),
        Contributor("GET /cart", bad=7, total=900, group=(("region", "eu"),)),
    ),
    examples=(
        ExampleTrace(
            "4bf92f3577b34da6a3ce929d0e0e4736", "POST /pay", ("card declined <script>alert(1)</script>",)
        ),
        ExampleTrace(
            "00f067aa0ba902b7a3ce929d0e0e4736", "POST /pay", ("upstream timeout & retry", "gave up")
        ),
        ExampleTrace("5b8aa5a2d2c872e8321cf37308d69df2", "GET /cart", ()),
        ExampleTrace("ffffffffffffffffffffffffffffffff", "GET /cart", ("a fourth example is never shown",)),
    ),
    bad=127,
    total=4900,
)


def notification(kind: str = "trigger", receiver: str = "r", at_s: int = AT) -> Notification:
    alerts: tuple[Alert, ...] = (PAGE, TICKET)
    if kind == "resolve":
        alerts = tuple(replace(a, state="resolved", resolved_at_s=RESOLVED_AT) for a in alerts)
    return Notification(
        id=f"{INCIDENT}:{receiver}:{kind}:{at_s}",
        receiver=receiver,
        kind=kind,  # type: ignore[arg-type]
        incident_id=INCIDENT,
        at_s=at_s,
        group_labels=(("service", "checkout"),),
        alerts=alerts,
        incident_url=f"{EXTERNAL}/incidents/{INCIDENT}",
        attribution=ATTRIBUTION,
    )


# -- a recording HTTP server -----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    #: (status, body, headers) per request in order; then ``default``.
    script: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, bytes, dict[str, str]] = (200, b"ok", {})
    #: While set, requests wait (up to 10 s) for ``release``: a hanging endpoint.
    hang: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def serve() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.requests.append(
                    Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status, reply, headers = rec.script.pop(0) if rec.script else rec.default
            if rec.hang.is_set():
                rec.release.wait(10)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
    server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with serve() as rec:
        yield rec


@pytest.fixture
def recorder2() -> Iterator[Recorder]:
    """A second, independent server (the isolation test)."""
    with serve() as rec:
        yield rec


def config(kind: str, name: str = "r", **settings: str) -> ReceiverConfig:
    return ReceiverConfig(name=name, kind=kind, settings=tuple(settings.items()))  # type: ignore[arg-type]


# -- webhook ---------------------------------------------------------------------------------------


def test_fingerprint_is_prometheus_label_set_fingerprint() -> None:
    # The vector from prometheus/common model/signature_test.go.
    assert (
        int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16) == 5799056148416392346
    )
    assert fingerprint({}) == "cbf29ce484222325"


def test_webhook_sends_alertmanager_v4_shape(recorder: Recorder) -> None:
    receiver = build(config("webhook", url=f"{recorder.url}/hook?src=slo", bearer_token="s3cret"))
    receiver.send(notification("trigger"))
    (seen,) = recorder.requests
    assert seen.method == "POST" and seen.path == "/hook?src=slo"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("sloscope/")
    assert seen.headers["authorization"] == "Bearer s3cret"
    body = seen.json()
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4"
    assert body["groupKey"] == '{inc-7f3a}:{service="checkout"}'
    assert body["truncatedAlerts"] == 0
    assert body["status"] == "firing"
    assert body["receiver"] == "r"
    assert body["groupLabels"] == {"service": "checkout"}
    assert body["commonLabels"] == {"alertname": "SLOBurnRate", "service": "checkout", "team": "payments"}
    common = body["commonAnnotations"]
    assert common["dashboard_url"] == "https://grafana.test/d/checkout"
    assert "runbook_url" not in common  # the two SLOs have different runbooks
    assert common["sloscope_incident_url"] == f"{EXTERNAL}/incidents/{INCIDENT}"
    assert body["externalURL"] == EXTERNAL

    page, ticket = body["alerts"]
    assert set(page) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert page["status"] == "firing"
    assert page["labels"] == PAGE_LABELS and ticket["labels"] == TICKET_LABELS
    assert page["startsAt"] == "2024-05-01T12:00:00Z"
    assert page["endsAt"] == "0001-01-01T00:00:00Z"
    assert page["generatorURL"] == f"{EXTERNAL}/api/v1/slos/checkout"
    assert page["fingerprint"] == fingerprint(PAGE_LABELS) and len(page["fingerprint"]) == 16
    assert page["fingerprint"] != ticket["fingerprint"]
    ann = page["annotations"]
    assert ann["runbook_url"] == "https://runbooks.test/checkout?step=1&x=<2>"
    assert ann["summary"] == 'Checkout <b>errors</b> & "timeouts"'  # the SLO's own summary wins
    assert ann["sloscope_objective"] == "99.9%"
    assert ann["sloscope_burn_windows"] == "1h/5m"
    assert ann["sloscope_burn_rate_long"] == "14.9123"
    assert ann["sloscope_burn_rate_short"] == "20.31"
    assert ann["sloscope_burn_factor"] == "14.4"
    assert ann["sloscope_error_budget_remaining"] == "0.4213"
    assert ann["sloscope_incident_id"] == INCIDENT
    assert "POST /pay (route /pay/{id}, version 1.4.2): 120 bad of 4000" in ann["sloscope_attribution"]
    assert "Error budget remaining: 42.1%" in ann["description"]
    assert 'SLO instance: checkout{region="eu"}' in ann["description"]
    data = json.loads(ann["sloscope_attribution_json"])
    assert [c["bad"] for c in data["contributors"]] == [120, 7]
    assert [e["trace_id"] for e in data["examples"]] == [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7a3ce929d0e0e4736",
        "5b8aa5a2d2c872e8321cf37308d69df2",
    ]
    assert data["examples"][1]["logs"] == ["upstream timeout & retry", "gave up"]
    assert ticket["annotations"]["sloscope_error_budget_remaining"] == "-0.125"
    assert ticket["annotations"]["summary"] == "checkout-latency SLO burning slowly (3.4x)"
    assert ticket["generatorURL"] == f"{EXTERNAL}/api/v1/slos/checkout-latency"


def test_webhook_resolve(recorder: Recorder) -> None:
    build(config("webhook", url=f"{recorder.url}/hook")).send(notification("resolve"))
    body = recorder.requests[0].json()
    assert body["status"] == "resolved"
    assert "authorization" not in recorder.requests[0].headers
    for alert in body["alerts"]:
        assert alert["status"] == "resolved"
        assert alert["startsAt"] == "2024-05-01T12:00:00Z"
        assert alert["endsAt"] == "2024-05-01T13:00:00Z"
    assert body["alerts"][0]["annotations"]["summary"] == 'Checkout <b>errors</b> & "timeouts"'
    # Without a summary of its own the SLO gets sloscope's, which says it resolved.
    assert body["alerts"][1]["annotations"]["summary"] == "checkout-latency SLO no longer burning (resolved)"


def test_webhook_mixed_update_is_firing_with_a_resolved_alert(recorder: Recorder) -> None:
    n = notification("trigger")
    n = replace(n, alerts=(n.alerts[0], replace(n.alerts[1], state="resolved", resolved_at_s=RESOLVED_AT)))
    build(config("webhook", url=recorder.url)).send(n)
    body = recorder.requests[0].json()
    assert body["status"] == "firing"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
    assert [a["endsAt"] for a in body["alerts"]] == ["0001-01-01T00:00:00Z", "2024-05-01T13:00:00Z"]


# -- alertmanager ----------------------------------------------------------------------------------


def test_alertmanager_posts_postable_alerts(recorder: Recorder) -> None:
    receiver = build(config("alertmanager", url=f"{recorder.url}/am/", firing_ttl="2h"))
    receiver.send(notification("trigger"))
    receiver.send(notification("resolve", at_s=RESOLVED_AT))
    fire, resolve = recorder.requests
    assert fire.path == resolve.path == "/am/api/v2/alerts"
    assert fire.headers["content-type"] == "application/json"
    alerts = fire.json()
    assert isinstance(alerts, list) and len(alerts) == 2
    page = alerts[0]
    assert set(page) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert page["labels"] == PAGE_LABELS
    assert page["annotations"]["runbook_url"] == "https://runbooks.test/checkout?step=1&x=<2>"
    assert page["annotations"]["sloscope_burn_rate_long"] == "14.9123"
    assert page["startsAt"] == "2024-05-01T12:00:00Z"
    assert page["endsAt"] == "2024-05-01T14:05:00Z"  # trigger time + firing_ttl: stays firing between repeats
    assert page["generatorURL"] == f"{EXTERNAL}/api/v1/slos/checkout"
    assert [a["endsAt"] for a in resolve.json()] == ["2024-05-01T13:00:00Z"] * 2
    assert [a["labels"] for a in resolve.json()] == [PAGE_LABELS, TICKET_LABELS]


def test_alertmanager_default_ttl_and_bad_ttl(recorder: Recorder) -> None:
    build(config("alertmanager", url=recorder.url)).send(notification())
    assert recorder.requests[0].json()[0]["endsAt"] == "2024-05-02T12:05:00Z"
    with pytest.raises(ValueError, match="firing_ttl"):
        build(config("alertmanager", url=recorder.url, firing_ttl="soon"))


# -- pagerduty -------------------------------------------------------------------------------------


def test_pagerduty_events_share_dedup_key_across_trigger_repeat_resolve(recorder: Recorder) -> None:
    recorder.default = (
        202,
        b'{"status":"success","message":"Event processed"}',
        {"Content-Type": "application/json"},
    )
    receiver = build(config("pagerduty", routing_key="R0UT1NGKEY", url=f"{recorder.url}/v2/enqueue"))
    receiver.send(notification("trigger"))
    receiver.send(notification("repeat", at_s=AT + 4 * 3600))
    receiver.send(notification("resolve", at_s=RESOLVED_AT))
    events = [r.json() for r in recorder.requests]
    assert len(events) == 6  # one event per alert per notification
    assert all(
        r.path == "/v2/enqueue" and r.headers["content-type"] == "application/json" for r in recorder.requests
    )
    assert [e["event_action"] for e in events] == ["trigger", "trigger"] * 2 + ["resolve", "resolve"]
    assert {e["routing_key"] for e in events} == {"R0UT1NGKEY"}
    page_keys = {e["dedup_key"] for e in events[0::2]}
    ticket_keys = {e["dedup_key"] for e in events[1::2]}
    assert page_keys == {PAGE.id} and ticket_keys == {TICKET.id} and PAGE.id != TICKET.id

    page = events[0]
    assert set(page) == {
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "links",
        "client",
        "client_url",
    }
    p = page["payload"]
    assert p["summary"] == "[PAGE] checkout SLO burning fast (14.9x)"
    assert p["severity"] == "critical"
    assert events[1]["payload"]["severity"] == "warning"
    assert p["source"] == "checkout" and p["component"] == "checkout" and p["group"] == "checkout"
    assert p["class"] == "slo_burn_rate"
    assert p["timestamp"] == "2024-05-01T12:00:00Z"
    d = p["custom_details"]
    assert d["slo"] == "checkout" and d["service"] == "checkout" and d["severity"] == "page"
    assert d["objective"] == "99.9%"
    assert d["burn_rates"] == {"1h": 14.9123, "5m": 20.31}
    assert d["burn_rate_threshold"] == 14.4
    assert d["error_budget_remaining"] == "42.1%"
    assert d["incident_url"] == f"{EXTERNAL}/incidents/{INCIDENT}"
    assert d["runbook_url"] == "https://runbooks.test/checkout?step=1&x=<2>"
    assert d["labels"] == PAGE_LABELS
    assert d["slo_instance"] == 'checkout{region="eu"}'
    assert events[1]["payload"]["custom_details"]["slo_instance"] == "checkout-latency"
    assert d["attribution"]["contributors"][0] == {
        "operation": "POST /pay",
        "bad": 120,
        "total": 4000,
        "http_route": "/pay/{id}",
        "service_version": "1.4.2",
        "group": {},
    }
    assert len(d["attribution"]["examples"]) == 3
    assert d["attribution"]["examples"][0]["logs"] == ["card declined <script>alert(1)</script>"]
    assert page["links"] == [
        {"href": "https://runbooks.test/checkout?step=1&x=<2>", "text": "Runbook"},
        {"href": "https://grafana.test/d/checkout", "text": "Dashboard"},
        {"href": f"{EXTERNAL}/incidents/{INCIDENT}", "text": "Incident"},
    ]
    assert page["client"] == "sloscope" and page["client_url"] == f"{EXTERNAL}/incidents/{INCIDENT}"
    assert events[2]["payload"]["summary"] == "[PAGE] checkout SLO still burning fast (14.9x)"
    assert events[4]["payload"]["summary"] == "[PAGE] checkout SLO no longer burning (resolved)"
    assert events[4]["payload"]["custom_details"]["resolved_at"] == "2024-05-01T13:00:00Z"


def test_pagerduty_settings() -> None:
    with pytest.raises(ValueError, match="routing_key"):
        build(config("pagerduty"))
    assert build(config("pagerduty", routing_key="k")).url == "https://events.pagerduty.com/v2/enqueue"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="http"):
        build(config("pagerduty", routing_key="k", url="file:///etc/passwd"))


def test_pagerduty_rejection_is_not_retryable(recorder: Recorder) -> None:
    recorder.default = (400, b'{"status":"invalid event","errors":["Event object is invalid"]}', {})
    with pytest.raises(DeliveryError) as info:
        build(config("pagerduty", routing_key="bad", url=recorder.url)).send(notification())
    assert info.value.status == 400 and not info.value.retryable
    assert "Event object is invalid" in str(info.value)
    assert len(recorder.requests) == 1  # the first failure stops the second event


# -- slack -----------------------------------------------------------------------------------------


def test_slack_blocks_and_buttons(recorder: Recorder) -> None:
    build(config("slack", url=f"{recorder.url}/services/T000/B000/XXXX")).send(notification())
    (seen,) = recorder.requests
    assert seen.path == "/services/T000/B000/XXXX" and seen.headers["content-type"] == "application/json"
    body = seen.json()
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(
        "[PAGE] checkout SLO burning fast (14.9x) (+1 more alert) — service checkout"
    )
    assert f"incident <{EXTERNAL}/incidents/{INCIDENT}>" in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context", "actions"]
    header = body["blocks"][0]["text"]
    assert header == {
        "type": "plain_text",
        "text": "[PAGE] checkout SLO burning fast (14.9x) (+1 more alert)",
        "emoji": True,
    }
    page = body["blocks"][1]
    assert page["text"]["type"] == "mrkdwn"
    assert page["text"]["text"].startswith(
        "*checkout SLO burning fast (14.9x)*\nFIRING since 2024-05-01T12:00:00Z"
    )
    assert 'Checkout &lt;b&gt;errors&lt;/b&gt; &amp; "timeouts"' in page["text"]["text"]
    assert [f["text"] for f in page["fields"]] == [
        "*SLO*\ncheckout",
        '*SLO instance*\ncheckout{region="eu"}',
        "*Service*\ncheckout",
        "*Severity*\npage",
        "*Objective*\n99.9%",
        "*Burn rate*\n14.91x over 1h, 20.31x over 5m (threshold 14.4x)",
        "*Error budget remaining*\n42.1%",
    ]
    assert body["blocks"][2]["fields"][1]["text"] == "*SLO instance*\ncheckout-latency"
    assert body["blocks"][2]["fields"][6]["text"] == "*Error budget remaining*\n-12.5%"
    context = [e["text"] for e in body["blocks"][3]["elements"]]
    assert context[0] == (
        "*Top contributors:* POST /pay (route /pay/{id}, version 1.4.2): 120 bad of 4000; "
        "GET /cart (region=eu): 7 bad of 900"
    )
    trace = "*Trace* `4bf92f3577b34da6a3ce929d0e0e4736` (POST /pay)"
    assert context[1] == f"{trace} — `card declined &lt;script&gt;alert(1)&lt;/script&gt;`"
    assert len(context) == 4  # contributors and three of the four examples
    buttons = body["blocks"][4]["elements"]
    assert [(b["type"], b["text"]["text"], b["url"]) for b in buttons] == [
        ("button", "Runbook", "https://runbooks.test/checkout?step=1&x=<2>"),
        ("button", "Dashboard", "https://grafana.test/d/checkout"),
        ("button", "Incident", f"{EXTERNAL}/incidents/{INCIDENT}"),
    ]
    assert buttons[0]["style"] == "primary"
    assert len({b["action_id"] for b in buttons}) == 3


def test_slack_resolve_says_so(recorder: Recorder) -> None:
    build(config("slack", url=recorder.url)).send(notification("resolve"))
    body = recorder.requests[0].json()
    assert body["text"].startswith("[RESOLVED] [PAGE] checkout SLO no longer burning (resolved)")
    assert body["blocks"][0]["text"]["text"].startswith("[RESOLVED] [PAGE]")
    assert (
        "RESOLVED at 2024-05-01T13:00:00Z (was firing since 2024-05-01T12:00:00Z)"
        in body["blocks"][1]["text"]["text"]
    )
    assert "style" not in body["blocks"][-1]["elements"][0]


# -- email -----------------------------------------------------------------------------------------


class SmtpSink:
    def __init__(self, reply: str | None = None) -> None:
        self.envelopes: list[Any] = []
        self.logins: list[bytes | None] = []
        self.reply = reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's naming)
        if self.reply:
            return self.reply
        self.envelopes.append(envelope)
        self.logins.append(session.auth_data.login if session.auth_data else None)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"pa55")
        return AuthResult(success=ok, handled=False, auth_data=data)

    port = free_port()
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False
    )
    controller.start()
    yield sink, port
    controller.stop()


def _email_config(port: int, **extra: str) -> ReceiverConfig:
    settings = {"to": "oncall@example.com, sre@example.com", "from": "sloscope@example.com"}
    settings.update(smarthost=f"127.0.0.1:{port}", starttls="false")
    settings.update(extra)
    return config("email", **settings)


def test_email_subject_parts_and_escaping(smtp: tuple[SmtpSink, int]) -> None:
    sink, port = smtp
    build(_email_config(port, username="alerts", password="pa55")).send(notification())
    (envelope,) = sink.envelopes
    assert sink.logins == [b"alerts"]
    assert envelope.mail_from == "sloscope@example.com"
    assert envelope.rcpt_tos == ["oncall@example.com", "sre@example.com"]
    msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert msg["Subject"] == "[PAGE] checkout SLO burning fast (14.9x) (+1 more alert)"
    assert msg["From"] == "sloscope@example.com"
    assert msg["To"] == "oncall@example.com, sre@example.com"
    assert msg["Message-ID"] == f"<{INCIDENT}-r-trigger-{AT}@sloscope>"
    assert msg["References"] == f"<incident-{INCIDENT}@sloscope>"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for text in (plain, html):
        assert "99.9%" in text and "42.1%" in text and "-12.5%" in text
        assert "14.91x over 1h, 20.31x over 5m (threshold 14.4x)" in text
        assert f"{EXTERNAL}/incidents/{INCIDENT}" in text
        assert "4bf92f3577b34da6a3ce929d0e0e4736" in text and "5b8aa5a2d2c872e8321cf37308d69df2" in text
        assert "ffffffffffffffffffffffffffffffff" not in text  # three examples at most
    assert "Runbook: https://runbooks.test/checkout?step=1&x=<2>" in plain
    assert '  SLO instance: checkout{region="eu"}' in plain and "  SLO instance: checkout-latency" in plain
    assert "<th align='left'>SLO instance</th><td>checkout{region=&quot;eu&quot;}</td>" in html
    assert "card declined <script>alert(1)</script>" in plain
    assert "POST /pay (route /pay/{id}, version 1.4.2): 120 bad of 4000" in plain
    assert "<script>" not in html and "<b>errors" not in html
    assert "card declined &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Checkout &lt;b&gt;errors&lt;/b&gt; &amp; &quot;timeouts&quot;" in html
    assert "<a href='https://runbooks.test/checkout?step=1&amp;x=&lt;2&gt;'>Runbook</a>" in html
    assert "upstream timeout &amp; retry" in html


def test_email_resolve_subject(smtp: tuple[SmtpSink, int]) -> None:
    sink, port = smtp
    build(_email_config(port)).send(notification("resolve"))
    msg = email.message_from_bytes(sink.envelopes[0].original_content, policy=email.policy.default)
    assert msg["Subject"] == "[RESOLVED] [PAGE] checkout SLO no longer burning (resolved) (+1 more alert)"
    assert "This incident is RESOLVED" in msg.get_body(("plain",)).get_content()


def test_email_errors(smtp: tuple[SmtpSink, int]) -> None:
    sink, port = smtp
    with pytest.raises(DeliveryError) as info:  # starttls defaults to true; this server has no TLS
        build(_email_config(port, starttls="")).send(notification())
    assert not info.value.retryable and "STARTTLS" in str(info.value)
    with pytest.raises(DeliveryError) as info:
        build(_email_config(port, username="alerts", password="wrong")).send(notification())
    assert info.value.status == 535 and not info.value.retryable
    sink.reply = "451 4.3.0 try again later"
    with pytest.raises(DeliveryError) as info:
        build(_email_config(port)).send(notification())
    assert info.value.status == 451 and info.value.retryable
    sink.reply = "554 5.7.1 rejected"
    with pytest.raises(DeliveryError) as info:
        build(_email_config(port)).send(notification())
    assert info.value.status == 554 and not info.value.retryable
    assert sink.envelopes == []
    with pytest.raises(ValueError, match="'to'"):
        build(config("email", smarthost="127.0.0.1:25", **{"from": "a@b"}))


# -- deliveries ------------------------------------------------------------------------------------

FAST = RetryPolicy(base_s=0.02, max_s=0.1, max_attempts=3, jitter=0)


class Attempts:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, bool, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, n: Notification, receiver: str, attempt: int, ok: bool, error: str | None) -> None:
        with self.lock:
            self.calls.append((n.id, receiver, attempt, ok, error))

    def of(self, receiver: str) -> list[tuple[int, bool]]:
        with self.lock:
            return [(a, ok) for _, r, a, ok, _ in self.calls if r == receiver]


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_retry_policy_backoff() -> None:
    import random

    policy = RetryPolicy(base_s=1, max_s=5, max_attempts=10, jitter=0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert policy.delay(1, rng, retry_after_s=3) == 3 and policy.delay(1, rng, retry_after_s=99) == 5
    jittered = RetryPolicy(base_s=1, max_s=60, jitter=0.5)
    a = [jittered.delay(3, random.Random(7)) for _ in range(2)]
    assert a[0] == a[1] and 2 <= a[0] <= 6  # deterministic with a seeded generator, within ±50%
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_delivery_retries_5xx_then_succeeds_and_does_not_retry_4xx(recorder: Recorder) -> None:
    registry, attempts = CollectorRegistry(), Attempts()
    recorder.script = [(500, b"boom", {}), (503, b"busy", {"Retry-After": "0"}), (200, b"ok", {})]
    receivers = [
        build(config("webhook", name="hook", url=recorder.url)),
        build(config("slack", name="chat", url=f"{recorder.url}/slack")),
    ]
    deliveries = Deliveries(receivers, registry=registry, on_attempt=attempts, retry=FAST)
    try:
        assert deliveries.submit(notification(receiver="hook"))
        assert deliveries.wait_idle(5)
        assert attempts.of("hook") == [(1, False), (2, False), (3, True)]
        assert "HTTP 500" in attempts.calls[0][4] and "boom" in attempts.calls[0][4]
        assert attempts.calls[2][4] is None
        assert len(recorder.requests) == 3
        assert all(r.json()["groupKey"] == recorder.requests[0].json()["groupKey"] for r in recorder.requests)

        recorder.script = [(400, b"invalid_payload", {})]
        assert deliveries.submit(notification("repeat", receiver="chat"))
        assert deliveries.wait_idle(5)
        assert attempts.of("chat") == [(1, False)]
        assert len(recorder.requests) == 4  # not retried
    finally:
        assert deliveries.close(5)
    m = {
        "sent": metric(
            registry, "sloscope_notifications_total", receiver="hook", kind="trigger", outcome="sent"
        ),
        "hook_failed": metric(
            registry, "sloscope_notifications_total", receiver="hook", kind="trigger", outcome="failed"
        ),
        "chat_failed": metric(
            registry, "sloscope_notifications_total", receiver="chat", kind="repeat", outcome="failed"
        ),
        "hook_ok": metric(registry, "sloscope_notification_attempts_total", receiver="hook", outcome="ok"),
        "hook_err": metric(
            registry, "sloscope_notification_attempts_total", receiver="hook", outcome="error"
        ),
        "chat_err": metric(
            registry, "sloscope_notification_attempts_total", receiver="chat", outcome="error"
        ),
        "queue": metric(registry, "sloscope_notification_queue_size", receiver="hook"),
    }
    assert m == {
        "sent": 1,
        "hook_failed": 0,
        "chat_failed": 1,
        "hook_ok": 1,
        "hook_err": 2,
        "chat_err": 1,
        "queue": 0,
    }
    # Series exist before anything happened to them, so rate() works from the start.
    assert (
        registry.get_sample_value(
            "sloscope_notifications_total", {"receiver": "chat", "kind": "resolve", "outcome": "gave_up"}
        )
        == 0
    )


def test_delivery_to_a_dead_port_gives_up_after_n_attempts() -> None:
    registry, attempts = CollectorRegistry(), Attempts()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    deliveries = Deliveries(
        [build(config("webhook", name="dead", url=dead), timeout_s=2)],
        registry=registry,
        on_attempt=attempts,
        retry=FAST,
    )
    started = time.monotonic()
    assert deliveries.submit(notification(receiver="dead"))
    assert deliveries.wait_idle(5)
    assert attempts.of("dead") == [(1, False), (2, False), (3, False)]
    assert all("cannot reach 127.0.0.1" in (c[4] or "") for c in attempts.calls)
    assert time.monotonic() - started >= 0.02 + 0.04  # the two backoff waits
    assert (
        metric(registry, "sloscope_notifications_total", receiver="dead", kind="trigger", outcome="gave_up")
        == 1
    )
    assert metric(registry, "sloscope_notification_attempts_total", receiver="dead", outcome="error") == 3
    assert deliveries.close(5)
    assert not deliveries.submit(notification(receiver="dead"))  # closed
    assert attempts.calls[-1][2:4] == (0, False)
    assert not Deliveries([], registry=CollectorRegistry()).submit(notification(receiver="nobody"))


def test_a_hanging_receiver_does_not_delay_another(recorder: Recorder, recorder2: Recorder) -> None:
    registry, attempts = CollectorRegistry(), Attempts()
    recorder.hang.set()
    receivers = [
        build(config("webhook", name="slow", url=recorder.url), timeout_s=5),
        build(config("pagerduty", name="pd", routing_key="k", url=recorder2.url)),
    ]
    deliveries = Deliveries(receivers, registry=registry, on_attempt=attempts, retry=FAST)
    try:
        assert deliveries.submit(notification(receiver="slow"))
        wait_until(lambda: recorder.requests, timeout=5)  # the slow one is now stuck in its request
        started = time.monotonic()
        assert deliveries.submit(notification(receiver="pd"))
        wait_until(lambda: attempts.of("pd"), timeout=3)
        assert time.monotonic() - started < 1.5
        assert attempts.of("pd") == [(1, True)] and len(recorder2.requests) == 2
        assert attempts.of("slow") == []  # still hanging
        assert metric(registry, "sloscope_notification_queue_size", receiver="slow") == 1
        assert metric(registry, "sloscope_notification_queue_size", receiver="pd") == 0
    finally:
        recorder.release.set()
        assert deliveries.close(5)
    assert attempts.of("slow") == [(1, True)]
    assert (
        metric(registry, "sloscope_notifications_total", receiver="pd", kind="trigger", outcome="sent") == 1
    )


def test_close_cuts_retry_waits_short(recorder: Recorder) -> None:
    registry, attempts = CollectorRegistry(), Attempts()
    recorder.default = (502, b"bad gateway", {})

    def broken_log(*args: object) -> None:
        attempts(*args)  # type: ignore[arg-type]
        raise RuntimeError("the attempt log is down")  # must not stop deliveries

    slow_retry = RetryPolicy(base_s=30, max_s=30, max_attempts=5, jitter=0)
    deliveries = Deliveries(
        [build(config("webhook", name="w", url=recorder.url))],
        registry=registry,
        on_attempt=broken_log,
        retry=slow_retry,
    )
    deliveries.submit(notification(receiver="w"))
    wait_until(lambda: attempts.of("w"), timeout=5)
    started = time.monotonic()
    assert deliveries.close(timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert attempts.of("w") == [(1, False)]
    assert metric(registry, "sloscope_notification_queue_size", receiver="w") == 0
    for outcome in ("sent", "failed", "gave_up"):  # dropped at close: a restart sends it
        assert (
            metric(registry, "sloscope_notifications_total", receiver="w", kind="trigger", outcome=outcome)
            == 0
        )


def test_build_validates_settings() -> None:
    with pytest.raises(ValueError, match=r"receiver 'x' \(webhook\): setting 'url' is required"):
        build(config("webhook", name="x"))
    with pytest.raises(ValueError, match="unknown kind"):
        build(config("carrier-pigeon"))
    with pytest.raises(ValueError, match="starttls"):
        build(_email_config(25, starttls="maybe"))
