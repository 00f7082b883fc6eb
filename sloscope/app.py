"""Wiring: the store, the durable queues, the OTLP receiver and the API in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from alerts.policy import PolicyErrors, load_policy
from alerts.service import LEASE_TTL_S, Alerting
from collector import otlp_grpc, otlp_http, zipkin
from collector.decode import SIGNALS
from collector.intake import Intake
from collector.queue import DurableQueue, QueueLimits
from collector.telemetry import CollectorMetrics
from slo import evaluator, history
from slo import spec as slo_spec
from slo.counts_cache import CountsCache
from slo.exposition import SloMetrics
from slo.model import Slo
from sloscope.demo_webhook import WebhookLog
from sloscope.settings import Settings
from store import StoreUnavailable, migrations, open_backend, service_map
from store.otlp_writer import OtlpWriter
from store.sql import queries
from ui import api

log = logging.getLogger("sloscope")

#: Seconds between service map roll-up passes (store/service_map.py); the first pass waits one
#: interval too, so that a write-ahead log replayed at start-up is in the store before it.
SERVICE_MAP_INTERVAL_S = 30.0
#: Seconds after the minute at which the minute's SLO evaluation runs: the evaluation is OF the
#: instant on the minute, run a little later so the minute just ended is flushed (1 s batches).
SLO_EVALUATION_DELAY_S = 10


def evaluation_trigger(interval_s: int) -> IntervalTrigger:
    """Every ``interval_s`` (whole minutes) counted from the epoch, ``SLO_EVALUATION_DELAY_S`` past the
    minute: each minute, every 5 minutes on :00, :05, ..., every 2 hours on even UTC hours. A cron
    ``minute="*/N"`` cannot say this: it refuses N > 59, and for N not dividing 60 restarts each hour
    (``*/7`` runs at :56 and again at :00)."""
    return IntervalTrigger(
        seconds=interval_s, start_date=datetime.fromtimestamp(SLO_EVALUATION_DELAY_S, UTC), timezone=UTC
    )


def lease_ttl_s(slo_interval_s: int) -> int:
    """The alerting leader's lease: it beats once per evaluation, so the lease must outlive the
    interval between two (with room for a late or slow cycle), or every evaluator would find the
    leader's lease expired at each cycle and lead too."""
    return max(LEASE_TTL_S, slo_interval_s * 5 // 2)


def load_slos(path: str) -> list[Slo]:
    """The SLOs of ``path`` (file or directory); StartupError listing every spec error."""
    if not path:
        return []
    slos, errors = slo_spec.load(Path(path))
    if errors:
        raise StartupError("the SLO specs have errors (slos):\n  " + "\n  ".join(str(e) for e in errors))
    return slos


class StartupError(RuntimeError):
    """sloscope cannot start as configured; the message says what to change."""


def _listen(host: str, port: int, setting: str) -> socket.socket:
    # Binding here, not in uvicorn, turns a taken port into one clear error instead of a traceback.
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port} ({setting}): {exc.strerror or exc}") from exc


