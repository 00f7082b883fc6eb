"""Secrets never logged, never shown: receiver URLs, routing keys and the ClickHouse password.

* The redaction parts alone: :mod:`alerts.redact` (what is a secret piece of a URL) and
  :mod:`sloscope.secrets` through the real log handler of :mod:`sloscope.logs` (message, arguments,
  ``extra`` fields, tracebacks; text and JSON).
* End to end: an in-process server whose notification policy has a webhook with tokens in its URL
  (path and query) behind a server that answers 500 quoting the request line, a webhook with a
  userinfo password on a closed port, and PagerDuty behind a server that answers 400 quoting the
  routing key. An SLO fires; every delivery fails. The secrets are in none of: the log, /metrics,
  the incident JSON, the incident page (the errors are there, masked).
* ClickHouse: the password from ``clickhouse_password_file`` reaches the server (a ClickHouse HTTP
  stand-in) and, once it is down, is in neither /readyz nor the log; ``sloscope serve`` against a
  closed port with the password in the URL says so without it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from alerts.delivery import RetryPolicy
from alerts.model import ReceiverConfig
from alerts.redact import receiver_secrets, scrub, secret_pieces
from sloscope import logs, secrets
from sloscope.app import SloscopeServer
from tests.chshim import ChShim
from tests.conftest import ROOT, free_port, in_process

HOOK_TOKEN = "hk7Tq2ZpX9wLm4Rv8sBn3Yc6"  # a Slack-like last path segment
QUERY_TOKEN = "qt-51fe0c9a77d2"
USERINFO_PASSWORD = "ui-pass-8c1d"
DOWN_PASSWORD = "down-pass-40e2"
BASIC = "Basic " + base64.b64encode(f"alerts:{USERINFO_PASSWORD}".encode()).decode()
ROUTING_KEY = "R0UT1NG-e93b4f0a2c7d"
CH_PASSWORD = "ch-S3cr3t-pw-71a"
SECRETS = (HOOK_TOKEN, QUERY_TOKEN, USERINFO_PASSWORD, DOWN_PASSWORD, BASIC[6:], ROUTING_KEY)

MINUTE = 60
START_S = int(time.time()) // MINUTE * MINUTE - 40 * MINUTE
FIRES_AT = START_S + 12 * MINUTE

SPEC = """\
slos:
  - name: pay
    service: secrets-pay
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
    alerting:
      rules:
        - {severity: page, long: 10m, short: 2m, factor: 10}
"""

POLICY = """\
route:
  receiver: hook
  group_wait: 0s
  routes:
    - {matchers: ['severity = page'], receiver: pager, continue: true}
    - {matchers: ['severity = page'], receiver: down, continue: true}
    - {matchers: ['severity = page'], receiver: hook}
receivers:
  - name: hook
    webhook: {url_env: SECRETS_TEST_HOOK_URL}
  - name: down
    webhook: {url_file: down-url.txt}
  - name: pager
    pagerduty: {routing_key_env: SECRETS_TEST_PD_KEY, url_env: SECRETS_TEST_PD_URL}
