"""SLO specs in YAML -> :mod:`slo.model`, with every problem reported as ``file:line: field: problem``.

:func:`load` reads a file or a directory (every ``*.yaml``/``*.yml`` in it, sorted) holding native
documents (``slos:``, documented in ``docs/slo-spec.md``) and OpenSLO v1 documents
(:mod:`slo.openslo`), mixed as you like; a document is OpenSLO when its ``apiVersion`` is
``openslo/v1``. It collects every error of every file instead of stopping at the first, because a
user fixing a directory of specs wants the whole list in one run.

Specs are read from the YAML node graph (``yaml.compose``), not from loaded Python values, for two
reasons: every node knows its line, and a scalar keeps the text that was written, so an objective of
``99.9`` becomes ``Decimal("99.9")`` exactly instead of passing through a float.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import cast, get_args
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from slo.filters import FilterError, check_key, equality, parse_filter
from slo.model import (
    DAY_S,
    MINUTE_S,
    NO_DATA_ACTIONS,
    AlertPolicy,
    Budgeting,
    BudgetingMethod,
    BurnRule,
    CalendarUnit,
    Filter,
    LogFilter,
    LogSli,
    MetricSelector,
    MetricSli,
    Sli,
    Slo,
    SpanKind,
    SpanSli,
    Window,
    default_rules,
    format_duration,
    parse_duration,
)
from store.tenancy import check_tenant

NATIVE_API_VERSION = "sloscope/v1"
OPENSLO_API_VERSION = "openslo/v1"

_TAG = "tag:yaml.org,2002:"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEVERITY = re.compile(r"^[a-z][a-z0-9_-]*$")
_METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$")
#: Labels the exported metrics and alerts already carry; an SLO label of the same name would clash.
RESERVED_LABELS = ("slo", "service", "severity", "slo_instance")
CALENDAR_UNITS: tuple[str, ...] = get_args(CalendarUnit)
SPAN_KINDS: tuple[str, ...] = get_args(SpanKind)
#: OTLP severity numbers of the short names (each name covers four numbers: ERROR..ERROR4 = 17..20).
SEVERITIES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}
_SEVERITY_NAME = re.compile(r"^([A-Z]+)([2-4]?)$")


# -- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SpecError:
    """One problem in a spec: ``file:line: field: problem`` (line 0 when no line applies)."""

    file: str
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.problem}"


@dataclass(frozen=True)
class NameSite:
    """Where an SLO's name is written."""

    name: str
    file: str
    line: int
    field: str


