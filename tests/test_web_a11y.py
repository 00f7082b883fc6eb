"""Accessibility and small screens, in real Chromium: every page of the UI, at desktop width in the
light and the dark colour scheme and at 390×844 (a phone) in the light one (the phone rules change the
layout, not the colours, which are variables of the scheme; a dark phone view cost CI 23 s and failed
only where the light one did), has no WCAG 2.1 A/AA violation and no
best-practice one that axe-core reports (tests/data/axe/, see tests/data/README.md), and at 390 px no
page scrolls sideways (only a table or the trace waterfall may, inside its own box). Also: the header's
auto-refresh toggle and the navigation's count of open incidents.

One server holds everything the pages show: the burning SLOs and open incidents of
tests/test_web_slos.py (its stream and its notification policy), the checkout trace of
tests/test_web_traces.py (a tree with errors, events, links, logs and a correlation id), and users, so
the sign-in page and the signed-in header are checked too.

axe is injected with ``page.evaluate`` (a DevTools evaluation, which the page's Content-Security-Policy
does not govern): ``add_script_tag`` would add an inline script, which the CSP rightly refuses, and the
pages are checked under their real CSP, whose violations the contexts report as page problems.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import argon2
import httpx
import pytest
from conftest import ARTIFACTS, CSP_REPORTER, DATA, ROOT, InProcess, screenshot, wait_until, watched_page
from test_web_slos import evaluate_minutes, export_faults, start_server
from test_web_traces import CORRELATION, Telemetry, send_shop

from ui import web

AXE = (DATA / "axe" / "axe.min.js").read_text(encoding="utf-8")
#: WCAG 2.0 and 2.1, levels A and AA, and axe's best practices (landmarks, headings, focusable
#: scrolling regions): what an audit of a web application checks.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
USER, PASSWORD = "ada", "a-password-for-the-a11y-test"
SECRET = "a-session-secret-for-the-accessibility-test"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}

#: Violations on pages whose templates and stylesheets other work owns at the moment (services,
#: service, SLO, incident and map pages): ``(page, axe rule id or "overflow")`` pairs tolerated until
#: those pages are fixed. EMPTY THIS: every entry is a known defect, not a decision.
KNOWN_VIOLATIONS_IN_OTHER_PAGES: frozenset[tuple[str, str]] = frozenset()


@dataclass
class Site:
    server: InProcess
    trace_id: str
    incident_id: str
    span_id: str
    log_at: str  # the time of the log line "charge declined", unix ns

    @property
    def api(self) -> str:
        return self.server.api


def _users_yaml() -> str:
    # A fast argon2id hash: the server verifies it once per context.
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return f'users:\n  - name: {USER}\n    password_hash: "{hasher.hash(PASSWORD)}"\n    role: admin\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web-a11y")
    (root / "users.yaml").write_text(_users_yaml())
    with contextlib.ExitStack() as stack:
        server = start_server(stack, root, users_file=str(root / "users.yaml"), session_secret=SECRET)
        export_faults(server)
        telemetry = Telemetry(server.otlp)
        shop = send_shop(telemetry)
        telemetry.shutdown()
        server.drain()
        evaluate_minutes(server)
        auth = (USER, PASSWORD)

        def open_incident() -> str:
            reply = httpx.get(f"{server.api}/api/v1/incidents", auth=auth, timeout=10).json()["incidents"]
            return next((i["id"] for i in reply if i["status"] == "open"), "")

        def trace_stored() -> bool:
            reply = httpx.get(f"{server.api}/api/v1/traces/{shop.checkout}", auth=auth, timeout=10)
            return reply.status_code == 200

        incident_id = wait_until(open_incident)
        wait_until(trace_stored)
        declined = httpx.get(f"{server.api}/api/v1/logs?q=declined", auth=auth, timeout=10).json()["logs"][0]
        assert shop.spans
        yield Site(server, shop.checkout, str(incident_id), shop.spans["charge"], declined["time_unix_nano"])


#: name -> path (formatted with the site's trace, span, log and incident); the names key the known
#: violations.
PAGES = {
    "services": "/",
    "service": "/services/checkout",
    "traces": "/traces?service=orders",
    "trace": "/traces/{trace_id}",
    "span": "/traces/{trace_id}/spans/{span_id}",
    "trace-stats": "/traces/{trace_id}/stats",
    "trace-compare": "/traces/compare?a={trace_id}&b={trace_id}",
    "logs": "/logs",
    "log-context": "/logs/context?at={log_at}&service=payments",
    "correlation": f"/correlations/{CORRELATION}",
    "slos": "/slos",
    "slo": "/slos/checkout",
    "incidents": "/incidents",
    "incident": "/incidents/{incident_id}",
    "canary": "/canary?service=checkout&baseline=1.0&candidate=2.0",
    "runbook": "/runbooks/payments-availability",
    "error": "/no/such/page",
    "login": "/login",
}
# The service map is being built; its page is checked once it exists.
if (ROOT / "ui" / "pages_map.py").exists():
    PAGES["map"] = "/map"

VIEWS = {
    "desktop-light": {"viewport": DESKTOP, "color_scheme": "light"},
    "desktop-dark": {"viewport": DESKTOP, "color_scheme": "dark"},
    "phone-light": {"viewport": PHONE, "color_scheme": "light", "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="module", params=list(VIEWS))
def view(request: pytest.FixtureRequest, site: Site, browser) -> Iterator[tuple[str, Any, Any]]:  # noqa: ANN001
    """A browser context of one view, signed in, as ``(name, signed-in context, anonymous context)``."""
    name = request.param
    signed_in = browser.new_context(**VIEWS[name])
    anonymous = browser.new_context(**VIEWS[name])
    for context in (signed_in, anonymous):
        context.add_init_script(CSP_REPORTER)  # a CSP violation becomes a console error: a problem
    try:
        pg = signed_in.new_page()
        pg.goto(f"{site.api}/login")
        pg.fill("input[name=username]", USER)
        pg.fill("input[name=password]", PASSWORD)
        with pg.expect_navigation():
            pg.click("form.login button[type=submit]")
        assert not pg.url.endswith("/login"), "signing in failed"
        pg.close()
        yield name, signed_in, anonymous
    finally:
        signed_in.close()
        anonymous.close()


def _open(context: Any, url: str) -> tuple[Any, list[str], int]:
    """A new page of ``context`` at ``url``: (page, the page's problems, HTTP status)."""
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    response = pg.goto(url)
    assert response is not None
    pg.wait_for_load_state("load")
    return pg, problems, response.status


def axe_violations(pg: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it stands: rule id, impact, help and the elements."""
    if not pg.evaluate("() => typeof window.axe === 'object'"):
        pg.evaluate(AXE)
    return pg.evaluate(
        """async (tags) => {
            const options = {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]};
            const result = await axe.run(document, options);
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({
                    target: n.target.join(" "), summary: n.failureSummary, html: n.html.slice(0, 160),
                })),
            }));
        }""",
        AXE_TAGS,
    )


def overflow(pg: Any) -> list[str]:
    """Nothing may make the document wider than the viewport: the widest culprits, if it is."""
    return pg.evaluate(
        """() => {
            const root = document.documentElement;
            if (root.scrollWidth <= root.clientWidth + 1) return [];
            const limit = root.clientWidth;
            const wide = [];
            for (const el of document.body.querySelectorAll("*")) {
                const r = el.getBoundingClientRect();
                if (r.right > limit + 1 && r.width > 0) {
                    // Report the outermost culprit only, with a selector a reader can find.
                    let p = el.parentElement, inner = false;
                    while (p && p !== document.body) {
                        if (p.getBoundingClientRect().right > limit + 1) { inner = true; break; }
                        p = p.parentElement;
                    }
                    const classes = typeof el.className === "string" ? el.className.trim() : "";
                    if (!inner) wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
                        + (classes ? "." + classes.split(/\\s+/).join(".") : "")
                        + " right=" + Math.round(r.right));
                }
            }
            return [`document ${root.scrollWidth}px wide in a ${root.clientWidth}px viewport`, ...wide.slice(0, 8)];
        }"""
    )


def _report(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for n in v["nodes"][:6]:
            lines.append(f"    {n['target']}    {n['html']}")
            if v["id"] == "color-contrast":  # the colours and the ratio axe measured
                lines.append("      " + n["summary"].splitlines()[-1].strip())
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_passes_axe_and_fits_a_phone(site: Site, view: tuple[str, Any, Any], name: str) -> None:
    view_name, signed_in, anonymous = view
    path = PAGES[name].format(
        trace_id=site.trace_id, incident_id=site.incident_id, span_id=site.span_id, log_at=site.log_at
    )
    pg, problems, status = _open(anonymous if name == "login" else signed_in, site.api + path)
    try:
        assert status == (404 if name == "error" else 200), f"{path}: HTTP {status}"
        if name == "login":
            assert pg.locator("form.login").count() == 1
        else:
            assert pg.locator("header .user .name").inner_text() == USER  # the signed-in header
        if name == "trace":
            pg.wait_for_selector("#waterfall[data-ready=true]")
            # An open span shows its detail (attributes, events, links, logs): check that too.
            pg.locator("#waterfall .row").nth(3).locator(".op-link").click()
            pg.locator(".detail-host table.attrs").first.wait_for()
        found = axe_violations(pg)
        if view_name.startswith("phone"):
            wide = overflow(pg)
            if wide:
                found.append(
                    {
                        "id": "overflow",
                        "impact": "serious",
                        "help": "the page scrolls sideways",
                        "nodes": [{"target": w, "html": "", "summary": ""} for w in wide],
                    }
                )
        screenshot(pg, f"a11y-{name}-{view_name}")
        # What axe found, for whoever fixes it (tests/artifacts/ is not committed).
        (ARTIFACTS / f"a11y-{name}-{view_name}.json").write_text(json.dumps(found, indent=1))
        tolerated = {rule for page_name, rule in KNOWN_VIOLATIONS_IN_OTHER_PAGES if page_name == name}
        unexpected = [v for v in found if v["id"] not in tolerated]
        assert unexpected == [], f"{path} ({view_name}):\n" + _report(unexpected)
        expected = (
            ["console: Failed to load resource: the server responded with a status of 404 (Not Found)"]
            if name == "error"
            else []
        )
        assert problems == expected
    finally:
        pg.close()


# -- the header: auto-refresh and the navigation -------------------------------------------------


def test_only_lists_and_charts_offer_auto_refresh() -> None:
    offered = ["/", "/traces", "/logs", "/slos", "/slos/checkout", "/incidents", "/incidents/1", "/map"]
    assert all(web.autorefreshes(path) for path in offered + ["/services/checkout"])
    not_offered = ["/traces/0af7651916cd43dd8448eb211c80319c", "/runbooks/x", "/login", "/logsx", "/services"]
    assert not any(web.autorefreshes(path) for path in not_offered)


@pytest.fixture()
def signed_in_page(site: Site, browser) -> Iterator[Any]:  # noqa: ANN001
    """A page of a fresh signed-in context with a fake clock (30 s pass in an instant), short enough
    that the SLO list scrolls."""
    context = browser.new_context(viewport={"width": 900, "height": 300})
    pg = watched_page(context)
    pg.goto(f"{site.api}/login")
    pg.fill("input[name=username]", USER)
    pg.fill("input[name=password]", PASSWORD)
    with pg.expect_navigation():
        pg.click("form.login button[type=submit]")
    pg.clock.install()
    yield pg
    context.close()


def _reloaded(pg: Any, seconds: int) -> bool:
    """Let ``seconds`` pass on the page's clock: whether the page was loaded again meanwhile."""
    pg.evaluate("() => { window.__before = true; }")
    pg.clock.run_for(seconds * 1000)
    pg.wait_for_load_state("load")
    time.sleep(0.3)  # a reload that started in the last step has replaced the window by now
    pg.wait_for_load_state("load")
    return not pg.evaluate("() => window.__before === true")


