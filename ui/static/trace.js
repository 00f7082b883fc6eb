// The trace view's waterfall, drawn from /api/v1/traces/{id}/outline: only the rows in view exist in
// the page, so its cost follows the screen, not the trace. A span's details are its own page
// (/traces/{id}/spans/{span_id}), fetched when the row is opened. Also: collapse a subtree or to a
// depth, find (in the URL, with jumps between matches), #span-ID, and a minimap to zoom into a time
// range. Without this file the server draws the rows a page at a time, each a link to its span.
(function () {
  "use strict";
  const root = document.getElementById("waterfall");
  if (!root) return;
  const traceId = root.dataset.traceId;
  const rowsEl = root.querySelector(".rows");
  const ROW_H = 24, OVERSCAN = 15, MAX_INDENT = 24;

  let n = 0, ids, parent, depth, svc, op, names, services, colours, start, dur, flags, logs, total;
  let rowOf; // span id -> row
  let collapsed, visible, posOf, visibleCount = 0;
  let matches = null, matchList = [], current = -1, findSeq = 0;
  let openRow = -1, detail = null, detailH = 0;
  let zoomA = 0, zoomB = 1;
  const drawn = new Map(); // row -> element
  let frame = 0;

  function fmt(ns) {
    const ms = ns / 1e6;
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    return ms >= 1 ? ms.toFixed(1) + " ms" : (ms * 1000).toFixed(0) + " µs";
  }

  // -- visible rows: tree order minus the subtrees of collapsed rows -------------------------------
  function computeVisible() {
    let k = 0, hideBelow = -1;
    for (let i = 0; i < n; i++) {
      const d = depth[i];
      if (hideBelow >= 0 && d <= hideBelow) hideBelow = -1;
      if (hideBelow < 0) {
        visible[k] = i; posOf[i] = k; k++;
        if (collapsed[i]) hideBelow = d;
      } else {
        posOf[i] = -1;
      }
    }
    visibleCount = k;
  }

  function openPos() { return openRow >= 0 ? posOf[openRow] : -1; }
  function topOf(k) { const o = openPos(); return k * ROW_H + (o >= 0 && k > o ? detailH : 0); }
  function posAt(y) {
    const o = openPos();
    if (o >= 0 && y > (o + 1) * ROW_H) {
      const below = y - detailH;
      return below < (o + 1) * ROW_H ? o : Math.floor(below / ROW_H);
    }
    return Math.floor(y / ROW_H);
  }

  // -- one row -----------------------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function rowClass(i) {
    let c = "row";
    if (flags[i] & 1) c += " error";
    if (flags[i] & 2) c += " critical";
    if (matches) c += matches[i] ? " match" : " dim";
    if (i === current) c += " current";
    if (i === openRow) c += " open";
    return c;
  }

  function placeBar(i, bar, label) {
    const span = zoomB - zoomA;
    let left = (start[i] - zoomA) / span * 100;
    let right = (start[i] + dur[i] - zoomA) / span * 100;
    bar.hidden = right < 0 || left > 100;
    left = Math.min(Math.max(left, 0), 99.85);
    right = Math.max(Math.min(right, 100), left + 0.15);
    bar.style.left = left.toFixed(3) + "%";
    bar.style.width = (right - left).toFixed(3) + "%";
    label.className = "dur";
    label.style.left = label.style.right = "";
    if (right < 75) label.style.left = right.toFixed(3) + "%";
    else if (left >= 25) label.style.right = (100 - left).toFixed(3) + "%";
    else { label.style.right = (100 - right).toFixed(3) + "%"; label.className = "dur in"; }
  }

  function makeRow(i) {
    const row = el("div", rowClass(i));
    row.id = "span-" + ids[i];
    row.dataset.row = i;
    const name = el("span", "name");
    name.style.paddingLeft = Math.min(depth[i], MAX_INDENT) * 14 + "px";
    const opName = names[op[i]];
    if (flags[i] & 4) {
      const toggle = el("button", "toggle", collapsed[i] ? "▸" : "▾");
      toggle.type = "button";
      toggle.setAttribute("aria-expanded", collapsed[i] ? "false" : "true");
      toggle.setAttribute("aria-label", "Child spans of " + opName);
      name.appendChild(toggle);
    } else {
      name.appendChild(el("span", "leaf"));
    }
    const link = el("a", "op-link");
    link.href = "/traces/" + traceId + "/spans/" + ids[i];
    link.setAttribute("aria-expanded", i === openRow ? "true" : "false");
    const label = el("span", "svc", services[svc[i]]);
    label.style.setProperty("--c", colours[svc[i]]);
    link.append(label, " ", el("span", "op", opName));
    name.appendChild(link);
    if (flags[i] & 1) { const e = el("span", "err", "!"); e.title = "status ERROR"; name.append(" ", e); }
    if (logs[i]) name.append(" ", el("span", "nlogs", logs[i] + (logs[i] === 1 ? " log" : " logs")));
    if (flags[i] & 2) name.append(" ", el("span", "cp", "critical path"));
    if (depth[i] > MAX_INDENT) name.append(" ", el("span", "muted", "(depth " + depth[i] + ")"));
    const lane = el("span", "lane");
    const bar = el("span", "bar");
    bar.style.setProperty("--c", colours[svc[i]]);
    const text = el("span", "dur", fmt(dur[i]));
    placeBar(i, bar, text);
    lane.append(bar, text);
    row.append(name, lane);
    return row;
  }

  // -- drawing -----------------------------------------------------------------------------------
  function render(all) {
    frame = 0;
    if (all) { drawn.forEach(function (e) { e.remove(); }); drawn.clear(); }
    const height = visibleCount * ROW_H + (openPos() >= 0 ? detailH : 0);
    rowsEl.style.height = height + "px";
    const top = -rowsEl.getBoundingClientRect().top;
    const k0 = Math.max(0, posAt(Math.max(top, 0)) - OVERSCAN);
    const k1 = Math.min(visibleCount - 1, posAt(Math.max(top + window.innerHeight, 0)) + OVERSCAN);
    const keep = new Set();
    for (let k = k0; k <= k1; k++) keep.add(visible[k]);
    drawn.forEach(function (e, i) { if (!keep.has(i)) { e.remove(); drawn.delete(i); } });
    const fragment = document.createDocumentFragment();
    keep.forEach(function (i) {
      let row = drawn.get(i);
      if (!row) { row = makeRow(i); drawn.set(i, row); fragment.appendChild(row); }
      row.style.top = topOf(posOf[i]) + "px";
    });
    rowsEl.appendChild(fragment);
    if (detail) {
      const o = openPos();
      detail.hidden = o < 0;
      if (o >= 0) detail.style.top = (o + 1) * ROW_H + "px";
    }
    viewWindow(k0, k1);
  }
  function schedule() { if (!frame) frame = requestAnimationFrame(function () { render(false); }); }
  function refresh() { computeVisible(); render(true); }

  // -- collapse ----------------------------------------------------------------------------------
  function expandTo(i) { for (let p = parent[i]; p >= 0; p = parent[p]) collapsed[p] = 0; }

  rowsEl.addEventListener("click", function (event) {
    const toggle = event.target.closest(".toggle");
    const link = event.target.closest("a.op-link");
    const row = event.target.closest(".row");
    if (!row) return;
    const i = +row.dataset.row;
    if (toggle) {
      collapsed[i] = collapsed[i] ? 0 : 1;
      refresh();
      const again = drawn.get(i);
      if (again) again.querySelector(".toggle").focus();
    } else if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
      event.preventDefault();
      if (openRow === i) closeDetail(); else openDetail(i);
    }
  });

  function collapseTo(level) { // level 0: everything expanded
    for (let i = 0; i < n; i++) collapsed[i] = level && (flags[i] & 4) && depth[i] >= level - 1 ? 1 : 0;
    refresh();
  }

  // -- details: the span's own page, fetched when opened -------------------------------------------
  function setHash(hash) {
    history.replaceState(history.state, "", location.pathname + location.search + hash);
  }

  function closeDetail() {
    if (detail) detail.remove();
    detail = null; openRow = -1; detailH = 0;
    setHash("");
    refresh();
  }

  function openDetail(i) {
    if (detail) detail.remove();
    openRow = i;
    detail = el("div", "detail-host");
    detail.setAttribute("role", "region");
    detail.setAttribute("aria-label", "Details of span " + names[op[i]]);
    detail.appendChild(el("p", "muted", "Loading the span…"));
    rowsEl.appendChild(detail);
    detailH = detail.offsetHeight || ROW_H * 2;
    setHash("#span-" + ids[i]);
    refresh();
    const url = "/traces/" + traceId + "/spans/" + ids[i];
    const mine = detail;
    fetch(url, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.text().then(function (t) { return [r.ok, t]; }); })
      .then(function (res) {
        if (detail !== mine) return;
        const doc = new DOMParser().parseFromString(res[1], "text/html");
        const section = doc.getElementById("span-detail");
        mine.replaceChildren();
        if (res[0] && section) {
          section.removeAttribute("id");
          mine.appendChild(document.importNode(section, true));
        } else {
          mine.appendChild(el("p", "bad", "The span's details could not be read."));
        }
        const more = el("a", "span-page", "Open this span on its own page");
        more.href = url;
        mine.appendChild(more);
        detailH = mine.offsetHeight;
        render(true);
      })
      .catch(function () {
        if (detail === mine) { mine.replaceChildren(el("p", "bad", "The span's details could not be read.")); }
      });
  }

  function scrollToRow(i) {
    const y = window.scrollY + rowsEl.getBoundingClientRect().top + topOf(posOf[i]);
    window.scrollTo(0, Math.max(0, y - window.innerHeight / 3));
  }

  // -- find --------------------------------------------------------------------------------------
  const input = document.getElementById("trace-search");
  const count = document.getElementById("trace-search-count");
  let findTimer = 0;

  function setQuery(q) {
    const params = new URLSearchParams(location.search);
    params.delete("offset");
    if (q) params.set("q", q); else params.delete("q");
    const search = params.toString();
    history.replaceState(history.state, "", location.pathname + (search ? "?" + search : "") + location.hash);
  }

  function find(q, jump) {
    const seq = ++findSeq;
    q = q.trim();
    setQuery(q);
    if (!q) {
      matches = null; matchList = []; current = -1; count.textContent = "";
      render(true);
      return;
    }
    fetch("/api/v1/traces/" + traceId + "/find?q=" + encodeURIComponent(q))
      .then(function (r) { return r.ok ? r.json() : r.json().then(function (b) { throw new Error(b.detail); }); })
      .then(function (body) {
        if (seq !== findSeq) return; // an older request answered late
        matches = new Uint8Array(n);
        body.span_ids.forEach(function (id) { const i = rowOf.get(id); if (i !== undefined) matches[i] = 1; });
        matchList = [];
        for (let i = 0; i < n; i++) if (matches[i]) matchList.push(i);
        current = -1;
        count.textContent = matchList.length + " of " + n + " spans match";
        if (jump && matchList.length) step(1); else render(true);
      })
      .catch(function (err) { if (seq === findSeq) count.textContent = "Find failed: " + err.message; });
  }

  function step(direction) {
    if (!matchList.length) return;
    let k = matchList.indexOf(current);
    k = k < 0 ? (direction > 0 ? 0 : matchList.length - 1) : (k + direction + matchList.length) % matchList.length;
    current = matchList[k];
    expandTo(current);
    computeVisible();
    scrollToRow(current);
    render(true);
    count.textContent = "match " + (k + 1) + " of " + matchList.length + " (" + n + " spans)";
  }

  // -- the minimap: every span, drag across to zoom ----------------------------------------------
  const box = document.getElementById("minimap-box");
  const canvas = document.getElementById("minimap");
  const windowEl = box && box.querySelector(".zoom-window");
  const selectionEl = box && box.querySelector(".selection");
  const viewEl = el("span", "view-window");
  const resetButton = box && box.querySelector("[data-action=reset-zoom]");

  function drawMinimap() {
    if (!canvas) return;
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth * ratio, h = canvas.clientHeight * ratio;
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const rowH = Math.max(h / n, 1);
    let last = -1;
    for (let i = 0; i < n; i++) {
      if (svc[i] !== last) { ctx.fillStyle = colours[svc[i]]; last = svc[i]; }
      ctx.fillRect(start[i] / total * w, i * h / n, Math.max(dur[i] / total * w, 1), rowH);
    }
  }

  function viewWindow(k0, k1) {
    if (!canvas || !visibleCount) return;
    // The rows on screen, as a band over the rows of the whole tree.
    const a = visible[Math.min(k0 + OVERSCAN, visibleCount - 1)], b = visible[Math.max(k1 - OVERSCAN, 0)];
    viewEl.style.top = (a / n * 100).toFixed(2) + "%";
    viewEl.style.height = Math.max((b - a + 1) / n * 100, 1).toFixed(2) + "%";
  }

  function zoom(a, b) {
    zoomA = a; zoomB = b;
    const whole = a <= 0 && b >= total;
    windowEl.hidden = whole;
    resetButton.hidden = whole;
    windowEl.style.left = (a / total * 100) + "%";
    windowEl.style.width = ((b - a) / total * 100) + "%";
    root.querySelectorAll(".axis .tick").forEach(function (tick, k) { tick.textContent = fmt(a + (b - a) * k / 4); });
    render(true);
  }

  function minimapEvents() {
    let from = null;
    const x = function (event) {
      const r = canvas.getBoundingClientRect();
      return Math.min(Math.max((event.clientX - r.left) / r.width, 0), 1);
    };
    canvas.addEventListener("pointerdown", function (event) {
      from = x(event); canvas.setPointerCapture(event.pointerId);
      selectionEl.hidden = false; selectionEl.style.left = from * 100 + "%"; selectionEl.style.width = "0";
    });
    canvas.addEventListener("pointermove", function (event) {
      if (from === null) return;
      const to = x(event);
      selectionEl.style.left = Math.min(from, to) * 100 + "%";
      selectionEl.style.width = Math.abs(to - from) * 100 + "%";
    });
    canvas.addEventListener("pointerup", function (event) {
      if (from === null) return;
      const to = x(event);
      selectionEl.hidden = true;
      if (Math.abs(to - from) > 0.005) zoom(Math.min(from, to) * total, Math.max(from, to) * total);
      from = null;
    });
    resetButton.addEventListener("click", function () { zoom(0, total); });
    box.appendChild(viewEl);
  }

  // -- the controls --------------------------------------------------------------------------------
  function controls() {
    document.addEventListener("click", function (event) {
      const action = event.target.dataset && event.target.dataset.action;
      if (action === "collapse-all") {
        for (let i = 0; i < n; i++) collapsed[i] = (flags[i] & 4) && depth[i] > 0 ? 1 : 0;
        refresh();
      } else if (action === "expand-all") {
        collapseTo(0);
      } else if (action === "next-match" || action === "previous-match") {
        step(action === "next-match" ? 1 : -1);
      }
    });
    const select = document.getElementById("trace-depth");
    if (select) select.addEventListener("change", function () { collapseTo(+select.value || 0); });
    input.form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearTimeout(findTimer);
      find(input.value, true);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && event.shiftKey) { event.preventDefault(); step(-1); }
      else if (event.key === "Enter" && matches && input.value.trim() === new URLSearchParams(location.search).get("q")) {
        event.preventDefault(); step(1);
      }
    });
    input.addEventListener("input", function () {
      clearTimeout(findTimer);
      findTimer = setTimeout(function () { find(input.value, false); }, 250);
    });
    window.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", function () { drawMinimap(); schedule(); });
    window.addEventListener("hashchange", fromHash);
  }

  function fromHash() {
    const m = /^#span-([0-9a-fA-F]{16})$/.exec(location.hash);
    const i = m ? rowOf.get(m[1].toLowerCase()) : undefined;
    if (i === undefined) return;
    expandTo(i);
    computeVisible();
    if (openRow !== i) openDetail(i);
    scrollToRow(i);
    render(true);
  }

  function init(data) {
    const r = data.rows;
    ids = r.span_id; parent = r.parent; depth = r.depth; svc = r.service; op = r.name; start = r.start;
    dur = r.duration; flags = r.flags; logs = r.logs;
    names = data.names; services = data.services; colours = data.colours;
    n = ids.length; total = Math.max(data.duration_ns, 1); zoomB = total;
    rowOf = new Map();
    for (let i = 0; i < n; i++) rowOf.set(ids[i], i);
    collapsed = new Uint8Array(n); visible = new Int32Array(n); posOf = new Int32Array(n);
    rowsEl.replaceChildren();
    const pager = root.querySelector(".pager");
    if (pager) pager.remove();
    root.classList.add("js");
    document.querySelectorAll(".js-only").forEach(function (e) { e.classList.add("on"); });
    computeVisible();
    controls();
    if (canvas) { minimapEvents(); drawMinimap(); }
    render(true);
    if (input.value.trim()) find(input.value, false);
    fromHash();
    root.dataset.ready = "true"; // the browser tests wait for this
  }

  fetch("/api/v1/traces/" + traceId + "/outline", { headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(init)
    .catch(function (err) {
      // The server's rows stay: the page is as it is without the script.
      root.dataset.ready = "error";
      root.insertBefore(el("p", "bad", "The interactive waterfall could not load (" + err.message + "); rows are shown a page at a time."), rowsEl);
    });
})();
