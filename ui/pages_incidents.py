"""The incident pages of the web UI.

* ``GET /incidents?status=``: incidents, open first.
* ``GET /incidents/{id}``: its timeline (state changes, notifications and every delivery attempt),
  runbook, SLOs, example traces with their log lines, and the Acknowledge and Silence forms.
* ``POST /incidents/{id}/ack`` and ``POST /incidents/{id}/silence``: those forms (CSRF-protected).

The JSON twin is ``/api/v1/incidents``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from alerts import store
from alerts.links import server_href
from alerts.model import Matcher, Silence, slo_instance
from alerts.silences import format_matcher, is_active, matches_all
from alerts.state import ALERTNAME
from slo.model import Slo, format_duration, parse_duration
from store.backend import Backend
from ui import web
from ui.auth import require
from ui.pages_slos import iso, slo_href
from ui.scoping import SloCatalog, incident_visible

INCIDENT_LIMIT = 500
MAX_EXAMPLES = 10
#: Silence durations offered by the incident page's form (any ``parse_duration`` text is accepted).
SILENCE_DURATIONS = ("1h", "2h", "4h", "12h", "1d", "7d")
MAX_SILENCE_S = 365 * 86_400


def _alert_labels(
    slo: Slo | None, name: str, severity: str, group: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """The labels an alert of (``name``, ``severity``, ``group``) is matched on by silences."""
    labels = {"alertname": ALERTNAME, "slo": name, "severity": severity}
    if slo is not None:
        labels |= {"service": slo.service, **slo.label_map}
    labels |= dict(group)
    labels.setdefault("slo_instance", slo_instance(name, tuple(group)))
    return labels


def _one_of(label: str, values: Sequence[str]) -> Matcher:
    """``label = v`` for one value, ``label =~ "a|b"`` (escaped, anchored by the matcher) for several."""
    values = sorted(set(values))
    if len(values) == 1:
        return Matcher(label, "=", values[0])
    return Matcher(label, "=~", "|".join(re.escape(v) for v in values))


async def _form(request: Request) -> dict[str, str]:
    """The POSTed form (its CSRF token was checked by ``ui/auth.py`` before the route ran)."""
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


def router(backend: Backend, catalog: SloCatalog) -> APIRouter:
    """The incident pages over ``backend`` for the SLOs of ``catalog`` the user may see."""
    pages = APIRouter(include_in_schema=False)
    responder = [Depends(require("responder"))]

    def page(request: Request, template: str, **context: Any) -> Response:
        return web.render(request, template, iso=iso, slo_href=slo_href, duration=format_duration, **context)

    def visible_incident(request: Request, incident_id: str) -> dict[str, Any]:
        incident = store.get_incident(backend, incident_id)
        if incident is None or not incident_visible(incident, set(catalog.by_name(request)), request):
            raise web.PageError(404, "Not found", f"There is no incident {incident_id!r}.")
        return incident

    @pages.get("/incidents")
    async def incident_list(request: Request) -> Response:
        status = request.query_params.get("status", "")
        if status not in ("", "open", "resolved"):
            raise web.PageError(400, "Bad status", f"status: {status!r} must be open or resolved")

        by_name = catalog.by_name(request)

        def load() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            return store.list_incidents(backend, status, INCIDENT_LIMIT), store.acknowledgements(backend)

        found, acks = await run_in_threadpool(load)
        incidents = [i for i in found if incident_visible(i, set(by_name), request)]
        for incident in incidents:
            incident["acknowledged"] = acks.get(incident["id"])
        return page(
            request,
            "incidents.html",
            incidents=incidents,
            status=status,
            known_slos=set(by_name),
            json_url="/api/v1/incidents" + (f"?status={status}" if status else ""),
        )

    @pages.get("/incidents/{incident_id}")
    async def incident_page(request: Request, incident_id: str) -> Response:
        await run_in_threadpool(visible_incident, request, incident_id)
        data = await run_in_threadpool(_incident_data, backend, catalog.by_name(request), incident_id)
        if data is None:
            raise web.PageError(404, "Not found", f"There is no incident {incident_id!r}.")
        return page(
            request,
            "incident.html",
            **data,
            durations=SILENCE_DURATIONS,
            json_url=f"/api/v1/incidents/{incident_id}",
        )

    @pages.post("/incidents/{incident_id}/ack", dependencies=responder)
    async def ack(request: Request, incident_id: str) -> Response:
        form = await _form(request)
        await run_in_threadpool(visible_incident, request, incident_id)
        by, comment = form.get("by", "").strip()[:200], form.get("comment", "").strip()[:2000]
        now_ms = time.time_ns() // 1_000_000
        await run_in_threadpool(store.acknowledge, backend, incident_id, now_ms, by, comment)
        return RedirectResponse(f"/incidents/{incident_id}#acknowledged", status_code=303)

    @pages.post("/incidents/{incident_id}/silence", dependencies=responder)
    async def silence(request: Request, incident_id: str) -> Response:
        form = await _form(request)
        incident = await run_in_threadpool(visible_incident, request, incident_id)
        text = form.get("duration", "").strip()
        try:
            duration = parse_duration(text)
        except ValueError as exc:
            raise web.PageError(400, "Bad silence duration", f"duration: {exc}") from None
        if duration > MAX_SILENCE_S:
            raise web.PageError(400, "Bad silence duration", "duration: a silence lasts at most a year")
        if not incident["slos"] or not incident["severities"]:
            raise web.PageError(400, "Cannot silence", "This incident names no SLO or severity to match.")
        now_s = int(time.time())
        created = Silence(
            uuid.uuid4().hex,
            (_one_of("slo", incident["slos"]), _one_of("severity", incident["severities"])),
            now_s,
            now_s + duration,
            form.get("created_by", "").strip()[:200],
            (form.get("comment", "").strip() or f"from incident {incident_id}")[:2000],
        )
        await run_in_threadpool(store.save_silence, backend, created, time.time_ns() // 1_000_000)
        return RedirectResponse(f"/incidents/{incident_id}#silences", status_code=303)

    return pages


# -- data of the incident page -----------------------------------------------------------------------


def _incident_data(backend: Backend, by_name: dict[str, Slo], incident_id: str) -> dict[str, Any] | None:
    incident = store.get_incident(backend, incident_id)
    if incident is None:
        return None
    records = store.load_alerts(backend)
    alerts = [records[a] for a in incident["alert_ids"] if a in records]
    transitions = store.transitions(backend, incident["alert_ids"])
    notifications = store.incident_notifications(backend, incident_id)
    timeline: list[dict[str, Any]] = [{"at": t["at_s"], "type": "alert", **t} for t in transitions]
    examples: dict[str, dict[str, Any]] = {}
    contributors: list[dict[str, Any]] = []
    for n in reversed(notifications):  # newest first: the latest attribution is the one shown
        try:
            payload = json.loads(n["payload"])
        except (TypeError, ValueError):
            payload = {}
        found = payload.get("attribution") or {}
        if not contributors and found.get("contributors"):
            contributors = found["contributors"]
        for e in found.get("examples") or []:
            if isinstance(e, dict) and e.get("trace_id") and len(examples) < MAX_EXAMPLES:
                examples.setdefault(e["trace_id"], {**e, "at": n["at_s"]})
    for n in notifications:
        timeline.append(
            {"at": n["at_s"], "type": "notification", **{k: v for k, v in n.items() if k != "payload"}}
        )
    timeline.sort(key=lambda e: (e["at"], e["type"]))

    now_s = int(time.time())
    labels = [_alert_labels(by_name.get(a.slo), a.slo, a.severity, a.group) for a in alerts] or [
        _alert_labels(by_name.get(s), s, sev, ()) for s in incident["slos"] for sev in incident["severities"]
    ]
    silences = [
        {
            "silence": s,
            "matchers": [format_matcher(m) for m in s.matchers],
            "active": is_active(s, now_s),
        }
        for s in store.load_silences(backend)
        if s.matchers and s.ends_at_s > now_s - 86_400 and any(matches_all(s.matchers, lab) for lab in labels)
    ]
    silences.sort(key=lambda s: (not s["active"], -s["silence"].starts_at_s))
    slo_links = []
    for name in incident["slos"]:
        slo = by_name.get(name)
        ann = slo.annotation_map if slo else {}
        slo_links.append(
            {
                "name": name,
                "known": slo is not None,
                "service": slo.service if slo else "",
                "objective": str(slo.objective) if slo else None,
                "window": slo.window.label if slo else "",
                "runbook": server_href(ann.get("runbook_url", "")),
                "runbook_text": ann.get("runbook_url", ""),
                "dashboard": server_href(ann.get("dashboard_url", "")),
            }
        )
    return {
        "incident": incident,
        "alerts": alerts,
        "timeline": timeline,
        "notifications": notifications,
        "acknowledged": store.acknowledgements(backend).get(incident_id),
        "silences": silences,
        "slo_links": slo_links,
        "examples": list(examples.values()),
        "contributors": contributors,
    }