def test_auto_refresh_is_off_by_default_remembered_and_keeps_the_scroll_position(
    site: Site, signed_in_page: Any
) -> None:
    pg = signed_in_page
    pg.goto(f"{site.api}/slos")
    toggle = pg.locator("header #autorefresh")
    assert toggle.is_visible() and not toggle.is_checked()
    assert not _reloaded(pg, 31)  # off by default

    toggle.check()
    assert pg.evaluate("() => localStorage.getItem('sloscope.autorefresh')") == "on"
    pg.evaluate("() => window.scrollTo(0, 120)")
    assert not _reloaded(pg, 20)  # every 30 s, not sooner
    assert _reloaded(pg, 11)
    assert pg.locator("header #autorefresh").is_checked()  # remembered
    assert pg.evaluate("() => window.scrollY") == 120

    # Remembered across pages; a reload waits while the user is typing in a form.
    pg.goto(f"{site.api}/logs")
    assert pg.locator("header #autorefresh").is_checked()
    pg.fill("input[name=q]", "declined")
    assert not _reloaded(pg, 61)
    assert pg.input_value("input[name=q]") == "declined"

    pg.goto(f"{site.api}/incidents")
    pg.locator("header #autorefresh").uncheck()
    assert pg.evaluate("() => localStorage.getItem('sloscope.autorefresh')") is None
    assert not _reloaded(pg, 61)
    assert pg.problems == []


