"""A Python client for analysis in a notebook: sloscope's data as pandas DataFrames.

Two ways in, with the same methods and the same frames (``docs/analysis.md``):

* :class:`Client` reads a running server over its JSON API (``/api/v1/...``), with the standard
  library's HTTP client (no extra dependency).
* :class:`EmbeddedClient` (or ``Client.open(data_dir)``) opens the embedded store of a *stopped*
  server's data directory and asks the same API, run in this process without a socket (chDB allows
  one process per data directory). It also runs backtests, which have no API.

Every frame has typed columns, also when it is empty: times are ``datetime64[ns, UTC]``, counts
``Int64``, measures ``float64`` (NaN where the API says null), text ``string``, yes/no ``boolean``;
attribute maps and lists stay Python objects (``object``). A group of an SLO instance is its labels as
compact JSON with sorted keys (``{}`` without ``group_by``), so that it can be grouped by. What the API
says besides the rows (the widened range, a page's cursor, a canary's verdict) is in ``frame.attrs``.

pandas is imported here and by the ``slo`` commands' csv/parquet output only, never on the ingest or
evaluation paths.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from alerts.policy import Policy
    from slo.model import Slo
    from store.backend import Backend

__all__ = [
    "BacktestFrames",
    "Client",
    "ClientError",
    "EmbeddedClient",
    "backtest_frames",
    "backtest_table",
    "file_ready",
    "report_frame",
]

T = TypeVar("T")

#: A time as the methods take it: a datetime or pandas Timestamp with a zone, or a text the API reads
#: (``now``, ``now-2h``, RFC 3339, unix milliseconds).
TimeLike = datetime | str
#: A step: ``5m``, ``1h`` (whole minutes for RED series) or a timedelta.
StepLike = str | timedelta

_NAT = np.iinfo(np.int64).min  # numpy's NaT as int64


class ClientError(Exception):
    """The server refused a request (``status`` 4xx/5xx, ``detail`` its reason), or could not be
    reached (``status`` None). The embedded client raises it too, with the status the API would give."""

    def __init__(self, status: int | None, detail: str, url: str = "") -> None:
        self.status = status
        self.detail = detail
        self.url = url
        where = f" ({url})" if url else ""
        super().__init__(f"{status}: {detail}{where}" if status is not None else f"{detail}{where}")


# -- columns -------------------------------------------------------------------------------------
# A column kind names how a JSON value becomes a typed column.
TIME_NS = "time_ns"  # unix nanoseconds, as int or decimal string (OTLP/JSON)
TIME_S = "time_s"  # unix seconds
TIME_TEXT = "time_text"  # RFC 3339
INT = "int"
FLOAT = "float"
TEXT = "text"
BOOL = "bool"
OBJECT = "object"
GROUP = "group"  # a dict of group labels, as compact JSON with sorted keys


def _times_ns(values: Sequence[int | None]) -> pd.Series:
    """Exact unix nanoseconds (never through a float) as a datetime64[ns, UTC] column."""
    ints = np.array([_NAT if v is None else int(v) for v in values], dtype="int64")
    return pd.Series(ints.view("datetime64[ns]")).dt.tz_localize("UTC")


def group_text(labels: Mapping[str, str] | None) -> str:
    """An SLO instance's group as compact JSON with sorted keys (``{}`` without ``group_by``)."""
    return json.dumps(dict(sorted((labels or {}).items())), separators=(",", ":"), ensure_ascii=False)


def _column(kind: str, values: list[Any]) -> pd.Series:
    if kind == TIME_NS:
        return _times_ns([None if v is None else int(v) for v in values])
    if kind == TIME_S:
        return _times_ns([None if v is None else int(v) * 10**9 for v in values])
    if kind == TIME_TEXT:
        parsed = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
        return parsed.astype("datetime64[ns, UTC]")  # pandas 3 infers a coarser unit from the text
    if kind == INT:
        return pd.Series(pd.array([None if v is None else int(v) for v in values], dtype="Int64"))
    if kind == FLOAT:
        return pd.Series(np.array([np.nan if v is None else float(v) for v in values], dtype="float64"))
    if kind == TEXT:
        return pd.Series(pd.array([None if v is None else str(v) for v in values], dtype="string"))
    if kind == BOOL:
        return pd.Series(pd.array([None if v is None else bool(v) for v in values], dtype="boolean"))
    if kind == GROUP:
        return pd.Series(pd.array([group_text(v) for v in values], dtype="string"))
    if kind == OBJECT:
        return pd.Series(values, dtype=object)
    raise AssertionError(f"unknown column kind {kind}")


