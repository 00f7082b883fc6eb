"""Links follow the server (issue 16, item 5): the incident URL every receiver gets, and relative
``runbook_url``/``dashboard_url`` annotations, are made from ``--external-url`` or, without it, from
the address the server really listens on; the UI links relative annotations from the server's root.

Two real in-process servers on free ports (never 8080), each paging a real webhook (the demo's
WebhookLog on 127.0.0.1) for an outage exported through the SDK's OTLP/HTTP exporter.
"""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from alerts.links import absolute_link, server_href
from sloscope import settings as settings_mod
from sloscope.cli import _overrides, build_parser
from sloscope.demo_webhook import WebhookLog
from tests.conftest import in_process

MINUTE = 60
NOW_MIN = int(time.time()) // MINUTE * MINUTE

# Both forms of a path on the server; ``summary`` is text and stays text.
SPEC = """\
slos:
  - name: checkout
    service: checkout
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
    annotations:
      runbook_url: /runbooks/{{ name }}
      dashboard_url: slos/{{ name }}
      summary: see the wiki
    alerting:
      rules:
        - {severity: page, long: 10m, short: 2m, factor: 10}
"""

POLICY = """\
route:
  receiver: hook
  group_wait: 0s
receivers:
  - name: hook
    webhook: {url_env: LINKS_TEST_HOOK_URL}
"""


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "ftp://sloscope.example.com",
        "sloscope.example.com",
        "/sloscope",
        "https://",
        "https://sloscope.example.com/?tenant=a",
        "https://sloscope.example.com/#top",
        "https://sloscope.example.com:99999",
        "https://user:secret@sloscope.example.com",
    ],
)
def test_a_bad_external_url_is_a_settings_error_naming_it(value: str) -> None:
    with pytest.raises(settings_mod.SettingsError, match=r"^external_url: "):
        settings_mod.load({"external_url": value}, environ={})
    with pytest.raises(settings_mod.SettingsError, match=r"^external_url: "):
        settings_mod.load(environ={"SLOSCOPE_EXTERNAL_URL": value})


def test_the_flag_wins_over_the_environment_and_the_policy() -> None:
    args = build_parser().parse_args(["serve", "--external-url", "https://flag.example.com/"])
    env = {"SLOSCOPE_EXTERNAL_URL": "https://env.example.com"}
    s = settings_mod.load(_overrides(args), environ=env)
    assert settings_mod.external_url(s, 1234, "https://policy.example.com") == "https://flag.example.com"
    s = settings_mod.load(environ=env)
    assert settings_mod.external_url(s, 1234, "https://policy.example.com") == "https://env.example.com"
    s = settings_mod.load(environ={})
    assert settings_mod.external_url(s, 1234, "https://policy.example.com/") == "https://policy.example.com"


@pytest.mark.parametrize(
    ("host", "tls", "expected"),
    [
        ("127.0.0.1", False, "http://127.0.0.1:4321"),
        ("0.0.0.0", False, "http://127.0.0.1:4321"),
        ("::", False, "http://127.0.0.1:4321"),
        ("::1", False, "http://[::1]:4321"),
        ("sloscope.internal", True, "https://sloscope.internal:4321"),
    ],
)
def test_the_default_is_the_api_port_s_own_address(host: str, tls: bool, expected: str) -> None:
    assert settings_mod.default_external_url(host, 4321, tls) == expected
    # The port actually bound wins over the setting (api_port 0 binds a free one).
    s = settings_mod.Settings(host=host, api_port=0, tls_cert_file="cert.pem" if tls else "")
    assert settings_mod.external_url(s, 4321) == expected


def test_link_forms() -> None:
    assert server_href("runbooks/a.md") == "/runbooks/a.md"
    assert server_href(" /docs/runbooks/a.md ") == "/docs/runbooks/a.md"
    assert server_href("https://wiki.example.com/a") == "https://wiki.example.com/a"
    for text in ("see the wiki", "javascript:alert(1)", "//evil.example.com/a", ""):
        assert server_href(text) is None, text
    base = "https://ops.example.com/sloscope/"
    assert absolute_link("/runbooks/a", base) == "https://ops.example.com/sloscope/runbooks/a"
    assert absolute_link("runbooks/a", base) == "https://ops.example.com/sloscope/runbooks/a"
    assert absolute_link("https://wiki.example.com/a", base) == "https://wiki.example.com/a"
    assert absolute_link("/runbooks/a", "") == "/runbooks/a"


