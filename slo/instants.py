"""Instants as people type them: ``now``, ``now-2h``, RFC 3339 (down to nanoseconds), unix numbers.

One parser for the CLI (numbers are unix seconds) and for the JSON API and web pages (numbers are
unix milliseconds), so that both read a time the same way. It lives here, not in ``sloscope/``,
because ``ui/`` may not import ``sloscope/``, and ``slo/`` already holds the duration grammar that
``now-DURATION`` uses.

Only integer arithmetic: a float has 53 bits of mantissa and today's unix nanoseconds need 61, so
going through a float moves a time by up to ±64 ns and takes an item lying exactly on a range's edge
out of the range.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from slo.model import parse_duration

#: Units a bare number may be read in, as nanoseconds per unit.
UNIX_SECONDS = 10**9
UNIX_MILLISECONDS = 10**6
_UNIT_NAMES = {UNIX_SECONDS: "unix seconds", UNIX_MILLISECONDS: "unix milliseconds"}
#: More digits than any time has; also keeps int() far from Python's 4300-digit limit.
MAX_DIGITS = 40

_RELATIVE = re.compile(r"^now(?:-(\w+))?$")
_NUMBER = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")
# The fraction of seconds is read here: datetime keeps microseconds only.
_FRACTION = re.compile(r"^(.*[T ]\d{2}:\d{2}:\d{2})[.,](\d+)(.*)$", re.IGNORECASE | re.DOTALL)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_instant_ns(text: str, name: str, now_ns: int, unit_ns: int = UNIX_MILLISECONDS) -> int:
    """``text`` as unix nanoseconds: ``now``, ``now-DURATION`` (``30s``, ``15m``, ``2h``, ``1d``,
    ``1w``; before ``now_ns``), RFC 3339 with a zone and any fraction of a second (digits past the
    ninth are dropped), or a whole or decimal number of ``unit_ns`` (rounded down to a nanosecond).

    ValueError starts with ``name``. No range is checked: callers know what their store can hold.
    """
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        back = relative.group(1)
        try:
            return now_ns - (parse_duration(back) * 10**9 if back else 0)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    number = _NUMBER.match(value)
    if number:
        sign, whole, fraction = number.group(1), number.group(2), number.group(3) or ""
        if len(whole) + len(fraction) > MAX_DIGITS:
            raise ValueError(f"{name}: {text[:40]!r}... is out of range")
        # Floor division: a fraction of a nanosecond rounds down, also before 1970.
        return (-1 if sign else 1) * int(whole + fraction) * unit_ns // 10 ** len(fraction)
    fraction_ns = 0
    split = _FRACTION.match(value)
    if split:
        value = split.group(1) + split.group(3)
        fraction_ns = int(split.group(2)[:9].ljust(9, "0"))
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        unit = _UNIT_NAMES.get(unit_ns, "a number")
        raise ValueError(f"{name}: {text!r} is not now, now-DURATION, RFC 3339 or {unit}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name}: {text!r} has no time zone (add Z or an offset)")
    return (parsed - _EPOCH) // timedelta(microseconds=1) * 1000 + fraction_ns
