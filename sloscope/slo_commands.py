"""``sloscope slo report`` and ``sloscope slo backtest``: the evaluator over the store, from the shell."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from alerts import backtest as alert_replay
from alerts.model import Notification
from alerts.policy import Policy, default_policy
from alerts.store import load_silences
from slo import evaluator, instants
from slo.budget import Evaluation
from slo.model import Slo
from slo.windows import floor_minute, previous_period
from sloscope.settings import Settings
from store import open_backend
from store.backend import Backend

#: Burn-rate windows shown in the report table (the SLO window's column is added per SLO).
TABLE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


#: Times in the store are DateTime (UInt32 seconds): nothing after 2106-02-07 can be read.
MAX_INSTANT_S = 2**32 - 1


def parse_instant(text: str, name: str) -> int:
    """``now``, ``now-30d``, RFC 3339 (``2026-11-01T00:00:00Z``) or unix seconds, as unix seconds
    (the parser the API shares, ``slo/instants.py``)."""
    nanos = instants.parse_instant_ns(text, name, time.time_ns(), instants.UNIX_SECONDS)
    seconds = nanos // 10**9
    if not 0 <= seconds <= MAX_INSTANT_S:
        raise ValueError(f"{name}: {text!r} is out of range (1970-01-01 to 2106-02-07)")
    return seconds


def open_store(config: Settings) -> Backend:
    """The store ``config`` names: a ClickHouse server, or the embedded one in its data directory."""
    return open_backend(
        config.data_dir,
        config.clickhouse_url,
        user=config.clickhouse_user,
        password=config.clickhouse_password,
    )


def select(slos: Sequence[Slo], names: Sequence[str] | None, source: str | Path) -> list[Slo]:
    """The SLOs named ``names``, in the specs' order (every SLO without names); ValueError naming
    the unknown ones and ``source``."""
    if not names:
        return list(slos)
    unknown = sorted(set(names) - {s.name for s in slos})
    if unknown:
        raise ValueError(f"--slo: no SLO named {', '.join(unknown)} in {source}")
    return [s for s in slos if s.name in names]


def check_reach(slos: Sequence[Slo], at_s: int, name: str, period: str = "current") -> None:
    """ValueError naming ``name`` when an evaluation at ``at_s`` would read data from before 1970,
    where the store's times start (an SLO's window or alert windows reach back that far)."""
    for slo in slos:
        if evaluator.period_reach_s(slo, floor_minute(at_s), period) < 0:
            raise ValueError(
                f"{name}: {iso(at_s)} is too early: SLO {slo.name!r} would read data from before 1970"
            )


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f}%"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _group(group: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in group) or "-"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def _windows(slo: Slo) -> tuple[str, ...]:
    """The burn-rate columns: the table's windows and the SLO window, once (a 1d SLO has one 1d)."""
    label = slo.window.label
    return TABLE_WINDOWS if label in TABLE_WINDOWS else (*TABLE_WINDOWS, label)


def _evaluation_cells(slo: Slo, ev: Evaluation | None) -> list[str]:
    windows = _windows(slo)
    if ev is None:
        return ["-"] * (2 + len(windows))
    rates = [_rate(ev.burn_rates.get(w)) for w in windows]
    return [_percent(ev.sli), _percent(ev.remaining), *rates]


def _met(ev: Evaluation | None) -> str:
    if ev is None or ev.met is None:
        return "-"
    return "met" if ev.met else "missed"


def _previous_cells(ev: Evaluation | None) -> list[str]:
    """A closed period: its final SLI, the share of its budget consumed, and the verdict."""
    return [_percent(ev.sli if ev else None), _percent(ev.consumed if ev else None), _met(ev)]


def _heading_when(slo: Slo, at_s: int, period: str) -> str:
    at = floor_minute(at_s)
    if period == "current":
        return f"at {iso(at)}"
    bounds = previous_period(slo.window, at)
    return f"previous period {iso(bounds.start_s)} to {iso(bounds.end_s)}"


