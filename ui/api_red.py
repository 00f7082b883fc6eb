"""JSON API of RED metrics (rate, errors, duration) from the per-minute roll-up; see ``docs/red.md``.

* ``GET /api/v1/services?start=&end=&limit=``: per service, busiest first.
* ``GET /api/v1/services/{service}/operations?start=&end=&limit=``: per operation and span kind.
* ``GET /api/v1/red?service=&operation=&start=&end=&step=``: a series of one service (one operation,
  or all); ``version=`` keeps one ``service.version``. ``group_by=version`` gives a series per version
  with its share of the service's requests; ``group_by=operation`` the operations (of one version).

``start``/``end`` are RFC 3339 or unix milliseconds (default: the last hour) and are widened to
whole minutes (whole steps for a series); the answer's ``start``/``end`` are the widened range.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from store import red
from store.backend import Backend
from ui.params import TimeRange, bad_request, parse_limit, parse_range, parse_step

#: Latest time the roll-up's DateTime column holds (2106-02-07); later ends are refused.
_MAX_NS = (2**32 - 61) * 10**9
#: What ``/api/v1/red`` may be grouped by.
GROUP_BY = ("version", "operation")


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _range(start: str | None, end: str | None) -> TimeRange:
    try:
        time_range = parse_range(start, end)
    except (OverflowError, ValueError):  # e.g. a thousand-digit number of milliseconds
        raise bad_request(f"start/end out of range (got start={start}, end={end})") from None
    if time_range.start_ns < 0 or time_range.end_ns > _MAX_NS:
        raise bad_request("start and end must lie between 1970 and 2106")
    return time_range


def _window(window: red.Window) -> dict[str, str]:
    return {"start": _iso(window.start_s), "end": _iso(window.end_s)}


def _points(series: red.RedSeries) -> list[dict[str, Any]]:
    return [{"time": _iso(point.time_s), **point.stats.as_dict()} for point in series.points]


def router(backend: Backend) -> APIRouter:
    """The RED endpoints over ``backend``; sync handlers, so queries run in the thread pool."""
    api = APIRouter()

    @api.get("/api/v1/services")
    def services(
        start: str | None = None, end: str | None = None, limit: str | None = None
    ) -> dict[str, Any]:
        """Requests, rate, error ratio and p50/p95/p99 per service, busiest first."""
        time_range = _range(start, end)
        n = parse_limit(limit)
        rows = red.services_overview(backend, time_range.start_ns, time_range.end_ns, n)
        window = red.minute_window(time_range.start_ns, time_range.end_ns)
        return {
            "services": [{"service": row.service, **row.stats.as_dict()} for row in rows],
            **_window(window),
        }

    @api.get("/api/v1/services/{service}/operations")
    def operations(
        service: str, start: str | None = None, end: str | None = None, limit: str | None = None
    ) -> dict[str, Any]:
        """The same per operation (span name) and span kind of one service."""
        time_range = _range(start, end)
        n = parse_limit(limit)
        rows = red.operations(backend, service, time_range.start_ns, time_range.end_ns, n)
        window = red.minute_window(time_range.start_ns, time_range.end_ns)
        return {
            "service": service,
            "operations": [
                {"operation": row.operation, "kind": row.kind, **row.stats.as_dict()} for row in rows
            ],
            **_window(window),
        }

    @api.get("/api/v1/red")
    def series(
        service: str | None = None,
        operation: str | None = None,
        start: str | None = None,
        end: str | None = None,
        step: str | None = None,
        version: str | None = None,
        group_by: str | None = None,
        limit: str | None = None,
    ) -> dict[str, Any]:
        """Rate, errors, error ratio and p50/p95/p99 of a service (or one operation, or one version)
        per step; per version with ``group_by=version``; per operation with ``group_by=operation``.

        ``version=`` present but empty selects the requests sent without ``service.version``, the
        group that ``group_by=version`` names ''.
        """
        if not service:
            raise bad_request("service is required")
        if group_by and group_by not in GROUP_BY:
            raise bad_request(f"group_by: {group_by!r} must be one of {', '.join(GROUP_BY)}")
        time_range = _range(start, end)
        if group_by == "operation":
            if operation:
                raise bad_request("operation: cannot be combined with group_by=operation")
            return _by_operation(service, version, time_range, parse_limit(limit))
        step_ns = parse_step(step, time_range.end_ns - time_range.start_ns)
        if step_ns % red.MINUTE_NS:
            raise bad_request(f"step: {step!r} must be a whole number of minutes (the roll-up's resolution)")
        if group_by == "version":
            return _by_version(service, operation or None, version, time_range, step_ns, parse_limit(limit))
        result = red.red_series(
            backend,
            service,
            operation or None,
            time_range.start_ns,
            time_range.end_ns,
            step_ns,
            version=version,
        )
        return {
            "service": service,
            "operation": operation or None,
            # Only when asked for: the answer without version= stays as it was before versions.
            **({"version": version} if version is not None else {}),
            "step": result.step_s,
            **_window(result.window),
            "points": _points(result),
        }

    def _by_version(
        service: str,
        operation: str | None,
        version: str | None,
        time_range: TimeRange,
        step_ns: int,
        limit: int,
    ) -> dict[str, Any]:
        groups = red.version_series(
            backend,
            service,
            operation,
            time_range.start_ns,
            time_range.end_ns,
            step_ns,
            version=version,
            limit=limit,
        )
        # Widened as the groups' series are; an unknown service has no groups but still this range.
        step_s = step_ns // 10**9
        window = red.minute_window(time_range.start_ns, time_range.end_ns, step_s)
        return {
            "service": service,
            "operation": operation,
            **({"version": version} if version is not None else {}),
            "group_by": "version",
            "step": step_s,
            **_window(window),
            "groups": [
                {
                    "version": group.version,
                    "share": group.share,
                    **group.stats.as_dict(),
                    "points": _points(group.series),
                }
                for group in groups
            ],
        }

    def _by_operation(service: str, version: str | None, time_range: TimeRange, limit: int) -> dict[str, Any]:
        rows = red.operations(
            backend, service, time_range.start_ns, time_range.end_ns, limit, version=version
        )
        window = red.minute_window(time_range.start_ns, time_range.end_ns)
        return {
            "service": service,
            "version": version,
            "group_by": "operation",
            **_window(window),
            "groups": [{"operation": row.operation, "kind": row.kind, **row.stats.as_dict()} for row in rows],
        }

    return api
