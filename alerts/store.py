"""Alerting state in ClickHouse (migration 0009): alerts, transitions, the dispatcher's state,
incidents, notifications and their deliveries, silences, acknowledgements and evaluator leases.

Rows are versioned (ReplacingMergeTree) and read with FINAL, so the newest version of an alert,
incident or silence is what a restarted or second evaluator sees.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from alerts import sql
from alerts.model import (
    Alert,
    Attribution,
    Contributor,
    ExampleTrace,
    FiringPair,
    Matcher,
    Notification,
    Silence,
    Transition,
)
from alerts.state import AlertRecord
from store.backend import Backend

_TS = pa.timestamp("s", tz="UTC")
_TS_MS = pa.timestamp("ms", tz="UTC")
_LABELS = pa.map_(pa.string(), pa.string())


def _labels(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(pairs)


# -- alerts ----------------------------------------------------------------------------------------


def load_alerts(backend: Backend) -> dict[str, AlertRecord]:
    """Every stored alert record by id (the newest version of each)."""
    rows = backend.query_arrow(sql.ALERT_STATES).to_pylist()
    return {
        r["id"]: AlertRecord(
            r["id"],
            r["slo"],
            r["severity"],
            tuple(sorted(dict(r["group_labels"]).items())),
            r["state"],
            r["firing_since_s"],
            r["resolved_at_s"],
            r["keep_firing_since_s"],
            r["updated_at_s"],
        )
        for r in rows
    }


def save_alerts(backend: Backend, records: Sequence[AlertRecord]) -> None:
    if not records:
        return
    table = pa.table(
        {
            "id": [r.id for r in records],
            "slo": [r.slo for r in records],
            "severity": [r.severity for r in records],
            "group_labels": pa.array([_labels(r.group) for r in records], _LABELS),
            "state": [r.state for r in records],
            "firing_since": pa.array([r.firing_since_s for r in records], _TS),
            "resolved_at": pa.array([r.resolved_at_s for r in records], _TS),
            "keep_firing_since": pa.array([r.keep_firing_since_s for r in records], _TS),
            "updated_at": pa.array([r.updated_at_s for r in records], _TS),
        }
    )
    backend.insert_arrow("alert_states", table)


def save_transitions(
    backend: Backend, transitions: Sequence[Transition], records: dict[str, AlertRecord]
) -> None:
    if not transitions:
        return
    alerts = [records[t.alert_id] for t in transitions]
    table = pa.table(
        {
            "alert_id": [t.alert_id for t in transitions],
            "slo": [a.slo for a in alerts],
            "severity": [a.severity for a in alerts],
            "group_labels": pa.array([_labels(a.group) for a in alerts], _LABELS),
            "at": pa.array([t.at_s for t in transitions], _TS),
            "from_state": [t.from_state for t in transitions],
            "to_state": [t.to_state for t in transitions],
        }
    )
    backend.insert_arrow("alert_transitions", table)


def transitions(backend: Backend, alert_ids: Sequence[str], limit: int = 10_000) -> list[dict[str, Any]]:
    """State changes of ``alert_ids``, oldest first."""
    if not alert_ids:
        return []
    rows = backend.query_arrow(sql.TRANSITIONS, {"ids": list(alert_ids), "limit": limit}).to_pylist()
    for r in rows:
        r["group_labels"] = dict(r["group_labels"])
    return rows


# -- dispatcher state and incidents ----------------------------------------------------------------


def load_dispatch_state(backend: Backend, name: str = "default") -> str | None:
    rows = backend.query_arrow(sql.DISPATCH_STATE, {"name": name}).to_pylist()
    return rows[0]["state"] if rows else None


def save_dispatch_state(backend: Backend, at_s: int, state: str, name: str = "default") -> None:
    table = pa.table({"name": [name], "at": pa.array([at_s], _TS), "state": [state]})
    backend.insert_arrow("dispatch_state", table)


def save_incidents(backend: Backend, incidents: Sequence[dict[str, Any]], at_s: int) -> None:
    """Snapshots of incidents: dicts with id, receiver, group_labels, status, opened_at_s,
    closed_at_s, alert_ids, slos, services, severities."""
    if not incidents:
        return
    table = pa.table(
        {
            "id": [i["id"] for i in incidents],
            "receiver": [i["receiver"] for i in incidents],
            "group_labels": pa.array([list(dict(i["group_labels"]).items()) for i in incidents], _LABELS),
            "status": [i["status"] for i in incidents],
            "opened_at": pa.array([i["opened_at_s"] for i in incidents], _TS),
            "closed_at": pa.array([i.get("closed_at_s") for i in incidents], _TS),
            "alert_ids": [list(i["alert_ids"]) for i in incidents],
            "slos": [list(i["slos"]) for i in incidents],
            "services": [list(i["services"]) for i in incidents],
            "severities": [list(i["severities"]) for i in incidents],
            "updated_at": pa.array([at_s] * len(incidents), _TS),
        }
    )
    backend.insert_arrow("incidents", table)


def _incident_row(r: dict[str, Any]) -> dict[str, Any]:
    r["group_labels"] = dict(r["group_labels"])
    return r


def list_incidents(backend: Backend, status: str = "", limit: int = 100) -> list[dict[str, Any]]:
    """Incidents, open ones first, newest first; ``status`` 'open', 'resolved' or '' for all."""
    rows = backend.query_arrow(sql.INCIDENTS, {"status": status, "limit": limit}).to_pylist()
    return [_incident_row(r) for r in rows]


def get_incident(backend: Backend, incident_id: str) -> dict[str, Any] | None:
    rows = backend.query_arrow(sql.INCIDENT, {"id": incident_id}).to_pylist()
    return _incident_row(rows[0]) if rows else None


# -- notifications and deliveries ------------------------------------------------------------------


def notification_payload(n: Notification) -> str:
    """The notification as JSON, as stored (what the incident page and a replay show)."""
    return json.dumps(asdict(n), default=str, separators=(",", ":"))


def save_notifications(backend: Backend, notifications: Sequence[Notification]) -> None:
    if not notifications:
        return
    table = pa.table(
        {
            "id": [n.id for n in notifications],
            "incident_id": [n.incident_id for n in notifications],
            "receiver": [n.receiver for n in notifications],
            "kind": [n.kind for n in notifications],
            "at": pa.array([n.at_s for n in notifications], _TS),
            "alert_ids": [[a.id for a in n.alerts] for n in notifications],
            "payload": [notification_payload(n) for n in notifications],
        }
    )
    backend.insert_arrow("notifications", table)


def _pairs(items: Iterable[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in items)


def notification_from_payload(text: str) -> Notification:
    """The Notification :func:`notification_payload` stored."""
    d = json.loads(text)
    alerts = tuple(
        Alert(
            **{
                **a,
                "group": _pairs(a["group"]),
                "labels": _pairs(a["labels"]),
                "annotations": _pairs(a["annotations"]),
                "pair": FiringPair(**a["pair"]) if a["pair"] else None,
            }
        )
        for a in d["alerts"]
    )
    found = d["attribution"]
    attribution = Attribution(
        contributors=tuple(Contributor(**{**c, "group": _pairs(c["group"])}) for c in found["contributors"]),
        examples=tuple(ExampleTrace(**{**e, "logs": tuple(e["logs"])}) for e in found["examples"]),
        bad=found["bad"],
        total=found["total"],
        omitted=found["omitted"],
    )
    return Notification(
        **{**d, "group_labels": _pairs(d["group_labels"]), "alerts": alerts, "attribution": attribution}
    )


def undelivered(backend: Backend, since_s: int, limit: int = 1000) -> list[Notification]:
    """Notifications decided since ``since_s`` without a successful delivery, oldest first."""
    rows = backend.query_arrow(sql.UNDELIVERED, {"since_s": since_s, "limit": limit}).to_pylist()
    return [notification_from_payload(r["payload"]) for r in rows]


def known_notifications(backend: Backend, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are already stored (decided by this or an earlier evaluator)."""
    if not ids:
        return set()
    rows = backend.query_arrow(sql.KNOWN_NOTIFICATIONS, {"ids": list(ids)}).to_pylist()
    return {r["id"] for r in rows}


