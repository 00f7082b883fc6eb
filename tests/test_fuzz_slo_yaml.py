"""Fuzzing the SLO spec loader (native YAML and OpenSLO v1) and the notification policy loader.

Inputs: YAML trees from hypothesis (shaped like native documents, and arbitrary ones), and
mutations of the examples (examples/slos, examples/demo, examples/alerting): tree mutations of
their documents, line mutations of their text, deep nesting, recursive aliases. The loaders must
return SLOs (a policy) or errors, each ``file:line: field: problem``, and never raise. A short
seeded run; ``bench/fuzz.py`` runs 100,000 of each.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts import policy
from slo import spec
from tests import fuzzing
from tests.fuzzing import seeded

SLO_TEXTS, SLO_DOCS = fuzzing.yaml_seeds(fuzzing.SLO_EXAMPLES)
POLICY_TEXTS, POLICY_DOCS = fuzzing.yaml_seeds(fuzzing.POLICY_EXAMPLES)
ERROR_LINE = re.compile(r"^(?P<file>[^:]+\.yaml)(?::(?P<line>\d+))?: (?P<field>.+?): (?P<problem>.+)$", re.S)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-yaml") / "specs.yaml"


def test_the_examples_load_without_errors(spec_file: Path) -> None:
    """The seeds are valid; each SLO of a native example stands alone as a seed too."""
    assert len(SLO_DOCS) > len(fuzzing.SLO_EXAMPLES)
    for text in SLO_TEXTS:
        assert fuzzing.check_slo_yaml(text, spec_file) == "accepted", text[:200]
    for text in POLICY_TEXTS:
        assert fuzzing.check_policy_yaml(text, spec_file) == "accepted", text[:200]


def test_the_oracle_insists_on_file_line_field_problem(spec_file: Path) -> None:
    """Errors are checked, not just collected: one without a line fails the oracle."""
    error = spec.SpecError(str(spec_file), 0, "slos[0].name", "is required")
    with pytest.raises(fuzzing.Finding):
        fuzzing.check_spec_errors([error], spec_file, "test")
    fuzzing.check_spec_errors(
        [spec.SpecError(str(spec_file), 3, "slos[0].name", "is required")], spec_file, "t"
    )


@seeded(40)
@given(text=fuzzing.native_slo_docs())
def test_native_documents_with_any_values_load_or_say_why(spec_file: Path, text: str) -> None:
    fuzzing.check_slo_yaml(text, spec_file)


@seeded(30)
@given(tree=fuzzing.yaml_trees)
def test_any_yaml_tree_loads_or_says_why(spec_file: Path, tree: object) -> None:
    text = fuzzing.dump_yaml([tree])
    fuzzing.check_slo_yaml(text, spec_file)
    fuzzing.check_policy_yaml(text, spec_file)


@seeded(70)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_slo_examples_load_or_say_why(spec_file: Path, seed: int) -> None:
    fuzzing.check_slo_yaml(fuzzing.random_yaml(random.Random(seed), SLO_TEXTS, SLO_DOCS), spec_file)


@seeded(60)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_policies_load_or_say_why(spec_file: Path, seed: int) -> None:
    fuzzing.check_policy_yaml(fuzzing.random_yaml(random.Random(seed), POLICY_TEXTS, POLICY_DOCS), spec_file)


NATIVE = "apiVersion: sloscope/v1\nslos:\n  - name: a\n    service: s\n    objective: 99\n"
SLI = "    sli: {spans: {bad: {error: true}}}\n"
OPENSLO_RATIO = """\
apiVersion: openslo/v1
kind: SLO
metadata: {name: q}
spec:
  service: s
  indicator:
    metadata: {name: q-sli}
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: sloscope, spec: {spans: {error: true}}}}
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.99}]
"""
CONDITION = """\
apiVersion: openslo/v1
kind: AlertCondition
metadata: {name: fast}
spec:
  condition: {kind: burnrate, op: gt, threshold: 14.4, lookbackWindow: 1h}
