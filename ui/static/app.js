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
  // A table wider than its box scrolls inside it (app.css, narrow screens): make such a box focusable,
  // so that it can be scrolled from the keyboard too. Tables in closed <details> are measured when
  // opened (a trace has one per span: 10,000 of them).
  var narrow = window.matchMedia("(max-width: 760px)");
  function scrollableTables(root) {
    if (!narrow.matches && !root.querySelector("table[data-scroll-focus]")) return;
    root.querySelectorAll("table").forEach(function (table) {
      if (table.closest("details:not([open])")) return;
      var scrolls = narrow.matches && table.scrollWidth > table.clientWidth + 1;
      if (scrolls && !table.hasAttribute("tabindex")) {
        table.setAttribute("tabindex", "0");
        table.dataset.scrollFocus = "1";
      } else if (!scrolls && table.dataset.scrollFocus) {
        table.removeAttribute("tabindex");
        delete table.dataset.scrollFocus;
      }
    });
  }
  var main = document.querySelector("main");
  if (main) {
    scrollableTables(main);
    window.addEventListener("resize", function () { scrollableTables(main); });
    // "toggle" does not bubble: listen in the capture phase.
    main.addEventListener("toggle", function (event) { scrollableTables(event.target); }, true);
  }

  // Auto-refresh (pages that offer it render the header's checkbox, hidden until this script shows it):
  // off by default, remembered in this browser, a full reload every 30 s that keeps the scroll
  // position. A reload never throws away what the user is doing: not while a field of a form has the
  // focus or has been changed, nor while the tab is hidden (it reloads when it is shown again).
  var toggle = document.getElementById("autorefresh");
  if (toggle) {
    var KEY = "sloscope.autorefresh", SCROLL = "sloscope.autorefresh.scroll";
    var store = function (area, name, value) {
      try {
        if (value === undefined) return window[area].getItem(name);
        if (value === null) window[area].removeItem(name); else window[area].setItem(name, value);
      } catch (e) { return null; } // storage off (private mode, policy): the toggle still works, unremembered
      return null;
    };
    toggle.closest(".autorefresh").hidden = false;
    toggle.checked = store("localStorage", KEY) === "on";
    var saved = store("sessionStorage", SCROLL);
    if (saved) {
      store("sessionStorage", SCROLL, null);
      try {
        var at = JSON.parse(saved);
        if (at.url === location.href) window.scrollTo(at.x, at.y);
      } catch (e) { /* a damaged entry: stay at the top */ }
    }
    var seconds = +toggle.dataset.seconds || 30;
    var due = 0, timer = 0;
    var busy = function () {
      // A live tail (static/logs.js) brings new lines itself: a reload would stop it.
      if (document.querySelector(".live-toggle[aria-pressed=true]")) return true;
      var active = document.activeElement;
      if (active && active.form && active !== toggle && active.type !== "submit") return true;
      return Array.prototype.some.call(document.querySelectorAll("main input, main textarea, main select"), function (f) {
        if (f.type === "checkbox" || f.type === "radio") return f.checked !== f.defaultChecked;
        if (f.tagName === "SELECT") {
          return Array.prototype.some.call(f.options, function (o) { return o.selected !== o.defaultSelected; });
        }
        return f.type !== "hidden" && f.value !== f.defaultValue;
      });
    };
    var tick = function () {
      timer = 0;
      if (!toggle.checked) return;
      if (Date.now() < due || document.hidden || busy()) { schedule(Math.max(1000, due - Date.now())); return; }
      store("sessionStorage", SCROLL, JSON.stringify({ url: location.href, x: window.scrollX, y: window.scrollY }));
      location.reload();
    };
    var schedule = function (ms) {
      if (timer) clearTimeout(timer);
      timer = setTimeout(tick, ms);
    };
    var start = function () {
      due = Date.now() + seconds * 1000;
      if (toggle.checked) schedule(seconds * 1000);
      else if (timer) { clearTimeout(timer); timer = 0; }
    };
    toggle.addEventListener("change", function () {
      store("localStorage", KEY, toggle.checked ? "on" : null);
      start();
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden && toggle.checked) schedule(0); });
    start();
  }
})();
