"""The dispatcher (alerts/dispatch.py): hand-computed timelines on the evaluator's minute clock.

Times in the tables are minutes; ``alert(...)`` describes when an alert fires as minute spans
``(start, end)``: firing from ``start`` until before ``end``, resolved from ``end`` on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from alerts.dispatch import Dispatcher, DispatchState, Incident, incident_id, inhibited, notification_id
from alerts.model import Alert, Matcher, Notification, ReceiverConfig, Silence, alert_id
from alerts.policy import DEFAULT_INHIBIT_RULES, InhibitRule, Policy, Route

M = 60


@dataclass(frozen=True)
class Spec:
    """An alert's firing spans in minutes."""

    slo: str
    severity: str
    spans: tuple[tuple[int, int | None], ...]
    group: tuple[tuple[str, str], ...] = ()
    service: str = "web"

    def at(self, t: int) -> Alert | None:
        """The alert as the state machine reports it at minute ``t`` (None while inactive)."""
        started = [(s, e) for s, e in self.spans if s <= t]
        if not started:
            return None
        start, end = started[-1]
        firing = end is None or t < end
        labels = (
            ("alertname", "SLOBurnRate"),
            ("slo", self.slo),
            ("service", self.service),
            ("severity", self.severity),
            *self.group,
        )
        return Alert(
            id=alert_id(self.slo, self.severity, dict(self.group)),
            slo=self.slo,
            service=self.service,
            severity=self.severity,
            group=self.group,
            labels=labels,
            state="firing" if firing else "resolved",
            firing_since_s=start * M,
            resolved_at_s=None if firing else end * M,  # type: ignore[operator]
            annotations=(("runbook_url", "https://runbooks.example/checkout"),),
            objective=99.9,
        )


def policy(
    *,
    wait: int = 1,
    interval: int = 5,
    repeat: int = 60,
    group_by: tuple[str, ...] = ("slo_instance",),
    send_resolved: bool = True,
    routes: tuple[Route, ...] = (),
    inhibit: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES,
    receivers: tuple[str, ...] = ("hook",),
) -> Policy:
    """A policy with a root route to ``hook``; ``wait`` etc. in minutes (``wait`` 0.5 is 30s)."""
    root = Route(
        key="{}",
        receiver=receivers[0] if receivers else None,
        group_by=group_by,
        group_wait_s=int(wait * M),
        group_interval_s=interval * M,
        repeat_interval_s=repeat * M,
        routes=routes,
    )
    return Policy(
        route=root,
        receivers=tuple(
            ReceiverConfig(name, "webhook", (("url", "http://127.0.0.1:9/"),), send_resolved)
            for name in receivers
        ),
        inhibit_rules=inhibit,
        external_url="https://sloscope.example",
    )