class _Server(uvicorn.Server):
    # Several servers share one loop; signals are handled once, by SloscopeServer.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SloscopeServer:
    """Everything ``sloscope serve`` runs, started and stopped in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Only the roles that answer for SLOs read their specs and the notification policy.
        self.slos = load_slos(settings.slos) if settings.evaluates or settings.serves_ui else []
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics.create(self.registry) if settings.receives else None
        self.slo_counts = CountsCache()  # the schedule reads only the newest minutes of each SLO
        self.slo_metrics = SloMetrics()
        if settings.evaluates:
            self.registry.register(self.slo_metrics)
        self._demo_webhook: WebhookLog | None = None
        environ = dict(os.environ)
        if settings.demo:
            # The demo's policy sends to a local webhook that logs each notification to a file.
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._demo_webhook = WebhookLog(settings.data_dir / "demo-webhook.log")
            environ["SLOSCOPE_DEMO_WEBHOOK_URL"] = self._demo_webhook.url
        try:
            policy_path = settings.notification_policy if settings.role != "collector" else ""
            self.policy = load_policy(policy_path or None, environ)
        except PolicyErrors as exc:
            errors = "\n  ".join(str(e) for e in exc.errors)
            raise StartupError(
                f"the notification policy has errors (notification_policy):\n  {errors}"
            ) from None
        self.backend = open_backend(settings.data_dir, settings.clickhouse_url, settings.insert_parallelism)
        try:
            # Every role migrates at start: the statements are idempotent, so instances starting
            # at once against one server all succeed, and whichever comes first does the work.
            cluster = settings.clickhouse_cluster or None
            applied = migrations.migrate(self.backend, cluster=cluster)
            migrations.ensure_retention(self.backend, settings.retention_days, cluster=cluster)
        except Exception:
            self.backend.close()
            raise
        if applied:
            log.info("schema migrated", extra={"versions": applied})
        #: The durable queues, one per signal; none in roles without receivers (no write-ahead log).
        self.queues: dict[str, DurableQueue] = {}
        if settings.receives:
            assert self.metrics is not None
            writer = OtlpWriter(self.backend, settings.correlation_keys)
            limits = QueueLimits(
                max_batch_rows=settings.batch_rows,
                max_batch_delay=settings.batch_delay,
                max_queue_bytes=settings.max_queue_bytes,
                parallelism=settings.insert_parallelism,
            )
            # Per process: each collector has its own data directory and replays only its own log.
            wal_root = settings.data_dir / "wal"
            self.queues = {s: DurableQueue(s, wal_root / s, writer, self.metrics, limits) for s in SIGNALS}
        self.alerting: Alerting | None = None
        if settings.evaluates:
            self.alerting = Alerting(
                self.backend, self.policy, self.registry, lease_ttl_s=lease_ttl_s(settings.slo_interval)
            )
        if settings.role == "evaluator" and not self.slos:
            log.warning("role evaluator without SLOs (slos): only the service map roll-up runs")
        self._servers: list[_Server] = []
        self.otlp_url = self.api_url = self.zipkin_url = self.otlp_grpc_address = ""
        self._grpc: grpc.aio.Server | None = None
        self._demo = None
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler_started = False  # readiness: a schedule that started and then stopped
        self._stop_roll_up = threading.Event()
        self._roll_up_thread = threading.Thread(target=self._roll_up_loop, name="service-map", daemon=True)

    def _roll_up_loop(self) -> None:
        # A failed pass is logged and retried at the next interval; it never stops the server.
        while not self._stop_roll_up.wait(SERVICE_MAP_INTERVAL_S):
            try:
                service_map.roll_up(self.backend, time.time_ns(), self._stop_roll_up)
            except Exception:
                log.exception("service map roll-up failed")

    def evaluate_slos(self, at_s: int | None = None) -> None:
        """One evaluation cycle: every SLO at the current minute (or ``at_s``), stored, exported to
        /metrics and handed to alerting.

        A failure is logged; the next cycle tries again (each minute's evaluation stands alone).
        """
        if self.alerting is None:
            raise RuntimeError(f"role {self.settings.role!r} does not evaluate SLOs")
        try:
            at_s = (int(time.time()) if at_s is None else at_s) // 60 * 60
            results = evaluator.evaluate(self.backend, self.slos, at_s, self.slo_counts)
            history.record(self.backend, results)
            self.alerting.process(self.slos, results, at_s)
        except StoreUnavailable:
            log.exception("SLO evaluation skipped: store unavailable")
            return
        except Exception:
            log.exception("SLO evaluation failed")
            return
        self.slo_metrics.update(results)
        for result in results:
            if result.error:
                log.warning("SLO not evaluated", extra={"slo": result.slo.name, "error": result.error})

    def _start_scheduler(self) -> None:
        if not self.settings.evaluates or not self.slos or self._scheduler.running:
            return
        # coalesce + one instance: a slow cycle delays the next instead of piling them up.
        self._scheduler.add_job(
            self.evaluate_slos,
            evaluation_trigger(self.settings.slo_interval),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=30,
        )
        self._scheduler.add_job(self.evaluate_slos)  # once now, so /metrics and history start at once
        self._scheduler.start()
        self._scheduler_started = True

    def readiness(self) -> list[str]:
        """Reasons the server is not ready to serve its role; empty when it is.

        Every role needs the store and the current schema; a collector also needs its flushers to
        write, an evaluator its schedule and roll-up running."""
        problems = []
        try:
            self.backend.query_arrow(queries.PING)
            pending = migrations.pending(self.backend)
            if pending:
                problems.append(f"migrations not applied: {pending}")
        except Exception as exc:
            problems.append(f"store unreachable: {str(exc)[:300]}")
        problems += [
            f"{name} flusher cannot write to the store" for name, q in self.queues.items() if not q.healthy
        ]
        if self.settings.evaluates and not self._stop_roll_up.is_set():
            if self._scheduler_started and not self._scheduler.running:
                problems.append("SLO evaluation schedule stopped")
            if not self._roll_up_thread.is_alive():
                problems.append("service map roll-up not running")
        return problems

    def _uvicorn(self, app: object) -> _Server:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        return _Server(config)

    async def serve(self, handle_signals: bool = True) -> None:
        """Run until SIGINT or SIGTERM (or ``request_stop``); ``close`` then drains and closes.

        Only the role's listeners open: a collector has no web UI, the evaluator and the UI no
        receivers (their ports stay closed, so a misrouted exporter fails loudly)."""
        host = self.settings.host
        listeners: list[tuple[object, socket.socket]] = []
        api_socket = _listen(host, self.settings.api_port, "api_port")
        self.api_url = f"http://{host}:{api_socket.getsockname()[1]}"
        if self.settings.receives:
            otlp_socket = _listen(host, self.settings.otlp_http_port, "otlp_http_port")
            zipkin_socket = _listen(host, self.settings.zipkin_port, "zipkin_port")
            self.otlp_url = f"http://{host}:{otlp_socket.getsockname()[1]}"
            self.zipkin_url = f"http://{host}:{zipkin_socket.getsockname()[1]}"
            for queue in self.queues.values():
                queue.start()
            assert self.metrics is not None
            intake = Intake(self.queues, self.metrics)
            # grpc.aio binds to the running loop, and stops a server that is garbage collected: keep it.
            self._grpc = otlp_grpc.create_server(intake, self.settings.max_body_bytes)
            try:
                grpc_port = await otlp_grpc.start(self._grpc, host, self.settings.otlp_grpc_port)
            except OSError as exc:
                raise StartupError(f"{exc} (otlp_grpc_port)") from exc
            self.otlp_grpc_address = f"{host}:{grpc_port}"
            otlp_app = otlp_http.create_app(
                intake, otlp_http.HttpLimits(max_body_bytes=self.settings.max_body_bytes)
            )
            zipkin_app = zipkin.create_app(intake, max_body_bytes=self.settings.max_body_bytes)
            listeners += [(otlp_app, otlp_socket), (zipkin_app, zipkin_socket)]
        if self.settings.evaluates:
            if not self._roll_up_thread.is_alive() and not self._stop_roll_up.is_set():
                self._roll_up_thread.start()
            self._start_scheduler()
        if self.settings.serves_ui:
            api_app = api.create_app(
                self.backend, self.registry, self.readiness, self.slos, self.policy.external_url
            )
        else:
            api_app = api.create_ops_app(self.registry, self.readiness)
        listeners.insert(0, (api_app, api_socket))
        self._servers = [self._uvicorn(app) for app, _ in listeners]
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_stop)
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, (_, sock) in zip(self._servers, listeners, strict=True)
        ]
        while not all(server.started for server in self._servers):
            await asyncio.sleep(0.02)
        print(self._banner(), flush=True)
        if self.settings.demo:
            self._start_demo()
        await asyncio.gather(*tasks)
        if self._grpc is not None:
            await self._grpc.stop(5)

    def _banner(self) -> str:
        """The start-up line: where each of this role's listeners is."""
        if self.settings.serves_ui:
            parts = [f"API and UI at {self.api_url}/"]
        else:
            parts = [f"health and metrics at {self.api_url}/readyz and {self.api_url}/metrics"]
        if self.settings.receives:
            parts += [
                f"OTLP/gRPC at {self.otlp_grpc_address}",
                f"OTLP/HTTP at {self.otlp_url}",
                f"Zipkin at {self.zipkin_url}/api/v2/spans",
            ]
        if self.settings.role == "evaluator":
            parts.append(f"evaluating {len(self.slos)} SLOs")
        parts.append(f"store: {self.settings.store_label}")
        role = "" if self.settings.role == "all" else f" (role {self.settings.role})"
        return f"sloscope is up{role}: " + "  ".join(parts)

    def _start_demo(self) -> None:
        from sloscope.demo import Demo, DemoConfig

        endpoint = self.otlp_url
        self._demo = Demo(DemoConfig(endpoint=endpoint, rate=self.settings.demo_rate))
        self._demo.start()
        log.info("demo traffic started", extra={"endpoint": endpoint, "rate": self.settings.demo_rate})

    def request_stop(self) -> None:
        """Begin a graceful shutdown (idempotent): the demo's last export first, then the listeners."""
        demo, self._demo = self._demo, None
        if demo is None:
            self._exit_servers()
            return
        # The demo's final export is answered by this event loop: stop it from another thread.
        threading.Thread(target=lambda: (demo.stop(), self._exit_servers()), daemon=True).start()

    def _exit_servers(self) -> None:
        for server in self._servers:
            server.should_exit = True

    def close(self) -> None:
        """Stop the demo and the roll-up, drain the queues into the store, close the store."""
        if self._demo is not None:
            self._demo.stop()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)  # a cycle in progress finishes before the store closes
        if self.alerting is not None:
            self.alerting.close()
        if self._demo_webhook is not None:
            self._demo_webhook.close()
        self._stop_roll_up.set()
        if self._roll_up_thread.is_alive():
            self._roll_up_thread.join()  # the pass in progress stops after its minute, before the store closes
        for queue in self.queues.values():
            queue.stop()
        self.backend.close()


def run(settings: Settings) -> None:
    """``sloscope serve``: start everything and block until stopped."""
    server = SloscopeServer(settings)
    try:
        asyncio.run(server.serve())
    finally:
        server.close()
