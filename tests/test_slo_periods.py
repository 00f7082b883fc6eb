"""Closed periods ("was February met?"): ``slo report --period previous``, ``?period=previous`` on
``/api/v1/slos`` and ``/api/v1/slos/{name}``, and the SLO page's "previous period" block.

The stream: real SDK SERVER spans of service ``shop`` written through the engine's Protobuf input (the
collector's path), in bursts of ``n`` spans one second apart, ``bad`` of them failing:

    D  2025-01-31T23:59Z  20 spans, 20 bad   (January in UTC; February in Berlin)
    A  2025-02-10T12:00Z  40 spans,  2 bad
    F  2025-02-18T06:00Z  30 spans,  3 bad
    B  2025-02-25T12:00Z  60 spans,  1 bad
    E  2025-02-28T23:59Z  10 spans,  1 bad   (February's last minute in UTC; March in Berlin)
    M  2025-03-01T00:00Z   5 spans,  5 bad   (March)

Evaluated at 2025-03-01T00:00Z, whose current month has seen nothing yet:

* ``monthly`` (objective 95, UTC month): February is A+F+B+E = 140 spans, 7 bad: SLI 133/140 = 0.95
  exactly, budget 0.05 x 140 = 7, consumed 1.0: met (SLI >= objective, on the boundary).
* ``monthly-strict`` (objective 99): the same February, budget 1.4, consumed 5.0: missed.
* ``monthly-berlin`` (objective 95, Europe/Berlin month = [2025-01-31T23:00Z, 2025-02-28T23:00Z)):
  D+A+F+B = 150 spans, 26 bad: SLI 124/150, budget 7.5, consumed 26/7.5: missed. The current Berlin
  month began at 2025-02-28T23:00Z and holds E (10 spans, 1 bad).
* ``rolling-7d`` (objective 95): previous = the 7 days that ended where the current window starts,
  [2025-02-15, 2025-02-22) evaluated at 2025-02-22T00:00Z: F = 30 spans, 3 bad: SLI 0.9, budget
  1.5, consumed 2.0: missed.

The same bursts are also written relative to the month the test runs in (D one minute before the
previous month, A/F/B at the same offsets into it, E in its last minute; no M), for the page, which
always reads "now".
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from slo import spec
from slo.budget import evaluate, evaluate_many
from slo.series import MinuteCounts
from slo.windows import previous_close_s, previous_period, window_bounds, window_bounds_many
from store import migrations, open_backend
from store.otlp_writer import OtlpWriter
from tests.conftest import ROOT, InProcess, in_process, screenshot

SLOSCOPE = ROOT / ".venv" / "bin" / "sloscope"


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


JAN1, FEB1, FEB15, FEB22, MAR1 = (
    utc(f"2025-{d}T00:00:00Z") for d in ("01-01", "02-01", "02-15", "02-22", "03-01")
)
BERLIN_FEB = (utc("2025-01-31T23:00:00Z"), utc("2025-02-28T23:00:00Z"))
DAY = 86_400

#: (start, spans, bad) of each burst of the module docstring.
BURSTS = {
    "D": (utc("2025-01-31T23:59:00Z"), 20, 20),
    "A": (utc("2025-02-10T12:00:00Z"), 40, 2),
    "F": (utc("2025-02-18T06:00:00Z"), 30, 3),
    "B": (utc("2025-02-25T12:00:00Z"), 60, 1),
    "E": (utc("2025-02-28T23:59:00Z"), 10, 1),
    "M": (MAR1, 5, 5),
}

SPEC = """\
x-shop: &shop
  service: shop
  sli: {spans: {bad: {error: true}}}
slos:
  - {<<: *shop, name: monthly, objective: 95, window: {calendar: month}}
  - {<<: *shop, name: monthly-strict, objective: 99, window: {calendar: month}}
  - {<<: *shop, name: monthly-berlin, objective: 95, window: {calendar: month, time_zone: Europe/Berlin}}
  - {<<: *shop, name: rolling-7d, objective: 95, window: 7d}
