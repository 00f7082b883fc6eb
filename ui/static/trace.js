// The trace view's enhancements: collapse a span's subtree, collapse/expand all, find in the trace.
// Without this file every row is shown and the ?q= form filters on the server.
(function () {
  "use strict";
  var root = document.getElementById("waterfall");
  if (!root) return;
  root.classList.add("js");
  document.querySelectorAll(".js-only").forEach(function (el) { el.classList.add("on"); });

  // Rows are in tree order, so a span's subtree is the run of rows after it with a greater depth.
  var rows = Array.prototype.slice.call(root.querySelectorAll("details.span"));
  var depth = rows.map(function (r) { return +r.dataset.depth; });
  var collapsed = new Uint8Array(rows.length);
  var matched = null; // null: no search; else a Uint8Array of the rows that match
  var texts = null; // lower-case text of each row, read on the first search
  var indexOf = new Map();
  rows.forEach(function (r, i) { indexOf.set(r, i); });

  function refresh() {
    var hideBelow = -1; // depth of a collapsed ancestor, or -1
    for (var i = 0; i < rows.length; i++) {
      var d = depth[i];
      if (hideBelow >= 0 && d <= hideBelow) hideBelow = -1;
      var hide = matched ? !matched[i] : hideBelow >= 0;
      if (rows[i].hidden !== hide) rows[i].hidden = hide;
      if (hideBelow < 0 && collapsed[i]) hideBelow = d;
    }
  }

  function setCollapsed(i, value) {
    collapsed[i] = value ? 1 : 0;
    var button = rows[i].querySelector(":scope > .toggle");
    if (button) {
      button.setAttribute("aria-expanded", value ? "false" : "true");
      button.textContent = value ? "▸" : "▾";
    }
    rows[i].classList.toggle("collapsed", !!value);
  }

  root.addEventListener("click", function (event) {
    var button = event.target.closest(".toggle");
    if (!button || !root.contains(button)) return;
    var i = indexOf.get(button.closest("details.span"));
    setCollapsed(i, !collapsed[i]);
    refresh();
  });

  document.addEventListener("click", function (event) {
    var action = event.target.dataset && event.target.dataset.action;
    if (action !== "collapse-all" && action !== "expand-all") return;
    for (var i = 0; i < rows.length; i++) {
      var hasChildren = i + 1 < rows.length && depth[i + 1] > depth[i];
      setCollapsed(i, action === "collapse-all" && hasChildren && depth[i] > 0);
    }
    refresh();
  });

  var input = document.getElementById("trace-search");
  var count = document.getElementById("trace-search-count");
  var timer = 0;
  function search() {
    var needle = input.value.trim().toLowerCase();
    if (!needle) {
      matched = null;
      count.textContent = "";
    } else {
      if (!texts) texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
      matched = new Uint8Array(rows.length);
      var n = 0;
      for (var i = 0; i < rows.length; i++) if (texts[i].indexOf(needle) >= 0) { matched[i] = 1; n++; }
      count.textContent = n + " of " + rows.length + " spans match";
    }
    refresh();
  }
  if (input) {
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(search, rows.length > 2000 ? 150 : 0);
    });
    if (input.value.trim()) search();
  }
  root.dataset.ready = "true"; // the browser tests wait for this
})();
