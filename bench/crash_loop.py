"""Crash loop: SIGKILL `sloscope serve` again and again under load from the real OpenTelemetry SDK
exporters, and prove that nothing acknowledged is lost and nothing is stored twice.

    make bench-reliability          # or: .venv/bin/python bench/crash_loop.py --kills 20 --seed 1

1. Starts `sloscope serve` (embedded chDB) on free 127.0.0.1 ports with a fresh data directory.
2. Client processes export numbered spans with known span ids through the SDK's OTLPSpanExporter,
   half over OTLP/HTTP and half over OTLP/gRPC, and write down every export they start and every
   one whose ``export()`` returned SUCCESS: those spans are acknowledged. The exporters retry
   through a kill (connection refused, UNAVAILABLE) with their own backoff, within ``--timeout``.
3. At seeded random moments the server gets SIGKILL (only the process this script started) and is
   started again on the same ports and data directory, ``--kills`` times.
4. The clients stop, the server stops cleanly (the write-ahead log drains), and the store is read
   with the embedded backend: every acknowledged span must be there exactly once, every other span
   at most once.

Prints a table, appends it with the command line to docs/reliability/crash-loop.md, and exits 1 if
anything was lost or duplicated. Stops by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sdk_load

SERVICE = "crash-loop"


def client_main(
    client: int,
    kind: str,
    otlp_url: str,
    grpc_address: str,
    per_batch: int,
    rate: float,
    timeout: float,
    stop: multiprocessing.synchronize.Event,
    deadline: float,
    out_path: str,
) -> None:
    """Export numbered batches until ``stop`` or ``deadline`` (wall clock); log "N sent" before and
    "N ok" / "N failed" after each ``export()``."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = sdk_load.exporter(kind, otlp_url, grpc_address, timeout)
    interval = per_batch / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    with open(out_path, "w") as out:
        batch = 0
        while not stop.is_set() and time.time() < deadline:
            spans = sdk_load.make_spans(client, batch, per_batch, SERVICE)
            out.write(f"{batch} sent\n")
            out.flush()
            result = exporter.export(spans)
            out.write(f"{batch} {'ok' if result is SpanExportResult.SUCCESS else 'failed'}\n")
            out.flush()
            batch += 1
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                stop.wait(pause)
            else:
                next_at = time.monotonic()
    exporter.shutdown()


def retries_recognised(server: sdk_load.ServerProcess) -> float:
    """Requests this incarnation found identical to one already logged (collector/dedup.py)."""
    try:
        return sdk_load.metric_sum(server.metrics(), "sloscope_duplicate_requests_total")
    except Exception:  # the metric is a figure for the report, not part of the proof
        return 0.0


