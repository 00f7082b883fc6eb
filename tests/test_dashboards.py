"""Grafana dashboards (dashboards/*.json) and their provisioning, proven without Grafana.

Every ClickHouse query (panels and variables) is expanded the way Grafana and the official ClickHouse
plugin (grafana-clickhouse-datasource v4) expand it, then run in chDB against the real schema holding
data that came in through sloscope's OTLP receiver. The order and rules, from the plugin's source:

1. ``$__conditionalAll(condition, $var)`` (plugin frontend, ``applyConditionalAll``): ``1=1`` when the
   dashboard's ``var`` selects All (``$__all``) or nothing, else ``condition``. It reads the
   dashboard-wide selection, not a repeated panel's scoped value.
2. Template variables (Grafana's templateSrv): ``${var:singlequote}`` is ``'a','b'`` with ``'`` written
   ``\\'``; All without a custom ``allValue`` is every option. Unknown names (``$__timeFilter``) stay.
3. Time macros (plugin backend, pkg/macros/macros.go; the README's macro table), for the range
   ``[F, T]`` in unix seconds and the query interval ``N`` s (at least 1):
   ``$__timeFilter(c)`` = ``c >= toDateTime(F) AND c <= toDateTime(T)``, ``$__fromTime`` =
   ``toDateTime(F)``, ``$__toTime`` = ``toDateTime(T)``, ``$__interval_s`` = ``N``,
   ``$__timeInterval(c)`` = ``toStartOfInterval(toDateTime(c), INTERVAL N second)``.
   Any other ``$__name`` fails the test: the dashboards use only documented macros.

The ingest-health dashboard reads Prometheus: every metric and label it uses must be in a real
sloscope's ``/metrics``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from alerts.state import AlertRecord
from alerts.store import save_alerts
from store import red
from tests.conftest import InProcess, in_process

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
CH_TYPE = "grafana-clickhouse-datasource"
MINUTE = 60
MS = 10**6
# Aligned to 10 minutes, 40 to 50 minutes ago: inside every retention, and every step is known.
BASE_S = (int(time.time()) // 600 - 4) * 600
RANGE = (BASE_S, BASE_S + 10 * MINUTE)  # Grafana's picker: [from, to], both ends inclusive
ALL = "$__all"
SERVICES = ("shop", "pay", "o'brien")  # an apostrophe: Grafana's singlequote escaping must hold


# -- Grafana and plugin expansion ------------------------------------------------------------------


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the macro whose ``(`` is at ``open_paren`` (split at top-level commas), and the
    index after its ``)``: the plugin's (and sqlds') balanced-parenthesis argument parsing."""
    depth, args, current = 0, [], ""
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(current.strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    raise AssertionError(f"unbalanced macro arguments in {sql[open_paren : open_paren + 80]!r}")


def conditional_all(sql: str, selection: Mapping[str, Sequence[str] | str]) -> str:
    """``$__conditionalAll(cond, $var)``: '1=1' when ``var`` selects All or nothing, else ``cond``."""
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:  # the plugin works from the last occurrence backwards
        args, end = _macro_args(sql, at + len(macro) - 1)
        assert len(args) == 2, args
        value = selection.get(args[1].lstrip("$"), "")
        text = ",".join(value) if isinstance(value, (list, tuple)) else value
        sql = sql[:at] + ("1=1" if text in ("", ALL) else args[0]) + sql[end:]
    return sql


def singlequote(values: Sequence[str]) -> str:
    """Grafana's ``singlequote`` format: each value in '', its ' escaped as \\', joined by ','."""
    return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)


def interpolate(sql: str, values: Mapping[str, Sequence[str]]) -> str:
    """Grafana's template variable replacement (``$var``, ``${var}``, ``${var:format}``) with the
    resolved values of each variable (All already turned into every option)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        if name not in values:
            return m.group(0)  # Grafana leaves unknown names, such as $__timeFilter, for the backend
        vals = list(values[name])
        if fmt == "singlequote":
            return singlequote(vals)
        assert fmt is None, f"format {fmt} not modelled"
        return vals[0] if len(vals) == 1 else "{" + ",".join(vals) + "}"

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", sub, sql)


@dataclass(frozen=True)
class QueryContext:
    from_s: int
    to_s: int
    interval_s: int = 60


def expand_macros(sql: str, ctx: QueryContext) -> str:
    """The plugin backend's macros (pkg/macros/macros.go), only those the README documents."""
    n = max(ctx.interval_s, 1)
    out, pos = [], 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < pos:
            continue
        out.append(sql[pos : m.start()])
        name, end = m.group(1), m.end()
        if name in ("timeFilter", "timeInterval"):
            assert end < len(sql) and sql[end] == "(", f"$__{name} needs an argument"
            args, end = _macro_args(sql, end)
            assert len(args) == 1, (name, args)
            col = args[0]
            if name == "timeFilter":
                out.append(f"{col} >= toDateTime({ctx.from_s}) AND {col} <= toDateTime({ctx.to_s})")
            else:
                out.append(f"toStartOfInterval(toDateTime({col}), INTERVAL {n} second)")
        elif name == "fromTime":
            out.append(f"toDateTime({ctx.from_s})")
        elif name == "toTime":
            out.append(f"toDateTime({ctx.to_s})")
        elif name == "interval_s":
            out.append(str(n))
        else:
            raise AssertionError(f"macro $__{name} is not one the dashboards may use")
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def render(
    sql: str,
    selection: Mapping[str, Sequence[str] | str],
    options: Mapping[str, Sequence[str]],
    ctx: QueryContext,
    scoped: Mapping[str, str] | None = None,
) -> str:
    """A panel's SQL as ClickHouse receives it: conditionalAll, variables (a repeated panel's
    ``scoped`` value wins), then the time macros."""
    values: dict[str, Sequence[str]] = {}
    for name, sel in selection.items():
        values[name] = list(options[name]) if sel == ALL or list(sel) == [ALL] else list(sel)
    for name, value in (scoped or {}).items():
        values[name] = [value]
    return expand_macros(interpolate(conditional_all(sql, selection), values), ctx)


