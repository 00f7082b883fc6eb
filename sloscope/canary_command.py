"""``sloscope canary``: is the candidate version of a service worse than the baseline?

It reads the store itself (an embedded data directory, or a ClickHouse server), or, with ``--url``,
asks a running sloscope's ``GET /api/v1/canary``: the embedded store belongs to the one process
serving it, and a deploy pipeline runs while it serves (without ``--url``, a server holding the
data directory is asked on its API port).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

#: Exit code of a run that could not judge (bad arguments, store or server unreachable). 2 is taken
#: by "not enough data", and argparse's own usage errors exit 2 before any of this runs.
ERROR_EXIT = 4


def add_parser(
    commands: argparse._SubParsersAction, store_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register the ``canary`` command."""
    canary = commands.add_parser(
        "canary",
        help="compare two versions of a service (exit 0 pass, 1 fail, 2 not enough data)",
        description="Compare a candidate version of a service with its baseline over one time range: "
        "error ratio, latency p50/p95/p99 and each SLO's SLI (docs/canary.md).",
    )
    canary.add_argument("--service", required=True)
    canary.add_argument("--baseline", required=True, help="the baseline's service.version")
    canary.add_argument("--candidate", required=True, help="the candidate's service.version")
    canary.add_argument("--from", dest="from_", default="now-1h", help="start (default now-1h)")
    canary.add_argument("--to", default="now", help="end (default now)")
    canary.add_argument("--slo", action="append", help="compare this SLO's SLI too (repeatable)")
    canary.add_argument("--slos", help="SLO spec file or directory (default: SLOSCOPE_SLOS)")
    canary.add_argument(
        "--min-requests", type=int, help="requests each version needs (default 100)", default=None
    )
    canary.add_argument(
        "--url",
        help="ask a running sloscope at this API address instead of opening the store "
        "(http://user:password@host:port for basic authentication)",
    )
    canary.add_argument("--format", choices=["text", "json"], default="text")
    store_flags(canary)


def run(args: argparse.Namespace, overrides: Callable[[argparse.Namespace], dict[str, object]]) -> int:
    """Run ``sloscope canary``; the exit code is the verdict's (``slo.canary.EXIT_CODES``), or
    :data:`ERROR_EXIT` with one line on stderr when it cannot judge."""
    from slo import canary

    try:
        answer = _from_server(args) if args.url else _from_store(args, overrides)
    except (ValueError, OSError) as exc:
        print(f"sloscope: error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    print(json.dumps(answer, indent=2) if args.format == "json" else render_text(answer))
    return canary.EXIT_CODES[answer["verdict"]]


def _from_store(
    args: argparse.Namespace, overrides: Callable[[argparse.Namespace], dict[str, object]]
) -> dict[str, Any]:
    from pathlib import Path

    from slo import canary, spec
    from sloscope import settings, slo_commands
    from store import StoreError, StoreUnavailable

    start_s = slo_commands.parse_instant(args.from_, "--from")
    end_s = slo_commands.parse_instant(args.to, "--to")
    if end_s <= start_s:
        raise ValueError(f"--to: {args.to!r} is not after --from {args.from_!r}")
    config = settings.load(overrides(args))
    slos = []
    if args.slo:
        source = args.slos or config.slos
        if not source:
            raise ValueError("--slo needs SLO specs: give --slos PATH or set SLOSCOPE_SLOS")
        loaded, errors = spec.load(Path(source))
        if errors:
            raise ValueError(f"{source}: " + "; ".join(str(e) for e in errors))
        slos = slo_commands.select(loaded, args.slo, source)
    try:
        backend = slo_commands.open_store(config)
    except StoreUnavailable as exc:
        if config.clickhouse_url:
            raise ValueError(str(exc)) from None
        # The embedded store is held by the server serving it: ask that server instead.
        url = f"http://127.0.0.1:{config.api_port}"
        print(f"sloscope: the store is in use; asking the server at {url}", file=sys.stderr)
        return _from_server(argparse.Namespace(**{**vars(args), "url": url}))
    try:
        report = canary.compare(
            backend,
            args.service,
            args.baseline,
            args.candidate,
            start_s * 10**9,
            end_s * 10**9,
            slos,
            args.min_requests or canary.MIN_REQUESTS,
        )
    except StoreError as exc:
        raise ValueError(f"the store refused the comparison: {exc}") from None
    finally:
        backend.close()
    return report.to_dict()


def _from_server(args: argparse.Namespace) -> dict[str, Any]:
    """The answer of ``GET {url}/api/v1/canary``; ValueError with the server's ``detail`` on 4xx/5xx."""
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"--url: {args.url!r} is not an http(s) address")
    query = [
        ("service", args.service),
        ("baseline", args.baseline),
        ("candidate", args.candidate),
        ("start", args.from_),
        ("end", args.to),
    ]
    query += [("slo", name) for name in args.slo or ()]
    if args.min_requests is not None:
        query.append(("min_requests", str(args.min_requests)))
    netloc = url.hostname + (f":{url.port}" if url.port else "")
    target = urllib.parse.urlunsplit(
        (url.scheme, netloc, url.path.rstrip("/") + "/api/v1/canary", urllib.parse.urlencode(query), "")
    )
    request = urllib.request.Request(target, headers={"Accept": "application/json"})
    if url.username is not None:
        secret = f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (scheme checked)
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("detail", exc.reason)
        except (ValueError, AttributeError):
            detail = exc.reason
        raise ValueError(f"{netloc} answered {exc.code}: {detail}") from None


def render_text(answer: dict[str, Any]) -> str:
    """The comparison as a few aligned lines for a terminal or a deploy log."""
    lines = [
        f"canary {answer['service']}: {answer['candidate']} against {answer['baseline']}, "
        f"{answer['start']} to {answer['end']}",
        f"verdict: {answer['verdict'].replace('_', ' ').upper()}: {answer['reason']}",
        "",
        f"{'metric':<24} {'baseline':>12} {'candidate':>12} {'requests':>17} {'p-value':>9} {'effect':>9}  verdict",
    ]
    for m in answer["metrics"]:
        requests = f"{m['baseline_requests']}/{m['candidate_requests']}"
        lines.append(
            f"{m['metric']:<24} {_value(m['baseline'], m['unit']):>12} {_value(m['candidate'], m['unit']):>12} "
            f"{requests:>17} {_number(m['p_value'], '.3g'):>9} {_number(m['effect_size'], '.4g'):>9}  "
            f"{m['verdict'].replace('_', ' ')}"
        )
        if m.get("candidate_burn_rate") is not None or m.get("baseline_burn_rate") is not None:
            lines.append(
                f"{'':<24} burn rate: baseline {_number(m['baseline_burn_rate'], '.2f')}x, "
                f"candidate {_number(m['candidate_burn_rate'], '.2f')}x"
            )
    return "\n".join(lines)


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} ms" if unit == "ms" else f"{value * 100:.3f}%"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