"""


def assert_no_secret(text: str, where: str, values: tuple[str, ...] = SECRETS) -> None:
    leaked = [v for v in values if v in text]
    assert not leaked, f"{where} shows {leaked}"


# -- the parts ---------------------------------------------------------------------------------------


def test_secret_pieces_of_a_url() -> None:
    url = f"https://alerts:{USERINFO_PASSWORD}@hooks.example.com/services/T0001/{HOOK_TOKEN}?token={QUERY_TOKEN}"
    pieces = set(secret_pieces(url))
    assert {url, USERINFO_PASSWORD, HOOK_TOKEN, QUERY_TOKEN} <= pieces
    assert f"/services/T0001/{HOOK_TOKEN}?token={QUERY_TOKEN}" in pieces
    # Words of the path are not secrets: masking them would blank out unrelated text.
    assert "services" not in pieces and "T0001" not in pieces
    text = f"HTTP 404 from hooks.example.com: no hook {HOOK_TOKEN} (token={QUERY_TOKEN}) for services"
    assert scrub(text, pieces) == "HTTP 404 from hooks.example.com: no hook *** (token=***) for services"
    # PagerDuty's public endpoint is not a secret; the routing key is.
    pd = ReceiverConfig(
        "pd", "pagerduty", (("routing_key", ROUTING_KEY), ("url", "https://events.pagerduty.com/v2/enqueue"))
    )
    assert receiver_secrets(pd) == (ROUTING_KEY,)


def test_policy_reads_every_receiver_secret_from_env_or_file_only(tmp_path: Path) -> None:
    from alerts.policy import SETTINGS, PolicyErrors, load_policy
    from alerts.redact import SECRET_SETTINGS

    # Every setting the policy treats as secret is masked by the receivers, and the reverse.
    assert {s.name for specs in SETTINGS.values() for s in specs if s.secret} == SECRET_SETTINGS
    (tmp_path / "token").write_text(ROUTING_KEY + "\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("receivers:\n  - name: hook\n    webhook: {url_env: HOOK, bearer_token_file: token}\n")
    loaded = load_policy(policy, {"HOOK": f"https://hooks.example.com/h/{HOOK_TOKEN}"})
    assert dict(loaded.receivers[0].settings)["bearer_token"] == ROUTING_KEY
    assert {ROUTING_KEY, HOOK_TOKEN} <= set(loaded.secrets())
    policy.write_text(
        f"receivers:\n  - name: hook\n    webhook: {{url_env: HOOK, bearer_token: {ROUTING_KEY}}}\n"
    )
    with pytest.raises(PolicyErrors) as refused:
        load_policy(policy, {"HOOK": "https://hooks.example.com/h"})
    assert "must not be written in clear: use bearer_token_env" in str(refused.value.errors[0])
    assert_no_secret(str(refused.value.errors[0]), "the policy error", (ROUTING_KEY,))


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_handler_masks_messages_arguments_fields_and_tracebacks(fmt: str) -> None:
    registry = secrets.SecretRegistry()
    registry.add(ROUTING_KEY, "ab1")  # under 4 characters: not registered (it would mask "tab1e")
    assert len(registry) == 1 and registry.redact("tab1e ab1") == "tab1e ab1"
    out = io.StringIO()
    logger = logging.getLogger(f"test_secrets.{fmt}")
    logger.propagate = False
    logger.addHandler(logs.handler(fmt, stream=out, secrets=registry))
    logger.setLevel(logging.INFO)
    try:
        logger.warning("key %s rejected", ROUTING_KEY, extra={"key": ROUTING_KEY, "attempt": 3})
        logger.info("store at http://sloscope:%s@ch.internal:8123/db", "not-registered-pw")
        try:
            raise RuntimeError(f"refused routing key {ROUTING_KEY}")
        except RuntimeError:
            logger.exception("delivery crashed")
    finally:
        logger.handlers.clear()
    text = out.getvalue()
    assert_no_secret(text, f"the {fmt} log", (ROUTING_KEY, "not-registered-pw"))
    assert "key *** rejected" in text and "sloscope:***@ch.internal:8123" in text
    assert "RuntimeError: refused routing key ***" in text
    if fmt == "json":
        first = json.loads(text.splitlines()[0])
        assert (first["key"], first["attempt"]) == ("***", 3)  # numbers stay numbers


# -- alerting end to end -------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """Answers every POST with ``status`` and a body quoting what it got, as careless servers do."""

    status = 500
    authorization: list[str | None]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.authorization.append(self.headers.get("Authorization"))
        if self.status == 400:
            key = json.loads(raw).get("routing_key", "")
            reply = json.dumps({"status": "invalid event", "errors": [f"routing_key {key} is not active"]})
        else:
            reply = (
                f"upstream failed: POST {self.path} HTTP/1.1 (Authorization: {self.headers['Authorization']})"
            )
        data = reply.encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def echo_server(status: int) -> Iterator[tuple[str, list[str | None]]]:
    """The server's base URL, and the Authorization header of every request it got."""
    seen: list[str | None] = []
    handler = type("Handler", (_Echo,), {"status": status, "authorization": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def failing_spans() -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "secrets-pay"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_secrets")
    for m in range(12):
        for i in range(10):
            start_ns = (START_S + m * MINUTE + i * 5) * 10**9
            span = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=start_ns)
            if i < 5:
                span.set_status(Status(StatusCode.ERROR, "declined"))
            span.end(end_time=start_ns + 10_000_000)
    provider.shutdown()
    return list(exporter.get_finished_spans())


@contextlib.contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """sloscope's own log handler (JSON, the process's secret registry) on the root logger."""
    out = io.StringIO()
    handler = logs.handler("json", stream=out)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_failing_receivers_leak_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "slos.yaml").write_text(SPEC)
    (tmp_path / "policy.yaml").write_text(POLICY)
    closed = free_port()
    (tmp_path / "down-url.txt").write_text(f"http://alerts:{DOWN_PASSWORD}@127.0.0.1:{closed}/notify\n")
    monkeypatch.setattr(SloscopeServer, "_start_scheduler", lambda self: None)  # the test evaluates
    with echo_server(500) as (hook, hook_auth), echo_server(400) as (pager, _), captured_log() as log:
        hook_with_userinfo = hook.replace("http://", f"http://alerts:{USERINFO_PASSWORD}@")
        monkeypatch.setenv(
            "SECRETS_TEST_HOOK_URL", f"{hook_with_userinfo}/services/T0001/{HOOK_TOKEN}?token={QUERY_TOKEN}"
        )
        monkeypatch.setenv("SECRETS_TEST_PD_URL", f"{pager}/v2/enqueue")
        monkeypatch.setenv("SECRETS_TEST_PD_KEY", ROUTING_KEY)
        settings = {"slos": str(tmp_path / "slos.yaml"), "notification_policy": str(tmp_path / "policy.yaml")}
        with in_process(tmp_path / "data", **settings) as server:
            app = server.server
            assert app.alerting is not None and app.alerting.deliveries is not None
            app.alerting.deliveries.retry = RetryPolicy(base_s=0.05, max_s=0.1, max_attempts=2, jitter=0)
            exporter = OTLPSpanExporter(endpoint=f"{server.otlp}/v1/traces", timeout=10)
            try:
                assert exporter.export(failing_spans()) == SpanExportResult.SUCCESS
            finally:
                exporter.shutdown()
            server.drain()
            app.evaluate_slos(FIRES_AT)
            assert app.alerting.deliveries.wait_idle(20)

            metrics = httpx.get(f"{server.api}/metrics", timeout=10).text
            listed = httpx.get(f"{server.api}/api/v1/incidents", timeout=10).json()["incidents"]
            assert {i["receiver"] for i in listed} == {"hook", "down", "pager"}
            details = {
                i["receiver"]: httpx.get(f"{server.api}/api/v1/incidents/{i['id']}", timeout=10)
                for i in listed
            }
            pages = {
                i["receiver"]: httpx.get(f"{server.api}/incidents/{i['id']}", timeout=10) for i in listed
            }
            ready = httpx.get(f"{server.api}/readyz", timeout=10).text
            # The policy's secrets are in the process's registry: any log line naming them is masked.
            logging.getLogger("test_secrets").warning(
                "hook %s, key %s", os.environ["SECRETS_TEST_HOOK_URL"], ROUTING_KEY
            )

    # Every receiver failed, and the errors that say why are on the incident, masked.
    errors = {}
    for receiver, response in details.items():
        assert response.status_code == 200, response.text
        timeline = response.json()["timeline"]
        errors[receiver] = [d["error"] for e in timeline for d in e.get("deliveries", []) if not d["ok"]]
        assert_no_secret(response.text, f"GET /api/v1/incidents/{{id}} of {receiver}")
    # The URL's userinfo went as basic auth; the server quoted the request target and the header back.
    assert hook_auth == [BASIC, BASIC]
    assert (
        errors["hook"]
        == [
            f"HTTP 500 from 127.0.0.1:{hook.rsplit(':', 1)[1]}: upstream failed: POST *** HTTP/1.1 "
            "(Authorization: Basic ***)"
        ]
        * 2
    )
    assert errors["pager"] == [
        "HTTP 400 from 127.0.0.1:"
        + pager.rsplit(":", 1)[1]
        + ': {"status": "invalid event", "errors": ["routing_key *** is not active"]}'
    ]
    assert errors["down"] and all("cannot reach 127.0.0.1:" in e for e in errors["down"])
    for receiver, page in pages.items():
        assert page.status_code == 200
        assert "HTTP 500" in page.text or "HTTP 400" in page.text or "cannot reach" in page.text
        assert_no_secret(page.text, f"the incident page of {receiver}")
    assert 'sloscope_notification_attempts_total{outcome="error",receiver="hook"} 2.0' in metrics
    assert_no_secret(metrics, "/metrics")
    assert_no_secret(ready, "/readyz")
    text = log.getvalue()
    assert "gave up after 2 attempts" in text and "failed, not retryable" in text  # it did log the failures
    assert '"message": "hook ***, key ***"' in text
    assert_no_secret(text, "the log")