# -- dashboards --------------------------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def all_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dashboard["panels"]:
        if p["type"] != "row":
            yield p
        yield from (q for q in p.get("panels", []) if q["type"] != "row")


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def is_clickhouse(ds: dict[str, Any] | None) -> bool:
    return bool(ds) and ds["type"] == CH_TYPE


# -- data --------------------------------------------------------------------------------------------


def _attrs(values: Mapping[str, Any]) -> list[KeyValue]:
    return [
        KeyValue(key=k, value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v))
        for k, v in values.items()
    ]


def spans_request() -> ExportTraceServiceRequest:
    """Requests of three services over minutes 0-7 with durations from 0.5 us to ~2 s (many decades and
    bucket 0), some errors, a CLIENT child (not a request) and one invalid span (rejected)."""
    request = ExportTraceServiceRequest()
    ids = iter(range(1, 10**6))

    def scope(service: str) -> trace_pb2.ScopeSpans:
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(_attrs({"service.name": service}))
        return rs.scope_spans.add()

    def add(ss: trace_pb2.ScopeSpans, name: str, kind: int, start_s: float, dur_ns: int, **kw: Any) -> bytes:
        n = next(ids)
        span_id = n.to_bytes(8, "big")
        ss.spans.append(
            trace_pb2.Span(
                trace_id=(0xDA5B0A4D << 64 | n).to_bytes(16, "big"),
                span_id=span_id,
                name=name,
                kind=kind,
                start_time_unix_nano=int(start_s * 10**9),
                end_time_unix_nano=int(start_s * 10**9) + dur_ns,
                **kw,
            )
        )
        return span_id

    server, client = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT
    error = trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR)
    shop, pay, quote = scope("shop"), scope("pay"), scope("o'brien")
    for i in range(240):
        start = BASE_S + (i % 8) * MINUTE + i * 0.1
        dur = round(10 ** (2.7 + 6.6 * ((i * 37) % 240) / 239))  # 500 ns .. 2 s, shuffled over minutes
        root = add(shop, "GET /cart", server, start, dur, status=error if i % 7 == 0 else None)
        add(shop, "POST /pay", client, start, dur // 2, parent_span_id=root)
        if i % 2 == 0:
            add(
                shop,
                "POST /checkout",
                server,
                start,
                3 * MS + i * 100_000,
                attributes=_attrs({"http.response.status_code": 503 if i % 10 == 0 else 200}),
            )
        if i % 3 == 0:
            add(pay, "Charge", server, start, 40 * MS + i * MS, parent_span_id=root)
    for i in range(5):
        add(quote, "GET /it's", server, BASE_S + i * MINUTE + 1, 20 * MS)
    # An invalid span (all-zero trace id): rejected with reason "invalid", for the ingest dashboard.
    quote.spans.append(
        trace_pb2.Span(
            trace_id=bytes(16),
            span_id=b"\x01" * 8,
            name="bad",
            kind=server,
            start_time_unix_nano=BASE_S * 10**9,
            end_time_unix_nano=BASE_S * 10**9 + 1,
        )
    )
    return request


SLO_TS = pa.timestamp("s", tz="UTC")
_MAP_F = pa.map_(pa.string(), pa.float64())


def evaluation_rows() -> pa.Table:
    """slo_evaluations as slo/history.py writes them: an ungrouped SLO and a grouped one, every minute."""
    rows: list[dict[str, Any]] = []
    for m in range(10):
        at = BASE_S + m * MINUTE
        rows.append(
            dict(
                slo="checkout-availability",
                service="shop",
                group_key="",
                group_labels=[],
                window="28d",
                sli=0.999 - m * 0.0001,
                remaining=0.9 - m * 0.05,
                burn_rates=[("5m", 2.0 + m), ("1h", 1.5), ("28d", 0.4 + m / 100)],
                at=at,
            )
        )
        for route, offset in (("/cart", 0.0), ("/pay", 0.2)):
            rows.append(
                dict(
                    slo="cart-latency",
                    service="shop",
                    group_key=json.dumps({"http.route": route}, separators=(",", ":")),
                    group_labels=[("http.route", route)],
                    window="7d",
                    sli=None if m == 9 and route == "/pay" else 0.98,
                    remaining=None if m == 9 and route == "/pay" else 0.5 - offset - m * 0.01,
                    burn_rates=[] if m == 9 and route == "/pay" else [("6h", 3.0 + offset), ("7d", 1.1)],
                    at=at,
                )
            )
    n = len(rows)
    return pa.table(
        {
            "evaluated_at": pa.array([r["at"] for r in rows], SLO_TS),
            "slo": [r["slo"] for r in rows],
            "service": [r["service"] for r in rows],
            "group_key": [r["group_key"] for r in rows],
            "group_labels": pa.array([r["group_labels"] for r in rows], pa.map_(pa.string(), pa.string())),
            "objective": [0.999 if r["slo"] == "checkout-availability" else 0.95 for r in rows],
            "window": [r["window"] for r in rows],
            "budgeting": ["occurrences"] * n,
            "window_start": pa.array([r["at"] - 86400 for r in rows], SLO_TS),
            "total": [1000.0] * n,
            "bad": [1.0] * n,
            "sli": pa.array([r["sli"] for r in rows], pa.float64()),
            "budget": pa.array([1.0] * n, pa.float64()),
            "consumed": pa.array(
                [None if r["remaining"] is None else 1 - r["remaining"] for r in rows], pa.float64()
            ),
            "remaining": pa.array([r["remaining"] for r in rows], pa.float64()),
            "time_to_exhaustion_s": pa.array([3600.0] * n, pa.float64()),
            "burn_rates": pa.array([r["burn_rates"] for r in rows], _MAP_F),
            "alert_rules": pa.array(
                [[("page 1h/5m", False)] for _ in rows], pa.map_(pa.string(), pa.bool_())
            ),
            "error": [""] * n,
        }
    )


ALERT_RECORDS = [
    AlertRecord("a1", "checkout-availability", "page", (), "firing", BASE_S + 60, None, None, BASE_S + 60),
    AlertRecord(
        "a2", "cart-latency", "ticket", (("http.route", "/cart"),), "firing", BASE_S, None, None, BASE_S
    ),
    # a2's newer version: resolved. FINAL must show only this one.
    AlertRecord(
        "a2",
        "cart-latency",
        "ticket",
        (("http.route", "/cart"),),
        "resolved",
        BASE_S,
        BASE_S + 300,
        None,
        BASE_S + 300,
    ),
    AlertRecord(
        "a3", "cart-latency", "page", (("http.route", "/pay"),), "inactive", None, None, None, BASE_S
    ),
]


@dataclass
class Env:
    server: InProcess
    metrics_text: str

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.server.rows(sql)

    def table(self, sql: str) -> pa.Table:
        return self.server.backend.query_arrow(sql)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A real sloscope (chDB store, migrated) with spans ingested over OTLP/HTTP, SLO history and alert
    states written as the evaluator writes them, and a webhook receiver (so delivery metrics exist)."""
    root = tmp_path_factory.mktemp("dashboards")
    (root / "hook-url").write_text("http://127.0.0.1:9/hook\n")
    (root / "policy.yaml").write_text(
        f"receivers: [{{name: hook, webhook: {{url_file: {root / 'hook-url'}}}}}]\n"
        "route: {receiver: hook}\n"
    )
    with in_process(root / "data", notification_policy=str(root / "policy.yaml")) as server:
        reply = httpx.post(
            f"{server.otlp}/v1/traces",
            content=spans_request().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert reply.status_code == 200, reply.text
        server.drain()
        server.backend.insert_arrow("slo_evaluations", evaluation_rows())
        save_alerts(server.backend, ALERT_RECORDS[:2])
        save_alerts(server.backend, ALERT_RECORDS[2:])
        text = httpx.get(f"{server.api}/metrics").text
        yield Env(server, text)


# -- structure ----------------------------------------------------------------------------------------


EXPECTED_FILES = {"service-red.json", "slo-overview.json", "ingest-health.json"}


def test_dashboard_files_and_unique_uids() -> None:
    boards = all_dashboards()
    assert EXPECTED_FILES <= set(boards)
    uids = [d["uid"] for d in boards.values()]
    assert len(set(uids)) == len(uids) and all(0 < len(u) <= 40 for u in uids)
    assert len({d["title"] for d in boards.values()}) == len(boards)


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_dashboard_structure(name: str) -> None:
    d = load(name)
    assert 36 <= d["schemaVersion"] <= 41 and d["id"] is None
    assert (
        d["title"] and d["description"] and d["time"]["from"].startswith("now-") and d["time"]["to"] == "now"
    )
    vars_ = variables(d)
    ds_vars = {n: v for n, v in vars_.items() if v["type"] == "datasource"}
    assert len(ds_vars) == 1
    [(ds_name, ds_var)] = ds_vars.items()
    expected_plugin, expected_uid = (
        ("prometheus", "sloscope-prometheus")
        if name == "ingest-health.json"
        else (CH_TYPE, "sloscope-clickhouse")
    )
    assert ds_var["query"] == expected_plugin and ds_var["current"]["value"] == expected_uid
    ref = {"type": expected_plugin, "uid": f"${{{ds_name}}}"}
    panel_ids = [p["id"] for p in d["panels"]]
    assert len(set(panel_ids)) == len(panel_ids)
    found = list(panels(d))
    assert len(found) >= 5
    for p in found:
        assert p["datasource"] == ref, p["title"]
        assert p["targets"] and p["title"] and p["description"], p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs)
        for t in p["targets"]:
            assert t["datasource"] == ref
            if expected_plugin == CH_TYPE:
                assert t["editorType"] == "sql" and t["rawSql"].strip() and t["format"] in (0, 1)
                assert t["format"] == (0 if p["type"] == "timeseries" else 1), p["title"]
            else:
                assert t["expr"].strip()
        if p.get("repeat"):
            assert p["repeat"] in vars_ and vars_[p["repeat"]]["multi"]
    for v in vars_.values():
        if v["type"] == "query":
            assert v["datasource"] == ref and v["refresh"] in (1, 2)
            if expected_plugin == CH_TYPE:
                assert v["query"]["editorType"] == "sql" and v["query"]["rawSql"] == v["definition"]
            else:
                assert v["query"]["query"] == v["definition"]
    # Every $var a query uses is a variable of the dashboard (or a Grafana/plugin built-in $__name).
    texts = [t.get("rawSql") or t.get("expr") for p in found for t in p["targets"]]
    texts += [v["definition"] for v in vars_.values() if v["type"] == "query"]
    for text in texts:
        for m in re.finditer(r"\$\{?(\w+)", text):
            assert m.group(1).startswith("__") or m.group(1) in vars_, (name, m.group(0))


def test_provisioning_files() -> None:
    prov = DASHBOARDS / "provisioning"
    dash = yaml.safe_load((prov / "dashboards.yaml").read_text())
    assert dash["apiVersion"] == 1
    [provider] = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith(
        "/var/lib/grafana/dashboards"
    )
    ds = yaml.safe_load((prov / "datasources.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    ch = by_uid["sloscope-clickhouse"]
    assert ch["type"] == CH_TYPE
    assert (ch["jsonData"]["host"], ch["jsonData"]["port"], ch["jsonData"]["protocol"]) == (
        "clickhouse",
        8123,
        "http",
    )
    assert ch["jsonData"]["username"] == "${CLICKHOUSE_USER}"
    assert ch["secureJsonData"]["password"] == "${CLICKHOUSE_PASSWORD}"
    assert by_uid["sloscope-prometheus"]["type"] == "prometheus"
    assert by_uid["sloscope-prometheus"]["url"] == "http://prometheus:9090"
    jaeger = [d for d in ds["datasources"] if d["type"] == "jaeger"]
    assert [j["url"] for j in jaeger] == ["http://sloscope:8080/jaeger"]
    # Every data source uid a dashboard defaults to is provisioned.
    for d in all_dashboards().values():
        for v in variables(d).values():
            if v["type"] == "datasource":
                assert v["current"]["value"] in by_uid


# -- the expander itself, against the plugin's documented examples ------------------------------------


def test_expander_matches_the_plugins_documented_expansions() -> None:
    ctx = QueryContext(1415792726, 1447328726, 20)
    assert (
        expand_macros("$__timeFilter(time)", ctx)
        == "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    )
    assert expand_macros("$__fromTime $__toTime", ctx) == "toDateTime(1415792726) toDateTime(1447328726)"
    assert expand_macros("$__interval_s", ctx) == "20"
    assert (
        expand_macros("$__timeInterval(column)", ctx)
        == "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"
    )
    assert expand_macros("$__interval_s", QueryContext(0, 1, 0)) == "1"
    with pytest.raises(AssertionError, match="not one the dashboards may use"):
        expand_macros("$__timeGroup(t, 1m)", ctx)
    sql = "WHERE $__conditionalAll(x IN (${v:singlequote}), $v) AND y"
    assert conditional_all(sql, {"v": [ALL]}) == "WHERE 1=1 AND y"
    assert conditional_all(sql, {"v": ["a", "b"]}) == "WHERE x IN (${v:singlequote}) AND y"
    assert interpolate("x IN (${v:singlequote})", {"v": ["a", "it's"]}) == "x IN ('a','it\\'s')"


# -- every ClickHouse query runs and returns what its panel expects ------------------------------------


def _kind(ch_type: str) -> str:
    """What Grafana makes of a ClickHouse column type: a time, a string (labels) or a number."""
    inner = re.sub(r"^(?:Nullable|LowCardinality)\((.*)\)$", r"\1", ch_type)
    inner = re.sub(r"^(?:Nullable|LowCardinality)\((.*)\)$", r"\1", inner)
    if re.match(r"(DateTime|Date)", inner):
        return "time"
    if inner == "String" or inner.startswith("FixedString"):
        return "str"
    if re.match(r"(U?Int\d+|Float\d+|Decimal|Bool)", inner):
        return "num"
    return ch_type


def columns(env: Env, sql: str) -> list[tuple[str, str]]:
    """The query's result columns with ClickHouse's types (what the plugin's client receives)."""
    return [(r["name"], _kind(r["type"])) for r in env.rows(f"DESCRIBE TABLE ({sql})")]


def _ts(value: Any) -> int:
    """A DateTime from Arrow output (ClickHouse writes DateTime as UInt32 seconds) in unix seconds."""
    return value if isinstance(value, int) else int(value.timestamp())


# Columns each panel shows: name -> kind (time, str, num). Time series follow the plugin's rule for
# multi-line series: a time column named "time", then the string columns that name series, then values.
EXPECTED_COLUMNS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("sloscope-service-red", "Request rate"): [("time", "time"), ("service", "str"), ("req_rate", "num")],
    ("sloscope-service-red", "Errors"): [("time", "time"), ("service", "str"), ("error_rate", "num")],
    ("sloscope-service-red", "Error ratio"): [("time", "time"), ("service", "str"), ("error_ratio", "num")],
    ("sloscope-service-red", "Latency p50 / p95 / p99 by service"): [
        ("time", "time"),
        ("service", "str"),
        ("p50", "num"),
        ("p95", "num"),
        ("p99", "num"),
    ],
    ("sloscope-service-red", "Services"): [
        ("service", "str"),
        ("requests_total", "num"),
        ("req_rate", "num"),
        ("errors_total", "num"),
        ("error_ratio", "num"),
        ("p50_ms", "num"),
        ("p95_ms", "num"),
        ("p99_ms", "num"),
    ],
    ("sloscope-service-red", "Request rate by operation"): [
        ("time", "time"),
        ("service_operation", "str"),
        ("req_rate", "num"),
    ],
    ("sloscope-service-red", "Error ratio by operation"): [
        ("time", "time"),
        ("service_operation", "str"),
        ("error_ratio", "num"),
    ],
    ("sloscope-service-red", "Latency p50 / p95 / p99 by operation"): [
        ("time", "time"),
        ("service_operation", "str"),
        ("p50", "num"),
        ("p95", "num"),
        ("p99", "num"),
    ],
    ("sloscope-service-red", "Operations"): [
        ("service", "str"),
        ("op_name", "str"),
        ("span_kind", "str"),
        ("requests_total", "num"),
        ("req_rate", "num"),
        ("errors_total", "num"),
        ("error_ratio", "num"),
        ("p50_ms", "num"),
        ("p95_ms", "num"),
        ("p99_ms", "num"),
    ],
    ("sloscope-slo-overview", "Alerts firing"): [("alerts_firing", "num")],
    ("sloscope-slo-overview", "Error budget remaining (latest)"): [
        ("instance", "str"),
        ("budget_remaining", "num"),
    ],
    ("sloscope-slo-overview", "SLOs (latest evaluation)"): [
        ("instance", "str"),
        ("slo_service", "str"),
        ("slo_objective", "num"),
        ("slo_window", "str"),
        ("sli_value", "num"),
        ("budget_remaining", "num"),
        ("burn_window", "num"),
        ("burn_1h", "num"),
        ("exhaustion_s", "num"),
        ("last_evaluated", "time"),
        ("last_error", "str"),
    ],
    ("sloscope-slo-overview", "Error budget remaining"): [
        ("time", "time"),
        ("instance", "str"),
        ("budget_remaining", "num"),
    ],
    ("sloscope-slo-overview", "SLI"): [
        ("time", "time"),
        ("instance", "str"),
        ("sli_value", "num"),
        ("slo_objective", "num"),
    ],
    ("sloscope-slo-overview", "Burn rates: $slo"): [("time", "time"), ("instance", "str")]
    + [(f"burn_{w}", "num") for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "window")],
    ("sloscope-slo-overview", "Alert states"): [
        ("alert_slo", "str"),
        ("alert_severity", "str"),
        ("alert_labels", "str"),
        ("alert_state", "str"),
        ("alert_firing_since", "time"),
        ("alert_resolved_at", "time"),
        ("alert_updated_at", "time"),
    ],
}

