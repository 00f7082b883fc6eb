"""Backtests of hand-computed streams through the alert state machine and the notification policy
(alerts/backtest.py): fire and resolve minutes, keep_firing_for, min_events, inhibition, silences,
grouping, and flapping input.

The stream: 100 requests a minute from minute 0; minutes 60-69 have 20 bad each (burn rate 20 for
a 99% objective), all others none. An evaluation at T sees minutes before T.

* page 10m/2m > 10: the 2-minute window is 20% bad from T=62; the 10-minute one passes 10% once it
  holds 6 bad minutes (120 of 1000), at T=66. It clears at T=71 (minutes 69-70: 10%, not > 10).
* ticket 60m/10m > 2: the 60-minute window passes 2% of 6000 with 7 bad minutes, at T=67; the
  10-minute window stays above 2% until it holds only minute 69 (2%), at T=79.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from alerts.backtest import replay
from alerts.model import Matcher, Silence
from alerts.policy import load_policy
from slo import evaluator
from slo.model import AlertPolicy, BurnRule, Slo, SpanSli, Window
from slo.series import MinuteCounts

T0 = 1_800_000_000 // 3600 * 3600  # a whole hour
MIN = 60
PAGE = BurnRule("page", 10 * MIN, 2 * MIN, Fraction(10))
TICKET = BurnRule("ticket", 60 * MIN, 10 * MIN, Fraction(2))


def _counts(bad_minutes: range | list[int], minutes: int = 120, bad: float = 20) -> MinuteCounts:
    total = np.full(minutes, 100.0)
    bads = np.zeros(minutes)
    bads[list(bad_minutes)] = bad
    return MinuteCounts(T0, total, bads)


def _slo(name: str = "checkout", **alerting: object) -> Slo:
    rules = alerting.pop("rules", (PAGE, TICKET))
    return Slo(
        name,
        "shop",
        Decimal("99"),
        SpanSli(bad_error=True),
        Window(rolling_s=86_400),
        alerting=AlertPolicy(rules, **alerting),  # type: ignore[arg-type]
        group_by=("http.route",) if name.startswith("routes") else (),
    )


def _run(
    slo: Slo,
    counts: dict[tuple[str, ...], MinuteCounts],
    policy_text: str | None,
    tmp_path: Path,
    **kw: object,
):  # noqa: ANN202
    times = evaluator.steps(T0, T0 + 119 * MIN, MIN)
    run = evaluator.backtest_counts(slo, counts, times)
    policy = None
    if policy_text is not None:
        path = tmp_path / "policy.yaml"
        path.write_text(policy_text)
        policy = load_policy(path, environ={"HOOK": "http://127.0.0.1:9/hook"})
    return replay([run], policy or load_policy(None), **kw)  # type: ignore[arg-type]


def _minutes(changes, **match: str) -> list[tuple[int, str]]:  # noqa: ANN001
    return [
        ((c.at_s - T0) // MIN, c.to_state)
        for c in changes
        if all(getattr(c, k) == v for k, v in match.items())
    ]


POLICY = """
route:
  receiver: hook
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 30m
receivers:
  - name: hook
    webhook: {url_env: HOOK}
