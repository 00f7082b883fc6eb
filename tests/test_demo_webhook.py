"""The demo's webhook log and its policy: a notification lands as one JSON line in a file."""

from __future__ import annotations

from pathlib import Path

import httpx

from alerts.policy import load_policy
from sloscope.demo_webhook import WebhookLog

ROOT = Path(__file__).resolve().parents[1]


def test_each_delivery_is_one_json_line(tmp_path: Path) -> None:
    log = WebhookLog(tmp_path / "demo-webhook.log")
    try:
        assert (
            httpx.post(log.url, json={"status": "firing", "alerts": [{"labels": {"slo": "x"}}]}).status_code
            == 200
        )
        assert httpx.post(log.url, json={"status": "resolved"}).status_code == 200
        assert httpx.post(log.url, content=b"not json").status_code == 400
    finally:
        log.close()
    lines = (tmp_path / "demo-webhook.log").read_text().splitlines()
    assert lines == ['{"status":"firing","alerts":[{"labels":{"slo":"x"}}]}', '{"status":"resolved"}']


def test_the_demo_policy_sends_everything_to_the_webhook_log() -> None:
    policy = load_policy(
        ROOT / "examples/demo/policy.yaml", environ={"SLOSCOPE_DEMO_WEBHOOK_URL": "http://127.0.0.1:1/w"}
    )
    [receiver] = policy.receivers
    assert receiver.kind == "webhook" and receiver.setting_map["url"] == "http://127.0.0.1:1/w"
    assert policy.route.receiver == receiver.name
