"""``sloscope slo report`` and ``sloscope slo backtest`` with ``--format csv|parquet``, as real child
processes over the store of tests/test_client.py: the csv parsed back with pandas, and the parquet read
back with pandas (through pyarrow), hold exactly the rows of ``--format json``, field by field."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.test_client import Prepared, prepare

SLOSCOPE = ROOT / ".venv" / "bin" / "sloscope"
AT = "2025-06-02T10:30:00Z"
TIMES = {"at", "window_start", "period_end"}
JSON_TEXT = {"group", "labels", "annotations", "alert_rules", "firing"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare(tmp_path_factory.mktemp("slo-formats"))


def sloscope(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    return subprocess.run(
        [str(SLOSCOPE), *map(str, args)], capture_output=True, env=env, cwd=ROOT, timeout=180
    )


def run_ok(*args: str | Path) -> bytes:
    result = sloscope(*args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def is_null(value: Any) -> bool:
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
    )


def same(cell: Any, wanted: Any, column: str) -> bool:
    """A cell read back from a file against the JSON's value of its field."""
    if is_null(wanted):
        return is_null(cell)
    if column in TIMES:
        return pd.Timestamp(cell) == pd.Timestamp(wanted, unit="s", tz="UTC")
    if column in JSON_TEXT:
        return json.loads(cell) == wanted
    return bool(cell == wanted)


def check_rows(frame: pd.DataFrame, expected: list[dict[str, Any]]) -> None:
    """Every row of ``frame`` is the expected row: its fields equal, every other column null."""
    assert len(frame) == len(expected)
    for i, (row, wanted) in enumerate(zip(frame.to_dict("records"), expected, strict=True)):
        assert set(wanted) <= set(row), set(wanted) - set(row)
        for column, cell in row.items():
            value = wanted.get(column)
            assert same(cell, value, column), (i, column, cell, value)


