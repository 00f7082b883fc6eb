"""``keep_firing_for`` per severity and per rule, in both YAML formats (slo/spec.py, slo/openslo.py),
and what the alert state machine (alerts/state.py) does with it: pages held for an hour while
tickets resolve at once."""

from __future__ import annotations

from pathlib import Path

from alerts import state
from alerts.state import AlertRecord
from slo.model import HOUR_S, MINUTE_S, Slo
from tests.test_alert_state import _result
from tests.test_slo_spec import LOG_INDICATOR, OPENSLO_SLO, errors_of, load_one

NATIVE = """
slos:
  - name: a
    service: s
    objective: 99
    sli: {spans: {bad: {error: true}}}
    alerting:
      keep_firing_for: {page: 60m, ticket: 0}
"""

PER_RULE = """
slos:
  - name: a
    service: s
    objective: 99
    sli: {spans: {bad: {error: true}}}
    alerting:
      rules:
        - {severity: page, long: 1h, short: 5m, factor: 14.4, keep_firing_for: 60m}
        - {severity: page, long: 6h, short: 30m, factor: 6}
        - {severity: ticket, long: 1d, short: 2h, factor: 3}
        - {severity: chat, long: 3d, short: 6h, factor: 1, keep_firing_for: 0}
      keep_firing_for: 5m
"""


def test_native_keep_firing_for_per_severity(tmp_path: Path) -> None:
    alerting = load_one(tmp_path, NATIVE).alerting
    assert alerting is not None
    assert alerting.keep_firing_for_by_severity == (("page", HOUR_S), ("ticket", 0))
    assert (alerting.keep_firing_for("page"), alerting.keep_firing_for("ticket")) == (HOUR_S, 0)
    # One duration still holds every alert.
    single = load_one(tmp_path, NATIVE.replace("{page: 60m, ticket: 0}", "10m")).alerting
    assert single is not None
    assert (single.keep_firing_for("page"), single.keep_firing_for("ticket")) == (600, 600)


def test_native_keep_firing_for_per_rule(tmp_path: Path) -> None:
    alerting = load_one(tmp_path, PER_RULE).alerting
    assert alerting is not None
    assert [r.keep_firing_for_s for r in alerting.rules] == [HOUR_S, None, None, 0]
    # The two page rules are one alert: it holds for the longer of theirs (60m over the policy's 5m);
    # the ticket rule has none of its own and takes the policy's; the chat rule's own 0 wins over it.
    assert alerting.keep_firing_for("page") == HOUR_S
    assert alerting.keep_firing_for("ticket") == 5 * MINUTE_S
    assert alerting.keep_firing_for("chat") == 0


def test_native_keep_firing_for_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "slos.yaml"
    assert errors_of(tmp_path, NATIVE.replace("{page: 60m, ticket: 0}", "{pgae: 60m, ticket: soon}")) == [
        f"{path}:7: slos[0].alerting.keep_firing_for.pgae: no rule has severity 'pgae' (did you mean 'page'?)",
        f"{path}:7: slos[0].alerting.keep_firing_for.ticket: 'soon' is not a duration like 5m, 1h, 28d "
        "(a positive whole number and s/m/h/d/w)",
    ]
    bad_rule = PER_RULE.replace("factor: 14.4, keep_firing_for: 60m", "factor: 14.4, keep_firing_for: 90s")
    assert errors_of(tmp_path, bad_rule) == [
        f"{path}:8: slos[0].alerting.rules[0].keep_firing_for: '90s' must be a whole number of minutes"
    ]
    # Without rules of its own the SLO has the default ones: page and ticket, nothing else.
    assert errors_of(tmp_path, NATIVE.replace("ticket: 0", "tickets: 0")) == [
        f"{path}:7: slos[0].alerting.keep_firing_for.tickets: no rule has severity 'tickets' "
        "(did you mean 'ticket'?)"
    ]


