"""Content digests (``algorithm:encoded``) as OCI's go-digest checks them.

containerd knows ``sha256`` (the canonical one), ``sha384`` and ``sha512``; their encoded part
is lowercase hex of the hash's full length.
"""

from __future__ import annotations

import hashlib
import json
import re

from pycontainerd.errdefs import InvalidArgument

__all__ = [
    "ALGORITHMS",
    "CANONICAL",
    "from_bytes",
    "invalid_reason",
    "is_digest",
    "split_digest",
    "validate_digest",
]

#: The algorithm new digests use.
CANONICAL = "sha256"

#: Supported algorithms and the length of their hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX_RE = re.compile(r"[a-f0-9]+")


def invalid_reason(s: str) -> str | None:
    """Why ``s`` is not a valid digest, in go-digest's words; None when it is valid."""
    algorithm, sep, encoded = s.partition(":")
    if not sep or not algorithm or not encoded:
        return "invalid checksum digest format"
    length = ALGORITHMS.get(algorithm)
    if length is None:
        if _DIGEST_RE.fullmatch(s) is None:
            return "invalid checksum digest format"
        return "unsupported digest algorithm"
    if len(encoded.encode("utf-8", "surrogatepass")) != length:
        return "invalid checksum digest length"
    if _HEX_RE.fullmatch(encoded) is None:
        return "invalid checksum digest format"
    return None


def validate_digest(s: str) -> None:
    """Raise :class:`InvalidArgument` naming ``s`` and go-digest's reason unless it is valid."""
    reason = invalid_reason(s)
    if reason is not None:
        raise InvalidArgument(f"invalid digest {json.dumps(s, ensure_ascii=False)}: {reason}")


def is_digest(s: str) -> bool:
    """Whether ``s`` is a valid digest of a supported algorithm."""
    return invalid_reason(s) is None


def split_digest(s: str) -> tuple[str, str]:
    """Validate ``s`` and return its algorithm and encoded parts."""
    validate_digest(s)
    algorithm, _, encoded = s.partition(":")
    return algorithm, encoded


def from_bytes(data: bytes, algorithm: str = CANONICAL) -> str:
    """The digest of ``data``."""
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {json.dumps(algorithm)}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
