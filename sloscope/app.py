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
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from alerts.policy import PolicyErrors, load_policy
from alerts.service import Alerting
from collector import dedup, otlp_grpc, otlp_http, zipkin
from collector.admission import (
    Admission,
    AdmissionLimits,
    ReadAdmission,
    flush_batch_bytes,
    otlp_refusal,
    read_rss,
    text_refusal,
)
from collector.auth import IngestAuth, TokenFileErrors, TokenSet
from collector.decode import SIGNALS
from collector.intake import Intake
from collector.queue import DurableQueue, QueueLimits
from collector.telemetry import CollectorMetrics
from slo import evaluator, history
from slo import spec as slo_spec
from slo.completeness import Completeness
from slo.counts_cache import CountsCache
from slo.exposition import SloMetrics
from slo.model import Slo
from sloscope import secrets, tls
from sloscope.demo_webhook import WebhookLog
from sloscope.settings import Settings, external_url
from store import StoreUnavailable, migrations, open_backend, service_map
from store.otlp_writer import OtlpWriter
from store.sql import queries
from ui import api
from ui.api_admin import AdminHooks
from ui.auth import AuthConfig, Authenticator, parse_networks
from ui.scoping import SloCatalog
from ui.users import UsersError, load_users, users_from_text

log = logging.getLogger("sloscope")

#: Seconds between service map roll-up passes (store/service_map.py); the first pass waits one
#: interval too, so that a write-ahead log replayed at start-up is in the store before it.
SERVICE_MAP_INTERVAL_S = 30.0
#: "No data" results kept for the history while the store is down (a day of 10 SLOs, minute by minute).
_UNRECORDED_MAX = 14_400
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
    """The alerting leader's lease with a ClickHouse server: one and a half evaluation intervals.

    The leader beats once per evaluation, so the lease must outlive the interval between two (half an
    interval of room for a late or slow cycle), or every evaluator would find the leader's lease
    expired at each cycle and lead too. It must also end before a follower's second evaluation after
    the leader's last beat: a crashed leader holds pages and resolves back until it expires, so a
    follower takes over within two intervals (a lease of exactly two would be found live, by a few
    seconds, at that evaluation, and expire only at the third)."""
    return slo_interval_s * 3 // 2


def exclusive_evaluator(settings: Settings) -> bool:
    """On the embedded store only this process can hold the data directory, so no other evaluator can
    be running: this one leads at once, even over a lease a crashed predecessor left."""
    return not settings.clickhouse_url


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


def load_ingest_tokens(path: str) -> TokenSet | None:
    """The ingest tokens of ``path`` (None: ingest authentication is off); StartupError listing
    every problem of the file."""
    if not path:
        return None
    try:
        return TokenSet.load(path)
    except TokenFileErrors as exc:
        errors = "\n  ".join(str(e) for e in exc.errors)
        raise StartupError(f"the ingest tokens file has errors (ingest_tokens_file):\n  {errors}") from None


def ui_authenticator(settings: Settings) -> Authenticator:
    """The users of the web UI and the API, and how they sign in (``ui/auth.py``); StartupError
    listing every problem of the users document."""
    try:
        if settings.users_file:
            users = load_users(settings.users_file)
        else:
            users = users_from_text(settings.users, "SLOSCOPE_USERS") if settings.users else {}
    except UsersError as exc:
        source = "users_file" if settings.users_file else "SLOSCOPE_USERS"
        errors = "\n  ".join(str(e) for e in exc.errors)
        raise StartupError(f"the users have errors ({source}):\n  {errors}") from None
    config = AuthConfig(
        users=users,
        session_secret=settings.session_secret.encode(),
        session_max_age_s=settings.session_max_age,
        proxy_header=settings.auth_proxy_header,
        proxy_trusted=parse_networks(settings.auth_proxy_trusted, "auth_proxy_trusted"),
        proxy_default_role=settings.auth_proxy_default_role,
        trusted_proxies=parse_networks(settings.trusted_proxies, "trusted_proxies"),
        metrics_auth=settings.metrics_auth,
    )
    if config.enabled and not settings.session_secret:
        log.warning(
            "no session_secret_file or SLOSCOPE_SESSION_SECRET: login sessions are signed with a random "
            "secret of this process, so a restart signs everyone out and UI replicas cannot share them"
        )
    return Authenticator(config)


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