# -- report ----------------------------------------------------------------------------------------------
def report_rows(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The json output's instances as the table's rows: burn rates and slices flattened, by hand."""
    rows = []
    for instance in instances:
        row = {k: v for k, v in instance.items() if k not in ("burn_rates", "slices")}
        row |= {f"burn_rate_{w}": rate for w, rate in instance["burn_rates"].items()}
        slices = instance["slices"] or {}
        row |= {
            "slices": slices.get("slices"),
            "slices_with_data": slices.get("with_data"),
            "slices_good": slices.get("good"),
            "slices_bad": slices.get("bad"),
            "slices_no_data": slices.get("no_data"),
        }
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def report_json(prepared: Prepared) -> list[dict[str, Any]]:
    out = run_ok(
        "slo", "report", prepared.spec, "--at", AT, "--format", "json", "--data-dir", prepared.data_dir
    )
    instances = json.loads(out)
    assert [(r["slo"], r["group"]) for r in instances] == [
        ("shop-availability", {}),
        ("shop-routes", {"http.route": "/cart"}),
        ("shop-routes", {"http.route": "/items"}),
    ]
    return instances


def test_report_csv_is_the_json_output_one_row_per_instance(
    prepared: Prepared, report_json: list[dict[str, Any]]
) -> None:
    out = run_ok(
        "slo", "report", prepared.spec, "--at", AT, "--format", "csv", "--data-dir", prepared.data_dir
    )
    text = out.decode()
    header = text.splitlines()[0].split(",")
    assert header[:7] == ["slo", "service", "group", "objective", "window", "budgeting", "at"]
    # burn rates in the order of their windows, shortest first
    assert [c for c in header if c.startswith("burn_rate_")] == [
        f"burn_rate_{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ]
    assert f"{AT}," in text.splitlines()[1] + ","  # times as RFC 3339
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    check_rows(frame, report_rows(report_json))
    # and the numbers are the stream's: shop 120 requests, 15 failed by 10:30
    assert frame.loc[0, ["total", "bad"]].tolist() == [120.0, 15.0]


def test_report_parquet_on_stdout_keeps_the_types(
    prepared: Prepared, report_json: list[dict[str, Any]]
) -> None:
    out = run_ok(
        "slo", "report", prepared.spec, "--at", AT, "--format", "parquet", "--data-dir", prepared.data_dir
    )
    assert out[:4] == b"PAR1"
    schema = pq.read_schema(io.BytesIO(out))
    assert str(schema.field("at").type) == "timestamp[ns, tz=UTC]"
    frame = pd.read_parquet(io.BytesIO(out))
    check_rows(frame, report_rows(report_json))
    assert {c: str(frame[c].dtype) for c in ("at", "total", "exhausted", "met", "slices", "slo")} == {
        "at": "datetime64[ns, UTC]",
        "total": "float64",
        "exhausted": "boolean",
        "met": "boolean",
        "slices": "Int64",
        "slo": "string",
    }


def test_output_writes_the_file_and_nothing_to_stdout(prepared: Prepared, tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    common = ("slo", "report", prepared.spec, "--at", AT, "--data-dir", prepared.data_dir)
    assert run_ok(*common, "--format", "csv", "--output", target) == b""
    assert target.read_bytes() == run_ok(*common, "--format", "csv")
    as_json = tmp_path / "report.json"
    assert run_ok(*common, "--format", "json", "--output", as_json) == b""
    assert json.loads(as_json.read_text()) == json.loads(run_ok(*common, "--format", "json"))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_an_output_that_cannot_be_written_is_one_error_line(
    prepared: Prepared, tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / "missing" / "report.out"
    result = sloscope(
        "slo",
        "report",
        prepared.spec,
        "--at",
        AT,
        "--data-dir",
        prepared.data_dir,
        "--format",
        fmt,
        "--output",
        target,
    )
    assert result.returncode == 2, result.stderr.decode()
    error = result.stderr.decode()
    assert error.startswith(f"sloscope: error: --output: cannot write {target}: ") and error.count("\n") == 1
    assert result.stdout == b""


# -- backtest ---------------------------------------------------------------------------------------------
def backtest_rows(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The json output's documents as the table's rows, by hand: rule changes, alert changes, the
    alerts of notifications and the steps, each kind in document order."""
    rules, alerts, notifications, steps = [], [], [], []
    for doc in documents:
        slo = doc["slo"]
        rules += [{"record": "rule", "slo": slo, **c} for c in doc["changes"]]
        for a in doc["alerts"]:
            renamed = {k: v for k, v in a.items() if k not in ("from", "to")}
            alerts.append(
                {"record": "alert", "slo": slo, **renamed, "from_state": a["from"], "to_state": a["to"]}
            )
        for n in doc["notifications"]:
            head = {"record": "notification", "at": n["at"], "receiver": n["receiver"], "kind": n["kind"]}
            for a in n["alerts"]:
                if a["slo"] == slo:
                    notifications.append({**head, "incident": n["incident"], "notification": n["id"], **a})
        for v in doc.get("values", []):
            flat = {k: x for k, x in v.items() if k != "burn_rates"}
            steps.append(
                {
                    "record": "step",
                    "slo": slo,
                    **flat,
                    **{f"burn_rate_{w}": r for w, r in v["burn_rates"].items()},
                }
            )
    return rules + alerts + notifications + steps


@pytest.fixture(scope="module")
def backtest_args(prepared: Prepared) -> tuple[str | Path, ...]:
    return (
        "slo",
        "backtest",
        prepared.spec,
        "--from",
        "2025-06-02T10:00:00Z",
        "--to",
        "2025-06-02T11:00:00Z",
        "--values",
        "--notification-policy",
        prepared.policy,
        "--data-dir",
        prepared.data_dir,
    )


@pytest.fixture(scope="module")
def backtest_json(backtest_args: tuple[str | Path, ...]) -> list[dict[str, Any]]:
    documents = json.loads(run_ok(*backtest_args, "--format", "json"))
    assert [d["slo"] for d in documents] == ["shop-availability", "shop-routes"]
    assert all(d["changes"] and d["alerts"] and d["notifications"] for d in documents)
    return documents


def test_backtest_csv_is_the_json_output_one_row_per_change_notified_alert_and_step(
    backtest_args: tuple[str | Path, ...], backtest_json: list[dict[str, Any]]
) -> None:
    text = run_ok(*backtest_args, "--format", "csv").decode()
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    expected = backtest_rows(backtest_json)
    check_rows(frame, expected)
    counts = frame.groupby("record", sort=False).size().to_dict()
    assert list(counts) == ["rule", "alert", "notification", "step"]
    assert counts["step"] == 61 * 3  # 61 minutes, three instances
    assert frame.columns[0] == "record"


def test_backtest_parquet_to_a_file_keeps_the_types(
    backtest_args: tuple[str | Path, ...], backtest_json: list[dict[str, Any]], tmp_path: Path
) -> None:
    target = tmp_path / "backtest.parquet"
    assert run_ok(*backtest_args, "--format", "parquet", "--output", target) == b""
    frame = pd.read_parquet(target)
    check_rows(frame, backtest_rows(backtest_json))
    assert str(frame["at"].dtype) == "datetime64[ns, UTC]" and str(frame["sli"].dtype) == "float64"
    assert str(frame["record"].dtype) == "string"


def test_backtest_without_values_or_changes_is_a_table_with_its_columns(prepared: Prepared) -> None:
    """Before the stream nothing fires: the csv is the header alone."""
    text = run_ok(
        "slo",
        "backtest",
        prepared.spec,
        "--from",
        "2025-06-01T00:00:00Z",
        "--to",
        "2025-06-01T01:00:00Z",
        "--format",
        "csv",
        "--data-dir",
        prepared.data_dir,
    ).decode()
    assert text.splitlines() == [
        "record,slo,at,group,rule,state,alert,severity,from_state,to_state,receiver,kind,incident,"
        "notification,total,bad,sli,remaining"
    ]
