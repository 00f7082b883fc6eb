// SLO page charts: uPlot over the JSON the page embeds (#slo-charts). Without this file the page
// shows the same numbers as tables; with it the tables fold away under "Data".
(function () {
  "use strict";
  var source = document.getElementById("slo-charts");
  if (!source || typeof uPlot === "undefined") return;
  var charts = JSON.parse(source.textContent);
  if (!charts) return;
  var utc = document.body.dataset.tz !== "browser";
  var drawn = [];

  function fmt(v, digits) { return v == null ? "–" : v.toFixed(digits); }

  // Colours come from app.css's variables, read when drawn, so a theme that redefines them
  // (dark mode) recolours the charts too.
  function cssColor(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  // `color` with opacity `a`: the canvas parses any CSS colour and hands it back as #rrggbb.
  var scratch = document.createElement("canvas").getContext("2d");
  function withAlpha(color, a) {
    scratch.fillStyle = "#000";
    scratch.fillStyle = color;
    var hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(scratch.fillStyle);
    if (!hex) return scratch.fillStyle;
    return "rgba(" + [1, 2, 3].map(function (i) { return parseInt(hex[i], 16); }).join(",") + "," + a + ")";
  }

  // A vertical gradient that switches from `above` to `below` at y = 0: the part of a line (or
  // area) under the 0% line is an overspent budget and is drawn in the "bad" colour.
  function splitAtZero(u, above, below) {
    // Outside a draw (the legend's markers are made at start) there is no scale to split at.
    if (!u.bbox || !u.scales.y || u.scales.y.min == null) return above;
    var top = u.bbox.top, height = u.bbox.height;
    var y0 = u.valToPos(0, "y", true);
    if (!isFinite(y0) || !height || y0 >= top + height) return above;
    if (y0 <= top) return below;
    var at = (y0 - top) / height;
    var g = u.ctx.createLinearGradient(0, top, 0, top + height);
    g.addColorStop(0, above);
    g.addColorStop(at, above);
    g.addColorStop(at, below);
    g.addColorStop(1, below);
    return g;
  }

  // Values with no value on either side: uPlot draws a line only between two neighbours, so
  // without a point these (a young SLO's only evaluation, say) would not be drawn at all.
  function lonePoints(u, si, show) {
    if (show) return null;  // uPlot draws every point already
    var ys = u.data[si], lone = [];
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] != null && (i === 0 || ys[i - 1] == null) && (i === ys.length - 1 || ys[i + 1] == null)) {
        lone.push(i);
      }
    }
    return lone.length ? lone : null;
  }

  // Every series is evaluated at whole minutes: ticks no finer than a minute (uPlot would label a
  // young SLO's few minutes in 15-second steps).
  var MINUTE_TICKS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400];

  function draw(name, x, series, yLabel) {
    var box = document.querySelector('figure[data-chart="' + name + '"]');
    if (!box) return;
    var target = box.querySelector(".chart");
    var opts = {
      width: Math.max(300, target.clientWidth || box.clientWidth || 800),
      height: 220,
      scales: { x: { time: true } },
      axes: [{ incrs: MINUTE_TICKS }, { label: yLabel, size: 60 }],
      series: [{}].concat(series),
      // A series may name its legend colour (`marker`): a gradient stroke cannot colour a marker.
      legend: { live: true, markers: {
        stroke: function (u, i) { var s = u.series[i]; return s.marker ? s.marker() : s.stroke(u, i); },
        fill: function (u, i) { var s = u.series[i]; return s.marker ? withAlpha(s.marker(), 0.15) : s.fill(u, i); },
      } },
    };
    if (utc) opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
    var data = [x].concat(series.map(function (s) { return s.values; }));
    series.forEach(function (s) { delete s.values; });
    var plot = new uPlot(opts, data, target);
    drawn.push({ plot: plot, target: target });
    var details = box.querySelector("details.chart-data");
    if (details) details.open = false;
    box.classList.add("drawn");
  }

  // The burn-down's x axis runs from the minute the data began (or the window's start) to now: the
  // server puts both ends in `x`, so even one value has a drawn axis and 0% line.
  if (charts.burn_down) {
    var bd = charts.burn_down;
    var values = bd.remaining.filter(function (v) { return v != null; }).length;
    var budgetStroke = function (u) {
      return splitAtZero(u, cssColor("--accent", "#2b6cb0"), cssColor("--bad", "#c53030"));
    };
    draw("burn-down", bd.x, [
      { label: "budget left %", width: 2, stroke: budgetStroke,
        marker: function () { return cssColor("--accent", "#2b6cb0"); },
        fill: function (u) {
          return splitAtZero(u, withAlpha(cssColor("--accent", "#2b6cb0"), 0.08),
            withAlpha(cssColor("--bad", "#c53030"), 0.15));
        },
        // Few values: every one is a visible dot (a lone value is otherwise not drawn at all).
        points: values <= 60 ? { show: true, size: 7, width: 2, stroke: budgetStroke, fill: budgetStroke }
          : { filter: lonePoints, size: 7, width: 2, stroke: budgetStroke, fill: budgetStroke },
        values: bd.remaining, value: function (u, v) { return fmt(v, 2) + "%"; } },
      { label: "exhausted", stroke: function () { return cssColor("--bad", "#c53030"); }, dash: [6, 4],
        width: 1, points: { show: false }, values: bd.x.map(function () { return 0; }) },
    ], "% of budget");
  }
  (charts.rules || []).forEach(function (rule, i) {
    draw("rule-" + i, rule.x, [
      { label: "burn " + rule.long, stroke: function () { return cssColor("--warn", "#b7791f"); }, width: 2,
        values: rule.long_rate, value: function (u, v) { return fmt(v, 2) + "×"; } },
      { label: "burn " + rule.short, stroke: "#6b46c1", width: 1, values: rule.short_rate,
        value: function (u, v) { return fmt(v, 2) + "×"; } },
      { label: "threshold " + rule.factor + "×", stroke: function () { return cssColor("--bad", "#c53030"); },
        dash: [6, 4], width: 1.5, points: { show: false }, values: rule.x.map(function () { return rule.factor; }) },
    ], "burn rate");
  });

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      drawn.forEach(function (d) {
        d.plot.setSize({ width: Math.max(300, d.target.clientWidth), height: 220 });
      });
    }, 150);
  });
})();
