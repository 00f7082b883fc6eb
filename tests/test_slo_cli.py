"""``sloscope slo report``, ``sloscope slo backtest`` and ``sloscope serve --slos`` as real child
processes over a store holding the stream of tests/test_slo_api.py (no server on that data
directory: chDB allows one process per data directory). Answers are worked out by hand."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slo import evaluator, spec
from store import open_backend
from tests.conftest import ROOT, free_port
from tests.test_slo_api import (
    END_S,
    NAMES,
    ROUTES_AT_END,
    SHOP_AT_END,
    START_S,
    assert_matches,
    at,
    prepare_data_dir,
    rfc3339,
    write_spec,
)

SLOSCOPE = ROOT / ".venv" / "bin" / "sloscope"
BROKEN = """\
slos:
  - name: broken
    service: shop
    objective: 120
    sli: {spans: {bad: {error: true}}}
  - name: other
    service: shop
    objective: 99
    windw: 7d
    sli: {spans: {bad: {error: true}}}
"""


def broken_errors(path: Path) -> list[str]:
    """The two errors of BROKEN, each starting ``file:line: field:``."""
    return [f"{path}:4: slos[0].objective: ", f"{path}:9: slos[1].windw: unknown key 'windw'"]


@dataclass(frozen=True)
class Prepared:
    data_dir: Path
    spec: Path
    broken: Path
    #: evaluator.as_dict of every instance at END_S, computed in this process before the CLI runs.
    at_end: list[dict[str, Any]]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prepared]:
    root = tmp_path_factory.mktemp("slo-cli")
    data_dir = root / "data"
    prepare_data_dir(data_dir)
    spec_path = write_spec(root)
    broken = root / "broken.yaml"
    broken.write_text(BROKEN)
    slos, errors = spec.load(spec_path)
    assert not errors
    backend = open_backend(data_dir)
    try:
        at_end = [evaluator.as_dict(r) for r in evaluator.evaluate(backend, slos, END_S)]
    finally:
        backend.close()  # the CLI's processes open the data directory next
    yield Prepared(data_dir, spec_path, broken, at_end)


def sloscope(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    return subprocess.run(
        [str(SLOSCOPE), *map(str, args)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def test_report_json_is_the_evaluators_answer_and_the_hand_computed_one(prepared: Prepared) -> None:
    result = sloscope(
        "slo",
        "report",
        prepared.spec,
        "--at",
        rfc3339(END_S),
        "--format",
        "json",
        "--data-dir",
        prepared.data_dir,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == prepared.at_end
    by_key = {(r["slo"], r["group"].get("http.route", "")): r for r in report}
    assert [r["slo"] for r in report] == NAMES[:3] + [n for n in NAMES[3:] for _ in range(2)]
    for name in NAMES[:3]:
        assert_matches(by_key[name, ""], SHOP_AT_END)
    for name in NAMES[3:]:
        for route, wanted in ROUTES_AT_END.items():
            assert_matches(by_key[name, route], wanted)
    # Without PATH, SLOSCOPE_SLOS names the specs; unix seconds work for --at.
    from_env = sloscope(
        "slo",
        "report",
        "--at",
        str(END_S + 59),
        "--format",
        "json",
        env={"SLOSCOPE_SLOS": str(prepared.spec), "SLOSCOPE_DATA_DIR": str(prepared.data_dir)},
    )
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout) == report


def _tables(text: str) -> dict[str, list[list[str]]]:
    """Each SLO's heading line followed by its table rows, split on runs of spaces."""
    out: dict[str, list[list[str]]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.split()[0]
            out[current] = [line.split("  ")]
        elif line.strip():
            out[current].append(line.split())
    return out


def test_report_table_names_each_slo_with_its_sli_budget_and_burn_rates(prepared: Prepared) -> None:
    result = sloscope("slo", "report", prepared.spec, "--at", str(END_S), "--data-dir", prepared.data_dir)
    assert result.returncode == 0, result.stderr
    tables = _tables(result.stdout)
    assert list(tables) == NAMES
    heading, header, row = tables["shop-availability"]
    assert heading == [
        "shop-availability",
        "service=shop",
        "objective=90%",
        "window=7d",
        "budgeting=occurrences",
        f"at {rfc3339(END_S)}",
    ]
    assert header == [
        "group",
        "SLI",
        "budget",
        "left",
        "5m",
        "30m",
        "1h",
        "2h",
        "6h",
        "1d",
        "3d",
        "7d",
        "firing",
    ]
    # SLI 1460/1680, budget left 1 - 220/168, burn rates 2.5 / 1.11 (2h) / 1.31 (220/1680/0.1).
    assert row == [
        "-",
        "86.905%",
        "-30.952%",
        "2.50",
        "2.50",
        "2.50",
        "1.11",
        "1.31",
        "1.31",
        "1.31",
        "1.31",
        "page,ticket",
    ]
    heading, header, *rows = tables["routes-metrics"]
    assert heading[2:4] == ["objective=80%", "window=1d"]
    # The SLO window is one of the table's windows: one 1d column, not two.
    assert header == ["group", "SLI", "budget", "left", "5m", "30m", "1h", "2h", "6h", "1d", "3d", "firing"]
    assert rows == [
        ["http.route=/a", "88.889%", "44.444%", "0.83", "0.83", "0.83", "0.42", "0.56", "0.56", "0.56", "-"],
        [
            "http.route=/b",
            "83.333%",
            "16.667%",
            "2.50",
            "2.50",
            "2.50",
            "0.83",
            "0.83",
            "0.83",
            "0.83",
            "page,ticket",
        ],
    ]


# Rule changes worked out in tests/test_slo_api.py's stream (minutes after START_S):
#  shop-availability (b = 0.1): page 1h/5m (> 20% bad in both) fires at 38 (1h: 80 of 380) and
#  resolves at 44 (5m: 10 of 50 is exactly 20%); fires again at 171 (1h: 102 of 498; at 170 it is
#  exactly 100 of 500) and resolves at 185 (the 5m window is empty). ticket 1d/6h (> 10% of all the
#  data so far) fires at 34 (40 of 340), resolves at 100 (exactly 100 of 1000) and fires at 137
#  (134 of 1336; 132 of 1328 at 136).
SHOP_CHANGES = [
    (34, {}, "ticket 1d/6h", "firing"),
    (38, {}, "page 1h/5m", "firing"),
    (44, {}, "page 1h/5m", "resolved"),
    (100, {}, "ticket 1d/6h", "resolved"),
    (137, {}, "ticket 1d/6h", "firing"),
    (171, {}, "page 1h/5m", "firing"),
    (185, {}, "page 1h/5m", "resolved"),
]
#  shop-routes (b = 0.2): ticket 1d/6h (> 14% bad so far) fires for both routes at 35 (5 of 35
#  minutes bad) and resolves at 72 (10 of 72); /b fires again at 158 (78 of 556). page 1h/5m
#  (> 40% bad) fires only for /b, at 174 (1h: 54 of 132), and resolves at 185.
A, B = {"http.route": "/a"}, {"http.route": "/b"}
ROUTES_CHANGES = [
    (35, A, "ticket 1d/6h", "firing"),
    (35, B, "ticket 1d/6h", "firing"),
    (72, A, "ticket 1d/6h", "resolved"),
    (72, B, "ticket 1d/6h", "resolved"),
    (158, B, "ticket 1d/6h", "firing"),
    (174, B, "page 1h/5m", "firing"),
    (185, B, "page 1h/5m", "resolved"),
]


def _changes(doc: dict[str, Any]) -> list[tuple[int, dict[str, str], str, str]]:
    return [((c["at"] - START_S) // 60, c["group"], c["rule"], c["state"]) for c in doc["changes"]]


def test_backtest_reports_every_rule_change_at_the_hand_computed_minute(prepared: Prepared) -> None:
    result = sloscope(
        "slo",
        "backtest",
        prepared.spec,
        "--from",
        rfc3339(START_S),
        "--to",
        rfc3339(at(190)),
        "--slo",
        "shop-routes",
        "--slo",
        "shop-availability",
        "--format",
        "json",
        "--data-dir",
        prepared.data_dir,
    )
    assert result.returncode == 0, result.stderr
    shop, routes = json.loads(result.stdout)  # in the spec's order
    assert (shop["slo"], shop["from"], shop["to"], shop["step_s"], shop["steps"]) == (
        "shop-availability",
        START_S,
        at(190),
        60,
        191,
    )
    assert _changes(shop) == SHOP_CHANGES
    assert routes["slo"] == "shop-routes" and _changes(routes) == ROUTES_CHANGES
    assert "values" not in shop


def test_backtest_values_give_one_entry_per_step(prepared: Prepared) -> None:
    result = sloscope(
        "slo",
        "backtest",
        prepared.spec,
        "--from",
        str(START_S),
        "--to",
        str(at(180)),
        "--step",
        "20m",
        "--slo",
        "shop-logs",
        "--values",
        "--format",
        "json",
        "--data-dir",
        prepared.data_dir,
    )
    assert result.returncode == 0, result.stderr
    [doc] = json.loads(result.stdout)
    values = doc["values"]
    assert doc["steps"] == len(values) == 10
    assert [v["at"] for v in values] == [at(m) for m in range(0, 181, 20)]
    assert values[0]["total"] == 0 and values[0]["sli"] is None  # nothing before the stream starts
    # Minute 40: the burst's 100 bad of 400; minute 100: 100 of 1000; minute 180: all of it.
    assert [(v["total"], v["bad"]) for v in values if v["at"] in (at(40), at(100), at(180))] == [
        (400, 100),
        (1000, 100),
        (1680, 220),
    ]
    assert values[-1]["burn_rates"] == pytest.approx(SHOP_AT_END["burn_rates"])
    assert values[-1]["remaining"] == pytest.approx(SHOP_AT_END["remaining"])


def test_backtest_table_lists_the_changes(prepared: Prepared) -> None:
    result = sloscope(
        "slo",
        "backtest",
        prepared.spec,
        "--from",
        rfc3339(START_S),
        "--to",
        rfc3339(at(190)),
        "--slo",
        "shop-metrics",
        "--data-dir",
        prepared.data_dir,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"shop-metrics: 191 steps from {rfc3339(START_S)} to {rfc3339(at(190))} every 1m"
    )
    rows = [line.split() for line in lines[1:] if line.strip()]
    assert [r for r in rows if r[1:2] == ["-"]] == [
        [rfc3339(at(minute)), "-", *rule.split(), state] for minute, _, rule, state in SHOP_CHANGES
    ]
    # One rule per severity here, no hold-down: each rule change is an alert change of its severity.
    previous: dict[str, str] = {}
    expected_alerts = []
    for minute, _, rule, state in SHOP_CHANGES:
        severity = rule.split()[0]
        expected_alerts.append(
            [rfc3339(at(minute)), "alert", severity, previous.get(severity, "inactive"), "->", state]
        )
        previous[severity] = state
    assert [r for r in rows if r[1:2] == ["alert"]] == expected_alerts
    # The default policy has no receivers: incidents are recorded, nothing would be sent.
    assert lines[-2:] == ["notifications the policy would have sent (default policy):", "  none"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["report", "--at", "yesterday"],
            "--at: 'yesterday' is not now, now-DURATION, RFC 3339 or unix seconds",
        ),
        (["report", "--at", "2026-01-01T00:00:00"], "--at: '2026-01-01T00:00:00' has no time zone"),
        (["report", "--at", "now-soon"], "--at: 'soon' is not a duration"),
        (["report", "--at", "1" * 30], "is out of range"),
        (["report", "--at", "0"], "--at: 1970-01-01T00:00:00Z is too early: SLO 'shop-availability'"),
        (["backtest", "--from", "2026-13-01T00:00:00Z"], "--from: '2026-13-01T00:00:00Z' is not now"),
        (["backtest", "--from", str(at(10)), "--to", str(at(0))], "--to: "),
        (
            ["backtest", "--from", str(START_S), "--step", "90s"],
            "--step: '90s' is not a whole number of minutes",
        ),
        (["backtest", "--from", str(START_S), "--step", "often"], "--step: 'often' is not a duration"),
        (["backtest", "--from", str(START_S), "--slo", "nope"], "--slo: no SLO named nope"),
    ],
)
def test_bad_arguments_are_one_error_line_and_exit_2(
    prepared: Prepared, args: list[str], message: str
) -> None:
    command, *rest = args
    result = sloscope("slo", command, prepared.spec, *rest, "--data-dir", prepared.data_dir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("sloscope: error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize("command", [["report"], ["backtest", "--from", "now-1h"]])
def test_a_spec_with_errors_lists_them_with_file_and_line_and_exits_1(
    prepared: Prepared, command: list[str]
) -> None:
    name, *rest = command
    result = sloscope("slo", name, prepared.broken, *rest, "--data-dir", prepared.data_dir)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(
        line.startswith(e) for line, e in zip(lines, broken_errors(prepared.broken), strict=True)
    )


def test_serve_with_a_broken_spec_does_not_start_and_names_file_and_line(
    tmp_path: Path, prepared: Prepared
) -> None:
    ports = [str(free_port()) for _ in range(4)]
    result = sloscope(
        "serve",
        "--slos",
        prepared.broken,
        "--data-dir",
        tmp_path / "data",
        "--api-port",
        ports[0],
        "--otlp-http-port",
        ports[1],
        "--otlp-grpc-port",
        ports[2],
        "--zipkin-port",
        ports[3],
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("sloscope: error: the SLO specs have errors (slos):")
    for error in broken_errors(prepared.broken):
        assert f"\n  {error}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before the store was opened