class SpecErrors(Exception):
    """Raised by :func:`load_slos` with every error found."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def join(path: str, key: str) -> str:
    """``slos[0]`` + ``name`` -> ``slos[0].name`` (and a bare key at the root)."""
    return f"{path}.{key}" if path else key


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` was probably meant to be, for "did you mean" hints."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def one_of(word: str, choices: Sequence[str]) -> str:
    """The tail of an "unknown X" message: a suggestion, else the list of what is allowed."""
    guess = closest(word, choices)
    if guess is None:  # 'Slo' for 'SLO', 'error' for 'ERROR'
        lowered = {choice.lower(): choice for choice in choices}
        found = closest(word.lower(), lowered)
        guess = lowered[found] if found else None
    if guess:
        return f"did you mean {guess!r}?"
    return "expected one of " + ", ".join(choices)


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "nothing"
    return repr(node.value)


# -- reading YAML nodes ------------------------------------------------------------------------


class Fields(dict[str, Node]):
    """A checked mapping: value nodes by key, and ``key_nodes`` the key nodes (for their lines)."""

    def __init__(self, node: MappingNode) -> None:
        super().__init__()
        self.node = node
        self.key_nodes: dict[str, Node] = {}


@dataclass
class Reader:
    """Reads the nodes of one file and records problems instead of raising, so that one run reports
    them all. Each ``read`` method returns None after recording an error; absent (None) nodes are
    passed through as None without an error, because required keys are reported by :meth:`mapping`.
    """

    file: str
    errors: list[SpecError] = field(default_factory=list)
    #: Where every SLO name is written (also of SLOs with errors), for the duplicate check.
    names: list[NameSite] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.errors)

    def name_site(self, node: Node, path: str, name: str) -> None:
        self.names.append(NameSite(name, self.file, node.start_mark.line + 1, path))

    def error(self, node: Node | None, path: str, problem: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.errors.append(SpecError(self.file, line, path or "(document)", problem))

    def mapping(
        self, node: Node | None, path: str, known: Sequence[str], required: Sequence[str] = ()
    ) -> Fields | None:
        """The keys of a mapping node. Unknown and duplicate keys are errors, missing required keys
        too; a key whose value is empty (null) counts as absent."""
        if node is None:
            return None
        if not isinstance(node, MappingNode):
            self.error(node, path, f"must be a mapping, got {_describe(node)}")
            return None
        seen: set[str] = set()
        for key_node, _ in node.value:
            # Merge keys (<<: *anchor) are expanded below; an explicit key may override them.
            if isinstance(key_node, ScalarNode) and key_node.tag != _TAG + "merge":
                if key_node.value in seen:
                    self.error(key_node, join(path, key_node.value), "duplicate key")
                seen.add(key_node.value)
        try:
            yaml.constructor.SafeConstructor().flatten_mapping(node)
        except yaml.constructor.ConstructorError as exc:
            self.error(node, path, str(exc.problem))
            return None
        fields = Fields(node)
        empty: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, path, "keys must be text")
                continue
            key = key_node.value
            if key not in known:
                self.error(key_node, join(path, key), f"unknown key {key!r} ({one_of(key, known)})")
                continue
            fields.key_nodes[key] = key_node
            if value_node.tag == _TAG + "null":
                empty[key] = value_node
                fields.pop(key, None)
                continue
            fields[key] = value_node
        for key in required:
            if key in fields:
                continue
            if key in empty:
                self.error(empty[key], join(path, key), "must not be empty")
            else:
                self.error(node, join(path, key), "is required")
        return fields

    def scalar(self, node: Node | None, path: str, what: str) -> ScalarNode | None:
        if node is None:
            return None
        if not isinstance(node, ScalarNode) or node.tag == _TAG + "null":
            self.error(node, path, f"must be {what}, got {_describe(node)}")
            return None
        return node

    def text(self, node: Node | None, path: str) -> str | None:
        """A non-empty string (quoted or plain; numbers and booleans are not text)."""
        scalar = self.scalar(node, path, "text")
        if scalar is None:
            return None
        if scalar.tag != _TAG + "str":
            self.error(scalar, path, f"must be text, got {scalar.value!r} (quote it)")
            return None
        if not scalar.value.strip():
            self.error(scalar, path, "must not be empty")
            return None
        return scalar.value

    def raw_text(self, node: Node | None, path: str) -> str | None:
        """Any scalar as written (``tier: 1`` -> ``"1"``): for label and filter values."""
        scalar = self.scalar(node, path, "text")
        return None if scalar is None else scalar.value

    def decimal(self, node: Node | None, path: str) -> Decimal | None:
        """A number exactly as written."""
        scalar = self.scalar(node, path, "a number")
        if scalar is None:
            return None
        if scalar.tag in (_TAG + "int", _TAG + "float"):
            try:
                number = Decimal(scalar.value.replace("_", ""))
            except InvalidOperation:
                number = None
            if number is not None and number.is_finite():
                return number
        self.error(scalar, path, f"must be a number, got {scalar.value!r}")
        return None

    def integer(self, node: Node | None, path: str, minimum: int = 0) -> int | None:
        number = self.decimal(node, path)
        if number is None:
            return None
        if number != number.to_integral_value() or number < minimum:
            self.error(node, path, f"must be a whole number >= {minimum}, got {node.value!r}")  # type: ignore[union-attr]
            return None
        return int(number)

    def boolean(self, node: Node | None, path: str) -> bool | None:
        scalar = self.scalar(node, path, "true or false")
        if scalar is None:
            return None
        if scalar.tag != _TAG + "bool":
            self.error(scalar, path, f"must be true or false, got {scalar.value!r}")
            return None
        return scalar.value.lower() in ("true", "yes", "on")

    def sequence(self, node: Node | None, path: str) -> list[Node] | None:
        if node is None:
            return None
        if not isinstance(node, SequenceNode):
            self.error(node, path, f"must be a list, got {_describe(node)}")
            return None
        return list(node.value)

    def texts(self, node: Node | None, path: str) -> list[tuple[Node, str, str]] | None:
        """A list of texts, or one text standing for a list of one: (node, path, text) each."""
        if node is None:
            return None
        if isinstance(node, ScalarNode):
            value = self.text(node, path)
            return None if value is None else [(node, path, value)]
        items = self.sequence(node, path)
        if items is None:
            return None
        out = []
        for i, item in enumerate(items):
            value = self.text(item, f"{path}[{i}]")
            if value is not None:
                out.append((item, f"{path}[{i}]", value))
        return out if len(out) == len(items) else None

    def duration(self, node: Node | None, path: str, *, whole_minutes: bool = True) -> int | None:
        """``5m``, ``1h``, ``28d``, ``2w`` as seconds; whole minutes unless told otherwise, because
        everything is evaluated on per-minute roll-ups."""
        scalar = self.scalar(node, path, "a duration like 5m, 1h or 28d")
        if scalar is None:
            return None
        try:
            seconds = parse_duration(scalar.value)
        except ValueError as exc:
            self.error(scalar, path, str(exc))
            return None
        if whole_minutes and seconds % MINUTE_S:
            self.error(scalar, path, f"{scalar.value!r} must be a whole number of minutes")
            return None
        return seconds

    def name(self, node: Node | None, path: str) -> str | None:
        value = self.text(node, path)
        if value is not None and not _NAME.match(value):
            self.error(
                node,
                path,
                f"{value!r} is not a valid name (letters, digits, '.', '_' and '-', starting and ending "
                "with a letter or digit, at most 128 characters)",
            )
            return None
        return value

    def time_zone(self, node: Node | None, path: str) -> str | None:
        value = self.text(node, path)
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
            guess = closest(value, zoneinfo.available_timezones())
            hint = f" (did you mean {guess!r}?)" if guess else " (use an IANA name like Europe/Berlin)"
            self.error(node, path, f"unknown time zone {value!r}{hint}")
            return None
        return value


# -- pieces shared by the native format and OpenSLO --------------------------------------------


def exact_percent(number: Decimal) -> Decimal:
    """``99.900`` -> ``99.9`` and ``90.0`` -> ``90`` without exponent notation (``9E+1``)."""
    number = number.normalize()
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number


def read_objective(r: Reader, node: Node | None, path: str, scale: int = 1) -> Decimal | None:
    """An objective as a percentage, 0 < x < 100; ``scale`` 100 reads a ratio (OpenSLO's target)."""
    number = r.decimal(node, path)
    if number is None:
        return None
    # The range check comes first: exact_percent cannot quantize a number as large as 1e308.
    percent = number * scale
    if not 0 < percent < 100:
        if scale == 1:
            r.error(
                node, path, f"must be a percentage between 0 and 100 (exclusive), e.g. 99.9; got {number}"
            )
        else:
            r.error(node, path, f"must be a ratio between 0 and 1 (exclusive), e.g. 0.999; got {number}")
        return None
    return exact_percent(percent)


def read_slice_target(r: Reader, node: Node | None, path: str, scale: int = 1) -> Fraction | None:
    """A slice target as an exact ratio, 0 < x <= 1 (given in percent, or as a ratio with scale 100)."""
    number = r.decimal(node, path)
    if number is None:
        return None
    percent = number * scale
    if not 0 < percent <= 100:
        unit = "percentage between 0 (exclusive) and 100, e.g. 95" if scale == 1 else "ratio in (0, 1]"
        r.error(node, path, f"must be a {unit}; got {number}")
        return None
    return Fraction(percent) / 100


def check_slice(r: Reader, node: Node | None, path: str, slice_s: int, window: Window | None) -> bool:
    """A slice must tile the window: divide a rolling window, and divide an hour for a calendar
    window (a calendar period is whole local days, and a day across a DST change has 23 or 25
    hours, so only slices that divide an hour tile every period)."""
    if window is None:
        return True
    if window.is_calendar:
        if 3600 % slice_s:
            r.error(
                node,
                path,
                f"{format_duration(slice_s)} does not divide 1h: slices of a calendar window must divide "
                "an hour (periods have 23- and 25-hour days across DST changes)",
            )
            return False
    elif window.rolling_s is not None and window.rolling_s % slice_s:
        r.error(node, path, f"{format_duration(slice_s)} does not divide the window {window.label}")
        return False
    return True


def read_filters(r: Reader, node: Node | None, path: str) -> tuple[Filter, ...] | None:
    """Filters: a list of ``key op value`` texts (or ``{key: value}`` mappings for equality), a
    single text, or one mapping of equalities."""
    if node is None:
        return ()
    if isinstance(node, MappingNode):
        return _equalities(r, node, path)
    items = [node] if isinstance(node, ScalarNode) else r.sequence(node, path)
    if items is None:
        return None
    start = r.count
    out: list[Filter] = []
    for i, item in enumerate(items):
        item_path = path if item is node else f"{path}[{i}]"
        if isinstance(item, MappingNode):
            out.extend(_equalities(r, item, item_path) or ())
            continue
        text = r.text(item, item_path)
        if text is None:
            continue
        try:
            out.append(parse_filter(text))
        except FilterError as exc:
            r.error(item, item_path, str(exc))
    return tuple(out) if r.count == start else None


def _equalities(r: Reader, node: MappingNode, path: str) -> tuple[Filter, ...] | None:
    start = r.count
    out: list[Filter] = []
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else ""
        value = r.raw_text(value_node, join(path, key))
        if value is None:
            continue
        try:
            out.append(equality(key, value))
        except FilterError as exc:
            r.error(key_node, join(path, key), str(exc))
    return tuple(out) if r.count == start else None


SPAN_SELECTION_KEYS = ("operation", "kinds", "filters")
SPAN_BAD_KEYS = ("error", "status", "latency_ms")


def read_span_selection(r: Reader, fields: Fields, path: str) -> SpanSli | None:
    """``operation``, ``kinds`` and ``filters`` of a spans source (no bad criteria yet)."""
    start = r.count
    operation = r.text(fields.get("operation"), join(path, "operation"))
    kinds: list[SpanKind] = []
    for node, item_path, value in r.texts(fields.get("kinds"), join(path, "kinds")) or ():
        kind = value.upper()
        if kind not in SPAN_KINDS:
            r.error(node, item_path, f"unknown span kind {value!r} ({one_of(kind, SPAN_KINDS)})")
        elif kind not in kinds:
            kinds.append(cast(SpanKind, kind))
    filters = read_filters(r, fields.get("filters"), join(path, "filters"))
    if r.count > start or filters is None:
        return None
    return SpanSli(operation=operation, kinds=tuple(kinds), filters=filters)


def read_span_bad(r: Reader, node: Node | None, path: str) -> SpanSli | None:
    """The bad criteria of a spans source, as a SpanSli carrying only them."""
    fields = r.mapping(node, path, SPAN_BAD_KEYS)
    if fields is None:
        return None
    start = r.count
    error = r.boolean(fields.get("error"), join(path, "error"))
    status = read_filters(r, fields.get("status"), join(path, "status"))
    latency = r.decimal(fields.get("latency_ms"), join(path, "latency_ms"))
    if latency is not None and latency <= 0:
        r.error(fields["latency_ms"], join(path, "latency_ms"), f"must be above 0, got {latency}")
    if r.count > start or status is None:
        return None
    if not error and not status and latency is None:
        r.error(node, path, "needs at least one bad criterion: error: true, status or latency_ms")
        return None
    return SpanSli(
        bad_error=bool(error), bad_status=status, bad_latency_ms=None if latency is None else float(latency)
    )


def read_spans(r: Reader, node: Node | None, path: str) -> SpanSli | None:
    fields = r.mapping(node, path, (*SPAN_SELECTION_KEYS, "bad"), required=("bad",))
    if fields is None:
        return None
    selection = read_span_selection(r, fields, path)
    bad = read_span_bad(r, fields.get("bad"), join(path, "bad"))
    if selection is None or bad is None:
        return None
    return SpanSli(
        operation=selection.operation,
        kinds=selection.kinds,
        filters=selection.filters,
        bad_error=bad.bad_error,
        bad_status=bad.bad_status,
        bad_latency_ms=bad.bad_latency_ms,
    )


LOG_FILTER_KEYS = ("severity_min", "filters", "body")


def read_severity(r: Reader, node: Node | None, path: str) -> int | None:
    """An OTLP severity number 1..24, or a name: TRACE DEBUG INFO WARN ERROR FATAL, optionally with
    2-4 (``ERROR2`` is 18), case-insensitive."""
    scalar = r.scalar(node, path, "a severity name or number")
    if scalar is None:
        return None
    if scalar.tag == _TAG + "int":
        number = r.integer(scalar, path, minimum=1)
        if number is not None and number > 24:
            r.error(scalar, path, f"severity numbers are 1..24, got {number}")
            return None
        return number
    match = _SEVERITY_NAME.match(scalar.value.strip().upper())
    if match and match.group(1) in SEVERITIES:
        return SEVERITIES[match.group(1)] + int(match.group(2) or 1) - 1
    names = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
    r.error(scalar, path, f"unknown severity {scalar.value!r} ({one_of(scalar.value.upper(), names)})")
    return None


def read_log_filter(r: Reader, node: Node | None, path: str, *, narrowing: bool) -> LogFilter | None:
    """A log filter; ``narrowing`` (the bad side) requires at least one criterion, because an empty
    bad filter would count every record as bad."""
    fields = r.mapping(node, path, LOG_FILTER_KEYS)
    if fields is None:
        return None
    start = r.count
    severity = read_severity(r, fields.get("severity_min"), join(path, "severity_min"))
    filters = read_filters(r, fields.get("filters"), join(path, "filters"))
    body = r.text(fields.get("body"), join(path, "body"))
    if r.count > start or filters is None:
        return None
    if narrowing and severity is None and not filters and body is None:
        r.error(node, path, "needs at least one bad criterion: severity_min, filters or body")
        return None
    return LogFilter(severity_min=severity or 0, filters=filters, body=body)


def read_logs(r: Reader, node: Node | None, path: str) -> LogSli | None:
    fields = r.mapping(node, path, ("total", "bad"), required=("bad",))
    if fields is None:
        return None
    total = read_log_filter(r, fields.get("total"), join(path, "total"), narrowing=False)
    bad = read_log_filter(r, fields.get("bad"), join(path, "bad"), narrowing=True)
    if "total" not in fields:
        total = LogFilter()  # every log record of the service
    if total is None or bad is None:
        return None
    return LogSli(total=total, bad=bad)


def read_metric_selector(r: Reader, node: Node | None, path: str) -> MetricSelector | None:
    """A metric by name: ``http.server.requests`` or ``{name: ..., filters: [...]}``."""
    if node is None:
        return None
    if isinstance(node, ScalarNode):
        name, filters = r.text(node, path), ()
        name_node, name_path = node, path
    else:
        fields = r.mapping(node, path, ("name", "filters"), required=("name",))
        if fields is None:
            return None
        name_node, name_path = fields.get("name"), join(path, "name")
        name = r.text(name_node, name_path)
        filters = read_filters(r, fields.get("filters"), join(path, "filters"))
    if name is not None and not _METRIC_NAME.match(name):
        r.error(name_node, name_path, f"{name!r} is not an OpenTelemetry metric name")
        return None
    if name is None or filters is None:
        return None
    return MetricSelector(name=name, filters=filters)


def read_metrics(r: Reader, node: Node | None, path: str) -> MetricSli | None:
    fields = r.mapping(node, path, ("total", "good", "bad", "histogram", "threshold"))
    if fields is None:
        return None
    start = r.count
    if "histogram" in fields:
        for key in ("total", "good", "bad"):
            if key in fields:
                r.error(
                    fields.key_nodes[key],
                    join(path, key),
                    "not with histogram: a histogram SLI has "
                    "histogram and threshold, a counter SLI has total and good or bad",
                )
        histogram = read_metric_selector(r, fields.get("histogram"), join(path, "histogram"))
        threshold = r.decimal(fields.get("threshold"), join(path, "threshold"))
        if "threshold" not in fields:
            r.error(
                fields.node,
                join(path, "threshold"),
                "is required with histogram (a bucket bound, in the metric's unit)",
            )
        if r.count > start or histogram is None or threshold is None:
            return None
        return MetricSli(total=histogram, threshold=float(threshold))
    if "total" not in fields:
        r.error(fields.node, path, "needs total with good or bad (counters), or histogram with threshold")
        return None
    if "threshold" in fields:
        r.error(fields.key_nodes["threshold"], join(path, "threshold"), "only with histogram")
    if ("good" in fields) == ("bad" in fields):
        problem = "give good or bad, not both" if "good" in fields else "needs good or bad next to total"
        r.error(fields.key_nodes.get("bad") or fields.node, path, problem)
    total = read_metric_selector(r, fields.get("total"), join(path, "total"))
    good = read_metric_selector(r, fields.get("good"), join(path, "good"))
    bad = read_metric_selector(r, fields.get("bad"), join(path, "bad"))
    if r.count > start or total is None:
        return None
    return MetricSli(total=total, good=good, bad=bad)


SLI_SOURCES = ("spans", "logs", "metrics")


def read_sli(r: Reader, node: Node | None, path: str) -> Sli | None:
    """``sli:`` with exactly one of ``spans``, ``logs``, ``metrics``."""
    fields = r.mapping(node, path, SLI_SOURCES)
    if fields is None:
        return None
    given = [key for key in SLI_SOURCES if key in fields]
    if not given:
        r.error(fields.node, path, "needs one of spans, logs or metrics")
        return None
    if len(given) > 1:
        r.error(
            fields.key_nodes[given[1]],
            path,
            f"has both {given[0]} and {given[1]}: give exactly one of spans, "
            "logs or metrics (one SLO per source)",
        )
        return None
    source = given[0]
    reader = {"spans": read_spans, "logs": read_logs, "metrics": read_metrics}[source]
    return reader(r, fields[source], join(path, source))


# -- annotations -------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
PLACEHOLDERS = ("name", "service", "objective", "window", "description")


def fill_placeholders(
    r: Reader, node: Node, path: str, text: str, values: dict[str, str], labels: dict[str, str] | None
) -> str | None:
    """Replace ``{{ name }}``, ``{{ service }}``, ``{{ objective }}``, ``{{ window }}``,
    ``{{ description }}`` and ``{{ labels.KEY }}``; anything else is an error. This is plain
    substitution, not a template language: a runbook URL must not run code. ``labels`` None means
    the labels had errors already, so label placeholders are not checked again."""
    ok = True

    def substitute(match: re.Match[str]) -> str:
        nonlocal ok
        name = match.group(1).strip()
        if name in values:
            return values[name]
        if name.startswith("labels."):
            key = name[len("labels.") :]
            if labels is None:
                return ""
            if key in labels:
                return labels[key]
            known = ", ".join(labels) or "none"
            r.error(node, path, f"unknown placeholder {{{{ {name} }}}}: no label {key!r} (labels: {known})")
        else:
            guess = closest(name, [*PLACEHOLDERS, *(f"labels.{k}" for k in labels or ())])
            hint = (
                f"did you mean {{{{ {guess} }}}}?"
                if guess
                else "use " + ", ".join(f"{{{{ {p} }}}}" for p in (*PLACEHOLDERS, "labels.KEY"))
            )
            r.error(node, path, f"unknown placeholder {{{{ {name} }}}} ({hint})")
        ok = False
        return ""

    filled = _PLACEHOLDER.sub(substitute, text)
    if "{{" in _PLACEHOLDER.sub("", text):
        r.error(node, path, "unterminated placeholder: '{{' without '}}'")
        ok = False
    return filled if ok else None


URL_ANNOTATIONS = ("runbook_url", "dashboard_url")


def read_annotations(
    r: Reader, node: Node | None, path: str, values: dict[str, str], labels: dict[str, str] | None
) -> tuple[tuple[str, str], ...] | None:
    """Annotations: any text keys (``runbook_url`` and ``dashboard_url`` must be http(s) URLs or
    paths on the server), placeholders filled."""
    if node is None:
        return ()
    if not isinstance(node, MappingNode):
        r.error(node, path, f"must be a mapping, got {_describe(node)}")
        return None
    start = r.count
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else ""
        item_path = join(path, key)
        if key in seen:
            r.error(key_node, item_path, "duplicate key")
            continue
        seen.add(key)
        try:
            check_key(key)
        except FilterError:
            r.error(
                key_node,
                item_path,
                f"{key!r} is not an annotation name (letters, digits, '_', '.', '-', '/')",
            )
            continue
        text = r.text(value_node, item_path)
        if text is None:
            continue
        filled = fill_placeholders(r, value_node, item_path, text, values, labels)
        if filled is None:
            continue
        if key in URL_ANNOTATIONS:
            # A path is on the sloscope server (/runbooks/x): links then follow its address.
            if not (is_http_url(filled) or is_server_path(filled)):
                r.error(
                    value_node,
                    item_path,
                    f"must be an http(s) URL or a path on this server (/runbooks/NAME), got {filled!r}",
                )
                continue
        out.append((key, filled))
    return tuple(out) if r.count == start else None


def is_http_url(text: str) -> bool:
    """An absolute http(s) URL (``http://[`` is none: urlsplit raises on it)."""
    try:
        url = urlsplit(text)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.netloc)