CLICKHOUSE_BOARDS = ("service-red.json", "slo-overview.json")


def variable_options(env: Env, d: dict[str, Any], ctx: QueryContext) -> dict[str, list[str]]:
    """Run each query variable in order (later ones may use earlier ones, with All selected), as
    Grafana refreshes them; the first column's values are the options."""
    options: dict[str, list[str]] = {}
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        sql = render(v["query"]["rawSql"], dict.fromkeys(options, ALL), options, ctx)
        table = env.table(sql)
        options[v["name"]] = [str(x) for x in table.column(0).to_pylist()]
    return options


def test_variable_queries_list_the_data(env: Env) -> None:
    ctx = QueryContext(*RANGE)
    red_opts = variable_options(env, load("service-red.json"), ctx)
    assert red_opts["service"] == sorted(SERVICES)
    # Requests only: the CLIENT child "POST /pay" is no operation of red_1m.
    assert red_opts["operation"] == sorted(["GET /cart", "POST /checkout", "Charge", "GET /it's"])
    # One service selected: its operations only.
    sql = render(
        variables(load("service-red.json"))["operation"]["definition"], {"service": ["pay"]}, red_opts, ctx
    )
    assert [r["operation"] for r in env.rows(sql)] == ["Charge"]
    slo_opts = variable_options(env, load("slo-overview.json"), ctx)
    assert slo_opts["slo"] == ["cart-latency", "checkout-availability"]
    # Outside the data's time range: nothing to choose.
    empty = variable_options(env, load("slo-overview.json"), QueryContext(RANGE[0] - 7200, RANGE[0] - 3600))
    assert empty["slo"] == []