def incident_notifications(backend: Backend, incident_id: str) -> list[dict[str, Any]]:
    """The notifications of an incident with their delivery attempts, in time order."""
    notes = backend.query_arrow(sql.INCIDENT_NOTIFICATIONS, {"id": incident_id}).to_pylist()
    attempts = backend.query_arrow(sql.INCIDENT_DELIVERIES, {"id": incident_id}).to_pylist()
    by_note: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_note.setdefault(a["notification_id"], []).append(
            {"attempt": a["attempt"], "at": a["at_ms"] / 1000, "ok": a["ok"], "error": a["error"] or None}
        )
    for n in notes:
        n["deliveries"] = by_note.get(n["id"], [])
        n["delivered"] = any(d["ok"] for d in n["deliveries"])
    return notes


def record_delivery(
    backend: Backend, notification: Notification, attempt: int, at_ms: int, ok: bool, error: str
) -> None:
    table = pa.table(
        {
            "notification_id": [notification.id],
            "incident_id": [notification.incident_id],
            "receiver": [notification.receiver],
            "attempt": pa.array([attempt], pa.uint16()),
            "at": pa.array([at_ms], _TS_MS),
            "ok": [ok],
            "error": [error],
        }
    )
    backend.insert_arrow("deliveries", table)


def delivered_ids(backend: Backend, ids: Sequence[str]) -> set[str]:
    """Which notifications of ``ids`` have a successful delivery."""
    if not ids:
        return set()
    rows = backend.query_arrow(sql.DELIVERED, {"ids": list(ids)}).to_pylist()
    return {r["notification_id"] for r in rows}


