"""``/metrics`` export of SLO evaluations (slo/exposition.py) over the real chDB engine: an SLO whose
alert rules use windows outside the defaults exports its burn rate over each of them too.

The data is tests/test_slo_evaluator.py's: three hours of traffic ending a whole hour ago, 100
requests a minute, 20 of them failing in the last hour; objective 99 (error budget 0.01).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from slo import evaluator
from slo.exposition import SloMetrics
from slo.model import DAY_S, HOUR_S, MINUTE_S, AlertPolicy, BurnRule, Slo, SpanSli, Window
from store import migrations
from store.embedded import EmbeddedBackend
from tests.test_slo_evaluator import END_S, _spans


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    store = EmbeddedBackend(tmp_path_factory.mktemp("slo-exposition") / "store")
    migrations.migrate(store)
    store.insert_arrow("spans", _spans("shop"))
    yield store
    store.close()


def _burn_rates(slo: Slo, backend: EmbeddedBackend) -> dict[str, float]:
    """``sloscope_slo_burn_rate`` by window, as a scrape of the collector reads it."""
    metrics = SloMetrics()
    metrics.update(evaluator.evaluate_slo(backend, slo, END_S))
    registry = CollectorRegistry()
    registry.register(metrics)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name == "sloscope_slo_burn_rate":
            for sample in family.samples:
                assert sample.labels["slo"] == slo.name
                assert sample.labels["window"] not in out  # one series per window
                out[sample.labels["window"]] = sample.value
    return out


def test_every_window_of_the_alert_rules_is_exported_besides_the_defaults(backend: EmbeddedBackend) -> None:
    rules = (
        BurnRule("page", 4 * HOUR_S, 2 * MINUTE_S, Fraction(5)),
        BurnRule("ticket", 90 * MINUTE_S, MINUTE_S, Fraction(3)),
        BurnRule("ticket", HOUR_S, 5 * MINUTE_S, Fraction(3)),  # windows the defaults have: one series each
    )
    slo = Slo(
        name="checkout",
        service="shop",
        objective=Decimal("99"),
        sli=SpanSli(bad_error=True),
        window=Window(rolling_s=DAY_S),
        alerting=AlertPolicy(rules),
    )
    burn = _burn_rates(slo, backend)
    # The last hour fails at 20 %: burn 20 over any window inside it. 90m: 1200 bad of 9000; 2h: 1200
    # of 12000; 4h and longer hold the three hours of traffic: 1200 of 18000.
    assert burn == pytest.approx(
        {
            "1m": 20.0,
            "2m": 20.0,
            "5m": 20.0,
            "30m": 20.0,
            "1h": 20.0,
            "90m": 1200 / 9000 / 0.01,
            "2h": 10.0,
            "4h": 1200 / 18000 / 0.01,
            "6h": 1200 / 18000 / 0.01,
            "1d": 1200 / 18000 / 0.01,
            "3d": 1200 / 18000 / 0.01,
        }
    )
    # Without rules of its own the SLO exports just the defaults (and its window, here 1d).
    defaults = _burn_rates(replace(slo, alerting=AlertPolicy(())), backend)
    assert set(defaults) == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