def selections(d: dict[str, Any], options: Mapping[str, list[str]]) -> list[dict[str, list[str]]]:
    """All selected; one value of each (the last, with an apostrophe for services); several values."""
    names = [v["name"] for v in d["templating"]["list"] if v["type"] == "query"]
    out = [dict.fromkeys(names, [ALL])]
    out.append({n: [options[n][-1] if n != "service" else "o'brien"] for n in names})
    out.append({n: options[n][:2] for n in names})
    return out


@pytest.mark.parametrize("interval_s", [60, 300])
@pytest.mark.parametrize("name", CLICKHOUSE_BOARDS)
def test_every_clickhouse_panel_runs_and_returns_the_expected_columns(
    env: Env, name: str, interval_s: int
) -> None:
    d = load(name)
    ctx = QueryContext(*RANGE, interval_s)
    options = variable_options(env, d, ctx)
    checked = 0
    for p in panels(d):
        expected = EXPECTED_COLUMNS[(d["uid"], p["title"])]
        for t in p["targets"]:
            for sel in selections(d, options):
                repeats = [None]
                if p.get("repeat"):  # one panel per selected value, each with that value scoped
                    var = p["repeat"]
                    chosen = options[var] if sel[var] == [ALL] else sel[var]
                    repeats = [{var: value} for value in chosen]
                for scoped in repeats:
                    sql = render(t["rawSql"], sel, options, ctx, scoped)
                    assert "$__" not in sql and "${" not in sql, sql
                    table = env.table(sql)
                    got = columns(env, sql)
                    assert table.column_names == [c for c, _ in got]
                    assert got == expected, (p["title"], sel, got)
                    if p["type"] == "timeseries" and sel == selections(d, options)[0]:
                        assert table.num_rows > 0, p["title"]
                        times = [_ts(x) for x in table.column("time").to_pylist()]
                        assert all(x % interval_s == 0 for x in times), p["title"]
                        assert min(times) >= RANGE[0] and max(times) <= RANGE[1]
                    checked += 1
        # Field overrides name columns the query returns.
        for o in p["fieldConfig"]["overrides"]:
            matcher = o["matcher"]
            names = [c for c, _ in expected]
            if matcher["id"] == "byName":
                assert matcher["options"] in names, (p["title"], matcher)
            elif matcher["id"] == "byRegexp":
                assert any(re.fullmatch(matcher["options"], c) for c in names), (p["title"], matcher)
    assert checked >= 10


