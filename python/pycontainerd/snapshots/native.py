"""The ``native`` snapshotter: every snapshot a full copy of its parent, bind-mounted.

Works on any file system; costs a copy (``cp -a`` alike) per prepare and view.
"""

from __future__ import annotations

from pathlib import Path

from pycontainerd.mount import Mount
from pycontainerd.snapshots import Kind
from pycontainerd.snapshots.local import LocalSnapshotter, copy_tree
from pycontainerd.snapshots.storage import Record

__all__ = ["NativeSnapshotter"]


class NativeSnapshotter(LocalSnapshotter):
    """containerd's ``snapshots/native``."""

    def _populate(self, rec: Record, path: Path) -> None:
        fs = path / "fs"
        fs.mkdir(mode=0o755)
        if rec.parent_ids:
            copy_tree(self._fs(rec.parent_ids[0]), fs)

    def _mounts_of(self, rec: Record) -> list[Mount]:
        rw = "rw" if rec.info.kind == Kind.ACTIVE else "ro"
        return [Mount(type="bind", source=str(self._fs(rec.id)), options=(rw, "rbind"))]
