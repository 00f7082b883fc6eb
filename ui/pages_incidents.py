"""The incident pages of the web UI.

* ``GET /incidents?status=``: incidents, open first.
* ``GET /incidents/{id}``: its timeline (state changes, notifications and every delivery attempt,
  every acknowledgement, the start and end of every silence that matched its alerts), runbook, SLOs,
  the burn rates of its SLOs' alert rules over the incident (``slo/burn_history.py``), example traces
  with their log lines, and the Acknowledge and Silence forms.
* ``POST /incidents/{id}/ack`` and ``POST /incidents/{id}/silence``: those forms (CSRF-protected).
* ``POST /incidents/{id}/silences/{silence_id}/expire``: the Expire button of a matched silence that
  has not ended (CSRF-protected): its end becomes now.

The JSON twin is ``/api/v1/incidents``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from alerts import attribution, store
from alerts.links import server_href
from alerts.model import Matcher, Silence, slo_instance
from alerts.silences import expire, format_matcher, is_active, matches_all, silence_state
from alerts.state import ALERTNAME, AlertRecord
from slo import burn_history
from slo.model import Slo, format_duration, parse_duration
from store.backend import Backend, StoreError
from ui import web
from ui.auth import require
from ui.pages_slos import slo_href
from ui.scoping import SloCatalog, incident_visible, silence_visible

INCIDENT_LIMIT = 500
MAX_EXAMPLES = 10
#: Silence durations offered by the incident page's form (any ``parse_duration`` text is accepted).
SILENCE_DURATIONS = ("1h", "2h", "4h", "12h", "1d", "7d")
MAX_SILENCE_S = 365 * 86_400
#: Silences that ended this long ago are still listed (besides those that overlapped the incident).
RECENT_SILENCE_S = 86_400


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
        return web.render(
            request, template, iso=web.iso, slo_href=slo_href, duration=format_duration, **context
        )

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

    @pages.post("/incidents/{incident_id}/silences/{silence_id}/expire", dependencies=responder)
    async def expire_silence(request: Request, incident_id: str, silence_id: str) -> Response:
        await run_in_threadpool(visible_incident, request, incident_id)
        names = set(catalog.by_name(request))
        found = [
            s
            for s in await run_in_threadpool(store.load_silences, backend)
            if s.id == silence_id and silence_visible(s, names, request)
        ]
        if not found:
            raise web.PageError(404, "Not found", f"There is no silence {silence_id!r}.")
        now_s = int(time.time())
        expired = expire(found[0], now_s)
        # An ended silence is left as it is (a second click, or one that ran out meanwhile).
        if expired != found[0]:
            await run_in_threadpool(store.save_silence, backend, expired, time.time_ns() // 1_000_000)
        return RedirectResponse(f"/incidents/{incident_id}#silences", status_code=303)

    return pages


# -- data of the incident page -----------------------------------------------------------------------


def matched_silences(
    backend: Backend,
    by_name: dict[str, Slo],
    incident: dict[str, Any],
    alerts: Sequence[AlertRecord],
    now_s: int,
) -> list[dict[str, Any]]:
    """The silences whose matchers match one of the incident's alerts and that overlapped the
    incident or ended in the last day, active ones first: ``silence``, ``matchers`` (text), ``state``
    (pending, active, expired), ``active``, ``expired_early`` (ended by an expiry, not by running
    out) and ``ended`` (its end, if it is past)."""
    labels = [_alert_labels(by_name.get(a.slo), a.slo, a.severity, a.group) for a in alerts] or [
        _alert_labels(by_name.get(s), s, sev, ()) for s in incident["slos"] for sev in incident["severities"]
    ]
    span_end = incident["closed_at_s"] if incident["closed_at_s"] is not None else now_s
    out = []
    for s, updated_ms in store.silence_versions(backend):
        if not s.matchers or not any(matches_all(s.matchers, lab) for lab in labels):
            continue
        overlapped = s.starts_at_s <= span_end and s.ends_at_s > incident["opened_at_s"]
        if not overlapped and s.ends_at_s <= now_s - RECENT_SILENCE_S:
            continue
        ended = s.ends_at_s <= now_s
        out.append(
            {
                "silence": s,
                "matchers": [format_matcher(m) for m in s.matchers],
                "active": is_active(s, now_s),
                "state": silence_state(s, now_s),
                # An expiry writes the version that sets the end at the moment of the end (within the
                # second it was taken in); a silence that ran out was last written before its end.
                "expired_early": ended and s.ends_at_s <= updated_ms / 1000 < s.ends_at_s + 2,
                "ended": s.ends_at_s if ended else None,
            }
        )
    out.sort(key=lambda e: (not e["active"], -e["silence"].starts_at_s))
    return out


def timeline_events(
    transitions: Sequence[dict[str, Any]],
    notifications: Sequence[dict[str, Any]],
    acks: Sequence[dict[str, Any]],
    silences: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The incident's timeline in time order (plain JSON values): alert state changes (``alert``),
    notifications with their deliveries (``notification``), acknowledgements (``ack``) and the start
    and end of matched silences (``silence``, ``event`` started, expired or ended)."""
    timeline: list[dict[str, Any]] = [{"at": t["at_s"], "type": "alert", **t} for t in transitions]
    timeline += [
        {"at": n["at_s"], "type": "notification", **{k: v for k, v in n.items() if k != "payload"}}
        for n in notifications
    ]
    timeline += [{"at": a["at"], "type": "ack", "by": a["by"], "comment": a["comment"]} for a in acks]
    for entry in silences:
        s = entry["silence"]
        about = {
            "type": "silence",
            "silence_id": s.id,
            "matchers": entry["matchers"],
            "starts_at": s.starts_at_s,
            "ends_at": s.ends_at_s,
            "created_by": s.created_by,
            "comment": s.comment,
        }
        timeline.append({"at": s.starts_at_s, "event": "started", **about})
        if entry["ended"] is not None:
            event = "expired" if entry["expired_early"] else "ended"
            timeline.append({"at": s.ends_at_s, "event": event, **about})
    timeline.sort(key=lambda e: (e["at"], e["type"]))
    return timeline