"""
NAMES = ["monthly", "monthly-strict", "monthly-berlin", "rolling-7d"]

# -- hand-computed answers at 2025-03-01T00:00Z, period=previous ----------------------------------------

PREVIOUS = {
    "monthly": {
        "at": MAR1, "window_start": FEB1, "period_end": MAR1, "total": 140, "bad": 7,
        "sli": 0.95, "budget": 7, "consumed": 1.0, "met": True,
    },
    "monthly-strict": {
        "at": MAR1, "window_start": FEB1, "period_end": MAR1, "total": 140, "bad": 7,
        "sli": 0.95, "budget": 1.4, "consumed": 5.0, "met": False,
    },
    "monthly-berlin": {
        "at": BERLIN_FEB[1], "window_start": BERLIN_FEB[0], "period_end": BERLIN_FEB[1], "total": 150,
        "bad": 26, "sli": 124 / 150, "budget": 7.5, "consumed": 26 / 7.5, "met": False,
    },
    "rolling-7d": {
        "at": FEB22, "window_start": FEB15, "period_end": FEB22, "total": 30, "bad": 3,
        "sli": 0.9, "budget": 1.5, "consumed": 2.0, "met": False,
    },
}  # fmt: skip
# The same instant, period=current: March has seen nothing; Berlin's March holds E; the rolling
# window [02-22, 03-01) holds B and E (70 spans, 2 bad).
CURRENT = {
    "monthly": {"at": MAR1, "window_start": MAR1, "total": 0, "sli": None, "met": None},
    "monthly-strict": {"at": MAR1, "window_start": MAR1, "total": 0, "sli": None, "met": None},
    "monthly-berlin": {"at": MAR1, "window_start": BERLIN_FEB[1], "total": 10, "bad": 1, "sli": 0.9, "met": False},
    "rolling-7d": {"at": MAR1, "window_start": FEB22, "total": 70, "bad": 2, "sli": 68 / 70, "met": True},
}


def assert_matches(result: dict[str, Any], wanted: dict[str, Any]) -> None:
    """``result`` (one instance's JSON) has ``wanted``'s values: counts and flags exactly, ratios to
    rounding."""
    for key, value in wanted.items():
        if isinstance(value, float):
            assert result[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert result[key] == value, key


# -- the stream ----------------------------------------------------------------------------------------


def month_starts(now_s: float) -> tuple[int, int]:
    """The first instants of the previous and of the current UTC month of ``now_s``."""
    now = datetime.fromtimestamp(now_s, UTC)
    current = datetime(now.year, now.month, 1, tzinfo=UTC)
    previous = (current - timedelta(days=1)).replace(day=1)
    return int(previous.timestamp()), int(current.timestamp())


def relative_bursts(now_s: float) -> dict[str, tuple[int, int, int]]:
    """The bursts D, A, F, B, E placed around the month before ``now_s`` (see the docstring)."""
    previous, current = month_starts(now_s)
    starts = {
        "D": previous - 60,
        "A": previous + 9 * DAY + 12 * 3600,
        "F": previous + 17 * DAY + 6 * 3600,
        "B": previous + 24 * DAY + 12 * 3600,
        "E": current - 60,
    }
    return {k: (s, BURSTS[k][1], BURSTS[k][2]) for k, s in starts.items()}


def span_request(bursts: list[tuple[int, int, int]]) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_slo_periods")
    for start_s, n, bad in bursts:
        for i in range(n):
            start_ns = (start_s + i) * 10**9 + 1234
            span = tracer.start_span("GET /items", kind=SpanKind.SERVER, start_time=start_ns)
            if i < bad:
                span.set_status(Status(StatusCode.ERROR, "failed"))
            span.end(end_time=start_ns + 20_000_000)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


@dataclass(frozen=True)
class Prepared:
    data_dir: Path
    spec: Path
    #: When the now-relative bursts were placed (the page test checks it is still in that month).
    placed_at_s: int


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    root = tmp_path_factory.mktemp("slo-periods")
    (root / "slos.yaml").write_text(SPEC)
    placed = int(datetime.now(UTC).timestamp())
    store = open_backend(root / "data")
    try:
        migrations.migrate(store)
        migrations.ensure_retention(store, 0)  # keep forever: February 2025 is long past 7 days
        writer = OtlpWriter(store, [])
        writer.write("traces", [span_request(list(BURSTS.values()))], "slo-periods-2025")
        writer.write("traces", [span_request(list(relative_bursts(placed).values()))], "slo-periods-now")
    finally:
        store.close()  # the CLI's processes open the data directory next
    return Prepared(root / "data", root / "slos.yaml", placed)


# -- windows and budgets, without a store -----------------------------------------------------------------


def _slos(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "slos.yaml"
    path.write_text(SPEC)
    slos, errors = spec.load(path)
    assert not errors
    return {s.name: s for s in slos}


def test_the_previous_period_is_the_closed_calendar_period_or_the_rolling_window_before(
    tmp_path: Path,
) -> None:
    slos = _slos(tmp_path)
    month, berlin, rolling = slos["monthly"].window, slos["monthly-berlin"].window, slos["rolling-7d"].window
    for t in (MAR1, MAR1 + 59, MAR1 + 14 * DAY + 3600):  # at, just after, and well into March
        bounds = previous_period(month, t)
        assert (bounds.start_s, bounds.end_s, bounds.period_end_s) == (FEB1, MAR1, MAR1)
        assert bounds.calendar and bounds.elapsed_s == bounds.length_s == 28 * DAY
    assert previous_close_s(month, MAR1 - 60) == FEB1  # on 02-28 23:59 the previous month is January
    assert (previous_period(month, MAR1 - 60).start_s, previous_period(month, MAR1 - 60).end_s) == (JAN1, FEB1)
    bounds = previous_period(berlin, MAR1)  # 01:00 on 1 March in Berlin
    assert (bounds.start_s, bounds.end_s) == BERLIN_FEB
    bounds = previous_period(rolling, MAR1 + 30)
    assert (bounds.start_s, bounds.end_s, bounds.calendar) == (FEB15, FEB22, False)
    # Without closing, an evaluation at the boundary is the new, empty period; with it, the old one.
    assert window_bounds(month, MAR1).start_s == MAR1
    assert window_bounds(month, MAR1, closing=True).start_s == FEB1
    assert window_bounds(month, MAR1 + 60, closing=True).start_s == MAR1  # only the boundary moves
    times = [FEB1, FEB15, MAR1, MAR1 + 60]
    start, end, period_end = window_bounds_many(month, times, closing=True)
    assert start.tolist() == [JAN1, FEB1, FEB1, MAR1] and end.tolist() == times
    assert period_end.tolist() == [FEB1, MAR1, MAR1, utc("2025-04-01T00:00:00Z")]


def test_a_closed_month_is_evaluated_over_all_of_it_and_met_is_sli_at_least_objective(tmp_path: Path) -> None:
    slos = _slos(tmp_path)
    # Per-minute counts from 01-31 23:59 to 03-01 00:01 holding the bursts D, A, F, B, E and M.
    origin = BURSTS["D"][0]
    total, bad = [0.0] * ((MAR1 + 120 - origin) // 60), [0.0] * ((MAR1 + 120 - origin) // 60)
    for start_s, n, b in BURSTS.values():
        total[(start_s - origin) // 60] += n
        bad[(start_s - origin) // 60] += b
    counts = MinuteCounts(origin, np.array(total), np.array(bad))
    for name in ("monthly", "monthly-strict"):
        exact = evaluate(slos[name], counts, MAR1, closing=True)
        many = evaluate_many(slos[name], counts, [MAR1], closing=True).at(0)
        for ev in (exact, many):
            wanted = PREVIOUS[name]
            assert (ev.window_start_s, ev.at_s, ev.total, ev.bad) == (FEB1, MAR1, 140, 7)
            assert ev.sli == pytest.approx(0.95, rel=1e-12) and ev.met is wanted["met"]
            assert ev.consumed == pytest.approx(wanted["consumed"], rel=1e-12)
    # 0.95 is no float: 133/140 computed in floats may fall either side of it, so met is decided
    # exactly; one bad event more is below the objective.
    bad[(BURSTS["A"][0] - origin) // 60] += 1
    worse = MinuteCounts(origin, np.array(total), np.array(bad))
    assert evaluate(slos["monthly"], worse, MAR1, closing=True).met is False
    assert evaluate_many(slos["monthly"], worse, [MAR1], closing=True).at(0).met is False
    # The naive "evaluate one minute before the close" misses the last minute (E: 10 spans).
    assert evaluate(slos["monthly"], counts, MAR1 - 60).total == 130


# -- the CLI --------------------------------------------------------------------------------------------


def sloscope(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCOPE_")}
    return subprocess.run(
        [str(SLOSCOPE), *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


def _report(prepared: Prepared, *extra: str) -> subprocess.CompletedProcess[str]:
    return sloscope(
        "slo", "report", prepared.spec, "--at", "2025-03-01T00:00:00Z", "--data-dir", prepared.data_dir, *extra
    )


def test_report_period_previous_gives_each_closed_period_and_whether_it_was_met(prepared: Prepared) -> None:
    result = _report(prepared, "--period", "previous", "--format", "json")
    assert result.returncode == 0, result.stderr
    by_name = {r["slo"]: r for r in json.loads(result.stdout)}
    assert list(by_name) == NAMES
    for name, wanted in PREVIOUS.items():
        assert_matches(by_name[name], wanted)

    current = _report(prepared, "--format", "json")  # --period current is the default
    assert current.returncode == 0, current.stderr
    by_name = {r["slo"]: r for r in json.loads(current.stdout)}
    for name, wanted in CURRENT.items():
        assert_matches(by_name[name], wanted)

    table = _report(prepared, "--period", "previous")
    assert table.returncode == 0, table.stderr
    blocks = {b.split()[0]: b for b in table.stdout.strip().split("\n\n")}
    assert "previous period 2025-02-01T00:00:00Z to 2025-03-01T00:00:00Z" in blocks["monthly"]
    assert blocks["monthly"].splitlines()[2].split() == ["-", "95.000%", "100.000%", "met"]
    assert blocks["monthly-strict"].splitlines()[2].split() == ["-", "95.000%", "500.000%", "missed"]
    assert "previous period 2025-01-31T23:00:00Z to 2025-02-28T23:00:00Z" in blocks["monthly-berlin"]
    assert blocks["monthly-berlin"].splitlines()[2].split() == ["-", "82.667%", "346.667%", "missed"]
    assert "previous period 2025-02-15T00:00:00Z to 2025-02-22T00:00:00Z" in blocks["rolling-7d"]
    assert blocks["rolling-7d"].splitlines()[2].split() == ["-", "90.000%", "200.000%", "missed"]


def test_report_refuses_an_unknown_period_naming_the_flag(prepared: Prepared) -> None:
    result = _report(prepared, "--period", "last")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--period" in result.stderr and "previous" in result.stderr, result.stderr


# -- the API and the page ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(prepared: Prepared) -> Iterator[InProcess]:
    """A server over the prepared store (after the CLI tests: chDB holds one directory per process)."""
    with in_process(prepared.data_dir, slos=str(prepared.spec), retention_days=0) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: InProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api, timeout=60) as c:
        yield c


def test_the_api_reports_the_previous_period_of_every_slo_and_of_one(client: httpx.Client) -> None:
    body = client.get("/api/v1/slos", params={"at": "2025-03-01T00:00:00Z", "period": "previous"})
    assert body.status_code == 200, body.text
    doc = body.json()
    assert doc["at"] == MAR1 and doc["period"] == "previous"
    by_name = {r["slo"]: r for r in doc["slos"]}
    assert list(by_name) == NAMES
    for name, wanted in PREVIOUS.items():
        assert_matches(by_name[name], wanted)

    one = client.get("/api/v1/slos/monthly-berlin", params={"at": str(MAR1 * 1000), "period": "previous"})
    assert one.status_code == 200, one.text
    assert one.json()["period"] == "previous" and len(one.json()["instances"]) == 1
    assert_matches(one.json()["instances"][0], PREVIOUS["monthly-berlin"])

    current = client.get("/api/v1/slos", params={"at": "2025-03-01T00:00:00Z"}).json()
    assert current["period"] == "current"
    for r in current["slos"]:
        assert_matches(r, CURRENT[r["slo"]])

    # 1970-01-12: the current 7d window starts on 01-05, the previous one on 12-29-1969, before
    # the store's times begin: that is refused, naming at.
    early = {"at": "1970-01-12T00:00:00Z"}
    assert client.get("/api/v1/slos/rolling-7d", params=early).status_code == 200
    refused = client.get("/api/v1/slos/rolling-7d", params={**early, "period": "previous"})
    assert refused.status_code == 400 and refused.json()["detail"].startswith("at: "), refused.text


@pytest.mark.parametrize("path", ["/api/v1/slos", "/api/v1/slos/monthly"])
@pytest.mark.parametrize("value", ["last", "PREVIOUS", "previous "])
def test_the_api_refuses_an_unknown_period_naming_the_parameter(
    client: httpx.Client, path: str, value: str
) -> None:
    response = client.get(path, params={"period": value})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("period: "), response.json()["detail"]


def test_the_slo_page_shows_the_previous_period(server: InProcess, prepared: Prepared, page) -> None:  # noqa: ANN001
    previous, current = month_starts(prepared.placed_at_s)
    if month_starts(datetime.now(UTC).timestamp()) != (previous, current):
        pytest.skip("the month changed since the stream was placed")  # only at a month's first instant
    iso = "%Y-%m-%dT%H:%M:%SZ"
    page.goto(f"{server.api}/slos/monthly")
    block = page.locator("section.previous-period")
    times = block.locator("h2 time")
    assert times.nth(0).get_attribute("datetime") == datetime.fromtimestamp(previous, UTC).strftime(iso)
    assert times.nth(1).get_attribute("datetime") == datetime.fromtimestamp(current, UTC).strftime(iso)
    cells = [c.strip() for c in block.locator("tbody tr td").all_inner_texts()]
    # A, F, B and E of the month before this one: 140 spans, 7 bad, as February 2025.
    assert cells == ["all", "95.000%", "100.0%", "7 / 140 events", "met"]
    screenshot(page, "slo-previous-period")
    assert block.locator("th").last.inner_text() == "Objective met"
    # Its JSON twin is the API's answer for the same period.
    href = block.locator("a", has_text="As JSON").get_attribute("href")
    assert href == "/api/v1/slos/monthly?period=previous"
    twin = httpx.get(server.api + href, timeout=60).json()
    assert twin["period"] == "previous" and twin["instances"][0]["window_start"] == previous
    assert twin["instances"][0]["met"] is True

    page.goto(f"{server.api}/slos/monthly-strict")
    cells = [c.strip() for c in page.locator("section.previous-period tbody tr td").all_inner_texts()]
    assert cells == ["all", "95.000%", "500.0%", "7 / 140 events", "missed"]
    assert page.problems == []
