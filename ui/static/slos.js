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

  function draw(name, x, series, yLabel) {
    var box = document.querySelector('figure[data-chart="' + name + '"]');
    if (!box) return;
    var target = box.querySelector(".chart");
    var opts = {
      width: Math.max(300, target.clientWidth || box.clientWidth || 800),
      height: 220,
      scales: { x: { time: true } },
      axes: [{}, { label: yLabel, size: 60 }],
      series: [{}].concat(series),
      legend: { live: true },
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

  if (charts.burn_down) {
    var bd = charts.burn_down;
    draw("burn-down", bd.x, [
      { label: "budget left %", stroke: "#2b6cb0", width: 2, fill: "rgba(43,108,176,0.08)",
        values: bd.remaining, value: function (u, v) { return fmt(v, 2) + "%"; } },
      { label: "exhausted", stroke: "#c53030", dash: [6, 4], width: 1, points: { show: false },
        values: bd.x.map(function () { return 0; }) },
    ], "% of budget");
  }
  (charts.rules || []).forEach(function (rule, i) {
    draw("rule-" + i, rule.x, [
      { label: "burn " + rule.long, stroke: "#b7791f", width: 2, values: rule.long_rate,
        value: function (u, v) { return fmt(v, 2) + "×"; } },
      { label: "burn " + rule.short, stroke: "#6b46c1", width: 1, values: rule.short_rate,
        value: function (u, v) { return fmt(v, 2) + "×"; } },
      { label: "threshold " + rule.factor + "×", stroke: "#c53030", dash: [6, 4], width: 1.5,
        points: { show: false }, values: rule.x.map(function () { return rule.factor; }) },
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
