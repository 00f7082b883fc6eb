"""The incident page's timeline of acknowledgements and silences, its Expire button, ``DELETE
/api/v1/silences/{id}`` and the burn rates over the incident, in real Chromium over a real server.

The world is tests/test_web_slos.py's (its ``world`` fixture, built again for this module): SLO
``checkout`` burning from minute 20 (its page rule 10m/5m factor 1.5 fires at ``at(28)``: 24 bad of
150 in 10m, a long burn of 1.60, and 15 of 75 in 5m, 2.00; its ticket rule 1h/10m factor 1 never
fires), incidents checkout/broken and checkout/hook open since ``at(28)``, search/hook resolved.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from conftest import screenshot
from test_web_slos import World, at, world  # noqa: F401 (world: the module-scoped fixture)

SCRIPT = {"X-Requested-By": "test"}


def _cells(row: Any) -> list[str]:
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def _silence(w: World, silence_id: str) -> dict[str, Any]:
    (found,) = [s for s in w.get("/api/v1/silences")["silences"] if s["id"] == silence_id]
    return found


def test_every_acknowledgement_is_kept_and_shown_in_the_timeline(world: World, page) -> None:  # noqa: ANN001, F811
    incident_id = world.incidents[("checkout", "hook")]["id"]
    url = f"{world.api}/incidents/{incident_id}"
    for by, comment in (("alice", "looking at the bank"), ("bob <i>", "bank confirmed an outage")):
        page.goto(url)
        page.fill("form.ack input[name=by]", by)
        page.fill("form.ack input[name=comment]", comment)
        with page.expect_navigation():
            page.click("form.ack button")
        time.sleep(0.01)  # two acknowledgements, two distinct milliseconds
    acks = page.locator("ol.timeline > li.ack")
    assert acks.count() == 2
    first, second = acks.all_inner_texts()
    assert "alice" in first and "looking at the bank" in first
    assert "bob <i>" in second and "bank confirmed an outage" in second
    # In time order with the rest: both after the alert fired (at(28)), the second after the first.
    texts = page.locator("ol.timeline > li").all_inner_texts()
    fired = next(i for i, t in enumerate(texts) if "inactive → firing" in t)
    assert fired < texts.index(first) < texts.index(second)
    # The latest is "acknowledged"; every one is listed.
    assert "Acknowledged by bob <i>" in page.locator("#acknowledged p.acknowledged").inner_text()
    assert page.locator("#acknowledged ol.acks > li").count() == 2

    body = world.get(f"/api/v1/incidents/{incident_id}")
    assert [(a["by"], a["comment"]) for a in body["acknowledgements"]] == [
        ("alice", "looking at the bank"),
        ("bob <i>", "bank confirmed an outage"),
    ]
    assert body["acknowledgements"][0]["at"] < body["acknowledgements"][1]["at"]
    assert body["acknowledged"]["by"] == "bob <i>"
    events = [e for e in body["timeline"] if e["type"] == "ack"]
    assert [(e["by"], e["comment"]) for e in events] == [
        (a["by"], a["comment"]) for a in body["acknowledgements"]
    ]
    assert [e["at"] for e in body["timeline"]] == sorted(e["at"] for e in body["timeline"])
    # The list shows the latest.
    listed = next(i for i in world.get("/api/v1/incidents")["incidents"] if i["id"] == incident_id)
    assert listed["acknowledged"]["by"] == "bob <i>"
    page.goto(f"{world.api}/incidents")
    assert "bob <i>" in _cells(page.locator(f'tr[data-incident="{incident_id}"]'))[7]
    screenshot(page, "incident-acks")
    assert page.problems == []


def test_a_silence_from_the_page_is_in_the_timeline_and_expire_ends_it(world: World, page) -> None:  # noqa: ANN001, F811
    incident_id = world.incidents[("checkout", "broken")]["id"]
    url = f"{world.api}/incidents/{incident_id}"
    before = {s["id"] for s in world.get("/api/v1/silences")["silences"]}
    page.goto(url)
    page.select_option("form.silence select[name=duration]", "2h")
    page.fill("form.silence input[name=created_by]", "dana")
    page.fill("form.silence input[name=comment]", "bank maintenance window")
    with page.expect_navigation():
        page.click("form.silence button")
    (new,) = [s for s in world.get("/api/v1/silences")["silences"] if s["id"] not in before]
    assert new["state"] == "active" and new["matchers"] == ["slo = checkout", "severity = page"]
    started = page.locator(f'ol.timeline > li.silence.started[data-silence="{new["id"]}"]')
    assert started.count() == 1
    assert "dana" in started.inner_text() and "bank maintenance window" in started.inner_text()
    assert 'slo="checkout"' in started.inner_text()
    assert page.locator(f'ol.timeline > li.silence[data-silence="{new["id"]}"]').count() == 1  # no end yet
    body = world.get(f"/api/v1/incidents/{incident_id}")
    assert [(e["event"], e["created_by"]) for e in body["timeline"] if e.get("silence_id") == new["id"]] == [
        ("started", "dana")
    ]
    assert [s["state"] for s in body["silences"] if s["id"] == new["id"]] == ["active"]

    row = page.locator(f'#silences tr[data-silence="{new["id"]}"]')
    assert _cells(row)[3] == "active"
    with page.expect_navigation():
        row.locator("form.expire button").click()
    assert page.url.startswith(url)
    expired = _silence(world, new["id"])  # still listed, as expired
    assert expired["state"] == "expired" and expired["active"] is False
    assert new["starts_at"] <= expired["ends_at"] <= time.time() < new["ends_at"]
    row = page.locator(f'#silences tr[data-silence="{new["id"]}"]')
    assert _cells(row)[3].startswith("expired") and row.locator("form.expire").count() == 0
    end = page.locator(f'ol.timeline > li.silence.expired[data-silence="{new["id"]}"]')
    assert end.count() == 1 and "silence expired" in end.inner_text()
    body = world.get(f"/api/v1/incidents/{incident_id}")
    assert [e["event"] for e in body["timeline"] if e.get("silence_id") == new["id"]] == [
        "started",
        "expired",
    ]
    screenshot(page, "incident-silence-expired")
    assert page.problems == []


def test_delete_expires_a_silence_and_an_unknown_one_is_404(world: World) -> None:  # noqa: F811
    created = httpx.post(
        f"{world.api}/api/v1/silences",
        json={"matchers": ["slo = search"], "duration": "1h", "created_by": "erin"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["state"] == "active"
    gone = httpx.delete(f"{world.api}/api/v1/silences/{silence['id']}", headers=SCRIPT, timeout=10)
    assert gone.status_code == 200, gone.text
    assert gone.json()["state"] == "expired" and gone.json()["ends_at"] <= time.time()
    listed = _silence(world, silence["id"])
    assert (listed["state"], listed["active"], listed["ends_at"]) == (
        "expired",
        False,
        gone.json()["ends_at"],
    )
    time.sleep(1.1)
    # Expiring it again changes nothing: its end stays where the first expiry put it.
    again = httpx.delete(f"{world.api}/api/v1/silences/{silence['id']}", headers=SCRIPT, timeout=10)
    assert again.status_code == 200 and again.json()["ends_at"] == gone.json()["ends_at"]
    assert _silence(world, silence["id"])["ends_at"] == gone.json()["ends_at"]
    # The resolved search incident's timeline shows it started and expired.
    incident = world.get(f"/api/v1/incidents/{world.incidents[('search', 'hook')]['id']}")
    assert [e["event"] for e in incident["timeline"] if e.get("silence_id") == silence["id"]] == [
        "started",
        "expired",
    ]
    unknown = httpx.delete(f"{world.api}/api/v1/silences/no-such-silence", headers=SCRIPT, timeout=10)
    assert unknown.status_code == 404 and "no-such-silence" in unknown.json()["detail"]


def test_expire_without_the_csrf_token_is_403_and_changes_nothing(world: World) -> None:  # noqa: F811
    incident_id = world.incidents[("search", "hook")]["id"]
    created = httpx.post(
        f"{world.api}/api/v1/silences",
        json={"matchers": ["slo = search", "severity = page"], "duration": "1h"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    url = f"{world.api}/incidents/{incident_id}/silences/{silence['id']}/expire"
    token = "x" * 43
    for form, cookies in (
        ({}, {}),
        ({"csrf_token": token}, {}),
        ({}, {"sloscope_csrf": token}),
        ({"csrf_token": token}, {"sloscope_csrf": "y" * 43}),
    ):
        with httpx.Client(cookies=cookies, timeout=10) as client:
            response = client.post(url, data=form, headers={"Accept": "text/html"})
        assert response.status_code == 403, (form, cookies)
        assert "Nothing was changed" in response.text
    assert _silence(world, silence["id"]) == silence | {"active": True, "state": "active"}
    # What the page's form sends (cookie and token match) expires it and goes back to the incident.
    with httpx.Client(cookies={"sloscope_csrf": token}, timeout=10) as client:
        ok = client.post(url, data={"csrf_token": token})
        missing = client.post(
            f"{world.api}/incidents/{incident_id}/silences/no-such-silence/expire",
            data={"csrf_token": token},
            headers={"Accept": "text/html"},
        )
    assert ok.status_code == 303 and ok.headers["location"] == f"/incidents/{incident_id}#silences"
    assert _silence(world, silence["id"])["state"] == "expired"
    assert missing.status_code == 404 and "no-such-silence" in missing.text


def test_the_burn_rates_over_the_incident_show_every_rule(world: World, page, browser) -> None:  # noqa: ANN001, F811
    incident = world.incidents[("checkout", "hook")]
    assert incident["opened_at_s"] == at(28)
    url = f"{world.api}/incidents/{incident['id']}"
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    try:
        plain = context.new_page()
        plain.goto(url)
        table = plain.locator('#burn-rates table.burn-rules[data-slo="checkout"]')
        assert table.is_visible()
        rows = table.locator("tbody tr")
        assert rows.count() == 2
        page_rule, ticket_rule = _cells(rows.nth(0)), _cells(rows.nth(1))
        assert page_rule[:5] == ["page 10m/5m", "page", "10m", "5m", "1.50"]
        assert page_rule[5] == "1.60× / 2.00×"  # at at(28), when the incident opened
        assert page_rule[8] == "fired"
        assert ticket_rule[:5] == ["ticket 1h/10m", "ticket", "1h", "10m", "1.00"]
        assert ticket_rule[8] == "no"
        # The span starts 15 minutes before the incident opened, a minute apart, up to now.
        series = plain.locator('figure[data-chart="burn-0-0"] table.series tbody tr')
        first = series.first.locator("time").get_attribute("datetime")
        assert first == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at(13)))
        assert series.count() >= 18
        assert plain.locator("canvas").count() == 0
        screenshot(plain, "incident-burn-no-js")
    finally:
        context.close()
    # With JavaScript: one uPlot chart per rule over the same data.
    page.goto(url)
    page.wait_for_selector("#burn-rates figure.chart-box.drawn canvas")
    assert page.locator("#burn-rates figure.chart-box.drawn").count() == 2
    page.locator("#burn-rates").scroll_into_view_if_needed()
    screenshot(page, "incident-burn")
    assert page.problems == []
