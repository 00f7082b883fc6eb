"""OpenSLO v1 documents -> :mod:`slo.model`, checked as strictly as the native format.

Objects (kinds SLO, SLI, AlertPolicy, AlertCondition, AlertNotificationTarget, Service) refer to one
another by name across every file of a load, so :class:`Documents` first collects all of them and
:meth:`Documents.build` resolves references once everything has been read. Each object reports its
errors against its own file and line.

The mapping onto the model (documented in ``docs/slo-spec.md``):

- ``metricSource.type`` must be ``sloscope``; its ``spec`` holds one of ``spans``, ``logs`` or
  ``metrics`` as in the native format. ``ratioMetric`` combines a ``total`` with a ``good`` or
  ``bad`` of the same source; ``thresholdMetric`` compares span durations (ms) or a histogram's
  bucket bounds with the objective's ``value`` (``op: lte``: at or below is good).
- ``objectives[0].target`` (a ratio) becomes the objective in percent, exactly (0.999 -> 99.9).
- An AlertCondition ``kind: burnrate`` becomes one burn rule: ``lookbackWindow`` is the long
  window, ``alertAfter`` the short one (default: a twelfth of the long window, the SRE Workbook's
  ratio), ``threshold`` the factor.
- The metadata annotation ``sloscope.dev/keep-firing-for`` (OpenSLO has no resolve hold-down) on an
  AlertCondition holds that rule's alert, on an AlertPolicy its conditions that have none, and on an
  SLO every alert of it that neither gives (the native ``keep_firing_for``, per rule and per policy).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import cast

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from slo.model import (
    DAY_S,
    MINUTE_S,
    AlertPolicy,
    Budgeting,
    BudgetingMethod,
    BurnRule,
    CalendarUnit,
    LogSli,
    MetricSelector,
    MetricSli,
    NotificationTarget,
    Sli,
    Slo,
    SpanSli,
    Window,
    default_rules,
    format_duration,
)
from slo.spec import (
    OPENSLO_API_VERSION,
    SPAN_SELECTION_KEYS,
    Fields,
    Reader,
    check_slice,
    join,
    one_of,
    placeholder_values,
    read_annotations,
    read_group_by,
    read_keep_firing_for,
    read_labels,
    read_log_filter,
    read_metric_selector,
    read_objective,
    read_severity_label,
    read_slice_target,
    read_span_bad,
    read_span_selection,
)
from store.tenancy import check_tenant

KINDS = ("SLO", "SLI", "AlertPolicy", "AlertCondition", "AlertNotificationTarget", "Service")
METADATA_KEYS = ("name", "displayName", "labels", "annotations")
BUDGETING = {"Occurrences": "occurrences", "Timeslices": "timeslices", "RatioTimeslices": "ratio_timeslices"}
CALENDAR_DURATIONS: dict[str, CalendarUnit] = {"1w": "week", "1M": "month", "1Q": "quarter"}
#: A metadata annotation of an SLO that sloscope reads instead of keeping: OpenSLO has no grouping.
GROUP_BY_ANNOTATION = "sloscope.dev/group-by"
#: A metadata annotation of an SLO, AlertPolicy or AlertCondition: the resolve hold-down of its alerts
#: (the native ``keep_firing_for``), which OpenSLO has no field for. Read, not kept as an annotation.
KEEP_FIRING_FOR_ANNOTATION = "sloscope.dev/keep-firing-for"
SOURCE_TYPE = "sloscope"


@dataclass
class _Object:
    """One OpenSLO object as written, not yet checked beyond its envelope."""

    r: Reader
    kind: str
    name: str
    path: str
    node: Node
    metadata: Fields
    spec: Node


@dataclass(frozen=True)
class _Indicator:
    """A checked SLI: complete (ratioMetric), or a threshold source waiting for the objective's
    ``value`` (thresholdMetric): a span selection (latency) or a histogram."""

    sli: Sli | None = None
    threshold: SpanSli | MetricSelector | None = None


@dataclass(frozen=True)
class _Policy:
    rules: tuple[BurnRule, ...]
    targets: tuple[NotificationTarget, ...]
    #: ``alertWhenNoData: true``: page when the data cannot be trusted (``on_no_data: alert``).
    alert_when_no_data: bool = False


_MISSING = object()


@dataclass
class Documents:
    """OpenSLO objects of every file of one load."""

    objects: dict[str, dict[str, _Object]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    #: Checked objects by (kind, name); None when the object had errors (already reported).
    parsed: dict[tuple[str, str], object] = field(default_factory=dict)

    def add(self, r: Reader, node: Node, path: str) -> None:
        """Check an object's envelope (apiVersion, kind, metadata) and keep it for :meth:`build`."""
        obj = envelope(r, node, path, kinds=KINDS, top_level=True)
        if obj is None:
            return
        known = self.objects[obj.kind]
        if obj.name in known:
            first = known[obj.name]
            line = first.metadata["name"].start_mark.line + 1
            r.error(
                obj.metadata["name"],
                join(path, "metadata.name"),
                f"duplicate {obj.kind} name {obj.name!r} (first defined at {first.r.file}:{line})",
            )
            return
        known[obj.name] = obj

    def build(self) -> list[Slo]:
        """Check every object, resolve references, and return the SLOs."""
        for kind in ("SLI", "AlertCondition", "AlertNotificationTarget", "Service", "AlertPolicy"):
            for name in self.objects[kind]:
                self.get(kind, name)
        out = []
        for obj in self.objects["SLO"].values():
            loaded = read_slo(self, obj)
            if loaded:
                out.append(loaded)
        return out

    def get(self, kind: str, name: str) -> object:
        """The checked object (None if it had errors), or ``_MISSING``."""
        if (kind, name) not in self.parsed:
            obj = self.objects[kind].get(name)
            if obj is None:
                return _MISSING
            self.parsed[(kind, name)] = None  # guards against a reference cycle
            self.parsed[(kind, name)] = READERS[kind](self, obj)
        return self.parsed[(kind, name)]

    def ref(self, r: Reader, node: Node | None, path: str, kind: str) -> object:
        """Resolve ``xRef: name`` to a checked object, or report that there is none."""
        name = r.text(node, path)
        if name is None:
            return None
        found = self.get(kind, name)
        if found is _MISSING:
            names = list(self.objects[kind])
            hint = one_of(name, names) if names else f"no {kind} objects are defined"
            r.error(node, path, f"no {kind} named {name!r} ({hint})")
            return None
        return found