def is_server_path(text: str) -> bool:
    """A URL relative to the server: ``/docs/runbooks/x.md`` or ``runbooks/x.md``. No scheme, no
    host (``//host/x`` is none), no white space (``see the wiki`` is text, not a link)."""
    try:
        url = urlsplit(text)
    except ValueError:
        return False
    if url.scheme or url.netloc or text.startswith("//") or not url.path:
        return False
    return not any(c.isspace() or ord(c) < 32 for c in text)


def read_labels(r: Reader, node: Node | None, path: str, *, lists: bool = False) -> dict[str, str] | None:
    """Labels: Prometheus label names (they become labels of the exported metrics and alerts) with
    text values; ``slo``, ``service`` and ``severity`` are taken. ``lists`` also accepts a list of
    one text (OpenSLO allows lists; a label here has one value)."""
    if node is None:
        return {}
    if not isinstance(node, MappingNode):
        r.error(node, path, f"must be a mapping, got {_describe(node)}")
        return None
    start = r.count
    out: dict[str, str] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else ""
        item_path = join(path, key)
        if key in out:
            r.error(key_node, item_path, "duplicate key")
        elif not _LABEL_NAME.match(key):
            r.error(
                key_node,
                item_path,
                f"{key!r} is not a label name (letters, digits and '_', not starting with a digit)",
            )
        elif key in RESERVED_LABELS:
            r.error(key_node, item_path, f"{key!r} is reserved (every SLO's alerts carry it already)")
        else:
            if lists and isinstance(value_node, SequenceNode):
                if len(value_node.value) != 1:
                    r.error(
                        value_node, item_path, f"a label has one value, got a list of {len(value_node.value)}"
                    )
                    continue
                value_node = value_node.value[0]
            value = r.raw_text(value_node, item_path)
            if value is not None:
                out[key] = value
    return out if r.count == start else None