# -- the numbers --------------------------------------------------------------------------------------


def _run_panel(
    env: Env,
    board: str,
    title: str,
    selection: dict[str, list[str]],
    interval_s: int = 60,
    scoped: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    d = load(board)
    ctx = QueryContext(*RANGE, interval_s)
    options = variable_options(env, d, ctx)
    [p] = [p for p in panels(d) if p["title"] == title]
    return env.rows(render(p["targets"][0]["rawSql"], selection, options, ctx, scoped))


def _close(a: float | None, b: float | None, tol: float = 1e-3) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= tol)


def test_services_table_equals_store_red(env: Env) -> None:
    rows = _run_panel(env, "service-red.json", "Services", {"service": [ALL], "operation": [ALL]})
    expected = {
        s.service: s.stats
        for s in red.services_overview(env.server.backend, RANGE[0] * 10**9, RANGE[1] * 10**9)
    }
    assert [r["service"] for r in rows] == [s for s in expected]  # busiest first, like the API
    for r in rows:
        s = expected[r["service"]]
        assert (r["requests_total"], r["errors_total"]) == (s.requests, s.errors)
        assert r["req_rate"] == pytest.approx(s.rate) and r["error_ratio"] == pytest.approx(s.error_ratio)
        for q in ("p50", "p95", "p99"):
            assert _close(r[f"{q}_ms"], getattr(s, f"{q}_ms")), (
                r["service"],
                q,
                r[f"{q}_ms"],
                getattr(s, f"{q}_ms"),
            )
    assert (expected["shop"].requests, expected["shop"].errors) == (240 + 120, 35 + 24)


