"""Live alerting end to end: an outage sent through the OTLP/HTTP port of a real in-process server
pages a webhook and a PagerDuty receiver (real HTTP servers on 127.0.0.1) exactly once, repeats only
after ``repeat_interval``, resolves once; a restart mid-incident sends nothing new and keeps the
incident; the alerting API shows alerts, incidents, their timelines, acknowledgements and silences.

The wall-clock scheduler is switched off: the tests drive ``evaluate_slos(at)`` minute by minute over
a stream written on a minute grid in the recent past, so every notification minute is known by hand.

The stream (real OpenTelemetry SDK spans, exported by the SDK's OTLP/HTTP exporter):

* ``checkout`` (objective 99: b = 0.01, window 1d; page rule 10m/2m, factor 10), minutes 0..49 from
  CHECKOUT_S: 6 ``POST /pay`` and 4 ``GET /cart`` SERVER spans a minute; in minutes 10..34 (the
  outage) 5 of the 6 ``POST /pay`` fail. A burn rate above 10 is a bad share above 0.1.
  At ``at(m)`` the 10m window holds minutes m-10..m-1 (100 requests): ``at(12)`` has 10 bad, exactly
  the factor, so nothing fires; ``at(13)`` has 15 bad (burn 15) and the 2m window 10 of 20 (burn 50):
  the page fires. ``at(36)``'s 2m window still holds minute 34 (5 of 20, burn 25); ``at(37)``'s holds
  none: it resolves.
* ``search`` (page rule 15m/5m, factor 10), the last 30 minutes before the test started: 10
  ``GET /search`` spans a minute, 8 failing in minutes 10..29. It fires at ``search_at(12)`` (16 bad of
  120 in 15m, 16 of 50 in 5m) and still fires a few minutes after the stream's end (the silence test).

The policy (POLICY): group_wait 0s, group_interval 1m, repeat_interval 5m; pages go to ``pager``
(PagerDuty) and ``hook`` (webhook), one incident each. So the checkout trigger is at 13, repeats at
18, 23, 28, 33 and the resolve at 37 — except that the pager incident is acknowledged after the repeat
at 23, which stops its repeats (28 and 33) but not its resolve. Server 1 evaluates minutes 8..20;
server 2 (same data directory) evaluates 20 again and 21..40, then the search minutes.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from alerts import store
from alerts.dispatch import DispatchState
from alerts.model import alert_id
from sloscope.app import SloscopeServer
from tests.conftest import InProcess, in_process

MINUTE = 60
NOW_MIN = int(time.time()) // MINUTE * MINUTE
CHECKOUT_S = NOW_MIN - 2 * 3600
SEARCH_S = NOW_MIN - 30 * MINUTE
EXTERNAL = "http://sloscope.test:8080"
RUNBOOK = "https://runbooks.test/checkout/availability"
PAGE_ID = alert_id("checkout", "page", {})
SEARCH_PAGE_ID = alert_id("search", "page", {})

SPEC = """\
slos:
  - name: checkout
    service: checkout
    objective: 99
    window: 1d
    labels: {team: payments}
    sli: {spans: {bad: {error: true}}}
    annotations:
      runbook_url: https://runbooks.test/{{ service }}/availability
      dashboard_url: https://grafana.test/d/slo?var-slo={{ name }}
    alerting:
      rules:
        - {severity: page, long: 10m, short: 2m, factor: 10}
  - name: search
    service: search
    objective: 99
    window: 1d
    sli: {spans: {bad: {error: true}}}
    annotations: {runbook_url: "https://runbooks.test/search"}
    alerting:
      rules:
        - {severity: page, long: 15m, short: 5m, factor: 10}
"""

POLICY = f"""\
external_url: {EXTERNAL}
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 5m
  routes:
    - matchers: ['severity = page']
      receiver: pager
      continue: true
    - matchers: ['severity = page']
      receiver: hook
receivers:
  - name: hook
    webhook: {{url_env: ALERTING_TEST_HOOK_URL}}
  - name: pager
    pagerduty: {{routing_key_env: ALERTING_TEST_PD_KEY, url_env: ALERTING_TEST_PD_URL}}
