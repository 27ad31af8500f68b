"""Leases: named holds on resources, so garbage collection spares work in progress.

containerd's ``leases`` package. A :class:`Lease` lives in a namespace, has labels and holds
:class:`Resource` values: ``content`` (a digest), ``ingests`` (an ingest ref) and
``snapshots/<snapshotter>`` (a snapshot key). Objects written under a lease (a call carrying
the ``containerd-lease`` header) are added to it as they are made. While the lease exists,
garbage collection keeps what it holds, and what that references; once it is deleted, or its
``containerd.io/gc.expire`` time has passed, they are collected unless something else still
refers to them. ``containerd.io/gc.flat`` makes the lease hold only the objects it names, not
what their ``containerd.io/gc.ref.*`` labels reference.
"""

from __future__ import annotations

import base64
import builtins
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from pycontainerd import errdefs, filters
from pycontainerd.digest import validate_digest

__all__ = [
    "LABEL_GC_EXPIRE",
    "LABEL_GC_FLAT",
    "LEASE_HEADER",
    "MAX_LEASE_ID_LENGTH",
    "RESOURCE_CONTENT",
    "RESOURCE_INGESTS",
    "RESOURCE_SNAPSHOTS",
    "Lease",
    "Manager",
    "Resource",
    "adapt_lease",
    "expiration_labels",
    "format_rfc3339",
    "parse_resource",
    "parse_rfc3339",
    "random_id",
    "validate_id",
]

#: gRPC metadata key naming the lease of a call.
LEASE_HEADER: Final = "containerd-lease"
#: RFC 3339 time after which the lease no longer holds anything (and is collected).
LABEL_GC_EXPIRE: Final = "containerd.io/gc.expire"
#: Present: the lease holds only its own resources, not what their labels reference.
LABEL_GC_FLAT: Final = "containerd.io/gc.flat"

RESOURCE_CONTENT: Final = "content"
RESOURCE_INGESTS: Final = "ingests"
#: Prefix of snapshot resource types: ``snapshots/<snapshotter>``.
RESOURCE_SNAPSHOTS: Final = "snapshots"

#: The longest lease id taken, in bytes (a path, at most, as ``ctr images mount`` uses).
MAX_LEASE_ID_LENGTH: Final = 4096


@dataclass(frozen=True)
class Lease:
    """A lease (containerd's ``leases.Lease``); ``created_at`` is nanoseconds since the epoch."""

    id: str
    created_at: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def expires_at(self) -> int | None:
        """When the lease expires (nanoseconds), from its ``containerd.io/gc.expire`` label."""
        value = self.labels.get(LABEL_GC_EXPIRE)
        if value is None:
            return None
        try:
            return parse_rfc3339(value)
        except errdefs.InvalidArgument:
            return None


@dataclass(frozen=True)
class Resource:
    """One object a lease holds: ``type`` is ``content``, ``ingests`` or ``snapshots/<name>``."""

    id: str
    type: str


class Manager(Protocol):
    """containerd's ``leases.Manager``, in one namespace."""

    def create(self, id: str = "", /, *, labels: Mapping[str, str] | None = None) -> Lease:
        """Create a lease (a random id when ``id`` is empty)."""
        ...

    def delete(self, id: str, /, *, sync: bool = False) -> None:
        """Delete a lease; with ``sync``, collect garbage before returning."""
        ...

    def list(self, *filters: str) -> builtins.list[Lease]:
        """Leases matching any of ``filters`` (``id==x``, ``labels."k"==v``); all without."""
        ...

    def add_resource(self, id: str, resource: Resource, /) -> None:
        """Make the lease ``id`` hold ``resource`` too."""
        ...

    def delete_resource(self, id: str, resource: Resource, /) -> None:
        """Stop the lease ``id`` holding ``resource``."""
        ...

    def list_resources(self, id: str, /) -> builtins.list[Resource]:
        """The resources the lease ``id`` holds."""
        ...


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def validate_id(lease_id: str) -> None:
    """Refuse an id that is empty, longer than :data:`MAX_LEASE_ID_LENGTH` bytes, or holds a
    NUL or a control character.

    containerd 1.6 takes any id (``ctr images mount`` names its lease by the mount point's
    path); ids are keys in the database here, never paths, so any printable text will do.
    """
    if not lease_id:
        raise errdefs.InvalidArgument("lease id must not be empty")
    if len(lease_id.encode("utf-8", "surrogatepass")) > MAX_LEASE_ID_LENGTH:
        raise errdefs.InvalidArgument(
            f"lease id {_quote(lease_id[:40])}... greater than maximum length "
            f"({MAX_LEASE_ID_LENGTH} bytes)"
        )
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in lease_id):
        raise errdefs.InvalidArgument(f"lease id {_quote(lease_id)} holds a control character")
    try:
        lease_id.encode("utf-8")
    except UnicodeEncodeError:
        raise errdefs.InvalidArgument(f"lease id {_quote(lease_id)} is not valid UTF-8") from None