def read_group_by(r: Reader, node: Node | None, path: str) -> tuple[str, ...] | None:
    items = r.texts(node, path)
    if items is None:
        return () if node is None else None
    out: list[str] = []
    start = r.count
    for item, item_path, key in items:
        try:
            check_key(key)
        except FilterError as exc:
            r.error(item, item_path, str(exc))
            continue
        if key in out:
            r.error(item, item_path, f"{key!r} is listed twice")
        out.append(key)
    return tuple(out) if r.count == start else None


# -- the native format -------------------------------------------------------------------------

SLO_KEYS = (
    "name",
    "service",
    "description",
    "labels",
    "objective",
    "window",
    "budgeting",
    "sli",
    "group_by",
    "annotations",
    "alerting",
    "tenant",
)
BUDGETING_METHODS: tuple[str, ...] = get_args(BudgetingMethod)


def read_window(r: Reader, node: Node | None, path: str) -> Window | None:
    """``30d`` (rolling), ``{rolling: 28d}``, or ``{calendar: month, time_zone: Europe/Berlin}``."""
    if node is None:
        return Window(rolling_s=30 * DAY_S)
    if isinstance(node, ScalarNode):
        if node.value in CALENDAR_UNITS:
            r.error(
                node,
                path,
                f"{node.value!r} is not a duration; a calendar {node.value} is "
                f"{{calendar: {node.value}, time_zone: ...}}",
            )
            return None
        seconds = r.duration(node, path)
        return None if seconds is None else Window(rolling_s=seconds)
    fields = r.mapping(node, path, ("rolling", "calendar", "time_zone"))
    if fields is None:
        return None
    if ("rolling" in fields) == ("calendar" in fields):
        r.error(
            fields.node,
            path,
            "give either rolling: <duration> or calendar: week|month|quarter"
            + (", not both" if "rolling" in fields else ""),
        )
        return None
    if "rolling" in fields:
        if "time_zone" in fields:
            r.error(fields.key_nodes["time_zone"], join(path, "time_zone"), "only for calendar windows")
            return None
        seconds = r.duration(fields["rolling"], join(path, "rolling"))
        return None if seconds is None else Window(rolling_s=seconds)
    return read_calendar(
        r, fields["calendar"], join(path, "calendar"), fields.get("time_zone"), join(path, "time_zone")
    )


