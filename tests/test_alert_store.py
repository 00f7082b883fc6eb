"""Alerting state in the real chDB engine (alerts/store.py): versions, leases, silences, deliveries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alerts import store
from alerts.model import Alert, Matcher, Notification, Silence, Transition
from alerts.state import AlertRecord
from store import migrations
from store.embedded import EmbeddedBackend


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    b = EmbeddedBackend(tmp_path_factory.mktemp("alert-store") / "store")
    migrations.migrate(b)
    yield b
    b.close()


def test_the_newest_version_of_an_alert_wins(backend: EmbeddedBackend) -> None:
    group = (("http.route", "/a"),)
    first = AlertRecord("a1", "checkout", "page", group, "firing", 600, None, None, 600)
    later = AlertRecord("a1", "checkout", "page", group, "firing", 600, None, 720, 720)
    last = AlertRecord("a1", "checkout", "page", group, "resolved", 600, 900, None, 900)
    for record in (first, last, later):  # inserted out of order
        store.save_alerts(backend, [record])
    assert store.load_alerts(backend) == {"a1": last}
    store.save_transitions(backend, [Transition("a1", 600, "inactive", "firing")], {"a1": first})
    store.save_transitions(backend, [Transition("a1", 900, "firing", "resolved")], {"a1": last})
    assert [(t["at_s"], t["to_state"], t["group_labels"]) for t in store.transitions(backend, ["a1"])] == [
        (600, "firing", {"http.route": "/a"}),
        (900, "resolved", {"http.route": "/a"}),
    ]


def test_the_oldest_live_evaluator_leads(backend: EmbeddedBackend) -> None:
    store.heartbeat(backend, "b", started_at_ms=2_000, now_ms=100_000)
    store.heartbeat(backend, "a", started_at_ms=1_000, now_ms=100_000)
    assert store.leader(backend, now_ms=100_500, ttl_ms=60_000) == "a"
    # a stops beating: b takes over once a's lease is older than the TTL.
    store.heartbeat(backend, "b", started_at_ms=2_000, now_ms=170_000)
    assert store.leader(backend, now_ms=170_500, ttl_ms=60_000) == "b"


def test_silences_are_versioned_and_filtered_by_time(backend: EmbeddedBackend) -> None:
    silence = Silence(
        "s1", (Matcher("slo", "=", "checkout"), Matcher("severity", "=~", "page|ticket")), 100, 200
    )
    store.save_silence(backend, silence, updated_at_ms=1)
    assert store.load_silences(backend, active_at_s=150) == [silence]
    assert store.load_silences(backend, active_at_s=200) == []
    expired = Silence("s1", silence.matchers, 100, 120)
    store.save_silence(backend, expired, updated_at_ms=2)
    assert store.load_silences(backend) == [expired]


def test_notifications_deliveries_and_acknowledgements(backend: EmbeddedBackend) -> None:
    alert = Alert("a1", "checkout", "shop", "page", (), (("slo", "checkout"),), "firing", 600)
    note = Notification("n1", "pager", "trigger", "i1", 660, (), (alert,))
    store.save_notifications(backend, [note])
    store.save_notifications(backend, [note])  # decided twice (two evaluators): one row read back
    assert store.known_notifications(backend, ["n1", "n2"]) == {"n1"}
    store.record_delivery(backend, note, 1, 661_000, False, "HTTP 503")
    assert store.delivered_ids(backend, ["n1"]) == set()
    store.record_delivery(backend, note, 2, 663_000, True, "")
    assert store.delivered_ids(backend, ["n1"]) == {"n1"}
    [stored] = store.incident_notifications(backend, "i1")
    assert stored["kind"] == "trigger" and stored["delivered"]
    assert [(d["attempt"], d["ok"], d["error"]) for d in stored["deliveries"]] == [
        (1, False, "HTTP 503"),
        (2, True, None),
    ]
    store.acknowledge(backend, "i1", 700_000, "ana", "looking")
    assert store.acknowledgements(backend)["i1"] == {"at": 700.0, "by": "ana", "comment": "looking"}


def test_incidents_open_first(backend: EmbeddedBackend) -> None:
    base = {
        "receiver": "pager",
        "group_labels": {"slo": "x"},
        "alert_ids": ["a1"],
        "slos": ["x"],
        "services": ["shop"],
        "severities": ["page"],
    }
    store.save_incidents(
        backend, [{**base, "id": "old", "status": "resolved", "opened_at_s": 100, "closed_at_s": 200}], 200
    )
    store.save_incidents(backend, [{**base, "id": "new", "status": "open", "opened_at_s": 50}], 300)
    store.save_incidents(
        backend, [{**base, "id": "newer", "status": "resolved", "opened_at_s": 400, "closed_at_s": 500}], 500
    )
    assert [i["id"] for i in store.list_incidents(backend)] == ["new", "newer", "old"]
    assert [i["id"] for i in store.list_incidents(backend, "resolved")] == ["newer", "old"]
    assert store.get_incident(backend, "old")["closed_at_s"] == 200
    assert store.get_incident(backend, "missing") is None
    assert store.load_dispatch_state(backend) is None
    store.save_dispatch_state(backend, 60, '{"v": 1}')
    store.save_dispatch_state(backend, 120, '{"v": 2}')
    assert store.load_dispatch_state(backend) == '{"v": 2}'