# -- end to end ----------------------------------------------------------------------------------


def outage_spans() -> list[Any]:
    """12 minutes before NOW_MIN, 10 requests a minute, 5 failing: burn rate 50 in both windows."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_external_url")
    for m in range(12, 0, -1):
        for i in range(10):
            start_ns = (NOW_MIN - m * MINUTE + i * 5) * 10**9
            span = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=start_ns)
            if i < 5:
                span.set_status(Status(StatusCode.ERROR, "declined"))
            span.end(end_time=start_ns + 10_000_000)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def page_once(
    root: Path, monkeypatch: pytest.MonkeyPatch, **overrides: object
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Run a server with ``overrides``, page once; its API URL, the webhook message, and the HTML
    of the SLO page and of the incident page (and the incidents API's answer)."""
    (root / "slos.yaml").write_text(SPEC)
    (root / "policy.yaml").write_text(POLICY)
    hook = WebhookLog(root / "hook.log")
    monkeypatch.setenv("LINKS_TEST_HOOK_URL", hook.url)
    monkeypatch.setattr("sloscope.app.SloscopeServer._start_scheduler", lambda self: None)
    try:
        with in_process(
            root / "data",
            slos=str(root / "slos.yaml"),
            notification_policy=str(root / "policy.yaml"),
            **overrides,
        ) as server:
            exporter = OTLPSpanExporter(endpoint=f"{server.otlp}/v1/traces", timeout=10)
            try:
                assert exporter.export(outage_spans()) == SpanExportResult.SUCCESS
            finally:
                exporter.shutdown()
            server.drain()
            app = server.server
            app.evaluate_slos(NOW_MIN)
            assert app.alerting is not None and app.alerting.deliveries is not None
            assert app.alerting.deliveries.wait_idle(15)
            [message] = [json.loads(line) for line in (root / "hook.log").read_text().splitlines()]
            incident_id = message["alerts"][0]["annotations"]["sloscope_incident_id"]
            pages = {
                name: httpx.get(f"{server.api}{path}", timeout=10).text
                for name, path in (
                    ("slo", "/slos/checkout"),
                    ("incident", f"/incidents/{incident_id}"),
                    ("incidents.json", "/api/v1/incidents"),
                )
            }
            return server.api, message, pages
    finally:
        hook.close()


def hrefs(page: str, css_class: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(rf'<a class="{css_class}" href="([^"]*)"', page)]


def test_without_external_url_links_use_the_real_api_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, message, pages = page_once(tmp_path, monkeypatch)
    assert not api.endswith(":8080")
    [alert] = message["alerts"]
    ann = alert["annotations"]
    assert ann["sloscope_incident_url"] == f"{api}/incidents/{ann['sloscope_incident_id']}"
    assert message["externalURL"] == api
    # Receivers get the relative annotations made absolute; text stays as written.
    assert ann["runbook_url"] == f"{api}/runbooks/checkout"
    assert ann["dashboard_url"] == f"{api}/slos/checkout"
    assert ann["summary"] == "see the wiki"
    # The UI links them from the server's root, on the SLO page and on the incident page.
    for name in ("slo", "incident"):
        assert hrefs(pages[name], "runbook") == ["/runbooks/checkout"], name
        assert hrefs(pages[name], "dashboard") == ["/slos/checkout"], name


def test_external_url_is_the_base_of_every_notification_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    external = "https://ops.example.com/sloscope"
    api, message, pages = page_once(tmp_path, monkeypatch, external_url=external + "/")
    [alert] = message["alerts"]
    ann = alert["annotations"]
    assert ann["sloscope_incident_url"] == f"{external}/incidents/{ann['sloscope_incident_id']}"
    assert message["externalURL"] == external
    assert alert["generatorURL"] == f"{external}/api/v1/slos/checkout"
    assert ann["runbook_url"] == f"{external}/runbooks/checkout"
    assert ann["dashboard_url"] == f"{external}/slos/checkout"
    assert api not in json.dumps(message)
    # The incident API's link follows it too.
    [incident] = json.loads(pages["incidents.json"])["incidents"]
    assert incident["url"] == ann["sloscope_incident_url"]
    # Pages stay relative to wherever the browser reached the server.
    assert hrefs(pages["incident"], "runbook") == ["/runbooks/checkout"]