def test_a_trace_offers_no_auto_refresh_and_its_rows_collapse_from_the_keyboard(
    site: Site, signed_in_page: Any
) -> None:
    pg = signed_in_page
    pg.goto(f"{site.api}/traces/{site.trace_id}")
    pg.wait_for_selector("#waterfall[data-ready=true]")
    assert pg.locator("#autorefresh").count() == 0
    # The collapse button comes before the row's link in the tab order; Enter collapses the subtree
    # and does not open the span's details, and the focus stays on the button.
    root = pg.locator("#waterfall .row").first
    root.locator(".toggle").focus()
    pg.keyboard.press("Tab")
    assert pg.evaluate("() => document.activeElement.className") == "op-link"
    pg.keyboard.press("Shift+Tab")
    pg.keyboard.press("Enter")
    assert pg.locator("#waterfall .row").count() == 1
    assert pg.locator(".detail-host").count() == 0
    toggle = pg.locator("#waterfall .row .toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert pg.evaluate("() => document.activeElement.getAttribute('aria-expanded')") == "false"
    # Enter on the row's link opens its details under it, from the span's own page.
    pg.keyboard.press("Tab")
    pg.keyboard.press("Enter")
    pg.locator(".detail-host table.attrs").first.wait_for()


def test_the_navigation_links_the_map_and_counts_the_open_incidents(site: Site, signed_in_page: Any) -> None:
    pg = signed_in_page
    pg.goto(f"{site.api}/logs")
    labels = [t.strip() for t in pg.locator("header nav a").all_inner_texts()]
    assert labels[:2] == ["Services", "Map"]
    assert pg.locator("header nav a").nth(1).get_attribute("href") == "/map"
    reply = httpx.get(f"{site.api}/api/v1/incidents", auth=(USER, PASSWORD), timeout=10).json()["incidents"]
    open_count = sum(1 for i in reply if i["status"] == "open")
    assert open_count >= 1
    badge = pg.locator('header nav a[href="/incidents"] .count')
    assert badge.evaluate("b => b.firstChild.textContent") == str(open_count)
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(197, 48, 48)"  # red
    # Read as "Incidents 2 open" (the word is for screen readers; the badge shows the number).
    name = pg.locator('header nav a[href="/incidents"]').evaluate("a => a.textContent.replace(/\\s+/g, ' ')")
    assert name.strip() == f"Incidents {open_count} open"