def random_id() -> str:
    """A fresh id as containerd's ``leases.WithRandomID``: ``<nanoseconds>-<base64>``."""
    nanos = time.time_ns() % 1_000_000_000
    return f"{nanos}-{base64.urlsafe_b64encode(secrets.token_bytes(3)).decode()}"


# RFC 3339 as Go's time.Parse(time.RFC3339, ...) reads it: a "T", seconds, optional fraction,
# "Z" or a numeric offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(value: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (``2024-05-01T12:00:00+02:00``)."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {_quote(value)}")
    year, month, day, hour, minute, sec = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    try:
        if m.group(8):
            offset = 0
        else:
            offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
            if m.group(9) == "-":
                offset = -offset
            if int(m.group(10)) > 23 or int(m.group(11)) > 59:
                raise ValueError("offset out of range")
        t = datetime(year, month, day, hour, minute, sec, tzinfo=UTC)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid RFC 3339 time {_quote(value)}") from None
    seconds = int(t.timestamp()) - offset
    return seconds * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def format_rfc3339(ns: int, *, local: bool = False) -> str:
    """A time as Go's ``Format(time.RFC3339)``: seconds, ``Z`` or the local offset."""
    t = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    if local:
        t = t.astimezone()
    text = t.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def expiration_labels(expire: float | timedelta) -> dict[str, str]:
    """The label of containerd's ``leases.WithExpiration``: expire ``expire`` from now."""
    seconds = expire.total_seconds() if isinstance(expire, timedelta) else float(expire)
    when = time.time_ns() + int(seconds * 1e9)
    return {LABEL_GC_EXPIRE: format_rfc3339(when)}


def parse_resource(resource: Resource) -> tuple[str, str]:
    """The stored type and id of a resource; containerd's errors for the unsupported ones.

    A content id is checked as a digest; a snapshot type must name its snapshotter.
    """
    rtype, rid = resource.type, resource.id
    head, _, rest = rtype.partition("/")
    if head in (RESOURCE_CONTENT, RESOURCE_INGESTS):
        if rest or "/" in rtype:
            raise errdefs.InvalidArgument(f"invalid resource type {rtype}")
        if head == RESOURCE_CONTENT:
            try:
                validate_digest(rid)
            except errdefs.InvalidArgument as exc:
                raise errdefs.InvalidArgument(
                    f"invalid content resource id {rid}: {exc.message}"
                ) from None
        elif not rid:
            raise errdefs.InvalidArgument("ingest resource id must not be empty")
    elif head == RESOURCE_SNAPSHOTS:
        if not rest or "/" in rest:
            raise errdefs.InvalidArgument(f"invalid snapshot resource type {rtype}")
        if not rid:
            raise errdefs.InvalidArgument("snapshot resource id must not be empty")
    else:
        raise errdefs.NotImplemented(f"resource type {rtype} not supported yet")
    return rtype, rid


def adapt_lease(lease: Lease) -> filters.Adaptor:
    """Filter fields of a lease: ``id`` and ``labels.KEY``, as containerd's ``adaptLease``."""

    def field_(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "id":
            return lease.id, bool(lease.id)
        if path[0] == "labels":
            return filters.check_map(path[1:], lease.labels)
        return "", False

    return filters.AdaptorFunc(field_)