"""


@pytest.mark.parametrize(
    "text,expected",
    [
        # Regression (fuzzing): an SLO missing only required keys hit an assert (AssertionError).
        ("slos:\n  - service: a\n    objective: 99\n" + SLI, ["{file}:2: slos[0].name: is required"]),
        # Regression (fuzzing): objective 1e308 could not be quantized (decimal.InvalidOperation).
        (
            NATIVE.replace("99", "-1.0e+308") + SLI,
            [
                "{file}:5: slos[0].objective: must be a percentage between 0 and 100 (exclusive), e.g. 99.9; "
                "got -1.0E+308"
            ],
        ),
        # Regression (fuzzing): an OpenSLO ratioMetric without total raised KeyError.
        (OPENSLO_RATIO, ["{file}:10: spec.indicator.spec.ratioMetric.total: is required"]),
        # Regression (fuzzing): an AlertCondition without severity hit an assert.
        (CONDITION, ["{file}:5: spec.severity: is required"]),
        # Regression (fuzzing): deep nesting raised RecursionError from PyYAML's composer.
        ("slos: " + "[" * 600 + "]" * 600 + "\n", ["{file}: (yaml): collections are nested too deeply"]),
        ("slos: &a [*a]\n", ["{file}:1: slos[0]: must be a mapping, got a list"]),
        # Regression (fuzzing): a time zone naming a directory of the zone database, or too long a
        # file name, raised IsADirectoryError / OSError from zoneinfo.
        (
            NATIVE + "    window: {calendar: month, time_zone: Europe}\n" + SLI,
            ["{file}:6: slos[0].window.time_zone: unknown time zone 'Europe' (did you mean 'Europe/Rome'?)"],
        ),
        (
            NATIVE + f"    window: {{calendar: month, time_zone: Europe/{'x' * 300}}}\n" + SLI,
            [
                f"{{file}}:6: slos[0].window.time_zone: unknown time zone 'Europe/{'x' * 300}' (use an IANA name like "
                "Europe/Berlin)"
            ],
        ),
        # Regression (fuzzing): an unclosed IPv6 bracket in a URL raised ValueError from urlsplit.
        (
            NATIVE + SLI + '    annotations: {runbook_url: "http://[x"}\n',
            [
                "{file}:7: slos[0].annotations.runbook_url: must be an http(s) URL or a path on this server "
                "(/runbooks/NAME), got 'http://[x'"
            ],
        ),
    ],
    ids=[
        "missing-name",
        "huge-objective",
        "ratio-without-total",
        "condition-without-severity",
        "deep",
        "alias",
        "zone-directory",
        "zone-name-too-long",
        "ipv6-bracket",
    ],
)
def test_regressions_are_errors_not_exceptions(spec_file: Path, text: str, expected: list[str]) -> None:
    spec_file.write_text(text)
    slos, errors = spec.load(spec_file)
    assert [str(e) for e in errors] == [e.format(file=spec_file) for e in expected]
    assert not slos or errors
    for error in errors:
        assert ERROR_LINE.match(str(error)), str(error)


def test_deeply_nested_policy_is_an_error(spec_file: Path) -> None:
    """Regression (fuzzing): the policy loader raised RecursionError too."""
    spec_file.write_text("route: " + "[" * 600 + "]" * 600 + "\n")
    loaded, errors = policy.load(spec_file, {})
    assert loaded is None
    assert [str(e) for e in errors] == [f"{spec_file}: (yaml): collections are nested too deeply"]


def test_an_unclosed_ipv6_bracket_in_a_policy_url_is_an_error(spec_file: Path) -> None:
    """Regression (fuzzing): ``external_url: http://1[27.0.0.1:8080`` raised ValueError from urlsplit."""
    spec_file.write_text("external_url: http://1[27.0.0.1:8080\n")
    loaded, errors = policy.load(spec_file, {})
    assert loaded is None
    assert [str(e) for e in errors] == [
        f"{spec_file}:1: external_url: must be an http(s) URL, got 'http://1[27.0.0.1:8080'"
    ]