def _burn_rates(
    backend: Backend,
    by_name: dict[str, Slo],
    incident: dict[str, Any],
    alerts: Sequence[AlertRecord],
    now_s: int,
) -> dict[str, Any]:
    """The burn rates of every rule of the incident's SLOs over the incident's span (with a margin
    before it): for each SLO instance of its alerts, a row per rule and the series for the charts."""
    start, end = burn_history.span_with_margin(incident["opened_at_s"], incident["closed_at_s"], now_s)
    wanted: dict[str, list[burn_history.Group]] = {}
    for a in alerts:
        wanted.setdefault(a.slo, []).append(a.group)
    histories, errors = [], []
    for name in incident["slos"]:
        slo = by_name.get(name)
        if slo is None:
            continue
        # An incident without alert records (pruned) still names its SLO: every instance then.
        groups = wanted.get(name) or ([()] if not slo.group_by else None)
        try:
            histories += burn_history.burn_history(backend, slo, start, end, groups)
        except (StoreError, ValueError, TypeError) as exc:
            # The rest of the page stands; say why this SLO's burn rates are missing.
            errors.append(f"{name}: {exc}")
    instances, charts = [], []
    for i, h in enumerate(histories):
        opened = next(
            (k for k, t in enumerate(h.times_s) if t >= incident["opened_at_s"]), len(h.times_s) - 1
        )
        rules = []
        for j, r in enumerate(h.rules):
            chart = f"burn-{i}-{j}"
            rules.append(
                {
                    "series": r,
                    "chart": chart,
                    "long": format_duration(r.long_s),
                    "short": format_duration(r.short_s),
                    "at_open": (r.long_burn_rate[opened], r.short_burn_rate[opened]),
                    "at_end": (r.long_burn_rate[-1], r.short_burn_rate[-1]),
                }
            )
            charts.append(
                {
                    "chart": chart,
                    "x": h.times_s,
                    "long": format_duration(r.long_s),
                    "short": format_duration(r.short_s),
                    "factor": r.factor,
                    "long_rate": r.long_burn_rate,
                    "short_rate": r.short_burn_rate,
                    "opened": incident["opened_at_s"],
                    "closed": incident["closed_at_s"],
                }
            )
        instances.append({"history": h, "rules": rules})
    step = histories[0].step_s if histories else burn_history.step_s(start, end)
    return {
        "start": start,
        "end": end,
        "step": step,
        "instances": instances,
        "charts": charts,
        "errors": errors,
    }


def _incident_data(backend: Backend, by_name: dict[str, Slo], incident_id: str) -> dict[str, Any] | None:
    incident = store.get_incident(backend, incident_id)
    if incident is None:
        return None
    records = store.load_alerts(backend)
    alerts = [records[a] for a in incident["alert_ids"] if a in records]
    transitions = store.transitions(backend, incident["alert_ids"])
    notifications = store.incident_notifications(backend, incident_id)
    examples: dict[str, dict[str, Any]] = {}
    contributors: list[dict[str, Any]] = []
    window_bad = 0.0
    for n in reversed(notifications):  # newest first: the latest attribution is the one shown
        try:
            payload = json.loads(n["payload"])
        except (TypeError, ValueError):
            payload = {}
        found = payload.get("attribution") or {}
        if not contributors and found.get("contributors"):
            contributors = [c for c in found["contributors"] if isinstance(c, dict)]
            window_bad = attribution.stored_count(found.get("bad"))
        for e in found.get("examples") or []:
            if isinstance(e, dict) and e.get("trace_id") and len(examples) < MAX_EXAMPLES:
                examples.setdefault(e["trace_id"], {**e, "at": n["at_s"]})

    now_s = int(time.time())
    acks = store.incident_acknowledgements(backend, incident_id)
    silences = matched_silences(backend, by_name, incident, alerts, now_s)
    timeline = timeline_events(transitions, notifications, acks, silences)
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
        "acknowledged": acks[-1] if acks else None,
        "acknowledgements": acks,
        "silences": silences,
        "slo_links": slo_links,
        "burn": _burn_rates(backend, by_name, incident, alerts, now_s),
        "examples": list(examples.values()),
        "contributors": contributors,
        "canary": _canary_link(contributors, window_bad, slo_links, incident, now_s),
    }


def _canary_link(
    contributors: list[dict[str, Any]],
    bad: float,
    slo_links: list[dict[str, Any]],
    incident: dict[str, Any],
    now_s: int,
) -> dict[str, str] | None:
    """The canary view of the version holding most of the bad events, against another version,
    over the hour before the incident opened to its close (or now); None when no version does."""
    services = {s["service"] for s in slo_links if s["service"]}
    dominant = attribution.dominant_version(contributors, bad)
    if dominant is None or len(services) != 1:
        return None
    candidate, baseline = dominant
    opened = int(incident.get("opened_at_s") or now_s)
    end = int(incident.get("closed_at_s") or now_s)
    query = {
        "service": services.pop(),
        "candidate": candidate,
        "baseline": baseline,
        "start": str((opened - 3600) * 1000),
        "end": str(max(end, opened + 60) * 1000),
    }
    return {"href": "/canary?" + urlencode(query), "version": candidate}