# -- silences and acknowledgements -----------------------------------------------------------------


def save_silence(backend: Backend, silence: Silence, updated_at_ms: int) -> None:
    table = pa.table(
        {
            "id": [silence.id],
            "matchers": [json.dumps([asdict(m) for m in silence.matchers])],
            "starts_at": pa.array([silence.starts_at_s], _TS),
            "ends_at": pa.array([silence.ends_at_s], _TS),
            "created_by": [silence.created_by],
            "comment": [silence.comment],
            "updated_at": pa.array([updated_at_ms], _TS_MS),
        }
    )
    backend.insert_arrow("silences", table)


def load_silences(backend: Backend, active_at_s: int | None = None) -> list[Silence]:
    """Every silence (newest version each), or only those active at ``active_at_s``."""
    out = [s for s, _ in silence_versions(backend)]
    if active_at_s is not None:
        out = [s for s in out if s.starts_at_s <= active_at_s < s.ends_at_s]
    return out


def silence_versions(backend: Backend) -> list[tuple[Silence, int]]:
    """Every silence (newest version each) with when that version was written (unix ms): an expiry
    writes a version at the moment it sets the end, which tells it from a silence that ran out."""
    rows = backend.query_arrow(sql.SILENCES).to_pylist()
    return [
        (
            Silence(
                r["id"],
                tuple(Matcher(**m) for m in json.loads(r["matchers"])),
                r["starts_at_s"],
                r["ends_at_s"],
                r["created_by"],
                r["comment"],
            ),
            r["updated_at_ms"],
        )
        for r in rows
    ]


def acknowledge(backend: Backend, incident_id: str, at_ms: int, by: str, comment: str) -> None:
    """Record an acknowledgement; every one is kept (migration 0013). The same acknowledgement
    written twice (a retried insert) is one: its id is a hash of what it says."""
    digest = hashlib.blake2b(
        json.dumps([incident_id, at_ms, by, comment]).encode(), digest_size=12
    ).hexdigest()
    table = pa.table(
        {
            "incident_id": [incident_id],
            "at": pa.array([at_ms], _TS_MS),
            "by": [by],
            "comment": [comment],
            "ack_id": [digest],
        }
    )
    backend.insert_arrow("incident_acks", table)


def _ack(r: dict[str, Any]) -> dict[str, Any]:
    return {"at": r["at_ms"] / 1000, "by": r["by"], "comment": r["comment"]}


def acknowledgements(backend: Backend) -> dict[str, dict[str, Any]]:
    """Acknowledged incidents by id: who and when, of the latest acknowledgement of each."""
    rows = backend.query_arrow(sql.ACKS).to_pylist()
    return {r["incident_id"]: _ack(r) for r in rows}


def incident_acknowledgements(backend: Backend, incident_id: str) -> list[dict[str, Any]]:
    """Every acknowledgement of an incident (at, by, comment), oldest first."""
    return [_ack(r) for r in backend.query_arrow(sql.INCIDENT_ACKS, {"id": incident_id}).to_pylist()]


# -- evaluator leases --------------------------------------------------------------------------------


def heartbeat(backend: Backend, evaluator_id: str, started_at_ms: int, now_ms: int) -> None:
    table = pa.table(
        {
            "evaluator_id": [evaluator_id],
            "started_at": pa.array([started_at_ms], _TS_MS),
            "heartbeat_at": pa.array([now_ms], _TS_MS),
        }
    )
    backend.insert_arrow("evaluator_leases", table)


def leader(backend: Backend, now_ms: int, ttl_ms: int) -> str | None:
    """The evaluator that decides alerts: of those with a heartbeat in the last ``ttl_ms``, the one
    that started first (ties: the smallest id)."""
    rows = backend.query_arrow(sql.LEADER, {"since_ms": now_ms - ttl_ms}).to_pylist()
    return rows[0]["evaluator_id"] if rows else None


def release_others(backend: Backend, evaluator_id: str) -> None:
    """Remove every lease but ``evaluator_id``'s: what an exclusive evaluator (the only one that can
    run on this store) does when it starts, whoever held the lease."""
    backend.command(sql.RELEASE_OTHER_LEASES, {"id": evaluator_id})


def release(backend: Backend, evaluator_id: str) -> None:
    """Give up ``evaluator_id``'s lease (a graceful stop): the next oldest live evaluator, or one
    started later, leads at its next evaluation instead of after the lease's time to live."""
    backend.command(sql.RELEASE_LEASE, {"id": evaluator_id})
