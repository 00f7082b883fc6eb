"""The `sloscope` command: help everywhere, clear errors, migrations, and CI's no-test rule."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from store.migrations import load_migrations
from tests.conftest import ROOT, start_subprocess

VERSIONS = [m.version for m in load_migrations()]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    return subprocess.run(
        [sys.executable, "-m", "sloscope", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.parametrize("args", [[], ["serve"], ["migrate"], ["demo"]])
def test_every_command_has_help(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: sloscope {' '.join(args)}".rstrip())


def test_no_command_is_an_error() -> None:
    result = run()
    assert result.returncode == 2 and "required: COMMAND" in result.stderr


def test_bad_flag_and_bad_environment_name_the_setting(tmp_path: Path) -> None:
    result = run("serve", "--data-dir", str(tmp_path), "--api-port", "70000")
    assert result.returncode == 2 and "api_port: 70000 is not a TCP port" in result.stderr
    result = run("serve", "--clickhouse-url", "tcp://db:9000")
    assert result.returncode == 2 and "clickhouse_url: must start with http:// or https://" in result.stderr
    result = run("serve", "--data-dir", str(tmp_path), env={"SLOSCOPE_OTLP_HTTP_PORT": "four"})
    assert result.returncode == 2 and "SLOSCOPE_OTLP_HTTP_PORT: cannot use 'four'" in result.stderr


def test_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    first = run("migrate", "--data-dir", str(tmp_path))
    assert first.returncode == 0 and first.stdout.strip() == f"applied migrations {VERSIONS}"
    second = run("migrate", env={"SLOSCOPE_DATA_DIR": str(tmp_path)})
    assert second.returncode == 0 and second.stdout.strip() == "schema is up to date"


def test_second_server_on_the_same_data_dir_says_why_it_cannot_start(tmp_path: Path) -> None:
    server = start_subprocess(tmp_path / "data")
    try:
        result = run(
            "serve", "--data-dir", str(tmp_path / "data"), "--api-port", "0", "--otlp-http-port", "0"
        )
        assert result.returncode == 1
        assert "sloscope: error: cannot open embedded store" in result.stderr
    finally:
        assert server.stop() == 0


def test_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run("serve", "--data-dir", str(tmp_path), "--otlp-http-port", str(port), "--api-port", "0")
    assert result.returncode == 1
    assert f"sloscope: error: cannot listen on 127.0.0.1:{port} (otlp_http_port)" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_logs_are_one_object_per_line_with_level_and_fields(tmp_path: Path) -> None:
    result = run("migrate", "--data-dir", str(tmp_path), env={"SLOSCOPE_LOG_FORMAT": "json"})
    assert result.returncode == 0
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    applied = [e for e in entries if e["message"] == "applied migration"]
    assert [e["version"] for e in applied] == VERSIONS
    assert {e["level"] for e in applied} == {"info"} and all(e["time"].endswith("Z") for e in applied)


def test_ci_fails_when_pytest_collects_no_test() -> None:
    # make passes its command line's variables down in MAKEFLAGS, and they beat the environment: under
    # `make test PYTEST_ARGS=...` the child would run the whole suite, this test included, again.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PYTEST_ARGS"] = "tests/test_cli.py -k no_test_has_this_name"
    child = subprocess.Popen(
        ["bash", ".ci/run"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, so that a timeout ends make and pytest too
    )
    try:
        stdout, stderr = child.communicate(timeout=600)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    assert child.returncode != 0
    assert "0 selected" in stdout
    assert "Error 5" in stderr  # pytest's "no tests collected", passed through make


def _serve_flags() -> set[str]:
    from sloscope.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    serve = commands.choices["serve"]
    return {flag for action in serve._actions for flag in action.option_strings if flag not in ("-h", "--help")}


def test_the_readme_configuration_table_lists_every_serve_flag() -> None:
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `--")]
    documented = {flag for row in rows for flag in re.findall(r"`(--[a-z0-9-]+)`", row[1])}
    assert documented == _serve_flags()
    # Each row names its flags' environment variables, SLOSCOPE_<FLAG>, or a family of them (SLOSCOPE_TLS_*).
    for row in rows:
        names = re.findall(r"SLOSCOPE_[A-Z_]+\*?", row[2])
        for flag in re.findall(r"`--([a-z0-9-]+)`", row[1]):
            env = "SLOSCOPE_" + flag.upper().replace("-", "_")
            assert any(env == n or (n.endswith("*") and env.startswith(n[:-1])) for n in names), (flag, row[2])
