"""The latest SLO evaluations as Prometheus metrics, for scraping ``/metrics``.

Names follow what Sloth and Pyrra users chart: ratios from 0 to 1, one series per SLO instance with
``slo`` and ``service`` labels plus the SLO's group_by values (as label names Prometheus accepts).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from slo.evaluator import InstanceResult
from slo.model import format_duration

_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED = {"slo", "service", "window", "rule", "severity"}


def label_name(key: str) -> str:
    """A group_by key as a Prometheus label name: ``tenant.id`` -> ``tenant_id``; names our own labels
    use get a ``group_`` prefix."""
    name = _NOT_LABEL.sub("_", key)
    if not name or name[0].isdigit() or name in _RESERVED or name.startswith("__"):
        name = "group_" + name
    return name


class SloMetrics:
    """A Prometheus collector holding the latest cycle's results (replaced whole by :meth:`update`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: tuple[InstanceResult, ...] = ()

    def update(self, results: Sequence[InstanceResult]) -> None:
        with self._lock:
            self._results = tuple(results)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            results = self._results
        families = {
            "sli": GaugeMetricFamily("sloscope_slo_sli", "SLI (attainment) over the SLO window, 0 to 1"),
            "objective": GaugeMetricFamily("sloscope_slo_objective", "SLO objective, 0 to 1"),
            "remaining": GaugeMetricFamily(
                "sloscope_slo_error_budget_remaining", "Error budget left, 1 = all; negative when overspent"
            ),
            "burn": GaugeMetricFamily("sloscope_slo_burn_rate", "Error budget burn rate over a window"),
            "firing": GaugeMetricFamily("sloscope_slo_alert_rule_firing", "1 while a burn-rate rule fires"),
            "no_data": GaugeMetricFamily(
                "sloscope_slo_no_data",
                "1 while the SLO's data cannot be trusted (store unreachable, ingest behind): its "
                "other series are absent then",
            ),
        }
        for r in results:
            labels = {"slo": r.slo.name, "service": r.slo.service}
            for key, value in r.group:
                name = label_name(key)
                while name in labels:  # http.route and http_route would both be http_route
                    name += "_"
                labels[name] = value
            _add(families["objective"], labels, float(r.slo.target))
            ev = r.evaluation
            if r.no_data or ev is not None:
                _add(families["no_data"], labels, 1.0 if r.no_data else 0.0)
            if ev is None:
                continue
            if ev.sli is not None:
                _add(families["sli"], labels, ev.sli)
            if ev.remaining is not None:
                _add(families["remaining"], labels, ev.remaining)
            for window, rate in burn_rates(r).items():
                if rate is not None:
                    _add(families["burn"], labels | {"window": window}, rate)
            for rule in r.rules:
                _add(
                    families["firing"],
                    labels | {"rule": rule.label, "severity": rule.rule.severity},
                    rule.firing,
                )
        yield from families.values()


def burn_rates(result: InstanceResult) -> dict[str, float | None]:
    """Window label -> burn rate: the evaluation's windows (the defaults and the SLO window), then
    every window of the SLO's alert rules that is not among them (``1m``, ``4h``, ...), so a dashboard
    can chart what each rule compares. A rule's rates come from the same sums as the evaluation's
    (``slo.evaluator.rule_arrays``), so a window both report has one value."""
    out = dict(result.evaluation.burn_rates) if result.evaluation is not None else {}
    for state in result.rules:
        for window_s, rate in (
            (state.rule.long_s, state.long_burn_rate),
            (state.rule.short_s, state.short_burn_rate),
        ):
            out.setdefault(format_duration(window_s), rate)
    return out


def _add(family: GaugeMetricFamily, labels: dict[str, str], value: float) -> None:
    # Label sets differ between SLOs (their group_by keys): add samples directly, not via add_metric.
    family.samples.append(Sample(family.name, labels, float(value), None, None))
