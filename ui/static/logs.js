// Live tail of the log search (progressive enhancement: the page works without this file).
// Polls /api/v1/logs/tail every 2 s with the cursor of the last answer (not SSE: plain GETs pass every
// proxy), and puts the new lines at the top of the table, which lists the newest first.
(function () {
  "use strict";
  var box = document.querySelector(".live[data-tail-url]");
  if (!box) return;
  var POLL_MS = 2000, MAX_ROWS = 1000;
  var toggle = box.querySelector(".live-toggle");
  var pause = box.querySelector(".live-pause");
  var status = box.querySelector(".live-status");
  var results = document.querySelector(".log-results");
  var table = results && results.querySelector("table.logs");
  var body = table && table.tBodies[0];
  var heading = results && results.querySelector("h2");
  if (!body) return;
  var colours = {};
  try { colours = JSON.parse(box.dataset.colours || "{}"); } catch (e) { colours = {}; }
  var browserZone = box.dataset.tz === "browser";
  var hasTrace = true; // the search page's table has the Trace column
  var SEVERITIES = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

  var cursor = box.dataset.after;
  var live = false, paused = false, timer = 0, busy = false;
  var received = 0, skipped = 0, failure = "";

  box.hidden = false;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function link(href, text, label) {
    var a = el("a", "", text);
    a.href = href;
    if (label) a.setAttribute("aria-label", label);
    return a;
  }
  function text(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string") return value;
    if (typeof value === "object" && Object.keys(value).length === 1 && "bytes" in value) return String(value.bytes);
    return JSON.stringify(value);
  }
  function level(number) {
    return number >= 17 ? "error" : number >= 13 ? "warn" : number >= 9 ? "info" : "debug";
  }
  function severityName(number) {
    if (!(number >= 1 && number <= 24)) return number ? String(number) : "";
    var step = (number - 1) % 4;
    return SEVERITIES[Math.floor((number - 1) / 4)] + (step ? String(step + 1) : "");
  }
  function when(ns) {
    // Milliseconds are exact enough for display; the datetime keeps them.
    var d = new Date(Number(BigInt(ns) / 1000000n));
    var iso = d.toISOString();
    var shown = browserZone ? d.toLocaleString() : iso.slice(0, 10) + " " + iso.slice(11, 19) + " UTC";
    var t = el("time", "", shown);
    t.setAttribute("datetime", iso);
    return t;
  }
  function contextHref(line, by) {
    var params = new URLSearchParams({ at: line.time_unix_nano, by: by, service: line.service_name });
    if (/^[0-9a-f]{32}$/.test(line.trace_id || "")) {
      params.set("trace_id", line.trace_id);
      params.set("span_id", line.span_id || "");
    }
    return "/logs/context?" + params.toString();
  }

  // The same cells as the log_table macro of _trace_macros.html (the search page shows every column).
  function row(line) {
    var tr = el("tr", "log fresh " + level(line.severity_number));
    var cell = el("td", "when");
    cell.appendChild(when(line.time_unix_nano));
    tr.appendChild(cell);
    tr.appendChild(el("td", "sev sev-" + level(line.severity_number), line.severity_text || severityName(line.severity_number)));
    cell = el("td");
    var svc = el("span", "svc", line.service_name);
    if (colours[line.service_name]) svc.style.setProperty("--c", colours[line.service_name]);
    cell.appendChild(svc);
    tr.appendChild(cell);
    tr.appendChild(el("td", "body", text(line.body)));
    cell = el("td");
    Object.keys(line.attributes || {}).sort().forEach(function (key) {
      var value = line.attributes[key];
      var code = el("code", "", key + "=" + text(value));
      code.title = value === null ? "empty" : Array.isArray(value) ? "array" : typeof value;
      cell.appendChild(code);
      cell.appendChild(document.createTextNode(" "));
    });
    tr.appendChild(cell);
    var traced = /^[0-9a-f]{32}$/.test(line.trace_id || "");
    if (hasTrace) {
      cell = el("td");
      if (traced) {
        var a = link("/traces/" + line.trace_id + (line.span_id ? "#span-" + line.span_id : ""), line.trace_id.slice(0, 16) + "…");
        a.className = "mono";
        cell.appendChild(a);
      }
      tr.appendChild(cell);
    }
    cell = el("td");
    if (line.correlation_id) cell.appendChild(link("/correlations/" + encodeURIComponent(line.correlation_id), line.correlation_id));
    tr.appendChild(cell);
    cell = el("td", "context");
    if (line.service_name) cell.appendChild(link(contextHref(line, "service"), "service", "Lines around this one of service " + line.service_name));
    if (traced) {
      cell.appendChild(document.createTextNode(" "));
      cell.appendChild(link(contextHref(line, "trace"), "trace", "Lines around this one of its trace"));
    }
    tr.appendChild(cell);
    return tr;
  }

  function show() {
    var parts = [];
    if (!live) parts.push(received ? "Live tail stopped" : "");
    else if (paused) parts.push("Paused");
    else if (document.hidden) parts.push("Paused while this tab is hidden");
    else parts.push("Live: new lines every 2 s");
    parts.push(received + " new line" + (received === 1 ? "" : "s") + " received");
    if (skipped) parts.push(skipped + " skipped (more than a poll carries)");
    if (failure) parts.push("last poll failed: " + failure);
    status.textContent = parts.filter(Boolean).join(" · ");
  }

  function add(lines) {
    if (!lines.length) return;
    results.hidden = false;
    var empty = document.querySelector("main .empty");
    if (empty) empty.hidden = true;
    var fragment = document.createDocumentFragment();
    lines.forEach(function (line) { fragment.appendChild(row(line)); }); // newest first, as served
    body.insertBefore(fragment, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1); // the oldest go
    if (heading) heading.textContent = body.rows.length + " log" + (body.rows.length === 1 ? "" : "s") + ", newest first";
  }

  function url() {
    var base = box.dataset.tailUrl;
    return base + (base.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(cursor);
  }

  function schedule(ms) {
    if (timer) clearTimeout(timer);
    timer = live && !paused && !document.hidden ? setTimeout(poll, ms) : 0;
  }

  function poll() {
    timer = 0;
    if (busy || !live || paused || document.hidden) return;
    busy = true;
    fetch(url(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data && data.detail ? data.detail : "HTTP " + response.status);
          return data;
        });
      })
      .then(function (data) {
        failure = "";
        // Stopped or paused while the request was out: drop the answer and keep the old cursor, so
        // that the next poll asks again for exactly these lines.
        if (!live || paused) return;
        cursor = data.next_cursor;
        received += data.logs.length;
        skipped += data.skipped || 0;
        add(data.logs);
      })
      .catch(function (error) { failure = error.message || String(error); })
      .then(function () {
        busy = false;
        show();
        schedule(POLL_MS);
      });
  }

  toggle.addEventListener("click", function () {
    live = !live;
    paused = false;
    toggle.setAttribute("aria-pressed", String(live));
    pause.hidden = !live;
    pause.setAttribute("aria-pressed", "false");
    show();
    schedule(0);
  });
  pause.addEventListener("click", function () {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused)); // a toggle button keeps its name
    show();
    schedule(0);
  });
  document.addEventListener("visibilitychange", function () {
    show();
    schedule(0);
  });
})();
