"""Two evaluators on one store: two ``Alerting`` objects (evaluator ids ``evaluator-a`` and
``evaluator-b``), each on its own ServerBackend client of one ClickHouse HTTP endpoint (tests/chshim.py:
the real engine behind the server's HTTP protocol), process the same evaluation results minute by
minute. Only the leader sends; when it stops beating, the other takes over from the stored state
without sending the trigger again.

The stream is tests/test_alerting.py's checkout stream (outage in minutes 10..34: the page fires at
13 and resolves at 37), written through the store as the collector writes it; the policy sends
everything to one webhook with group_interval 1m and repeat_interval 5m. Both evaluators share one
simulated clock, 10 s past each evaluated minute (as the scheduler runs them), and a lease TTL of 90 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from prometheus_client import CollectorRegistry

from alerts import store
from alerts.model import Notification, alert_id
from alerts.policy import load_policy
from alerts.service import Alerting
from slo import evaluator
from slo import spec as slo_spec
from store import migrations
from store.otlp_writer import OtlpWriter
from store.server import ServerBackend
from tests.chshim import ChShim
from tests.test_alerting import SPEC, Recorder, at, checkout_spans, recording_server, rfc3339

POLICY = """\
external_url: http://sloscope.test:8080
route:
  receiver: hook
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 5m
receivers:
  - name: hook
    webhook: {url_env: HOOK_URL}
"""
LEASE_TTL_S = 90  # longer than the 60 s between evaluations, as sloscope/app.py sets it
PAGE_ID = alert_id("checkout", "page", {})


@dataclass
class Run:
    hook: Recorder
    #: minute -> notifications each evaluator's process() sent at that minute
    sent: dict[str, dict[int, list[Notification]]] = field(default_factory=lambda: {"a": {}, "b": {}})
    #: minute -> the requests the webhook got for that minute's deliveries
    requests: dict[int, list[Any]] = field(default_factory=dict)
    #: minute -> the leader recorded in the store after the minute's evaluations
    leaders: dict[int, str | None] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("evaluators")
    (root / "slos.yaml").write_text(SPEC)
    (root / "policy.yaml").write_text(POLICY)
    slos = [s for s in slo_spec.load_slos(root / "slos.yaml") if s.name == "checkout"]
    shim = ChShim(Path(root / "shim"))
    url = shim.start()
    backends = [ServerBackend(url + "/default"), ServerBackend(url + "/default")]
    try:
        with recording_server() as hook:
            migrations.migrate(backends[0])
            request = encode_spans(checkout_spans()).SerializeToString()
            OtlpWriter(backends[0], []).write("traces", [request], "alerting-evaluators")
            policy = load_policy(root / "policy.yaml", environ={"HOOK_URL": f"{hook.url}/hook"})
            now = [float(at(8) + 10)]

            def clock() -> float:
                return now[0]

            a = Alerting(
                backends[0], policy, CollectorRegistry(), evaluator_id="evaluator-a",
                lease_ttl_s=LEASE_TTL_S, clock=clock,
            )  # fmt: skip
            now[0] += 1  # b starts a second later: a is the older, so the leader
            b = Alerting(
                backends[1], policy, CollectorRegistry(), evaluator_id="evaluator-b",
                lease_ttl_s=LEASE_TTL_S, clock=clock,
            )  # fmt: skip
            out = Run(hook)
            seen = 0
            try:
                for m in range(8, 41):
                    now[0] = at(m) + 10
                    results = evaluator.evaluate(backends[0], slos, at(m))
                    # b (the follower) goes first: were it to decide too, its notifications would
                    # go out before a's, and only the lease can keep it quiet. a stops beating after
                    # minute 18 (hung, or its host lost): it is no longer called.
                    evaluators = (("b", b), ("a", a)) if m <= 18 else (("b", b),)
                    for name, alerting in evaluators:
                        out.sent[name][m] = alerting.process(slos, results, at(m))
                    for _, alerting in (("a", a), ("b", b)):
                        assert alerting.deliveries is not None and alerting.deliveries.wait_idle(15)
                    got = hook.snapshot()
                    out.requests[m] = [r.body for r in got[seen:]]
                    seen = len(got)
                    out.leaders[m] = store.leader(backends[1], int(now[0] * 1000), LEASE_TTL_S * 1000)
                yield out
            finally:
                a.close()
                b.close()
    finally:
        for backend in backends:
            backend.close()
        shim.stop()


def _kind(body: dict[str, Any]) -> str:
    (alert,) = body["alerts"]
    if alert["status"] == "resolved":
        return "resolve"
    return "repeat" if "still burning" in alert["annotations"]["summary"] else "trigger"


def test_while_both_beat_only_the_leader_sends(run: Run) -> None:
    assert all(run.leaders[m] == "evaluator-a" for m in range(8, 19))
    # b evaluated first every minute and still decided nothing: only a sent.
    assert all(run.sent["b"][m] == [] for m in range(8, 19))
    assert {m: [n.kind for n in s] for m, s in run.sent["a"].items() if s} == {
        13: ["trigger"],
        18: ["repeat"],
    }
    assert run.sent["a"][13][0].alerts[0].id == PAGE_ID
    # Counted at the receiving server: one request per notification, none from b.
    got = {m: [_kind(b) for b in bodies] for m, bodies in run.requests.items() if m <= 18 and bodies}
    assert got == {13: ["trigger"], 18: ["repeat"]}


def test_the_follower_takes_over_without_resending_the_trigger(run: Run) -> None:
    # a's last beat was 10 s past minute 18: at 19 it is 60 s old (within the 90 s TTL), so b still
    # follows and nobody decides; at 20 it is 120 s old and b leads, with nothing due.
    assert run.leaders[19] == "evaluator-a" and run.sent["b"][19] == []
    assert all(run.leaders[m] == "evaluator-b" for m in range(20, 41))
    assert run.sent["b"][20] == []  # leader now: no second trigger, no early repeat
    sent = {m: [n.kind for n in s] for m, s in run.sent["b"].items() if s}
    assert sent == {23: ["repeat"], 28: ["repeat"], 33: ["repeat"], 37: ["resolve"]}
    got = [(m, _kind(b)) for m, bodies in sorted(run.requests.items()) for b in bodies]
    assert got == [
        (13, "trigger"),
        (18, "repeat"),
        (23, "repeat"),
        (28, "repeat"),
        (33, "repeat"),
        (37, "resolve"),
    ]
    # One incident throughout: b went on with a's, loaded from the store.
    bodies = [b for m in sorted(run.requests) for b in run.requests[m]]
    assert len({b["alerts"][0]["annotations"]["sloscope_incident_id"] for b in bodies}) == 1
    assert {b["alerts"][0]["labels"]["slo"] for b in bodies} == {"checkout"}
    resolve = run.requests[37][0]["alerts"][0]
    assert (resolve["startsAt"], resolve["endsAt"]) == (rfc3339(at(13)), rfc3339(at(37)))
    attribution = json.loads(run.requests[13][0]["alerts"][0]["annotations"]["sloscope_attribution_json"])
    assert attribution["contributors"][0]["operation"] == "POST /pay"