@dataclass
class Run:
    notifications: list[Notification]
    states: list[DispatchState]

    def table(self) -> list[tuple[int, str, str, list[str]]]:
        """(minute, receiver, kind, ['slo:severity:state', ...]) per notification."""
        return [
            (n.at_s // M, n.receiver, n.kind, [f"{a.slo}:{a.severity}:{a.state}" for a in n.alerts])
            for n in self.notifications
        ]

    @property
    def final(self) -> DispatchState:
        return self.states[-1]


def run(
    dispatcher: Dispatcher,
    specs: Sequence[Spec],
    minutes: range,
    silences: Sequence[Silence] = (),
    acked_from: int | None = None,
    state: DispatchState | None = None,
    roundtrip: bool = False,
) -> Run:
    """Step minute by minute; ``acked_from`` acknowledges every open incident from that minute on;
    ``roundtrip`` passes the state through JSON between all steps, as the store does."""
    state = state or DispatchState()
    out: list[Notification] = []
    states: list[DispatchState] = []
    acked: set[str] = set()
    for t in minutes:
        if acked_from is not None and t >= acked_from:
            acked |= {i.id for i in state.incidents}
        alerts = [a for a in (s.at(t) for s in specs) if a is not None]
        state, sent = dispatcher.step(state, alerts, t * M, silences, acked)
        if roundtrip:
            state = DispatchState.from_json(state.to_json())
        out.extend(sent)
        states.append(state)
    return Run(out, states)


CHECKOUT = "checkout:page:firing"


def test_group_wait_then_one_trigger() -> None:
    d = Dispatcher(policy(wait=2))
    result = run(d, [Spec("checkout", "page", ((3, None),))], range(0, 40))
    assert result.table() == [(5, "hook", "trigger", [CHECKOUT])]
    (n,) = result.notifications
    (incident,) = result.final.incidents
    assert incident.opened_s == 3 * M and incident.closed_s is None
    assert n.incident_id == incident.id == incident_id("hook", "{}", incident.group_labels, 3 * M)
    assert n.id == notification_id(incident.id, "hook", "trigger", 5 * M)
    assert n.incident_url == f"https://sloscope.example/incidents/{incident.id}"
    assert n.group_labels == (("slo_instance", "checkout"),)
    assert n.alerts[0].annotation_map["runbook_url"] == "https://runbooks.example/checkout"


def test_group_wait_under_a_minute_notifies_in_the_opening_evaluation() -> None:
    for wait in (0, 0.5):
        result = run(Dispatcher(policy(wait=wait)), [Spec("checkout", "page", ((3, None),))], range(0, 10))
        assert result.table() == [(3, "hook", "trigger", [CHECKOUT])]


def test_no_repeat_before_repeat_interval_and_one_after() -> None:
    # Flushes at 1, 6, 11, ... 56 (55 min after the trigger: too early), 61 (60: a repeat), 121.
    d = Dispatcher(policy(wait=1, interval=5, repeat=60))
    result = run(d, [Spec("checkout", "page", ((0, None),))], range(0, 125))
    assert result.table() == [
        (1, "hook", "trigger", [CHECKOUT]),
        (61, "hook", "repeat", [CHECKOUT]),
        (121, "hook", "repeat", [CHECKOUT]),
    ]


def test_group_interval_batches_alerts_joining() -> None:
    # One incident per service: checkout fires at 0 (trigger at 1); search joins at 3 and cart at 4,
    # both told at the next group_interval tick (6); the last one joining at 12 waits for tick 16.
    d = Dispatcher(policy(group_by=("service",)))
    specs = [
        Spec("checkout", "page", ((0, None),)),
        Spec("search", "page", ((3, None),)),
        Spec("cart", "page", ((4, None),)),
        Spec("login", "page", ((12, None),)),
    ]
    result = run(d, specs, range(0, 30))
    assert result.table() == [
        (1, "hook", "trigger", [CHECKOUT]),
        (6, "hook", "trigger", ["cart:page:firing", CHECKOUT, "search:page:firing"]),
        (16, "hook", "trigger", ["cart:page:firing", CHECKOUT, "login:page:firing", "search:page:firing"]),
    ]
    assert len(result.final.incidents) == 1


def test_one_resolve_and_the_incident_closes() -> None:
    # Resolved at 20: told at the next tick (21), then the incident closes; firing again at 50 opens
    # a new incident with its own group_wait.
    d = Dispatcher(policy())
    result = run(d, [Spec("checkout", "page", ((0, 20), (50, None)))], range(0, 60))
    assert result.table() == [
        (1, "hook", "trigger", [CHECKOUT]),
        (21, "hook", "resolve", ["checkout:page:resolved"]),
        (51, "hook", "trigger", [CHECKOUT]),
    ]
    first, _, second = result.notifications
    assert first.incident_id != second.incident_id
    closed = result.states[21].closed
    assert [i.id for i in closed] == [first.incident_id] and closed[0].closed_s == 21 * M
    assert [(r.kind, r.receiver, r.at_s // M) for r in closed[0].notifications] == [
        ("trigger", "hook", 1),
        ("resolve", "hook", 21),
    ]
    assert result.states[21].incidents == () and result.states[22].closed == ()
    assert closed[0].summary() == {
        "id": first.incident_id,
        "receiver": "hook",
        "group_labels": {"slo_instance": "checkout"},
        "status": "resolved",
        "opened_at_s": 0,
        "closed_at_s": 21 * M,
        "alert_ids": [first.alerts[0].id],
        "slos": ["checkout"],
        "services": ["web"],
        "severities": ["page"],
    }


def test_send_resolved_false_sends_no_resolve_but_closes() -> None:
    d = Dispatcher(policy(send_resolved=False))
    result = run(d, [Spec("checkout", "page", ((0, 20), (50, None)))], range(0, 60))
    assert result.table() == [(1, "hook", "trigger", [CHECKOUT]), (51, "hook", "trigger", [CHECKOUT])]
    assert [i.closed_s for i in result.states[21].closed] == [21 * M]


def test_partial_resolve_is_an_update_only_with_send_resolved() -> None:
    specs = [Spec("checkout", "page", ((0, 8),)), Spec("search", "page", ((0, None),))]
    on = run(Dispatcher(policy(group_by=("service",))), specs, range(0, 20))
    assert on.table() == [
        (1, "hook", "trigger", [CHECKOUT, "search:page:firing"]),
        (11, "hook", "trigger", ["checkout:page:resolved", "search:page:firing"]),
    ]
    off = run(Dispatcher(policy(group_by=("service",), send_resolved=False)), specs, range(0, 20))
    assert off.table() == [(1, "hook", "trigger", [CHECKOUT, "search:page:firing"])]


def test_an_alert_missing_from_the_input_counts_as_resolved() -> None:
    d = Dispatcher(policy())
    state, _ = d.step(DispatchState(), [Spec("checkout", "page", ((0, None),)).at(0)], 0, (), ())  # type: ignore[list-item]
    state, sent = d.step(state, [Spec("checkout", "page", ((0, None),)).at(1)], M, (), ())  # type: ignore[list-item]
    assert [n.kind for n in sent] == ["trigger"]
    state, sent = d.step(state, [], 6 * M, (), ())
    assert [(n.kind, n.alerts[0].state, n.alerts[0].resolved_at_s) for n in sent] == [
        ("resolve", "resolved", 6 * M)
    ]
    assert state.incidents == ()


def test_fired_and_resolved_before_the_first_flush_sends_nothing() -> None:
    # Alertmanager: "some alerts have been fired and resolved during the last interval ... there is
    # no need to notify the receiver since it doesn't know about them".
    result = run(Dispatcher(policy(wait=2)), [Spec("checkout", "page", ((0, 1),))], range(0, 10))
    assert result.table() == []
    assert [(i.opened_s, i.closed_s, i.notifications) for i in result.states[2].closed] == [(0, 2 * M, ())]


def test_page_inhibits_the_ticket_of_the_same_slo_instance_only() -> None:
    eu, us = (("region", "eu"),), (("region", "us"),)
    specs = [
        Spec("checkout", "page", ((0, 30),), eu),
        Spec("checkout", "ticket", ((0, None),), eu),  # same instance as the page: inhibited
        Spec("checkout", "ticket", ((0, None),), us),  # other instance of the same SLO: not
        Spec("search", "ticket", ((0, None),)),  # other SLO: not
    ]
    result = run(Dispatcher(policy()), specs, range(0, 40))
    assert result.table() == [
        (1, "hook", "trigger", [CHECKOUT]),
        (1, "hook", "trigger", ["checkout:ticket:firing"]),
        (1, "hook", "trigger", ["search:ticket:firing"]),
        # The page resolved at 30; at the next tick the ticket is no longer inhibited.
        (31, "hook", "trigger", ["checkout:page:resolved", "checkout:ticket:firing"]),
    ]
    eu_trigger, us_trigger = result.notifications[0], result.notifications[1]
    assert dict(eu_trigger.group_labels) == {"slo_instance": 'checkout{region="eu"}'}
    assert dict(us_trigger.group_labels) == {"slo_instance": 'checkout{region="us"}'}
    # Without inhibition rules the eu ticket is told at once.
    plain = run(Dispatcher(policy(inhibit=())), specs, range(0, 2))
    assert plain.table()[0] == (1, "hook", "trigger", [CHECKOUT, "checkout:ticket:firing"])


def test_inhibition_needs_equal_labels_and_a_firing_source() -> None:
    rule = InhibitRule(
        (Matcher("severity", "=", "page"),), (Matcher("severity", "=", "ticket"),), ("service",)
    )
    specs = [
        Spec("a", "page", ((0, 3),), service="web"),
        Spec("b", "ticket", ((0, None),), service="web"),
        Spec("c", "ticket", ((0, None),), service="db"),
    ]
    result = run(Dispatcher(policy(inhibit=(rule,), group_by=("service",))), specs, range(0, 8))
    assert result.table() == [
        (1, "hook", "trigger", ["c:ticket:firing"]),  # incidents in group-key order: db before web
        (1, "hook", "trigger", ["a:page:firing"]),
        (6, "hook", "trigger", ["a:page:resolved", "b:ticket:firing"]),
    ]


def test_silences_match_expire_and_wait_for_their_start() -> None:
    checkout = [Spec("checkout", "page", ((0, None),))]
    d = Dispatcher(policy())
    # Active from the start until minute 10: nothing at 1 and 6; at the tick after it expires (11)
    # the receiver hears of the alert for the first time: a trigger.
    expiring = Silence("s1", (Matcher("slo", "=", "checkout"),), 0, 10 * M)
    assert run(d, checkout, range(0, 20), [expiring]).table() == [(11, "hook", "trigger", [CHECKOUT])]
    # A silence that does not match (every matcher must) changes nothing.
    other = Silence("s2", (Matcher("slo", "=", "checkout"), Matcher("severity", "=", "ticket")), 0, 10 * M)
    assert run(d, checkout, range(0, 20), [other]).table() == [(1, "hook", "trigger", [CHECKOUT])]
    # Not yet started at the trigger; from 20 to 40 it mutes the incident: Alertmanager then logs
    # "nothing firing" without a message, so after it the alert is new to the receiver again.
    later = Silence("s3", (Matcher("service", "=~", "we.*"),), 20 * M, 40 * M)
    result = run(d, checkout, range(0, 50), [later])
    assert result.table() == [(1, "hook", "trigger", [CHECKOUT]), (41, "hook", "trigger", [CHECKOUT])]
    assert len({n.incident_id for n in result.notifications}) == 1  # the incident stayed open


def test_ack_stops_repeats_but_not_the_resolve() -> None:
    spec = [Spec("checkout", "page", ((0, 90),))]
    d = Dispatcher(policy(repeat=60))
    unacked = run(d, spec, range(0, 100))
    assert [row[:3] for row in unacked.table()] == [
        (1, "hook", "trigger"),
        (61, "hook", "repeat"),
        (91, "hook", "resolve"),
    ]
    acked = run(d, spec, range(0, 100), acked_from=10)
    assert [row[:3] for row in acked.table()] == [(1, "hook", "trigger"), (91, "hook", "resolve")]


def test_grouping_by_a_label() -> None:
    specs = [Spec("checkout", "page", ((0, None),)), Spec("search", "page", ((0, None),))]
    together = run(Dispatcher(policy(group_by=("service",))), specs, range(0, 5))
    assert together.table() == [(1, "hook", "trigger", [CHECKOUT, "search:page:firing"])]
    assert [i.group_labels for i in together.final.incidents] == [(("service", "web"),)]
    apart = run(Dispatcher(policy(group_by=("slo",))), specs, range(0, 5))
    assert apart.table() == [
        (1, "hook", "trigger", [CHECKOUT]),
        (1, "hook", "trigger", ["search:page:firing"]),
    ]
    assert len({n.incident_id for n in apart.notifications}) == 2
    everything = run(Dispatcher(policy(group_by=())), specs, range(0, 5))
    assert [i.group_labels for i in everything.final.incidents] == [()]


FLAPPING = [Spec("checkout", "page", tuple((t, t + 1) for t in range(0, 60, 2)))]  # firing at even minutes


def test_flapping_input_in_phase_with_group_interval_gives_one_trigger() -> None:
    # group_wait 30s: trigger at 0; with a 4m group_interval every tick (4, 8, ...) sees it firing,
    # an unchanged set: nothing until repeat_interval.
    result = run(Dispatcher(policy(wait=0.5, interval=4, repeat=60)), FLAPPING, range(0, 59))
    assert result.table() == [(0, "hook", "trigger", [CHECKOUT])]


def test_flapping_input_gets_at_most_one_notification_per_group_interval() -> None:
    # Ticks sample the alert. Trigger at 0; the tick at 5 sees it resolved: resolve, incident closed.
    # It fires again at 6: a new incident, whose first notification waits for group_interval after
    # the last one (10), not only group_wait (Alertmanager does the same when the alert comes back
    # before its maintenance removed the emptied group).
    result = run(Dispatcher(policy(wait=0.5, interval=5)), FLAPPING, range(0, 31))
    assert [row[:3] for row in result.table()] == [
        (0, "hook", "trigger"),
        (5, "hook", "resolve"),
        (10, "hook", "trigger"),
        (15, "hook", "resolve"),
        (20, "hook", "trigger"),
        (25, "hook", "resolve"),
        (30, "hook", "trigger"),
    ]
    times = [n.at_s for n in result.notifications]
    assert all(b - a >= 5 * M for a, b in zip(times, times[1:], strict=False))


def test_routes_with_continue() -> None:
    page = Matcher("severity", "=", "page")
    routes = (
        Route(key='{}/{severity="page"}', receiver="pager", matchers=(page,), continue_matching=True),
        Route(key='{}/{severity="page"}#1', receiver="chat", matchers=(page,), group_wait_s=3 * M),
        Route(key='{}/{severity="page"}#2', receiver="never", matchers=(page,)),
    )
    d = Dispatcher(policy(routes=routes, receivers=("hook", "pager", "chat", "never")))
    specs = [Spec("checkout", "page", ((0, None),)), Spec("checkout", "ticket", ((0, None),))]
    result = run(d, specs, range(0, 10))
    assert result.table() == [
        (0, "pager", "trigger", [CHECKOUT]),  # the route's own group_wait: the default 30s
        (3, "chat", "trigger", [CHECKOUT]),  # continue on 'pager' let 'chat' match; 'never' did not
        # The ticket went to the root's incident; the page inhibits it there too (inhibition is
        # across incidents), so the root receiver hears nothing.
    ]
    assert len({n.incident_id for n in result.notifications}) == 2
    assert {i.receiver for i in result.final.incidents} == {"pager", "chat", "hook"}


def test_no_receivers_records_incidents_and_sends_nothing() -> None:
    d = Dispatcher(policy(receivers=()))
    result = run(d, [Spec("checkout", "page", ((0, 10),))], range(0, 20))
    assert result.notifications == []
    (incident,) = result.states[11].closed
    assert (incident.receiver, incident.opened_s, incident.closed_s) == (None, 0, 11 * M)


SCENARIO = [
    Spec("checkout", "page", ((0, 100),)),
    Spec("checkout", "ticket", ((2, 130),)),
    Spec("search", "page", ((5, 40), (70, None)), service="search"),
]


def test_state_round_trips_through_json_and_a_restart_sends_nothing_new() -> None:
    d = Dispatcher(policy(repeat=60))
    straight = run(d, SCENARIO, range(0, 140))
    through_json = run(d, SCENARIO, range(0, 140), roundtrip=True)
    assert through_json.table() == straight.table()
    assert [s.to_json() for s in through_json.states] == [s.to_json() for s in straight.states]
    assert [n.id for n in through_json.notifications] == [n.id for n in straight.notifications]
    # A restart mid-incident: the state saved after minute 64 is loaded; the evaluation of minute
    # 64 runs again (sends nothing: its notifications went out before the save), then it goes on.
    saved = DispatchState.from_json(straight.states[64].to_json())
    assert saved == straight.states[64]
    assert saved.incidents and all(i.notifications for i in saved.incidents)
    again = run(d, SCENARIO, range(64, 65), state=saved)
    assert again.notifications == []
    rest = run(d, SCENARIO, range(65, 140), state=again.final)
    assert rest.table() == [row for row in straight.table() if row[0] >= 65]
    assert len({n.id for n in straight.notifications}) == len(straight.notifications)


def test_incident_page_data() -> None:
    d = Dispatcher(policy())
    result = run(d, SCENARIO, range(0, 12))
    (checkout, search) = sorted(result.final.incidents, key=lambda i: i.opened_s)
    assert isinstance(checkout, Incident)
    assert [(a.severity, a.state) for a in checkout.alerts] == [("page", "firing"), ("ticket", "firing")]
    assert [a.severity for a in checkout.firing] == ["page", "ticket"]
    assert [(r.kind, r.at_s // M) for r in checkout.notifications] == [("trigger", 1)]
    assert result.final.incident(checkout.id) == checkout
    assert search.opened_s == 5 * M


def test_bad_input_is_refused() -> None:
    d = Dispatcher(policy())
    state, _ = d.step(DispatchState(), [], 10 * M, (), ())
    with pytest.raises(ValueError, match="before the last step"):
        d.step(state, [], 9 * M, (), ())
    twice = Spec("checkout", "page", ((0, None),)).at(10)
    with pytest.raises(ValueError, match="given twice"):
        d.step(state, [twice, twice], 10 * M, (), ())  # type: ignore[list-item]
    for text in ("", "{}", '{"version": 99}', "[]"):
        with pytest.raises(ValueError):
            DispatchState.from_json(text)


def test_an_alert_matching_both_sides_does_not_inhibit_itself() -> None:
    # Alertmanager's excludeTwoSidedMatch: severity =~ page|ticket on both sides, equal slo.
    both = (Matcher("severity", "=~", "page|ticket"),)
    rule = InhibitRule(both, both, ("slo",))
    page, ticket = {"slo": "a", "severity": "page"}, {"slo": "a", "severity": "ticket"}
    assert not inhibited([rule], page, [page])
    assert not inhibited([rule], page, [page, ticket])
    narrow = InhibitRule((Matcher("severity", "=", "page"),), both, ("slo",))
    assert inhibited([narrow], ticket, [page]) and not inhibited([narrow], page, [page])
    assert not inhibited([narrow], ticket, [{"slo": "b", "severity": "page"}])