def read_calendar(
    r: Reader, unit_node: Node, unit_path: str, zone_node: Node | None, zone_path: str
) -> Window | None:
    unit = r.text(unit_node, unit_path)
    zone = "UTC" if zone_node is None else r.time_zone(zone_node, zone_path)
    if unit is not None and unit not in CALENDAR_UNITS:
        r.error(unit_node, unit_path, f"unknown calendar period {unit!r} ({one_of(unit, CALENDAR_UNITS)})")
        return None
    if unit is None or zone is None:
        return None
    return Window(calendar=cast(CalendarUnit, unit), time_zone=zone)


def read_budgeting(r: Reader, node: Node | None, path: str, window: Window | None) -> Budgeting | None:
    """``occurrences`` (default), ``{method: timeslices, slice: 5m, slice_target: 95}`` or
    ``{method: ratio_timeslices, slice: 5m}``."""
    if node is None:
        return Budgeting()
    if isinstance(node, ScalarNode):
        method = r.text(node, path)
        if method == "occurrences":
            return Budgeting()
        if method in BUDGETING_METHODS:
            example = "slice: 5m, slice_target: 95" if method == "timeslices" else "slice: 5m"
            r.error(node, path, f"{method} needs a slice: write {{method: {method}, {example}}}")
        elif method is not None:
            r.error(node, path, f"unknown budgeting method {method!r} ({one_of(method, BUDGETING_METHODS)})")
        return None
    fields = r.mapping(node, path, ("method", "slice", "slice_target"), required=("method",))
    if fields is None:
        return None
    method = r.text(fields.get("method"), join(path, "method"))
    if method is None:
        return None
    if method not in BUDGETING_METHODS:
        r.error(
            fields["method"],
            join(path, "method"),
            f"unknown budgeting method {method!r} ({one_of(method, BUDGETING_METHODS)})",
        )
        return None
    start = r.count
    wants = {"occurrences": (), "timeslices": ("slice", "slice_target"), "ratio_timeslices": ("slice",)}
    for key in ("slice", "slice_target"):
        if key in wants[method] and key not in fields:
            r.error(fields.node, join(path, key), f"is required for {method}")
        elif key not in wants[method] and key in fields:
            r.error(fields.key_nodes[key], join(path, key), f"not used by {method}")
    slice_s = r.duration(fields.get("slice"), join(path, "slice"))
    target = read_slice_target(r, fields.get("slice_target"), join(path, "slice_target"))
    if slice_s is not None:
        check_slice(r, fields["slice"], join(path, "slice"), slice_s, window)
    if r.count > start:
        return None
    return Budgeting(method=cast(BudgetingMethod, method), slice_s=slice_s or MINUTE_S, slice_target=target)


