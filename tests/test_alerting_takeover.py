"""Who decides alerts after an evaluator dies (alerts/service.py, the lease settings of sloscope/app.py).

Embedded store: one process holds the data directory, so a process restarted after a crash leads at
its first evaluation, over the dead lease its predecessor left. With a ClickHouse server the lease
lasts one and a half evaluation intervals: a follower takes over from a crashed leader at its second
evaluation after the leader's last beat, and not at the first (a late cycle of a live leader hands
nothing over).

The real chDB engine stores the leases (the same SQL a ClickHouse server runs); the clock is
simulated, 10 s past each evaluated minute as the scheduler runs them, from a fixed origin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alerts import store
from alerts.dispatch import DispatchState
from alerts.policy import default_policy
from alerts.service import Alerting
from alerts.state import AlertRecord
from slo.model import Slo
from sloscope.app import exclusive_evaluator, lease_ttl_s
from sloscope.settings import Settings
from store import migrations
from store.embedded import EmbeddedBackend
from tests.test_alert_state import PAGE, _result, _slo

BASE_S = 1_700_000_040  # a whole minute; nothing depends on it being in the past or the future
INTERVAL_S = 60


def at(minute: int) -> int:
    return BASE_S + minute * 60


def _clock(now: list[float]) -> Callable[[], float]:
    return lambda: now[0]


def test_a_process_restarted_after_a_crash_on_the_embedded_store_decides_at_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert exclusive_evaluator(settings)
    slo = _slo()
    page_id = next(r.id for r in _records_after_firing(tmp_path, settings, slo) if r.severity == "page")
    # The restarted process, a minute later: the crashed one's heartbeat is 60 s old, live under any
    # lease. The page's condition is gone and it has no keep_firing_for: it resolves now.
    backend = EmbeddedBackend(tmp_path / "store")
    try:
        now = [float(at(2) + 10)]
        restarted = Alerting(
            backend,
            default_policy(),
            evaluator_id="restarted",  # sorts after "crashed", and started later
            lease_ttl_s=lease_ttl_s(settings.slo_interval),
            exclusive=exclusive_evaluator(settings),
            clock=_clock(now),
        )
        restarted.process([slo], [_result(slo, "/a", set())], at(2))
        page = store.load_alerts(backend)[page_id]
        assert (page.state, page.resolved_at_s) == ("resolved", at(2))
        saved = store.load_dispatch_state(backend)
        assert saved is not None and DispatchState.from_json(saved).at_s == at(2)
        # The dead lease is gone: the table names the evaluator that leads.
        assert store.leader(backend, int(now[0] * 1000), 3600 * 1000) == "restarted"
        restarted.close()
    finally:
        backend.close()


def _records_after_firing(root: Path, settings: Settings, slo: Slo) -> list[AlertRecord]:
    """A process that pages at minute 1 and then dies: it never releases its lease."""
    backend = EmbeddedBackend(root / "store")
    try:
        migrations.migrate(backend)
        now = [float(at(1) + 10)]
        crashed = Alerting(
            backend,
            default_policy(),
            evaluator_id="crashed",
            lease_ttl_s=lease_ttl_s(settings.slo_interval),
            exclusive=exclusive_evaluator(settings),
            clock=_clock(now),
        )
        crashed.process([slo], [_result(slo, "/a", {PAGE})], at(1))
        records = list(store.load_alerts(backend).values())
        assert {(r.severity, r.state) for r in records} >= {("page", "firing")}
        return records
    finally:
        backend.close()  # the crash: no close() of the Alerting, so no release of its lease


def test_with_a_server_a_follower_takes_over_a_crashed_leader_within_two_intervals(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, clickhouse_url="http://127.0.0.1:8123", slo_interval=INTERVAL_S)
    assert not exclusive_evaluator(settings)  # several processes may evaluate: the lease decides
    ttl = lease_ttl_s(settings.slo_interval)
    assert INTERVAL_S < ttl <= 2 * INTERVAL_S
    assert 300 < lease_ttl_s(300) <= 600  # scales with the interval
    backend = EmbeddedBackend(tmp_path / "store")  # stands in for the server: the same SQL
    try:
        migrations.migrate(backend)
        now = [float(at(1) + 10)]
        options = {"lease_ttl_s": ttl, "exclusive": exclusive_evaluator(settings), "clock": _clock(now)}
        leader = Alerting(backend, default_policy(), evaluator_id="a", **options)  # type: ignore[arg-type]
        now[0] += 1
        follower = Alerting(backend, default_policy(), evaluator_id="b", **options)  # type: ignore[arg-type]
        assert leader.is_leader() and not follower.is_leader()
        # The leader dies after its beat at minute 1. One interval later its lease still holds: a
        # leader whose cycle runs late keeps the lead, so nothing is decided twice.
        now[0] = at(2) + 10
        assert not follower.is_leader()
        # Two intervals later the follower leads, even if it looks a few seconds earlier in its cycle
        # than the leader beat in its last one.
        now[0] = at(3) + 5
        assert follower.is_leader()
        assert store.leader(backend, int(now[0] * 1000), ttl * 1000) == "b"
    finally:
        backend.close()
