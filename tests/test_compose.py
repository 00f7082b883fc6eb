"""docker-compose.yml, the Dockerfile and their files, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema (tests/data/compose-spec.json,
see tests/data/README.md), before and after interpolation with .env.example; every file it mounts or
builds from must exist; images are pinned; the Dockerfile has its EXPOSE, HEALTHCHECK and USER lines,
and the health checks themselves run against a real HTTP server.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
SLOSCOPE_SERVICES = ("sloscope", "collector", "evaluator", "ui")

_VAR = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


class MissingVariable(KeyError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution: ${V}, ${V:-default}, ${V-default}, ${V:?error}, ${V?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset_or_empty = not current if op and op.startswith(":") else current is None
        if op in (":-", "-"):
            return arg if unset_or_empty else current  # type: ignore[return-value]
        if op in (":?", "?"):
            if unset_or_empty:
                raise MissingVariable(f"{name}: {arg}")
            return current  # type: ignore[return-value]
        return current or ""

    return _VAR.sub(sub, value)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The model compose runs: interpolated with the values of .env.example."""
    return interpolate(raw, env_example())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # "$schema": "https://json-schema.org/draft-07/schema" (no "#", so jsonschema does not look it up).
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_vendored_schema_is_the_compose_specification(validator: jsonschema.protocols.Validator) -> None:
    schema = validator.schema
    assert schema["title"] == "Compose Specification"
    assert {"services", "volumes", "networks", "include", "models"} <= set(schema["properties"])
    # It is strict where it matters for this file: unknown keys and wrong shapes are errors.
    bad = {"services": {"x": {"image": "busybox:1.36", "prots": ["80:80"]}}}
    assert not validator.is_valid(bad)
    assert not validator.is_valid(
        {"services": {"x": {"image": "busybox:1.36", "healthcheck": {"interval": 5}}}}
    )
    assert validator.is_valid({"services": {"x": {"image": "busybox:1.36", "ports": ["80:80"]}}})