def read_rules(r: Reader, node: Node | None, path: str) -> tuple[BurnRule, ...] | None:
    items = r.sequence(node, path)
    if items is None:
        return None
    start = r.count
    rules: list[BurnRule] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        fields = r.mapping(
            item,
            item_path,
            ("severity", "long", "short", "factor", "keep_firing_for"),
            required=("severity", "long", "short", "factor"),
        )
        if fields is None:
            continue
        severity = read_severity_label(r, fields.get("severity"), join(item_path, "severity"))
        keep_s = read_keep_firing_for(r, fields.get("keep_firing_for"), join(item_path, "keep_firing_for"))
        long_s = r.duration(fields.get("long"), join(item_path, "long"))
        short_s = r.duration(fields.get("short"), join(item_path, "short"))
        factor = r.decimal(fields.get("factor"), join(item_path, "factor"))
        if factor is not None and factor <= 0:
            r.error(fields["factor"], join(item_path, "factor"), f"must be above 0, got {factor}")
            factor = None
        if long_s is not None and short_s is not None and short_s >= long_s:
            r.error(
                fields["short"],
                join(item_path, "short"),
                f"must be shorter than long ({format_duration(long_s)})",
            )
            continue
        if severity is None or long_s is None or short_s is None or factor is None:
            continue
        rules.append(BurnRule(severity, long_s, short_s, Fraction(factor), keep_s))
    return tuple(rules) if r.count == start else None


