"""The SLO data model: what a native YAML file or an OpenSLO v1 document describes, once checked.

Everything here is plain frozen data. ``slo/spec.py`` builds it from YAML (and reports errors with
file and line); the SLI queries (``slo/sli.py``), the budget and burn-rate arithmetic
(``slo/budget.py``, ``slo/burn_rate.py``) and the evaluator read it.

Objectives are kept as exact decimals: an SLO's error budget ``1 - objective`` is a
:class:`~fractions.Fraction`, so a burn rate compared with a threshold such as 14.4 is compared
exactly (with floats, ``1 - 0.999`` is ``0.0010000000000000009`` and a burn rate of exactly 14.4
would read as 14.399999999999984).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Literal

MINUTE_S = 60
HOUR_S = 3600
DAY_S = 86_400

_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": MINUTE_S, "h": HOUR_S, "d": DAY_S, "w": 7 * DAY_S}


def parse_duration(text: str) -> int:
    """``30s``, ``5m``, ``1h``, ``28d``, ``2w`` as whole seconds; ValueError for anything else."""
    match = _DURATION.match(str(text).strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration like 5m, 1h, 28d (a positive whole number and s/m/h/d/w)"
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest ``parse_duration`` text for ``seconds`` (``3600`` -> ``1h``)."""
    for unit in ("d", "h", "m"):  # 28d, not 4w: SLO windows are spoken of in days
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


# -- filters -----------------------------------------------------------------------------------

FilterOp = Literal["=", "!=", ">", ">=", "<", "<=", "in", "not in"]


@dataclass(frozen=True)
class Filter:
    """One attribute condition: ``key op value``.

    The key is an attribute of the item (span or log record, or a metric point) or, when the item
    does not have it, of its resource. ``=``/``!=`` compare text; ``>``/``>=``/``<``/``<=`` compare
    numbers (a missing or non-numeric value never matches); ``in``/``not in`` take a tuple of texts.
    """

    key: str
    op: FilterOp
    value: str | float | tuple[str, ...]


# -- SLI sources -------------------------------------------------------------------------------

SpanKind = Literal["SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER", "UNSPECIFIED"]


@dataclass(frozen=True)
class SpanSli:
    """Requests are spans of the SLO's service: SERVER and CONSUMER spans and root spans (the RED
    roll-up's definition), or only spans of ``kinds`` when given, narrowed by ``operation`` and
    ``filters``. A request is bad if ANY of the ``bad_*`` criteria holds."""

    operation: str | None = None
    kinds: tuple[SpanKind, ...] = ()
    filters: tuple[Filter, ...] = ()
    #: Status ERROR, or an HTTP status >= 500 on a SERVER span (the RED roll-up's error).
    bad_error: bool = False
    #: Status expressions, e.g. ``http.response.status_code >= 500``; any that holds makes it bad.
    bad_status: tuple[Filter, ...] = ()
    #: Slower than this (duration > threshold) is bad: a latency SLI.
    bad_latency_ms: float | None = None


@dataclass(frozen=True)
class LogFilter:
    """Log records of the SLO's service with at least ``severity_min`` (OTLP severity number),
    matching every filter and, if ``body`` is given, containing it in the body."""

    severity_min: int = 0
    filters: tuple[Filter, ...] = ()
    body: str | None = None


@dataclass(frozen=True)
class LogSli:
    """Total and bad events as two log filters; a bad event must also match ``total``."""

    total: LogFilter
    bad: LogFilter


@dataclass(frozen=True)
class MetricSelector:
    """Points of one OTLP metric of the SLO's service whose attributes match ``filters``."""

    name: str
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class MetricSli:
    """OTLP metrics. Either counters (monotonic sums, any temporality, resets handled): ``total``
    and one of ``good``/``bad``; or a histogram (``total`` names it) with ``threshold``: observations
    at or below that bucket bound, in the metric's unit, are good."""

    total: MetricSelector
    good: MetricSelector | None = None
    bad: MetricSelector | None = None
    threshold: float | None = None

    @property
    def is_histogram(self) -> bool:
        return self.threshold is not None


Sli = SpanSli | LogSli | MetricSli


# -- window and budgeting ----------------------------------------------------------------------

CalendarUnit = Literal["week", "month", "quarter"]

#: A calendar period's nominal length, for what needs one number (the default alert factors): the
#: real period is 28-31 days for a month, and 23 or 25 hours longer or shorter across a DST change.
CALENDAR_NOMINAL_S: dict[str, int] = {"week": 7 * DAY_S, "month": 30 * DAY_S, "quarter": 90 * DAY_S}


@dataclass(frozen=True)
class Window:
    """Rolling (``rolling_s`` seconds back from the evaluation time) or calendar (the current
    ISO week, month or quarter in ``time_zone``)."""

    rolling_s: int | None = None
    calendar: CalendarUnit | None = None
    time_zone: str = "UTC"

    @property
    def is_calendar(self) -> bool:
        return self.calendar is not None

    @property
    def label(self) -> str:
        return self.calendar if self.calendar else format_duration(self.rolling_s or 0)

    @property
    def nominal_s(self) -> int:
        """The rolling length, or the calendar period's nominal length (week 7d, month 30d,
        quarter 90d)."""
        return CALENDAR_NOMINAL_S[self.calendar] if self.calendar else self.rolling_s or 0


BudgetingMethod = Literal["occurrences", "timeslices", "ratio_timeslices"]


