"""Built-in traffic generator: realistic traces, logs and metrics from a few fake services.

Everything goes through the real OpenTelemetry Python SDK and its OTLP/HTTP protobuf exporters, so
what sloscope receives is byte-for-byte what an instrumented application would send.

    python -m sloscope.demo --endpoint http://127.0.0.1:4318 --rate 5 --duration 60
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import baggage, context, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# Each factory gets the full per-signal URL (e.g. http://host:4318/v1/traces) and is called once per
# service, so tests can hand back a shared in-memory exporter instead.
SpanExporterFactory = Callable[[str], SpanExporter]
LogExporterFactory = Callable[[str], LogRecordExporter]
MetricExporterFactory = Callable[[str], MetricExporter]

# A dead collector should not make stop() hang for the SDK's default 10 s per export attempt.
_EXPORT_TIMEOUT_S = 3.0
_SCOPE = "sloscope.demo"
SERVICES = {
    "gateway": "1.8.2",
    "orders": "2.3.0",
    "payments": "1.1.4",
    "inventory": "3.0.1",
    "email": "0.9.7",
}
ROUTES = {"/api/checkout": 0.5, "/api/products/{id}": 0.35, "/api/cart": 0.15}
_SKUS = [f"SKU-{n:04d}" for n in (17, 42, 101, 256, 512, 777, 1024, 4096)]
_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
# traceparent carries the trace, baggage carries correlation.id so every hop can log it.
_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
_LEVELS = {"INFO": SeverityNumber.INFO, "WARN": SeverityNumber.WARN, "ERROR": SeverityNumber.ERROR}


class PaymentDeclinedError(Exception):
    """Raised (and recorded on the span) when the simulated card processor fails."""


@dataclass
class DemoConfig:
    """Settings for the traffic generator."""

    endpoint: str = "http://127.0.0.1:4318"
    rate: float = 5.0  # user requests (traces) per second, across all services
    duration: float | None = None  # seconds; None = until stop() is called
    seed: int | None = None
    export_interval_millis: int = 5000
    #: The healthy shop's share of failing charges: 0.2 % burns the demo SLOs' budgets at 0.2 or less,
    #: far from any alert; at 3 % every SLO paged in the first minute, before any fault.
    payment_error_rate: float = 0.002
    #: A payments fault on a schedule, so that an SLO burns and an incident opens within minutes of
    #: `make run`: from ``fault_start_s`` after the start, every ``fault_every_s``, for ``fault_for_s``
    #: seconds, ``fault_error_rate`` of the charges fail. ``fault_for_s`` 0 turns it off. 90 % makes the
    #: availability SLOs' fast-burn page (1h and 5m over 14.4) fire in every round, not only the first:
    #: once the demo has run an hour, its hour holds 16 fault minutes, in which 68 % of the orders
    #: fail, a burn of 18 (at 60 %: 12, no page). tests/test_demo_unit.py holds the whole timeline.
    fault_start_s: float = 120.0
    fault_every_s: float = 900.0
    fault_for_s: float = 240.0
    fault_error_rate: float = 0.9

    def payment_error_rate_at(self, elapsed_s: float) -> float:
        """The share of failing charges ``elapsed_s`` seconds after the demo started."""
        since = elapsed_s - self.fault_start_s
        if self.fault_for_s > 0 and since >= 0 and since % self.fault_every_s < self.fault_for_s:
            return self.fault_error_rate
        return self.payment_error_rate


def _otlp_spans(url: str) -> SpanExporter:
    return OTLPSpanExporter(endpoint=url, timeout=_EXPORT_TIMEOUT_S)


def _otlp_logs(url: str) -> LogRecordExporter:
    return OTLPLogExporter(endpoint=url, timeout=_EXPORT_TIMEOUT_S)


def _otlp_metrics(url: str) -> MetricExporter:
    return OTLPMetricExporter(endpoint=url, timeout=_EXPORT_TIMEOUT_S)


class _Service:
    """One simulated service with private providers, so its telemetry carries its own Resource."""

    def __init__(self, name: str, host: str, demo: Demo) -> None:
        self.name, self.depth = name, 0
        base, cfg = demo.config.endpoint.rstrip("/"), demo.config
        resource = Resource.create(
            {
                "service.name": name,
                "service.version": SERVICES[name],
                # Both the classic and the current semconv key, so either kind of query finds the demo.
                "deployment.environment": "demo",
                "deployment.environment.name": "demo",
                "host.name": host,
            }
        )
        # shutdown_on_exit=False: stop() owns the lifecycle, and atexit hooks would pile up per Demo.
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(demo._span_factory(f"{base}/v1/traces"), schedule_delay_millis=500)
        )
        self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(demo._log_factory(f"{base}/v1/logs"), schedule_delay_millis=500)
        )
        reader = PeriodicExportingMetricReader(
            demo._metric_factory(f"{base}/v1/metrics"), export_interval_millis=cfg.export_interval_millis
        )
        self.meter_provider = MeterProvider([reader], resource=resource, shutdown_on_exit=False)
        self.tracer = self.tracer_provider.get_tracer(_SCOPE, SERVICES[name])
        self.logger = self.logger_provider.get_logger(_SCOPE, SERVICES[name])
        meter = self.meter_provider.get_meter(_SCOPE, SERVICES[name])
        self.requests = meter.create_counter("demo.requests", "{request}", "Requests handled")
        self.queue_depth = meter.create_up_down_counter("demo.queue.depth", "{item}", "Work waiting in queue")
        self.duration = meter.create_histogram(
            "http.server.request.duration",
            "s",
            "Server request duration",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
        )

    def providers(self) -> tuple[TracerProvider, LoggerProvider, MeterProvider]:
        return self.tracer_provider, self.logger_provider, self.meter_provider


class Demo:
    """Generates user traffic through gateway -> orders -> {inventory, payments, email}."""

    def __init__(
        self,
        config: DemoConfig,
        span_exporter_factory: SpanExporterFactory = _otlp_spans,
        log_exporter_factory: LogExporterFactory = _otlp_logs,
        metric_exporter_factory: MetricExporterFactory = _otlp_metrics,
    ) -> None:
        """Build one set of providers per service; exporter factories default to OTLP/HTTP protobuf."""
        if config.rate <= 0:
            raise ValueError("rate must be > 0")
        self.config = config
        self.requests_sent = 0
        self._span_factory, self._log_factory = span_exporter_factory, log_exporter_factory
        self._metric_factory = metric_exporter_factory
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()  # run_once may race between the worker thread and callers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._started = time.monotonic()  # the clock of the payments fault schedule
        self._svc = {n: _Service(n, f"demo-{n}-{self._rng.randrange(16**6):06x}", self) for n in SERVICES}

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Generate traffic at config.rate in a background daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="sloscope-demo", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the background thread is generating traffic."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the generator ends (duration elapsed or stopped); return True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def flush(self) -> None:
        """Export every span, log record and metric recorded so far. The batch processors drop spans
        once 2048 wait, which only a caller of run_once in a tight loop (a test) can reach."""
        for svc in self._svc.values():
            for provider in svc.providers():
                provider.force_flush()

    def stop(self) -> None:
        """Stop generating, then flush and shut down every provider. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._stopped:
            return
        self._stopped = True
        providers = [p for svc in self._svc.values() for p in svc.providers()]
        # In parallel so a dead collector costs one export timeout, not one per provider; and flush
        # everything before shutting anything down because factories may share one exporter.
        with ThreadPoolExecutor(len(providers)) as pool:
            list(pool.map(lambda p: p.force_flush(), providers))
            list(pool.map(lambda p: p.shutdown(), providers))

    def _loop(self) -> None:
        deadline = None if self.config.duration is None else time.monotonic() + self.config.duration
        next_at = time.monotonic()
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.run_once()
            with self._lock:  # the rng is shared with callers of run_once
                next_at += self._rng.expovariate(self.config.rate)  # Poisson arrivals look like real users
            wait = next_at - time.monotonic()
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            self._stop.wait(max(0.0, wait))

    # ---- one request -----------------------------------------------------------------------------

    def run_once(self, route: str | None = None) -> str:
        """Emit one user request (optionally for a given gateway route) and return its trace id hex."""
        with self._lock:
            route = route or self._rng.choices(list(ROUTES), weights=list(ROUTES.values()))[0]
            trace_id = self._gateway(route, str(uuid.UUID(int=self._rng.getrandbits(128), version=4)))
            self.requests_sent += 1
            return trace_id

    def _ms(self, median: float, sigma: float = 0.5) -> int:
        """A lognormal duration in ns: mostly near the median, with a realistic long tail."""
        return int(self._rng.lognormvariate(math.log(median), sigma) * 1e6)

    @contextmanager
    def _server(
        self,
        svc: _Service,
        name: str,
        ctx: Context,
        start: int,
        attrs: dict,
        kind: SpanKind = SpanKind.SERVER,
    ) -> Iterator[Span]:
        """Start an inbound span under ctx and make it current, so logs pick up its trace context."""
        span = svc.tracer.start_span(name, context=ctx, kind=kind, start_time=start, attributes=attrs)
        token = context.attach(trace.set_span_in_context(span, ctx))
        try:
            yield span
        finally:
            context.detach(token)

    def _finish(
        self,
        svc: _Service,
        span: Span,
        route: str,
        status: int,
        start: int,
        end: int,
        method: str | None = "GET",
    ) -> None:
        """End a handler span and record its metrics; method=None marks a non-HTTP (messaging) handler."""
        http = {"http.request.method": method, "http.response.status_code": status} if method else {}
        if method:
            span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        span.end(end_time=end)
        svc.requests.add(1, {"route": route, "status": status})
        svc.duration.record((end - start) / 1e9, {"http.route": route, **http})
        # A bounded random walk reads like a real work queue on a dashboard.
        new_depth = max(0, min(50, svc.depth + self._rng.choice((-2, -1, 0, 1, 2))))
        svc.queue_depth.add(new_depth - svc.depth, {"queue": f"{svc.name}-work"})
        svc.depth = new_depth

    def _log(
        self,
        svc: _Service,
        ts: int,
        level: str,
        body: str,
        attrs: dict | None = None,
        exc: BaseException | None = None,
    ) -> None:
        cid = baggage.get_baggage("correlation.id")
        svc.logger.emit(
            timestamp=ts,
            severity_number=_LEVELS[level],
            severity_text=level,
            body=body,
            attributes={"correlation.id": str(cid), **(attrs or {})},
            exception=exc,
        )

    def _call(
        self,
        caller: _Service,
        method: str,
        target: str,
        route: str,
        start: int,
        handler: Callable[[Context, int], tuple[int, int]],
    ) -> tuple[int, int]:
        """An outbound HTTP call: CLIENT span, traceparent in a dict 'header' carrier, remote handler."""
        attrs = {
            "http.request.method": method,
            "server.address": target,
            "server.port": 8080,
            "url.full": f"http://{target}:8080{route}",
        }
        client = caller.tracer.start_span(
            f"{method} {route}", kind=SpanKind.CLIENT, start_time=start, attributes=attrs
        )
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(client))
        net = self._ms(0.4)
        end, status = handler(_PROPAGATOR.extract(headers), start + net)
        client.set_attribute("http.response.status_code", status)
        if status >= 500:
            client.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        client.end(end_time=end + net)
        return end + net, status

    def _gateway(self, route: str, cid: str) -> str:
        svc, t0 = self._svc["gateway"], time.time_ns()
        path = route.replace("{id}", str(self._rng.randint(1, 500)))
        ctx = baggage.set_baggage("correlation.id", cid, Context())
        attrs = {
            "http.request.method": "GET",
            "http.route": route,
            "url.path": path,
            "url.scheme": "https",
            "correlation.id": cid,
            "user.authenticated": self._rng.random() < 0.7,
            "client.address": f"203.0.113.{self._rng.randint(1, 254)}",
        }
        with self._server(svc, f"GET {route}", ctx, t0, attrs) as span:
            t = t0 + self._ms(1.5)  # auth and routing before the first upstream call
            if route == "/api/checkout":
                t, status = self._call(svc, "POST", "orders", "/orders", t, self._orders_checkout)
            elif route == "/api/cart":
                t, status = self._call(svc, "GET", "orders", "/cart", t, self._orders_cart)
            else:
                t, status = self._call(svc, "GET", "inventory", "/stock/{sku}", t, self._inventory_stock)
            t += self._ms(0.8)
            level = "ERROR" if status >= 500 else "WARN" if status >= 400 else "INFO"
            self._log(
                svc,
                t,
                level,
                f"GET {path} {status}",
                {"http.response.status_code": status, "duration_ms": round((t - t0) / 1e6, 3)},
            )
            self._finish(svc, span, route, status, t0, t)
            return format(span.get_span_context().trace_id, "032x")

    def _orders_checkout(self, ctx: Context, t0: int) -> tuple[int, int]:
        svc = self._svc["orders"]
        skus = self._rng.sample(_SKUS, self._rng.randint(1, 3))
        amount = round(self._rng.uniform(5, 250), 2)
        attrs = {
            "http.request.method": "POST",
            "http.route": "/orders",
            "order.skus": skus,
            "order.items": len(skus),
            "order.amount": amount,
        }
        with self._server(svc, "POST /orders", ctx, t0, attrs) as span:
            t = self._db(svc, "SELECT", "customers", "SELECT id, tier FROM customers WHERE id = $1", t0)
            t, status = self._call(svc, "POST", "inventory", "/reservations", t, self._inventory_reserve)
            if status < 400:
                t, status = self._call(
                    svc, "POST", "payments", "/charge", t, lambda c, s: self._payments(c, s, amount)
                )
                status = 502 if status >= 500 else status
            if status < 400:
                t = self._db(svc, "INSERT", "orders", "INSERT INTO orders (skus, amount) VALUES ($1, $2)", t)
                self._publish(svc, t, skus)
                self._log(svc, t, "INFO", "order placed", {"order.amount": amount, "order.skus": skus})
            elif status >= 500:
                self._log(svc, t, "WARN", "payment failed, order not placed", {"order.amount": amount})
            t += self._ms(1)
            self._finish(svc, span, "/orders", status, t0, t, "POST")
        return t, status

    def _orders_cart(self, ctx: Context, t0: int) -> tuple[int, int]:
        svc = self._svc["orders"]
        attrs = {"http.request.method": "GET", "http.route": "/cart"}
        with self._server(svc, "GET /cart", ctx, t0, attrs) as span:
            t = self._db(svc, "SELECT", "carts", "SELECT sku, qty FROM carts WHERE customer_id = $1", t0)
            t += self._ms(0.5)
            self._finish(svc, span, "/cart", 200, t0, t)
        return t, 200

    def _db(self, svc: _Service, op: str, table: str, query: str, start: int) -> int:
        end = start + self._ms(3, 0.8)
        span = svc.tracer.start_span(
            f"{op} {table}",
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={
                "db.system.name": "postgresql",
                "db.namespace": "shop",
                "db.operation.name": op,
                "db.collection.name": table,
                "db.query.text": query,
                "server.address": "orders-db",
                "server.port": 5432,
            },
        )
        span.end(end_time=end)
        return end

    def _inventory_stock(self, ctx: Context, t0: int) -> tuple[int, int]:
        svc = self._svc["inventory"]
        hit = self._rng.random() < 0.8
        attrs = {"http.request.method": "GET", "http.route": "/stock/{sku}", "cache.hit": hit}
        with self._server(svc, "GET /stock/{sku}", ctx, t0, attrs) as span:
            t = t0 + (self._ms(0.6) if hit else self._ms(12, 0.6))
            self._finish(svc, span, "/stock/{sku}", 200, t0, t)
        return t, 200

    def _inventory_reserve(self, ctx: Context, t0: int) -> tuple[int, int]:
        svc = self._svc["inventory"]
        attrs = {"http.request.method": "POST", "http.route": "/reservations"}
        with self._server(svc, "POST /reservations", ctx, t0, attrs) as span:
            t = t0 + self._ms(8)
            status = 409 if self._rng.random() < 0.02 else 201
            if status == 409:
                self._log(svc, t, "WARN", "reservation rejected: out of stock", {"inventory.available": 0})
            self._finish(svc, span, "/reservations", status, t0, t, "POST")
        return t, status

    def _payments(self, ctx: Context, t0: int, amount: float) -> tuple[int, int]:
        svc = self._svc["payments"]
        attrs = {
            "http.request.method": "POST",
            "http.route": "/charge",
            "payment.amount": amount,
            "payment.currency": "USD",
            "payment.method": self._rng.choice(["card", "paypal", "wallet"]),
        }
        with self._server(svc, "POST /charge", ctx, t0, attrs) as span:
            if self._rng.random() >= self.config.payment_error_rate_at(time.monotonic() - self._started):
                t, status = t0 + self._ms(45, 0.6), 200
                self._log(svc, t, "INFO", "payment authorized", {"payment.amount": amount})
            else:
                t, status = t0 + self._ms(900, 0.3), 500  # failures are usually upstream timeouts
                try:
                    raise PaymentDeclinedError("card processor timed out after 3 attempts")
                except PaymentDeclinedError as exc:
                    span.record_exception(exc, timestamp=t, escaped=True)
                    self._log(svc, t, "ERROR", "payment failed", {"retryable": True}, exc)
            self._finish(svc, span, "/charge", status, t0, t, "POST")
        return t, status

    def _publish(self, svc: _Service, start: int, skus: list[str]) -> None:
        """Hand an order.confirmed message to the email service, which consumes it asynchronously."""
        msg = {
            "messaging.system": "kafka",
            "messaging.destination.name": "order.confirmed",
            "messaging.message.id": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
        }
        producer = svc.tracer.start_span(
            "send order.confirmed",
            kind=SpanKind.PRODUCER,
            start_time=start,
            attributes={**msg, "messaging.operation.type": "send"},
        )
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(producer))
        producer.end(end_time=start + self._ms(0.7))
        self._email(_PROPAGATOR.extract(headers), start + self._ms(25, 0.8), msg, len(skus))

    def _email(self, ctx: Context, t0: int, msg: dict, items: int) -> None:
        svc = self._svc["email"]
        attrs = {
            **msg,
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": "mailers",
            "messaging.kafka.offset": self._rng.randint(10_000, 99_999),
            "email.items": items,
        }
        with self._server(svc, "process order.confirmed", ctx, t0, attrs, SpanKind.CONSUMER) as span:
            t = t0 + self._ms(60, 0.7)
            self._log(svc, t, "INFO", "order confirmation email sent", {"email.template": "order-confirmed"})
            self._finish(svc, span, "order.confirmed", 200, t0, t, None)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate demo traffic until --duration elapses or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m sloscope.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=DemoConfig.endpoint, help="OTLP/HTTP base URL")
    parser.add_argument("--rate", type=float, default=DemoConfig.rate, help="user requests per second")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: forever)")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible traffic")
    args = parser.parse_args(argv)
    demo = Demo(DemoConfig(endpoint=args.endpoint, rate=args.rate, duration=args.duration, seed=args.seed))
    print(f"sloscope demo: ~{args.rate:g} req/s to {args.endpoint} (Ctrl-C to stop)", file=sys.stderr)
    demo.start()
    try:
        while not demo.wait(0.5):  # short waits keep Ctrl-C responsive
            pass
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
    print(f"sloscope demo: sent {demo.requests_sent} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
