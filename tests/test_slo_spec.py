"""SLO specs: native YAML and OpenSLO v1 into the model, and every error as file:line: field: problem."""

from __future__ import annotations

import os
import subprocess
import textwrap
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from slo import spec
from slo.filters import FilterError, parse_filter
from slo.model import (
    DAY_S,
    HOUR_S,
    MINUTE_S,
    AlertPolicy,
    Budgeting,
    BurnRule,
    Filter,
    LogFilter,
    LogSli,
    MetricSelector,
    MetricSli,
    NotificationTarget,
    Slo,
    SpanSli,
    Window,
    default_rules,
)
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples" / "slos"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_one(tmp_path: Path, text: str) -> Slo:
    slos, errors = spec.load(write(tmp_path, "slos.yaml", text))
    assert [str(e) for e in errors] == []
    assert len(slos) == 1
    return slos[0]


def errors_of(tmp_path: Path, text: str, name: str = "slos.yaml") -> list[str]:
    path = write(tmp_path, name, text)
    slos, errors = spec.load(path)
    assert errors, "expected errors"
    return [str(e) for e in errors]


# -- native format: every field ---------------------------------------------------------------


def test_every_native_field(tmp_path: Path) -> None:
    slo = load_one(
        tmp_path,
        """
        slos:
          - name: checkout
            service: frontend
            description: Checkout works.
            labels: {team: web, tier: 1}
            objective: 99.95
            window: 28d
            budgeting: {method: timeslices, slice: 5m, slice_target: 97.5}
            group_by: [http.route, tenant]
            sli:
              spans:
                operation: POST /checkout
                kinds: [server, CONSUMER]
                filters:
                  - http.route = /checkout
                  - "deployment.environment in (prod, staging)"
                  - {cloud.region: eu-west-1}
                bad:
                  error: true
                  status: ["http.response.status_code >= 500", "rpc.grpc.status_code not in (0, 5)"]
                  latency_ms: 300
            annotations:
              runbook_url: https://runbooks.example.com/{{ service }}/{{name}}
              summary: "{{ name }} {{ objective }}% over {{ window }} for {{ labels.team }}: {{ description }}"
            alerting:
              rules:
                - {severity: page, long: 1h, short: 5m, factor: 14.4}
                - {severity: ticket, long: 1d, short: 2h, factor: 3}
              keep_firing_for: 10m
              min_events: 100
        """,
    )
    assert slo == Slo(
        name="checkout",
        service="frontend",
        objective=Decimal("99.95"),
        sli=SpanSli(
            operation="POST /checkout",
            kinds=("SERVER", "CONSUMER"),
            filters=(
                Filter("http.route", "=", "/checkout"),
                Filter("deployment.environment", "in", ("prod", "staging")),
                Filter("cloud.region", "=", "eu-west-1"),
            ),
            bad_error=True,
            bad_status=(
                Filter("http.response.status_code", ">=", 500.0),
                Filter("rpc.grpc.status_code", "not in", ("0", "5")),
            ),
            bad_latency_ms=300.0,
        ),
        window=Window(rolling_s=28 * DAY_S),
        budgeting=Budgeting("timeslices", 5 * MINUTE_S, Fraction(39, 40)),
        description="Checkout works.",
        labels=(("team", "web"), ("tier", "1")),
        annotations=(
            ("runbook_url", "https://runbooks.example.com/frontend/checkout"),
            ("summary", "checkout 99.95% over 28d for web: Checkout works."),
        ),
        group_by=("http.route", "tenant"),
        alerting=AlertPolicy(
            rules=(
                BurnRule("page", HOUR_S, 5 * MINUTE_S, Fraction(72, 5)),
                BurnRule("ticket", DAY_S, 2 * HOUR_S, Fraction(3)),
            ),
            keep_firing_for_s=600,
            min_events=100,
        ),
        source=f"{tmp_path / 'slos.yaml'}:2",
    )
    # The objective is the decimal that was written, so the budget is exact.
    assert slo.error_budget == Fraction(1, 2000)
    assert isinstance(slo.objective, Decimal)


