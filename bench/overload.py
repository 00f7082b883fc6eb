"""Overload: three times the sustainable load from the real OpenTelemetry SDK exporters; the server's
memory stays under its bound, the excess is shed with 429 / RESOURCE_EXHAUSTED and a retry delay,
and once the load drops every span the retrying clients were finally acknowledged is stored, once.

    make bench-reliability          # or: .venv/bin/python bench/overload.py --factor 3 --seconds 60

1. Starts `sloscope serve` (embedded chDB, default memory bound 1 GiB unless --max-memory-bytes)
   and samples its resident memory (/proc/<pid>/status VmRSS) ten times a second throughout.
2. Calibration (unless --sustainable): the clients export as fast as they can for
   --calibration-seconds; the sustainable rate is what the server stored per second meanwhile
   (spans flushed into the store, not merely acknowledged). The backlog then drains.
3. Overload: the clients offer --factor times that rate for --seconds. Client processes run
   threads, each with its own SDK span exporter (half OTLP/HTTP, half OTLP/gRPC) exporting numbered
   512-span batches. The exporters retry 429 / RESOURCE_EXHAUSTED themselves, waiting the server's
   Retry-After / RetryInfo; when one gives up (6 attempts) the thread calls export() again with the
   same batch, as a client that must not drop data would, until the run's deadline.
4. The load drops (no new batches); the threads finish their retries; the script waits until
   everything acknowledged is in the store, stops the server cleanly and reads the store back:
   every acknowledged span must be stored exactly once.

The batches are encoded once per thread by the SDK's own encoder and re-numbered per export
(sdk_load.PreEncoded): the encoder's ~20,000 spans/s per core could not offer three times the
server's rate from the same two cores. Transport, timeouts and retries are the SDK's.

Prints a table, appends it with the command line to docs/reliability/overload.md, and exits 1 if
an acknowledged span was lost or stored twice, or the RSS passed the bound.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import sdk_load

SERVICE = "overload"
SPANS_PER_EXPORT = 512
TRANSPORTS = {"both": "half OTLP/HTTP, half OTLP/gRPC", "http": "OTLP/HTTP", "grpc": "OTLP/gRPC"}


def client_thread(
    client: int,
    kind: str,
    otlp_url: str,
    grpc_address: str,
    rate: float,
    start_at: float,
    stop_at: float,
    give_up_at: float,
    out_path: str,
) -> None:
    """Offer ``rate`` spans/s from ``start_at`` to ``stop_at`` (wall clock); retry each batch until it
    is acknowledged or ``give_up_at``. Writes "sent N", "ok N" and "retry N" lines to ``out_path``."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    encoder = sdk_load.Encoder(client, SPANS_PER_EXPORT, SERVICE)
    exporter = sdk_load.exporter(kind, otlp_url, grpc_address, timeout=30)
    interval = SPANS_PER_EXPORT / rate if rate > 0 else 0.0
    first_at = start_at + (client * 0.618034 % 1.0) * interval  # threads spread over the interval
    with open(out_path, "w") as out:
        time.sleep(max(0.0, start_at - time.time()))
        batch = 0
        while time.time() < stop_at:
            if interval:
                # On schedule, or at once when retries put this thread behind (the load is offered).
                time.sleep(max(0.0, first_at + batch * interval - time.time()))
                if time.time() >= stop_at:
                    break
            request = encoder.batch(batch)
            out.write(f"sent {batch}\n")
            while True:
                if exporter.export(request) is SpanExportResult.SUCCESS:
                    out.write(f"ok {batch}\n")
                    break
                out.write(f"retry {batch}\n")  # the SDK gave up (6 attempts or its timeout)
                if time.time() >= give_up_at:
                    break
            out.flush()
            batch += 1
    exporter.shutdown()


