"""JSON API of alerting: alerts, incidents with their timelines, acknowledgements and silences.

* ``GET /api/v1/alerts?state=``: every alert (one per SLO, severity and group), firing first.
* ``GET /api/v1/incidents?status=&limit=``: incidents, open first, newest first.
* ``GET /api/v1/incidents/{id}``: one incident: its alerts, the timeline of their state changes, of
  the notifications sent (with every delivery attempt), of its acknowledgements and of the start and
  end of the silences that matched its alerts; ``acknowledged`` (the latest acknowledgement),
  ``acknowledgements`` (every one, oldest first) and ``silences`` (the matched ones).
* ``POST /api/v1/incidents/{id}/ack``: acknowledge (JSON ``{"by": ..., "comment": ...}``): no more
  repeats; the resolve is still sent.
* ``GET /api/v1/silences``, ``POST /api/v1/silences`` (JSON ``{"matchers": ["slo = checkout"],
  "duration": "2h"`` or ``"ends_at": RFC 3339``, ``"created_by", "comment"}``),
  ``DELETE /api/v1/silences/{id}`` (expires it now; Alertmanager's DELETE /api/v2/silence/{id}). A
  silence's ``state`` is Alertmanager's: pending, active or expired; an expired one stays listed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from alerts import store
from alerts.model import Silence
from alerts.silences import expire, silence_state
from slo.model import Slo, parse_duration
from store.backend import Backend
from ui.auth import require
from ui.pages_incidents import matched_silences, timeline_events
from ui.params import bad_request, call_store, parse_limit, parse_time
from ui.scoping import SloCatalog, incident_visible, restricted, silence_visible

STATES = ("firing", "resolved", "inactive")
INCIDENT_LIMIT = (100, 10_000)
MAX_SILENCE_S = 365 * 86_400


def router(
    backend: Backend, catalog: SloCatalog, parse_matcher: Callable[[str], Any], external_url: str = ""
) -> APIRouter:
    """The alerting endpoints over the SLOs of ``catalog`` the request's user may see (a tenant's
    user sees the alerts, incidents and silences of the tenant's SLOs: ``ui/scoping.py``).
    ``parse_matcher`` turns ``slo = checkout`` into a Matcher (ValueError with a message when it
    cannot)."""
    api = APIRouter()
    responder = [Depends(require("responder"))]

    def alert_json(record: store.AlertRecord, by_name: dict[str, Slo]) -> dict[str, Any]:
        slo = by_name.get(record.slo)
        return {
            "id": record.id,
            "slo": record.slo,
            "service": slo.service if slo else None,
            "severity": record.severity,
            "group": dict(record.group),
            "state": record.state,
            "firing_since": record.firing_since_s,
            "resolved_at": record.resolved_at_s,
            "updated_at": record.updated_at_s,
            "annotations": slo.annotation_map if slo else {},
        }

    def visible_incident(request: Request, incident_id: str) -> dict[str, Any]:
        """The incident, or 404 if there is none the user may see (another tenant's is "none")."""
        incident = call_store(lambda: store.get_incident(backend, incident_id))
        if incident is None or not incident_visible(incident, set(catalog.by_name(request)), request):
            raise HTTPException(404, f"no incident {incident_id!r}")
        return incident

    @api.get("/api/v1/alerts")
    def list_alerts(request: Request, state: str | None = None) -> dict[str, Any]:
        """Every alert, firing first."""
        if state and state not in STATES:
            raise bad_request(f"state: {state!r} must be one of {', '.join(STATES)}")
        by_name = catalog.by_name(request)
        records = call_store(lambda: store.load_alerts(backend)).values()
        mine = (r for r in records if not restricted(request) or r.slo in by_name)
        chosen = [r for r in mine if not state or r.state == state]
        chosen.sort(key=lambda r: (r.state != "firing", -(r.firing_since_s or 0), r.slo, r.severity))
        return {"alerts": [alert_json(r, by_name) for r in chosen]}

    @api.get("/api/v1/incidents")
    def list_incidents(request: Request, status: str | None = None, limit: str | None = None) -> dict[str, Any]:
        """Incidents, open first, newest first."""
        if status and status not in ("open", "resolved"):
            raise bad_request(f"status: {status!r} must be open or resolved")
        n = parse_limit(limit, *INCIDENT_LIMIT)
        names = set(catalog.by_name(request))
        # A tenant's user: read as many as allowed, then keep theirs (others' must not crowd them out).
        wanted = INCIDENT_LIMIT[1] if restricted(request) else n
        found = call_store(lambda: store.list_incidents(backend, status or "", wanted))
        rows = [row for row in found if incident_visible(row, names, request)][:n]
        acks = call_store(lambda: store.acknowledgements(backend))
        for row in rows:
            row["acknowledged"] = acks.get(row["id"])
            row["url"] = f"{external_url}/incidents/{row['id']}" if external_url else None
        return {"incidents": rows}

    @api.get("/api/v1/incidents/{incident_id}")
    def get_incident(request: Request, incident_id: str) -> dict[str, Any]:
        """One incident with its alerts, state changes, notifications and deliveries."""
        incident = visible_incident(request, incident_id)
        by_name = catalog.by_name(request)
        records = call_store(lambda: store.load_alerts(backend))
        alerts = [records[a] for a in incident["alert_ids"] if a in records]
        incident["alerts"] = [alert_json(r, by_name) for r in alerts]
        transitions = call_store(lambda: store.transitions(backend, incident["alert_ids"]))
        notifications = call_store(lambda: store.incident_notifications(backend, incident_id))
        acks = call_store(lambda: store.incident_acknowledgements(backend, incident_id))
        now_s = int(time.time())
        silences = call_store(lambda: matched_silences(backend, by_name, incident, alerts, now_s))
        incident["timeline"] = timeline_events(transitions, notifications, acks, silences)
        incident["acknowledged"] = acks[-1] if acks else None
        incident["acknowledgements"] = acks
        incident["silences"] = [silence_json(s["silence"], now_s) for s in silences]
        return incident

    @api.post("/api/v1/incidents/{incident_id}/ack", dependencies=responder)
    async def ack(incident_id: str, request: Request) -> dict[str, Any]:
        """Acknowledge an incident: its repeats stop, its resolve is still sent."""
        body = await _json_body(request)
        by, comment = str(body.get("by", "")), str(body.get("comment", ""))
        visible_incident(request, incident_id)
        now_ms = time.time_ns() // 1_000_000
        call_store(lambda: store.acknowledge(backend, incident_id, now_ms, by[:200], comment[:2000]))
        return {"incident": incident_id, "acknowledged": {"at": now_ms / 1000, "by": by, "comment": comment}}

    def silence_json(s: Silence, now_s: int) -> dict[str, Any]:
        return {
            "id": s.id,
            "matchers": [
                f"{m.label} {m.op} {m.value!r}" if " " in m.value else f"{m.label} {m.op} {m.value}"
                for m in s.matchers
            ],
            "starts_at": s.starts_at_s,
            "ends_at": s.ends_at_s,
            "active": s.starts_at_s <= now_s < s.ends_at_s,
            "state": silence_state(s, now_s),
            "created_by": s.created_by,
            "comment": s.comment,
        }

    @api.get("/api/v1/silences")
    def list_silences(request: Request) -> dict[str, Any]:
        """Every silence, active or not."""
        now_s = int(time.time())
        names = set(catalog.by_name(request))
        found = call_store(lambda: store.load_silences(backend))
        return {"silences": [silence_json(s, now_s) for s in found if silence_visible(s, names, request)]}

    @api.post("/api/v1/silences", status_code=201, dependencies=responder)
    async def create_silence(request: Request) -> dict[str, Any]:
        """Create a silence; answers its id."""
        body = await _json_body(request)
        matchers = body.get("matchers")
        if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
            raise bad_request('matchers: a non-empty list of texts like "slo = checkout" is required')
        try:
            parsed = tuple(parse_matcher(m) for m in matchers)
        except ValueError as exc:
            raise bad_request(f"matchers: {exc}") from None
        now_s = int(time.time())
        starts = _instant(body, "starts_at", now_s)
        if "duration" in body:
            try:
                ends = starts + parse_duration(str(body["duration"]))
            except ValueError as exc:
                raise bad_request(f"duration: {exc}") from None
            given = "duration"
        elif "ends_at" in body:
            ends = _instant(body, "ends_at", now_s)
            given = "ends_at"
        else:
            raise bad_request("duration or ends_at: give one (e.g. duration 2h)")
        # Name the field the client wrote: a too-long duration is not an ends_at problem.
        if ends <= starts:
            raise bad_request(f"{given}: the silence must end after starts_at")
        if ends - starts > MAX_SILENCE_S:
            raise bad_request(f"{given}: a silence lasts at most a year")
        silence = Silence(
            uuid.uuid4().hex,
            parsed,
            starts,
            ends,
            str(body.get("created_by", ""))[:200],
            str(body.get("comment", ""))[:2000],
        )
        if not silence_visible(silence, set(catalog.by_name(request)), request):
            raise HTTPException(
                403,
                "matchers: a tenant's silence must pin slo to the tenant's SLOs (slo = NAME, or "
                "slo =~ \"A|B\" listing names literally), so that it cannot mute other tenants' alerts",
            )
        call_store(lambda: store.save_silence(backend, silence, time.time_ns() // 1_000_000))
        return silence_json(silence, now_s)

    @api.delete("/api/v1/silences/{silence_id}", dependencies=responder)
    def expire_silence(request: Request, silence_id: str) -> dict[str, Any]:
        """Expire a silence now."""
        names = set(catalog.by_name(request))
        found = [
            s
            for s in call_store(lambda: store.load_silences(backend))
            if s.id == silence_id and silence_visible(s, names, request)
        ]
        if not found:
            raise HTTPException(404, f"no silence {silence_id!r}")
        now_s = int(time.time())
        expired = expire(found[0], now_s)
        # Expiring an ended silence again changes nothing (its end stays where it was): 200, as the
        # DELETE of something already gone is for a retrying client.
        if expired != found[0]:
            call_store(lambda: store.save_silence(backend, expired, time.time_ns() // 1_000_000))
        return silence_json(expired, now_s)

    return api


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise HTTPException(413, "request body larger than 64 KiB")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _instant(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    return parse_time(str(value), name) // 10**9