# -- ClickHouse ------------------------------------------------------------------------------------------


def test_clickhouse_password_from_a_file_reaches_the_server_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "ch-password").write_text(CH_PASSWORD + "\n")
    shim = ChShim(tmp_path / "shim")
    url = shim.start()
    stopped = False
    try:
        with captured_log() as log:
            overrides = {
                "clickhouse_url": f"{url}/default",
                "clickhouse_user": "sloscope",
                "clickhouse_password_file": str(tmp_path / "ch-password"),
            }
            with in_process(tmp_path / "data", **overrides) as server:
                assert server.server.settings.clickhouse_password == CH_PASSWORD
                assert CH_PASSWORD not in repr(server.server.settings)
                sent = {(s.user, s.password) for s in shim.log}
                assert sent == {("sloscope", CH_PASSWORD)}  # every statement authenticated with it
                shim.stop()
                stopped = True
                ready = httpx.get(f"{server.api}/readyz", timeout=30)
                # Anything logging the settings' password is masked by the handler.
                logging.getLogger("test_secrets").warning("password was %s", CH_PASSWORD)
    finally:
        if not stopped:
            shim.stop()
    assert ready.status_code == 503 and "store unreachable" in ready.text
    assert_no_secret(ready.text, "/readyz", (CH_PASSWORD,))
    assert "password was ***" in log.getvalue()
    assert_no_secret(log.getvalue(), "the log", (CH_PASSWORD,))


