"""Cluster DDL: the schema migrations rewritten for a ClickHouse cluster (docs/deploy.md, "Cluster mode").

With ``SLOSCOPE_CLICKHOUSE_CLUSTER`` set, every migration statement is transformed before it runs:

* ``CREATE TABLE t (...) ENGINE = XMergeTree(args)`` becomes ``t_local``, created ``ON CLUSTER`` with
  ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/{database}/t_local', '{replica}', args)``, plus a
  ``Distributed(cluster, currentDatabase(), t_local, <sharding key>)`` table under the original name, so
  that every query and insert of sloscope reads and writes ``t`` unchanged.
* Materialized views are created ``ON CLUSTER``, read the local source table and write the local target:
  an insert into ``spans`` reaches ``spans_local`` on one replica of one shard, whose views roll it up there.
* ``ALTER TABLE t`` runs ``ON CLUSTER`` against ``t_local``; column changes run against ``t`` as well,
  because a Distributed table has its own column list.
* ``DROP`` runs ``ON CLUSTER ... SYNC`` for the table and its local table (SYNC frees the replication path
  at once, so a table of the same name can be created again).

The transformation is pure text in, text out, so tests check it without a cluster and the DDL can be
printed for review: ``python -m store.cluster CLUSTER``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

#: The Distributed tables' sharding keys. Rows that must meet stay on one shard: a trace's spans and
#: its logs (joins and lookups by trace id run shard by shard), and every version of a
#: ReplacingMergeTree row (``FINAL`` and deduplication work per shard). Keys are deterministic, so a
#: replayed batch splits the same way and each shard's part is dropped as a duplicate.
SHARDING_KEYS: dict[str, str] = {
    "schema_migrations": "version",
    "spans": "cityHash64(trace_id)",
    "trace_index": "cityHash64(trace_id)",
    # Logs with a trace go where its spans are; the others spread by service and time.
    "logs": "if(trace_id = toFixedString('', 16), cityHash64(service_name, timestamp), cityHash64(trace_id))",
    "metrics_gauge": "cityHash64(service_name, metric_name, attributes)",
    "metrics_sum": "cityHash64(service_name, metric_name, attributes)",
    "metrics_histogram": "cityHash64(service_name, metric_name, attributes)",
    "metrics_exponential_histogram": "cityHash64(service_name, metric_name, attributes)",
    "metrics_summary": "cityHash64(service_name, metric_name, attributes)",
    # Written by materialized views on spans_local: the key only routes direct inserts.
    "red_1m": "cityHash64(service_name, operation)",
    "service_edges_1m": "cityHash64(caller, callee)",
    "service_edges_progress": "cityHash64(minute)",
    # Written by a materialized view on spans_local; a minute's counts are summed over the shards.
    "span_counts_1m": "cityHash64(minute)",
    "slo_evaluations": "cityHash64(slo, group_key)",
    "alert_states": "cityHash64(id)",
    "alert_transitions": "cityHash64(alert_id)",
    "dispatch_state": "cityHash64(name)",
    "incidents": "cityHash64(id)",
    "notifications": "cityHash64(incident_id)",
    "deliveries": "cityHash64(incident_id)",
    "silences": "cityHash64(id)",
    "incident_acks": "cityHash64(incident_id)",
    "evaluator_leases": "cityHash64(evaluator_id)",
}

#: Where a replicated table keeps its metadata in ClickHouse Keeper; ``{shard}`` and ``{replica}`` are
#: the server's macros, ``{database}`` is expanded by the server.
REPLICATION_PATH = "/clickhouse/tables/{{shard}}/{{database}}/{table}"

LOCAL_SUFFIX = "_local"

_MERGE_TREES = frozenset(
    {
        "MergeTree",
        "ReplacingMergeTree",
        "AggregatingMergeTree",
        "SummingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
        "GraphiteMergeTree",
    }
)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CREATE_TABLE = re.compile(rf"CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})\s*\(", re.I)
_ENGINE = re.compile(rf"\s*ENGINE\s*=\s*({_IDENT})", re.I)
_CREATE_MV = re.compile(
    rf"CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})\s+TO\s+({_IDENT})\s+AS\s+(.*)",
    re.I | re.S,
)
_CREATE_VIEW = re.compile(rf"CREATE\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?({_IDENT})\s+AS\s+(.*)", re.I | re.S)
_ALTER = re.compile(rf"ALTER\s+TABLE\s+({_IDENT})\s+(.*)", re.I | re.S)
_DROP = re.compile(rf"DROP\s+(TABLE|VIEW)\s+(IF\s+EXISTS\s+)?({_IDENT})", re.I)
_COLUMN_COMMAND = re.compile(r"(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)
_MODIFY_ORDER_BY = re.compile(r"MODIFY\s+ORDER\s+BY\b", re.I)
# A table in FROM or JOIN: not a subquery "(", a table function "name(" or a qualified "db.table".
_SOURCE_TABLE = re.compile(rf"\b(FROM|JOIN)(\s+)({_IDENT})\b(?!\s*[.(])", re.I)


class ClusterDDLError(ValueError):
    """A migration statement has no cluster form; the message names the statement."""


def check_cluster_name(cluster: str) -> str:
    """``cluster`` if it can stand in DDL unquoted (it is formatted into statements); else ValueError."""
    if not re.fullmatch(_IDENT, cluster or ""):
        raise ValueError(
            f"cluster name {cluster!r}: must be a ClickHouse identifier (letters, digits, '_'), "
            "as named in the server's remote_servers"
        )
    return cluster


def local_table(table: str) -> str:
    """The name of the replicated table behind the Distributed table ``table``."""
    return table + LOCAL_SUFFIX


def cluster_statements(statements: list[str], cluster: str) -> list[str]:
    """The statements of one migration (``store.migrations.split_statements``) for ``cluster``."""
    check_cluster_name(cluster)
    out: list[str] = []
    for statement in statements:
        out.extend(_transform(statement.strip(), cluster))
    return out


def _transform(sql: str, cluster: str) -> list[str]:
    if match := _CREATE_TABLE.match(sql):
        return _create_table(sql, match, cluster)
    if match := _CREATE_MV.fullmatch(sql):
        if_not_exists, view, target, select = match.groups()
        return [
            f"CREATE MATERIALIZED VIEW {if_not_exists or ''}{view} ON CLUSTER {cluster} "
            f"TO {local_table(target)} AS\n{_local_sources(select)}"
        ]
    if match := _CREATE_VIEW.fullmatch(sql):
        # A plain view reads the Distributed tables, like any query.
        if_not_exists, view, select = match.groups()
        return [f"CREATE VIEW {if_not_exists or ''}{view} ON CLUSTER {cluster} AS\n{select}"]
    if match := _ALTER.fullmatch(sql):
        return _alter(match.group(1), match.group(2), cluster, sql)
    if match := _DROP.fullmatch(sql):
        kind, if_exists, name = match.groups()
        kind, if_exists = kind.upper(), "IF EXISTS " if if_exists else ""
        dropped = [f"DROP {kind} {if_exists}{name} ON CLUSTER {cluster} SYNC"]
        if kind == "TABLE":
            dropped.append(f"DROP TABLE {if_exists}{local_table(name)} ON CLUSTER {cluster} SYNC")
        return dropped
    raise ClusterDDLError(f"no cluster form for this statement (extend store/cluster.py):\n{sql}")


def _create_table(sql: str, match: re.Match[str], cluster: str) -> list[str]:
    if_not_exists, table = match.group(1) or "", match.group(2)
    open_paren = match.end() - 1
    close_paren = _matching_paren(sql, open_paren)
    columns = sql[open_paren : close_paren + 1]
    engine = _ENGINE.match(sql, close_paren + 1)
    if engine is None:
        raise ClusterDDLError(f"table {table}: no ENGINE after the column list:\n{sql}")
    name = engine.group(1)
    if name not in _MERGE_TREES:
        raise ClusterDDLError(f"table {table}: engine {name} has no replicated form")
    if table not in SHARDING_KEYS:
        raise ClusterDDLError(f"table {table}: no sharding key; add one to store.cluster.SHARDING_KEYS")
    rest_at = engine.end()
    args = ""
    after = _skip_space(sql, rest_at)
    if after < len(sql) and sql[after] == "(":
        args_end = _matching_paren(sql, after)
        args = sql[after + 1 : args_end].strip()
        rest_at = args_end + 1
    # A replicated table deduplicates inserts by its own window; the non-replicated one has no effect there.
    rest = re.sub(
        r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", sql[rest_at:]
    )
    local = local_table(table)
    replicated_args = ", ".join(
        [_quote(REPLICATION_PATH.format(table=local)), _quote("{replica}")] + ([args] if args else [])
    )
    return [
        f"CREATE TABLE {if_not_exists}{local} ON CLUSTER {cluster} {columns}"
        f" ENGINE = Replicated{name}({replicated_args}){rest}",
        f"CREATE TABLE {if_not_exists}{table} ON CLUSTER {cluster} AS {local}\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {SHARDING_KEYS[table]})",
    ]


def _alter(table: str, commands: str, cluster: str, sql: str) -> list[str]:
    parts = _split_top_level(commands)
    column = [bool(_COLUMN_COMMAND.match(p.strip())) for p in parts]
    local = f"ALTER TABLE {local_table(table)} ON CLUSTER {cluster}\n    {commands.strip()}"
    if not any(column):
        return [local]  # projections, indexes, TTL, mutations: storage of the local tables only
    # A sorting key may grow only by a column added in the same ALTER: that pair must stay together,
    # and the key is the local tables' business alone.
    sort_key = [bool(_MODIFY_ORDER_BY.match(p.strip())) for p in parts]
    if not all(c or k for c, k in zip(column, sort_key, strict=True)):
        raise ClusterDDLError(
            f"table {table}: split column changes and other changes into separate ALTERs:\n{sql}"
        )
    columns = ",".join(p for p, c in zip(parts, column, strict=True) if c)
    # A Distributed table stores nothing: its columns take the type without the codec.
    distributed = f"ALTER TABLE {table} ON CLUSTER {cluster}\n    {_without_codecs(columns).strip()}"
    # The Distributed table must never name a column its local tables lack: add below it first, drop
    # from it first.
    dropping = any(re.match(r"(DROP|RENAME)\s+COLUMN\b", p.strip(), re.I) for p in parts)
    return [distributed, local] if dropping else [local, distributed]


def _without_codecs(text: str) -> str:
    while match := re.search(r"\s+CODEC\s*\(", text, re.I):
        end = _matching_paren(text, match.end() - 1)
        text = text[: match.start()] + text[end + 1 :]
    return text


def _local_sources(select: str) -> str:
    return _SOURCE_TABLE.sub(lambda m: f"{m.group(1)}{m.group(2)}{local_table(m.group(3))}", select)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _skip_space(sql: str, at: int) -> int:
    while at < len(sql) and sql[at].isspace():
        at += 1
    return at


def _unquoted(sql: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) of every character outside quoted strings
    and identifiers, from ``start``."""
    depth, i, quote = 0, start, ""
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        else:
            depth += (ch == "(") - (ch == ")")
            yield i, ch, depth
        i += 1


def _matching_paren(sql: str, at: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``at``, skipping quoted strings and identifiers."""
    for i, ch, depth in _unquoted(sql, at):
        if ch == ")" and depth == 0:
            return i
    raise ClusterDDLError(f"unbalanced parentheses:\n{sql}")


def _split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside parentheses and quotes."""
    cuts = [i for i, ch, depth in _unquoted(text) if ch == "," and depth == 0]
    return [text[a + 1 : b] for a, b in zip([-1, *cuts], [*cuts, len(text)], strict=True)]


def render(cluster: str) -> str:
    """Every migration's cluster DDL as one SQL script, with a comment per migration."""
    from store.migrations import load_migrations

    blocks = []
    for migration in load_migrations():
        statements = cluster_statements(migration.statements, cluster)
        blocks.append(
            f"-- {migration.version:04d}_{migration.name}\n" + "".join(f"{s};\n\n" for s in statements)
        )
    return "\n".join(blocks).rstrip() + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(
            "usage: python -m store.cluster CLUSTER  (prints the cluster DDL of every migration)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        sys.stdout.write(render(sys.argv[1]))
    except ValueError as exc:
        print(f"store.cluster: error: {exc}", file=sys.stderr)
        sys.exit(2)
