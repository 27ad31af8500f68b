"""Registry errors as :mod:`pycontainerd.errdefs` classes.

- 404 (manifest or blob unknown): :class:`~pycontainerd.errdefs.NotFound`.
- 401 or 403 once authentication was tried: :class:`Unauthorized`, an
  :class:`~pycontainerd.errdefs.Unknown`, as containerd's "authorization failed" reaches clients.
- 429, 5xx and connection errors once retries are spent: :class:`~pycontainerd.errdefs.Unavailable`.
- Bytes that do not match their digest or size: :class:`~pycontainerd.errdefs.FailedPrecondition`,
  what containerd's content store says of a bad commit.
- A schema 1 manifest, an unknown manifest type: :class:`~pycontainerd.errdefs.NotImplemented`.
- A request the registry calls invalid (400): :class:`~pycontainerd.errdefs.InvalidArgument`.
- Anything else: :class:`~pycontainerd.errdefs.Unknown`.
"""

from __future__ import annotations

import json

import urllib3

from pycontainerd import errdefs

__all__ = ["Unauthorized", "read_error_body", "registry_message", "status_error"]


class Unauthorized(errdefs.Unknown):
    """The registry refused our credentials, or wants some and we have none."""


def registry_message(body: bytes) -> str:
    """The ``errors`` of a registry's JSON error body as ``code: message`` text; empty if none."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for e in errors:
        if not isinstance(e, dict):
            continue
        code = str(e.get("code", "")).lower().replace("_", " ")
        message = str(e.get("message", ""))
        if code and message and message.lower() != code:
            parts.append(f"{code}: {message}")
        else:
            parts.append(code or message)
    return "; ".join(p for p in parts if p)


def read_error_body(resp: urllib3.BaseHTTPResponse, limit: int = 1 << 16) -> bytes:
    """Up to ``limit`` bytes of an error response's body; the response is released."""
    try:
        return resp.read(limit) or b""
    except (urllib3.exceptions.HTTPError, OSError):
        return b""
    finally:
        resp.release_conn()


def status_error(what: str, resp: urllib3.BaseHTTPResponse, url: str) -> errdefs.ContainerdError:
    """The error for an unexpected status; reads and releases the response."""
    status = resp.status
    reason = resp.reason or ""
    message = registry_message(read_error_body(resp))
    text = f"{what}: {url}: {status} {reason}".rstrip()
    if message:
        text += f": {message}"
    if status == 404:
        return errdefs.NotFound(text)
    if status in (401, 403):
        return Unauthorized(text)
    if status in (408, 429) or status >= 500:
        return errdefs.Unavailable(text)
    if status == 400:
        return errdefs.InvalidArgument(text)
    return errdefs.Unknown(text)