"""
ROUTING_KEY = "R0UT1NGKEY-alerting"

#: What a script sends with a state-changing request that has no JSON body (see ui/auth.py).
SCRIPT = {"X-Requested-By": "test"}


def at(minute: int) -> int:
    """The checkout evaluation instant ``minute`` minutes into its stream (sees minutes < minute)."""
    return CHECKOUT_S + minute * MINUTE


def search_at(minute: int) -> int:
    return SEARCH_S + minute * MINUTE


def rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- receiving servers -------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    """A real HTTP server on 127.0.0.1 recording every POST and answering ``status``."""

    status: int = 200
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.requests)


@contextlib.contextmanager
def recording_server(status: int = 200) -> Iterator[Recorder]:
    rec = Recorder(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.requests.append(
                    Request(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
                )
            reply = b'{"status":"success"}'
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
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
        server.shutdown()
        server.server_close()


# -- the stream ----------------------------------------------------------------------------------


def _provider(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": "2.1.0"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _span(tracer: Any, name: str, route: str, start_s: int, bad: bool) -> None:
    start_ns = start_s * 10**9 + 4321
    span = tracer.start_span(name, kind=SpanKind.SERVER, start_time=start_ns)
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", 503 if bad else 200)
    if bad:
        span.set_status(Status(StatusCode.ERROR, "upstream unavailable"))
    span.end(end_time=start_ns + 15_000_000)


def checkout_spans() -> list[ReadableSpan]:
    provider, exporter = _provider("checkout")
    tracer = provider.get_tracer("test_alerting")
    for m in range(50):
        outage = 10 <= m < 35
        for i in range(6):
            _span(tracer, "POST /pay", "/pay", at(m) + i * 5, bad=outage and i < 5)
        for i in range(4):
            _span(tracer, "GET /cart", "/cart", at(m) + 30 + i * 5, bad=False)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def search_spans() -> list[ReadableSpan]:
    provider, exporter = _provider("search")
    tracer = provider.get_tracer("test_alerting")
    for m in range(30):
        for i in range(10):
            _span(tracer, "GET /search", "/search", search_at(m) + i * 5, bad=m >= 10 and i < 8)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def export(otlp: str, spans: list[ReadableSpan]) -> None:
    """Through the server's OTLP/HTTP port with the SDK's own exporter (protobuf over HTTP)."""
    exporter = OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=10)
    try:
        for i in range(0, len(spans), 200):
            assert exporter.export(spans[i : i + 200]) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


# -- the scenario ----------------------------------------------------------------------------------


@dataclass
class Seen:
    """A request a receiving server got, with the evaluation minute whose deliveries it belongs to."""

    at_s: int
    receiver: str
    body: Any
    headers: dict[str, str]


@dataclass
class World:
    hook: Recorder
    pager: Recorder
    failing_traces: set[str]
    server: InProcess | None = None
    seen: list[Seen] = field(default_factory=list)
    #: API answers captured at points of the scenario, by name.
    snaps: dict[str, Any] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=lambda: {"hook": 0, "pager": 0})

    @property
    def api(self) -> str:
        assert self.server is not None
        return self.server.api

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.api}{path}", params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def evaluate(self, at_s: int) -> list[Seen]:
        """One evaluation; waits (bounded) for its deliveries; returns the requests they made."""
        assert self.server is not None
        app = self.server.server
        app.evaluate_slos(at_s)
        # evaluate_slos logs failures instead of raising: the stored dispatcher state tells that
        # alerting ran as leader for this minute.
        saved = store.load_dispatch_state(app.backend)
        assert saved is not None and DispatchState.from_json(saved).at_s == at_s, f"alerting skipped {at_s}"
        assert app.alerting.deliveries is not None and app.alerting.deliveries.wait_idle(15)
        new: list[Seen] = []
        for name, rec in (("hook", self.hook), ("pager", self.pager)):
            requests = rec.snapshot()
            new += [Seen(at_s, name, r.body, r.headers) for r in requests[self._counts[name] :]]
            self._counts[name] = len(requests)
        self.seen += new
        return new

    def incidents(self, slo: str) -> dict[str, dict[str, Any]]:
        """The incidents of ``slo`` by receiver."""
        return {i["receiver"]: i for i in self.get("/api/v1/incidents")["incidents"] if slo in i["slos"]}


def webhook_alerts(seen: Seen) -> list[dict[str, Any]]:
    return seen.body["alerts"]


def slo_of(seen: Seen) -> str:
    if seen.receiver == "hook":
        (alert,) = seen.body["alerts"]
        return alert["labels"]["slo"]
    return seen.body["payload"]["custom_details"]["slo"]


def kind_of(seen: Seen) -> str:
    """trigger, repeat or resolve, as the receiving server can tell it (PagerDuty's event_action and
    the summary sloscope writes: 'burning fast', 'still burning fast', 'no longer burning')."""
    if seen.receiver == "hook":
        (alert,) = seen.body["alerts"]
        summary = alert["annotations"]["summary"]
        if alert["status"] == "resolved":
            assert seen.body["status"] == "resolved"
            return "resolve"
    else:
        summary = seen.body["payload"]["summary"]
        if seen.body["event_action"] == "resolve":
            return "resolve"
        assert seen.body["event_action"] == "trigger"
    return "repeat" if "still burning" in summary else "trigger"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("alerting")
    (root / "slos.yaml").write_text(SPEC)
    (root / "policy.yaml").write_text(POLICY)
    data = root / "data"
    settings = {"slos": str(root / "slos.yaml"), "notification_policy": str(root / "policy.yaml")}
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        hook = stack.enter_context(recording_server())
        pager = stack.enter_context(recording_server(status=202))
        # Secrets and URLs come from the environment, read when the server loads the policy.
        mp.setenv("ALERTING_TEST_HOOK_URL", f"{hook.url}/hook")
        mp.setenv("ALERTING_TEST_PD_URL", f"{pager.url}/v2/enqueue")
        mp.setenv("ALERTING_TEST_PD_KEY", ROUTING_KEY)
        # The tests drive the evaluations; the wall-clock scheduler would evaluate "now" at start-up
        # and so refuse every earlier minute afterwards.
        mp.setattr(SloscopeServer, "_start_scheduler", lambda self: None)
        checkout, search = checkout_spans(), search_spans()
        failing = {format(s.context.trace_id, "032x") for s in checkout if not s.status.is_ok}
        w = World(hook, pager, failing)

        with in_process(data, **settings) as first:
            w.server = first
            export(first.otlp, checkout + search)
            first.drain()
            for m in range(8, 21):
                w.evaluate(at(m))
                if m == 13:
                    w.snaps["alerts_firing"] = w.get("/api/v1/alerts")
            w.snaps["incidents_before_restart"] = w.incidents("checkout")

        with in_process(data, **settings) as second:
            w.server = second
            w.snaps["incidents_after_restart"] = w.incidents("checkout")
            w.snaps["restart_sent"] = {m: w.evaluate(at(m)) for m in (20, 21, 22)}
            w.snaps["repeat_after_restart"] = w.evaluate(at(23))
            pager_incident = w.incidents("checkout")["pager"]["id"]
            ack = httpx.post(
                f"{second.api}/api/v1/incidents/{pager_incident}/ack",
                json={"by": "alice", "comment": "on it"},
                timeout=10,
            )
            w.snaps["ack"] = (ack.status_code, ack.json())
            for m in range(24, 41):
                w.evaluate(at(m))
                if m == 37:
                    w.snaps["alerts_resolved"] = w.get("/api/v1/alerts")
            yield w


def sent(world: World, slo: str, receiver: str) -> list[tuple[int, str]]:
    """(minute into the checkout stream or instant, kind) of every request ``receiver`` got for ``slo``."""
    out = []
    for s in world.seen:
        if s.receiver == receiver and slo_of(s) == slo:
            out.append(((s.at_s - CHECKOUT_S) // MINUTE if slo == "checkout" else s.at_s, kind_of(s)))
    return out


# -- 1. the outage -----------------------------------------------------------------------------


def test_each_receiver_gets_one_trigger_repeats_on_the_interval_and_one_resolve(world: World) -> None:
    assert sent(world, "checkout", "hook") == [
        (13, "trigger"),
        (18, "repeat"),
        (23, "repeat"),
        (28, "repeat"),
        (33, "repeat"),
        (37, "resolve"),
    ]
    # The pager incident was acknowledged after the repeat at 23: no repeats at 28 and 33, but the
    # resolve is still sent.
    assert sent(world, "checkout", "pager") == [
        (13, "trigger"),
        (18, "repeat"),
        (23, "repeat"),
        (37, "resolve"),
    ]


def _first(world: World, receiver: str, kind: str) -> Seen:
    return next(
        s for s in world.seen if s.receiver == receiver and slo_of(s) == "checkout" and kind_of(s) == kind
    )


def _assert_attribution(world: World, data: dict[str, Any]) -> None:
    # The trigger's short window (2m before at(13): minutes 11 and 12): 10 of 12 POST /pay failed.
    top = data["contributors"][0]
    assert (top["operation"], top["http_route"], top["service_version"]) == ("POST /pay", "/pay", "2.1.0")
    assert (top["bad"], top["total"]) == (10, 12)
    assert (data["bad"], data["total"]) == (10, 20)
    assert all(c["operation"] != "GET /cart" or c["bad"] == 0 for c in data["contributors"])
    examples = data["examples"]
    assert 1 <= len(examples) <= 3
    for example in examples:
        assert example["operation"] == "POST /pay"
        assert example["trace_id"] in world.failing_traces


def test_webhook_trigger_carries_slo_burn_budget_links_and_attribution(world: World) -> None:
    trigger = _first(world, "hook", "trigger")
    body = trigger.body
    assert trigger.headers["content-type"] == "application/json"
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "hook"
    assert body["externalURL"] == EXTERNAL
    (alert,) = body["alerts"]
    assert alert["labels"] == {
        "alertname": "SLOBurnRate",
        "slo": "checkout",
        "service": "checkout",
        "severity": "page",
        "slo_instance": "checkout",  # an ungrouped SLO: one series, named after the SLO
        "team": "payments",
    }
    assert alert["startsAt"] == rfc3339(at(13)) and alert["endsAt"] == "0001-01-01T00:00:00Z"
    ann = alert["annotations"]
    assert ann["runbook_url"] == RUNBOOK
    assert ann["dashboard_url"] == "https://grafana.test/d/slo?var-slo=checkout"
    assert ann["sloscope_objective"] == "99%"
    assert ann["sloscope_burn_windows"] == "10m/2m" and ann["sloscope_burn_factor"] == "10"
    assert float(ann["sloscope_burn_rate_long"]) == pytest.approx(15)  # 15 bad of 100, b = 0.01
    assert float(ann["sloscope_burn_rate_short"]) == pytest.approx(50)  # 10 of 20
    # The 1d window at at(13) holds minutes 0..12: 130 requests, 15 bad: 1 - 15 / (0.01 * 130).
    assert float(ann["sloscope_error_budget_remaining"]) == pytest.approx(1 - 15 / 1.3, rel=1e-5)
    hook_incident = world.incidents("checkout")["hook"]["id"]
    assert ann["sloscope_incident_id"] == hook_incident
    assert ann["sloscope_incident_url"] == f"{EXTERNAL}/incidents/{hook_incident}"
    assert "POST /pay" in ann["sloscope_attribution"]
    _assert_attribution(world, json.loads(ann["sloscope_attribution_json"]))


def test_attribution_examples_are_failing_traces_in_the_store(world: World) -> None:
    data = json.loads(
        webhook_alerts(_first(world, "hook", "trigger"))[0]["annotations"]["sloscope_attribution_json"]
    )
    ids = [e["trace_id"] for e in data["examples"]]
    assert world.server is not None
    rows = world.server.rows(
        "SELECT lower(hex(trace_id)) AS t, name, status_code, service_name FROM spans"
        " WHERE lower(hex(trace_id)) IN {ids:Array(String)}",
        {"ids": ids},
    )
    assert {r["t"] for r in rows} == set(ids)
    assert {(r["name"], r["status_code"], r["service_name"]) for r in rows} == {
        ("POST /pay", "ERROR", "checkout")
    }
    # The examples come from the trigger's 2m window (minutes 11 and 12), most recent first.
    times = world.server.rows(
        "SELECT toUnixTimestamp(min(timestamp)) AS lo, toUnixTimestamp(max(timestamp)) AS hi FROM spans"
        " WHERE lower(hex(trace_id)) IN {ids:Array(String)}",
        {"ids": ids},
    )[0]
    assert at(11) <= times["lo"] and times["hi"] < at(13)


def test_pagerduty_events_share_one_dedup_key_and_carry_the_details(world: World) -> None:
    events = [s for s in world.seen if s.receiver == "pager" and slo_of(s) == "checkout"]
    assert [e.body["event_action"] for e in events] == ["trigger", "trigger", "trigger", "resolve"]
    assert {e.body["dedup_key"] for e in events} == {PAGE_ID}
    assert {e.body["routing_key"] for e in events} == {ROUTING_KEY}
    trigger = events[0].body
    payload = trigger["payload"]
    assert payload["summary"] == "[PAGE] checkout SLO burning fast (15.0x)"
    assert payload["severity"] == "critical" and payload["source"] == "checkout"
    assert payload["timestamp"] == rfc3339(at(13))
    d = payload["custom_details"]
    assert (d["slo"], d["service"], d["severity"], d["state"]) == ("checkout", "checkout", "page", "firing")
    assert d["objective"] == "99%"
    assert d["burn_rates"] == {"10m": pytest.approx(15), "2m": pytest.approx(50)}
    assert d["burn_rate_threshold"] == 10
    assert d["error_budget_remaining"] == f"{(1 - 15 / 1.3) * 100:.1f}%"
    pager_incident = world.incidents("checkout")["pager"]["id"]
    assert d["incident_url"] == f"{EXTERNAL}/incidents/{pager_incident}"
    assert d["runbook_url"] == RUNBOOK
    _assert_attribution(world, d["attribution"])
    assert {"href": RUNBOOK, "text": "Runbook"} in trigger["links"]
    assert {"href": f"{EXTERNAL}/incidents/{pager_incident}", "text": "Incident"} in trigger["links"]
    assert events[1].body["payload"]["summary"].startswith("[PAGE] checkout SLO still burning fast")
    resolve = events[-1].body
    assert resolve["payload"]["custom_details"]["resolved_at"] == rfc3339(at(37))
    assert resolve["payload"]["summary"] == "[PAGE] checkout SLO no longer burning (resolved)"


def test_webhook_resolve_says_when_it_ended(world: World) -> None:
    resolve = _first(world, "hook", "resolve").body
    assert resolve["status"] == "resolved"
    (alert,) = resolve["alerts"]
    assert alert["status"] == "resolved"
    assert alert["startsAt"] == rfc3339(at(13)) and alert["endsAt"] == rfc3339(at(37))
    assert alert["annotations"]["runbook_url"] == RUNBOOK


# -- 2. restart mid-incident ---------------------------------------------------------------------


def test_a_restart_mid_incident_sends_nothing_new_and_keeps_the_incident(world: World) -> None:
    before, after = world.snaps["incidents_before_restart"], world.snaps["incidents_after_restart"]
    assert set(before) == {"hook", "pager"}
    assert {r: i["id"] for r, i in after.items()} == {r: i["id"] for r, i in before.items()}
    assert all(i["status"] == "open" and i["opened_at_s"] == at(13) for i in after.values())
    # Minute 20 again (server 1 had evaluated it), 21 and 22: nothing; the repeat due at 23 is sent
    # once per receiver, by the new server, in the same incidents.
    assert world.snaps["restart_sent"] == {20: [], 21: [], 22: []}
    repeat = world.snaps["repeat_after_restart"]
    assert sorted((s.receiver, kind_of(s)) for s in repeat) == [("hook", "repeat"), ("pager", "repeat")]
    hook = next(s for s in repeat if s.receiver == "hook")
    assert hook.body["alerts"][0]["annotations"]["sloscope_incident_id"] == before["hook"]["id"]
    assert next(s for s in repeat if s.receiver == "pager").body["dedup_key"] == PAGE_ID
    assert world.incidents("checkout")["hook"]["id"] == before["hook"]["id"]


# -- 4. the alerting API -------------------------------------------------------------------------


def test_alerts_list_the_page_firing_then_resolved(world: World) -> None:
    (firing,) = [a for a in world.snaps["alerts_firing"]["alerts"] if a["slo"] == "checkout"]
    assert firing["id"] == PAGE_ID
    assert (firing["state"], firing["severity"], firing["service"]) == ("firing", "page", "checkout")
    assert firing["firing_since"] == at(13) and firing["resolved_at"] is None
    assert firing["annotations"]["runbook_url"] == RUNBOOK
    (resolved,) = [a for a in world.snaps["alerts_resolved"]["alerts"] if a["slo"] == "checkout"]
    assert (resolved["state"], resolved["firing_since"], resolved["resolved_at"]) == (
        "resolved",
        at(13),
        at(37),
    )
    assert [a["id"] for a in world.get("/api/v1/alerts", state="resolved")["alerts"]] == [PAGE_ID]


def test_incident_page_shows_transitions_notifications_and_deliveries(world: World) -> None:
    incidents = world.incidents("checkout")
    assert set(incidents) == {"hook", "pager"}
    for incident in incidents.values():
        assert incident["status"] == "resolved"
        assert (incident["opened_at_s"], incident["closed_at_s"]) == (at(13), at(37))
        assert incident["alert_ids"] == [PAGE_ID] and incident["services"] == ["checkout"]
        assert incident["url"] == f"{EXTERNAL}/incidents/{incident['id']}"
    assert world.get("/api/v1/incidents", status="open")["incidents"] == []

    page = world.get(f"/api/v1/incidents/{incidents['hook']['id']}")
    assert [a["id"] for a in page["alerts"]] == [PAGE_ID]
    alerts = [(e["at"], e["from_state"], e["to_state"]) for e in page["timeline"] if e["type"] == "alert"]
    assert alerts == [(at(13), "inactive", "firing"), (at(37), "firing", "resolved")]
    notes = [e for e in page["timeline"] if e["type"] == "notification"]
    assert [(n["at"], n["kind"], n["receiver"]) for n in notes] == [
        (at(13), "trigger", "hook"),
        *[(at(m), "repeat", "hook") for m in (18, 23, 28, 33)],
        (at(37), "resolve", "hook"),
    ]
    for n in notes:
        assert n["delivered"] is True and n["alert_ids"] == [PAGE_ID]
        assert [(d["attempt"], d["ok"], d["error"]) for d in n["deliveries"]] == [(1, True, None)]
    assert page["acknowledged"] is None
    times = [e["at"] for e in page["timeline"]]
    assert times == sorted(times)


def test_ack_stops_repeats_of_that_incident_only(world: World) -> None:
    status, body = world.snaps["ack"]
    pager = world.incidents("checkout")["pager"]
    assert status == 200
    assert body["incident"] == pager["id"]
    assert (body["acknowledged"]["by"], body["acknowledged"]["comment"]) == ("alice", "on it")
    assert pager["acknowledged"]["by"] == "alice"
    page = world.get(f"/api/v1/incidents/{pager['id']}")
    assert page["acknowledged"]["comment"] == "on it"
    # Repeats were due at 28 and 33 (5m after the last one): the unacknowledged hook incident got
    # them, the acknowledged pager incident did not; both got the resolve at 37.
    kinds = [(n["at"], n["kind"]) for n in page["timeline"] if n["type"] == "notification"]
    assert kinds == [(at(13), "trigger"), (at(18), "repeat"), (at(23), "repeat"), (at(37), "resolve")]


def test_a_silence_mutes_a_new_alert_until_it_is_expired(world: World) -> None:
    api = world.api
    created = httpx.post(
        f"{api}/api/v1/silences",
        json={
            "matchers": ["slo = search", 'severity =~ "page|ticket"'],
            "starts_at": rfc3339(search_at(0)),
            "duration": "2h",
            "created_by": "bob",
            "comment": "search migration",
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["matchers"] == ["slo = search", "severity =~ page|ticket"]
    assert (silence["starts_at"], silence["ends_at"]) == (search_at(0), search_at(0) + 7200)
    assert silence["active"] is True and silence["created_by"] == "bob"
    assert [s["id"] for s in world.get("/api/v1/silences")["silences"]] == [silence["id"]]

    assert world.evaluate(search_at(11)) == []  # not firing yet
    for m in (12, 13, 20, 29):
        assert world.evaluate(search_at(m)) == []  # firing, silenced
    (alert,) = [a for a in world.get("/api/v1/alerts", state="firing")["alerts"]]
    assert (alert["id"], alert["firing_since"]) == (SEARCH_PAGE_ID, search_at(12))
    incidents = world.incidents("search")
    assert set(incidents) == {"hook", "pager"} and all(i["status"] == "open" for i in incidents.values())
    page = world.get(f"/api/v1/incidents/{incidents['hook']['id']}")
    assert [e for e in page["timeline"] if e["type"] == "notification"] == []

    # A state-changing request from a script carries X-Requested-By (or a JSON body): ui/auth.py's CSRF check.
    expired = httpx.delete(f"{api}/api/v1/silences/{silence['id']}", headers=SCRIPT, timeout=10)
    assert expired.status_code == 200, expired.text
    ended = expired.json()["ends_at"]
    assert ended <= time.time() and expired.json()["active"] is False
    (listed,) = world.get("/api/v1/silences")["silences"]
    assert (listed["id"], listed["active"], listed["ends_at"]) == (silence["id"], False, ended)

    # The first evaluation after the expiry notifies the alert, which still fires, in its incident.
    after = world.evaluate((ended // MINUTE + 1) * MINUTE)
    assert sorted((s.receiver, slo_of(s), kind_of(s)) for s in after) == [
        ("hook", "search", "trigger"),
        ("pager", "search", "trigger"),
    ]
    hook = next(s for s in after if s.receiver == "hook")
    assert hook.body["alerts"][0]["annotations"]["sloscope_incident_id"] == incidents["hook"]["id"]
    assert next(s for s in after if s.receiver == "pager").body["dedup_key"] == SEARCH_PAGE_ID


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"duration": "2h"}).encode(), "matchers"),
        (json.dumps({"matchers": "slo = x", "duration": "2h"}).encode(), "matchers"),
        (json.dumps({"matchers": ["slo ~ x"], "duration": "2h"}).encode(), "matchers"),
        (json.dumps({"matchers": ["slo = x"], "duration": "soon"}).encode(), "duration"),
        (json.dumps({"matchers": ["slo = x"], "duration": "400d"}).encode(), "duration"),
        (json.dumps({"matchers": ["slo = x"]}).encode(), "duration"),
        (json.dumps({"matchers": ["slo = x"], "ends_at": "tomorrow"}).encode(), "ends_at"),
        (json.dumps({"matchers": ["slo = x"], "ends_at": "2001-01-01T00:00:00Z"}).encode(), "ends_at"),
        (
            json.dumps(
                {"matchers": ["slo = x"], "starts_at": "2030-01-01T00:00:00", "duration": "1h"}
            ).encode(),
            "starts_at",
        ),
    ],
)
def test_a_bad_silence_is_400_naming_the_field(world: World, body: bytes, field: str) -> None:
    before = world.get("/api/v1/silences")["silences"]
    response = httpx.post(
        f"{world.api}/api/v1/silences", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert world.get("/api/v1/silences")["silences"] == before


def test_unknown_ids_are_404_and_bad_parameters_400(world: World) -> None:
    api = world.api
    for response in (
        httpx.get(f"{api}/api/v1/incidents/no-such-incident", timeout=10),
        httpx.post(f"{api}/api/v1/incidents/no-such-incident/ack", json={"by": "x"}, timeout=10),
        httpx.delete(f"{api}/api/v1/silences/no-such-silence", headers=SCRIPT, timeout=10),
    ):
        assert response.status_code == 404, response.text
        assert "no-such-" in response.json()["detail"]
    incident = world.incidents("checkout")["hook"]["id"]
    bad_ack = httpx.post(f"{api}/api/v1/incidents/{incident}/ack", content=b"[1]", headers=SCRIPT, timeout=10)
    assert bad_ack.status_code == 400 and "JSON object" in bad_ack.json()["detail"]
    assert world.get(f"/api/v1/incidents/{incident}")["acknowledged"] is None
    for path, params, name in (
        ("/api/v1/alerts", {"state": "burning"}, "state"),
        ("/api/v1/incidents", {"status": "closed"}, "status"),
        ("/api/v1/incidents", {"limit": "0"}, "limit"),
    ):
        response = httpx.get(f"{api}{path}", params=params, timeout=10)
        assert response.status_code == 400 and response.json()["detail"].startswith(f"{name}:"), response.text
