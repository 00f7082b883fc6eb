"""The alert state machine (alerts/state.py): transitions, keep_firing_for, flapping, vanished groups."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from alerts import state
from alerts.state import AlertRecord, advance
from slo.evaluator import InstanceResult, RuleState
from slo.model import AlertPolicy, BurnRule, Slo, SpanSli
from tests.test_slo_spec import errors_of

MIN = 60
PAGE = BurnRule("page", 3600, 300, Fraction(144, 10))
PAGE_SLOW = BurnRule("page", 6 * 3600, 1800, Fraction(6))
TICKET = BurnRule("ticket", 86_400, 7200, Fraction(3))


def _record() -> AlertRecord:
    return AlertRecord("a1", "checkout", "page", ())


def _run(conditions: list[bool], keep_s: int) -> list[tuple[int, str]]:
    record, out = _record(), []
    for i, condition in enumerate(conditions, start=1):
        record, transition = advance(record, condition, i * MIN, keep_s)
        if transition:
            out.append((i, transition.to_state))
    return out


def test_fire_and_resolve_without_hold_down() -> None:
    assert _run([False, True, True, False, False, True, False], 0) == [
        (2, "firing"),
        (4, "resolved"),
        (6, "firing"),
        (7, "resolved"),
    ]


def test_keep_firing_for_counts_from_the_first_false_evaluation() -> None:
    # False from minute 3 on; 5 minutes of hold-down: still firing at 3..7, resolved at 8.
    assert _run([False, True, False, False, False, False, False, False, False], 5 * MIN) == [
        (2, "firing"),
        (8, "resolved"),
    ]


def test_a_condition_back_inside_the_hold_down_cancels_it() -> None:
    conditions = [True, False, False, True, False, False, False, False]
    assert _run(conditions, 3 * MIN) == [(1, "firing"), (8, "resolved")]


def test_flapping_every_minute_with_a_hold_down_is_one_trigger_and_one_resolve() -> None:
    flapping = [i % 2 == 0 for i in range(30)] + [False] * 10
    assert _run(flapping, 5 * MIN) == [(1, "firing"), (35, "resolved")]


def test_an_instant_already_evaluated_changes_nothing() -> None:
    record, transition = advance(_record(), True, 10 * MIN, 0)
    assert transition is not None
    again, transition = advance(record, False, 10 * MIN, 0)  # a restart re-running the same minute
    assert again == record and transition is None


def _slo(**kw: object) -> Slo:
    fields = {
        "name": "checkout",
        "service": "shop",
        "objective": Decimal("99.9"),
        "sli": SpanSli(bad_error=True),
        "labels": (("team", "edge"), ("severity", "spoofed")),
        "group_by": ("http.route",),
        "alerting": AlertPolicy((PAGE, PAGE_SLOW, TICKET)),
    }
    return Slo(**(fields | kw))  # type: ignore[arg-type]


def _result(slo: Slo, route: str, firing: set[BurnRule], burn: float = 20.0) -> InstanceResult:
    from slo.budget import Evaluation

    ev = Evaluation(0, 0, 0, False, "occurrences", "events", 10, 1, 0.9, None, 0.01, 100, -99, True, 0, {})
    rules = tuple(RuleState(r, burn, burn + (r is PAGE_SLOW), 100, r in firing) for r in slo.alerting.rules)
    return InstanceResult(slo, (("http.route", route),), 0, ev, rules)


def test_two_pairs_of_one_severity_are_one_alert_and_labels_are_ours_first() -> None:
    slo = _slo()
    records: dict[str, AlertRecord] = {}
    touched, transitions = state.step(records, [slo], [_result(slo, "/a", {PAGE, PAGE_SLOW})], 60)
    assert sorted(r.severity for r in touched) == ["page", "ticket"]
    assert [(t.from_state, t.to_state) for t in transitions] == [("inactive", "firing")]
    page = next(r for r in touched if r.severity == "page")
    alert = state.alert(page, slo, _result(slo, "/a", {PAGE, PAGE_SLOW}))
    assert alert.label_map == {
        "alertname": "SLOBurnRate",
        "slo": "checkout",
        "service": "shop",
        "severity": "page",  # the SLO's own 'severity' label cannot replace the alert's
        "slo_instance": 'checkout{http.route="/a"}',  # one per SLO series: what grouping uses
        "team": "edge",
        "http.route": "/a",
    }
    # The firing pair shown is the one burning fastest in its short window.
    assert alert.pair is not None and (alert.pair.long, alert.pair.short) == ("6h", "30m")


def test_a_group_that_vanishes_resolves_but_an_slo_that_errs_keeps_its_alerts() -> None:
    slo = _slo()
    records: dict[str, AlertRecord] = {}
    state.step(records, [slo], [_result(slo, "/a", {PAGE}), _result(slo, "/b", {PAGE})], 60)
    # Minute 2: only /a has data left; /b's alerts are advanced with a false condition.
    _, transitions = state.step(records, [slo], [_result(slo, "/a", {PAGE})], 120)
    resolved = [records[t.alert_id].group for t in transitions if t.to_state == "resolved"]
    assert resolved == [(("http.route", "/b"),)]
    # Minute 3: the SLO cannot be evaluated: nothing moves.
    failed = InstanceResult(slo, (), 180, None, error="store error")
    before = dict(records)
    assert state.step(records, [slo], [failed], 180) == ([], [])
    assert records == before


def _no_data(slo: Slo, at_s: int) -> InstanceResult:
    return InstanceResult(slo, (), at_s, None, no_data="store unavailable: connection refused")


def test_no_data_keeps_alerts_by_default_resolves_them_with_ok_and_pages_with_alert() -> None:
    from dataclasses import replace

    for action in ("keep", "ok", "alert"):
        slo = _slo(alerting=AlertPolicy((PAGE, TICKET), on_no_data=action))
        records: dict[str, AlertRecord] = {}
        state.step(records, [slo], [_result(slo, "/a", {PAGE})], 60)
        touched, transitions = state.step(records, [slo], [_no_data(slo, 120)], 120)
        moves = {(records[t.alert_id].severity, t.to_state) for t in transitions}
        page = next(r for r in records.values() if r.severity == "page" and r.group)
        if action == "keep":
            assert (touched, transitions) == ([], [])
            assert page.state == "firing"
        elif action == "ok":
            assert moves == {("page", "resolved")}
        else:
            no_data_id = state.no_data_alert_id("checkout", "page")
            assert [(t.alert_id, t.to_state) for t in transitions] == [(no_data_id, "firing")]
            assert page.state == "firing"  # the burn-rate alert is kept as it was
            alert = state.alert(records[no_data_id], slo, _no_data(slo, 120))
            assert alert.label_map["alertname"] == "SLONoData" and alert.pair is None
            assert alert.annotation_map["no_data_reason"] == "store unavailable: connection refused"
            # Data again: the no-data alert resolves; a stored record is recognised by its id.
            loaded = {k: replace(v) for k, v in records.items()}
            _, transitions = state.step(loaded, [slo], [_result(slo, "/a", {PAGE})], 180)
            assert [(t.alert_id, t.to_state) for t in transitions] == [(no_data_id, "resolved")]
            assert state.is_no_data(loaded[no_data_id])
    # An SLO without rules pages "page" on missing data.
    bare = _slo(alerting=AlertPolicy((), on_no_data="alert"))
    records = {}
    touched, _ = state.step(records, [bare], [_no_data(bare, 60)], 60)
    assert [(r.severity, r.state) for r in touched] == [("page", "firing")]


def test_every_alert_names_its_slo_instance_and_an_slo_cannot_set_it(tmp_path: Path) -> None:
    slo = _slo()
    grouped = dict(state.labels(slo, "ticket", (("http.route", "/b"),)))
    assert grouped["slo_instance"] == 'checkout{http.route="/b"}'
    # The no-data alert is about the whole SLO: its instance is the SLO's name.
    no_data = dict(state.labels(slo, "page", (), state.NO_DATA_ALERTNAME))
    assert no_data["slo_instance"] == "checkout"
    # An SLO label of that name would be silently replaced: the spec refuses it, naming file and field.
    spec = (
        "slos:\n  - {name: a, service: s, objective: 99, labels: {slo_instance: x},\n"
        "     sli: {spans: {bad: {error: true}}}}\n"
    )
    assert errors_of(tmp_path, spec) == [
        f"{tmp_path / 'slos.yaml'}:2: slos[0].labels.slo_instance: 'slo_instance' is reserved "
        "(every SLO's alerts carry it already)"
    ]