def read_keep_firing_for(r: Reader, node: Node | None, path: str) -> int | None:
    """A resolve hold-down: a duration in whole minutes, or ``0``."""
    if isinstance(node, ScalarNode) and node.value == "0":
        return 0
    return r.duration(node, path)


def _keys(node: MappingNode) -> list[str]:
    """Every key of a mapping, those merged in by ``<<: *anchor`` included."""
    out = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode):
            continue
        if key_node.tag == _TAG + "merge":
            merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            out += [k for m in merged if isinstance(m, MappingNode) for k in _keys(m)]
        else:
            out.append(key_node.value)
    return out


def read_keep_by_severity(
    r: Reader, node: MappingNode, path: str, severities: Sequence[str] | None
) -> tuple[tuple[str, int], ...] | None:
    """``{page: 60m, ticket: 0}``: a hold-down per severity. Each key must be a severity of the
    policy's rules (``severities``; None when the rules had errors, then only the durations are
    checked), so a typo cannot silently leave pages without their hold."""
    fields = r.mapping(node, path, _keys(node))
    if fields is None:
        return None
    start = r.count
    out = []
    for severity, value in fields.items():
        key_path = join(path, severity)
        if severities is not None and severity not in severities:
            problem = f"no rule has severity {severity!r} ({one_of(severity, severities)})"
            r.error(fields.key_nodes[severity], key_path, problem)
            continue
        seconds = read_keep_firing_for(r, value, key_path)
        if seconds is not None:
            out.append((severity, seconds))
    return tuple(out) if r.count == start else None


def read_severity_label(r: Reader, node: Node | None, path: str) -> str | None:
    """An alert severity: a lower-case word (``page``, ``ticket``, ``critical``), routed on by the
    notification policy."""
    value = r.text(node, path)
    if value is not None and not _SEVERITY.match(value):
        r.error(node, path, f"{value!r} is not a severity (a lower-case word like page or ticket)")
        return None
    return value


def read_alerting(r: Reader, node: Node | None, path: str, window: Window | None) -> AlertPolicy | None:
    """``{rules: [...], keep_firing_for: 10m, min_events: 100, on_no_data: keep}``; without rules the
    SRE Workbook's defaults for the window, and ``rules: []`` for no alerts at all. ``keep_firing_for``
    is one duration for every alert or a mapping per severity (``{page: 60m, ticket: 0}``); a rule may
    carry its own."""
    window_s = window.nominal_s if window else 30 * DAY_S
    if node is None:
        return AlertPolicy(rules=default_rules(window_s))
    fields = r.mapping(node, path, ("rules", "keep_firing_for", "min_events", "on_no_data"))
    if fields is None:
        return None
    start = r.count
    if "rules" in fields:
        rules = read_rules(r, fields["rules"], join(path, "rules"))
    else:
        rules = default_rules(window_s)
    keep = fields.get("keep_firing_for")
    keep_s: int | None = None
    by_severity: tuple[tuple[str, int], ...] | None = ()
    if isinstance(keep, SequenceNode):
        r.error(keep, join(path, "keep_firing_for"), "must be a duration like 10m, or per severity: {page: 60m}")
    elif isinstance(keep, MappingNode):
        # A rule-less policy still has the no-data alert, of severity page (alerts/state.py).
        severities = None if rules is None else list(dict.fromkeys(x.severity for x in rules)) or ["page"]
        by_severity = read_keep_by_severity(r, keep, join(path, "keep_firing_for"), severities)
    else:
        keep_s = read_keep_firing_for(r, keep, join(path, "keep_firing_for"))
    min_events = r.integer(fields.get("min_events"), join(path, "min_events"))
    on_no_data = r.text(fields.get("on_no_data"), join(path, "on_no_data"))
    if on_no_data is not None and on_no_data not in NO_DATA_ACTIONS:
        r.error(
            fields["on_no_data"],
            join(path, "on_no_data"),
            f"unknown action {on_no_data!r} ({one_of(on_no_data, NO_DATA_ACTIONS)})",
        )
    if r.count > start or rules is None or by_severity is None:
        return None
    return AlertPolicy(
        rules=rules,
        keep_firing_for_s=keep_s or 0,
        min_events=min_events or 0,
        on_no_data=on_no_data or "keep",
        keep_firing_for_by_severity=by_severity,
    )


def placeholder_values(
    name: str, service: str, objective: Decimal | None, window: Window | None, description: str
) -> dict[str, str]:
    return {
        "name": name,
        "service": service,
        "objective": "" if objective is None else str(objective),
        "window": window.label if window else "",
        "description": description,
    }


def read_tenant(r: Reader, node: Node | None, path: str) -> str | None:
    """The tenant whose data an SLO reads (store/tenancy.py names); "" when not given."""
    if node is None:
        return ""
    text = r.text(node, path)
    if text is None:
        return None
    try:
        return check_tenant(text)
    except ValueError as exc:
        r.error(node, path, str(exc))
        return None


