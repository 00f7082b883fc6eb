"""What a tenant's user may see of the things that are not rows of the data tables: SLOs, alerts,
incidents and silences. (Rows of spans, logs, metrics and the roll-ups are filtered by the store
itself inside ``store.tenancy.tenant_scope``, which ``ui/auth.py`` sets for the request.)

* SLOs: those whose ``tenant`` is the user's (an SLO without a tenant reads every tenant's data:
  only users bound to no tenant see it).
* Alerts: those of the user's SLOs. Incidents: those whose SLOs are all the user's (an incident
  grouping alerts of several tenants' SLOs, possible with a custom ``group_by``, is shown to users of
  every tenant only).
* Silences: a tenant's silence is one with a matcher pinning ``slo`` to the tenant's SLOs
  (``slo = checkout``, or ``slo =~ "a|b"`` listing names literally, as the incident page's form
  writes them), so it can never mute another tenant's alerts. Tenant users see and expire only
  those, and may create only those.

Users without a tenant see everything. The SLO list is held by :class:`SloCatalog` so that an
admin's reload (``POST /api/v1/admin/slos/reload``) replaces it for every page at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.requests import HTTPConnection

from alerts.model import Matcher, Silence
from alerts.store import list_incidents
from slo.model import Slo
from store.backend import Backend
from ui.identity import principal


def slo_tenant(slo: Slo) -> str:
    """The SLO's tenant; "" for an SLO over every tenant's data, which only users bound to no
    tenant see (``slo.model.Slo.tenant``)."""
    return slo.tenant


class SloCatalog:
    """The loaded SLOs; replaced as a whole on reload (readers see the old or the new list)."""

    def __init__(self, slos: Iterable[Slo] = ()) -> None:
        self._slos: tuple[Slo, ...] = tuple(slos)

    @property
    def all(self) -> tuple[Slo, ...]:
        return self._slos

    def replace(self, slos: Iterable[Slo]) -> None:
        self._slos = tuple(slos)

    def visible(self, request: HTTPConnection) -> tuple[Slo, ...]:
        """The SLOs the request's user may see."""
        tenant = principal(request).tenant
        slos = self._slos
        if tenant is None:
            return slos
        return tuple(s for s in slos if slo_tenant(s) and slo_tenant(s) == tenant)

    def by_name(self, request: HTTPConnection) -> dict[str, Slo]:
        return {slo.name: slo for slo in self.visible(request)}


def restricted(request: HTTPConnection) -> bool:
    """Whether the request's user is bound to a tenant."""
    return principal(request).tenant is not None


def incident_visible(incident: dict[str, Any], names: set[str], request: HTTPConnection) -> bool:
    """Whether the user may see ``incident``; ``names``: the SLOs the user may see."""
    if not restricted(request):
        return True
    slos = incident.get("slos") or []
    return bool(slos) and all(name in names for name in slos)


def open_incidents(
    backend: Backend, catalog: SloCatalog, request: HTTPConnection, limit: int = 1000
) -> list[dict[str, Any]]:
    """The open incidents the user may see, newest first (every page's navigation counts them)."""
    names = set(catalog.by_name(request))
    return [i for i in list_incidents(backend, "open", limit) if incident_visible(i, names, request)]


_SPECIAL = frozenset(".^$*+?{}[]|()\\")


def _literal(part: str) -> str | None:
    """The text a regex without special characters matches (``acme-shop``, ``a\\.b``), else None."""
    out, i = [], 0
    while i < len(part):
        char = part[i]
        if char == "\\":
            if i + 1 == len(part) or part[i + 1].isalnum():  # \d, \w, ...: classes, not literals
                return None
            out.append(part[i + 1])
            i += 2
            continue
        if char in _SPECIAL:
            return None
        out.append(char)
        i += 1
    return "".join(out)


def _literal_names(pattern: str) -> list[str] | None:
    """The names of a regex that is an alternation of literals (``a|b\\.c``), else None."""
    names = [_literal(part) for part in re.split(r"(?<!\\)\|", pattern)]
    return None if any(n is None for n in names) else [n for n in names if n is not None]


def silence_slos(matchers: Sequence[Matcher]) -> set[str] | None:
    """The SLO names a silence is pinned to (by ``slo =`` or a literal ``slo =~``), or None when it
    is not pinned (it could match alerts of any SLO)."""
    pinned: set[str] | None = None
    for m in matchers:
        if m.label != "slo":
            continue
        if m.op == "=":
            names: set[str] | None = {m.value}
        elif m.op == "=~":
            literal = _literal_names(m.value)
            names = set(literal) if literal is not None else None
        else:
            names = None
        if names is not None:
            pinned = names if pinned is None else pinned & names
    return pinned


def silence_visible(silence: Silence, names: set[str], request: HTTPConnection) -> bool:
    """Whether the user may see (and expire) ``silence``."""
    if not restricted(request):
        return True
    pinned = silence_slos(silence.matchers)
    return pinned is not None and bool(pinned) and pinned <= names
