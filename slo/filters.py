"""The one filter syntax of SLO specs: ``key op value`` text, parsed into :class:`slo.model.Filter`.

Every filter in a spec (span, log and metric filters, span ``bad.status`` expressions, in the native
format and inside OpenSLO's ``metricSource.spec``) goes through :func:`parse_filter`, so the syntax
is the same everywhere::

    http.route = /checkout                  text equality (the rest of the line, trimmed)
    http.route != "/health"                 quotes keep spaces or a leading quote character
    http.response.status_code >= 500        > >= < <= compare numbers
    deployment.environment in (prod, staging)
    rpc.grpc.status_code not in (0, 5)

A mapping ``{key: value}`` in a spec is shorthand for ``key = value`` (:func:`equality`).
"""

from __future__ import annotations

import math
import re
from typing import cast

from slo.model import Filter, FilterOp

#: OpenTelemetry attribute keys: dotted names; ``-`` and ``/`` occur in Kubernetes-style keys.
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")

_EXPRESSION = re.compile(
    r"""^\s*(?P<key>[^\s=!<>()]+)
    (?:\s*(?P<cmp>==|!=|>=|<=|=|>|<)|\s+(?P<set>not\s+in|in)(?=[\s(]))
    \s*(?P<value>.*?)\s*$""",
    re.VERBOSE,
)
_ITEM = re.compile(r"""\s*("[^"]*"|'[^']*'|[^,]*?)\s*(?:,|$)""")
_NUMERIC_OPS = (">", ">=", "<", "<=")


class FilterError(ValueError):
    """A filter that does not parse; the message says what is wrong, not where (the caller knows)."""


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def check_key(key: str) -> str:
    """``key`` if it is a valid attribute key, else FilterError."""
    if not KEY.match(key):
        raise FilterError(f"{key!r} is not an attribute key (letters, digits, '_', '.', '-', '/')")
    return key


def parse_filter(text: str) -> Filter:
    """Parse ``key op value`` (see the module docstring) into a Filter."""
    match = _EXPRESSION.match(text)
    if not match:
        raise FilterError(
            f"{text!r} is not a filter like 'http.route = /checkout', 'http.response.status_code >= 500' "
            "or 'deployment.environment in (prod, staging)'"
        )
    key = check_key(match.group("key"))
    value = match.group("value")
    if match.group("set"):
        op = "not in" if match.group("set").startswith("not") else "in"
        if not (value.startswith("(") and value.endswith(")")):
            raise FilterError(f"{op!r} takes a parenthesised list, e.g. '{key} {op} (a, b)'")
        inner = value[1:-1]
        items = [m.group(1) for m in _ITEM.finditer(inner) if m.end() > m.start()]
        if not inner.strip() or any(not item for item in items):
            raise FilterError(f"{op!r} list {value!r} has an empty item")
        return Filter(key, cast(FilterOp, op), tuple(_unquote(item) for item in items))
    op = match.group("cmp")
    if op == "==":
        raise FilterError(f"use '=' for equality, not '==' (in {text!r})")
    if op in _NUMERIC_OPS:
        try:
            number = float(value)
        except ValueError:
            raise FilterError(f"{op!r} compares numbers, {value!r} is not a number") from None
        if not math.isfinite(number):
            raise FilterError(f"{op!r} needs a finite number, got {value!r}")
        return Filter(key, cast(FilterOp, op), number)
    if not value:
        raise FilterError(f'missing value after {op!r} (write {key} {op} "" to match an empty value)')
    return Filter(key, cast(FilterOp, op), _unquote(value))


def equality(key: str, value: str) -> Filter:
    """The ``{key: value}`` shorthand: ``key = value``."""
    return Filter(check_key(key), "=", value)
