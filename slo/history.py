"""The SLO evaluation history: results written to ``slo_evaluations`` every cycle, read back for charts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from slo import sql
from slo.evaluator import InstanceResult, as_dict
from store.backend import Backend

_STR_FLOAT = pa.map_(pa.string(), pa.float64())
_STR_BOOL = pa.map_(pa.string(), pa.bool_())
_STR_STR = pa.map_(pa.string(), pa.string())
#: A "no data" evaluation is stored with its reason in ``error`` after this prefix.
NO_DATA_PREFIX = "no data: "


def group_key(group: Sequence[tuple[str, str]]) -> str:
    """The stored key of a group value: JSON with sorted keys, '' without group_by."""
    return json.dumps(dict(sorted(group)), separators=(",", ":"), ensure_ascii=False) if group else ""


def _column(results: Sequence[InstanceResult], name: str) -> list[Any]:
    return [None if r.evaluation is None else getattr(r.evaluation, name) for r in results]


def record(backend: Backend, results: Sequence[InstanceResult]) -> None:
    """Store one cycle's results. The same results stored again (a retried cycle) are dropped by their
    deduplication token, and a re-evaluated minute replaces its row (ReplacingMergeTree)."""
    if not results:
        return
    ts = pa.timestamp("s", tz="UTC")
    table = pa.table(
        {
            "evaluated_at": pa.array([r.at_s for r in results], ts),
            "slo": [r.slo.name for r in results],
            "service": [r.slo.service for r in results],
            "group_key": [group_key(r.group) for r in results],
            "group_labels": pa.array([list(r.group) for r in results], _STR_STR),
            "objective": [float(r.slo.objective) for r in results],
            "window": [r.slo.window.label for r in results],
            "budgeting": [r.slo.budgeting.method for r in results],
            "window_start": pa.array(
                [r.at_s if r.evaluation is None else r.evaluation.window_start_s for r in results], ts
            ),
            "total": [0.0 if r.evaluation is None else r.evaluation.total for r in results],
            "bad": [0.0 if r.evaluation is None else r.evaluation.bad for r in results],
            "sli": pa.array(_column(results, "sli"), pa.float64()),
            "budget": pa.array(_column(results, "budget"), pa.float64()),
            "consumed": pa.array(_column(results, "consumed"), pa.float64()),
            "remaining": pa.array(_column(results, "remaining"), pa.float64()),
            "time_to_exhaustion_s": pa.array(_column(results, "time_to_exhaustion_s"), pa.float64()),
            "burn_rates": pa.array(
                [
                    []
                    if r.evaluation is None
                    else [(k, v) for k, v in r.evaluation.burn_rates.items() if v is not None]
                    for r in results
                ],
                _STR_FLOAT,
            ),
            "alert_rules": pa.array([[(s.label, s.firing) for s in r.rules] for r in results], _STR_BOOL),
            "error": [r.error or (NO_DATA_PREFIX + r.no_data if r.no_data else "") for r in results],
        }
    )
    # The token covers the values: a retried cycle is dropped, a minute evaluated again with other
    # values (late data, a second evaluator that saw more) is stored and replaces the older row.
    digest = hashlib.sha256()
    for r in results:
        digest.update(json.dumps(as_dict(r), sort_keys=True, default=str).encode())
    backend.insert_arrow("slo_evaluations", table, dedup_token=f"slo_evaluations:{digest.hexdigest()[:32]}")


def _with_dicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their map columns as dicts (Arrow gives lists of pairs)."""
    for row in rows:
        for column in ("group_labels", "burn_rates", "alert_rules"):
            row[column] = dict(row[column])
    return rows


def read(
    backend: Backend, slo: str, start_s: int, end_s: int, group: str = "", limit: int = 10_000
) -> list[dict[str, Any]]:
    """Stored evaluations of ``slo`` in ``[start_s, end_s)``, by group then time; ``group`` is a
    :func:`group_key` ('' for all groups)."""
    if end_s < start_s:
        raise ValueError(f"end ({end_s}) is before start ({start_s})")
    if not 1 <= limit < 2**32:
        raise ValueError(f"limit must be a positive whole number, got {limit}")
    params = {
        "slo": slo,
        "start_s": max(0, start_s),
        "end_s": min(end_s, 2**32 - 1),
        "group_key": group,
        "limit": limit,
    }
    rows = _with_dicts(backend.query_arrow(sql.HISTORY, params).to_pylist())
    for row in rows:
        error = row["error"] or None
        no_data = error is not None and error.startswith(NO_DATA_PREFIX)
        row["error"] = None if no_data else error
        row["no_data"] = error[len(NO_DATA_PREFIX) :] if no_data else None
    return rows


def latest(backend: Backend, slos: Sequence[str], since_s: int) -> list[dict[str, Any]]:
    """The newest stored evaluation of every instance of ``slos`` evaluated since ``since_s``, in
    one query whatever the number of SLOs; by SLO then group."""
    if not slos:
        return []
    params = {"slos": list(slos), "since_s": max(0, min(since_s, 2**32 - 1))}
    return _with_dicts(backend.query_arrow(sql.LATEST, params).to_pylist())


#: An instance burns when its budget goes faster than the window allows: a burn rate of 1 over the
#: last hour spends exactly the whole budget in one window.
BURNING_RATE = 1.0


def burning(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of :func:`latest`'s rows, the instances out of budget, with an alert rule firing, or burning
    faster than ``BURNING_RATE`` over the last hour: out of budget first, then firing, then by burn
    rate. Each row gains ``firing`` (its firing rules' labels) and ``out_of_budget``."""
    found = []
    for row in rows:
        remaining, burn = row["remaining"], row["burn_rates"].get("1h")
        firing = sorted(label for label, fired in row["alert_rules"].items() if fired)
        out = remaining is not None and remaining <= 0
        if out or firing or (burn is not None and burn >= BURNING_RATE):
            found.append({**row, "firing": firing, "out_of_budget": out})
    found.sort(key=lambda r: (not r["out_of_budget"], not r["firing"], -(r["burn_rates"].get("1h") or 0.0)))
    return found
