"""Cluster DDL (store/cluster.py): ON CLUSTER, Replicated local tables, Distributed tables, local views.

chDB has no Keeper and no remote_servers, so the cluster DDL cannot run as it is. It is checked three
ways: as text (every table, view and ALTER of every migration has its cluster form), by ClickHouse's own
parser (``formatQuery`` in chDB parses each statement exactly as generated), and by running it in chDB
with only ``ON CLUSTER`` removed and the engines swapped back (Replicated* -> *MergeTree, Distributed ->
a Buffer that passes every insert straight to the local table and reads it): the schema that results
must equal the single-server schema, and the materialized views must fill the local tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from store import cluster, migrations
from store.embedded import EmbeddedBackend

CLUSTER = "sloscope"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
MIGRATIONS = migrations.load_migrations()

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \(.*?\) ENGINE = (\w+)(\(([^)]*)\))?", re.S)
_MV = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s+(.*)", re.S)


def single_server(sql: str) -> str:
    """The cluster statement as chDB can run it: no ON CLUSTER, no replication, and for Distributed a
    Buffer with zero limits: it reads the local table and writes every insert straight into it."""
    sql = re.sub(rf" ON CLUSTER {CLUSTER}\b", "", sql)
    sql = re.sub(r"Replicated(\w*MergeTree)\('/clickhouse/tables/[^']*', '\{replica\}'(, )?", r"\1(", sql)
    return re.sub(
        rf"Distributed\({CLUSTER}, currentDatabase\(\), (\w+), .*\)\Z",
        r"Buffer(currentDatabase(), \1, 1, 0, 0, 0, 0, 0, 0)",
        sql,
        flags=re.S,
    )


class SingleServerBackend:
    """Runs what ``migrate(..., cluster=...)`` sends through :func:`single_server` on a real chDB."""

    name = "server"

    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner = inner
        self.sent: list[str] = []

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.sent.append(sql)
        self.inner.command(single_server(sql), params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self.inner.query_arrow(sql, params)


def _columns(b: Any, table: str) -> list[tuple[str, str, str, str]]:
    rows = b.query_arrow(
        "SELECT name, type, compression_codec, default_expression FROM system.columns "
        "WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
        {"t": table},
    ).to_pylist()
    return [(r["name"], r["type"], r["compression_codec"], r["default_expression"]) for r in rows]


def _engine(b: Any, table: str) -> dict[str, Any]:
    rows = b.query_arrow(
        "SELECT engine, sorting_key, partition_key, primary_key, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = {t:String}",
        {"t": table},
    ).to_pylist()
    assert rows, f"no table {table}"
    return rows[0]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The single-server schema, as ``migrate(backend)`` makes it: table -> (engine, columns).

    A snapshot, because chDB runs one engine (one data path) per process at a time."""
    b = EmbeddedBackend(tmp_path_factory.mktemp("plain"))
    try:
        migrations.migrate(b)
        names = (
            b.query_arrow("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
            .column("name")
            .to_pylist()
        )
        return {name: (_engine(b, name), _columns(b, name)) for name in names}
    finally:
        b.close()


@pytest.fixture(scope="module")
def clustered(
    plain: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SingleServerBackend]:
    """The cluster schema with replication and distribution swapped back, by ``migrate(b, cluster)``."""
    inner = EmbeddedBackend(tmp_path_factory.mktemp("cluster"))
    b = SingleServerBackend(inner)
    assert migrations.migrate(b, cluster=CLUSTER) == [m.version for m in MIGRATIONS]
    yield b
    inner.close()


def _tables(statements: list[str]) -> dict[str, tuple[str, str]]:
    """Tables created by single-server statements: name -> (engine, engine arguments)."""
    found = {}
    for s in statements:
        if m := _CREATE.match(s):
            found[m.group(1)] = (m.group(2), (m.group(4) or "").strip())
    return found


@pytest.mark.parametrize("migration", MIGRATIONS, ids=lambda m: f"{m.version:04d}_{m.name}")
def test_every_statement_of_every_migration_has_its_cluster_form(migration: migrations.Migration) -> None:
    out = cluster.cluster_statements(migration.statements, CLUSTER)
    assert out, "a migration without statements"
    assert all(f" ON CLUSTER {CLUSTER}" in s for s in out), "every statement runs on every host"
    text = "\n".join(out)

    for table, (engine, args) in _tables(migration.statements).items():
        local = f"{table}_local"
        path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
        replicated = f"Replicated{engine}({path}{', ' + args if args else ''})"
        assert f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {CLUSTER} (" in text
        assert f"ENGINE = {replicated}" in text, f"{table}: {replicated}"
        assert (
            f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER {CLUSTER} AS {local}\n"
            f"ENGINE = Distributed({CLUSTER}, currentDatabase(), {local}, {cluster.SHARDING_KEYS[table]})"
        ) in out
        # The local table comes first: the Distributed one is created AS it.
        assert text.index(f"EXISTS {local} ") < text.index(f"EXISTS {table} ON CLUSTER")
    assert "non_replicated_deduplication_window" not in text

    created_anywhere = {t for m in MIGRATIONS for t in _tables(m.statements)}
    for original in migration.statements:
        if m := _MV.match(original):
            view, target, _select = m.groups()
            (mv,) = [s for s in out if s.startswith(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} ")]
            assert mv.startswith(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} ON CLUSTER {CLUSTER} TO {target}_local AS"
            )
            sources = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)\b(?!\s*[.(])", mv))
            assert sources, f"{view} reads no table"
            assert all(s.endswith("_local") and s.removesuffix("_local") in created_anywhere for s in sources)
        if m := re.match(r"ALTER TABLE (\w+)\s", original):
            alters = [s for s in out if s.startswith("ALTER TABLE ")]
            assert any(s.startswith(f"ALTER TABLE {m.group(1)}_local ON CLUSTER {CLUSTER}\n") for s in alters)
            if "ADD COLUMN" in original:
                # A Distributed table has its own column list: it gets the column too, after the locals.
                (dist,) = [s for s in alters if s.startswith(f"ALTER TABLE {m.group(1)} ON CLUSTER")]
                assert "CODEC" not in dist and dist.count("ADD COLUMN") == original.count("ADD COLUMN")
                assert out.index(dist) > next(
                    i for i, s in enumerate(out) if s.startswith(f"ALTER TABLE {m.group(1)}_local")
                )
        if m := re.fullmatch(r"DROP TABLE IF EXISTS (\w+)", original):
            assert f"DROP TABLE IF EXISTS {m.group(1)} ON CLUSTER {CLUSTER} SYNC" in out
            assert f"DROP TABLE IF EXISTS {m.group(1)}_local ON CLUSTER {CLUSTER} SYNC" in out


def test_every_generated_statement_parses_as_clickhouse_sql(clustered: SingleServerBackend) -> None:
    """ClickHouse's parser (chDB's) reads each statement exactly as generated, ON CLUSTER and all."""
    for migration in MIGRATIONS:
        for sql in cluster.cluster_statements(migration.statements, CLUSTER):
            formatted = clustered.query_arrow("SELECT formatQuery({q:String}) AS f", {"q": sql}).column("f")[
                0
            ]
            text = formatted.as_py()
            assert f"ON CLUSTER {CLUSTER}" in text
            if "ENGINE = Replicated" in sql:
                assert "ENGINE = Replicated" in text and "'{replica}'" in text
            if "Distributed(" in sql:
                assert f"ENGINE = Distributed({CLUSTER}, currentDatabase()" in text


def test_the_swapped_back_cluster_schema_equals_the_single_server_schema(
    plain: dict[str, Any], clustered: SingleServerBackend
) -> None:
    assert len(plain) > 15
    for name, (want, want_columns) in plain.items():
        if want["engine"] == "MaterializedView":
            target = (
                clustered.query_arrow(
                    "SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() "
                    "AND name = {t:String}",
                    {"t": name},
                )
                .column("q")[0]
                .as_py()
            )
            assert re.search(r" TO \w+\.(\w+)_local ", target), target
            continue
        assert name in cluster.SHARDING_KEYS, name
        local = f"{name}_local"
        assert _columns(clustered, local) == want_columns, name
        got = _engine(clustered, local)
        assert {k: got[k] for k in ("engine", "sorting_key", "partition_key", "primary_key")} == {
            k: want[k] for k in ("engine", "sorting_key", "partition_key", "primary_key")
        }, name
        # TTL and settings survive (the deduplication window under its replicated name).
        assert (" TTL " in got["engine_full"]) == (" TTL " in want["engine_full"]), name
        if "non_replicated_deduplication_window = 1000" in want["engine_full"]:
            assert "replicated_deduplication_window = 1000" in got["engine_full"], name
        # What queries see under the original name (Distributed there, Buffer here) has every column.
        assert [c[:2] for c in _columns(clustered, name)] == [c[:2] for c in want_columns], name
        assert _engine(clustered, name)["engine"] == "Buffer"
    # The projection that serves "this trace" lives on the local spans table.
    create = clustered.query_arrow("SHOW CREATE TABLE spans_local").to_pylist()[0]
    assert "PROJECTION by_trace_offset" in next(iter(create.values()))
    # Dropped in migration 0005, locally and distributed.
    for gone in ("trace_index", "trace_index_local", "trace_index_mv"):
        assert not clustered.query_arrow(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": gone},
        ).num_rows


def test_sharding_keys_are_integer_expressions_of_their_tables(clustered: SingleServerBackend) -> None:
    for table, key in cluster.SHARDING_KEYS.items():
        if table == "trace_index":
            continue  # dropped by migration 0005
        kind = clustered.query_arrow(f"SELECT toTypeName(any({key})) AS t FROM {table}_local").column("t")[0]
        assert re.fullmatch(r"U?Int(8|16|32|64)", kind.as_py()), (table, kind)


def test_materialized_views_roll_up_the_local_tables(clustered: SingleServerBackend) -> None:
    clustered.inner.command(
        "INSERT INTO spans_local (timestamp, trace_id, span_id, parent_span_id, name, kind, service_name, "
        "duration, status_code) VALUES "
        "(now64(9), unhex('0102030405060708090a0b0c0d0e0f10'), unhex('0102030405060708'), "
        "toFixedString('', 8), 'GET /cart', 'SERVER', 'cart', 2500000, 'ERROR')"
    )
    row = clustered.query_arrow(
        "SELECT sum(requests) AS r, sum(errors) AS e, sum(detailed_requests) AS d FROM red_1m "
        "WHERE service_name = 'cart'"
    ).to_pylist()[0]
    assert row == {"r": 1, "e": 1, "d": 1}
    assert clustered.query_arrow("SELECT count() AS n FROM red_1m_local").column("n")[0].as_py() == 1


def test_migrate_with_a_cluster_is_idempotent_and_records_versions(clustered: SingleServerBackend) -> None:
    sent = len(clustered.sent)
    assert migrations.migrate(clustered, cluster=CLUSTER) == []
    assert migrations.pending(clustered) == []
    assert len(clustered.sent) == sent, "a second start runs no DDL"
    assert all(" ON CLUSTER " in s for s in clustered.sent if not s.startswith("INSERT"))


def test_retention_on_a_cluster_alters_the_local_tables_on_cluster(clustered: SingleServerBackend) -> None:
    before = len(clustered.sent)
    assert migrations.ensure_retention(clustered, 7, cluster=CLUSTER) == []
    assert set(migrations.ensure_retention(clustered, 30, cluster=CLUSTER)) == set(migrations.TTL_COLUMNS)
    alters = clustered.sent[before:]
    assert alters and all(re.match(rf"ALTER TABLE \w+_local ON CLUSTER {CLUSTER}\n", s) for s in alters)
    assert "toIntervalDay(30)" in _engine(clustered, "spans_local")["engine_full"]
    assert migrations.ensure_retention(clustered, 30, cluster=CLUSTER) == []
    assert set(migrations.ensure_retention(clustered, 7, cluster=CLUSTER)) == set(migrations.TTL_COLUMNS)


def test_default_behaviour_is_unchanged() -> None:
    for migration in MIGRATIONS:
        assert not any("ON CLUSTER" in s or "_local" in s for s in migration.statements)


def test_bad_input_gets_a_clear_error(clustered: SingleServerBackend) -> None:
    with pytest.raises(ValueError, match="identifier"):
        cluster.cluster_statements(MIGRATIONS[0].statements, "prod; DROP TABLE spans")
    with pytest.raises(cluster.ClusterDDLError, match="no sharding key"):
        cluster.cluster_statements(
            ["CREATE TABLE IF NOT EXISTS new_table (a UInt8) ENGINE = MergeTree ORDER BY a"], CLUSTER
        )
    with pytest.raises(cluster.ClusterDDLError, match="no replicated form"):
        cluster.cluster_statements(["CREATE TABLE IF NOT EXISTS spans (a UInt8) ENGINE = Memory"], CLUSTER)
    with pytest.raises(cluster.ClusterDDLError, match="separate ALTERs"):
        cluster.cluster_statements(["ALTER TABLE spans ADD COLUMN x UInt8, DROP INDEX IF EXISTS i"], CLUSTER)
    with pytest.raises(cluster.ClusterDDLError, match="no cluster form"):
        cluster.cluster_statements(["INSERT INTO spans SELECT * FROM spans"], CLUSTER)
    # The embedded store has no cluster: refused before any statement runs.
    with pytest.raises(ValueError, match="needs a ClickHouse server"):
        migrations.migrate(clustered.inner, cluster=CLUSTER)
    with pytest.raises(ValueError, match="needs a ClickHouse server"):
        migrations.ensure_retention(clustered.inner, 3, cluster=CLUSTER)
    assert "toIntervalDay(3)" not in _engine(clustered, "spans_local")["engine_full"]


def test_column_drops_leave_the_distributed_table_first() -> None:
    out = cluster.cluster_statements(["ALTER TABLE logs DROP COLUMN IF EXISTS x"], CLUSTER)
    assert out == [
        f"ALTER TABLE logs ON CLUSTER {CLUSTER}\n    DROP COLUMN IF EXISTS x",
        f"ALTER TABLE logs_local ON CLUSTER {CLUSTER}\n    DROP COLUMN IF EXISTS x",
    ]


def test_docs_show_the_ddl_that_runs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    begin, end = "<!-- cluster-ddl:begin (python -m store.cluster sloscope) -->", "<!-- cluster-ddl:end -->"
    assert begin in text and end in text
    shown = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert shown == f"```sql\n{cluster.render(CLUSTER).strip()}\n```", (
        "docs/deploy.md is out of date: paste the output of `python -m store.cluster sloscope`"
    )
