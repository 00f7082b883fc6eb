"""The embedded store: query parameters of every shape, migrations and retention."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store import migrations
from store.embedded import EmbeddedBackend


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    b = EmbeddedBackend(tmp_path_factory.mktemp("store"))
    yield b
    b.close()


@pytest.mark.parametrize(
    "text", ["plain", "back\\slash", "tab\there", "new\nline", "quote ' \" ", "ünïcode", ""]
)
def test_string_and_array_parameters_reach_the_engine_unchanged(backend: EmbeddedBackend, text: str) -> None:
    row = backend.query_arrow(
        "SELECT {s:String} AS s, {a:Array(String)} AS a, {n:Int64} AS n",
        {"s": text, "a": [text, "x"], "n": -5},
    ).to_pylist()[0]
    assert row == {"s": text, "a": [text, "x"], "n": -5}


def test_migrations_are_applied_once_and_retention_is_altered_only_when_changed(
    backend: EmbeddedBackend,
) -> None:
    assert migrations.migrate(backend) == [m.version for m in migrations.load_migrations()]
    assert migrations.migrate(backend) == []
    assert migrations.pending(backend) == []
    assert migrations.ensure_retention(backend, 7) == []
    assert set(migrations.ensure_retention(backend, 30)) == set(migrations.TTL_COLUMNS)
    assert migrations.ensure_retention(backend, 30) == []
    engine = backend.query_arrow("SELECT engine_full FROM system.tables WHERE name = 'spans'").to_pylist()[0]
    assert "toIntervalDay(30)" in engine["engine_full"]
    # 0 keeps data forever (long SLO windows over old data); a later retention brings the TTL back.
    assert set(migrations.ensure_retention(backend, 0)) == set(migrations.TTL_COLUMNS)
    assert migrations.ensure_retention(backend, 0) == []
    engine = backend.query_arrow("SELECT engine_full FROM system.tables WHERE name = 'spans'").to_pylist()[0]
    assert " TTL " not in engine["engine_full"]
    assert set(migrations.ensure_retention(backend, 7)) == set(migrations.TTL_COLUMNS)
    with pytest.raises(ValueError):
        migrations.ensure_retention(backend, -1)
