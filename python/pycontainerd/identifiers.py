"""containerd's identifier rules, for namespaces, containers, leases and snapshot keys.

An identifier is alphanumeric runs joined by single ``.``, ``_`` or ``-``: it starts and ends
with a letter or digit, is at most 76 bytes long, and is therefore always a safe path
component (no ``/``, no ``..``, never empty).
"""

from __future__ import annotations

import json
import re

from pycontainerd.errdefs import InvalidArgument

__all__ = ["MAX_LENGTH", "PATTERN", "is_valid", "validate"]

#: The longest identifier, in bytes of UTF-8.
MAX_LENGTH = 76

#: The pattern an identifier matches, spelled as containerd prints it.
PATTERN = r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"

_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def validate(s: str) -> None:
    """Raise :class:`InvalidArgument` unless ``s`` is a valid identifier."""
    if not s:
        raise InvalidArgument("identifier must not be empty")
    if len(s.encode("utf-8", "surrogatepass")) > MAX_LENGTH:
        raise InvalidArgument(
            f"identifier {_quote(s)} greater than maximum length ({MAX_LENGTH} characters)"
        )
    if _IDENTIFIER_RE.fullmatch(s) is None:
        raise InvalidArgument(f"identifier {_quote(s)} must match {PATTERN}")


def is_valid(s: str) -> bool:
    """Whether ``s`` is a valid identifier."""
    return len(s) <= MAX_LENGTH and _IDENTIFIER_RE.fullmatch(s) is not None


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)
