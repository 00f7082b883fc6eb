"""Tenants: every data row carries one, and a read inside ``tenant_scope`` sees only its tenant's rows.

The tenant of a row is set by the collector from the ingest token that sent it (never from the
payload) and stored in the ``tenant`` column of each data table (migration 0010). ``""`` is the
default tenant: data sent without a tenant-pinned token.

Scoping is done by the engine, not by each query: inside ``tenant_scope("acme")`` every SELECT the
backends run carries ClickHouse's ``additional_table_filters`` setting with ``tenant = 'acme'`` for
each data table, so that a query written without tenants in mind (a new API, a Jaeger endpoint, a
subquery on ``spans``) cannot read another tenant's rows. The scope is a ContextVar: it follows a
request into the threads Starlette runs handlers in, and ends with the ``with`` block.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

from store.backend import sql_string

#: Every table holding tenants' data; each has a ``tenant`` column (migration 0010).
TENANT_TABLES = (
    "spans",
    "logs",
    "metrics_gauge",
    "metrics_sum",
    "metrics_histogram",
    "metrics_exponential_histogram",
    "metrics_summary",
    "red_1m",
    "service_edges_1m",
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A statement ending in its own SETTINGS clause (no parenthesis after it): the filter joins that clause.
_TRAILING_SETTINGS = re.compile(r"\bSETTINGS\b[^()]*\Z", re.I)

#: None: no scope (every tenant). A string: only that tenant's rows.
_scope: ContextVar[str | None] = ContextVar("sloscope_tenant_scope", default=None)


def check_tenant(name: str) -> str:
    """``name`` if it can name a tenant (1-64 of letters, digits, ``_ . -``, not starting with a
    punctuation mark); ValueError saying why otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a tenant name: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class ScopeError(PermissionError):
    """A read asked for another tenant's data than the scope it runs in allows."""


@contextlib.contextmanager
def tenant_scope(tenant: str | None) -> Iterator[None]:
    """Within the block, reads see only ``tenant``'s rows (``""``: the default tenant; None: all).

    A scope only ever narrows: inside ``tenant_scope("acme")``, ``tenant_scope(None)`` stays on
    acme, and another tenant raises ScopeError, so that no inner code path can widen a user's view.
    """
    if tenant:
        check_tenant(tenant)
    outer = _scope.get()
    if outer is not None:
        if tenant is not None and tenant != outer:
            raise ScopeError(f"tenant {tenant!r} is out of scope here (scoped to {outer!r})")
        tenant = outer
    token = _scope.set(tenant)
    try:
        yield
    finally:
        _scope.reset(token)


def current_tenant() -> str | None:
    """The tenant reads are scoped to here, or None when they see every tenant."""
    return _scope.get()


def scoped(sql: str) -> str:
    """``sql`` restricted to the current tenant's rows (unchanged outside a scope)."""
    tenant = _scope.get()
    if tenant is None:
        return sql
    condition = f"tenant = {sql_string(tenant)}"
    filters = "{" + ", ".join(f"{sql_string(t)}: {sql_string(condition)}" for t in TENANT_TABLES) + "}"
    setting = f"additional_table_filters = {filters}"
    body = sql.rstrip().rstrip(";")
    if _TRAILING_SETTINGS.search(body):
        return f"{body}, {setting}"
    return f"{body}\nSETTINGS {setting}"
