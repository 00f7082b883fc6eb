"""The ``sloscope`` command."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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
    return parser


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
                applied = migrations.migrate(backend)
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
