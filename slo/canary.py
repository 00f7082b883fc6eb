"""Canary verdicts: is a candidate version of a service worse than its baseline?

:func:`compare` reads both versions' requests over one time range from the raw spans (a version is
the resource attribute ``service.version``) and tests, per metric, whether the candidate is worse:

* ``error_ratio``: the RED error (status ERROR, or HTTP 5xx on a SERVER span), Fisher's exact test;
* ``latency_p50``: the Mann–Whitney U test on the durations (Kayenta's method);
* ``latency_p95`` / ``latency_p99``: Fisher's exact test on the requests slower than the baseline's
  quantile (a quantile test: the baseline has 5% / 1% of its requests there by definition);
* ``slo:NAME`` for each SLO given: its SLI's bad requests, Fisher's exact test, and each version's
  burn rate.

Every test is one-sided (only a worse candidate fails) and a metric fails only when the difference
is both significant and larger than a tolerance. Too few requests is its own verdict, never a pass.
The method and its limits: ``docs/canary.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow.compute as pc
from scipy import stats

from slo import sli as slis
from slo import sql
from slo.model import Slo, SpanSli
from store.backend import Backend
from store.tenancy import tenant_scope

PASS, MARGINAL, FAIL, NOT_ENOUGH_DATA = "pass", "marginal", "fail", "not_enough_data"
#: Exit codes of ``sloscope canary`` by verdict: a deploy pipeline gates on them.
EXIT_CODES = {PASS: 0, FAIL: 1, NOT_ENOUGH_DATA: 2, MARGINAL: 3}
#: A worse candidate with p below this fails (if the difference also exceeds the tolerance) ...
FAIL_P = 0.01
#: ... and below this, or significant but within the tolerance, is marginal.
MARGINAL_P = 0.05
#: Requests each version needs before any metric is judged.
MIN_REQUESTS = 100
#: Durations per version the rank test reads (a uniform sample beyond it).
SAMPLE = 50_000
#: Tolerances: a significant difference smaller than these is marginal, not a failure.
#: Error and bad-request ratios: 0.1 percentage point and a fifth more than the baseline's.
RATIO_ABSOLUTE_TOLERANCE = 0.001
RATIO_RELATIVE_TOLERANCE = 1.2
#: Latency quantiles: a tenth slower and at least a millisecond.
LATENCY_RELATIVE_TOLERANCE = 1.1
LATENCY_ABSOLUTE_TOLERANCE_MS = 1.0

NS_PER_MS = 1e6
_QUANTILES = (("latency_p50", 0.5), ("latency_p95", 0.95), ("latency_p99", 0.99))


@dataclass(frozen=True)
class MetricResult:
    """One metric compared: each version's value, the test, and its verdict."""

    metric: str
    unit: str  # "ratio" or "ms"
    baseline: float | None
    candidate: float | None
    baseline_requests: int
    candidate_requests: int
    test: str
    p_value: float | None
    effect_size: float | None
    verdict: str
    reason: str
    baseline_burn_rate: float | None = None
    candidate_burn_rate: float | None = None