def test_operations_table_equals_store_red(env: Env) -> None:
    rows = _run_panel(env, "service-red.json", "Operations", {"service": [ALL], "operation": [ALL]})
    got = {(r["service"], r["op_name"], r["span_kind"]): r for r in rows}
    start, end = RANGE[0] * 10**9, RANGE[1] * 10**9
    expected = {
        (s, o.operation, o.kind): o.stats
        for s in SERVICES
        for o in red.operations(env.server.backend, s, start, end)
    }
    assert set(got) == set(expected)
    for key, s in expected.items():
        r = got[key]
        assert (r["requests_total"], r["errors_total"], r["req_rate"]) == (
            s.requests,
            s.errors,
            pytest.approx(s.rate),
        )
        for q in ("p50", "p95", "p99"):
            assert _close(r[f"{q}_ms"], getattr(s, f"{q}_ms")), (key, q)


@pytest.mark.parametrize("interval_s", [60, 300])
def test_rate_and_latency_series_equal_store_red_series(env: Env, interval_s: int) -> None:
    sel = {"service": ["shop"], "operation": ["GET /cart"]}
    series = red.red_series(
        env.server.backend, "shop", "GET /cart", RANGE[0] * 10**9, RANGE[1] * 10**9, interval_s * 10**9
    )
    points = {p.time_s: p.stats for p in series.points if p.stats.requests}
    rates = _run_panel(env, "service-red.json", "Request rate by operation", sel, interval_s)
    assert {_ts(r["time"]): r["req_rate"] for r in rates} == {
        t: pytest.approx(s.rate) for t, s in points.items()
    }
    assert {r["service_operation"] for r in rates} == {"shop: GET /cart"}
    lat = _run_panel(env, "service-red.json", "Latency p50 / p95 / p99 by operation", sel, interval_s)
    assert len(lat) == len(points)
    for r in lat:
        s = points[_ts(r["time"])]
        for q in ("p50", "p95", "p99"):
            assert _close(r[q], getattr(s, f"{q}_ms")), (r["time"], q, r[q], getattr(s, f"{q}_ms"))


