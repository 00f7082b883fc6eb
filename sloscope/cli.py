"""The ``sloscope`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TextIO

from alerts.policy import Policy, load_policy
from slo.spec import SpecErrors
from sloscope import canary_command, logs, secrets, settings
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
        "--clickhouse-user",
        help="ClickHouse user, instead of one in the URL (SLOSCOPE_CLICKHOUSE_USER); the password is "
        "read from SLOSCOPE_CLICKHOUSE_PASSWORD or --clickhouse-password-file, never from a flag",
    )
    parser.add_argument(
        "--clickhouse-password-file",
        help="file holding the ClickHouse password (SLOSCOPE_CLICKHOUSE_PASSWORD_FILE)",
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
    serve.add_argument(
        "--external-url",
        help="URL this server is reached at, e.g. https://sloscope.example.com: the base of incident "
        "links in notifications and of relative runbook and dashboard links (SLOSCOPE_EXTERNAL_URL; "
        "default: the notification policy's external_url, else http(s)://HOST:API_PORT, 127.0.0.1 for "
        "0.0.0.0 and ::)",
    )
    serve.add_argument(
        "--tls-cert-file",
        help="PEM certificate (chain): every port serves TLS; needs --tls-key-file (SLOSCOPE_TLS_CERT_FILE)",
    )
    serve.add_argument("--tls-key-file", help="PEM private key of --tls-cert-file (SLOSCOPE_TLS_KEY_FILE)")
    serve.add_argument(
        "--tls-client-ca-file",
        help="PEM CA certificates: OTLP/HTTP, OTLP/gRPC and Zipkin then require client certificates "
        "signed by them (mutual TLS) (SLOSCOPE_TLS_CLIENT_CA_FILE)",
    )
    serve.add_argument("--retention-days", type=int, help="days of data to keep, 0 for ever (default 7)")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        help="largest accepted export or gRPC message, after decompression (default 16 MiB)",
    )
    serve.add_argument(
        "--body-read-timeout",
        type=float,
        help="seconds an OTLP/HTTP or Zipkin client has to send a whole request body before 408 (default 30)",
    )
    serve.add_argument(
        "--max-queue-bytes",
        type=int,
        help="acknowledged data not yet stored before exports get 429 (default 512 MiB)",
    )
    serve.add_argument(
        "--max-wal-bytes",
        type=int,
        help="disk the write-ahead log of one signal may take before exports get 503; 0: no cap "
        "(default 2 GiB)",
    )
    serve.add_argument(
        "--min-free-disk-bytes",
        type=int,
        help="free space the write-ahead log leaves on its disk before exports get 503 (default 256 MiB)",
    )
    serve.add_argument(
        "--max-memory-bytes",
        type=int,
        help="resident memory of the process (embedded engine included) from 85%% of which exports get "
        "429; 0: no bound (default 1 GiB)",
    )
    serve.add_argument(
        "--max-inflight-bytes",
        type=int,
        help="request bytes being decoded or logged at once before exports get 429; 0: no cap "
        "(default 32 MiB)",
    )
    serve.add_argument("--batch-rows", type=int, help="rows per write into the store (default 200000)")
    serve.add_argument("--batch-delay", type=float, help="longest wait before a write, seconds (default 1)")
    serve.add_argument(
        "--insert-parallelism",
        type=int,
        help="statements writing one batch at once (default: cores - 1, 1 to 2)",
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
    serve.add_argument(
        "--slo-recovery-s",
        type=int,
        help="seconds SLO evaluations report no data after the store was unreachable (default 120)",
    )
    serve.add_argument("--log-format", choices=["text", "json"], help="log format (default text)")
    serve.add_argument("--log-level", help="log level (default INFO)")
    serve.add_argument(
        "--ingest-tokens-file",
        help="YAML file of ingest tokens (sha256, tenant, rate limit): exports then need a token "
        "(docs/security/ingest-auth.md; default: no ingest authentication)",
    )
    serve.add_argument(
        "--ingest-auth-header",
        help="header carrying the ingest token: authorization (Bearer, the default) or e.g. x-api-key",
    )
    serve.add_argument(
        "--users-file",
        help="YAML file of the UI's and API's users (password hashes, roles, tenants): pages and the API "
        "then need a user (docs/security/ui-auth.md; SLOSCOPE_USERS_FILE, or the document itself in "
        "SLOSCOPE_USERS; default: no authentication)",
    )
    serve.add_argument(
        "--session-secret-file",
        help="file holding the secret that signs login sessions, shared by UI replicas "
        "(SLOSCOPE_SESSION_SECRET_FILE or SLOSCOPE_SESSION_SECRET; default: random per process)",
    )
    serve.add_argument("--session-max-age", type=int, help="seconds a login session lasts (default 43200)")
    serve.add_argument(
        "--auth-proxy-header",
        help="header naming the user, set by an authenticating reverse proxy, e.g. X-Forwarded-User; "
        "believed only from --auth-proxy-trusted",
    )
    serve.add_argument(
        "--auth-proxy-trusted", type=_csv, help="comma-separated addresses or CIDR blocks of that proxy"
    )
    serve.add_argument(
        "--auth-proxy-default-role",
        choices=["viewer", "responder", "admin"],
        help="role of proxy users missing from the users file (default: refused)",
    )
    serve.add_argument(
        "--trusted-proxies",
        type=_csv,
        help="comma-separated addresses or CIDR blocks of proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed",
    )
    serve.add_argument(
        "--metrics-auth", action="store_true", default=None, help="/metrics needs a user too (default: open)"
    )

    health = commands.add_parser(
        "health",
        help="exit 0 if the local server is ready (for container health checks)",
        description="Ask this machine's sloscope /readyz, over https when TLS is on, and exit 0 if it "
        "is ready, 1 otherwise (the reasons on stderr). Reads the same settings as serve.",
    )
    health.add_argument(
        "--api-port", type=int, help="the server's API port (SLOSCOPE_API_PORT, default 8080)"
    )

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
        "(or JSON). With --period previous, report the period that closed before it instead (a "
        "calendar SLO's last week, month or quarter; a rolling window's [T-2W, T-W)), evaluated at the "
        "instant it closed, and whether it was met (SLI >= objective). With the embedded store, stop "
        "`sloscope serve` first or use GET /api/v1/slos.",
    )
    report.add_argument(
        "path", metavar="PATH", nargs="?", help="spec file or directory (default: SLOSCOPE_SLOS)"
    )
    report.add_argument(
        "--at", default="now", help="instant: now, now-1h, RFC 3339 or unix seconds (default now)"
    )
    report.add_argument(
        "--period",
        choices=["current", "previous"],
        default="current",
        help="current: the window at --at (default); previous: the period that closed before it",
    )
    report.add_argument(
        "--format",
        choices=["table", "json", "csv", "parquet"],
        default="table",
        help="table (default), json, or one row per SLO instance as csv or parquet (docs/analysis.md)",
    )
    _output_flag(report)
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
    backtest.add_argument(
        "--format",
        choices=["table", "json", "csv", "parquet"],
        default="table",
        help="table (default), json, or one table as csv or parquet: a row per rule change, alert change, "
        "alert of a notification and (--values) step, told apart by the column 'record' (docs/analysis.md)",
    )
    _output_flag(backtest)
    _store_flags(backtest)
    backtest.set_defaults(slo_handler=_slo_backtest)

    canary_command.add_parser(commands, _store_flags)

    token = commands.add_parser(
        "token",
        help="make and check ingest tokens",
        description="Ingest tokens for the tokens file (ingest_tokens_file, docs/security/ingest-auth.md).",
    )
    token_commands = token.add_subparsers(dest="token_command", metavar="SUBCOMMAND", required=True)
    new = token_commands.add_parser(
        "new",
        help="make a token and its entry for the tokens file",
        description="Print a new random token once (on stderr: give it to the client and keep it secret) "
        "and the tokens file entry holding its SHA-256 (on stdout, so `>> tokens.yaml` appends it).",
    )
    new.add_argument("--name", required=True, help="the token's name (in /metrics and the log)")
    new.add_argument("--tenant", help="the tenant every row sent with this token is stored under")
    new.add_argument("--items-per-second", type=float, help="rate limit: spans, points or records per second")
    new.add_argument("--burst", type=int, help="rate limit: largest burst (default: one second's worth)")
    new.add_argument(
        "--stdin",
        action="store_true",
        help="read the token from stdin instead of making one (e.g. from a secret manager)",
    )
    new.set_defaults(token_handler=_token_new)
    check = token_commands.add_parser(
        "check",
        help="check a tokens file and list its tokens",
        description="Check a tokens file. Prints every error as file:line: field: problem and exits 1, or "
        "lists the tokens (name, tenant, rate limit; never a digest) and exits 0.",
    )
    check.add_argument("path", metavar="PATH", type=Path, help="the tokens file")
    check.set_defaults(token_handler=_token_check)

    user = commands.add_parser(
        "user",
        help="make password hashes and check users files",
        description="Users of the web UI and the API (users_file, docs/security/ui-auth.md).",
    )
    user_commands = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND", required=True)
    hash_command = user_commands.add_parser(
        "hash",
        help="print an argon2 hash of a password",
        description="Read a password (asked twice on a terminal, else the first line of stdin) and print "
        "its argon2id hash for the password_hash field of the users file.",
    )
    hash_command.set_defaults(user_handler=_user_hash)
    user_check = user_commands.add_parser(
        "check",
        help="check a users file and list its users",
        description="Check a users file. Prints every error as file:line: field: problem and exits 1, or "
        "lists the users (name, role, tenant; never a hash) and exits 0.",
    )
    user_check.add_argument("path", metavar="PATH", type=Path, help="the users file")
    user_check.set_defaults(user_handler=_user_check)
    return parser


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _user_hash(args: argparse.Namespace) -> int:
    """``sloscope user hash``: a password from the terminal (twice) or stdin, hashed with argon2id."""
    import getpass

    from ui.users import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("sloscope: error: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("sloscope: error: the password is empty", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _user_check(args: argparse.Namespace) -> int:
    """``sloscope user check PATH``."""
    from ui.users import UsersError, load_users

    try:
        users = load_users(args.path)
    except UsersError as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}", file=sys.stderr)
        return 1
    for found in users.values():
        tenant = "(every tenant)" if found.tenant is None else (found.tenant or "(default)")
        login = "password" if found.password_hash else "proxy only"
        print(f"{found.name}  role={found.role}  tenant={tenant}  sign-in={login}")
    print(f"{len(users)} user{'s' if len(users) != 1 else ''} OK")
    return 0


def _token_new(args: argparse.Namespace) -> int:
    """``sloscope token new --name N [--tenant T] [--items-per-second R [--burst B]]``."""
    from collector import auth

    entry = auth.token_entry(
        args.name, args.tenant or "", args.items_per_second, args.burst, sys.stdin if args.stdin else None
    )
    if not args.stdin:
        print(
            f"ingest token {args.name!r} (shown only now; give it to the client and keep it secret):\n"
            f"{entry.token}",
            file=sys.stderr,
        )
    print(entry.yaml, end="")
    return 0


def _token_check(args: argparse.Namespace) -> int:
    """``sloscope token check PATH``."""
    from collector.auth import TokenFileErrors, TokenSet

    try:
        tokens = TokenSet.load(args.path)
    except TokenFileErrors as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}", file=sys.stderr)
        return 1
    for token in tokens.tokens:
        limit = token.rate_limit
        rate = f"{limit.items_per_second:g}/s burst {limit.burst}" if limit else "none"
        print(f"{token.name}  tenant={token.tenant or '(default)'}  rate_limit={rate}")
    print(f"{len(tokens)} token{'s' if len(tokens) != 1 else ''} OK")
    return 0


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
    from sloscope.slo_commands import open_store, select

    slos = select(slos, getattr(args, "slo", None), source)
    backend = open_store(config)
    try:
        return run(backend, slos)
    finally:
        backend.close()


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write to FILE instead of standard output (parquet, being binary, goes to stdout's bytes without it)",
    )


def _with_output(args: argparse.Namespace, run: Callable[[TextIO, str | None], int]) -> int:
    """``run(out, output)``: csv and parquet are written by pandas to ``--output`` itself; table and
    json are text written to the open file (standard output without ``--output``)."""
    if args.output is None:
        return run(sys.stdout, None)
    if args.format in ("csv", "parquet"):
        return run(sys.stdout, args.output)
    try:
        out = open(args.output, "w", encoding="utf-8")  # closed by the with below
    except OSError as exc:
        raise ValueError(f"--output: cannot write {args.output}: {exc.strerror}") from None
    with out:
        return run(out, None)


def _slo_report(args: argparse.Namespace) -> int:
    """``sloscope slo report [PATH] [--at T] [--period current|previous] [--format F] [--output FILE]``."""
    from sloscope import slo_commands

    at_s = slo_commands.parse_instant(args.at, "--at")
    return _slo_store_command(
        args,
        args.path,
        lambda backend, slos: _with_output(
            args,
            lambda out, output: slo_commands.report(
                backend, slos, at_s, args.format, out, period=args.period, output=output
            ),
        ),
    )


def _policy(args: argparse.Namespace) -> Policy:
    """The notification policy of ``--notification-policy`` (or the setting); errors as lines."""
    path = args.notification_policy or settings.load(_overrides(args)).notification_policy or None
    return load_policy(path)


def _slo_backtest(args: argparse.Namespace) -> int:
    """``sloscope slo backtest PATH --from T1 --to T2 [--step 1m] [--format F] [--output FILE]``."""
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
        lambda backend, slos: _with_output(
            args,
            lambda out, output: slo_commands.backtest(
                backend, slos, from_s, to_s, step_s, args.format, args.values, _policy(args), out, output
            ),
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
    if args.command == "user":
        return args.user_handler(args)
    if args.command == "canary":
        return canary_command.run(args, _overrides)
    if args.command == "token":
        try:
            return args.token_handler(args)
        except ValueError as exc:
            print(f"sloscope: error: {exc}", file=sys.stderr)
            return 2
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
    if args.command == "health":
        from sloscope import health

        return health.check(config)
    secrets.register(secrets.collect(config))  # the store's password; serve adds the receivers'
    logs.configure(config.log_level, config.log_format)
    try:
        if args.command == "migrate":
            from store import migrations, open_backend

            backend = open_backend(
                config.data_dir,
                config.clickhouse_url,
                user=config.clickhouse_user,
                password=config.clickhouse_password,
            )
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
