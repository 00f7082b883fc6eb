// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Times are rendered in UTC; with the "browser" setting, rewrite <time datetime> in local time.
  if (document.body.dataset.tz === "browser") {
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) el.textContent = d.toLocaleString();
    });
  }
  // Selects that submit their form on change (no inline on* handlers: the CSP refuses them).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // Requests made by htmx carry the page's CSRF token (forms carry it in a hidden field).
  var csrf = document.querySelector('meta[name="csrf-token"]');
  if (csrf) {
    document.body.addEventListener("htmx:configRequest", function (event) {
      event.detail.headers["X-CSRF-Token"] = csrf.getAttribute("content");
    });
  }
  // Sortable tables: click a header of a table marked data-sortable.
  document.querySelectorAll("table[data-sortable] th").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table"), body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.dataset.dir !== "asc";
      th.dataset.dir = asc ? "asc" : "desc";
      rows.sort(function (a, b) {
        var index = th.cellIndex;
        var x = a.cells[index].dataset.sort || a.cells[index].textContent;
        var y = b.cells[index].dataset.sort || b.cells[index].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
