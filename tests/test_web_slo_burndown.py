"""The SLO page's budget burn-down on a young install, and overspent budgets, in real Chromium.

Every stream is placed relative to the wall clock when it is sent (never to a fixed origin), through
the real SDK exporter and the OTLP/HTTP port; the pages evaluate at request time (the scheduler is
off: nothing here needs stored evaluations).

* ``young`` (30d window, objective 99): 10 good spans a minute for the 12 minutes before the module
  started. At a step of 30d / 200 (216 minutes) that was one evaluation; the page must show the
  minutes since the data began.
* ``lone`` (30d, objective 99): 10 good spans in the one minute before its test runs: one value.
* ``broke`` (1d, objective 99.9): 10 spans a minute for 5 minutes, half of them failing: the budget
  is spent 500 times over (remaining -49900%).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import InProcess, in_process, screenshot
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from test_web_slos import export

from sloscope.app import SloscopeServer

MINUTE = 60
YOUNG_MINUTES = 12
BROKE_MINUTES = 5

SPEC = """\
slos:
  - name: young
    service: young
    objective: 99
    window: 30d
    sli: {spans: {bad: {error: true}}}
  - name: lone
    service: lone
    objective: 99
    window: 30d
    sli: {spans: {bad: {error: true}}}
  - name: broke
    service: broke
    objective: 99.9
    window: 1d
    sli: {spans: {bad: {error: true}}}
"""

# rgb of a CSS colour (a custom property such as --accent) as the page resolves it: the charts and
# the bars take their colours from app.css's variables, which a theme may redefine.
CSS_RGB = """name => {
  const probe = document.createElement("span");
  probe.style.color = `var(${name})`;
  document.body.append(probe);
  const rgb = getComputedStyle(probe).color.match(/\\d+/g).slice(0, 3).map(Number);
  probe.remove();
  return rgb;
}"""

# Pixels of the burn-down's canvas within a small distance of a colour (anti-aliased edges aside).
CANVAS_PIXELS = """([selector, rgb]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    const d = Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]);
    if (d < 40 && data[i + 3] > 200) n++;
  }
  return n;
}"""
BURN_DOWN_CANVAS = 'figure[data-chart="burn-down"].drawn canvas'


def _minute_now() -> int:
    return int(time.time()) // MINUTE * MINUTE


def _spans(service: str, minutes: list[int], bad_per_minute: int = 0) -> list[ReadableSpan]:
    """10 SERVER spans in each minute of ``minutes`` (unix seconds), the first ``bad_per_minute``
    of each failing."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test_web_slo_burndown")
    for minute in minutes:
        for i in range(10):
            start_ns = (minute + i * 5) * 10**9
            span = tracer.start_span("GET /x", kind=SpanKind.SERVER, start_time=start_ns)
            span.set_attribute("http.route", "/x")
            if i < bad_per_minute:
                span.set_status(Status(StatusCode.ERROR, "broken"))
            span.end(end_time=start_ns + 10_000_000)
    provider.shutdown()
    return list(exporter.get_finished_spans())


@dataclass
class World:
    server: InProcess
    young_from: int  # the first minute of young's data

    @property
    def api(self) -> str:
        return self.server.api


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("web-slo-burndown")
    (root / "slos.yaml").write_text(SPEC)
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setattr(SloscopeServer, "_start_scheduler", lambda self: None)
        server = stack.enter_context(in_process(root / "data", slos=str(root / "slos.yaml")))
        now = _minute_now()
        young = [now - m * MINUTE for m in range(YOUNG_MINUTES, 0, -1)]
        broke = [now - m * MINUTE for m in range(BROKE_MINUTES, 0, -1)]
        export(server.otlp, _spans("young", young) + _spans("broke", broke, bad_per_minute=5))
        server.drain()
        yield World(server, young[0])


def _charts(page) -> dict:  # noqa: ANN001
    return json.loads(page.locator("#slo-charts").text_content() or "null")


def _rgb(page, name: str) -> list[int]:  # noqa: ANN001
    return page.evaluate(CSS_RGB, name)


# -- the burn-down of a young SLO -----------------------------------------------------------------


