"""Label matchers in Alertmanager's syntax, and the matching shared by routes, inhibition and silences.

A matcher is ``label op value`` with ``op`` one of ``=``, ``!=``, ``=~``, ``!~``: ``severity = page``,
``service =~ "pay.*"``. Values may be quoted (``"..."`` with ``\\"``, ``\\\\`` and ``\\n`` escapes) or
bare; a bare value runs to the next ``,`` or ``}``. Several matchers may be written in one text,
comma-separated and optionally in braces (``{severity="page", slo=~"checkout.*"}``), as
Alertmanager's ``matchers`` accept. Regexes are fully anchored (``pay.*`` does not match
``prepay``), and a label an alert lacks has the empty value, so ``team = ""`` matches alerts without
a team and ``team != web`` matches them too (Alertmanager's semantics).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import cast, get_args

from alerts.model import SLO_INSTANCE_LABEL, Alert, Matcher, MatchOp, Silence, slo_instance

#: Label names: attribute keys as the SLO spec accepts them in group_by (``http.route``).
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
#: Two-character operators first, so ``=~`` is not read as ``=`` and a value starting with ``~``.
_OPS: tuple[str, ...] = ("=~", "!~", "!=", "=")
assert set(_OPS) == set(get_args(MatchOp))
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


class MatcherError(ValueError):
    """A matcher text that cannot be parsed; the message says what is wrong and shows an example."""


def parse_matchers(text: str) -> list[Matcher]:
    """Every matcher of ``text``: one, or several comma-separated, optionally inside ``{...}``."""
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise MatcherError(f"{text!r} opens '{{' but does not close it")
        body = body[1:-1]
    out: list[Matcher] = []
    pos = 0
    while True:
        pos = _skip_space(body, pos)
        if pos == len(body):
            break
        matcher, pos = _parse_one(text, body, pos)
        out.append(matcher)
        pos = _skip_space(body, pos)
        if pos < len(body):
            if body[pos] != ",":
                raise MatcherError(f"{text!r}: expected ',' between matchers at {body[pos:]!r}")
            pos += 1
    if not out:
        raise MatcherError(f"{text!r} holds no matcher (write one like 'severity = page')")
    return out


def parse_matcher(text: str) -> Matcher:
    """Exactly one matcher, e.g. ``service =~ "pay.*"``."""
    found = parse_matchers(text)
    if len(found) != 1:
        raise MatcherError(f"{text!r} holds {len(found)} matchers, expected one")
    return found[0]


def _skip_space(body: str, pos: int) -> int:
    while pos < len(body) and body[pos].isspace():
        pos += 1
    return pos


def _parse_one(text: str, body: str, pos: int) -> tuple[Matcher, int]:
    name = _LABEL.match(body, pos)
    if name is None:
        raise MatcherError(
            f"{text!r} is not a matcher like 'severity = page' or 'service =~ \"pay.*\"' "
            "(a label name, then =, !=, =~ or !~, then a value)"
        )
    pos = _skip_space(body, name.end())
    op = next((o for o in _OPS if body.startswith(o, pos)), None)
    if op is None:
        raise MatcherError(f"{text!r}: expected =, !=, =~ or !~ after label {name.group()!r}")
    pos = _skip_space(body, pos + len(op))
    if pos < len(body) and body[pos] == '"':
        value, pos = _quoted(text, body, pos)
    else:
        end = pos
        while end < len(body) and body[end] not in ',}{"':
            end += 1
        if end < len(body) and body[end] in '{}"':
            raise MatcherError(f"{text!r}: quote a value holding {body[end]!r}")
        value, pos = body[pos:end].strip(), end
    matcher = Matcher(name.group(), cast(MatchOp, op), value)
    if op in ("=~", "!~"):
        try:
            re.compile(value)  # unanchored first, so an error's position is one in what was written
            _regex(value)
        except re.error as exc:
            raise MatcherError(f"{text!r}: {value!r} is not a valid regex ({exc})") from None
    return matcher, pos


def _quoted(text: str, body: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    pos += 1
    while pos < len(body):
        char = body[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            escaped = body[pos + 1 : pos + 2]
            if escaped not in _ESCAPES:
                raise MatcherError(f"{text!r}: unknown escape '\\{escaped}' (use \\\", \\\\ or \\n)")
            out.append(_ESCAPES[escaped])
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise MatcherError(f"{text!r}: unterminated quoted value")


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    # Anchored as Alertmanager (and Prometheus) anchor them: the whole value must match.
    return re.compile(f"^(?:{pattern})$", re.DOTALL)


def format_matcher(matcher: Matcher) -> str:
    """The matcher as text that :func:`parse_matcher` reads back (``service=~"pay.*"``)."""
    value = matcher.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{matcher.label}{matcher.op}"{value}"'


def matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy ``matcher``; a missing label has the empty value."""
    value = labels.get(matcher.label, "")
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    found = _regex(matcher.value).match(value) is not None
    return found if matcher.op == "=~" else not found


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every matcher (true for no matchers)."""
    return all(matches(m, labels) for m in matchers)


def alert_labels(alert: Alert) -> dict[str, str]:
    """The labels the policy matches an alert on: its own, plus ``slo_instance`` if it lacks one."""
    labels = alert.label_map
    labels.setdefault(SLO_INSTANCE_LABEL, slo_instance(alert.slo, alert.group))
    return labels


def is_active(silence: Silence, at_s: int) -> bool:
    """A silence mutes from ``starts_at_s`` (inclusive) until ``ends_at_s`` (exclusive)."""
    return silence.starts_at_s <= at_s < silence.ends_at_s


def silenced_by(labels: Mapping[str, str], silences: Sequence[Silence], at_s: int) -> list[str]:
    """The ids of the silences active at ``at_s`` whose matchers all match ``labels``.

    A silence without matchers silences nothing (Alertmanager refuses such silences; muting every
    alert by accident is worse than a no-op)."""
    return [s.id for s in silences if s.matchers and is_active(s, at_s) and matches_all(s.matchers, labels)]


def silence_state(silence: Silence, at_s: int) -> str:
    """Alertmanager's silence states: ``pending`` (starts later), ``active`` or ``expired``."""
    if at_s < silence.starts_at_s:
        return "pending"
    return "active" if at_s < silence.ends_at_s else "expired"


def expire(silence: Silence, at_s: int) -> Silence:
    """``silence`` ended at ``at_s`` (Alertmanager's expire): an active one ends now, a pending one
    never starts (it starts and ends now). One already ended is returned unchanged, so expiring it
    again does not move its end."""
    if silence.ends_at_s <= at_s:
        return silence
    return replace(silence, starts_at_s=min(silence.starts_at_s, at_s), ends_at_s=at_s)