def envelope(r: Reader, node: Node, path: str, kinds: tuple[str, ...], top_level: bool) -> _Object | None:
    """``apiVersion``, ``kind``, ``metadata`` and ``spec`` of an object; inline objects (in an SLO or a
    policy) may leave out apiVersion and kind."""
    required = ("apiVersion", "kind", "metadata", "spec") if top_level else ("metadata", "spec")
    fields = r.mapping(node, path, ("apiVersion", "kind", "metadata", "spec"), required=required)
    if fields is None:
        return None
    start = r.count
    version = r.text(fields.get("apiVersion"), join(path, "apiVersion"))
    if version is not None and version != OPENSLO_API_VERSION:
        r.error(
            fields["apiVersion"],
            join(path, "apiVersion"),
            f"unknown apiVersion {version!r} (expected {OPENSLO_API_VERSION})",
        )
    kind = r.text(fields.get("kind"), join(path, "kind"))
    if kind is None:
        kind = kinds[0] if "kind" not in fields and not top_level else None
    elif kind not in kinds:
        if kind == "DataSource":
            problem = "kind DataSource is not supported: metricSource.type sloscope needs no data source"
        else:
            problem = f"unknown kind {kind!r} ({one_of(kind, kinds)})"
        r.error(fields["kind"], join(path, "kind"), problem)
        kind = None
    metadata = r.mapping(fields.get("metadata"), join(path, "metadata"), METADATA_KEYS, required=("name",))
    name = None
    if metadata is not None:
        name = r.name(metadata.get("name"), join(path, "metadata.name"))
        r.text(metadata.get("displayName"), join(path, "metadata.displayName"))
    if r.count > start or kind is None or name is None or metadata is None or "spec" not in fields:
        return None
    return _Object(r, kind, name, path, node, metadata, fields["spec"])


def _check_metadata_extras(obj: _Object) -> None:
    """Labels and annotations of objects other than SLOs are kept nowhere, but still checked."""
    r, path = obj.r, join(obj.path, "metadata")
    read_labels(r, obj.metadata.get("labels"), join(path, "labels"), lists=True)
    annotations = obj.metadata.get("annotations")
    if annotations is None:
        return
    if not isinstance(annotations, MappingNode):
        r.error(annotations, join(path, "annotations"), "must be a mapping")
        return
    for key_node, value_node in annotations.value:
        r.text(value_node, join(path, f"annotations.{getattr(key_node, 'value', '')}"))


# -- SLI ---------------------------------------------------------------------------------------


