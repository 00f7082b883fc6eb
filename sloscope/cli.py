"""The ``sloscope`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alerts.policy import Policy, load_policy
from slo.spec import SpecErrors
from sloscope import logs, settings
from sloscope.app import StartupError
from store import StoreError, StoreUnavailable


def _version() -> str:
    try:
        return version("sloscope")
    except PackageNotFoundError:
        return "unknown"


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="embedded store and write-ahead log (SLOSCOPE_DATA_DIR, default ./.sloscope-data)",
    )
    parser.add_argument(
        "--clickhouse-url",
        help="use a ClickHouse server instead of the embedded store, e.g. "
        "http://user:pass@host:8123/db (SLOSCOPE_CLICKHOUSE_URL)",
    )
    parser.add_argument(
        "--clickhouse-cluster",
        help="ClickHouse cluster to run migrations ON CLUSTER, with replicated tables "
        "(SLOSCOPE_CLICKHOUSE_CLUSTER, default: a single server)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sloscope", description="Observability and SLO platform: OTLP in, ClickHouse underneath."
    )
    parser.add_argument("--version", action="version", version=f"sloscope {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the collector and the API",
        description=(
            "Run the OTLP/HTTP collector and the HTTP API. Every flag also reads SLOSCOPE_<FLAG> from the "
            "environment (e.g. SLOSCOPE_API_PORT)."
        ),
    )
    _store_flags(serve)
    serve.add_argument(
        "--role",
        choices=list(settings.ROLES),
        help="what this process runs: all (default), collector (receivers and write-ahead log), "
        "evaluator (SLOs, alerting, service map), ui (web UI and query API); all but 'all' need "
        "--clickhouse-url (SLOSCOPE_ROLE)",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--otlp-http-port", type=int, help="OTLP/HTTP port (default 4318)")
    serve.add_argument("--otlp-grpc-port", type=int, help="OTLP/gRPC port (default 4317)")
    serve.add_argument("--zipkin-port", type=int, help="Zipkin v2 JSON port (default 9411)")
    serve.add_argument("--api-port", type=int, help="API and UI port (default 8080)")
    serve.add_argument("--retention-days", type=int, help="days of data to keep, 0 for ever (default 7)")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        help="largest accepted export or gRPC message, after decompression (default 16 MiB)",
    )
    serve.add_argument(
        "--max-queue-bytes",
        type=int,
        help="acknowledged data not yet stored before exports get 429 (default 512 MiB)",
    )
    serve.add_argument("--batch-rows", type=int, help="rows per write into the store (default 200000)")
    serve.add_argument("--batch-delay", type=float, help="longest wait before a write, seconds (default 1)")
    serve.add_argument(
        "--insert-parallelism", type=int, help="statements writing one batch at once (default 2)"
    )
    serve.add_argument("--correlation-keys", help="comma-separated attribute keys holding the correlation id")
    serve.add_argument("--demo", action="store_true", default=None, help="also send built-in demo traffic")
    serve.add_argument("--demo-rate", type=float, help="demo requests per second (default 5)")
    serve.add_argument("--slos", help="SLO spec file or directory to evaluate (native YAML or OpenSLO v1)")
    serve.add_argument(
        "--notification-policy",
        help="notification policy YAML: routes, receivers, inhibitions (docs/alerting.md)",
    )
    serve.add_argument(
        "--slo-interval", type=int, help="seconds between SLO evaluations (default 60: every minute)"
    )
    serve.add_argument("--log-format", choices=["text", "json"], help="log format (default text)")
    serve.add_argument("--log-level", help="log level (default INFO)")

    migrate = commands.add_parser(
        "migrate",
        help="apply schema migrations and exit",
        description="Apply pending schema migrations to the store and exit.",
    )
    _store_flags(migrate)

    demo = commands.add_parser(
        "demo",
        help="send demo traffic to a collector",
        description="Send demo traces, logs and metrics through the OpenTelemetry SDK.",
    )
    demo.add_argument("--endpoint", default="http://127.0.0.1:4318", help="OTLP/HTTP endpoint")
    demo.add_argument("--rate", type=float, default=5.0, help="requests per second")
    demo.add_argument("--duration", type=float, help="seconds to run (default: until interrupted)")
    demo.add_argument("--seed", type=int, help="random seed")

    slo = commands.add_parser(
        "slo",
        help="check and inspect SLO specs",
        description="Work with SLO specs (native YAML and OpenSLO v1).",
    )
    # Each subcommand sets `slo_handler`; `main` calls it, so adding one (report, backtest) is one
    # add_parser call and one handler.
    slo_commands = slo.add_subparsers(dest="slo_command", metavar="SUBCOMMAND", required=True)
    validate = slo_commands.add_parser(
        "validate",
        help="check SLO specs and list the SLOs",
        description="Check a spec file or a directory of *.yaml/*.yml specs. Prints every error as "
        "file:line: field: problem and exits 1, or lists the SLOs and exits 0.",
    )
    validate.add_argument("path", metavar="PATH", type=Path, help="a spec file or a directory of them")
    validate.set_defaults(slo_handler=_slo_validate)

    report = slo_commands.add_parser(
        "report",
        help="print each SLO's budget and burn rates",
        description="Evaluate every SLO at an instant over the stored data and print a table per SLO "
        "(or JSON). With the embedded store, stop `sloscope serve` first or use GET /api/v1/slos.",
    )
    report.add_argument(
        "path", metavar="PATH", nargs="?", help="spec file or directory (default: SLOSCOPE_SLOS)"
    )
    report.add_argument(
        "--at", default="now", help="instant: now, now-1h, RFC 3339 or unix seconds (default now)"
    )
    report.add_argument("--format", choices=["table", "json"], default="table")
    _store_flags(report)
    report.set_defaults(slo_handler=_slo_report)

    backtest = slo_commands.add_parser(
        "backtest",
        help="replay the evaluator over stored data",
        description="Evaluate SLOs at every step from --from to --to over the stored data, and print every "
        "alert rule state change (and, with --values, each step's values). Nothing is sent or stored.",
    )
    backtest.add_argument("path", metavar="PATH", help="spec file or directory")
    backtest.add_argument(
        "--from", dest="from_", required=True, help="first instant (now-30d, RFC 3339, ...)"
    )
    backtest.add_argument("--to", default="now", help="last instant (default now)")
    backtest.add_argument("--step", default="1m", help="time between evaluations, whole minutes (default 1m)")
    backtest.add_argument("--slo", action="append", help="only this SLO (repeatable)")
    backtest.add_argument("--values", action="store_true", help="also print every step's values")
    backtest.add_argument(
        "--notification-policy",
        help="notification policy for the notifications shown (default: SLOSCOPE_NOTIFICATION_POLICY)",
    )
    backtest.add_argument("--format", choices=["table", "json"], default="table")
    _store_flags(backtest)
    backtest.set_defaults(slo_handler=_slo_backtest)
    return parser


def _slo_validate(args: argparse.Namespace) -> int:
    """``sloscope slo validate PATH``."""
    from slo import spec

    slos, errors = spec.load(args.path)
    if errors:
        for error in errors:
            print(error)
        print(f"{len(errors)} error{'s' if len(errors) != 1 else ''}", file=sys.stderr)
        return 1
    for item in slos:
        print(f"{item.name}  service={item.service}  objective={item.objective}%  window={item.window.label}")
    print(f"{len(slos)} SLO{'s' if len(slos) != 1 else ''} OK")
    return 0


def _slo_store_command(args: argparse.Namespace, path: str | None, run: Callable[..., int]) -> int:
    """Load settings and specs, open the store, run ``run(backend, slos)``; errors as one line each."""
    from slo import spec
    from store import open_backend

    config = settings.load(_overrides(args))
    source = path or config.slos
    if not source:
        print("sloscope: error: no SLO specs: give PATH or set SLOSCOPE_SLOS", file=sys.stderr)
        return 2
    slos, errors = spec.load(Path(source))
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        return 1
    only = getattr(args, "slo", None)
    if only:
        unknown = sorted(set(only) - {s.name for s in slos})
        if unknown:
            print(f"sloscope: error: --slo: no SLO named {', '.join(unknown)} in {source}", file=sys.stderr)
            return 2
        slos = [s for s in slos if s.name in only]
    backend = open_backend(config.data_dir, config.clickhouse_url)
    try:
        return run(backend, slos)
    finally:
        backend.close()


def _slo_report(args: argparse.Namespace) -> int:
    """``sloscope slo report [PATH] [--at T]``."""
    from sloscope import slo_commands

    at_s = slo_commands.parse_instant(args.at, "--at")
    return _slo_store_command(
        args, args.path, lambda backend, slos: slo_commands.report(backend, slos, at_s, args.format)
    )


def _policy(args: argparse.Namespace) -> Policy:
    """The notification policy of ``--notification-policy`` (or the setting); errors as lines."""
    path = args.notification_policy or settings.load(_overrides(args)).notification_policy or None
    return load_policy(path)


def _slo_backtest(args: argparse.Namespace) -> int:
    """``sloscope slo backtest PATH --from T1 --to T2 [--step 1m]``."""
    from slo.model import parse_duration
    from sloscope import slo_commands

    from_s = slo_commands.parse_instant(args.from_, "--from")
    to_s = slo_commands.parse_instant(args.to, "--to")
    if to_s < from_s:
        raise ValueError(f"--to: {args.to!r} is before --from {args.from_!r}")
    try:
        step_s = parse_duration(args.step)
    except ValueError as exc:
        raise ValueError(f"--step: {exc}") from None
    if step_s % 60:
        raise ValueError(f"--step: {args.step!r} is not a whole number of minutes")
    return _slo_store_command(
        args,
        args.path,
        lambda backend, slos: slo_commands.backtest(
            backend, slos, from_s, to_s, step_s, args.format, args.values, _policy(args)
        ),
    )


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """Settings given as flags (flags and settings share names; absent flags are None)."""
    values: dict[str, object] = {f.name: getattr(args, f.name, None) for f in fields(settings.Settings)}
    keys = values.get("correlation_keys")
    if isinstance(keys, str):
        values["correlation_keys"] = tuple(k.strip() for k in keys.split(",") if k.strip())
    return values


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sloscope`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from sloscope import demo

        forwarded = ["--endpoint", args.endpoint, "--rate", str(args.rate)]
        if args.duration is not None:
            forwarded += ["--duration", str(args.duration)]
        if args.seed is not None:
            forwarded += ["--seed", str(args.seed)]
        return demo.main(forwarded)
    if args.command == "slo":
        try:
            return args.slo_handler(args)
        except settings.SettingsError as exc:
            parser.error(str(exc))
        except SpecErrors as exc:  # the notification policy: every problem as file:line: field: problem
            for error in exc.errors:
                print(error, file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"sloscope: error: {exc}", file=sys.stderr)
            return 2
        except (StoreUnavailable, StoreError) as exc:
            print(f"sloscope: error: {exc}", file=sys.stderr)
            return 1
    try:
        config = settings.load(_overrides(args))
    except settings.SettingsError as exc:
        parser.error(str(exc))
    logs.configure(config.log_level, config.log_format)
    try:
        if args.command == "migrate":
            from store import migrations, open_backend

            backend = open_backend(config.data_dir, config.clickhouse_url)
            try:
                applied = migrations.migrate(backend, cluster=config.clickhouse_cluster or None)
            finally:
                backend.close()
            print(f"applied migrations {applied}" if applied else "schema is up to date")
            return 0
        from sloscope import app

        app.run(config)
        return 0
    except (StoreUnavailable, StoreError, StartupError) as exc:
        print(f"sloscope: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