def test_defaults_and_calendar_windows(tmp_path: Path) -> None:
    slo = load_one(
        tmp_path, "slos: [{name: a, service: s, objective: 99, sli: {spans: {bad: {error: true}}}}]"
    )
    assert slo.window == Window(rolling_s=30 * DAY_S)
    assert slo.budgeting == Budgeting()
    assert slo.alerting == AlertPolicy(rules=default_rules(30 * DAY_S))
    assert [r.factor for r in slo.alerting.rules] == [Fraction(72, 5), 6, 3, 1]

    nominal = {"week": 7, "month": 30, "quarter": 90}
    for unit, days in nominal.items():
        slo = load_one(
            tmp_path,
            f"""
            slos:
              - name: a
                service: s
                objective: 99.9
                window: {{calendar: {unit}, time_zone: Europe/Berlin}}
                budgeting: {{method: ratio_timeslices, slice: 15m}}
                sli: {{spans: {{bad: {{error: true}}}}}}
            """,
        )
        assert slo.window == Window(calendar=unit, time_zone="Europe/Berlin")
        assert slo.budgeting == Budgeting("ratio_timeslices", 15 * MINUTE_S, None)
        # Calendar windows get the default factors of their nominal length.
        assert slo.alerting == AlertPolicy(rules=default_rules(days * DAY_S))

    slo = load_one(
        tmp_path,
        """
        slos:
          - {name: a, service: s, objective: 99, window: {calendar: month}, alerting: {rules: []},
             sli: {spans: {bad: {error: true}}}}
        """,
    )
    assert slo.window == Window(calendar="month", time_zone="UTC")
    assert slo.alerting == AlertPolicy(rules=())


def test_logs_and_metrics_sources(tmp_path: Path) -> None:
    logs = load_one(
        tmp_path,
        """
        slos:
          - name: a
            service: s
            objective: 99
            sli:
              logs:
                total: {severity_min: info, filters: "event.name = mail.sent", body: queued}
                bad: {severity_min: ERROR2}
        """,
    ).sli
    assert logs == LogSli(
        total=LogFilter(9, (Filter("event.name", "=", "mail.sent"),), "queued"), bad=LogFilter(18)
    )
    only_bad = load_one(
        tmp_path, "slos: [{name: a, service: s, objective: 99, sli: {logs: {bad: {severity_min: 13}}}}]"
    ).sli
    assert only_bad == LogSli(total=LogFilter(), bad=LogFilter(13))

    counters = load_one(
        tmp_path,
        """
        slos:
          - name: a
            service: s
            objective: 99
            sli: {metrics: {total: http.requests, good: {name: http.requests, filters: ["code < 500"]}}}
        """,
    ).sli
    assert counters == MetricSli(
        total=MetricSelector("http.requests"),
        good=MetricSelector("http.requests", (Filter("code", "<", 500.0),)),
    )
    histogram = load_one(
        tmp_path,
        """
        slos:
          - name: a
            service: s
            objective: 99
            sli: {metrics: {histogram: {name: http.server.request.duration}, threshold: 0.25}}
        """,
    ).sli
    assert histogram == MetricSli(total=MetricSelector("http.server.request.duration"), threshold=0.25)
    assert histogram.is_histogram


def test_filter_syntax() -> None:
    assert parse_filter("http.route = /a b") == Filter("http.route", "=", "/a b")
    assert parse_filter("k != ' x'") == Filter("k", "!=", " x")
    assert parse_filter("k<=2.5") == Filter("k", "<=", 2.5)
    assert parse_filter('k in ("a,b", c)') == Filter("k", "in", ("a,b", "c"))
    for text, problem in [
        ("k == 1", "use '=' for equality, not '==' (in 'k == 1')"),
        ("k > five", "'>' compares numbers, 'five' is not a number"),
        ("k in a, b", "'in' takes a parenthesised list, e.g. 'k in (a, b)'"),
        ("k in (a,,b)", "'in' list '(a,,b)' has an empty item"),
        (
            "just words",
            "'just words' is not a filter like 'http.route = /checkout', "
            "'http.response.status_code >= 500' or 'deployment.environment in (prod, staging)'",
        ),
    ]:
        with pytest.raises(FilterError) as info:
            parse_filter(text)
        assert str(info.value) == problem