def report(
    backend: Backend,
    slos: Sequence[Slo],
    at_s: int,
    fmt: str,
    out: TextIO = sys.stdout,
    period: str = "current",
    output: str | Path | None = None,
) -> int:
    """Print every SLO instance at ``at_s`` (``period="previous"``: of the period that closed before
    it, at the instant it closed); exit status 0 (1 if an SLO could not be evaluated). ``fmt`` csv
    and parquet write one row per instance (``sloscope.client.report_frame``) to ``output``, or to
    ``out`` (parquet to its binary buffer) without one."""
    check_reach(slos, at_s, "--at", period)
    results = evaluator.evaluate_period(backend, slos, at_s, period)
    if fmt in FILE_FORMATS:
        from sloscope import client  # pandas: only for these formats, never on the evaluation path

        write_frame(client.report_frame([evaluator.as_dict(r) for r in results]), fmt, out, output)
        return 1 if any(r.error for r in results) else 0
    if fmt == "json":
        json.dump([evaluator.as_dict(r) for r in results], out, indent=2)
        out.write("\n")
        return 1 if any(r.error for r in results) else 0
    for slo in slos:
        mine = [r for r in results if r.slo is slo]
        out.write(
            f"{slo.name}  service={slo.service}  objective={slo.objective}%  window={slo.window.label}  "
            f"budgeting={slo.budgeting.method}  {_heading_when(slo, at_s, period)}\n"
        )
        if period == "previous":
            header = ["group", "SLI", "budget consumed", "objective"]
        else:
            header = ["group", "SLI", "budget left", *_windows(slo), "firing"]
        rows = [header]
        for r in mine:
            if r.error:
                out.write(f"  error: {r.error}\n")
                continue
            if period == "previous":
                rows.append([_group(r.group), *_previous_cells(r.evaluation)])
                continue
            rows.append([_group(r.group), *_evaluation_cells(slo, r.evaluation), ",".join(r.firing) or "-"])
        if len(rows) > 1:
            _table(rows, out)
        elif not any(r.error for r in mine):
            out.write("  no data\n")
        out.write("\n")
    return 1 if any(r.error for r in results) else 0


@dataclass(frozen=True)
class BacktestRun:
    """A backtest's outcome: ``documents`` are ``--format json``'s, one per SLO."""

    documents: list[dict[str, Any]]
    runs: list[evaluator.Backtest]
    replayed: alert_replay.Replay
    policy: Policy


def run_backtest(
    backend: Backend,
    slos: Sequence[Slo],
    from_s: int,
    to_s: int,
    step_s: int,
    values: bool,
    policy: Policy | None = None,
) -> BacktestRun:
    """Replay the evaluator over stored data from ``from_s`` to ``to_s`` every ``step_s``, and the
    alerts and notifications the policy would have produced (the stored silences apply); nothing is
    sent or stored. With ``values``, every step's values are in the documents too."""
    policy = policy or default_policy()
    times = evaluator.steps(from_s, to_s, step_s)
    check_reach(slos, int(times[0]), "--from")
    documents = []
    runs = []
    for slo in slos:
        started = time.perf_counter()
        run = evaluator.backtest(backend, slo, times)
        runs.append((run, time.perf_counter() - started))
    started = time.perf_counter()
    replayed = alert_replay.replay([run for run, _ in runs], policy, load_silences(backend))
    replay_s = time.perf_counter() - started
    for slo, (run, elapsed) in zip(slos, runs, strict=True):
        changes = run.changes()
        doc: dict[str, Any] = {
            "slo": slo.name,
            "from": int(times[0]),
            "to": int(times[-1]),
            "step_s": step_s,
            "steps": len(times),
            "seconds": round(elapsed, 3),
            "changes": [
                {
                    "at": c.at_s,
                    "group": dict(c.group),
                    "rule": c.rule,
                    "state": "firing" if c.firing else "resolved",
                }
                for c in changes
            ],
        }
        doc["alerts"] = [
            {
                "at": c.at_s,
                "alert": c.alert_id,
                "severity": c.severity,
                "group": dict(c.group),
                "from": c.from_state,
                "to": c.to_state,
            }
            for c in replayed.changes
            if c.slo == slo.name
        ]
        doc["notifications"] = [
            _notification_json(n) for n in replayed.notifications if any(a.slo == slo.name for a in n.alerts)
        ]
        doc["replay_seconds"] = round(replay_s, 3)
        if values:
            doc["values"] = [
                {"group": dict(g.group), **_step_values(g.evaluations.at(i))}
                for g in run.groups
                for i in range(len(times))
            ]
        documents.append(doc)
    return BacktestRun(documents, [run for run, _ in runs], replayed, policy)