def _openslo(slo_annotation: str, policy_annotation: str, condition_annotation: str) -> str:
    """An SLO with a policy of a page condition (``fast``) and a ticket condition (``slow``)."""
    return (
        OPENSLO_SLO.replace("  name: x\n", f"  name: x\n{slo_annotation}")
        + LOG_INDICATOR
        + f"""
  alertPolicies:
    - kind: AlertPolicy
      metadata:
        name: p
{policy_annotation}
      spec:
        conditions:
          - metadata:
              name: fast
{condition_annotation}
            spec: {{severity: page, condition: {{kind: burnrate, op: gt, threshold: 14.4, lookbackWindow: 1h}}}}
          - metadata: {{name: slow}}
            spec: {{severity: ticket, condition: {{kind: burnrate, op: gt, threshold: 3, lookbackWindow: 1d}}}}
"""
    )


ANNOTATION = "sloscope.dev/keep-firing-for"


def test_openslo_keep_firing_for_on_conditions_policies_and_slos(tmp_path: Path) -> None:
    slo = "  annotations: {" + f'"{ANNOTATION}": "5m", summary: hi' + "}\n"
    condition = "              annotations: {" + f'"{ANNOTATION}": "60m"' + "}\n"
    loaded = load_one(tmp_path, _openslo(slo, "", condition))
    alerting = loaded.alerting
    assert alerting is not None
    assert [r.keep_firing_for_s for r in alerting.rules] == [HOUR_S, None]
    assert (alerting.keep_firing_for("page"), alerting.keep_firing_for("ticket")) == (HOUR_S, 5 * MINUTE_S)
    assert loaded.annotation_map == {"summary": "hi"}  # read, not kept as an annotation
    # A policy's hold is its conditions' unless they give their own ("0": tickets resolve at once).
    policy = "        annotations: {" + f'"{ANNOTATION}": "0"' + "}\n"
    alerting = load_one(tmp_path, _openslo("", policy, condition)).alerting
    assert alerting is not None
    assert [r.keep_firing_for_s for r in alerting.rules] == [HOUR_S, 0]
    assert (alerting.keep_firing_for("page"), alerting.keep_firing_for("ticket")) == (HOUR_S, 0)


def test_openslo_keep_firing_for_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "slos.yaml"
    condition = "              annotations: {" + f'"{ANNOTATION}": "an hour"' + "}\n"
    slo = "  annotations: {" + f'"{ANNOTATION}": "30s"' + "}\n"
    assert errors_of(tmp_path, _openslo(slo, "", condition)) == [
        f"{path}:5: metadata.annotations.{ANNOTATION}: '30s' must be a whole number of minutes",
        f"{path}:26: spec.alertPolicies[0].spec.conditions[0].metadata.annotations.{ANNOTATION}: "
        "'an hour' is not a duration like 5m, 1h, 28d (a positive whole number and s/m/h/d/w)",
    ]


def _alert_states(slo: Slo, minutes: int) -> dict[str, list[tuple[int, str]]]:
    """Both severities fire at minute 1 and stop at minute 2: each alert's transitions by minute."""
    records: dict[str, AlertRecord] = {}
    assert slo.alerting is not None
    rules = set(slo.alerting.rules)
    out: dict[str, list[tuple[int, str]]] = {"page": [], "ticket": []}
    for minute in range(1, minutes + 1):
        firing = rules if minute == 1 else set()
        _, transitions = state.step(records, [slo], [_result(slo, "/a", firing)], minute * MINUTE_S)
        for t in transitions:
            out[records[t.alert_id].severity].append((minute, t.to_state))
    return out


def test_a_page_holds_for_an_hour_while_the_ticket_resolves_at_once(tmp_path: Path) -> None:
    slo = load_one(tmp_path, NATIVE.replace("    sli:", "    group_by: [http.route]\n    sli:"))
    # False from minute 2 on: the ticket resolves at 2, the page at 62 (60 minutes after the first
    # evaluation that found it false).
    assert _alert_states(slo, 70) == {
        "page": [(1, "firing"), (62, "resolved")],
        "ticket": [(1, "firing"), (2, "resolved")],
    }