# -- native format: errors --------------------------------------------------------------------

BASE = """
slos:
  - name: a
    service: s
    objective: 99.9
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "slos: [{name: a, service: s, objective: 100, sli: {spans: {bad: {error: true}}}}]",
            ["1: slos[0].objective: must be a percentage between 0 and 100 (exclusive), e.g. 99.9; got 100"],
            id="objective-100",
        ),
        pytest.param(
            "slos: [{name: a, service: s, objective: '99.9', sli: {spans: {bad: {error: true}}}}]",
            ["1: slos[0].objective: must be a number, got '99.9'"],
            id="objective-text",
        ),
        pytest.param(
            BASE + "    objectiv: 99\n    sli: {spans: {bad: {error: true}}}\n",
            ["5: slos[0].objectiv: unknown key 'objectiv' (did you mean 'objective'?)"],
            id="unknown-key",
        ),
        pytest.param(
            BASE + "    window: 30 days\n    sli: {spans: {bad: {error: true}}}\n",
            [
                "5: slos[0].window: '30 days' is not a duration like 5m, 1h, 28d "
                "(a positive whole number and s/m/h/d/w)"
            ],
            id="bad-duration",
        ),
        pytest.param(
            BASE + "    window: 90s\n    sli: {spans: {bad: {error: true}}}\n",
            ["5: slos[0].window: '90s' must be a whole number of minutes"],
            id="window-seconds",
        ),
        pytest.param(
            BASE + "    window: 30d\n    budgeting: {method: timeslices, slice: 7m, slice_target: 95}\n"
            "    sli: {spans: {bad: {error: true}}}\n",
            ["6: slos[0].budgeting.slice: 7m does not divide the window 30d"],
            id="slice-not-dividing",
        ),
        pytest.param(
            BASE + "    window: {calendar: month}\n    budgeting: {method: ratio_timeslices, slice: 2h}\n"
            "    sli: {spans: {bad: {error: true}}}\n",
            [
                "6: slos[0].budgeting.slice: 2h does not divide 1h: slices of a calendar window must divide "
                "an hour (periods have 23- and 25-hour days across DST changes)"
            ],
            id="calendar-slice",
        ),
        pytest.param(
            BASE + "    budgeting: {method: timeslices, slice: 5m}\n    sli: {spans: {bad: {error: true}}}\n",
            ["5: slos[0].budgeting.slice_target: is required for timeslices"],
            id="slice-target-missing",
        ),
        pytest.param(
            BASE + "    sli:\n      spans: {bad: {error: true}}\n      logs: {bad: {body: x}}\n",
            [
                "7: slos[0].sli: has both spans and logs: give exactly one of spans, logs or metrics "
                "(one SLO per source)"
            ],
            id="two-sources",
        ),
        pytest.param(
            BASE + "    sli:\n      spans:\n        operation: GET /\n        bad: {error: false}\n",
            ["8: slos[0].sli.spans.bad: needs at least one bad criterion: error: true, status or latency_ms"],
            id="no-bad-criterion",
        ),
        pytest.param(
            BASE + "    sli:\n      spans:\n        filters:\n          - http.route == /x\n"
            "          - code >= 5xx\n        bad: {error: true}\n",
            [
                "8: slos[0].sli.spans.filters[0]: use '=' for equality, not '==' (in 'http.route == /x')",
                "9: slos[0].sli.spans.filters[1]: '>=' compares numbers, '5xx' is not a number",
            ],
            id="bad-filters",
        ),
        pytest.param(
            BASE + "    window: {calendar: month, time_zone: Europe/Berln}\n"
            "    sli: {spans: {bad: {error: true}}}\n",
            ["5: slos[0].window.time_zone: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"],
            id="unknown-time-zone",
        ),
        pytest.param(
            BASE + "    labels: {team: web}\n    sli: {spans: {bad: {error: true}}}\n    annotations:\n"
            "      runbook_url: https://r.example.com/{{ nme }}\n      summary: '{{ labels.owner }}'\n",
            [
                "8: slos[0].annotations.runbook_url: unknown placeholder {{ nme }} (did you mean {{ name }}?)",
                "9: slos[0].annotations.summary: unknown placeholder {{ labels.owner }}: no label 'owner' "
                "(labels: team)",
            ],
            id="unknown-placeholder",
        ),
        pytest.param(
            BASE + "    sli: {spans: {bad: {error: true}}}\n    annotations: {dashboard_url: 'javascript:x()'}\n",
            [
                "6: slos[0].annotations.dashboard_url: must be an http(s) URL or a path on this server "
                "(/runbooks/NAME), got 'javascript:x()'"
            ],
            id="url-annotation",
        ),
        pytest.param(
            BASE + "    sli: {spans: {bad: {error: true}}}\n    annotations: {runbook_url: see the wiki}\n",
            [
                "6: slos[0].annotations.runbook_url: must be an http(s) URL or a path on this server "
                "(/runbooks/NAME), got 'see the wiki'"
            ],
            id="url-annotation-text",
        ),
        pytest.param(
            BASE + "    service: t\n    sli: {spans: {bad: {error: true}}}\n",
            ["5: slos[0].service: duplicate key"],
            id="duplicate-key",
        ),
        pytest.param(
            "slos:\n  - name: a\n    sli: {metrics: {histogram: {name: d}}}\n",
            [
                "2: slos[0].service: is required",
                "2: slos[0].objective: is required",
                "3: slos[0].sli.metrics.threshold: is required with histogram (a bucket bound, in the "
                "metric's unit)",
            ],
            id="missing-required",
        ),
        pytest.param(
            BASE + "    sli: {spans: {bad: {error: true}}}\n    alerting:\n      rules:\n"
            "        - {severity: page, long: 5m, short: 1h, factor: 14.4}\n      min_events: -1\n",
            [
                "8: slos[0].alerting.rules[0].short: must be shorter than long (5m)",
                "9: slos[0].alerting.min_events: must be a whole number >= 0, got '-1'",
            ],
            id="alert-rules",
        ),
        pytest.param(
            "slos:\n  - name: a\n    service: s\n   objective: 99\n",
            ["4: (yaml): expected <block end>, but found '<block mapping start>'"],
            id="yaml-syntax",
        ),
        pytest.param(
            "slos:\n  - name: a\n    service: s\n    objective: [99\n",
            ["5: (yaml): expected ',' or ']', but got '<stream end>'"],
            id="yaml-unclosed",
        ),
    ],
)
def test_native_errors(tmp_path: Path, body: str, expected: list[str]) -> None:
    path = tmp_path / "slos.yaml"
    assert errors_of(tmp_path, body) == [f"{path}:{line}" for line in expected]


def test_link_annotations_may_be_paths_on_the_server(tmp_path: Path) -> None:
    slo = load_one(
        tmp_path,
        BASE + "    sli: {spans: {bad: {error: true}}}\n    annotations:\n"
        "      runbook_url: runbooks/{{ name }}.md\n      dashboard_url: /slos/{{ name }}\n",
    )
    assert slo.annotations == (("runbook_url", "runbooks/a.md"), ("dashboard_url", "/slos/a"))


def test_all_errors_of_all_files_and_duplicate_names(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", "slos: [{name: a, service: s, objective: 99, sli: {spans: {bad: {error: true}}}}]"
    )
    write(
        tmp_path,
        "b.yml",
        """
        slos:
          - {name: b, service: s, objective: 0, sli: {spans: {bad: {error: true}}}}
          - {name: a, service: s, objective: 99, sli: {spans: {bad: {error: true}}}}
        """,
    )
    write(tmp_path, "c.yaml", "slos:\n  - {name: a, service: s, objective: 99, window: 1x, sli: {}}\n")
    write(tmp_path, "notes.txt", "not a spec")
    slos, errors = spec.load(tmp_path)
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'b.yml'}:2: slos[0].objective: must be a percentage between 0 and 100 (exclusive), "
        "e.g. 99.9; got 0",
        f"{tmp_path / 'b.yml'}:3: slos[1].name: duplicate SLO name 'a' (first defined at "
        f"{tmp_path / 'a.yaml'}:1)",
        f"{tmp_path / 'c.yaml'}:2: slos[0].window: '1x' is not a duration like 5m, 1h, 28d "
        "(a positive whole number and s/m/h/d/w)",
        f"{tmp_path / 'c.yaml'}:2: slos[0].sli: needs one of spans, logs or metrics",
        f"{tmp_path / 'c.yaml'}:2: slos[0].name: duplicate SLO name 'a' (first defined at "
        f"{tmp_path / 'a.yaml'}:1)",
    ]
    with pytest.raises(spec.SpecErrors) as info:
        spec.load_slos(tmp_path)
    assert len(info.value.errors) == 5


def test_path_errors(tmp_path: Path) -> None:
    assert [str(e) for e in spec.load(tmp_path / "missing")[1]] == [
        f"{tmp_path / 'missing'}: (path): no such file or directory"
    ]
    assert [str(e) for e in spec.load(tmp_path)[1]] == [
        f"{tmp_path}: (path): no *.yaml or *.yml files in this directory"
    ]
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    assert [str(e) for e in spec.load(tmp_path)[1]] == [
        f"{tmp_path / 'empty.yaml'}: (document): the file holds no SLOs (it is empty)"
    ]


# -- OpenSLO ----------------------------------------------------------------------------------


def test_openslo_example_maps_onto_the_model() -> None:
    slos, errors = spec.load(EXAMPLES / "openslo.yaml")
    assert errors == []
    by_name = {s.name: s for s in slos}
    quotes = by_name["shipping-quote-availability"]
    assert quotes.objective == Decimal("99.5") and str(quotes.objective) == "99.5"
    assert quotes.window == Window(rolling_s=28 * DAY_S)
    assert quotes.sli == SpanSli(
        operation="GET /shipping/quote",
        kinds=("SERVER",),
        bad_error=True,
        bad_status=(Filter("http.response.status_code", ">=", 500.0),),
    )
    assert quotes.labels == (("team", "shipping"),)
    assert quotes.annotations == (("runbook_url", "https://runbooks.example.com/shipping/quotes"),)
    assert quotes.alerting == AlertPolicy(
        rules=(
            BurnRule("page", HOUR_S, 5 * MINUTE_S, Fraction(72, 5)),
            BurnRule("ticket", 3 * DAY_S, 6 * HOUR_S, Fraction(1)),
        ),
        notification_targets=(
            NotificationTarget("shipping-oncall", "pagerduty", "The shipping team's pager."),
        ),
    )

    labels = by_name["shipping-label-latency"]
    assert labels.sli == SpanSli(operation="POST /shipping/labels", bad_latency_ms=800.0)
    assert labels.window == Window(calendar="quarter", time_zone="America/New_York")
    assert labels.budgeting == Budgeting("timeslices", 5 * MINUTE_S, Fraction(9, 10))
    assert labels.group_by == ("carrier",)
    assert labels.annotations == ()  # the group-by annotation is read, not kept
    assert labels.alerting == AlertPolicy(rules=default_rules(90 * DAY_S))

    events = by_name["shipping-events"]
    assert events.sli == MetricSli(
        total=MetricSelector("shipping.events.processed"),
        good=MetricSelector("shipping.events.processed", (Filter("outcome", "=", "ok"),)),
    )
    assert events.objective == Decimal("99.9")
    assert events.window == Window(calendar="week", time_zone="UTC")
    assert events.budgeting == Budgeting("ratio_timeslices", 15 * MINUTE_S, None)  # a bare 15 is minutes


OPENSLO_SLO = """
apiVersion: openslo/v1
kind: SLO
metadata:
  name: x
