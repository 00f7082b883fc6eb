"""Links in SLO annotations (``runbook_url``, ``dashboard_url``): absolute or relative to the server.

A relative link (``/runbooks/payments`` or ``runbooks/payments.md``) names a page of the server
itself, so specs need not pin its address: the UI links it from the server's root, and
notifications carry it below the server's external URL (``--external-url``), since receivers are
elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import urljoin

from alerts.model import Alert
from slo.spec import URL_ANNOTATIONS, is_http_url, is_server_path

#: The annotations that are links, and may be relative.
LINK_ANNOTATIONS = URL_ANNOTATIONS


def server_href(value: str) -> str | None:
    """The link for a page of this server's UI: an absolute URL as is, a relative one from the
    server's root (``runbooks/x`` -> ``/runbooks/x``, whatever page shows it); None for text."""
    value = value.strip()
    if is_http_url(value):
        return value
    return urljoin("/", value) if is_server_path(value) else None


def absolute_link(value: str, external_url: str) -> str:
    """``value`` made absolute when it is a path on the server: the external URL is the server's
    root, so ``/runbooks/x`` and ``runbooks/x`` both become ``{external_url}/runbooks/x`` (also
    behind a proxy serving sloscope below a path), as the UI links them. Anything else unchanged,
    also without an external URL."""
    stripped = value.strip()
    if external_url and is_server_path(stripped):
        return external_url.rstrip("/") + urljoin("/", stripped)
    return value


def with_absolute_links(alert: Alert, external_url: str) -> Alert:
    """``alert`` with its link annotations absolute, as receivers need them."""
    if not external_url or not any(k in LINK_ANNOTATIONS for k, _ in alert.annotations):
        return alert
    annotations = tuple(
        (k, absolute_link(v, external_url) if k in LINK_ANNOTATIONS else v) for k, v in alert.annotations
    )
    return replace(alert, annotations=annotations)


def resolve_all(alerts: Iterable[Alert], external_url: str) -> tuple[Alert, ...]:
    """:func:`with_absolute_links` of each alert."""
    return tuple(with_absolute_links(a, external_url) for a in alerts)