@dataclass(frozen=True)
class CanaryReport:
    """The comparison of ``candidate`` with ``baseline`` over ``[start_ns, end_ns)``."""

    service: str
    baseline: str
    candidate: str
    start_ns: int
    end_ns: int
    verdict: str
    reason: str
    metrics: tuple[MetricResult, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of ``GET /api/v1/canary`` and ``sloscope canary --format json``."""
        return {
            "service": self.service,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "start": _iso(self.start_ns),
            "end": _iso(self.end_ns),
            "verdict": self.verdict,
            "reason": self.reason,
            "metrics": [asdict(m) for m in self.metrics],
        }


@dataclass(frozen=True)
class _Counts:
    total: int
    bad: int
    quantiles_ns: tuple[float, ...] = ()

    @property
    def ratio(self) -> float | None:
        return self.bad / self.total if self.total else None


def compare(
    backend: Backend,
    service: str,
    baseline: str,
    candidate: str,
    start_ns: int,
    end_ns: int,
    slos: Sequence[Slo] = (),
    min_requests: int = MIN_REQUESTS,
) -> CanaryReport:
    """Compare ``candidate`` with ``baseline`` (``service.version`` values of ``service``) over
    ``[start_ns, end_ns)``: error ratio, latency p50/p95/p99 and the SLI of each of ``slos`` (SLOs of
    ``service`` with a spans SLI). ValueError for equal versions, an empty range, or an SLO that does
    not qualify. Reads see the tenants of the caller's ``store.tenancy`` scope."""
    if baseline == candidate:
        raise ValueError(f"baseline and candidate are the same version ({baseline!r})")
    if end_ns <= start_ns:
        raise ValueError("the time range is empty: end must be after start")
    if min_requests < 1:
        raise ValueError(f"min_requests must be at least 1, got {min_requests}")
    for slo in slos:
        if slo.service != service or not isinstance(slo.sli, SpanSli):
            raise ValueError(
                f"SLO {slo.name!r} cannot judge {service!r}: it needs a spans SLI of that service "
                f"(it has {type(slo.sli).__name__} of {slo.service!r})"
            )
    versions = (baseline, candidate)
    window = {"start_ns": start_ns, "end_ns": end_ns, "versions": list(versions)}
    red = _red_slo(service)
    counts = _counts(backend, red, window)
    durations = _durations(backend, red, window) if _enough(counts, versions, min_requests) else {}
    slo_counts = []
    for slo in slos:
        with tenant_scope(slo.tenant or None):  # the tenant whose data the SLI reads, as it evaluates
            slo_counts.append((slo, _counts(backend, slo, window)))
    base, cand = (counts.get(v, _Counts(0, 0)) for v in versions)
    metrics = [_ratio_metric("error_ratio", base, cand, min_requests)]
    metrics += _latency_metrics(base, cand, durations.get(baseline), durations.get(candidate), min_requests)
    for slo, by_version in slo_counts:
        b, c = (by_version.get(v, _Counts(0, 0)) for v in versions)
        metric = _ratio_metric(f"slo:{slo.name}", b, c, min_requests)
        budget = float(slo.error_budget)
        metrics.append(
            replace(
                metric,
                baseline_burn_rate=_burn(b, budget),
                candidate_burn_rate=_burn(c, budget),
            )
        )
    verdict, reason = _overall(metrics)
    return CanaryReport(service, baseline, candidate, start_ns, end_ns, verdict, reason, tuple(metrics))


def _red_slo(service: str) -> Slo:
    # RED's request and error, expressed as an SLI, so one statement serves it and every SLO.
    return Slo(name="red", service=service, objective=Decimal(99), sli=SpanSli(bad_error=True))


def _counts(backend: Backend, slo: Slo, window: dict[str, Any]) -> dict[str, _Counts]:
    params = {**slis.span_params(slo, roll_up=False), **window}
    rows = backend.query_arrow(sql.CANARY_COUNTS, params).to_pylist()
    return {
        r["version"]: _Counts(int(r["n_total"]), int(r["n_bad"]), tuple(float(q) for q in r["quantiles_ns"]))
        for r in rows
    }


def _durations(backend: Backend, slo: Slo, window: dict[str, Any]) -> dict[str, np.ndarray]:
    params = {**slis.span_params(slo, roll_up=False), **window, "sample": SAMPLE}
    table = backend.query_arrow(sql.CANARY_DURATIONS, params)
    return {
        v: table.filter(pc.equal(table["version"], v))["duration"].to_numpy().astype(np.float64)
        for v in window["versions"]
    }


def _enough(counts: dict[str, _Counts], versions: Sequence[str], min_requests: int) -> bool:
    return all(counts.get(v, _Counts(0, 0)).total >= min_requests for v in versions)


def _short_of(metric: str, base: _Counts, cand: _Counts, min_requests: int) -> str | None:
    """The "not enough data" reason, or None when both versions have enough requests."""
    short = [
        (name, c.total) for name, c in (("baseline", base), ("candidate", cand)) if c.total < min_requests
    ]
    if not short:
        return None
    listed = ", ".join(f"{name} has {n} request{'s' if n != 1 else ''}" for name, n in short)
    return f"not enough data: {listed}, need {min_requests}"


def _ratio_metric(metric: str, base: _Counts, cand: _Counts, min_requests: int) -> MetricResult:
    """Bad-request ratios compared by Fisher's exact test (one-sided: the candidate's is higher)."""
    common = {
        "metric": metric,
        "unit": "ratio",
        "baseline": base.ratio,
        "candidate": cand.ratio,
        "baseline_requests": base.total,
        "candidate_requests": cand.total,
        "test": "fisher_exact",
    }
    short = _short_of(metric, base, cand, min_requests)
    if short:
        return MetricResult(**common, p_value=None, effect_size=None, verdict=NOT_ENOUGH_DATA, reason=short)
    p = _fisher_greater(cand.bad, cand.total, base.bad, base.total)
    assert base.ratio is not None and cand.ratio is not None
    effect = cand.ratio - base.ratio
    beyond = effect >= RATIO_ABSOLUTE_TOLERANCE and cand.ratio >= base.ratio * RATIO_RELATIVE_TOLERANCE
    verdict, reason = _judge(p, beyond, f"{_pct(cand.ratio)} against {_pct(base.ratio)}")
    return MetricResult(**common, p_value=p, effect_size=effect, verdict=verdict, reason=reason)


def _latency_metrics(
    base: _Counts,
    cand: _Counts,
    base_durations: np.ndarray | None,
    cand_durations: np.ndarray | None,
    min_requests: int,
) -> list[MetricResult]:
    out = []
    for i, (metric, q) in enumerate(_QUANTILES):
        b_ms = base.quantiles_ns[i] / NS_PER_MS if base.quantiles_ns else None
        c_ms = cand.quantiles_ns[i] / NS_PER_MS if cand.quantiles_ns else None
        common = {
            "metric": metric,
            "unit": "ms",
            "baseline": b_ms,
            "candidate": c_ms,
            "baseline_requests": base.total,
            "candidate_requests": cand.total,
            "test": "mann_whitney_u" if q == 0.5 else "fisher_exact_exceedance",
        }
        short = _short_of(metric, base, cand, min_requests)
        if short or base_durations is None or cand_durations is None or b_ms is None or c_ms is None:
            reason = short or "not enough data: no durations"
            out.append(
                MetricResult(**common, p_value=None, effect_size=None, verdict=NOT_ENOUGH_DATA, reason=reason)
            )
            continue
        if q == 0.5:
            p, effect = _mann_whitney_greater(cand_durations, base_durations)
        else:
            p, effect = _exceedance(cand_durations, base_durations, base.quantiles_ns[i], 1 - q)
        beyond = c_ms >= b_ms * LATENCY_RELATIVE_TOLERANCE and c_ms - b_ms >= LATENCY_ABSOLUTE_TOLERANCE_MS
        verdict, reason = _judge(p, beyond, f"{c_ms:.3f} ms against {b_ms:.3f} ms")
        out.append(MetricResult(**common, p_value=p, effect_size=effect, verdict=verdict, reason=reason))
    return out


def _fisher_greater(bad_c: int, total_c: int, bad_b: int, total_b: int) -> float:
    """P-value of "the candidate's bad ratio is higher" (Fisher's exact test, one-sided)."""
    table = [[bad_c, total_c - bad_c], [bad_b, total_b - bad_b]]
    return float(stats.fisher_exact(table, alternative="greater").pvalue)


def _mann_whitney_greater(cand: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """P-value of "the candidate's durations are stochastically larger" and the rank-biserial
    correlation (0: no shift; 1: every candidate request slower than every baseline request)."""
    result = stats.mannwhitneyu(cand, base, alternative="greater", method="asymptotic")
    p = float(result.pvalue)
    # Every duration equal: no variance to test, and no evidence of a shift.
    return (1.0 if math.isnan(p) else p), float(2 * result.statistic / (len(cand) * len(base)) - 1)


def _exceedance(
    cand: np.ndarray, base: np.ndarray, threshold_ns: float, expected: float
) -> tuple[float, float]:
    """Requests slower than the baseline's quantile: the p-value of "a larger share of the
    candidate's" (Fisher's exact test) and the difference of the shares."""
    over_c, over_b = int((cand > threshold_ns).sum()), int((base > threshold_ns).sum())
    p = _fisher_greater(over_c, len(cand), over_b, len(base))
    return p, over_c / len(cand) - over_b / len(base)


def _judge(p: float, beyond_tolerance: bool, values: str) -> tuple[str, str]:
    if p < FAIL_P and beyond_tolerance:
        return FAIL, f"worse: {values} (p = {p:.2g})"
    if p < MARGINAL_P:
        why = "within the tolerance" if p < FAIL_P else f"p = {p:.2g} is above {FAIL_P}"
        return MARGINAL, f"slightly worse: {values} ({why})"
    return PASS, f"no significant worsening: {values} (p = {p:.2g})"


def _burn(counts: _Counts, budget: float) -> float | None:
    """How fast the version alone would spend the SLO's error budget (1: exactly over its window)."""
    if counts.ratio is None or budget <= 0:
        return None
    return counts.ratio / budget


def _overall(metrics: Sequence[MetricResult]) -> tuple[str, str]:
    """Fail if any metric fails; else not enough data if any lacks it; else marginal; else pass."""
    for verdict in (FAIL, NOT_ENOUGH_DATA, MARGINAL):
        hits = [m for m in metrics if m.verdict == verdict]
        if hits:
            return verdict, "; ".join(f"{m.metric}: {m.reason}" for m in hits)
    return PASS, f"no metric is significantly worse ({len(metrics)} compared)"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.3f}%"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