def test_p95_is_within_the_histograms_bound_of_raw_spans(env: Env) -> None:
    raw = env.rows(
        f"""SELECT service_name AS svc, quantilesExact(0.5, 0.95, 0.99)(duration) AS qs, count() AS n FROM spans
            WHERE timestamp >= toDateTime64({RANGE[0]}, 9) AND timestamp < toDateTime64({RANGE[1]}, 9)
              AND (kind IN ('SERVER', 'CONSUMER') OR parent_span_id = toFixedString('', 8))
            GROUP BY svc"""
    )
    rows = {
        r["service"]: r
        for r in _run_panel(env, "service-red.json", "Services", {"service": [ALL], "operation": [ALL]})
    }
    assert set(rows) == {r["svc"] for r in raw}
    for r in raw:
        for q, exact_ns in zip(("p50", "p95", "p99"), r["qs"], strict=True):
            got_ns = rows[r["svc"]][f"{q}_ms"] * MS
            assert abs(got_ns - exact_ns) <= red.MAX_RELATIVE_ERROR * exact_ns + 1000, (
                r["svc"],
                q,
                got_ns,
                exact_ns,
            )
    assert rows["shop"]["requests_total"] == next(r["n"] for r in raw if r["svc"] == "shop")


def test_quantile_sql_bucket_bounds_equal_store_red(env: Env) -> None:
    """The dashboards' inline lower-bound arithmetic gives store/red.py's LOWER_BOUNDS_NS for every bucket."""
    sql = load("service-red.json")
    text = next(t["rawSql"] for p in panels(sql) if p["title"] == "Services" for t in p["targets"])
    start = text.index("arrayMap((i, s, b) ->")
    expr = text[start : text.index(" AS q_bound", start)]
    [row] = env.rows(f"SELECT {expr} AS bounds FROM (SELECT range(toUInt32(0), toUInt32(632)) AS q_ids)")
    assert row["bounds"] == list(red.LOWER_BOUNDS_NS)