def test_a_young_slo_draws_its_burn_down_minute_by_minute_since_its_data_began(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/slos/young")
    page.wait_for_selector(BURN_DOWN_CANVAS)
    bd = _charts(page)["burn_down"]
    # Nothing is counted at the minute the data began; every later minute has a value (all good).
    values = [v for v in bd["remaining"] if v is not None]
    assert len(values) >= YOUNG_MINUTES and all(v == pytest.approx(100.0) for v in values)
    assert bd["remaining"][0] is None
    # uPlot drew the line: the canvas holds many pixels of the budget's colour.
    assert page.evaluate(CANVAS_PIXELS, [BURN_DOWN_CANVAS, _rgb(page, "--accent")]) > 300
    # The 0% line is drawn too (dashed, in the "bad" colour).
    assert page.evaluate(CANVAS_PIXELS, [BURN_DOWN_CANVAS, _rgb(page, "--bad")]) > 100
    # From the first minute of data to now, a minute apart: not the 30d window at 216-minute steps.
    assert bd["x"][0] == world.young_from
    assert all(b - a == MINUTE for a, b in zip(bd["x"], bd["x"][1:], strict=False))
    assert bd["step"] == "1m"
    assert bd["since_data"] is True and bd["from"] == world.young_from
    assert bd["x"][-1] == bd["to"] >= world.young_from + YOUNG_MINUTES * MINUTE
    caption = page.locator("#burn-down-caption").inner_text()
    assert "since this SLO's data began" in caption and "30d window" in caption
    assert "evaluated every 1m" in caption
    assert "exhausted" in page.locator('figure[data-chart="burn-down"] .u-legend').inner_text()
    screenshot(page, "slo-young-burn-down")
    assert page.problems == []


def test_a_single_value_is_drawn_as_a_point(world: World, page) -> None:  # noqa: ANN001
    # One minute of data, just ended: the page, loaded in the same minute, has one value. Wait for
    # a fresh minute when this one is nearly over, so that sending and loading fit in it.
    if time.time() % MINUTE > 40:
        time.sleep(MINUTE - time.time() % MINUTE + 1)
    now = _minute_now()
    export(world.server.otlp, _spans("lone", [now - MINUTE]))
    world.server.drain()
    page.goto(f"{world.api}/slos/lone")
    page.wait_for_selector(BURN_DOWN_CANVAS)
    # uPlot draws no line through a lone value; the page draws it as a dot.
    assert page.evaluate(CANVAS_PIXELS, [BURN_DOWN_CANVAS, _rgb(page, "--accent")]) > 5
    assert page.evaluate(CANVAS_PIXELS, [BURN_DOWN_CANVAS, _rgb(page, "--bad")]) > 100  # the 0% line
    bd = _charts(page)["burn_down"]
    assert [v for v in bd["remaining"] if v is not None] == [pytest.approx(100.0)]
    assert bd["x"] == [now - MINUTE, now], "the minute turned while the page loaded"
    assert bd["remaining"] == [None, pytest.approx(100.0)]  # the axis: from the data's minute to now
    screenshot(page, "slo-lone-burn-down")
    assert page.problems == []


# -- an overspent budget --------------------------------------------------------------------------


def _assert_red_full_bar(page, cell) -> None:  # noqa: ANN001
    bad = f"rgb({', '.join(map(str, _rgb(page, '--bad')))})"
    bar = cell.locator(".bar")
    fill = bar.locator(":scope > span")
    outer, inner = bar.bounding_box(), fill.bounding_box()
    assert outer and inner and outer["width"] > 0
    assert inner["width"] == pytest.approx(outer["width"], abs=1)  # a full bar, not an empty one
    assert fill.evaluate("e => getComputedStyle(e).backgroundColor") == bad
    number = cell.locator(".budget-left")
    assert number.evaluate("e => getComputedStyle(e).color") == bad
    assert number.inner_text() == "-49900.0% (overspent)"
    assert "overspent" in (bar.get_attribute("aria-label") or "")


def test_an_overspent_budget_is_a_full_red_bar_labelled_overspent(world: World, page) -> None:  # noqa: ANN001
    page.goto(f"{world.api}/slos")
    _assert_red_full_bar(page, page.locator('tr[data-slo="broke"] td.budget'))
    # Not every bar is red: young's budget is untouched.
    young = page.locator('tr[data-slo="young"] td.budget')
    assert young.locator(".bar").get_attribute("class") == "bar"
    assert young.locator(".budget-left").inner_text() == "100.0%"
    screenshot(page, "slos-overspent")

    page.goto(f"{world.api}/slos/broke")
    _assert_red_full_bar(page, page.locator("table.instances tbody tr").first)
    assert "-49900.0% (overspent)" in page.locator("#burn-down-caption").inner_text()
    # The burn-down under 0% is drawn in the "bad" colour, none of it in the budget's usual colour.
    page.wait_for_selector(BURN_DOWN_CANVAS)
    values = [v for v in _charts(page)["burn_down"]["remaining"] if v is not None]
    assert len(values) >= BROKE_MINUTES and all(v == pytest.approx(-49900.0) for v in values)
    assert page.evaluate(CANVAS_PIXELS, [BURN_DOWN_CANVAS, _rgb(page, "--accent")]) < 10
    assert page.evaluate(CANVAS_PIXELS, [BURN_DOWN_CANVAS, _rgb(page, "--bad")]) > 1000
    screenshot(page, "slo-overspent")
    assert page.problems == []


# -- without JavaScript -----------------------------------------------------------------------------


def test_the_burn_down_table_stands_without_javascript(world: World, browser) -> None:  # noqa: ANN001
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{world.api}/slos/young")
        assert page.locator("canvas").count() == 0
        table = page.locator('figure[data-chart="burn-down"] table.series')
        assert table.is_visible()
        rows = table.locator("tbody tr")
        # A row a minute since the data began (and a few more if the clock moved on meanwhile).
        assert YOUNG_MINUTES + 1 <= rows.count() <= YOUNG_MINUTES + 6
        assert rows.first.locator("td").nth(1).inner_text() == "–"  # the minute the data began
        assert rows.last.locator("td").nth(1).inner_text() == "100.00%"
        assert "since this SLO's data began" in page.locator("#burn-down-caption").inner_text()

        page.goto(f"{world.api}/slos/broke")
        cells = page.locator('figure[data-chart="burn-down"] table.series td.num.bad')
        assert cells.count() >= BROKE_MINUTES
        assert cells.last.inner_text() == "-49900.00%"
        screenshot(page, "slo-overspent-no-js")
    finally:
        context.close()
