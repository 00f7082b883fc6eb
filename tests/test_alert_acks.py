"""Every acknowledgement of an incident is kept (migration 0013), in the real chDB engine; the latest is
still what stops repeats and what the lists show. Also the silence expiry rules shared by the incident
page and ``DELETE /api/v1/silences/{id}``, and the burn-rate history of an SLO over a span."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from alerts import store
from alerts.model import Matcher, Silence
from alerts.silences import expire, silence_state
from slo import burn_history, spec
from store import migrations
from store.embedded import EmbeddedBackend
from store.sql import queries


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[EmbeddedBackend]:
    b = EmbeddedBackend(tmp_path / "store")
    migrations.migrate(b)
    try:
        yield b
    finally:
        b.close()


def test_a_second_acknowledgement_does_not_replace_the_first(backend: EmbeddedBackend) -> None:
    store.acknowledge(backend, "i1", 700_000, "ana", "looking")
    store.acknowledge(backend, "i1", 760_500, "ben", "bank is down, calling them")
    store.acknowledge(backend, "i2", 710_000, "cy", "")
    assert store.incident_acknowledgements(backend, "i1") == [
        {"at": 700.0, "by": "ana", "comment": "looking"},
        {"at": 760.5, "by": "ben", "comment": "bank is down, calling them"},
    ]
    # After a merge as well: the rows differ in the sorting key, so they never collapse.
    backend.command("OPTIMIZE TABLE incident_acks FINAL")
    assert [a["by"] for a in store.incident_acknowledgements(backend, "i1")] == ["ana", "ben"]
    # The latest of each incident is "acknowledged" (what the lists, the API and the dispatcher read).
    assert store.acknowledgements(backend) == {
        "i1": {"at": 760.5, "by": "ben", "comment": "bank is down, calling them"},
        "i2": {"at": 710.0, "by": "cy", "comment": ""},
    }
    assert store.incident_acknowledgements(backend, "nope") == []


def test_the_same_acknowledgement_written_twice_is_one(backend: EmbeddedBackend) -> None:
    for _ in range(2):  # a retried insert
        store.acknowledge(backend, "i1", 700_000, "ana", "looking")
    store.acknowledge(backend, "i1", 700_000, "ana", "looking again")  # same moment, another text
    assert sorted(a["comment"] for a in store.incident_acknowledgements(backend, "i1")) == [
        "looking",
        "looking again",
    ]


def test_acknowledgements_written_before_migration_0013_stay_readable(tmp_path: Path) -> None:
    b = EmbeddedBackend(tmp_path / "store")
    try:
        for migration in migrations.load_migrations():
            if migration.version >= 13:
                continue
            for statement in migration.statements:
                b.command(statement)
            b.command(queries.RECORD_MIGRATION, {"version": migration.version, "name": migration.name})
        # Two acknowledgements as the code before 0013 wrote them (no ack_id): the newest won.
        for at_ms, by in ((700_000, "ana"), (760_000, "ben")):
            b.insert_arrow(
                "incident_acks",
                pa.table(
                    {
                        "incident_id": ["old"],
                        "at": pa.array([at_ms], pa.timestamp("ms", tz="UTC")),
                        "by": [by],
                        "comment": [""],
                    }
                ),
            )
        assert migrations.migrate(b)[0] == 13  # and those after it
        assert store.acknowledgements(b)["old"]["by"] == "ben"
        assert [a["by"] for a in store.incident_acknowledgements(b, "old")] == ["ben"]
        store.acknowledge(b, "old", 800_000, "cy", "after the upgrade")
        assert [a["by"] for a in store.incident_acknowledgements(b, "old")] == ["ben", "cy"]
        assert store.acknowledgements(b)["old"]["by"] == "cy"
    finally:
        b.close()


def test_expire_ends_a_silence_now_and_leaves_an_ended_one_alone(backend: EmbeddedBackend) -> None:
    matchers = (Matcher("slo", "=", "checkout"),)
    active = Silence("s1", matchers, 100, 1_000, "bob", "deploy")
    assert silence_state(active, 99) == "pending"
    assert silence_state(active, 100) == "active"
    assert silence_state(active, 1_000) == "expired"
    assert expire(active, 500) == Silence("s1", matchers, 100, 500, "bob", "deploy")
    assert expire(Silence("s2", matchers, 600, 900), 500) == Silence("s2", matchers, 500, 500)
    assert expire(active, 2_000) is active  # ran out already: its end does not move
    # Stored as a newer version: the silence stays listed, ended, and the version tells when.
    store.save_silence(backend, active, updated_at_ms=50_000)
    store.save_silence(backend, expire(active, 500), updated_at_ms=500_300)
    assert store.silence_versions(backend) == [(Silence("s1", matchers, 100, 500, "bob", "deploy"), 500_300)]
    assert store.load_silences(backend, active_at_s=500) == []


SPEC = """\
slos:
  - name: checkout
    service: checkout
    objective: 99
    window: 30d
    sli: {spans: {bad: {error: true}}}
    alerting:
      rules:
        - {severity: page, long: 1h, short: 5m, factor: 14.4}
        - {severity: ticket, long: 6h, short: 30m, factor: 6}
"""


def test_burn_history_covers_the_span_with_every_rule(backend: EmbeddedBackend, tmp_path: Path) -> None:
    (tmp_path / "slos.yaml").write_text(SPEC)
    slos, errors = spec.load(tmp_path / "slos.yaml")
    assert errors == []
    opened, closed = 1_764_000_000, 1_764_000_000 + 2 * 3600
    start, end = burn_history.span_with_margin(opened, closed, now_s=closed + 3600)
    assert (start, end) == (opened - 30 * 60, closed)  # a quarter of two hours before it opened
    assert burn_history.span_with_margin(opened, None, now_s=opened + 120) == (opened - 15 * 60, opened + 120)
    (history,) = burn_history.burn_history(backend, slos[0], start, end)
    assert history.times_s[0] == start and history.times_s[-1] == end
    assert len(history.times_s) <= burn_history.POINTS + 1
    assert [(r.label, r.long_s, r.short_s, r.factor) for r in history.rules] == [
        ("page 1h/5m", 3600, 300, 14.4),
        ("ticket 6h/30m", 6 * 3600, 1800, 6.0),
    ]
    # No events stored: every rate is "no data", and nothing fired.
    for r in history.rules:
        assert len(r.long_burn_rate) == len(r.short_burn_rate) == len(history.times_s)
        assert r.peak_long is None and not r.fired
    with pytest.raises(ValueError, match="before its start"):
        burn_history.burn_history(backend, slos[0], end, start)