spec:
  service: s
  budgetingMethod: Occurrences
  objectives: [{target: 0.999}]
"""
# An inline SLI: logs, bad from WARN up.
LOG_INDICATOR = """  indicator:
    metadata: {name: i}
    spec:
      ratioMetric:
        total: {metricSource: {type: sloscope, spec: {logs: {}}}}
        bad: {metricSource: {type: sloscope, spec: {logs: {severity_min: WARN}}}}
"""


def test_openslo_target_is_exact_and_alert_after_defaults(tmp_path: Path) -> None:
    slo = load_one(
        tmp_path,
        OPENSLO_SLO
        + LOG_INDICATOR
        + """
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: p}
      spec:
        conditions:
          - metadata: {name: c}
            spec: {severity: page, condition: {kind: Burnrate, op: gt, threshold: 6, lookbackWindow: 6h}}
""",
    )
    assert slo.objective == Decimal("99.9") and slo.error_budget == Fraction(1, 1000)
    assert slo.sli == LogSli(total=LogFilter(), bad=LogFilter(13))
    # Without alertAfter the short window is a twelfth of the long one, as in the SRE Workbook.
    assert slo.alerting == AlertPolicy(rules=(BurnRule("page", 6 * HOUR_S, 30 * MINUTE_S, Fraction(6)),))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "apiVersion: openslo/v1\nkind: SLOs\nmetadata: {name: x}\nspec: {}\n",
            ["2: kind: unknown kind 'SLOs' (did you mean 'SLO'?)"],
            id="unknown-kind",
        ),
        pytest.param(
            "apiVersion: openslo/v1\nkind: DataSource\nmetadata: {name: x}\nspec: {}\n",
            ["2: kind: kind DataSource is not supported: metricSource.type sloscope needs no data source"],
            id="datasource",
        ),
        pytest.param(
            OPENSLO_SLO,
            ["6: spec: needs indicator (an inline SLI) or indicatorRef (the name of an SLI)"],
            id="missing-indicator",
        ),
        pytest.param(
            OPENSLO_SLO + "  indicatorRef: nope\n",
            ["9: spec.indicatorRef: no SLI named 'nope' (no SLI objects are defined)"],
            id="unknown-indicator-ref",
        ),
        pytest.param(
            OPENSLO_SLO + "  indicatorRef: i\n  colour: red\n---\napiVersion: openslo/v1\nkind: SLI\n"
            "metadata: {name: i}\nspec:\n  ratioMetric:\n    total: {metricSource: {type: Prometheus, "
            "spec: {query: up}}}\n    good: {metricSource: {type: sloscope, spec: {spans: {}}}}\n",
            [
                "10: spec.colour: unknown key 'colour' (expected one of description, service, indicator, "
                "indicatorRef, timeWindow, budgetingMethod, objectives, alertPolicies)",
                "17: spec.ratioMetric.total.metricSource.type: metric source type 'Prometheus' is not "
                "supported (sloscope reads the data it stores: type: sloscope)",
            ],
            id="unknown-field-and-source",
        ),
        pytest.param(
            OPENSLO_SLO.replace("Occurrences", "Timeslices").replace("0.999", "99.9")
            + "  indicatorRef: i\n  timeWindow: [{duration: 1M, isRolling: true}]\n---\n"
            "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: i}\nspec:\n  ratioMetric:\n"
            "    total: {metricSource: {type: sloscope, spec: {spans: {}}}}\n"
            "    good: {metricSource: {type: sloscope, spec: {spans: {}}}}\n",
            [
                "8: spec.objectives[0].target: must be a ratio between 0 and 1 (exclusive), e.g. 0.999; got 99.9",
                "8: spec.objectives[0].timeSliceTarget: is required for budgetingMethod Timeslices",
                "8: spec.objectives[0].timeSliceWindow: is required for budgetingMethod Timeslices",
                "10: spec.timeWindow[0].duration: '1M': a rolling window is given in m, h, d or w; months, "
                "quarters and years are calendar windows (isRolling: false, calendar)",
                "18: spec.ratioMetric.good.metricSource.spec.spans: spans events are counted as bad, not "
                "good: give bad (with error, status or latency_ms)",
            ],
            id="objective-window-good-spans",
        ),
        pytest.param(
            OPENSLO_SLO.replace("0.999}", "0.99, timeSliceWindow: 5m}")
            + "  indicator:\n    metadata: {name: i}\n    spec:\n      thresholdMetric:\n"
            "        metricSource: {type: sloscope, spec: {spans: {operation: x}}}\n"
            "  timeWindow:\n    - duration: 1M\n      calendar: {startTime: '2024-01-15 00:00:00', "
            "timeZone: Mars/Olympus}\n",
            [
                "8: spec.objectives[0].op: is required with a thresholdMetric",
                "8: spec.objectives[0].value: is required with a thresholdMetric",
                "8: spec.objectives[0].timeSliceWindow: not used by budgetingMethod Occurrences",
                "16: spec.timeWindow[0].calendar.timeZone: unknown time zone 'Mars/Olympus' (use an IANA "
                "name like Europe/Berlin)",
                "16: spec.timeWindow[0].calendar.startTime: '2024-01-15 00:00:00': month periods start at "
                "midnight on the 1st of a month",
            ],
            id="threshold-and-calendar",
        ),
        pytest.param(
            OPENSLO_SLO + "  indicatorRef: i\n  alertPolicies: [{alertPolicyRef: paging}]\n---\n"
            "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: i}\nspec:\n  thresholdMetric:\n"
            "    metricSource: {type: sloscope, spec: {logs: {}}}\n---\n"
            "apiVersion: openslo/v1\nkind: AlertPolicy\nmetadata: {name: pager}\nspec:\n"
            "  conditions: [{conditionRef: fast}]\n",
            [
                "10: spec.alertPolicies[0].alertPolicyRef: no AlertPolicy named 'paging' (expected "
                "one of pager)",
                "17: spec.thresholdMetric.metricSource.spec.logs: logs have no value to compare with a "
                "threshold; use ratioMetric with total and bad",
                "23: spec.conditions[0].conditionRef: no AlertCondition named 'fast' (no AlertCondition "
                "objects are defined)",
            ],
            id="references",
        ),
        pytest.param(
            "apiVersion: openslo/v2\nkind: SLO\nmetadata: {name: x}\nspec: {}\n",
            [
                "1: apiVersion: unknown apiVersion 'openslo/v2' (expected sloscope/v1 for this format or "
                "openslo/v1 for OpenSLO)"
            ],
            id="api-version",
        ),
    ],
)
def test_openslo_errors(tmp_path: Path, body: str, expected: list[str]) -> None:
    path = tmp_path / "slos.yaml"
    assert errors_of(tmp_path, body) == [f"{path}:{line}" for line in expected]


def test_openslo_duplicates_across_formats(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", "slos: [{name: x, service: s, objective: 99, sli: {spans: {bad: {error: true}}}}]"
    )
    write(
        tmp_path,
        "b.yaml",
        OPENSLO_SLO + "  indicator:\n    metadata: {name: i}\n    spec:\n      ratioMetric:\n"
        "        total: {metricSource: {type: sloscope, spec: {metrics: requests}}}\n"
        "        bad: {metricSource: {type: sloscope, spec: {metrics: errors}}}\n",
    )
    assert [str(e) for e in spec.load(tmp_path)[1]] == [
        f"{tmp_path / 'b.yaml'}:4: metadata.name: duplicate SLO name 'x' (first defined at "
        f"{tmp_path / 'a.yaml'}:1)"
    ]


# -- examples and the command -----------------------------------------------------------------


def test_examples_validate() -> None:
    slos, errors = spec.load(EXAMPLES)
    assert errors == []
    assert {s.name for s in slos} >= {
        "gateway-availability",
        "payments-latency",
        "checkout-routes",
        "orders-monthly",
        "inventory-timeslices",
        "mailer-delivery",
        "cart-requests",
        "shipping-quote-availability",
    }
    kinds = {type(s.sli) for s in slos}
    assert kinds == {SpanSli, LogSli, MetricSli}
    assert any(s.window.is_calendar and s.window.time_zone == "Europe/Berlin" for s in slos)
    assert any(s.group_by == ("http.route",) for s in slos)
    assert any(s.budgeting.method == "timeslices" for s in slos)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "sloscope"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_cli_validate_errors(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "slos: [{name: a, service: s, objective: 99.9, sli: {spans: {bad: {}}}}]")
    write(tmp_path, "b.yaml", "apiVersion: openslo/v1\nkind: Slo\nmetadata: {name: b}\nspec: {}\n")
    result = run_cli("slo", "validate", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{tmp_path / 'a.yaml'}:1: slos[0].sli.spans.bad: needs at least one bad criterion: error: true, "
        "status or latency_ms",
        f"{tmp_path / 'b.yaml'}:2: kind: unknown kind 'Slo' (did you mean 'SLO'?)",
    ]
    assert result.stderr.strip() == "2 errors"


def test_cli_validate_examples() -> None:
    result = run_cli("slo", "validate", "examples/slos")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    slos = spec.load_slos(EXAMPLES)
    assert lines[-1] == f"{len(slos)} SLOs OK"
    assert lines[0] == "gateway-availability  service=gateway  objective=99.9%  window=30d"
    assert "orders-monthly  service=orders  objective=99.95%  window=month" in lines
    assert len(lines) == len(slos) + 1


def test_anchors_merge_keys_and_extension_keys(tmp_path: Path) -> None:
    slo = load_one(
        tmp_path,
        """
        x-common: &common
          service: shop
          objective: 99.9
          sli: {spans: {bad: {error: true}}}
        slos:
          - <<: *common
            name: a
            objective: 99.5
        """,
    )
    # An explicit key overrides the merged one, and is not a duplicate.
    assert (slo.name, slo.service, slo.objective) == ("a", "shop", Decimal("99.5"))


def test_tenant_in_both_formats(tmp_path: Path) -> None:
    native = """
    slos:
      - {name: a, service: s, objective: 99, tenant: acme, sli: {logs: {bad: {severity_min: ERROR}}}}
    """
    assert load_one(tmp_path, native).tenant == "acme"
    assert load_one(tmp_path, native.replace(" tenant: acme,", "")).tenant == ""
    bad = errors_of(tmp_path, native.replace("tenant: acme", "tenant: 'a b'"))
    assert bad == [
        f"{tmp_path / 'slos.yaml'}:2: slos[0].tenant: 'a b' is not a tenant name: "
        "use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    ]
    openslo = OPENSLO_SLO.replace("  name: x\n", "  name: x\n  labels: {tenant: globex}\n") + LOG_INDICATOR
    slo = load_one(tmp_path, openslo)
    assert slo.tenant == "globex" and slo.label_map["tenant"] == "globex"
    assert errors_of(tmp_path, openslo.replace("tenant: globex", "tenant: '-x'"))[0].endswith(
        "metadata.labels.tenant: '-x' is not a tenant name: use 1 to 64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit"
    )


def test_on_no_data_in_both_formats(tmp_path: Path) -> None:
    native = """
    slos:
      - name: a
        service: s
        objective: 99
        sli: {logs: {bad: {severity_min: ERROR}}}
        alerting: {on_no_data: alert}
    """
    assert load_one(tmp_path, native).alerting.on_no_data == "alert"
    default = native.replace("{on_no_data: alert}", "{min_events: 1}")
    assert load_one(tmp_path, default).alerting.on_no_data == "keep"
    assert errors_of(tmp_path, native.replace("on_no_data: alert", "on_no_data: alret")) == [
        f"{tmp_path / 'slos.yaml'}:6: slos[0].alerting.on_no_data: unknown action 'alret' (did you mean 'alert'?)"
    ]
    openslo = (
        OPENSLO_SLO
        + LOG_INDICATOR
        + """
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: p}
      spec:
        alertWhenNoData: true
        conditions:
          - metadata: {name: c}
            spec: {severity: page, condition: {kind: burnrate, op: gt, threshold: 6, lookbackWindow: 6h}}
"""
    )
    assert load_one(tmp_path, openslo).alerting.on_no_data == "alert"
    without = openslo.replace("alertWhenNoData: true", "alertWhenNoData: false")
    assert load_one(tmp_path, without).alerting.on_no_data == "keep"
