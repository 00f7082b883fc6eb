// The service page's RED charts, drawn with uPlot from the JSON the page embeds. Progressive
// enhancement: without JavaScript (or uPlot) the table below the charts shows the same numbers.
(function () {
  "use strict";
  var holder = document.getElementById("red-charts");
  var source = document.getElementById("red-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  var data = JSON.parse(source.textContent);
  if (!data.time || !data.time.length) return;

  var utc = document.body.dataset.tz !== "browser";
  var tzDate = utc ? function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); } : undefined;
  var percent = data.error_ratio.map(function (v) { return v === null ? null : v * 100; });
  var charts = {
    rate: {
      series: [
        { label: "requests/s", stroke: "#2b6cb0", fill: "rgba(43,108,176,.08)", width: 1.5, value: fmt(2, "/s") },
        { label: "errors/s", stroke: "#c53030", width: 1.5, value: fmt(2, "/s") }
      ],
      data: [data.rate, data.error_rate],
      unit: "/s"
    },
    errors: {
      series: [{ label: "error ratio", stroke: "#c53030", fill: "rgba(197,48,48,.08)", width: 1.5, value: fmt(2, "%") }],
      data: [percent],
      unit: "%"
    },
    latency: {
      series: [
        { label: "p50", stroke: "#2f855a", width: 1.5, value: fmt(1, " ms") },
        { label: "p95", stroke: "#b7791f", width: 1.5, value: fmt(1, " ms") },
        { label: "p99", stroke: "#c53030", width: 1.5, value: fmt(1, " ms") }
      ],
      data: [data.p50, data.p95, data.p99],
      unit: " ms"
    }
  };

  function fmt(digits, unit) {
    return function (u, v) { return v === null || v === undefined ? "–" : v.toFixed(digits) + unit; };
  }

  holder.hidden = false;
  var plots = [];
  holder.querySelectorAll("[data-chart]").forEach(function (el) {
    var spec = charts[el.dataset.chart];
    // Steps without requests are gaps; a value between two gaps is a dot, or it would not show at all.
    var series = spec.series.map(function (one, i) {
      var values = spec.data[i];
      var lonely = values.some(function (v, j) {
        return v !== null && (j === 0 || values[j - 1] === null) && (j === values.length - 1 || values[j + 1] === null);
      });
      return Object.assign({ points: { show: lonely, size: 5 } }, one);
    });
    var opts = {
      width: Math.max(300, el.clientWidth),
      height: 180,
      tzDate: tzDate,
      cursor: { sync: { key: "red" } },
      scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      series: [{}].concat(series),
      axes: [{}, { size: 60, values: function (u, ticks) { return ticks.map(function (t) { return t + spec.unit; }); } }]
    };
    if (!tzDate) delete opts.tzDate;
    plots.push({ el: el, plot: new uPlot(opts, [data.time].concat(spec.data), el) });
  });

  // The charts show the numbers now; the table stays one click away.
  var table = document.getElementById("red-table");
  if (table) table.open = false;

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      plots.forEach(function (p) { p.plot.setSize({ width: Math.max(300, p.el.clientWidth), height: 180 }); });
    }, 100);
  });
})();