def test_slo_panels_show_the_latest_evaluation(env: Env) -> None:
    all_ = {"slo": [ALL]}
    latest = {
        r["instance"]: r for r in _run_panel(env, "slo-overview.json", "SLOs (latest evaluation)", all_)
    }
    assert set(latest) == {
        "checkout-availability",
        "cart-latency {http.route=/cart}",
        "cart-latency {http.route=/pay}",
    }
    ca = latest["checkout-availability"]
    assert (ca["slo_window"], ca["slo_objective"]) == ("28d", 0.999)
    assert ca["budget_remaining"] == pytest.approx(0.9 - 9 * 0.05) and ca["burn_window"] == pytest.approx(
        0.49
    )
    assert ca["burn_1h"] == 1.5 and _ts(ca["last_evaluated"]) == RANGE[0] + 9 * MINUTE
    pay = latest["cart-latency {http.route=/pay}"]
    # Its latest evaluation had no events: unknown, not an older value.
    assert (pay["budget_remaining"], pay["burn_window"], pay["burn_1h"]) == (None, None, None)
    assert latest["cart-latency {http.route=/cart}"]["burn_window"] == 1.1
    bars = _run_panel(env, "slo-overview.json", "Error budget remaining (latest)", all_)
    assert [r["instance"] for r in bars][0] == "cart-latency {http.route=/pay}"  # NULL (unknown) first
    series = _run_panel(
        env, "slo-overview.json", "Error budget remaining", {"slo": ["checkout-availability"]}, 300
    )
    # The last value of each interval.
    assert [(_ts(r["time"]) - RANGE[0], r["budget_remaining"]) for r in series] == [
        (0, pytest.approx(0.9 - 4 * 0.05)),
        (300, pytest.approx(0.9 - 9 * 0.05)),
    ]
    burn = _run_panel(
        env, "slo-overview.json", "Burn rates: $slo", all_, 60, scoped={"slo": "checkout-availability"}
    )
    assert len(burn) == 10 and {r["instance"] for r in burn} == {"checkout-availability"}
    assert [r["burn_5m"] for r in burn] == [2.0 + m for m in range(10)]
    assert {r["burn_6h"] for r in burn} == {None} and {r["burn_1h"] for r in burn} == {1.5}


def test_alert_states_use_the_newest_version(env: Env) -> None:
    rows = _run_panel(env, "slo-overview.json", "Alert states", {"slo": [ALL]})
    got = [(r["alert_slo"], r["alert_severity"], r["alert_labels"], r["alert_state"]) for r in rows]
    assert got == [
        ("checkout-availability", "page", "", "firing"),
        ("cart-latency", "ticket", "http.route=/cart", "resolved"),
        ("cart-latency", "page", "http.route=/pay", "inactive"),
    ]
    assert _run_panel(env, "slo-overview.json", "Alerts firing", {"slo": [ALL]}) == [{"alerts_firing": 1}]
    assert _run_panel(env, "slo-overview.json", "Alerts firing", {"slo": ["cart-latency"]}) == [
        {"alerts_firing": 0}
    ]


# -- Prometheus: the ingest-health dashboard ----------------------------------------------------------

# Scrape-time labels Prometheus adds to every series.
_TARGET_LABELS = {"instance", "job"}
# Metrics whose series appear only after a failure: the name must be exposed, labels are not checked.
_NO_SAMPLES_YET = {
    "sloscope_flush_errors_total",
    "sloscope_admission_refused_total",
    "sloscope_ingest_refusals_total",
}


def test_ingest_dashboard_uses_only_metrics_sloscope_exposes(env: Env) -> None:
    exposed: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(env.metrics_text):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
        # a family without samples still has its name (HELP/TYPE lines)
        exposed.setdefault(family.name + ("_total" if family.type == "counter" else ""), set())
    d = load("ingest-health.json")
    exprs = [t["expr"] for p in panels(d) for t in p["targets"]] + [variables(d)["instance"]["definition"]]
    used: set[str] = set()
    for expr in exprs:
        metrics = set(re.findall(r"\bsloscope_\w+", expr))
        assert metrics, expr
        used |= metrics
        labels = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr))
        label_names = {x.strip() for group in labels for x in group.split(",") if x.strip()}
        label_names |= set(re.findall(r"\{(\w+)=~?", expr))
        label_names |= set(re.findall(r"label_values\(\w+,\s*(\w+)\)", expr))
        for metric in metrics:
            assert metric in exposed, f"{metric} is not in sloscope's /metrics"
            if metric in _NO_SAMPLES_YET:
                continue
            assert exposed[metric], f"{metric} has no samples to check labels against"
            missing = label_names - exposed[metric] - _TARGET_LABELS
            assert not missing, (expr, metric, missing)
    # What the issue asks the dashboard to show.
    assert {
        "sloscope_items_received_total",
        "sloscope_items_accepted_total",
        "sloscope_items_rejected_total",
        "sloscope_queue_rows",
        "sloscope_queue_bytes",
        "sloscope_wal_bytes",
        "sloscope_flush_seconds_bucket",
        "sloscope_flush_errors_total",
        "sloscope_notifications_total",
    } <= used
    # The data we sent shows up in those series: the invalid span was rejected as such.
    rejected = [
        s
        for f in text_string_to_metric_families(env.metrics_text)
        for s in f.samples
        if s.name == "sloscope_items_rejected_total"
    ]
    assert any(s.labels == {"signal": "traces", "reason": "invalid"} and s.value == 1 for s in rejected)
    assert "histogram_quantile" in json.dumps(d) and "ClickHouse" in d["description"]


def test_no_nan_in_red_panels(env: Env) -> None:
    rows = _run_panel(
        env, "service-red.json", "Latency p50 / p95 / p99 by service", {"service": [ALL], "operation": [ALL]}
    )
    assert rows and all(math.isfinite(r[q]) and r[q] > 0 for r in rows for q in ("p50", "p95", "p99"))