def backtest(
    backend: Backend,
    slos: Sequence[Slo],
    from_s: int,
    to_s: int,
    step_s: int,
    fmt: str,
    values: bool,
    policy: Policy | None = None,
    out: TextIO = sys.stdout,
    output: str | Path | None = None,
) -> int:
    """Replay the evaluator over stored data and print every alert-rule change, every alert state
    change and every notification the policy would have sent (with ``values``, also every step's
    values). Nothing is sent or stored; the stored silences apply.

    ``fmt`` csv and parquet write all of it as one table (``sloscope.client.backtest_table``): a row
    per rule change, alert change, alert of a notification and (with ``values``) step and group,
    told apart by the column ``record``; to ``output``, or to ``out`` (parquet to its binary buffer)."""
    result = run_backtest(backend, slos, from_s, to_s, step_s, values, policy)
    if fmt in FILE_FORMATS:
        from sloscope import client  # pandas: only for these formats, never on the evaluation path

        write_frame(client.backtest_table(result.documents), fmt, out, output)
        return 0
    if fmt == "json":
        json.dump(result.documents, out, indent=2)
        out.write("\n")
        return 0
    for slo, doc, run in zip(slos, result.documents, result.runs, strict=True):
        _print_backtest(slo, doc, run, out)
    out.write(f"notifications the policy would have sent ({result.policy.source or 'default policy'}):\n")
    if not result.replayed.notifications:
        out.write("  none\n")
    for n in result.replayed.notifications:
        alerts = ", ".join(f"{a.slo}/{a.severity}{_braces(a.group)}={a.state}" for a in n.alerts)
        out.write(f"  {iso(n.at_s)}  {n.receiver}  {n.kind}  incident {n.incident_id}  {alerts}\n")
    return 0


#: Formats written through pandas, as one table.
FILE_FORMATS = ("csv", "parquet")
#: Times in csv: evaluations are on whole minutes, so RFC 3339 to the second, as the table prints them.
CSV_TIME = "%Y-%m-%dT%H:%M:%SZ"


def write_frame(frame: Any, fmt: str, out: TextIO, output: str | Path | None) -> None:
    """Write ``frame`` as csv (times as RFC 3339, nested values as JSON) or parquet (typed columns,
    nested values as JSON text) to the file ``output``, or to ``out`` (parquet, being binary, to its
    buffer)."""
    from sloscope.client import file_ready

    table = file_ready(frame)
    if output is not None:
        try:
            if fmt == "csv":
                table.to_csv(output, index=False, date_format=CSV_TIME)
            else:
                table.to_parquet(output, index=False)
        except OSError as exc:
            raise ValueError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
        return
    if fmt == "csv":
        table.to_csv(out, index=False, date_format=CSV_TIME, lineterminator="\n")
        return
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        raise ValueError("--format parquet is binary: give --output FILE")
    out.flush()  # anything already written as text comes first
    table.to_parquet(buffer, index=False)
    buffer.flush()


def _braces(group: Sequence[tuple[str, str]]) -> str:
    return "{" + _group(group) + "}" if group else ""


def _notification_json(n: Notification) -> dict[str, Any]:
    return {
        "at": n.at_s,
        "receiver": n.receiver,
        "kind": n.kind,
        "incident": n.incident_id,
        "id": n.id,
        "alerts": [
            {"alert": a.id, "slo": a.slo, "severity": a.severity, "group": dict(a.group), "state": a.state}
            for a in n.alerts
        ],
    }


def _step_values(ev: Evaluation) -> dict[str, Any]:
    return {
        "at": ev.at_s,
        "total": ev.total,
        "bad": ev.bad,
        "sli": ev.sli,
        "remaining": ev.remaining,
        "burn_rates": dict(ev.burn_rates),
    }


def _print_backtest(slo: Slo, doc: dict[str, Any], run: evaluator.Backtest, out: TextIO) -> None:
    out.write(
        f"{slo.name}: {doc['steps']} steps from {iso(doc['from'])} to {iso(doc['to'])} every "
        f"{doc['step_s'] // 60}m, {doc['seconds']} s\n"
    )
    if "values" in doc:
        header = ["time", "group", "SLI", "budget left", *_windows(slo)]
        rows = [header]
        for g in run.groups:
            for i in range(len(run.times_s)):
                ev = g.evaluations.at(i)
                rows.append([iso(ev.at_s), _group(g.group), *_evaluation_cells(slo, ev)])
        _table(rows, out)
    for change in doc["alerts"]:
        out.write(
            f"  {iso(change['at'])}  alert {change['severity']}{_braces(list(change['group'].items()))}  "
            f"{change['from']} -> {change['to']}\n"
        )
    if not doc["changes"]:
        out.write("  no alert rule fired\n")
    for change in doc["changes"]:
        out.write(
            f"  {iso(change['at'])}  {_group(list(change['group'].items()))}  {change['rule']}  {change['state']}\n"
        )
    out.write("\n")