@dataclass(frozen=True)
class Budgeting:
    """``occurrences`` counts events; ``timeslices`` counts slices of ``slice_s`` seconds whose
    good/total is at least ``slice_target``; ``ratio_timeslices`` averages the slices' ratios."""

    method: BudgetingMethod = "occurrences"
    slice_s: int = MINUTE_S
    slice_target: Fraction | None = None


# -- alerting (issue 6 builds on it) ------------------------------------------------------------


@dataclass(frozen=True)
class BurnRule:
    """Alert when the burn rate over ``long_s`` AND over ``short_s`` is strictly above ``factor``."""

    severity: str
    long_s: int
    short_s: int
    factor: Fraction
    #: The rule's own ``keep_firing_for`` (None: its severity's, else the policy's); see
    #: :meth:`AlertPolicy.keep_firing_for`.
    keep_firing_for_s: int | None = None


#: The SRE Workbook's pairs for a 30-day window: (severity, long, short, budget share consumed).
#: The factor is share x window / long window: 2% of a 30-day budget in 1 hour is 14.4.
WORKBOOK_PAIRS: tuple[tuple[str, int, int, Fraction], ...] = (
    ("page", HOUR_S, 5 * MINUTE_S, Fraction(2, 100)),
    ("page", 6 * HOUR_S, 30 * MINUTE_S, Fraction(5, 100)),
    ("ticket", DAY_S, 2 * HOUR_S, Fraction(10, 100)),
    ("ticket", 3 * DAY_S, 6 * HOUR_S, Fraction(10, 100)),
)


def default_rules(window_s: int) -> tuple[BurnRule, ...]:
    """The multiwindow, multi-burn-rate rules for an SLO window of ``window_s`` seconds: for 30 days
    14.4, 6, 3 and 1, and for other windows the same budget shares (2, 5, 10, 10 %) in the same
    long windows."""
    return tuple(
        BurnRule(severity, long_s, short_s, share * window_s / long_s)
        for severity, long_s, short_s, share in WORKBOOK_PAIRS
    )


@dataclass(frozen=True)
class NotificationTarget:
    """An OpenSLO ``AlertNotificationTarget``: a named destination such as ``slack`` or ``email``.

    Kept so notification routing can match on it (the alerting issue's notification policy decides
    the receivers); the spec loader only checks it."""

    name: str
    target: str
    description: str = ""


@dataclass(frozen=True)
class AlertPolicy:
    rules: tuple[BurnRule, ...]
    #: A firing alert resolves only after its condition has been false this long (Prometheus), unless
    #: its severity or its rules say otherwise (:meth:`keep_firing_for`).
    keep_firing_for_s: int = 0
    #: A pair may fire only if its long window holds at least this many events.
    min_events: int = 0
    #: OpenSLO notification targets of the policy (the native format has none: routing lives in the
    #: notification policy).
    notification_targets: tuple[NotificationTarget, ...] = ()
    #: What an evaluation without trustworthy data (the store unreachable, ingest behind) does to the
    #: alerts: ``keep`` them as they are, ``alert`` (fire an SLONoData alert), or ``ok`` (as if no
    #: rule fired: they resolve). docs/slo-semantics.md, "No data".
    on_no_data: str = "keep"
    #: ``keep_firing_for`` per severity, e.g. ``(("page", 3600), ("ticket", 0))``: over the policy's.
    keep_firing_for_by_severity: tuple[tuple[str, int], ...] = ()

    def keep_firing_for(self, severity: str) -> int:
        """The hold-down of the alert of ``severity``, in seconds. Each rule holds for its own
        ``keep_firing_for``, else its severity's, else the policy's; the rules of one severity are one
        alert, which holds for the longest of theirs (a rule cannot shorten another's hold)."""
        default = dict(self.keep_firing_for_by_severity).get(severity, self.keep_firing_for_s)
        holds = [
            default if rule.keep_firing_for_s is None else rule.keep_firing_for_s
            for rule in self.rules
            if rule.severity == severity
        ]
        return max(holds, default=default)


#: The values of ``AlertPolicy.on_no_data``.
NO_DATA_ACTIONS = ("keep", "alert", "ok")


# -- the SLO -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slo:
    name: str
    service: str
    objective: Decimal  # percent, e.g. Decimal("99.9")
    sli: Sli
    window: Window = field(default_factory=lambda: Window(rolling_s=30 * DAY_S))
    budgeting: Budgeting = field(default_factory=Budgeting)
    description: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    #: runbook_url, dashboard_url and free text; ``{{ name }}``-style placeholders already filled.
    annotations: tuple[tuple[str, str], ...] = ()
    group_by: tuple[str, ...] = ()
    alerting: AlertPolicy | None = None
    #: The tenant whose data the SLI reads, and whose users see the SLO ("": every tenant's data,
    #: seen only by users bound to no tenant).
    tenant: str = ""
    #: Where it was defined, ``file:line``, for messages.
    source: str = ""

    @property
    def target(self) -> Fraction:
        """The objective as a ratio (99.9 -> 999/1000)."""
        return Fraction(self.objective) / 100

    @property
    def error_budget(self) -> Fraction:
        """``1 - objective`` as an exact ratio (99.9 -> 1/1000)."""
        return 1 - self.target

    @property
    def annotation_map(self) -> dict[str, str]:
        return dict(self.annotations)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)