def read_client_log(path: Path, client: int) -> tuple[set[int], set[int], int]:
    """(batch keys sent, batch keys acknowledged, exports that failed) of one client's log."""
    sent, acked, failed = set(), set(), 0
    for line in path.read_text().splitlines():
        batch, outcome = line.split()
        key = sdk_load.batch_key(client, int(batch))
        if outcome == "sent":
            sent.add(key)
        elif outcome == "ok":
            acked.add(key)
        else:
            failed += 1
    return sent, acked, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to survive (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments (default 1)")
    parser.add_argument("--http-clients", type=int, default=2, help="OTLP/HTTP exporter processes")
    parser.add_argument("--grpc-clients", type=int, default=2, help="OTLP/gRPC exporter processes")
    parser.add_argument("--spans-per-export", type=int, default=200)
    parser.add_argument(
        "--rate", type=float, default=5000, help="spans/s each client offers (0: as fast as it can)"
    )
    parser.add_argument("--min-up", type=float, default=1.0, help="shortest uptime before a kill, s")
    parser.add_argument("--max-up", type=float, default=6.0, help="longest uptime before a kill, s")
    parser.add_argument("--max-down", type=float, default=1.0, help="longest pause before a restart, s")
    parser.add_argument("--timeout", type=float, default=60.0, help="the exporters' timeout per export, s")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="give up after this long")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and server log")
    parser.add_argument("--output", type=Path, default=sdk_load.ROOT / "docs" / "reliability" / "crash-loop.md")
    args = parser.parse_args(argv)
    command = "python bench/crash_loop.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    started = time.monotonic()
    deadline = started + args.max_seconds
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="sloscope-crash-loop-"))
    server = sdk_load.ServerProcess(work / "data", work / "server.log", flags=("--log-level", "WARNING"))
    ctx = multiprocessing.get_context("spawn")  # grpc must not be inherited across fork
    stop = ctx.Event()
    kinds = ["http"] * args.http_clients + ["grpc"] * args.grpc_clients
    clients = []
    kills = 0
    recognised = 0.0
    restarts: list[float] = []
    try:
        restarts.append(server.start())
        client_deadline = time.time() + args.max_seconds
        for n, kind in enumerate(kinds):
            proc = ctx.Process(
                target=client_main,
                args=(
                    n,
                    kind,
                    server.otlp,
                    server.grpc,
                    args.spans_per_export,
                    args.rate,
                    args.timeout,
                    stop,
                    client_deadline,
                    str(work / f"client-{n}.log"),
                ),
                daemon=True,
            )
            proc.start()
            clients.append(proc)
        for _ in range(args.kills):
            up = rng.uniform(args.min_up, args.max_up)
            down = rng.uniform(0, args.max_down)
            if time.monotonic() + up + down + 60 > deadline:
                print(f"stopping early: --max-seconds {args.max_seconds} would pass", file=sys.stderr)
                break
            time.sleep(up)
            recognised += retries_recognised(server)  # just before the kill: a lower bound
            server.kill()
            kills += 1
            time.sleep(down)
            restarts.append(server.start())
            print(f"kill {kills}: after {up:.2f}s up, restarted in {restarts[-1]:.2f}s", flush=True)
        time.sleep(2.0)  # load on the last incarnation too
        stop.set()
        for proc in clients:
            proc.join(args.timeout + 30)
        stuck = [proc.pid for proc in clients if proc.is_alive()]
        for proc in clients:
            if proc.is_alive():
                proc.kill()
        recognised += retries_recognised(server)
        code = server.stop()
        if code != 0:
            raise RuntimeError(f"the final clean stop exited with {code}; see {server.log_path}")
        seconds = time.monotonic() - started

        sent: set[int] = set()
        acked: set[int] = set()
        failed = 0
        for n in range(len(kinds)):
            s, a, f = read_client_log(work / f"client-{n}.log", n)
            sent |= s
            acked |= a
            failed += f
        verdict = sdk_load.verify(
            sdk_load.stored_batches(server.data_dir / "store", SERVICE), acked, sent, args.spans_per_export
        )
    finally:
        stop.set()
        for proc in clients:
            if proc.is_alive():
                proc.kill()
        if server.alive():
            server.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    per = args.spans_per_export
    rows = [
        ("kills survived (SIGKILL, then restart on the same data directory)", f"{kills}"),
        ("spans sent (exports started)", f"{len(sent) * per:,}"),
        ("spans acknowledged (export() returned SUCCESS)", f"{verdict.acked_spans:,}"),
        ("spans stored", f"{verdict.stored_spans:,}"),
        ("of them not acknowledged (stored once; the answer was lost in a kill)", f"{verdict.unacked_stored_spans:,}"),
        ("**acknowledged spans lost**", f"**{verdict.lost_spans:,}**"),
        ("**spans stored more than once**", f"**{verdict.duplicated_spans:,}**"),
        ("exports that gave up (FAILURE, not acknowledged)", f"{failed:,}"),
        ("retries recognised as already logged, not logged again (at least)", f"{recognised:,.0f}"),
        ("restart to ready, median / max (s)", f"{statistics.median(restarts):.2f} / {max(restarts):.2f}"),
        ("seconds in all", f"{seconds:.0f}"),
    ]
    lines = [
        f"{args.http_clients} OTLP/HTTP + {args.grpc_clients} OTLP/gRPC SDK exporter processes, "
        f"{per} spans per export, {args.rate:g} spans/s each; uptime before each kill uniform in "
        f"[{args.min_up:g}, {args.max_up:g}] s (seed {args.seed}); exporter timeout {args.timeout:g} s.",
        "",
        "| measure | value |",
        "|---|---:|",
        *[f"| {name} | {value} |" for name, value in rows],
    ]
    if stuck:
        lines.append(f"\nClient processes still exporting at the end and killed: {stuck}.")
    if verdict.examples:
        lines += ["", "First problems:", *[f"- {e}" for e in verdict.examples[:10]]]
    print(sdk_load.append_report(args.output, "Crash loop", command, lines))
    return 0 if verdict.lost_spans == 0 and verdict.duplicated_spans == 0 and kills == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
