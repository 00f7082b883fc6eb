"""The web UI's foundation: vendored files match their sums, no template loads anything from outside,
static URLs carry content hashes, and an unknown page is an HTML error page in a real browser."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import InProcess, in_process, screenshot

from ui import web

VENDOR = web.STATIC / "vendor"


def test_vendored_files_match_their_sha256_sums() -> None:
    lines = (VENDOR / "SHA256SUMS").read_text().split("\n")
    sums = dict(reversed(line.split()) for line in lines if line.strip())
    assert set(sums) == {p.name for p in VENDOR.glob("*.js")} | {p.name for p in VENDOR.glob("*.css")}
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert (VENDOR / "uPlot-1.6.32.LICENSE").exists()
    # htmx was loaded on every page and used by none (issue 16): it stays out until a page needs it.
    assert not list(VENDOR.glob("htmx*"))


REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def test_no_template_references_a_remote_script_or_stylesheet() -> None:
    templates = list(web.TEMPLATES.glob("*.html"))
    assert templates
    for template in templates:
        text = template.read_text()
        assert not REMOTE.search(text), f"{template.name} loads something from outside"
        assert "@import" not in text
    for css in web.STATIC.glob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", css.read_text()), css.name


SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
EVENT_ATTRIBUTE = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


def test_no_template_has_an_inline_script_or_an_event_handler_attribute() -> None:
    # The Content-Security-Policy (script-src 'self') refuses both: scripts live in ui/static/.
    for template in web.TEMPLATES.glob("*.html"):
        text = template.read_text()
        for attributes in SCRIPT_TAG.findall(text):
            data_block = re.search(r"""type=["']application/json["']""", attributes)
            assert "src=" in attributes or data_block, f"{template.name}: inline <script{attributes}>"
        assert not EVENT_ATTRIBUTE.search(text), f"{template.name}: an on*= attribute"
        assert "javascript:" not in text.lower(), template.name


def test_static_urls_change_with_the_content() -> None:
    url = web.static_url("app.css")
    digest = hashlib.sha256((web.STATIC / "app.css").read_bytes()).hexdigest()[:12]
    assert url == f"/static/app.css?v={digest}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    with in_process(tmp_path_factory.mktemp("web-static")) as running:
        yield running


def test_an_unknown_page_is_an_html_error_page(server: InProcess, page) -> None:  # noqa: ANN001
    response = page.goto(f"{server.api}/no/such/page")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert page.locator("header nav a").count() == 6  # Services, Map, Traces, Logs, SLOs, Incidents
    screenshot(page, "error-404")
    # The only failed load is the page itself (no missing stylesheet, script or favicon).
    assert page.problems == [
        "console: Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]


def test_the_time_zone_setting_is_remembered(server: InProcess, page) -> None:  # noqa: ANN001
    page.goto(f"{server.api}/no/such/page")
    with page.expect_navigation():  # the select submits its form (and a button does without JavaScript)
        page.select_option("header form.tz select", "browser")
    assert page.locator("body").get_attribute("data-tz") == "browser"
    (tz,) = [c for c in page.context.cookies() if c["name"] == "tz"]
    assert tz["value"] == "browser"


def test_static_files_are_served(server: InProcess) -> None:
    import httpx

    for relative in (
        "app.css",
        "app.js",
        "favicon.svg",
        "vendor/uPlot-1.6.32.iife.min.js",
    ):
        response = httpx.get(server.api + web.static_url(relative))
        assert response.status_code == 200, relative
        assert response.content == (web.STATIC / relative).read_bytes()


def test_artifacts_are_not_committed() -> None:
    assert "tests/artifacts/" in (Path(__file__).parents[1] / ".gitignore").read_text()