def _frame(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    """A frame of ``columns`` (name -> kind) from rows already flattened to those names; zero rows
    give an empty frame with the same typed columns."""
    data = {name: _column(kind, [row.get(name) for row in rows]) for name, kind in columns.items()}
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


def _window_order(label: str) -> tuple[int, str]:
    """Burn-rate windows sorted by length (``5m`` before ``1h`` before ``7d``)."""
    from slo.model import parse_duration

    try:
        return parse_duration(label), label
    except ValueError:
        return 2**62, label


def _burn_rate_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One float column ``burn_rate_<window>`` per window any row has, shortest first."""
    labels = {label for row in rows for label in (row.get("burn_rates") or {})}
    return {f"burn_rate_{label}": FLOAT for label in sorted(labels, key=_window_order)}


def _with_burn_rates(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for label, value in (row.get("burn_rates") or {}).items():
        out[f"burn_rate_{label}"] = value
    return out


# -- frames of the API's answers ----------------------------------------------------------------
RED_STATS = {
    "requests": INT,
    "errors": INT,
    "rate": FLOAT,
    "error_rate": FLOAT,
    "error_ratio": FLOAT,
    "p50_ms": FLOAT,
    "p95_ms": FLOAT,
    "p99_ms": FLOAT,
}
SERVICES = {"service": TEXT, **RED_STATS}
OPERATIONS = {"operation": TEXT, "kind": TEXT, **RED_STATS}
RED = {"time": TIME_TEXT, **RED_STATS}
RED_VERSIONS = {"version": TEXT, "share": FLOAT, **RED}
TRACES = {
    "trace_id": TEXT,
    "root_service": TEXT,
    "root_operation": TEXT,
    "root_span_missing": BOOL,
    "start_time": TIME_NS,
    "duration_ns": INT,
    "duration_ms": FLOAT,
    "span_count": INT,
    "error_count": INT,
    "services": OBJECT,
}
SPANS = {
    "trace_id": TEXT,
    "span_id": TEXT,
    "parent_span_id": TEXT,
    "trace_state": TEXT,
    "flags": INT,
    "name": TEXT,
    "kind": TEXT,
    "service_name": TEXT,
    "start_time": TIME_NS,
    "end_time": TIME_NS,
    "duration_ns": INT,
    "status_code": TEXT,
    "status_message": TEXT,
    "attributes": OBJECT,
    "resource_attributes": OBJECT,
    "resource_schema_url": TEXT,
    "scope_name": TEXT,
    "scope_version": TEXT,
    "scope_attributes": OBJECT,
    "scope_schema_url": TEXT,
    "events": OBJECT,
    "links": OBJECT,
    "dropped_attributes_count": INT,
    "dropped_events_count": INT,
    "dropped_links_count": INT,
    "correlation_id": TEXT,
}
LOGS = {
    "time": TIME_NS,
    "observed_time": TIME_NS,
    "severity_number": INT,
    "severity_text": TEXT,
    "body": TEXT,
    "event_name": TEXT,
    "service_name": TEXT,
    "trace_id": TEXT,
    "span_id": TEXT,
    "flags": INT,
    "attributes": OBJECT,
    "resource_attributes": OBJECT,
    "scope_name": TEXT,
    "scope_version": TEXT,
    "correlation_id": TEXT,
}
HISTORY = {
    "at": TIME_S,
    "slo": TEXT,
    "service": TEXT,
    "group": GROUP,
    "objective": FLOAT,
    "window": TEXT,
    "budgeting": TEXT,
    "window_start": TIME_S,
    "total": FLOAT,
    "bad": FLOAT,
    "sli": FLOAT,
    "budget": FLOAT,
    "consumed": FLOAT,
    "remaining": FLOAT,
    "time_to_exhaustion_s": FLOAT,
}
HISTORY_TAIL = {"alert_rules": OBJECT, "error": TEXT, "no_data": TEXT}
REPORT = {
    "slo": TEXT,
    "service": TEXT,
    "group": GROUP,
    "objective": FLOAT,
    "window": TEXT,
    "budgeting": TEXT,
    "at": TIME_S,
    "labels": OBJECT,
    "annotations": OBJECT,
    "error": TEXT,
    "no_data": TEXT,
    "window_start": TIME_S,
    "period_end": TIME_S,
    "total": FLOAT,
    "bad": FLOAT,
    "sli": FLOAT,
    "budget_unit": TEXT,
    "budget": FLOAT,
    "expected": FLOAT,
    "consumed": FLOAT,
    "remaining": FLOAT,
    "exhausted": BOOL,
    "time_to_exhaustion_s": FLOAT,
}
REPORT_TAIL = {
    "met": BOOL,
    "slices": INT,
    "slices_with_data": INT,
    "slices_good": INT,
    "slices_bad": INT,
    "slices_no_data": INT,
    "alert_rules": OBJECT,
    "firing": OBJECT,
}
CANARY = {
    "metric": TEXT,
    "unit": TEXT,
    "baseline": FLOAT,
    "candidate": FLOAT,
    "baseline_requests": INT,
    "candidate_requests": INT,
    "test": TEXT,
    "p_value": FLOAT,
    "effect_size": FLOAT,
    "verdict": TEXT,
    "reason": TEXT,
    "baseline_burn_rate": FLOAT,
    "candidate_burn_rate": FLOAT,
}
RULE_CHANGES = {"slo": TEXT, "at": TIME_S, "group": GROUP, "rule": TEXT, "state": TEXT}
ALERT_CHANGES = {
    "slo": TEXT,
    "at": TIME_S,
    "alert": TEXT,
    "severity": TEXT,
    "group": GROUP,
    "from_state": TEXT,
    "to_state": TEXT,
}
NOTIFICATIONS = {
    "at": TIME_S,
    "receiver": TEXT,
    "kind": TEXT,
    "incident": TEXT,
    "notification": TEXT,
    "alert": TEXT,
    "slo": TEXT,
    "severity": TEXT,
    "group": GROUP,
    "state": TEXT,
}
STEPS = {
    "slo": TEXT,
    "at": TIME_S,
    "group": GROUP,
    "total": FLOAT,
    "bad": FLOAT,
    "sli": FLOAT,
    "remaining": FLOAT,
}


def _iso_attr(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text).tz_convert("UTC").as_unit("ns")


def _window_attrs(answer: Mapping[str, Any]) -> dict[str, Any]:
    return {"start": _iso_attr(answer.get("start")), "end": _iso_attr(answer.get("end"))}


def services_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/services``: one row per service, busiest first."""
    frame = _frame(answer["services"], SERVICES)
    frame.attrs.update(_window_attrs(answer))
    return frame


def operations_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/services/{service}/operations`` (or ``/api/v1/red?group_by=operation``, of one
    version): one row per operation and span kind."""
    frame = _frame(answer["operations"] if "operations" in answer else answer["groups"], OPERATIONS)
    frame.attrs.update(
        {"service": answer["service"], "version": answer.get("version"), **_window_attrs(answer)}
    )
    return frame


def _series_attrs(answer: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "service": answer["service"],
        "operation": answer["operation"],
        "version": answer.get("version"),
        "step": pd.Timedelta(seconds=answer["step"]),
        **_window_attrs(answer),
    }


def red_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/red``: one row per step, every step present."""
    frame = _frame(answer["points"], RED)
    frame.attrs.update(_series_attrs(answer))
    return frame


def red_versions_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/red?group_by=version``: one row per version and step, busiest version first;
    ``share`` is the version's part of the service's requests over the whole range."""
    rows = [
        {"version": group["version"], "share": group["share"], **point}
        for group in answer["groups"]
        for point in group["points"]
    ]
    frame = _frame(rows, RED_VERSIONS)
    frame.attrs.update(_series_attrs(answer))
    return frame


def traces_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/traces``: one row per trace summary, in the page's order."""
    rows = [{**t, "start_time": t["start_time_unix_nano"]} for t in answer["traces"]]
    frame = _frame(rows, TRACES)
    frame.attrs.update(
        {"total": answer["total"], "next_cursor": answer["next_cursor"], "sort": answer["sort"]}
    )
    return frame


def spans_frame(spans: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The spans of ``GET /api/v1/traces/{trace_id}``: one row per span, in start-time order."""
    rows = []
    for s in spans:
        rows.append(
            {
                **s,
                "start_time": s["start_time_unix_nano"],
                "end_time": s["end_time_unix_nano"],
                "status_code": s["status"]["code"],
                "status_message": s["status"]["message"],
                "resource_attributes": s["resource"]["attributes"],
                "resource_schema_url": s["resource"].get("schema_url"),
                "scope_name": s["scope"]["name"],
                "scope_version": s["scope"]["version"],
                "scope_attributes": s["scope"].get("attributes"),
                "scope_schema_url": s["scope"].get("schema_url"),
            }
        )
    return _frame(rows, SPANS)


def _body_text(body: Any) -> str | None:
    """A log body as text: a string as it is, any other kind as JSON (``null`` for none)."""
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)


def logs_frame(logs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Log records of ``GET /api/v1/logs`` (or a trace's): one row per record."""
    rows = [
        {
            **record,
            "time": record["time_unix_nano"],
            "observed_time": record["observed_time_unix_nano"],
            "body": _body_text(record["body"]),
            "resource_attributes": record["resource"]["attributes"],
            "scope_name": record["scope"]["name"],
            "scope_version": record["scope"]["version"],
        }
        for record in logs
    ]
    return _frame(rows, LOGS)


def history_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/slos/{name}/history``: one row per stored evaluation, by group then time."""
    rows = [
        {
            **_with_burn_rates(e),
            "at": e["at_s"],
            "group": e["group_labels"],
            "window_start": e["window_start_s"],
        }
        for e in answer["evaluations"]
    ]
    frame = _frame(rows, {**HISTORY, **_burn_rate_columns(rows), **HISTORY_TAIL})
    frame.attrs["slo"] = answer["slo"]
    return frame


def report_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """SLO instances as ``GET /api/v1/slos`` and ``slo report --format json`` give them (one dict per
    instance): one row per instance; ``burn_rates`` become ``burn_rate_<window>`` columns and
    ``slices`` the ``slices_*`` columns (null unless the SLO budgets by timeslices)."""
    rows = []
    for r in results:
        row = _with_burn_rates(r)
        slices = r.get("slices") or {}
        row |= {
            "slices": slices.get("slices"),
            "slices_with_data": slices.get("with_data"),
            "slices_good": slices.get("good"),
            "slices_bad": slices.get("bad"),
            "slices_no_data": slices.get("no_data"),
        }
        rows.append(row)
    return _frame(rows, {**REPORT, **_burn_rate_columns(rows), **REPORT_TAIL})


def canary_frame(answer: Mapping[str, Any]) -> pd.DataFrame:
    """``GET /api/v1/canary``: one row per metric compared; the verdict is in ``attrs``."""
    frame = _frame(answer["metrics"], CANARY)
    frame.attrs.update(
        {key: answer.get(key) for key in ("service", "baseline", "candidate", "verdict", "reason")}
    )
    frame.attrs.update(_window_attrs(answer))
    return frame


@dataclass(frozen=True)
class BacktestFrames:
    """A backtest as frames: ``rules`` (every alert-rule change: ``state`` firing or resolved),
    ``alerts`` (every alert state change), ``notifications`` (one row per alert a notification
    carries: a notification about two alerts is two rows sharing ``notification``) and ``values``
    (each step's values per group; empty unless asked for)."""

    rules: pd.DataFrame
    alerts: pd.DataFrame
    notifications: pd.DataFrame
    values: pd.DataFrame


def backtest_frames(documents: Sequence[Mapping[str, Any]]) -> BacktestFrames:
    """The frames of ``slo backtest --format json``'s documents (one per SLO)."""
    rules, alerts, notifications, values = [], [], [], []
    for doc in documents:
        slo = doc["slo"]
        rules += [{"slo": slo, **c} for c in doc["changes"]]
        alerts += [{"slo": slo, **a, "from_state": a["from"], "to_state": a["to"]} for a in doc["alerts"]]
        for n in doc["notifications"]:
            # A notification is listed under every SLO it carries alerts of: each SLO's document
            # contributes its own alerts, so every (notification, alert) is one row overall.
            for a in n["alerts"]:
                if a["slo"] == slo:
                    notifications.append({**n, **a, "notification": n["id"]})
        values += [_with_burn_rates({"slo": slo, **v}) for v in doc.get("values", [])]
    return BacktestFrames(
        _frame(rules, RULE_CHANGES),
        _frame(alerts, ALERT_CHANGES),
        _frame(notifications, NOTIFICATIONS),
        _frame(values, {**STEPS, **_burn_rate_columns(values)}),
    )


#: The ``record`` of each row of :func:`backtest_table`, in the order the table lists them.
BACKTEST_RECORDS = ("rule", "alert", "notification", "step")


def backtest_table(documents: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """All of a backtest in one table (``slo backtest --format csv|parquet``): the rows of
    :func:`backtest_frames`' frames one after another, marked by ``record`` (rule, alert,
    notification, step), with the union of their columns (null where a record has no such field)."""
    frames = backtest_frames(documents)
    parts = [
        frame.assign(record=pd.Series([record] * len(frame), dtype="string"))
        for record, frame in zip(
            BACKTEST_RECORDS, (frames.rules, frames.alerts, frames.notifications, frames.values), strict=True
        )
    ]
    columns = ["record"] + list(dict.fromkeys(c for part in parts for c in part.columns if c != "record"))
    dtypes = {c: part[c].dtype for part in parts for c in part.columns}
    aligned = [part.reindex(columns=columns).astype(dtypes) for part in parts]
    return pd.concat(aligned, ignore_index=True).astype(dtypes)


def file_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its object columns (attribute maps, lists) as JSON text, for csv and parquet."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = pd.array(
                [json.dumps(v, ensure_ascii=False, sort_keys=True) for v in out[name]], dtype="string"
            )
    return out


# -- arguments ------------------------------------------------------------------------------------
class _NoTimeZone(ValueError):
    """A naive datetime: refused by the client itself, before any request (in both modes)."""


def _timestamp_ns(value: datetime, name: str) -> int:
    if value.tzinfo is None:
        raise _NoTimeZone(
            f"{name}: {value!r} has no time zone; give one (e.g. pd.Timestamp(...).tz_localize('UTC'))"
        )
    return pd.Timestamp(value).as_unit("ns").value


def _rfc3339(ns: int) -> str:
    """Exact unix nanoseconds as RFC 3339 in UTC with nine decimals (the API reads them exactly)."""
    seconds, nanos = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _time_param(value: TimeLike | None, name: str) -> str | None:
    """A time for the API: texts as given (the server reads them), datetimes as exact RFC 3339."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return _rfc3339(_timestamp_ns(value, name))
    raise TypeError(f"{name}: expected a datetime, pandas Timestamp or text, got {type(value).__name__}")


def _step_param(value: StepLike | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        seconds = pd.Timedelta(value).total_seconds()
        if seconds <= 0 or seconds != int(seconds):
            raise ValueError(f"step: {value!r} must be a positive whole number of seconds")
        return f"{int(seconds) // 60}m" if seconds % 60 == 0 else f"{int(seconds)}s"
    raise TypeError(f"step: expected text like '5m' or a timedelta, got {type(value).__name__}")


def _attr_params(attrs: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """``attr`` filters: texts as the API takes them (``K=V``, ``K>N``), or a mapping of equalities."""
    if attrs is None:
        return []
    if isinstance(attrs, Mapping):
        return [f"{key}={value}" for key, value in attrs.items()]
    if isinstance(attrs, str):
        return [attrs]
    return list(attrs)


def _duration_param(value: float | None) -> str | None:
    return None if value is None else repr(float(value))


class _Base:
    """The methods both clients share: each asks :meth:`_answer` for the API's JSON answer and turns it
    into a typed frame."""

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET ``path`` (``/api/v1/...``) with ``params``: the API's JSON answer, or ClientError."""
        raise NotImplementedError

    def _answer(self, endpoint: str, **params: Any) -> dict[str, Any]:
        """The answer of the endpoint behind one of the methods, with its parameters as the API
        takes them (times as text, lists as repeated parameters, None left out)."""
        pairs: list[tuple[str, str]] = []
        for key in ("start", "end", "at"):
            if key in params:
                params[key] = _time_param(params[key], key)
        path = {
            "services": "/api/v1/services",
            "red": "/api/v1/red",
            "traces": "/api/v1/traces",
            "logs": "/api/v1/logs",
            "slos": "/api/v1/slos",
            "canary": "/api/v1/canary",
        }.get(endpoint)
        if endpoint == "operations" and params["version"] is not None:
            path = "/api/v1/red"  # the operations of one version
            params["group_by"] = "operation"
        elif endpoint == "operations":
            path = f"/api/v1/services/{_q(params.pop('service'))}/operations"
        elif endpoint == "red_versions":
            path = "/api/v1/red"
            params["group_by"] = "version"
        elif endpoint == "trace":
            path = f"/api/v1/traces/{_q(params.pop('trace_id'))}"
        elif endpoint == "history":
            path = f"/api/v1/slos/{_q(params.pop('name'))}/history"
        assert path is not None, endpoint
        for key, value in params.items():
            if value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                pairs.append((key, str(item)))
        return self.get(path, pairs)

    def services(
        self, start: TimeLike | None = None, end: TimeLike | None = None, limit: int = 100
    ) -> pd.DataFrame:
        """RED per service over ``[start, end)`` (default: the last hour), busiest first.

        Columns: service (string), requests, errors (Int64), rate, error_rate, error_ratio,
        p50_ms, p95_ms, p99_ms (float64). ``attrs``: start, end (the range widened to minutes)."""
        return services_frame(self._answer("services", start=start, end=end, limit=limit))

    def operations(
        self,
        service: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int = 100,
        version: str | None = None,
    ) -> pd.DataFrame:
        """RED per operation and span kind of ``service`` (of one ``service.version``, '' for
        requests sent without one, or of all). Columns: operation, kind (string) and the columns of
        :meth:`services` after ``service``."""
        return operations_frame(
            self._answer("operations", service=service, start=start, end=end, limit=limit, version=version)
        )

    def red(
        self,
        service: str,
        operation: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        step: StepLike | None = None,
        version: str | None = None,
    ) -> pd.DataFrame:
        """Rate, errors and latency of ``service`` (one ``operation``, or all; one ``version``, or
        all) per ``step`` (whole minutes; default about 100 points), every step present.

        Columns: time (datetime64[ns, UTC], the step's start) and the numbers of :meth:`services`.
        ``attrs``: service, operation, version, step (Timedelta), start, end."""
        return red_frame(
            self._answer(
                "red",
                service=service,
                operation=operation,
                start=start,
                end=end,
                step=_step_param(step),
                version=version,
            )
        )

    def red_by_version(
        self,
        service: str,
        operation: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        step: StepLike | None = None,
        version: str | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """:meth:`red` per ``service.version`` (the busiest ``limit`` versions; '' is requests sent
        without one): one row per version and step, busiest version first.

        Columns: version (string), share (float64: the version's part of the service's requests over
        the range) and the columns of :meth:`red`. ``attrs`` as :meth:`red`'s."""
        return red_versions_frame(
            self._answer(
                "red_versions",
                service=service,
                operation=operation,
                start=start,
                end=end,
                step=_step_param(step),
                version=version,
                limit=limit,
            )
        )

    def search_traces(
        self,
        service: str | None = None,
        operation: str | None = None,
        attrs: Sequence[str] | Mapping[str, Any] | None = None,
        min_duration_ms: float | None = None,
        max_duration_ms: float | None = None,
        status: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int = 20,
        sort: str = "newest",
        cursor: str | None = None,
    ) -> pd.DataFrame:
        """One page of the trace search (``GET /api/v1/traces``, same parameters; ``attrs`` as
        ``["k=v", "k>n"]`` or ``{"k": "v"}``).

        Columns: trace_id, root_service, root_operation (string), root_span_missing (boolean),
        start_time (datetime64[ns, UTC]), duration_ns (Int64), duration_ms (float64), span_count,
        error_count (Int64), services (object: list of names). ``attrs``: total, next_cursor (pass it
        as ``cursor`` for the next page; None after the last), sort."""
        return traces_frame(
            self._answer(
                "traces",
                service=service,
                operation=operation,
                attr=_attr_params(attrs),
                min_duration_ms=_duration_param(min_duration_ms),
                max_duration_ms=_duration_param(max_duration_ms),
                status=status,
                start=start,
                end=end,
                limit=limit,
                sort=sort,
                cursor=cursor,
            )
        )

    def trace(self, trace_id: str) -> pd.DataFrame:
        """The spans of one trace, one row per span in start-time order; ClientError 404 if unknown.

        Columns: trace_id, span_id, parent_span_id ('' for a root), trace_state (string), flags
        (Int64), name, kind, service_name (string), start_time, end_time (datetime64[ns, UTC]),
        duration_ns (Int64), status_code, status_message (string), attributes, resource_attributes
        (object: dicts), resource_schema_url, scope_name, scope_version (string), scope_attributes
        (object), scope_schema_url (string), events, links (object: lists of dicts),
        dropped_attributes_count, dropped_events_count, dropped_links_count (Int64), correlation_id
        (string)."""
        return spans_frame(self._answer("trace", trace_id=trace_id)["spans"])

    def trace_logs(self, trace_id: str) -> pd.DataFrame:
        """The logs of one trace (from 5 minutes before its first span to 5 after its end), in time
        order; the columns of :meth:`logs`."""
        return logs_frame(self._answer("trace", trace_id=trace_id)["logs"])

    def logs(
        self,
        service: str | None = None,
        severity_min: int | str | None = None,
        q: str | None = None,
        trace_id: str | None = None,
        correlation_id: str | None = None,
        attrs: Sequence[str] | Mapping[str, Any] | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """Log search (``GET /api/v1/logs``, same parameters), newest first.

        Columns: time, observed_time (datetime64[ns, UTC]), severity_number (Int64), severity_text,
        body (string: a body that is not text as JSON), event_name, service_name, trace_id, span_id
        (string, '' when absent), flags (Int64), attributes, resource_attributes (object: dicts),
        scope_name, scope_version, correlation_id (string)."""
        return logs_frame(
            self._answer(
                "logs",
                service=service,
                severity_min=None if severity_min is None else str(severity_min),
                q=q,
                trace_id=trace_id,
                correlation_id=correlation_id,
                attr=_attr_params(attrs),
                start=start,
                end=end,
                limit=limit,
            )["logs"]
        )

    def slo_history(
        self,
        name: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        group: Mapping[str, str] | None = None,
        limit: int = 10_000,
    ) -> pd.DataFrame:
        """Stored evaluations of SLO ``name`` in ``[start, end)`` (default: the last 24 hours), of
        one ``group`` or all, by group then time.

        Columns: at (datetime64[ns, UTC]), slo, service (string), group (string: JSON), objective
        (float64), window, budgeting (string), window_start (datetime64[ns, UTC]), total, bad, sli,
        budget, consumed, remaining, time_to_exhaustion_s (float64), one burn_rate_<window>
        (float64) per window evaluated, shortest first, alert_rules (object: rule -> firing),
        error, no_data (string, null unless the evaluation failed or had no data)."""
        group_json = None if group is None else json.dumps(dict(group), separators=(",", ":"))
        return history_frame(
            self._answer("history", name=name, start=start, end=end, group=group_json, limit=limit)
        )

    def slos(self, at: TimeLike | None = None, period: str = "current") -> pd.DataFrame:
        """Every SLO instance at ``at`` (default now), or of the period that closed before it
        (``period="previous"``): the rows of ``slo report --format json``, one per instance.

        Columns: slo, service, group (string), objective (float64), window, budgeting (string), at
        (datetime64[ns, UTC]), labels, annotations (object), error, no_data (string), window_start,
        period_end (datetime64[ns, UTC]), total, bad, sli (float64), budget_unit (string), budget,
        expected, consumed, remaining (float64), exhausted (boolean), time_to_exhaustion_s
        (float64), burn_rate_<window> (float64), met (boolean), slices, slices_with_data,
        slices_good, slices_bad, slices_no_data (Int64), alert_rules, firing (object)."""
        return report_frame(self._answer("slos", at=at, period=period)["slos"])

    def canary(
        self,
        service: str,
        baseline: str,
        candidate: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        slo: str | Sequence[str] | None = None,
        min_requests: int | None = None,
    ) -> pd.DataFrame:
        """The canary comparison of ``candidate`` with ``baseline`` (``service.version`` values):
        one row per metric (error_ratio, latency_p50/p95/p99, ``slo:NAME``); ``min_requests``: the
        fewest requests of each side for a verdict (default the server's).

        Columns: metric, unit (string), baseline, candidate (float64), baseline_requests,
        candidate_requests (Int64), test (string), p_value, effect_size (float64), verdict, reason
        (string), baseline_burn_rate, candidate_burn_rate (float64). ``attrs``: service, baseline,
        candidate, start, end, verdict (pass, marginal, fail, not_enough_data), reason."""
        slos = [slo] if isinstance(slo, str) else list(slo or [])
        return canary_frame(
            self._answer(
                "canary",
                service=service,
                baseline=baseline,
                candidate=candidate,
                start=start,
                end=end,
                slo=slos,
                min_requests=min_requests,
            )
        )

    def backtest(self, *args: Any, **kwargs: Any) -> BacktestFrames:
        """The alert-rule changes, alert changes and notifications ``slo backtest`` would report.
        There is no backtest API: only :class:`EmbeddedClient` runs one (same parameters)."""
        raise ClientError(
            None,
            "backtests have no API: open the stopped server's data directory with Client.open(data_dir) "
            "or run `sloscope slo backtest --format csv|parquet`",
        )

    def close(self) -> None:
        """Release what the client holds (nothing for HTTP)."""

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- over HTTP --------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class Client(_Base):
    """A running server, over its JSON API.

    ``auth=(user, password)`` signs in with HTTP Basic, as sloscope's users do; ``token`` is sent as
    ``Authorization: Bearer <token>`` for a reverse proxy in front of sloscope that takes one (give one
    of the two). A refusal raises :class:`ClientError` with the server's ``detail``.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        *,
        auth: tuple[str, str] | None = None,
    ) -> None:
        if token is not None and auth is not None:
            raise ValueError("give token or auth, not both")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": "sloscope.client"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        if auth is not None:
            import base64

            pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {pair}"

    @staticmethod
    def open(data_dir: str | Path, slos: str | Path | None = None) -> EmbeddedClient:
        """An :class:`EmbeddedClient` over a stopped server's data directory."""
        return EmbeddedClient(data_dir, slos=slos)

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET ``path`` (``/api/v1/...``) with ``params`` and return its JSON answer."""
        query = urllib.parse.urlencode(list(params))
        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(body).get("detail", body)
            except (ValueError, AttributeError):
                detail = body or exc.reason
            raise ClientError(
                exc.code, detail if isinstance(detail, str) else json.dumps(detail), url
            ) from None
        except urllib.error.URLError as exc:
            raise ClientError(None, f"cannot reach the server: {exc.reason}", url) from None
        except (TimeoutError, ConnectionError) as exc:  # raised while reading, outside URLError
            raise ClientError(None, f"the server did not answer: {exc}", url) from None


# -- over a data directory ---------------------------------------------------------------------------
class EmbeddedClient(_Base):
    """A stopped server's data directory, read in this process through the embedded store.

    The answers are the API's own: its application runs in this process, over this store, and each
    request goes to it without a socket, so parsing, defaults and refusals are the server's. Times
    given as text (``now-1h``) are read against this machine's clock. ``slos`` (a spec file or
    directory, or Slo objects) are the SLOs the SLO endpoints and :meth:`canary` know; ``tenant``
    limits every read to one tenant, as a user bound to it sees the API. Close it (or use ``with``)
    before a server opens the directory again.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        slos: str | Path | Sequence[Slo] | None = None,
        *,
        backend: Backend | None = None,
        tenant: str | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        from store import open_backend
        from ui.api import create_app

        if (data_dir is None) == (backend is None):
            raise ValueError("give data_dir or backend")
        if backend is None:
            path = Path(data_dir)  # type: ignore[arg-type]
            if not (path / "store" / "clickhouse").is_dir():
                raise FileNotFoundError(
                    f"{path} holds no sloscope store (no {path / 'store' / 'clickhouse'})"
                )
            backend = open_backend(path)
            self._owned = True
        else:
            self._owned = False
        self.backend = backend
        self.tenant = tenant
        self._app = create_app(
            backend, CollectorRegistry(), lambda: [], slos=_load_slos(slos) if slos else ()
        )

    @staticmethod
    def open(data_dir: str | Path, slos: str | Path | None = None) -> EmbeddedClient:
        """The same as ``EmbeddedClient(data_dir, slos)``."""
        return EmbeddedClient(data_dir, slos=slos)

    def close(self) -> None:
        """Close the store (when this client opened it)."""
        if self._owned:
            self.backend.close()
            self._owned = False

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET ``path`` (``/api/v1/...``, percent-encoded) of the in-process API; its JSON answer."""
        from store.tenancy import tenant_scope

        query = urllib.parse.urlencode(list(params))
        with tenant_scope(self.tenant):
            context = contextvars.copy_context()
        # A thread of its own: a notebook's event loop is already running in this one.
        with ThreadPoolExecutor(1) as pool:
            status, body = pool.submit(context.run, asyncio.run, _asgi_get(self._app, path, query)).result()
        answer = json.loads(body) if body else None
        if status >= 400:
            detail = answer.get("detail", "") if isinstance(answer, dict) else body.decode("utf-8", "replace")
            raise ClientError(status, detail if isinstance(detail, str) else json.dumps(detail), path)
        return answer

    def backtest(
        self,
        slos: str | Path | Sequence[Slo],
        start: TimeLike,
        end: TimeLike = "now",
        step: StepLike = "1m",
        policy: str | Path | Policy | None = None,
        values: bool = False,
    ) -> BacktestFrames:
        """Replay the evaluator and the notification policy over the stored data from ``start`` to
        ``end`` every ``step`` (whole minutes), as ``sloscope slo backtest`` does: nothing is sent or
        stored; the stored silences apply. ``slos``: a spec file or directory, or Slo objects;
        ``policy``: a notification policy file or object (default: the default policy).

        Frames (:class:`BacktestFrames`):

        * rules: slo (string), at (datetime64[ns, UTC]), group, rule, state (string: firing, resolved)
        * alerts: slo, at, alert, severity, group, from_state, to_state
        * notifications: at, receiver, kind, incident, notification (id), alert, slo, severity,
          group, state: one row per alert a notification carries
        * values (with ``values=True``): slo, at, group, total, bad, sli, remaining (float64),
          burn_rate_<window> (float64)
        """
        from alerts.policy import Policy, load_policy
        from slo import instants
        from slo.model import parse_duration
        from sloscope import slo_commands
        from store.tenancy import tenant_scope

        def instant_s(value: TimeLike, name: str) -> int:
            if isinstance(value, datetime):
                return _timestamp_ns(value, name) // 10**9
            return instants.parse_instant_ns(value, name, now_ns, instants.UNIX_MILLISECONDS) // 10**9

        now_ns = time.time_ns()
        try:
            chosen = _load_slos(slos)
            from_s, to_s = instant_s(start, "start"), instant_s(end, "end")
            if to_s < from_s:
                raise ValueError(f"end: {end!r} is before start {start!r}")
            step_text = _step_param(step) or "1m"
            step_s = parse_duration(step_text)
            if step_s % 60:
                raise ValueError(f"step: {step_text!r} is not a whole number of minutes")
            chosen_policy = (
                policy if isinstance(policy, Policy) else load_policy(str(policy) if policy else None)
            )
            with tenant_scope(self.tenant):
                run = slo_commands.run_backtest(
                    self.backend, chosen, from_s, to_s, step_s, values, chosen_policy
                )
        except _NoTimeZone:
            raise
        except ValueError as exc:
            raise ClientError(400, str(exc)) from None
        return backtest_frames(run.documents)


async def _asgi_get(app: Callable[..., Any], path: str, query: str) -> tuple[int, bytes]:
    """One GET request through an ASGI application: its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": urllib.parse.unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"localhost"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
    }
    status, chunks = 500, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _load_slos(slos: str | Path | Sequence[Slo]) -> list[Slo]:
    """SLO specs from a file or directory (every problem as one ValueError), or the given Slo objects."""
    if not isinstance(slos, str | Path):
        return list(slos)
    from slo import spec

    loaded, errors = spec.load(Path(slos))
    if errors:
        raise ValueError("; ".join(str(e) for e in errors))
    return loaded