"""


def test_fire_and_resolve_minutes_of_each_pair(tmp_path: Path) -> None:
    out = _run(_slo(), {(): _counts(range(60, 70))}, None, tmp_path)
    assert _minutes(out.changes, severity="page") == [(66, "firing"), (71, "resolved")]
    assert _minutes(out.changes, severity="ticket") == [(67, "firing"), (79, "resolved")]
    assert out.notifications == []  # the default policy has no receivers


def test_keep_firing_for_holds_the_resolve(tmp_path: Path) -> None:
    out = _run(_slo(keep_firing_for_s=3 * MIN), {(): _counts(range(60, 70))}, None, tmp_path)
    # The page's condition is false from T=71: it keeps firing at 71, 72, 73 and resolves at 74.
    assert _minutes(out.changes, severity="page") == [(66, "firing"), (74, "resolved")]


def test_min_events_keeps_a_low_traffic_pair_quiet(tmp_path: Path) -> None:
    # The page's 10-minute window holds 1,000 events: 1,001 are required, so it never fires.
    out = _run(_slo(min_events=1_001), {(): _counts(range(60, 70))}, None, tmp_path)
    assert _minutes(out.changes, severity="page") == []
    assert _minutes(out.changes, severity="ticket") == [(67, "firing"), (79, "resolved")]


def _notes(out) -> list[tuple[int, str, list[tuple[str, str]]]]:  # noqa: ANN001
    return [
        ((n.at_s - T0) // MIN, n.kind, sorted((a.severity, a.state) for a in n.alerts))
        for n in out.notifications
    ]


def test_a_page_inhibits_the_ticket_of_the_same_slo_instance(tmp_path: Path) -> None:
    out = _run(_slo(), {(): _counts(range(60, 70))}, POLICY, tmp_path)
    notes = _notes(out)
    # One incident per SLO instance (the default group_by): the page triggers at once; the ticket
    # joining at 67 is inhibited while the page fires. After the page resolves (71) the ticket is
    # told at the next flush, and the resolve comes at the flush after the ticket resolved (79).
    assert notes[0] == (66, "trigger", [("page", "firing")])
    assert all(("ticket", "firing") not in alerts for minute, _, alerts in notes if minute < 71)
    ticket = [n for n in notes if ("ticket", "firing") in n[2]]
    assert ticket and ticket[0][0] == 71
    assert notes[-1][1] == "resolve" and notes[-1][0] >= 79
    assert len({n.incident_id for n in out.notifications}) == 1
    assert [n for n in notes if n[1] == "repeat"] == []  # the incident lasts less than repeat_interval


def test_a_silence_mutes_matching_alerts_until_it_ends(tmp_path: Path) -> None:
    silence = Silence("s1", (Matcher("severity", "=", "page"),), T0, T0 + 200 * MIN)
    out = _run(_slo(), {(): _counts(range(60, 70))}, POLICY, tmp_path, silences=[silence])
    notes = _notes(out)
    assert all(("page", "firing") not in alerts for _, _, alerts in notes)
    # The silenced page still inhibits the ticket (as in Alertmanager) until it resolves at 71.
    assert notes[0][0] == 71 and ("ticket", "firing") in notes[0][2]


def test_grouping_by_a_label(tmp_path: Path) -> None:
    slo = _slo("routes", rules=(PAGE,))
    counts = {("/a",): _counts(range(60, 70)), ("/b",): _counts(range(60, 70))}
    per_instance = _run(slo, counts, POLICY, tmp_path)
    assert len({n.incident_id for n in per_instance.notifications}) == 2
    by_slo = _run(
        slo, counts, POLICY.replace("group_wait: 0s", "group_wait: 0s\n  group_by: [slo]"), tmp_path
    )
    [trigger, *_] = by_slo.notifications
    assert len({n.incident_id for n in by_slo.notifications}) == 1
    assert sorted(dict(a.group)["http.route"] for a in trigger.alerts) == ["/a", "/b"]


def test_flapping_every_minute_is_one_trigger_and_one_resolve(tmp_path: Path) -> None:
    # Minutes 60, 62, ..., 98 half bad: a 2m/1m rule > 10 is true only right after a bad minute.
    # It is false from T=100 (minute 99 clean); with 2 minutes of hold-down it resolves at 102.
    flappy = BurnRule("page", 2 * MIN, MIN, Fraction(10))
    slo = _slo(rules=(flappy,), keep_firing_for_s=2 * MIN)
    # (It fires for 41 minutes: a 4h repeat_interval keeps repeats out of this count.)
    policy = POLICY.replace("repeat_interval: 30m", "repeat_interval: 4h")
    out = _run(slo, {(): _counts(range(60, 100, 2), bad=50)}, policy, tmp_path)
    changes = _minutes(out.changes, severity="page")
    assert changes == [(61, "firing"), (102, "resolved")]
    assert [n[1] for n in _notes(out)] == ["trigger", "resolve"]


def test_the_same_notifications_as_live_for_the_same_evaluations(tmp_path: Path) -> None:
    """The replay is alerts/service.py's loop without the store: stepping the dispatcher with the
    same alerts gives the same notification ids, which is what live idempotency rests on."""
    first = _run(_slo(), {(): _counts(range(60, 70))}, POLICY, tmp_path)
    again = _run(_slo(), {(): _counts(range(60, 70))}, POLICY, tmp_path)
    assert [n.id for n in first.notifications] == [n.id for n in again.notifications]
    assert first.notifications


@pytest.mark.parametrize("step", [2 * MIN])
def test_steps_longer_than_a_minute(tmp_path: Path, step: int) -> None:
    times = evaluator.steps(T0, T0 + 119 * MIN, step)
    run = evaluator.backtest_counts(_slo(), {(): _counts(range(60, 70))}, times)
    out = replay([run], load_policy(None))
    # Evaluated every 2 minutes: the page fires at the first even minute at or after 66.
    assert _minutes(out.changes, severity="page")[0] == (66, "firing")


def test_a_repeat_only_after_repeat_interval(tmp_path: Path) -> None:
    # Bad from 60 to 109: the page fires 66..114; flushes every 5 minutes from 66; the repeat is due
    # 30 minutes after the trigger, at 96, and not before.
    out = _run(_slo(), {(): _counts(range(60, 110))}, POLICY, tmp_path)
    notes = _notes(out)
    assert notes[0][:2] == (66, "trigger")
    assert [n[:2] for n in notes if n[1] == "repeat"] == [(96, "repeat")]
    # The page resolves at 111; the ticket it inhibited is told then, with the page's resolve.
    assert notes[-1] == (111, "trigger", [("page", "resolved"), ("ticket", "firing")])