def _source(r: Reader, node: Node | None, path: str) -> tuple[str, Node, str] | None:
    """``{metricSource: {type: sloscope, spec: {spans|logs|metrics: ...}}}`` -> (source, node, path)."""
    fields = r.mapping(node, path, ("metricSource",), required=("metricSource",))
    if fields is None or "metricSource" not in fields:
        return None
    path = join(path, "metricSource")
    source = r.mapping(
        fields["metricSource"], path, ("metricSourceRef", "type", "spec"), required=("type", "spec")
    )
    if source is None:
        return None
    if "metricSourceRef" in source:
        r.error(
            source.key_nodes["metricSourceRef"],
            join(path, "metricSourceRef"),
            "not supported: give type: sloscope and the source in spec",
        )
        return None
    kind = r.text(source.get("type"), join(path, "type"))
    if kind is not None and kind != SOURCE_TYPE:
        r.error(
            source["type"],
            join(path, "type"),
            f"metric source type {kind!r} is not supported "
            f"(sloscope reads the data it stores: type: {SOURCE_TYPE})",
        )
        return None
    spec = r.mapping(source.get("spec"), join(path, "spec"), ("spans", "logs", "metrics"))
    if spec is None or kind is None:
        return None
    given = [key for key in ("spans", "logs", "metrics") if key in spec]
    if len(given) != 1:
        where = spec.key_nodes[given[1]] if len(given) > 1 else spec.node
        r.error(where, join(path, "spec"), "needs exactly one of spans, logs or metrics")
        return None
    return given[0], spec[given[0]], join(path, f"spec.{given[0]}")


def read_indicator_spec(r: Reader, node: Node, path: str) -> _Indicator | None:
    """An SLI's ``spec``: ``ratioMetric`` or ``thresholdMetric``."""
    fields = r.mapping(node, path, ("description", "ratioMetric", "thresholdMetric"))
    if fields is None:
        return None
    r.text(fields.get("description"), join(path, "description"))
    if ("ratioMetric" in fields) == ("thresholdMetric" in fields):
        r.error(fields.node, path, "needs exactly one of ratioMetric or thresholdMetric")
        return None
    if "thresholdMetric" in fields:
        return _threshold(r, fields["thresholdMetric"], join(path, "thresholdMetric"))
    return _ratio(r, fields["ratioMetric"], join(path, "ratioMetric"))


def _threshold(r: Reader, node: Node, path: str) -> _Indicator | None:
    source = _source(r, node, path)
    if source is None:
        return None
    kind, spec, spec_path = source
    if kind == "spans":
        fields = r.mapping(spec, spec_path, SPAN_SELECTION_KEYS)
        selection = read_span_selection(r, fields, spec_path) if fields is not None else None
        return None if selection is None else _Indicator(threshold=selection)
    if kind == "metrics":
        histogram = read_metric_selector(r, spec, spec_path)
        return None if histogram is None else _Indicator(threshold=histogram)
    r.error(
        spec, spec_path, "logs have no value to compare with a threshold; use ratioMetric with total and bad"
    )
    return None


def _ratio(r: Reader, node: Node, path: str) -> _Indicator | None:
    start = r.count  # before the mapping: a missing total is an error of this ratio too
    fields = r.mapping(node, path, ("counter", "good", "bad", "total", "rawType", "raw"), required=("total",))
    if fields is None:
        return None
    r.boolean(fields.get("counter"), join(path, "counter"))
    for key in ("raw", "rawType"):
        if key in fields:
            r.error(
                fields.key_nodes[key],
                join(path, key),
                "not supported: sloscope computes the ratio from events (give total and good or bad)",
            )
    if ("good" in fields) == ("bad" in fields):
        r.error(
            fields.key_nodes.get("bad") or fields.node,
            path,
            "give good or bad, not both" if "good" in fields else "needs good or bad next to total",
        )
    if r.count > start:
        return None
    sources = {
        key: _source(r, fields.get(key), join(path, key)) for key in ("total", "good", "bad") if key in fields
    }
    if any(s is None for s in sources.values()):
        return None
    total_kind, total_node, total_path = sources.pop("total")  # type: ignore[misc]
    side, (kind, node, part_path) = next(iter(sources.items()))  # type: ignore[misc]
    if kind != total_kind:
        r.error(
            node,
            part_path,
            f"{side} reads {kind} but total reads {total_kind}: both must read the same source",
        )
        return None
    if total_kind == "metrics":
        total = read_metric_selector(r, total_node, total_path)
        part = read_metric_selector(r, node, part_path)
        if total is None or part is None:
            return None
        return _Indicator(
            MetricSli(total=total, good=part if side == "good" else None, bad=part if side == "bad" else None)
        )
    if side == "good":
        r.error(
            node,
            part_path,
            f"{kind} events are counted as bad, not good: give bad (with "
            f"{'error, status or latency_ms' if kind == 'spans' else 'severity_min, filters or body'})",
        )
        return None
    if total_kind == "spans":
        fields_total = r.mapping(total_node, total_path, SPAN_SELECTION_KEYS)
        selection = read_span_selection(r, fields_total, total_path) if fields_total is not None else None
        bad = read_span_bad(r, node, part_path)
        if selection is None or bad is None:
            return None
        return _Indicator(
            SpanSli(
                operation=selection.operation,
                kinds=selection.kinds,
                filters=selection.filters,
                bad_error=bad.bad_error,
                bad_status=bad.bad_status,
                bad_latency_ms=bad.bad_latency_ms,
            )
        )
    total_logs = read_log_filter(r, total_node, total_path, narrowing=False)
    bad_logs = read_log_filter(r, node, part_path, narrowing=True)
    if total_logs is None or bad_logs is None:
        return None
    return _Indicator(LogSli(total=total_logs, bad=bad_logs))