def read_native_slo(r: Reader, node: Node, path: str) -> Slo | None:
    start = r.count  # before the mapping: a missing required key is an error of this SLO too
    fields = r.mapping(node, path, SLO_KEYS, required=("name", "service", "objective", "sli"))
    if fields is None:
        return None
    name = r.name(fields.get("name"), join(path, "name"))
    if name is not None:
        r.name_site(fields["name"], join(path, "name"), name)
    service = r.text(fields.get("service"), join(path, "service"))
    description = r.text(fields.get("description"), join(path, "description"))
    labels = read_labels(r, fields.get("labels"), join(path, "labels"))
    objective = read_objective(r, fields.get("objective"), join(path, "objective"))
    window = read_window(r, fields.get("window"), join(path, "window"))
    budgeting = read_budgeting(r, fields.get("budgeting"), join(path, "budgeting"), window)
    sli = read_sli(r, fields.get("sli"), join(path, "sli"))
    group_by = read_group_by(r, fields.get("group_by"), join(path, "group_by"))
    alerting = read_alerting(r, fields.get("alerting"), join(path, "alerting"), window)
    values = placeholder_values(name or "", service or "", objective, window, description or "")
    annotations = read_annotations(r, fields.get("annotations"), join(path, "annotations"), values, labels)
    tenant = read_tenant(r, fields.get("tenant"), join(path, "tenant"))
    if r.count > start:
        return None
    assert name and service and objective is not None and window and budgeting and sli
    assert labels is not None and group_by is not None and alerting and annotations is not None
    return Slo(
        name=name,
        service=service,
        objective=objective,
        sli=sli,
        window=window,
        budgeting=budgeting,
        description=description or "",
        labels=tuple(labels.items()),
        annotations=annotations,
        group_by=group_by,
        alerting=alerting,
        tenant=tenant or "",
        source=f"{r.file}:{node.start_mark.line + 1}",
    )


def read_native(r: Reader, root: MappingNode) -> list[Slo]:
    """A native document: ``slos:`` (and optionally ``apiVersion: sloscope/v1``). Top-level keys
    starting with ``x-`` are ignored, as in Docker Compose, so they can hold YAML anchors."""
    extensions = [k.value for k, _ in root.value if isinstance(k, ScalarNode) and k.value.startswith("x-")]
    fields = r.mapping(root, "", ("apiVersion", "slos", *extensions), required=("slos",))
    if fields is None:
        return []
    items = r.sequence(fields.get("slos"), "slos")
    out = []
    for i, item in enumerate(items or ()):
        loaded = read_native_slo(r, item, f"slos[{i}]")
        if loaded:
            out.append(loaded)
    return out


# -- files and directories ---------------------------------------------------------------------


def spec_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.yaml``/``*.yml`` files directly in the directory, sorted."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def _api_version(r: Reader, root: MappingNode) -> str | None:
    """The document's ``apiVersion`` (None if it has none); an error for an unknown one."""
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "apiVersion":
            version = r.text(value_node, "apiVersion")
            if version is None:
                return "?"
            if version not in (NATIVE_API_VERSION, OPENSLO_API_VERSION):
                r.error(
                    value_node,
                    "apiVersion",
                    f"unknown apiVersion {version!r} (expected "
                    f"{NATIVE_API_VERSION} for this format or {OPENSLO_API_VERSION} for OpenSLO)",
                )
                return "?"
            return version
    return None


def load(path: str | Path) -> tuple[list[Slo], list[SpecError]]:
    """Every SLO under ``path`` and every error found; the SLOs are only meaningful without errors.
    Files are read in sorted order, and SLOs keep their order within each file."""
    from slo import openslo  # it builds on this module's readers, so it imports this module first

    path = Path(path)
    errors: list[SpecError] = []
    if not path.exists():
        return [], [SpecError(str(path), 0, "(path)", "no such file or directory")]
    files = spec_files(path)
    if not files:
        return [], [SpecError(str(path), 0, "(path)", "no *.yaml or *.yml files in this directory")]
    slos: list[Slo] = []
    names: list[NameSite] = []
    documents = openslo.Documents()
    for file in files:
        r = Reader(str(file), errors, names)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            r.error(None, "(file)", f"cannot be read: {exc}")
            continue
        count = 0
        try:
            for root in yaml.compose_all(text, Loader=yaml.SafeLoader):
                if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null"):
                    continue  # an empty document, e.g. after a trailing '---'
                count += 1
                if isinstance(root, SequenceNode):
                    # OpenSLO tools also write a list of objects in one document.
                    for i, item in enumerate(root.value):
                        documents.add(r, item, f"[{i}]")
                    continue
                if not isinstance(root, MappingNode):
                    r.error(
                        root,
                        "(document)",
                        f"must be a mapping with slos: or an OpenSLO object, got {_describe(root)}",
                    )
                    continue
                version = _api_version(r, root)
                if version == OPENSLO_API_VERSION:
                    documents.add(r, root, "")
                elif version == NATIVE_API_VERSION or (version is None and not _has_key(root, "kind")):
                    slos.extend(read_native(r, root))
                elif version is None:
                    r.error(
                        root,
                        "apiVersion",
                        f"is required for an OpenSLO document (apiVersion: {OPENSLO_API_VERSION})",
                    )
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            errors.append(SpecError(str(file), line, "(yaml)", str(exc.problem or exc.context)))
            continue
        except yaml.YAMLError as exc:
            r.error(None, "(yaml)", str(exc))
            continue
        except RecursionError:  # PyYAML composes nested collections recursively
            r.error(None, "(yaml)", "collections are nested too deeply")
            continue
        if not count:
            r.error(None, "(document)", "the file holds no SLOs (it is empty)")
    slos.extend(documents.build())
    first: dict[str, NameSite] = {}
    for site in names:
        if site.name in first:
            where = first[site.name]
            problem = f"duplicate SLO name {site.name!r} (first defined at {where.file}:{where.line})"
            errors.append(SpecError(site.file, site.line, site.field, problem))
        else:
            first[site.name] = site
    # Errors in file order, then by line: the order they are read in is not the order of the file.
    order = {str(file): i for i, file in enumerate(files)}
    errors.sort(key=lambda e: (order.get(e.file, -1), e.line))
    return slos, errors


def _has_key(node: MappingNode, key: str) -> bool:
    return any(isinstance(k, ScalarNode) and k.value == key for k, _ in node.value)


def load_slos(path: str | Path) -> list[Slo]:
    """The SLOs under ``path``; :class:`SpecErrors` with all errors if there is any."""
    slos, errors = load(path)
    if errors:
        raise SpecErrors(errors)
    return slos