def client_process(
    first_client: int,
    threads: int,
    otlp_url: str,
    grpc_address: str,
    rate: float,
    start_at: float,
    stop_at: float,
    give_up_at: float,
    out_prefix: str,
    transport: str,
) -> None:
    """``threads`` client threads numbered from ``first_client``, each offering ``rate``, over
    ``transport`` (http, grpc, or both: every second one over gRPC)."""
    sdk_load.install_pre_encoding()
    workers = [
        threading.Thread(
            target=client_thread,
            args=(
                client,
                transport if transport != "both" else "grpc" if client % 2 else "http",
                otlp_url,
                grpc_address,
                rate,
                start_at,
                stop_at,
                give_up_at,
                f"{out_prefix}-{client - first_client}.log",
            ),
        )
        for client in range(first_client, first_client + threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


class RssSampler(threading.Thread):
    """The server's VmRSS ten times a second; peaks per phase."""

    def __init__(self, server: sdk_load.ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.phase = "rest"
        self.peaks: dict[str, int] = {}
        self.samples: list[tuple[float, str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            rss = self.server.rss()
            if rss:
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
                self.samples.append((time.monotonic(), self.phase, rss))


class Clients:
    """Client processes running one phase of load."""

    def __init__(
        self, work: Path, server: sdk_load.ServerProcess, procs: int, threads: int, tag: str, transport: str
    ) -> None:
        self.work, self.server, self.procs, self.threads, self.tag = work, server, procs, threads, tag
        self.transport = transport
        self.processes: list[multiprocessing.Process] = []

    def start(self, rate: float, seconds: float, first_client: int, give_up_after: float) -> None:
        ctx = multiprocessing.get_context("spawn")  # grpc must not be inherited across fork
        start_at = time.time() + 8.0  # room for the processes to import and encode their templates
        self.start_at, self.stop_at = start_at, start_at + seconds
        per_thread = rate / (self.procs * self.threads) if rate > 0 else 0.0
        for p in range(self.procs):
            proc = ctx.Process(
                target=client_process,
                args=(
                    first_client + p * self.threads,
                    self.threads,
                    self.server.otlp,
                    self.server.grpc,
                    per_thread,
                    start_at,
                    self.stop_at,
                    self.stop_at + give_up_after,
                    str(self.work / f"{self.tag}-{p}"),
                    self.transport,
                ),
                daemon=True,
            )
            proc.start()
            self.processes.append(proc)

    def join(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            proc.join(max(0.1, deadline - time.monotonic()))
        stuck = [proc.pid for proc in self.processes if proc.is_alive()]
        for proc in self.processes:
            if proc.is_alive():
                proc.kill()
        return stuck

    def results(self, first_client: int) -> dict[str, object]:
        sent: set[int] = set()
        acked: set[int] = set()
        retries = 0
        for p in range(self.procs):
            for n in range(self.threads):
                client = first_client + p * self.threads + n
                path = self.work / f"{self.tag}-{p}-{n}.log"
                for line in path.read_text().splitlines() if path.exists() else []:
                    word, _, batch = line.partition(" ")
                    if word == "sent":
                        sent.add(sdk_load.batch_key(client, int(batch)))
                    elif word == "ok":
                        acked.add(sdk_load.batch_key(client, int(batch)))
                    elif word == "retry":
                        retries += 1
        return {"sent": sent, "acked": acked, "retries": retries}


def flushed(server: sdk_load.ServerProcess) -> float:
    return sdk_load.metric_sum(server.metrics(), "sloscope_flushed_items_total", signal="traces")


def queued(server: sdk_load.ServerProcess) -> float:
    return sdk_load.metric_sum(server.metrics(), "sloscope_queue_rows", signal="traces")


def wait_for(predicate, timeout: float, what: str) -> float:  # noqa: ANN001
    """Poll until ``predicate()``; the seconds it took. RuntimeError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)
    return time.monotonic() - started


def shed_counts(metrics: dict) -> dict[str, float]:
    return {
        "http_429": sdk_load.metric_sum(metrics, "sloscope_export_requests_total", transport="http", code="429"),
        "grpc_exhausted": sdk_load.metric_sum(
            metrics, "sloscope_export_requests_total", transport="grpc", code="RESOURCE_EXHAUSTED"
        ),
        "memory": sdk_load.metric_sum(metrics, "sloscope_admission_refused_total", reason="memory"),
        "inflight": sdk_load.metric_sum(metrics, "sloscope_admission_refused_total", reason="inflight"),
        "queue_full": sdk_load.metric_sum(metrics, "sloscope_admission_refused_total", reason="queue_full"),
        "queue_full_spans": sdk_load.metric_sum(metrics, "sloscope_items_rejected_total", reason="queue_full"),
        "ok": sdk_load.metric_sum(metrics, "sloscope_export_requests_total", code="200")
        + sdk_load.metric_sum(metrics, "sloscope_export_requests_total", code="OK"),
        "requests": sdk_load.metric_sum(metrics, "sloscope_export_requests_total"),
        "duplicates": sdk_load.metric_sum(metrics, "sloscope_duplicate_requests_total"),
        "purges": sdk_load.metric_sum(metrics, "sloscope_memory_purges_total"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=3.0, help="offered load / sustainable load")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the overload")
    parser.add_argument("--sustainable", type=float, help="spans/s the server sustains (skip calibration)")
    parser.add_argument("--calibration-seconds", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--threads", type=int, default=32, help="exporter threads per client process")
    parser.add_argument(
        "--calibration-threads",
        type=int,
        help="exporter threads per process in the calibration (default: --threads, so that the clients "
        "take the same share of the cores as in the overload)",
    )
    parser.add_argument("--transport", choices=["both", "http", "grpc"], default="both")
    parser.add_argument("--max-memory-bytes", type=int, help="the server's bound (default: its own, 1 GiB)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="give up after this long")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    parser.add_argument("--rss-log", type=Path, help="write every RSS sample (seconds, phase, bytes) here")
    parser.add_argument("--output", type=Path, default=sdk_load.ROOT / "docs" / "reliability" / "overload.md")
    args = parser.parse_args(argv)
    args.calibration_threads = args.calibration_threads or args.threads
    command = "python bench/overload.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.procs * (args.threads + args.calibration_threads) > sdk_load.MAX_CLIENTS:
        parser.error(f"at most {sdk_load.MAX_CLIENTS} exporter threads in all (client numbers fit span ids)")

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sloscope-overload-"))
    flags = ["--log-level", "WARNING"]
    if args.max_memory_bytes is not None:
        flags += ["--max-memory-bytes", str(args.max_memory_bytes)]
    server = sdk_load.ServerProcess(work / "data", work / "server.log", flags=flags)
    sampler = RssSampler(server)
    calibration_clients = args.procs * args.calibration_threads  # overload clients are numbered after them
    try:
        server.start()
        bound = sdk_load.metric_sum(server.metrics(), "sloscope_memory_limit_bytes")
        sampler.start()
        time.sleep(2.0)

        # -- calibration: as fast as the clients can, the store's rate is the sustainable rate --------
        calibrated: dict[str, object] = {"sent": set(), "acked": set(), "retries": 0}
        if args.sustainable:
            sustainable = args.sustainable
        else:
            sampler.phase = "calibration"
            calibration = Clients(work, server, args.procs, args.calibration_threads, "calibration", args.transport)
            calibration.start(0.0, args.calibration_seconds, 0, give_up_after=60.0)
            time.sleep(max(0.0, calibration.start_at - time.time()) + 3.0)  # warmed up
            first, t0 = flushed(server), time.monotonic()
            time.sleep(max(1.0, calibration.stop_at - time.time()))
            sustainable = (flushed(server) - first) / (time.monotonic() - t0)
            calibration.join(120)
            calibrated = calibration.results(0)
            wait_for(lambda: queued(server) == 0, 300, "backlog of the calibration")
        print(f"sustainable: {sustainable:,.0f} spans/s", flush=True)

        # -- overload --------------------------------------------------------------------------------
        before = shed_counts(server.metrics())
        stored_before = flushed(server)
        sampler.phase = "overload"
        offered = args.factor * sustainable
        load = Clients(work, server, args.procs, args.threads, "overload", args.transport)
        give_up = max(60.0, args.max_seconds - (time.monotonic() - started) - args.seconds - 120)
        load.start(offered, args.seconds, calibration_clients, give_up_after=give_up)
        time.sleep(max(0.0, load.stop_at - time.time()))
        dropped_at = time.monotonic()
        at_drop = shed_counts(server.metrics())
        sampler.phase = "after the load dropped"
        stuck = load.join(give_up + 60)
        clients_done = time.monotonic() - dropped_at
        results = load.results(calibration_clients)
        acked_spans = len(results["acked"]) * SPANS_PER_EXPORT
        wait_for(lambda: flushed(server) - stored_before >= acked_spans, 600, "acknowledged spans in the store")
        all_stored = time.monotonic() - dropped_at
        after = shed_counts(server.metrics())
        sampler.stop.set()
        code = server.stop()
        if code != 0:
            raise RuntimeError(f"the clean stop exited with {code}; see {server.log_path}")
        # The calibration's spans are in the store too: they are checked the same way.
        verdict = sdk_load.verify(
            sdk_load.stored_batches(server.data_dir / "store", SERVICE),
            results["acked"] | calibrated["acked"],
            results["sent"] | calibrated["sent"],
            SPANS_PER_EXPORT,
        )
    finally:
        sampler.stop.set()
        if server.alive():
            server.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)

    if args.rss_log:
        t0 = sampler.samples[0][0] if sampler.samples else 0.0
        args.rss_log.write_text("".join(f"{t - t0:.1f},{phase},{rss}\n" for t, phase, rss in sampler.samples))
    shed = {k: after[k] - before[k] for k in after}
    sent_spans = len(results["sent"]) * SPANS_PER_EXPORT
    offered_rate = sent_spans / args.seconds
    factor = offered_rate / sustainable
    arriving = (at_drop["requests"] - before["requests"]) * SPANS_PER_EXPORT / args.seconds
    peak = sampler.peaks.get("overload", 0)
    peak_all = max(sampler.peaks.values())
    mib = 1 << 20
    within = bool(bound) and peak_all < bound
    rows = [
        ("sustainable rate: stored per second, clients flat out (spans/s)", f"{sustainable:,.0f}"),
        ("offered: new spans per second during the overload", f"{offered_rate:,.0f} ({factor:.1f}x)"),
        ("arriving: spans per second in all export attempts, refused ones included", f"{arriving:,.0f}"),
        ("export requests answered 200/OK during the overload and after", f"{shed['ok']:,.0f}"),
        ("shed: HTTP 429 + gRPC RESOURCE_EXHAUSTED", f"{shed['http_429']:,.0f} + {shed['grpc_exhausted']:,.0f}"),
        ("… of them by the memory bound / in-flight cap", f"{shed['memory']:,.0f} / {shed['inflight']:,.0f}"),
        ("… by the full queue before decoding (requests)", f"{shed['queue_full']:,.0f}"),
        ("… by the full queue after decoding (spans)", f"{shed['queue_full_spans']:,.0f}"),
        ("SDK exports that gave up and were sent again by the client", f"{results['retries']:,}"),
        ("RSS at rest (MiB)", f"{sampler.peaks.get('rest', 0) / mib:,.0f}"),
        ("**RSS peak during the overload / bound (MiB)**", f"**{peak / mib:,.0f} / {bound / mib:,.0f}**"),
        ("RSS peak over the whole run (MiB)", f"{peak_all / mib:,.0f}"),
        ("allocator purges asked for", f"{shed['purges']:,.0f}"),
        ("spans acknowledged in the overload phase", f"{acked_spans:,}"),
        ("spans sent but never acknowledged (given up at the deadline)", f"{sent_spans - acked_spans:,}"),
        ("**acknowledged spans lost**", f"**{verdict.lost_spans:,}**"),
        ("**spans stored more than once**", f"**{verdict.duplicated_spans:,}**"),
        ("retries recognised as already logged (not written again)", f"{shed['duplicates']:,.0f}"),
        ("load dropped → clients done / everything acknowledged stored (s)", f"{clients_done:.0f} / {all_stored:.0f}"),
        ("seconds in all", f"{time.monotonic() - started:.0f}"),
    ]
    lines = [
        f"{args.procs} client processes × {args.threads} SDK exporter threads ({TRANSPORTS[args.transport]}), "
        f"{SPANS_PER_EXPORT} spans per export; overload {args.factor:g}x for {args.seconds:g} s"
        + (
            ""
            if args.sustainable
            else f", after a {args.calibration_seconds:g} s calibration with {args.calibration_threads} threads "
            "per process exporting as fast as they could"
        )
        + ".",
        "",
        "| measure | value |",
        "|---|---:|",
        *[f"| {name} | {value} |" for name, value in rows],
    ]
    if stuck:
        lines.append(f"\nClient processes still running at the end and killed: {stuck}.")
    if verdict.examples:
        lines += ["", "First problems:", *[f"- {e}" for e in verdict.examples[:10]]]
    print(sdk_load.append_report(args.output, "Overload", command, lines))
    return 0 if verdict.lost_spans == 0 and verdict.duplicated_spans == 0 and within else 1


if __name__ == "__main__":
    sys.exit(main())
