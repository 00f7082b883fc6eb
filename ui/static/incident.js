// Incident page: the burn-rate charts of its SLOs' alert rules, drawn with uPlot over the JSON the page
// embeds (#incident-burn). Without this file the page shows the same numbers as tables. Colours come from
// app.css's variables, so a theme that redefines them redraws the charts in its colours on reload.
(function () {
  "use strict";
  var source = document.getElementById("incident-burn");
  if (!source || typeof uPlot === "undefined") return;
  var charts = JSON.parse(source.textContent);
  if (!charts || !charts.length) return;
  var utc = document.body.dataset.tz !== "browser";
  var css = getComputedStyle(document.documentElement);
  function colour(name) { return css.getPropertyValue(name).trim(); }
  var drawn = [];

  function fmt(v) { return v == null ? "–" : v.toFixed(2) + "×"; }

  // Dashed vertical lines where the incident opened and closed.
  function marks(chart) {
    return function (u) {
      var ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = colour("--muted");
      ctx.setLineDash([3, 3]);
      ctx.lineWidth = 1;
      [chart.opened, chart.closed].forEach(function (t) {
        if (t == null) return;
        var x = Math.round(u.valToPos(t, "x", true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
      });
      ctx.restore();
    };
  }

  charts.forEach(function (chart) {
    var box = document.querySelector('figure[data-chart="' + chart.chart + '"]');
    if (!box) return;
    var target = box.querySelector(".chart");
    var opts = {
      width: Math.max(300, target.clientWidth || box.clientWidth || 800),
      height: 200,
      scales: { x: { time: true } },
      axes: [{}, { label: "burn rate", size: 60 }],
      series: [
        {},
        { label: "burn " + chart.long, stroke: colour("--warn"), width: 2, value: function (u, v) { return fmt(v); } },
        { label: "burn " + chart.short, stroke: colour("--accent"), width: 1, value: function (u, v) { return fmt(v); } },
        { label: "factor " + chart.factor + "×", stroke: colour("--bad"), dash: [6, 4], width: 1.5,
          points: { show: false }, value: function (u, v) { return fmt(v); } },
      ],
      legend: { live: true },
      hooks: { draw: [marks(chart)] },
    };
    if (utc) opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
    var data = [chart.x, chart.long_rate, chart.short_rate, chart.x.map(function () { return chart.factor; })];
    drawn.push({ plot: new uPlot(opts, data, target), target: target });
    box.classList.add("drawn");
  });

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      drawn.forEach(function (d) {
        d.plot.setSize({ width: Math.max(300, d.target.clientWidth), height: 200 });
      });
    }, 150);
  });
})();