def test_the_compose_file_validates_before_and_after_interpolation(
    raw: dict[str, Any], compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    for model in (raw, compose):
        errors = sorted(validator.iter_errors(model), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_every_required_variable_is_in_env_example(raw: dict[str, Any]) -> None:
    found = [m for text in _strings(raw) for m in _VAR.finditer(text) if m.group("name") or m.group("bare")]
    used = {m.group("name") or m.group("bare") for m in found}
    required = {m.group("name") or m.group("bare") for m in found if m.group("op") in (None, ":?", "?")}
    example = env_example()
    assert required <= set(example), f"add to .env.example: {sorted(required - set(example))}"
    assert "COMPOSE_PROFILES" in example and example["COMPOSE_PROFILES"] == "single"
    # Without an .env, compose stops with the message of a :? variable instead of starting half-configured.
    with pytest.raises(MissingVariable, match="CLICKHOUSE_"):
        interpolate(raw, {})
    # No real secrets: every password-like value is a placeholder.
    for key, value in example.items():
        if re.search(r"PASSWORD|KEY|TOKEN|SECRET", key):
            assert re.search(r"change-me|replace", value), f"{key} in .env.example must be a placeholder"
    assert used - set(example) <= {"SLOSCOPE_VERSION"}, used - set(example)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _short_volume(entry: str) -> tuple[str | None, str]:
    """(source or None for an anonymous volume, target) of a short-syntax volume."""
    parts = entry.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def _mounts(service: dict[str, Any]) -> Iterator[tuple[str, str | None, str]]:
    """(type, source, target) of every volume of a service."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            yield entry.get("type", "volume"), entry.get("source"), entry["target"]
            continue
        source, target = _short_volume(entry)
        if source is None:
            yield "anonymous", None, target
        elif source.startswith((".", "/", "~")):
            yield "bind", source, target
        else:
            yield "volume", source, target


def test_every_referenced_file_exists(compose: dict[str, Any]) -> None:
    checked = []
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context}"
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            checked.append(dockerfile)
        for kind, source, target in _mounts(service):
            if kind == "bind":
                path = (ROOT / source).resolve()
                assert path.exists(), f"{name}: mounts {source}, which is not in the repository"
                # A file mounted onto a file path, a directory onto a directory.
                looks_like_file = bool(re.search(r"\.(ya?ml|json|xml|conf)$", target))
                assert path.is_file() == looks_like_file, f"{name}: {source} -> {target}"
                checked.append(path)
            elif kind == "volume":
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} is not declared"
        env_files = service.get("env_file", [])
        for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            path, required = (
                (entry, True) if isinstance(entry, str) else (entry["path"], entry.get("required", True))
            )
            if required:
                # .env is made from .env.example by the documented first step.
                exists = (ROOT / path).exists() or (path in (".env", "./.env") and ENV_EXAMPLE.exists())
                assert exists, f"{name}: env_file {path}"
    assert {p.name for p in checked} >= {
        "Dockerfile",
        "examples",
        "prometheus.yml",
        "otel-gateway.yaml",
        "datasources.yaml",
        "dashboards.yaml",
        "dashboards",
    }
    # What the mounted examples are used as inside the containers.
    env = compose["services"]["sloscope"]["environment"]
    for key, mounted in (("SLOSCOPE_SLOS", "slos"), ("SLOSCOPE_NOTIFICATION_POLICY", "alerting/policy.yaml")):
        assert env[key] == f"/etc/sloscope/examples/{mounted}"
        assert (ROOT / "examples" / mounted).exists()
    assert list((ROOT / "dashboards").glob("*.json")), "Grafana gets the dashboards directory"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    expected = {
        "clickhouse": "clickhouse/clickhouse-server",
        "prometheus": "prom/prometheus",
        "grafana": "grafana/grafana",
        "otel-gateway": "otel/opentelemetry-collector",
    }
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image or service.get("build"), name
        if not image:
            continue
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
        if name in expected:
            assert repo == expected[name], name
            assert re.fullmatch(r"v?\d+\.\d+\.\d+(\.\d+)?", tag), f"{name}: pin a full version, not {tag}"


def test_clickhouse_service(compose: dict[str, Any]) -> None:
    ch = compose["services"]["clickhouse"]
    env = ch["environment"]
    assert {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DB"} <= set(env)
    assert env["CLICKHOUSE_PASSWORD"] == env_example()["CLICKHOUSE_PASSWORD"]
    assert any(kind == "volume" and target == "/var/lib/clickhouse" for kind, _, target in _mounts(ch))
    test = " ".join(ch["healthcheck"]["test"])
    assert "clickhouse-client" in test and "SELECT 1" in test
    # $$ reaches the container's shell as $: the password is read there, not written into the model.
    assert '"$CLICKHOUSE_PASSWORD"' in test and env_example()["CLICKHOUSE_PASSWORD"] not in test


def test_sloscope_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    example = env_example()
    url = f"http://clickhouse:8123/{example['CLICKHOUSE_DB']}"
    roles = {}
    for name in SLOSCOPE_SERVICES:
        s = services[name]
        assert s["build"]["context"] == "." and s["build"]["dockerfile"] == "Dockerfile"
        assert s["environment"]["SLOSCOPE_CLICKHOUSE_URL"] == url
        assert s["environment"]["SLOSCOPE_CLICKHOUSE_USER"] == example["CLICKHOUSE_USER"]
        assert s["environment"]["SLOSCOPE_CLICKHOUSE_PASSWORD"] == example["CLICKHOUSE_PASSWORD"]
        assert s["depends_on"]["clickhouse"]["condition"] == "service_healthy"
        assert s["healthcheck"]["test"] == ["CMD", "sloscope", "health"]
        assert ("bind", "./examples", "/etc/sloscope/examples") in {(k, src, t) for k, src, t in _mounts(s)}
        roles[name] = s["environment"]["SLOSCOPE_ROLE"]
        assert s["profiles"] == (["single"] if name == "sloscope" else ["scaled"])
    assert roles == {"sloscope": "all", "collector": "collector", "evaluator": "evaluator", "ui": "ui"}

    published = {p.split(":")[-1] for p in services["sloscope"]["ports"]}
    assert published == {"4317", "4318", "9411", "8080"}
    # `--scale collector=N` cannot publish one host port N times; the gateway is the way in.
    collector = services["collector"]
    assert "ports" not in collector
    # Each replica its own write-ahead log: an anonymous volume, never a named or bind mount (shared).
    wal = [(kind, target) for kind, _, target in _mounts(collector) if target == "/var/lib/sloscope"]
    assert wal == [("anonymous", "/var/lib/sloscope")]
    assert ("volume", "sloscope-wal", "/var/lib/sloscope") in set(_mounts(services["sloscope"]))
    assert services["ui"]["networks"]["default"]["aliases"] == ["sloscope"]
    gateway = services["otel-gateway"]
    assert gateway["profiles"] == ["scaled"] and {p.split(":")[-1] for p in gateway["ports"]} == {
        "4317",
        "4318",
    }


def test_grafana_and_prometheus(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert grafana["environment"]["GF_INSTALL_PLUGINS"] == "grafana-clickhouse-datasource"
    mounts = {(src, t) for _, src, t in _mounts(grafana)}
    assert (
        "./dashboards/provisioning/datasources.yaml",
        "/etc/grafana/provisioning/datasources/sloscope.yaml",
    ) in mounts
    assert (
        "./dashboards/provisioning/dashboards.yaml",
        "/etc/grafana/provisioning/dashboards/sloscope.yaml",
    ) in mounts
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards.yaml").read_text(encoding="utf-8"))
    dashboards_at = {p["options"]["path"] for p in provider["providers"]}
    assert dashboards_at <= {t for src, t in mounts if src == "./dashboards"}, (
        "Grafana reads the mounted dashboards"
    )
    # The data sources' ${VARS} are in Grafana's environment.
    datasources = yaml.safe_load(
        (ROOT / "dashboards/provisioning/datasources.yaml").read_text(encoding="utf-8")
    )
    wanted = {v for text in _strings(datasources) for v in re.findall(r"\$\{(\w+)\}", text)}
    assert wanted, "the ClickHouse data source logs in with the compose file's user"
    for var in wanted:
        assert var in grafana["environment"], var

    prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "sloscope"]
    assert job["metrics_path"] == "/metrics"
    names = {n for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert {sd["port"] for sd in job["dns_sd_configs"]} == {8080}
    services = compose["services"]
    reachable = set(services) | {
        a for s in services.values() for a in (s.get("networks") or {}).get("default", {}).get("aliases", [])
    }
    assert names <= reachable and "sloscope" in names


def test_gateway_config_sends_every_signal_to_the_collectors(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy/otel-gateway.yaml").read_text(encoding="utf-8"))
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    (exporter,) = config["exporters"].values()
    host = re.fullmatch(r"dns:///(\w+):4317", exporter["endpoint"]).group(1)
    assert host in compose["services"] and exporter["balancer_name"] == "round_robin"


# -- the Dockerfile -----------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_lines() -> None:
    inst = _instructions()
    get = lambda word: [rest for w, rest in inst if w == word]  # noqa: E731
    assert get("FROM") == ["python:3.11-slim"]
    assert {p for rest in get("EXPOSE") for p in rest.split()} == {"4317", "4318", "9411", "8080"}
    (user,) = get("USER")
    assert user.split(":")[0] not in ("0", "root")
    assert [w for w, _ in inst].index("USER") > max(i for i, (w, _) in enumerate(inst) if w == "RUN"), (
        "USER comes after every RUN: the running image is never root"
    )
    (health,) = get("HEALTHCHECK")
    assert json.loads(health.split(" CMD ", 1)[1]) == ["sloscope", "health"]
    assert json.loads(get("ENTRYPOINT")[0]) == ["sloscope", "serve", "--host", "0.0.0.0"]
    installs = " ".join(get("RUN"))
    assert "pip install ." in installs and "[test]" not in installs and "-e " not in installs


def test_dockerfile_copies_every_package_and_dockerignore_keeps_them() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    top_level = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set()
    for word, rest in _instructions():
        if word == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source.rstrip("/"))
    assert top_level | {"pyproject.toml", project["project"]["readme"]} <= copied
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copied:
        assert source not in ignored and not any(Path(source).match(p) for p in ignored), source
    for kept_out in (".venv", ".git", ".env", "tests"):
        assert kept_out in ignored


# -- the health checks, run for real --------------------------------------------------------------------


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def ready_server() -> Iterator[tuple[int, type[_Ready]]]:
    handler = type("Handler", (_Ready,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def _run_check(command: list[str], port: int) -> int:
    assert command[0] == "sloscope"
    args = [sys.executable, "-m", "sloscope", *command[1:]]
    env = {**os.environ, "SLOSCOPE_API_PORT": str(port)}
    return subprocess.run(args, env=env, capture_output=True, timeout=30).returncode


def test_the_health_checks_follow_readyz(
    ready_server: tuple[int, type[_Ready]], compose: dict[str, Any]
) -> None:
    port, handler = ready_server
    (health,) = [rest for word, rest in _instructions() if word == "HEALTHCHECK"]
    dockerfile_cmd = json.loads(health.split(" CMD ", 1)[1])
    compose_cmd = compose["services"]["sloscope"]["healthcheck"]["test"][1:]
    assert compose["services"]["sloscope"]["healthcheck"]["test"][0] == "CMD"
    for cmd in (dockerfile_cmd, compose_cmd):
        handler.status = 200
        assert _run_check(cmd, port) == 0, shlex.join(cmd)
        handler.status = 503
        assert _run_check(cmd, port) != 0, shlex.join(cmd)


def test_the_shipped_ui_users_file_holds_the_placeholder_admin() -> None:
    """The compose deployment turns UI auth on with deploy/ui-users.yaml: it loads, and its admin's
    password is the placeholder .env.example and docs/deploy.md tell the operator to replace."""
    from ui.users import load_users, verify_password

    users = load_users(ROOT / "deploy" / "ui-users.yaml")
    assert {name: (u.role, u.tenant) for name, u in users.items()} == {"admin": ("admin", None)}
    assert verify_password(users["admin"].password_hash, "change-me-admin")
    assert "change-me-admin" in (ROOT / ".env.example").read_text(encoding="utf-8")
