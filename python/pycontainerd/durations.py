"""Go's durations as text: ``time.ParseDuration`` and ``time.Duration.String``.

containerd's config (``schedule_delay = "100ms"``) and ctr's flags (``--expires 24h``) spell
durations this way; values here are integer nanoseconds, as Go's.
"""

from __future__ import annotations

import re
from typing import Final

from pycontainerd.errdefs import InvalidArgument

__all__ = ["format_duration", "parse_duration"]

_UNITS: Final = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]+)")
_MAX: Final = (1 << 63) - 1


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration (``1h30m``, ``-1.5s``, ``300ms``, ``0``)."""
    orig = text
    sign = 1
    if text[:1] in ("-", "+"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise InvalidArgument(f'time: invalid duration "{orig}"')
    total = 0
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None or (not m.group(1) and not m.group(2)):
            raise InvalidArgument(f'time: invalid duration "{orig}"')
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        scale = _UNITS.get(unit)
        if scale is None:
            raise InvalidArgument(f'time: unknown unit "{unit}" in duration "{orig}"')
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > _MAX:
            raise InvalidArgument(f'time: invalid duration "{orig}"')
        pos = m.end()
    return sign * total


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1.5s``, ``250ms``, ``3m2.5s``, ``0s``."""
    if ns == 0:
        return "0s"
    sign, u = ("-", -ns) if ns < 0 else ("", ns)

    def frac(value: int, prec: int) -> tuple[str, int]:
        digits = ""
        printed = False
        for _ in range(prec):
            digit = value % 10
            printed = printed or digit != 0
            if printed:
                digits = str(digit) + digits
            value //= 10
        return ("." + digits if printed else ""), value

    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        prec, unit = (3, "\u00b5s") if u < 1_000_000 else (6, "ms")
        fraction, whole = frac(u, prec)
        return f"{sign}{whole}{fraction}{unit}"
    fraction, secs = frac(u, 9)
    out = f"{secs % 60}{fraction}s"
    minutes = secs // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours:
            out = f"{hours}h{out}"
    return sign + out