def _read_sli(docs: Documents, obj: _Object) -> _Indicator | None:
    _check_metadata_extras(obj)
    return read_indicator_spec(obj.r, obj.spec, join(obj.path, "spec"))


# -- alerting ----------------------------------------------------------------------------------


def _read_condition(docs: Documents, obj: _Object) -> BurnRule | None:
    _check_metadata_extras(obj)
    r, path = obj.r, join(obj.path, "spec")
    start = r.count  # before the mapping: a missing severity is an error of this condition too
    fields = r.mapping(
        obj.spec, path, ("description", "severity", "condition"), required=("severity", "condition")
    )
    if fields is None:
        return None
    r.text(fields.get("description"), join(path, "description"))
    severity = read_severity_label(r, fields.get("severity"), join(path, "severity"))
    keep_s = _keep_firing_for(obj)
    path = join(path, "condition")
    cond = r.mapping(
        fields.get("condition"),
        path,
        ("kind", "op", "threshold", "lookbackWindow", "alertAfter"),
        required=("op", "threshold", "lookbackWindow"),
    )
    if cond is None:
        return None
    kind = r.text(cond.get("kind"), join(path, "kind"))
    if kind is not None and kind.lower() != "burnrate":
        r.error(
            cond["kind"], join(path, "kind"), f"unknown condition kind {kind!r} (sloscope alerts on burnrate)"
        )
    op = r.text(cond.get("op"), join(path, "op"))
    if op is not None and op != "gt":
        r.error(
            cond["op"],
            join(path, "op"),
            f"op {op!r} is not supported: burn-rate alerts fire when the "
            "burn rate is strictly above the threshold (op: gt)",
        )
    threshold = r.decimal(cond.get("threshold"), join(path, "threshold"))
    if threshold is not None and threshold <= 0:
        r.error(cond["threshold"], join(path, "threshold"), f"must be above 0, got {threshold}")
    long_s = r.duration(cond.get("lookbackWindow"), join(path, "lookbackWindow"))
    after = cond.get("alertAfter")
    if after is None or (isinstance(after, ScalarNode) and after.value in ("0", "0m", "0h")):
        # The SRE Workbook's short window is a twelfth of the long one (1h/5m, 6h/30m, 1d/2h).
        short_s = None if long_s is None else max(MINUTE_S, long_s // 12 // MINUTE_S * MINUTE_S)
    else:
        short_s = r.duration(after, join(path, "alertAfter"))
        if short_s is not None and long_s is not None and short_s >= long_s:
            r.error(
                after,
                join(path, "alertAfter"),
                f"must be shorter than lookbackWindow "
                f"({format_duration(long_s)}): it is the short window of the burn-rate pair",
            )
    if r.count > start:
        return None
    assert severity and threshold is not None and long_s and short_s
    return BurnRule(severity, long_s, short_s, Fraction(threshold), keep_s)


def _keep_firing_for(obj: _Object) -> int | None:
    """The object's ``sloscope.dev/keep-firing-for`` annotation in seconds (None: absent, or an
    error, which is recorded)."""
    node, _ = _pop_annotation(obj.metadata.get("annotations"), KEEP_FIRING_FOR_ANNOTATION)
    path = join(obj.path, f"metadata.annotations.{KEEP_FIRING_FOR_ANNOTATION}")
    return read_keep_firing_for(obj.r, node, path)


def _pop_annotation(node: Node | None, key: str) -> tuple[Node | None, Node | None]:
    """The value of annotation ``key`` (None if absent) and the annotations without it."""
    if not isinstance(node, MappingNode):
        return None, node
    found: Node | None = None
    rest = []
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            found = value_node
        else:
            rest.append((key_node, value_node))
    return found, MappingNode(node.tag, rest, node.start_mark, node.end_mark)


def _read_target(docs: Documents, obj: _Object) -> NotificationTarget | None:
    _check_metadata_extras(obj)
    r, path = obj.r, join(obj.path, "spec")
    fields = r.mapping(obj.spec, path, ("description", "target"), required=("target",))
    if fields is None:
        return None
    target = r.text(fields.get("target"), join(path, "target"))
    description = r.text(fields.get("description"), join(path, "description"))
    return None if target is None else NotificationTarget(obj.name, target, description or "")


def _read_service(docs: Documents, obj: _Object) -> str | None:
    _check_metadata_extras(obj)
    fields = obj.r.mapping(obj.spec, join(obj.path, "spec"), ("description",))
    if fields is not None:
        obj.r.text(fields.get("description"), join(obj.path, "spec.description"))
    return obj.name


def _inline_or_ref(docs: Documents, r: Reader, node: Node, path: str, kind: str, ref_key: str) -> object:
    """A list item that is either ``{ref_key: name}`` or an inline object of ``kind``."""
    if isinstance(node, MappingNode) and any(
        isinstance(k, ScalarNode) and k.value == ref_key for k, _ in node.value
    ):
        fields = r.mapping(node, path, (ref_key,))
        return None if fields is None else docs.ref(r, fields.get(ref_key), join(path, ref_key), kind)
    if isinstance(node, MappingNode) and not any(
        isinstance(k, ScalarNode) and k.value in ("metadata", "spec", "kind") for k, _ in node.value
    ):
        r.error(node, path, f"needs {ref_key}: <name> or an inline {kind} (metadata and spec)")
        return None
    obj = envelope(r, node, path, kinds=(kind,), top_level=False)
    return None if obj is None else READERS[kind](docs, obj)


def _read_policy(docs: Documents, obj: _Object) -> _Policy | None:
    _check_metadata_extras(obj)
    r, path = obj.r, join(obj.path, "spec")
    start = r.count  # before the mapping: missing conditions are an error of this policy too
    fields = r.mapping(
        obj.spec,
        path,
        (
            "description",
            "alertWhenNoData",
            "alertWhenResolved",
            "alertWhenBreaching",
            "conditions",
            "notificationTargets",
        ),
        required=("conditions",),
    )
    if fields is None:
        return None
    r.text(fields.get("description"), join(path, "description"))
    keep_s = _keep_firing_for(obj)
    # No data is an evaluation the store could not answer or whose data may be incomplete; a window
    # without events is known to be empty and is not "no data" (docs/slo-semantics.md).
    no_data = r.boolean(fields.get("alertWhenNoData"), join(path, "alertWhenNoData"))
    if r.boolean(fields.get("alertWhenBreaching"), join(path, "alertWhenBreaching")) is False:
        r.error(
            fields["alertWhenBreaching"],
            join(path, "alertWhenBreaching"),
            "false is not supported: burn-rate alerts fire when breaching",
        )
    # Resolve notifications are the notification policy's send_resolved; accepted and checked only.
    r.boolean(fields.get("alertWhenResolved"), join(path, "alertWhenResolved"))
    rules: list[BurnRule] = []
    conditions = r.sequence(fields.get("conditions"), join(path, "conditions")) or []
    if "conditions" in fields and not conditions:
        r.error(fields["conditions"], join(path, "conditions"), "needs at least one condition")
    for i, item in enumerate(conditions):
        rule = _inline_or_ref(
            docs, r, item, f"{join(path, 'conditions')}[{i}]", "AlertCondition", "conditionRef"
        )
        if isinstance(rule, BurnRule):
            # The policy's hold-down is its conditions' unless they give their own.
            if keep_s is not None and rule.keep_firing_for_s is None:
                rule = replace(rule, keep_firing_for_s=keep_s)
            rules.append(rule)
    targets: list[NotificationTarget] = []
    items = r.sequence(fields.get("notificationTargets"), join(path, "notificationTargets")) or []
    for i, item in enumerate(items):
        target = _inline_or_ref(
            docs, r, item, f"{join(path, 'notificationTargets')}[{i}]", "AlertNotificationTarget", "targetRef"
        )
        if isinstance(target, NotificationTarget):
            targets.append(target)
    if r.count > start or len(rules) != len(conditions) or len(targets) != len(items):
        return None
    return _Policy(tuple(rules), tuple(targets), bool(no_data))


# -- SLO ---------------------------------------------------------------------------------------

SLO_SPEC_KEYS = (
    "description",
    "service",
    "indicator",
    "indicatorRef",
    "timeWindow",
    "budgetingMethod",
    "objectives",
    "alertPolicies",
)
OBJECTIVE_KEYS = (
    "displayName",
    "op",
    "value",
    "target",
    "targetPercent",
    "timeSliceTarget",
    "timeSliceWindow",
    "indicator",
    "indicatorRef",
    "compositeWeight",
)


def read_time_window(r: Reader, node: Node | None, path: str) -> Window | None:
    """``timeWindow``: exactly one ``{duration, isRolling}`` or ``{duration: 1w|1M|1Q, calendar:
    {startTime, timeZone}}``; absent means 30 days rolling, like the native format."""
    if node is None:
        return Window(rolling_s=30 * DAY_S)
    items = r.sequence(node, path)
    if items is None:
        return None
    if len(items) != 1:
        r.error(node, path, f"must hold exactly one time window, got {len(items)}")
        return None
    path = f"{path}[0]"
    fields = r.mapping(items[0], path, ("duration", "isRolling", "calendar"), required=("duration",))
    if fields is None:
        return None
    rolling = r.boolean(fields.get("isRolling"), join(path, "isRolling"))
    duration_node = fields.get("duration")
    duration = r.text(duration_node, join(path, "duration"))
    if rolling is None:
        rolling = "calendar" not in fields  # OpenSLO: false when calendar is given
    if duration is None:
        return None
    if rolling:
        if "calendar" in fields:
            r.error(fields.key_nodes["calendar"], join(path, "calendar"), "not with isRolling: true")
            return None
        if duration[-1:] in ("M", "Q", "Y"):
            r.error(
                duration_node,
                join(path, "duration"),
                f"{duration!r}: a rolling window is given in m, h, "
                "d or w; months, quarters and years are calendar windows (isRolling: false, calendar)",
            )
            return None
        seconds = r.duration(duration_node, join(path, "duration"))
        return None if seconds is None else Window(rolling_s=seconds)
    if "calendar" not in fields:
        r.error(fields.node, join(path, "calendar"), "is required when isRolling is false")
        return None
    unit = CALENDAR_DURATIONS.get(duration)
    if unit is None:
        r.error(duration_node, join(path, "duration"), f"{duration!r}: calendar windows are 1w, 1M or 1Q")
    cal_path = join(path, "calendar")
    calendar = r.mapping(fields["calendar"], cal_path, ("startTime", "timeZone"))
    if calendar is None or unit is None:
        return None
    zone_node = calendar.get("timeZone")
    zone = "UTC" if zone_node is None else r.time_zone(zone_node, join(cal_path, "timeZone"))
    start_node = calendar.get("startTime")
    if start_node is not None and not _aligned_start(r, start_node, join(cal_path, "startTime"), unit):
        return None
    return None if zone is None else Window(calendar=unit, time_zone=zone)


def _aligned_start(r: Reader, node: Node, path: str, unit: CalendarUnit) -> bool:
    """sloscope's calendar periods are the calendar's own (ISO weeks from Monday, months, quarters
    from January, April, July, October), so a startTime may only confirm such a boundary: one that
    would shift the periods would otherwise be ignored silently."""
    text = r.raw_text(node, path)
    if text is None:
        return False
    try:
        start = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        r.error(node, path, f"{text!r} is not a date and time like 2024-01-01 00:00:00")
        return False
    aligned = (
        start.time() == dt.time(0)
        and {
            "week": start.weekday() == 0,
            "month": start.day == 1,
            "quarter": start.day == 1 and start.month in (1, 4, 7, 10),
        }[unit]
    )
    if not aligned:
        first = {
            "week": "a Monday",
            "month": "the 1st of a month",
            "quarter": "the 1st of January, April, July or October",
        }[unit]
        r.error(node, path, f"{text!r}: {unit} periods start at midnight on {first}")
    return aligned


def _objective(
    r: Reader, node: Node | None, path: str, method: str | None, window: Window | None, indicator: object
) -> tuple[Decimal, Budgeting, float | None] | None:
    """The single objective: (objective percent, budgeting, threshold value for thresholdMetric)."""
    items = r.sequence(node, path)
    if items is None:
        return None
    if len(items) != 1:
        r.error(
            node,
            path,
            f"sloscope evaluates one objective per SLO, got {len(items)}: write one SLO per objective",
        )
        return None
    path = f"{path}[0]"
    fields = r.mapping(items[0], path, OBJECTIVE_KEYS)
    if fields is None:
        return None
    start = r.count
    r.text(fields.get("displayName"), join(path, "displayName"))
    for key in ("indicator", "indicatorRef", "compositeWeight"):
        if key in fields:
            r.error(
                fields.key_nodes[key],
                join(path, key),
                "not supported (composite SLOs): give the indicator in spec",
            )
    if ("target" in fields) == ("targetPercent" in fields):
        r.error(
            fields.node,
            join(path, "target"),
            "give target (a ratio, e.g. 0.999) or targetPercent, not both"
            if "target" in fields
            else "is required (or targetPercent)",
        )
    objective = read_objective(r, fields.get("target"), join(path, "target"), scale=100)
    if "targetPercent" in fields:
        objective = read_objective(r, fields["targetPercent"], join(path, "targetPercent"))
    value = None
    is_threshold = isinstance(indicator, _Indicator) and indicator.threshold is not None
    if is_threshold:
        for key in ("op", "value"):
            if key not in fields:
                r.error(fields.node, join(path, key), "is required with a thresholdMetric")
        op = r.text(fields.get("op"), join(path, "op"))
        if op is not None and op != "lte":
            r.error(
                fields["op"],
                join(path, "op"),
                f"op {op!r} is not supported: a threshold SLI counts "
                "values at or below value as good (op: lte)",
            )
        number = r.decimal(fields.get("value"), join(path, "value"))
        if number is not None and number <= 0:
            r.error(fields["value"], join(path, "value"), f"must be above 0, got {number}")
        value = None if number is None else float(number)
    elif isinstance(indicator, _Indicator):
        for key in ("op", "value"):
            if key in fields:
                r.error(fields.key_nodes[key], join(path, key), "only with a thresholdMetric")
    budgeting = _budgeting(r, fields, path, method, window)
    if r.count > start or objective is None or budgeting is None:
        return None
    return objective, budgeting, value


def _budgeting(
    r: Reader, fields: Fields, path: str, method: str | None, window: Window | None
) -> Budgeting | None:
    if method is None:
        return None
    start = r.count
    wants = {
        "occurrences": (),
        "timeslices": ("timeSliceTarget", "timeSliceWindow"),
        "ratio_timeslices": ("timeSliceWindow",),
    }[method]
    for key in ("timeSliceTarget", "timeSliceWindow"):
        if key in wants and key not in fields:
            r.error(fields.node, join(path, key), f"is required for budgetingMethod {_method_name(method)}")
        elif key not in wants and key in fields:
            r.error(
                fields.key_nodes[key], join(path, key), f"not used by budgetingMethod {_method_name(method)}"
            )
    target = read_slice_target(r, fields.get("timeSliceTarget"), join(path, "timeSliceTarget"), scale=100)
    slice_node = fields.get("timeSliceWindow")
    slice_s = None
    if slice_node is not None:
        slice_path = join(path, "timeSliceWindow")
        if isinstance(slice_node, ScalarNode) and slice_node.tag.endswith(":int"):
            minutes = r.integer(slice_node, slice_path, minimum=1)  # a bare number is minutes
            slice_s = None if minutes is None else minutes * MINUTE_S
        else:
            slice_s = r.duration(slice_node, slice_path)
        if slice_s is not None:
            check_slice(r, slice_node, slice_path, slice_s, window)
    if r.count > start:
        return None
    return Budgeting(method=cast(BudgetingMethod, method), slice_s=slice_s or MINUTE_S, slice_target=target)


def _method_name(method: str) -> str:
    return next(name for name, value in BUDGETING.items() if value == method)


def read_slo(docs: Documents, obj: _Object) -> Slo | None:
    r, path = obj.r, join(obj.path, "spec")
    r.name_site(obj.metadata["name"], join(obj.path, "metadata.name"), obj.name)
    start = r.count
    fields = r.mapping(obj.spec, path, SLO_SPEC_KEYS, required=("service", "budgetingMethod", "objectives"))
    labels = read_labels(r, obj.metadata.get("labels"), join(obj.path, "metadata.labels"), lists=True)
    if fields is None:
        return None
    service = r.text(fields.get("service"), join(path, "service"))
    if service is not None and docs.objects["Service"] and service not in docs.objects["Service"]:
        # Service objects are optional; once some are defined, a reference must name one of them.
        r.error(
            fields["service"],
            join(path, "service"),
            f"no Service named {service!r} ({one_of(service, list(docs.objects['Service']))})",
        )
    description = r.text(fields.get("description"), join(path, "description"))
    # OpenSLO has no tenant field: the metadata label ``tenant`` names it (also kept as a label).
    tenant = _tenant_label(r, obj.metadata.get("labels"), join(obj.path, "metadata.labels.tenant"))
    indicator: object = None
    if ("indicator" in fields) == ("indicatorRef" in fields):
        problem = (
            "give indicator or indicatorRef, not both"
            if "indicator" in fields
            else ("needs indicator (an inline SLI) or indicatorRef (the name of an SLI)")
        )
        r.error(fields.key_nodes.get("indicatorRef") or fields.node, path, problem)
    elif "indicatorRef" in fields:
        indicator = docs.ref(r, fields["indicatorRef"], join(path, "indicatorRef"), "SLI")
    else:
        inline = envelope(r, fields["indicator"], join(path, "indicator"), kinds=("SLI",), top_level=False)
        indicator = None if inline is None else _read_sli(docs, inline)
    window = read_time_window(r, fields.get("timeWindow"), join(path, "timeWindow"))
    method_text = r.text(fields.get("budgetingMethod"), join(path, "budgetingMethod"))
    method = BUDGETING.get(method_text or "")
    if method_text is not None and method is None:
        r.error(
            fields["budgetingMethod"],
            join(path, "budgetingMethod"),
            f"unknown budgeting method {method_text!r} ({one_of(method_text, list(BUDGETING))})",
        )
    objective = _objective(r, fields.get("objectives"), join(path, "objectives"), method, window, indicator)
    policies: list[_Policy] = []
    items = r.sequence(fields.get("alertPolicies"), join(path, "alertPolicies")) or []
    for i, item in enumerate(items):
        policy = _inline_or_ref(
            docs, r, item, f"{join(path, 'alertPolicies')}[{i}]", "AlertPolicy", "alertPolicyRef"
        )
        if isinstance(policy, _Policy):
            policies.append(policy)
    group_by, annotations_node = _split_annotations(obj)
    keep_node, annotations_node = _pop_annotation(annotations_node, KEEP_FIRING_FOR_ANNOTATION)
    keep_s = read_keep_firing_for(
        r, keep_node, join(obj.path, f"metadata.annotations.{KEEP_FIRING_FOR_ANNOTATION}")
    )
    groups = read_group_by(r, group_by, join(obj.path, f"metadata.annotations.{GROUP_BY_ANNOTATION}"))
    values = placeholder_values(
        obj.name, service or "", objective[0] if objective else None, window, description or ""
    )
    annotations = read_annotations(
        r, annotations_node, join(obj.path, "metadata.annotations"), values, labels
    )
    if r.count > start or len(policies) != len(items):
        return None
    if not isinstance(indicator, _Indicator) or objective is None or window is None:
        return None
    assert service and labels is not None and annotations is not None and groups is not None
    percent, budgeting, value = objective
    sli = indicator.sli
    if isinstance(indicator.threshold, SpanSli):
        s = indicator.threshold
        sli = SpanSli(operation=s.operation, kinds=s.kinds, filters=s.filters, bad_latency_ms=value)
    elif isinstance(indicator.threshold, MetricSelector):
        sli = MetricSli(total=indicator.threshold, threshold=value)
    assert sli is not None
    if policies:
        targets = tuple(dict.fromkeys(t for p in policies for t in p.targets))
        alerting = AlertPolicy(
            rules=tuple(rule for p in policies for rule in p.rules),
            keep_firing_for_s=keep_s or 0,
            notification_targets=targets,
            on_no_data="alert" if any(p.alert_when_no_data for p in policies) else "keep",
        )
    else:
        alerting = AlertPolicy(rules=default_rules(window.nominal_s), keep_firing_for_s=keep_s or 0)
    return Slo(
        name=obj.name,
        service=service,
        objective=percent,
        sli=sli,
        window=window,
        budgeting=budgeting,
        description=description or "",
        labels=tuple(labels.items()),
        annotations=annotations,
        group_by=groups,
        alerting=alerting,
        tenant=tenant,
        source=f"{r.file}:{obj.node.start_mark.line + 1}",
    )


def _tenant_label(r: Reader, labels: Node | None, path: str) -> str:
    """The value of the ``tenant`` label (store/tenancy.py names), "" without one."""
    if not isinstance(labels, MappingNode):
        return ""
    for key, value in labels.value:
        if isinstance(key, ScalarNode) and key.value == "tenant" and isinstance(value, ScalarNode):
            try:
                return check_tenant(value.value)
            except ValueError as exc:
                r.error(value, path, str(exc))
    return ""


def _split_annotations(obj: _Object) -> tuple[Node | None, Node | None]:
    """The ``sloscope.dev/group-by`` annotation (comma-separated keys, or a list) and the rest."""
    node = obj.metadata.get("annotations")
    if not isinstance(node, MappingNode):
        return None, node
    group_by: Node | None = None
    rest = []
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == GROUP_BY_ANNOTATION:
            group_by = value_node
            if isinstance(value_node, ScalarNode) and value_node.tag.endswith(":str"):
                items = [
                    ScalarNode(value_node.tag, part.strip(), value_node.start_mark, value_node.end_mark)
                    for part in value_node.value.split(",")
                ]
                group_by = SequenceNode(
                    "tag:yaml.org,2002:seq", items, value_node.start_mark, value_node.end_mark
                )
        else:
            rest.append((key_node, value_node))
    return group_by, MappingNode(node.tag, rest, node.start_mark, node.end_mark)


READERS = {
    "SLI": _read_sli,
    "AlertCondition": _read_condition,
    "AlertNotificationTarget": _read_target,
    "Service": _read_service,
    "AlertPolicy": _read_policy,
}
