"""Shared fixtures: real sloscope servers on free loopback ports, backed by the real chDB engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pyarrow as pa
import pytest

from sloscope import settings as settings_mod
from sloscope.app import SloscopeServer

ROOT = Path(__file__).resolve().parents[1]


DATA = ROOT / "tests" / "data"
"""Fixture files, each with its origin and licence in ``tests/data/README.md``."""


def id_columns(n: int) -> dict[str, pa.Array]:
    """trace_id, span_id and parent_span_id columns of ``n`` root spans with ids 1..n (the trace id
    repeats the span id in both halves), for spans tables built as Arrow."""

    def fixed(values: np.ndarray, width: int) -> pa.Array:
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(values.tobytes())])

    ids = np.arange(1, n + 1, dtype=np.int64)
    return {
        "trace_id": fixed(np.column_stack([ids, ids]), 16),
        "span_id": fixed(ids, 8),
        "parent_span_id": fixed(np.zeros(n, dtype=np.int64), 8),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_ready(
    api: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, verify: bool | str = True
) -> None:
    """Poll ``{api}/readyz`` until it answers 200 (``verify``: httpx's, for an https ``api``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{api}/readyz", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{api} not ready after {timeout}s")


@dataclass
class InProcess:
    """A SloscopeServer running on its own event loop thread in the test process."""

    server: SloscopeServer
    otlp: str
    api: str

    @property
    def backend(self):  # noqa: ANN201
        return self.server.backend

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything acknowledged has been written into the store."""
        deadline = time.monotonic() + timeout
        while any(q.pending_rows for q in self.server.queues.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("queues did not drain")
            time.sleep(0.05)

    def rows(self, sql: str, params: dict | None = None) -> list[dict]:
        return self.backend.query_arrow(sql, params).to_pylist()


@contextlib.contextmanager
def in_process(data_dir: Path, **overrides: object) -> Iterator[InProcess]:
    """``sloscope serve`` in-process on free ports, with settings ``overrides``.

    chDB holds one data directory per process at a time: one at a time, module-scoped at most.
    With ``tls_cert_file`` the URLs are https (readiness is polled without verifying the certificate;
    the TLS tests verify it themselves).
    """
    ports = {name: free_port() for name in ("otlp_http_port", "otlp_grpc_port", "zipkin_port", "api_port")}
    # No memory bound by default: it is this process's RSS, which pytest and earlier modules share.
    defaults = {"data_dir": data_dir, "batch_delay": 0.1, "max_memory_bytes": 0}
    settings = settings_mod.load({**defaults, **ports, **overrides}, environ={})
    server = SloscopeServer(settings)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(handle_signals=False)), daemon=True)
    thread.start()
    scheme = "https" if settings.tls_cert_file else "http"
    api = f"{scheme}://127.0.0.1:{ports['api_port']}"
    try:
        wait_ready(api, verify=scheme == "http")
        yield InProcess(server, f"{scheme}://127.0.0.1:{ports['otlp_http_port']}", api)
    finally:
        server.request_stop()
        thread.join(30)
        server.close()


@pytest.fixture(scope="module")
def sloscope(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """A fresh in-process server for the test module."""
    with in_process(tmp_path_factory.mktemp("data")) as server:
        yield server


@dataclass
class Subprocess:
    """``sloscope serve`` as a child process (for kill -9 and for flags under test)."""

    proc: subprocess.Popen
    otlp: str
    api: str
    data_dir: Path
    log: Path
    grpc: str = ""
    zipkin: str = ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def start_subprocess(
    data_dir: Path, *flags: str, otlp_port: int | None = None, api_port: int | None = None
) -> Subprocess:
    """Start ``python -m sloscope serve`` on free (or given) ports and wait until it is ready."""
    otlp_port = otlp_port or free_port()
    api_port = api_port or free_port()
    grpc_port, zipkin_port = free_port(), free_port()
    log = data_dir.parent / f"{data_dir.name}-server.log"
    cmd = [
        sys.executable,
        "-m",
        "sloscope",
        "serve",
        "--data-dir",
        str(data_dir),
        "--otlp-http-port",
        str(otlp_port),
        "--api-port",
        str(api_port),
        "--otlp-grpc-port",
        str(grpc_port),
        "--zipkin-port",
        str(zipkin_port),
        *flags,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_ready(api, proc=proc)
    except Exception:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}") from None
    return Subprocess(
        proc,
        f"http://127.0.0.1:{otlp_port}",
        api,
        data_dir,
        log,
        grpc=f"127.0.0.1:{grpc_port}",
        zipkin=f"http://127.0.0.1:{zipkin_port}",
    )


# -- browser tests -----------------------------------------------------------------------------------
# Debian's Chromium (installed by `make test`), driven by Python Playwright; never `playwright install`.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Screenshots of the pages the browser tests visit (not committed; see .gitignore).
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session")
def browser():  # noqa: ANN201
    """One headless Chromium for the whole session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


CSP_REPORTER = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error("CSP violation: " + e.violatedDirective + " " + (e.blockedURI || "inline")));"""


@pytest.fixture()
def page(browser):  # noqa: ANN001, ANN201
    """A fresh page; console errors, failed requests and Content-Security-Policy violations are
    collected in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield watched_page(context)
    context.close()


def watched_page(context):  # noqa: ANN001, ANN201
    """A new page of ``context`` that collects console errors, uncaught errors and CSP violations in
    ``page.problems``."""
    # Every violation of the page's CSP becomes a console error (init scripts are exempt from it).
    context.add_init_script(CSP_REPORTER)
    pg = context.new_page()
    pg.problems = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"pageerror: {e}"))
    return pg


def screenshot(page, name: str) -> Path:  # noqa: ANN001
    """Save a full-page screenshot under tests/artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: sync Playwright keeps an event loop running in the main thread for the
    session-scoped browser, and ``asyncio.run`` in any later test would then refuse to start."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))