def test_serve_against_a_closed_clickhouse_port_does_not_print_the_password(tmp_path: Path) -> None:
    url = f"http://sloscope:{CH_PASSWORD}@127.0.0.1:{free_port()}/default"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sloscope",
            "serve",
            "--clickhouse-url",
            url,
            "--log-level",
            "DEBUG",
            "--data-dir",
            str(tmp_path / "data"),
            "--api-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "cannot connect to ClickHouse at http://sloscope:***@127.0.0.1:" in output
    assert_no_secret(output, "sloscope serve's output", (CH_PASSWORD,))


def test_clickhouse_password_settings_conflicts_name_the_setting(tmp_path: Path) -> None:
    from sloscope.settings import SettingsError, load

    (tmp_path / "pw").write_text(CH_PASSWORD)
    url = "http://127.0.0.1:8123/default"
    with pytest.raises(SettingsError, match=r"^clickhouse_password_file: give the password in .* not both"):
        load(
            {"clickhouse_url": url, "clickhouse_password_file": str(tmp_path / "pw")},
            environ={"SLOSCOPE_CLICKHOUSE_PASSWORD": "other"},
        )
    with pytest.raises(SettingsError, match=r"^clickhouse_password: the password is also in clickhouse_url"):
        load(
            {"clickhouse_url": "http://u:p@127.0.0.1:8123/"},
            environ={"SLOSCOPE_CLICKHOUSE_PASSWORD": "other"},
        )
    with pytest.raises(SettingsError, match=r"^clickhouse_password_file: cannot read"):
        load({"clickhouse_url": url, "clickhouse_password_file": str(tmp_path / "missing")}, environ={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match=r"^clickhouse_password_file: .* is empty"):
        load({"clickhouse_url": url, "clickhouse_password_file": str(tmp_path / "empty")}, environ={})
    s = load({"clickhouse_url": url}, environ={"SLOSCOPE_CLICKHOUSE_PASSWORD": CH_PASSWORD})
    assert s.clickhouse_password == CH_PASSWORD and CH_PASSWORD not in repr(s)
