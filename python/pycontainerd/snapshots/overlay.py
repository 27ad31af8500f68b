"""The ``overlayfs`` snapshotter: each snapshot a directory, stacked by overlay mounts.

``<root>/snapshots/<id>/fs`` holds a snapshot's own layer, ``work`` the overlay work
directory of an active one. Mounts, as containerd's:

- no parent: a bind mount of ``fs`` (``rw`` active, ``ro`` view);
- a view of one parent: a read-only bind of the parent's ``fs``;
- otherwise ``overlay`` with ``lowerdir=`` the parents' ``fs``, nearest first, and for an
  active snapshot ``upperdir=`` and ``workdir=``.

The kernel limits mount options to a page (about 4096 bytes), so a long chain's ``lowerdir``
overflows it; ``mount/`` mounts such an overlay a layer at a time (``lowerdir+``) instead.

A snapshot prepared without a parent can be committed onto one (:meth:`commit_onto`): each
layer's directory holds only its own changes, so layers unpack in parallel.
"""

from __future__ import annotations

from pathlib import Path

from pycontainerd.mount import Mount
from pycontainerd.snapshots import Kind
from pycontainerd.snapshots.local import LocalSnapshotter
from pycontainerd.snapshots.storage import Record

__all__ = ["OverlaySnapshotter", "supported"]


def supported() -> bool:
    """Whether the kernel knows the overlay file system (``/proc/filesystems``)."""
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    return any(line.split()[-1:] == ["overlay"] for line in text.splitlines())


class OverlaySnapshotter(LocalSnapshotter):
    """containerd's ``snapshots/overlay``."""

    can_rebase = True

    def _populate(self, rec: Record, path: Path) -> None:
        (path / "fs").mkdir(mode=0o755)
        if rec.info.kind == Kind.ACTIVE:
            (path / "work").mkdir(mode=0o711)

    def _mounts_of(self, rec: Record) -> list[Mount]:
        active = rec.info.kind == Kind.ACTIVE
        if not rec.parent_ids:
            return [
                Mount(
                    type="bind",
                    source=str(self._fs(rec.id)),
                    options=("rw" if active else "ro", "rbind"),
                )
            ]
        if not active and len(rec.parent_ids) == 1:
            return [
                Mount(type="bind", source=str(self._fs(rec.parent_ids[0])), options=("ro", "rbind"))
            ]
        options: list[str] = []
        if active:
            options += [
                f"workdir={self._dir(rec.id) / 'work'}",
                f"upperdir={self._fs(rec.id)}",
            ]
        options.append("lowerdir=" + ":".join(str(self._fs(i)) for i in rec.parent_ids))
        return [Mount(type="overlay", source="overlay", options=tuple(options))]