def demo_tls(files: tls.TlsFiles) -> dict[str, object]:
    """Exporter factories for the demo that verify this server by its own certificate file (the
    certificate is the trust anchor: tls.trusting_session)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # certificate_file too: requests would otherwise add its own CA bundle to the session's trust.
    ca, timeout = str(files.cert_file), 3.0  # the demo's own exporters' timeout (sloscope/demo.py)

    def options() -> dict[str, Any]:  # a session per exporter: they are shut down one by one
        return {"certificate_file": ca, "timeout": timeout, "session": tls.trusting_session(files.cert_file)}

    return {
        "span_exporter_factory": lambda url: OTLPSpanExporter(endpoint=url, **options()),
        "log_exporter_factory": lambda url: OTLPLogExporter(endpoint=url, **options()),
        "metric_exporter_factory": lambda url: OTLPMetricExporter(endpoint=url, **options()),
    }


class SloscopeServer:
    """Everything ``sloscope serve`` runs, started and stopped in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Only the roles that answer for SLOs read their specs and the notification policy.
        self.slos = load_slos(settings.slos) if settings.evaluates or settings.serves_ui else []
        #: The SLOs the UI and the API answer for; an admin's reload replaces them (reload_slos).
        self.slo_catalog = SloCatalog(self.slos)
        #: The UI's and the API's users (None in roles without the UI).
        self.ui_auth = ui_authenticator(settings) if settings.serves_ui else None
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics.create(self.registry) if settings.receives else None
        #: Ingest authentication of the receivers; None when off (no ingest_tokens_file).
        self.ingest_auth: IngestAuth | None = None
        if self.metrics is not None:
            tokens = load_ingest_tokens(settings.ingest_tokens_file)
            if tokens is not None:
                self.ingest_auth = IngestAuth(tokens, self.metrics, settings.ingest_auth_header)
        self.slo_counts = CountsCache()  # the schedule reads only the newest minutes of each SLO
        self.slo_metrics = SloMetrics()
        #: The "no data" rule: store unreachable, recovering, or this process's ingest behind.
        self.completeness = Completeness(
            recovery_s=settings.slo_recovery_s, oldest_unstored=self._oldest_unstored
        )
        #: "No data" results of cycles whose history the store could not take, written once it can.
        self._unrecorded: list[evaluator.InstanceResult] = []
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
        #: The base of every absolute link this server makes (settings.external_url): with the
        #: configured port until ``serve`` binds it, then with the bound one (api_port 0).
        self._policy_url = self.policy.external_url
        self.external_url = external_url(settings, policy_url=self._policy_url)
        self.policy = replace(self.policy, external_url=self.external_url)
        # Before anything can log or fail with them: the store's password, the receivers' secrets.
        secrets.register(secrets.collect(settings, self.policy))
        secrets.register([settings.session_secret] if settings.session_secret else [])
        #: The TLS files when TLS is on (files checked by settings.load; read again when serving).
        self.tls = tls.enabled(settings)
        self.backend = open_backend(
            settings.data_dir,
            settings.clickhouse_url,
            settings.insert_parallelism,
            user=settings.clickhouse_user,
            password=settings.clickhouse_password,
        )
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
        #: The receivers' memory bound (collector/admission.py); None in roles without receivers.
        self.admission: Admission | None = None
        if settings.receives:
            assert self.metrics is not None
            writer = OtlpWriter(self.backend, settings.correlation_keys)
            limits = QueueLimits(
                max_batch_rows=settings.batch_rows,
                max_batch_delay=settings.batch_delay,
                max_queue_bytes=settings.max_queue_bytes,
                max_batch_bytes=flush_batch_bytes(settings.max_memory_bytes, read_rss()),  # the bound's share
                max_wal_bytes=settings.max_wal_bytes,
                min_free_bytes=settings.min_free_disk_bytes,
                parallelism=settings.insert_parallelism,
                dedup_window=dedup.DEFAULT_CAPACITY,  # a client's retry after a lost answer: logged once
            )
            # Per process: each collector has its own data directory and replays only its own log.
            wal_root = settings.data_dir / "wal"
            self.queues = {s: DurableQueue(s, wal_root / s, writer, self.metrics, limits) for s in SIGNALS}
            # The embedded engine's memory is this process's: it can be asked to give freed pages back.
            self.admission = Admission(
                AdmissionLimits(settings.max_memory_bytes, settings.max_inflight_bytes),
                self.registry,
                release_memory=None if settings.clickhouse_url else self._release_engine_memory,
                backlog_full=self._backlog_full,
            )
        self.alerting: Alerting | None = None
        if settings.evaluates:
            self.alerting = Alerting(
                self.backend,
                self.policy,
                self.registry,
                lease_ttl_s=lease_ttl_s(settings.slo_interval),
                exclusive=exclusive_evaluator(settings),
            )
        if settings.role == "evaluator" and not self.slos:
            log.warning("role evaluator without SLOs (slos): only the service map roll-up runs")
        self._servers: list[_Server] = []
        #: The API port's application, once serving.
        self.api_app: object | None = None
        self.otlp_url = self.api_url = self.zipkin_url = self.otlp_grpc_address = ""
        self._grpc: grpc.aio.Server | None = None
        self._demo = None
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler_started = False  # readiness: a schedule that started and then stopped
        self._stop_roll_up = threading.Event()
        self._roll_up_thread = threading.Thread(target=self._roll_up_loop, name="service-map", daemon=True)

    def reload_slos(self) -> list[Slo]:
        """Read the SLO specs again (``POST /api/v1/admin/slos/reload``) and evaluate and show the new
        ones from now on. ValueError listing the problems if they have any; the old SLOs stay."""
        try:
            slos = load_slos(self.settings.slos)
        except StartupError as exc:
            raise ValueError(str(exc)) from None
        self.slos = slos
        self.slo_catalog.replace(slos)
        log.info("SLO specs reloaded", extra={"slos": len(slos)})
        if self._servers:
            self._start_scheduler()  # the first SLOs of a server that started without any
        return slos

    def ingest_token_list(self) -> list[dict[str, str]]:
        """Name and tenant of each ingest token (``GET /api/v1/admin/tokens``); never the digests."""
        tokens = self.ingest_auth.tokens if self.ingest_auth is not None else None
        if tokens is None:
            # A UI without receivers reads the same tokens file, to list it.
            tokens = load_ingest_tokens(self.settings.ingest_tokens_file) if self.settings.ingest_tokens_file else None
        if tokens is None:
            return []
        return [{"name": t.name, "tenant": t.tenant} for t in tokens.tokens]

    def _release_engine_memory(self) -> None:
        self.backend.command(queries.RELEASE_MEMORY)

    def _backlog_full(self, signal: str, size: int) -> str | None:
        # The queue's own check (DurableQueue.submit) would refuse a request of ``size`` bytes now:
        # say so before it is read and decoded. Not while the store takes nothing (the log then
        # rides the outage out up to its own cap, docs/reliability/wal-and-outage.md), and an empty
        # queue takes any one request.
        queue = self.queues.get(signal)
        if queue is None or not queue.healthy or not queue.pending_bytes:
            return None
        if queue.pending_bytes + size <= queue.limits.max_queue_bytes:
            return None
        return f"{signal} queue holds {queue.pending_bytes} bytes not yet stored"

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
        at_s = (int(time.time()) if at_s is None else at_s) // 60 * 60
        try:
            reason = self.completeness.reason()
            if reason:
                results = evaluator.no_data(self.slos, at_s, reason)
            else:
                results = evaluator.evaluate(self.backend, self.slos, at_s, self.slo_counts)
        except StoreUnavailable as exc:
            self.completeness.store_unreachable()
            results = evaluator.no_data(self.slos, at_s, f"store unavailable: {str(exc)[:200]}")
        except Exception:
            log.exception("SLO evaluation failed")
            return
        if any(r.no_data for r in results):
            # Counts cached from a store that missed data would be reused for up to an hour: the
            # first evaluation with trustworthy data reads every window in full.
            self.slo_counts = CountsCache()
            log.warning("SLO evaluations report no data", extra={"reason": results[0].no_data})
        try:
            history.record(self.backend, [*self._unrecorded, *results])
            self._unrecorded = []
        except StoreUnavailable:
            self._unrecorded = [*self._unrecorded, *[r for r in results if r.no_data]][-_UNRECORDED_MAX:]
        except Exception:
            log.exception("SLO evaluation history not written")
        try:
            self.alerting.process(self.slos, results, at_s)
        except StoreUnavailable:
            log.exception("alerting skipped: store unavailable")
        except Exception:
            log.exception("alerting failed")
        self.slo_metrics.update(results)
        for result in results:
            if result.error:
                log.warning("SLO not evaluated", extra={"slo": result.slo.name, "error": result.error})

    def _oldest_unstored(self) -> float | None:
        """When this process's oldest acknowledged but unstored data was acknowledged (None: none)."""
        times = [t for q in self.queues.values() if (t := q.unflushed_since()) is not None]
        return min(times, default=None)

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
        write, an evaluator its schedule and roll-up running. Except role ``collector``: its job is
        to take data durably, so while its write-ahead logs have room a store outage does not make
        it unready (a load balancer would otherwise send the data nowhere); a full log does."""
        problems = []
        try:
            self.backend.query_arrow(queries.PING)
            pending = migrations.pending(self.backend)
            if pending:
                problems.append(f"migrations not applied: {pending}")
        except Exception as exc:
            problems.append(f"store unreachable: {secrets.registry.redact(str(exc))[:300]}")
        if self.settings.role == "collector":
            problems = [p for q in self.queues.values() for p in q.problems(store=False)]
        else:
            problems += [p for q in self.queues.values() for p in q.problems()]
        if self.settings.evaluates and not self._stop_roll_up.is_set():
            if self._scheduler_started and not self._scheduler.running:
                problems.append("SLO evaluation schedule stopped")
            if not self._roll_up_thread.is_alive():
                problems.append("service map roll-up not running")
        return problems

    def _uvicorn(self, app: object, client_auth: bool = False) -> _Server:
        """A server for ``app``; with TLS on it speaks only TLS, and with ``client_auth`` (the ingest
        ports) requires a client certificate when ``tls_client_ca_file`` is set."""
        try:
            context = None if self.tls is None else tls.server_context(self.tls, client_auth=client_auth)
        except tls.TlsError as exc:  # the files changed since the settings were checked
            raise StartupError(str(exc)) from None
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            # The client address and scheme are the peer's: X-Forwarded-* are believed only from
            # trusted_proxies, by ui/auth.py (uvicorn would believe them from 127.0.0.1).
            proxy_headers=False,
            ssl_context_factory=None if context is None else lambda _config, _default: context,
        )
        return _Server(config)

    def _use_external_url(self, api_port: int) -> None:
        """The external URL with the API port actually bound (they differ when api_port is 0),
        for the links made from now on; before the schedule starts, so every notification has it."""
        url = external_url(self.settings, api_port, self._policy_url)
        if url == self.external_url:
            return
        self.external_url = url
        self.policy = replace(self.policy, external_url=url)
        if self.alerting is not None:
            self.alerting.use_external_url(url)

    async def serve(self, handle_signals: bool = True) -> None:
        """Run until SIGINT or SIGTERM (or ``request_stop``); ``close`` then drains and closes.

        Only the role's listeners open: a collector has no web UI, the evaluator and the UI no
        receivers (their ports stay closed, so a misrouted exporter fails loudly)."""
        host = self.settings.host
        scheme = "http" if self.tls is None else "https"
        listeners: list[tuple[object, socket.socket]] = []
        api_socket = _listen(host, self.settings.api_port, "api_port")
        self.api_url = f"{scheme}://{host}:{api_socket.getsockname()[1]}"
        self._use_external_url(api_socket.getsockname()[1])
        if self.settings.receives:
            otlp_socket = _listen(host, self.settings.otlp_http_port, "otlp_http_port")
            zipkin_socket = _listen(host, self.settings.zipkin_port, "zipkin_port")
            self.otlp_url = f"{scheme}://{host}:{otlp_socket.getsockname()[1]}"
            self.zipkin_url = f"{scheme}://{host}:{zipkin_socket.getsockname()[1]}"
            for queue in self.queues.values():
                queue.start()
            assert self.metrics is not None
            assert self.admission is not None
            self.admission.start()
            intake = Intake(
                self.queues, self.metrics, admission=self.admission, retention_days=self.settings.retention_days
            )
            # grpc.aio binds to the running loop, and stops a server that is garbage collected: keep it.
            auth = self.ingest_auth
            self._grpc = otlp_grpc.create_server(intake, self.settings.max_body_bytes, auth=auth)
            try:
                credentials = None if self.tls is None else tls.grpc_credentials(self.tls)
                grpc_port = await otlp_grpc.start(self._grpc, host, self.settings.otlp_grpc_port, credentials)
            except OSError as exc:
                raise StartupError(f"{exc} (otlp_grpc_port)") from exc
            self.otlp_grpc_address = f"{host}:{grpc_port}"
            body_timeout = self.settings.body_read_timeout
            otlp_limits = otlp_http.HttpLimits(
                max_body_bytes=self.settings.max_body_bytes, body_timeout_seconds=body_timeout
            )
            otlp_app = otlp_http.create_app(intake, otlp_limits, auth=auth)
            zipkin_app = zipkin.create_app(
                intake, self.settings.max_body_bytes, auth=auth, body_timeout_seconds=body_timeout
            )
            # The memory bound, checked before a body is read (collector/admission.py).
            requests = self.metrics.requests
            otlp_app = ReadAdmission(
                otlp_app, self.admission, otlp_refusal, requests, "http", body_timeout=body_timeout
            )
            zipkin_app = ReadAdmission(
                zipkin_app, self.admission, text_refusal, requests, "zipkin", body_timeout=body_timeout
            )
            listeners += [(otlp_app, otlp_socket), (zipkin_app, zipkin_socket)]
        if self.settings.evaluates:
            if not self._roll_up_thread.is_alive() and not self._stop_roll_up.is_set():
                self._roll_up_thread.start()
            self._start_scheduler()
        if self.settings.serves_ui:
            api_app = api.create_app(
                self.backend,
                self.registry,
                self.readiness,
                self.slo_catalog,
                self.external_url,
                auth=self.ui_auth,
                admin=AdminHooks(reload_slos=self.reload_slos, tokens=self.ingest_token_list),
            )
        else:
            api_app = api.create_ops_app(self.registry, self.readiness)
        self.api_app = api_app
        listeners.insert(0, (api_app, api_socket))
        # The API and UI port (first) is server-TLS only: browsers carry no client certificates.
        self._servers = [self._uvicorn(app, client_auth=i > 0) for i, (app, _) in enumerate(listeners)]
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
        if self.settings.demo:
            self._start_demo()
        # Last, so that the address is the last line a person sees after `make run`.
        print(self._banner(), flush=True)
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
                f"OTLP/gRPC at {'' if self.tls is None else 'https://'}{self.otlp_grpc_address}",
                f"OTLP/HTTP at {self.otlp_url}",
                f"Zipkin at {self.zipkin_url}/api/v2/spans",
            ]
            if self.ingest_auth is not None:
                count, header = len(self.ingest_auth.tokens), self.ingest_auth.header
                parts.append(f"ingest auth on ({count} token{'s' if count != 1 else ''}, header {header})")
        if self.settings.role == "evaluator":
            parts.append(f"evaluating {len(self.slos)} SLOs")
        if self.tls is not None:
            parts.append("TLS on" + (", client certificates required for ingest" if self.tls.mutual else ""))
        parts.append(f"store: {self.settings.store_label}")
        role = "" if self.settings.role == "all" else f" (role {self.settings.role})"
        banner = f"sloscope is up{role}: " + "  ".join(parts)
        if self.settings.serves_ui:
            banner += f"\n\n    Open {self.api_url}/ in a browser  (Ctrl-C stops)\n"
        return banner

    def _start_demo(self) -> None:
        from sloscope.demo import Demo, DemoConfig

        endpoint = self.otlp_url
        if self.tls is None:
            self._demo = Demo(DemoConfig(endpoint=endpoint, rate=self.settings.demo_rate))
        else:
            # Over TLS the demo trusts this server's own certificate file (settings refuse the demo
            # with mutual TLS: it has no client certificate): see docs/security/tls-and-secrets.md.
            self._demo = Demo(
                DemoConfig(endpoint=endpoint, rate=self.settings.demo_rate), **demo_tls(self.tls)
            )
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
        if self.admission is not None:
            self.admission.close()  # its purges use the store
        self.backend.close()


def run(settings: Settings) -> None:
    """``sloscope serve``: start everything and block until stopped."""
    server = SloscopeServer(settings)
    try:
        asyncio.run(server.serve())
    finally:
        server.close()
