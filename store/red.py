"""RED metrics (rate, errors, duration) from the per-minute roll-up ``red_1m`` (see ``docs/red.md``).

The roll-up keeps, per minute and service/operation/kind/dimensions, the number of requests, of
errors, and a histogram of durations over fixed log-linear buckets (``LOWER_BOUNDS_NS``). Quantiles
and "fraction under a threshold" are computed here from the merged histogram, interpolating linearly
inside the bucket that holds the answer: a quantile is off by less than one bucket width, less than
``MAX_RELATIVE_ERROR`` (5 %) of the true value; a fraction is exact when the threshold is a bucket
bound.

Ranges are widened to whole minutes (the roll-up's resolution): ``start`` down, ``end`` up. Rates
are per second over that widened range.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from store.backend import Backend
from store.sql import red as sql

MINUTE_NS = 60 * 10**9
_MAX_SECONDS = 2**32 - 61  # red_1m.minute is a DateTime (UInt32 seconds)


def _lower_bound(index: int) -> int:
    """Lower bound in ns of bucket ``index`` (the same arithmetic as migration 0004's view)."""
    if index == 0:
        return 0
    if index == LAST_BUCKET:
        return 10**12
    decade, slot = divmod(index - 1, 70)
    base = 10 ** (decade + 3)
    if slot < 20:
        return base + slot * (base // 20)
    if slot < 50:
        return 2 * base + (slot - 20) * (base // 10)
    return 5 * base + (slot - 50) * (base // 4)


#: Bucket 0 is [0, 1 us); the last, [1000 s, inf). In between, 70 buckets per decade of nanoseconds.
LAST_BUCKET = 631
LOWER_BOUNDS_NS: tuple[int, ...] = tuple(_lower_bound(i) for i in range(LAST_BUCKET + 1))
#: Widest bucket relative to its lower bound (buckets 1 to 630): a quantile's worst relative error.
MAX_RELATIVE_ERROR = max(
    (LOWER_BOUNDS_NS[i + 1] - LOWER_BOUNDS_NS[i]) / LOWER_BOUNDS_NS[i] for i in range(1, LAST_BUCKET)
)


def bucket_of(duration_ns: int) -> int:
    """The bucket a duration falls into (the Python twin of the view's SQL, for tests and docs)."""
    return bisect.bisect_right(LOWER_BOUNDS_NS, duration_ns) - 1


def bucket_range(index: int) -> tuple[int, int | None]:
    """``[lower, upper)`` in ns; ``upper`` is None for the overflow bucket."""
    upper = LOWER_BOUNDS_NS[index + 1] if index < LAST_BUCKET else None
    return LOWER_BOUNDS_NS[index], upper


def quantile_ns(ids: Sequence[int], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram given as sorted bucket ids and counts; None if empty.

    The answer is the duration of rank ``floor(q * total)`` (0-based, as ClickHouse's
    ``quantileExact`` picks it), placed inside its bucket as if the bucket's durations were spread
    evenly. The true duration is in the same bucket, so the error is below one bucket width. In the
    overflow bucket the answer is its lower bound, 1000 s.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be between 0 and 1, got {q}")
    total = sum(counts)
    if total == 0:
        return None
    rank = min(math.floor(q * total), total - 1)
    before = 0
    for index, count in zip(ids, counts, strict=True):
        if before + count > rank:
            lower, upper = bucket_range(index)
            if upper is None:
                return float(lower)
            return lower + (upper - lower) * (rank - before + 0.5) / count
        before += count
    raise AssertionError("unreachable: rank < total")


def count_under(ids: Sequence[int], counts: Sequence[int], threshold_ns: int) -> tuple[float, bool]:
    """How many durations are below ``threshold_ns``, and whether that number is exact.

    Buckets wholly below count fully; the one holding the threshold counts in proportion to the part
    below it (exact when the threshold is its lower bound, or it is empty).
    """
    under = 0.0
    exact = True
    for index, count in zip(ids, counts, strict=True):
        lower, upper = bucket_range(index)
        if upper is not None and upper <= threshold_ns:
            under += count
        elif lower < threshold_ns and count:
            if upper is None:  # overflow bucket: no upper bound to interpolate against
                exact = False
                continue
            under += count * (threshold_ns - lower) / (upper - lower)
            exact = False
    return under, exact


@dataclass(frozen=True)
class Window:
    """A range widened to whole minutes, in unix seconds: ``[start_s, end_s)``."""

    start_s: int
    end_s: int

    @property
    def seconds(self) -> int:
        return self.end_s - self.start_s


def minute_window(start_ns: int, end_ns: int, step_s: int = 60) -> Window:
    """``[start_ns, end_ns)`` widened to multiples of ``step_s`` (a whole number of minutes)."""
    if end_ns <= start_ns:
        raise ValueError(f"end ({end_ns}) must be after start ({start_ns})")
    if step_s < 60 or step_s % 60:
        raise ValueError(f"step must be a whole number of minutes, got {step_s} s")
    start_s = min(max(0, start_ns // 10**9 // step_s * step_s), _MAX_SECONDS // step_s * step_s)
    end_s = -(-end_ns // (step_s * 10**9)) * step_s
    end_s = min(max(start_s + step_s, end_s), (_MAX_SECONDS // step_s + 1) * step_s)
    return Window(start_s, end_s)


@dataclass(frozen=True)
class RedStats:
    """Requests, errors and latency quantiles of one group over some seconds."""

    requests: int
    errors: int
    rate: float
    error_rate: float
    error_ratio: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rate": self.rate,
            "error_rate": self.error_rate,
            "error_ratio": self.error_ratio,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


def _ms(value_ns: float | None) -> float | None:
    return None if value_ns is None else round(value_ns / 1e6, 4)


def _stats(row: dict[str, Any], seconds: int) -> RedStats:
    requests, errors = int(row["n_requests"]), int(row["n_errors"])
    ids, counts = row["bucket_ids"], row["bucket_counts"]
    return RedStats(
        requests=requests,
        errors=errors,
        rate=requests / seconds,
        error_rate=errors / seconds,
        error_ratio=errors / requests if requests else None,
        p50_ms=_ms(quantile_ns(ids, counts, 0.50)),
        p95_ms=_ms(quantile_ns(ids, counts, 0.95)),
        p99_ms=_ms(quantile_ns(ids, counts, 0.99)),
    )


def _range_params(window: Window) -> dict[str, int]:
    return {"start": window.start_s, "end": window.end_s}


def _operation_params(operation: str | None) -> dict[str, Any]:
    return {"any_operation": int(operation is None), "operation": operation or ""}


def _version_params(version: str | None) -> dict[str, Any]:
    # '' is a version of its own (requests sent without service.version); only None means "any".
    return {"any_version": int(version is None), "version": version or ""}


def _check_limit(limit: int) -> None:
    if not 1 <= limit < 2**32:
        raise ValueError(f"limit must be a positive whole number, got {limit}")


@dataclass(frozen=True)
class ServiceRed:
    service: str
    stats: RedStats
    window: Window
    #: Requests per second in the last minutes of the window (``services_page``'s ``recent_s``).
    current_rate: float | None = None


def services_overview(backend: Backend, start_ns: int, end_ns: int, limit: int = 100) -> list[ServiceRed]:
    """RED per service over ``[start_ns, end_ns)`` (widened to minutes), busiest first."""
    _check_limit(limit)
    window = minute_window(start_ns, end_ns)
    rows = backend.query_arrow(sql.SERVICES, {**_range_params(window), "limit": limit}).to_pylist()
    return [ServiceRed(row["service"], _stats(row, window.seconds), window) for row in rows]


#: What the services list may be sorted by, and each key's natural direction (True: descending).
SERVICE_SORTS = {key: key != "service" for key in sql.SERVICES_ORDER}


@dataclass(frozen=True)
class ServicesPage:
    """One page of the services list and how many services (matching the filter) the range holds."""

    services: list[ServiceRed]
    total: int
    offset: int


def services_page(
    backend: Backend,
    start_ns: int,
    end_ns: int,
    limit: int,
    offset: int = 0,
    *,
    sort: str = "requests",
    descending: bool = True,
    match: str = "",
    recent_s: int = 300,
) -> ServicesPage:
    """RED per service, ordered by ``sort`` (a key of ``SERVICE_SORTS``; ties busiest first, then by
    name), rows ``offset`` to ``offset + limit``, of the services whose name contains ``match`` (any
    case). ``current_rate`` is the rate of the last ``recent_s`` seconds before ``end_ns``, over the
    time that has passed of them (the newest minute may still be filling).

    One query whatever the page: ``total`` is counted in the same pass. A page past the last service
    is empty and its ``total`` 0, since no row carries the count.
    """
    _check_limit(limit)
    if not 0 <= offset < 2**63:
        raise ValueError(f"offset must be a whole number from 0, got {offset}")
    if sort not in SERVICE_SORTS:
        raise ValueError(f"sort: {sort!r} must be one of {', '.join(SERVICE_SORTS)}")
    window = minute_window(start_ns, end_ns)
    recent_start = max(window.start_s, window.end_s - recent_s)
    elapsed = max(1.0, min(end_ns / 1e9, window.end_s) - recent_start)
    params = {
        **_range_params(window),
        "limit": limit,
        "offset": offset,
        "match": match,
        "recent": recent_start,
    }
    rows = backend.query_arrow(sql.services_page(sort, descending), params).to_pylist()
    services = [
        ServiceRed(row["service"], _stats(row, window.seconds), window, int(row["n_recent"]) / elapsed)
        for row in rows
    ]
    return ServicesPage(services, int(rows[0]["n_services"]) if rows else 0, offset)


@dataclass(frozen=True)
class OperationRed:
    operation: str
    kind: str
    stats: RedStats
    window: Window


def operations(
    backend: Backend,
    service: str,
    start_ns: int,
    end_ns: int,
    limit: int = 100,
    *,
    version: str | None = None,
) -> list[OperationRed]:
    """RED per operation (span name) and span kind of ``service``, busiest first; of one
    ``version`` (``service.version``; '' for requests sent without one) or of all when None."""
    _check_limit(limit)
    window = minute_window(start_ns, end_ns)
    params = {**_range_params(window), **_version_params(version), "service": service, "limit": limit}
    rows = backend.query_arrow(sql.OPERATIONS, params).to_pylist()
    return [OperationRed(row["op_name"], row["op_kind"], _stats(row, window.seconds), window) for row in rows]


@dataclass(frozen=True)
class RedPoint:
    """One step of a series: ``[time_s, time_s + step)``."""

    time_s: int
    stats: RedStats


@dataclass(frozen=True)
class RedSeries:
    window: Window
    step_s: int
    points: list[RedPoint]


def _step_window(start_ns: int, end_ns: int, step_ns: int) -> tuple[int, Window]:
    """The step in seconds and the range widened to whole steps; 400-worthy errors as ValueError."""
    if step_ns <= 0 or step_ns % MINUTE_NS:
        raise ValueError(f"step must be a whole number of minutes, got {step_ns} ns")
    step_s = step_ns // 10**9
    return step_s, minute_window(start_ns, end_ns, step_s)


@dataclass(frozen=True)
class RatePoint:
    """Requests and errors of one step ``[time_s, time_s + step)``, and their rates per second."""

    time_s: int
    requests: int
    errors: int
    rate: float
    error_rate: float


def request_rates(
    backend: Backend, services: Sequence[str], start_ns: int, end_ns: int, step_ns: int
) -> dict[str, list[RatePoint]]:
    """Request and error rates per step of each of ``services``, every step present, in one query.

    The steps are those of :func:`red_series` over the same range and step, and so are the rates;
    latency is left out (sparklines draw rates only). A service without requests gets all zeros.
    """
    step_s, window = _step_window(start_ns, end_ns, step_ns)
    wanted = list(dict.fromkeys(services))
    counts: dict[str, dict[int, tuple[int, int]]] = {name: {} for name in wanted}
    if wanted:
        params = {**_range_params(window), "services": wanted, "step": step_s}
        for row in backend.query_arrow(sql.SERVICES_RATES, params).to_pylist():
            counts[row["service"]][row["point"]] = (int(row["n_requests"]), int(row["n_errors"]))
    steps = range(window.start_s, window.end_s, step_s)

    def point(t: int, requests: int, errors: int) -> RatePoint:
        return RatePoint(t, requests, errors, requests / step_s, errors / step_s)

    return {name: [point(t, *per_step.get(t, (0, 0))) for t in steps] for name, per_step in counts.items()}


_EMPTY_ROW = {"n_requests": 0, "n_errors": 0, "bucket_ids": [], "bucket_counts": []}


def _points(rows: dict[int, dict[str, Any]], window: Window, step_s: int) -> list[RedPoint]:
    """Every step of ``window``, from the query rows by step start; a missing step has no requests."""
    return [
        RedPoint(t, _stats(rows.get(t, _EMPTY_ROW), step_s))
        for t in range(window.start_s, window.end_s, step_s)
    ]


def red_series(
    backend: Backend,
    service: str,
    operation: str | None,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    *,
    version: str | None = None,
) -> RedSeries:
    """RED of ``service`` (one ``operation``, or all when None; one ``version``, '' for requests sent
    without ``service.version``, or all when None) per step, every step present.

    Points start at multiples of the step since the epoch; the range is widened to whole steps.
    A step without requests has rate 0 and no ratio or quantiles.
    """
    step_s, window = _step_window(start_ns, end_ns, step_ns)
    params = {
        **_range_params(window),
        **_operation_params(operation),
        **_version_params(version),
        "service": service,
        "step": step_s,
    }
    rows = {row["point"]: row for row in backend.query_arrow(sql.SERIES, params).to_pylist()}
    return RedSeries(window, step_s, _points(rows, window, step_s))


@dataclass(frozen=True)
class VersionRed:
    """RED of one version (resource attribute ``service.version``) of a service over ``window``.

    ``version`` is '' for requests sent without ``service.version``. ``share`` is the version's part
    of the service's requests in the window (of one operation's, when the query names one), 0..1.
    """

    version: str
    share: float
    stats: RedStats
    window: Window


@dataclass(frozen=True)
class ServiceVersions:
    """The busiest versions of a service, and how many versions and requests the whole service has."""

    versions: list[VersionRed]
    #: Versions of the service in the window, also those the limit or a version filter left out.
    total: int
    #: Requests of the service in the window (of one operation, when asked): the shares' denominator.
    requests: int
    window: Window


def _versions(
    backend: Backend, service: str, operation: str | None, version: str | None, window: Window, limit: int
) -> ServiceVersions:
    _check_limit(limit)
    params = {
        **_range_params(window),
        **_operation_params(operation),
        **_version_params(version),
        "service": service,
        "limit": limit,
    }
    rows = backend.query_arrow(sql.VERSIONS, params).to_pylist()
    found = [
        VersionRed(
            row["version"], int(row["n_requests"]) / int(row["n_all"]), _stats(row, window.seconds), window
        )
        for row in rows
    ]
    total, requests = (int(rows[0]["n_versions"]), int(rows[0]["n_all"])) if rows else (0, 0)
    return ServiceVersions(found, total, requests, window)


def versions(
    backend: Backend,
    service: str,
    start_ns: int,
    end_ns: int,
    *,
    operation: str | None = None,
    limit: int = 100,
) -> ServiceVersions:
    """RED per version of ``service`` (of one ``operation``, or all when None) over
    ``[start_ns, end_ns)`` widened to minutes, busiest first (ties by version), at most ``limit``.

    ``total`` and ``requests`` count every version, also those past the limit; a version's share is
    of all of them. A service without requests in the range has no versions (``total`` 0).
    """
    return _versions(backend, service, operation, None, minute_window(start_ns, end_ns), limit)


@dataclass(frozen=True)
class VersionSeries:
    """One version of a service: its RED over the whole series' range, its share, and per step."""

    version: str
    share: float
    stats: RedStats
    series: RedSeries


def version_series(
    backend: Backend,
    service: str,
    operation: str | None,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    *,
    version: str | None = None,
    limit: int = 100,
) -> list[VersionSeries]:
    """:func:`red_series` per version of ``service``, busiest first (as :func:`versions` orders and
    limits them), in two queries whatever the number of versions.

    The range is widened to whole steps as :func:`red_series` widens it, and each version's
    ``stats`` and ``share`` are over that same range, so the versions' requests and errors add up to
    the ungrouped series' totals (when no version is left out by ``limit`` or ``version``).
    ``version`` keeps only that version ('' for requests without ``service.version``); its share
    is still of the whole service.
    """
    step_s, window = _step_window(start_ns, end_ns, step_ns)
    found = _versions(backend, service, operation, version, window, limit).versions
    if not found:
        return []
    params = {
        **_range_params(window),
        **_operation_params(operation),
        "service": service,
        "step": step_s,
        "versions": [v.version for v in found],
    }
    rows: dict[str, dict[int, dict[str, Any]]] = {v.version: {} for v in found}
    for row in backend.query_arrow(sql.VERSIONS_SERIES, params).to_pylist():
        rows[row["version"]][row["point"]] = row
    return [
        VersionSeries(
            v.version, v.share, v.stats, RedSeries(window, step_s, _points(rows[v.version], window, step_s))
        )
        for v in found
    ]


@dataclass(frozen=True)
class FractionUnder:
    """Requests faster than a threshold: the basis of a latency SLI."""

    requests: int
    under: float
    fraction: float | None
    exact: bool
    window: Window


def fraction_under(
    backend: Backend,
    service: str,
    operation: str | None,
    threshold_ms: float,
    start_ns: int,
    end_ns: int,
) -> FractionUnder:
    """Share of ``service``'s requests (one ``operation`` or all) that took less than ``threshold_ms``.

    Exact (``exact=True``) when the threshold is a bucket bound, e.g. 1, 2, 2.5, 3, 5, 7.5, 10, 100,
    250, 300 or 500 ms; otherwise the bucket holding the threshold is split linearly.
    """
    if not threshold_ms >= 0:
        raise ValueError(f"threshold must be a non-negative number of milliseconds, got {threshold_ms}")
    threshold_ns = round(threshold_ms * 1e6)
    window = minute_window(start_ns, end_ns)
    params = {**_range_params(window), **_operation_params(operation), "service": service}
    row = backend.query_arrow(sql.TOTAL, params).to_pylist()[0]
    requests = int(row["n_requests"])
    under, exact = count_under(row["bucket_ids"], row["bucket_counts"], threshold_ns)
    return FractionUnder(requests, under, under / requests if requests else None, exact, window)
