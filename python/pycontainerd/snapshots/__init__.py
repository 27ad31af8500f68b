"""Snapshotters: containerd's ``snapshots.Snapshotter`` as a Protocol, and its values.

A snapshotter keeps file system snapshots in parent chains. ``prepare`` makes an active
snapshot (writable) on a committed parent, ``view`` a read-only one, ``commit`` turns an active
snapshot into a committed one under a new name. Every call that gives access returns
:class:`~pycontainerd.mount.Mount` values; nothing here mounts them (that is ``mount/``'s job).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

from pycontainerd import filters
from pycontainerd.mount import Mount

__all__ = [
    "DEFAULT_SNAPSHOTTER",
    "INHERITED_LABEL_PREFIX",
    "Info",
    "Kind",
    "Snapshotter",
    "Usage",
    "WalkFunc",
    "adapt_info",
]

#: The snapshotter used when none is named.
DEFAULT_SNAPSHOTTER: Final = "overlayfs"
#: Labels with this prefix are passed down to the backend snapshotter (containerd's rule).
INHERITED_LABEL_PREFIX: Final = "containerd.io/snapshot/"


class Kind(StrEnum):
    """A snapshot's kind, as containerd prints it."""

    UNKNOWN = "Unknown"
    VIEW = "View"
    ACTIVE = "Active"
    COMMITTED = "Committed"


@dataclass(frozen=True)
class Info:
    """containerd's ``snapshots.Info``."""

    name: str
    kind: Kind
    parent: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0  # nanoseconds since the epoch
    updated_at: int = 0


@dataclass(frozen=True)
class Usage:
    """Bytes and inodes a snapshot uses on disk (its own layer, not its parents')."""

    size: int = 0
    inodes: int = 0


WalkFunc = Callable[[Info], None]


@runtime_checkable
class Snapshotter(Protocol):
    """containerd's ``snapshots.Snapshotter`` (plus ``cleanup``, its ``Cleaner``)."""

    def stat(self, key: str) -> Info:
        """The info of the snapshot ``key``; NotFound if there is none."""
        ...

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Change labels: ``labels`` or ``labels.KEY`` paths, or all labels with none."""
        ...

    def usage(self, key: str) -> Usage:
        """The disk space and inodes the snapshot ``key`` uses (not its parents)."""
        ...

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or a view."""
        ...

    def prepare(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """An active (writable) snapshot ``key`` on top of the committed ``parent``;
        its mounts."""
        ...

    def view(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """A read-only snapshot ``key`` of the committed ``parent``; its mounts."""
        ...

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Make the active snapshot ``key`` the committed snapshot ``name``."""
        ...

    def remove(self, key: str) -> None:
        """Remove the snapshot ``key``; FailedPrecondition while it has children."""
        ...

    def walk(self, fn: WalkFunc, *filters: str) -> None:
        """Call ``fn`` with the info of each snapshot matching any of ``filters``."""
        ...

    def cleanup(self) -> None:
        """Remove on-disk data no snapshot refers to any more."""
        ...

    def close(self) -> None:
        """Release the snapshotter's resources."""
        ...


def adapt_info(info: Info) -> filters.Adaptor:
    """Filter fields as containerd's snapshot adaptor: kind, name, parent, labels.KEY."""

    def field_(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        head = path[0]
        if head == "kind":
            return info.kind.value.lower(), True
        if head == "name":
            return info.name, bool(info.name)
        if head == "parent":
            return info.parent, bool(info.parent)
        if head == "labels":
            return filters.check_map(path[1:], info.labels)
        return "", False

    return filters.AdaptorFunc(field_)
