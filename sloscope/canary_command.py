"""``sloscope canary``: is the candidate version of a service worse than the baseline?"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_parser(commands: argparse._SubParsersAction, store_flags: Callable[[argparse.ArgumentParser], None]) -> None:
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
    canary.add_argument("--format", choices=["text", "json"], default="text")
    store_flags(canary)


def run(args: argparse.Namespace, overrides: Callable[[argparse.Namespace], dict[str, object]]) -> int:
    """Run ``sloscope canary``; the exit code is the verdict's."""
    raise NotImplementedError
