"""A notification decided but never delivered (its receiver was down until the server stopped) is
sent by the next leader, once, with the same id; a delivered one is not sent again."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until

from alerts import store
from alerts.delivery import RetryPolicy
from alerts.policy import load_policy
from alerts.service import Alerting
from slo import evaluator
from slo.model import AlertPolicy, BurnRule, Slo, SpanSli, Window
from slo.series import MinuteCounts
from store import migrations
from store.embedded import EmbeddedBackend

T0 = 1_800_000_000 // 3600 * 3600
MIN = 60
SLO = Slo(
    "checkout",
    "shop",
    Decimal("99"),
    SpanSli(bad_error=True),
    Window(rolling_s=86_400),
    alerting=AlertPolicy((BurnRule("page", 10 * MIN, 2 * MIN, Fraction(10)),)),
)


class Hook:
    """A webhook receiver that answers 503 until told to be up."""

    def __init__(self) -> None:
        self.up = False
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 200 if hook.up else 503
                if hook.up:
                    hook.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture()
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()


def _results(at_index: int) -> list:
    total = np.full(120, 100.0)
    bad = np.zeros(120)
    bad[60:70] = 20
    times = evaluator.steps(T0, T0 + 119 * MIN, MIN)
    run = evaluator.backtest_counts(SLO, {(): MinuteCounts(T0, total, bad)}, times)
    return [run.groups[0].instance(SLO, at_index)]


def test_an_undelivered_trigger_is_sent_by_the_next_leader(tmp_path: Path, hook: Hook) -> None:
    backend = EmbeddedBackend(tmp_path / "store")
    migrations.migrate(backend)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "route: {receiver: hook, group_wait: 0s, group_interval: 5m, repeat_interval: 4h}\n"
        "receivers: [{name: hook, webhook: {url_env: HOOK}}]\n"
    )
    policy = load_policy(policy_file, environ={"HOOK": hook.url})
    once = RetryPolicy(base_s=0, max_s=0, max_attempts=1, jitter=0)
    try:
        first = Alerting(backend, policy, evaluator_id="first", retry=once, clock=lambda: T0 + 66 * MIN)
        # The page fires at minute 66 (see tests/test_slo_backtest_alerts.py): a trigger is decided.
        [trigger] = first.process([SLO], _results(66), T0 + 66 * MIN)
        assert first.deliveries is not None and first.deliveries.wait_idle(10)
        assert store.delivered_ids(backend, [trigger.id]) == set()  # the receiver was down
        first.close()

        hook.up = True
        second = Alerting(backend, policy, evaluator_id="second", retry=once, clock=lambda: T0 + 67 * MIN)
        assert second.process([SLO], _results(67), T0 + 67 * MIN) == []  # nothing new decided at 67
        wait_until(lambda: store.delivered_ids(backend, [trigger.id]) == {trigger.id}, timeout=10)
        assert len(hook.received) == 1 and hook.received[0]["status"] == "firing"
        second.close()

        # A third leader finds it delivered: it is not sent again.
        third = Alerting(backend, policy, evaluator_id="third", retry=once, clock=lambda: T0 + 68 * MIN)
        third.process([SLO], _results(68), T0 + 68 * MIN)
        assert third.deliveries is not None and third.deliveries.wait_idle(10)
        assert len(hook.received) == 1
        third.close()
    finally:
        backend.close()


def test_live_alerting_and_the_backtest_decide_the_same_notifications(tmp_path: Path, hook: Hook) -> None:
    from alerts.backtest import replay

    backend = EmbeddedBackend(tmp_path / "store")
    migrations.migrate(backend)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "route: {receiver: hook, group_wait: 0s, group_interval: 5m, repeat_interval: 10m}\n"
        "receivers: [{name: hook, webhook: {url_env: HOOK}}]\n"
    )
    policy = load_policy(policy_file, environ={"HOOK": hook.url})
    hook.up = True
    try:
        live = Alerting(backend, policy, evaluator_id="live", clock=lambda: T0)
        sent = []
        for minute in range(0, 120):
            sent += live.process([SLO], _results(minute), T0 + minute * MIN)
        live.close()
    finally:
        backend.close()
    times = evaluator.steps(T0, T0 + 119 * MIN, MIN)
    total, bad = np.full(120, 100.0), np.zeros(120)
    bad[60:70] = 20
    run = evaluator.backtest_counts(SLO, {(): MinuteCounts(T0, total, bad)}, times)
    replayed = replay([run], policy)
    assert [(n.id, n.kind, n.at_s) for n in sent] == [(n.id, n.kind, n.at_s) for n in replayed.notifications]
    assert [n.kind for n in sent] == ["trigger", "resolve"]
