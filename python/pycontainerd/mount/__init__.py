"""Mounts: containerd's ``mount`` package.

Snapshotters and diff code return :class:`Mount` values; this package is the one place that
performs them, through the native crate ``rust/pcd-mount`` (the GIL released for each call).
Overlays with many layers keep working past the kernel's one-page option limit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pycontainerd import _native

__all__ = ["Mount", "is_mounted", "mount_all", "temp_mount", "unmount", "unmount_all"]

#: ``umount2``'s ``MNT_DETACH``: detach now, clean up when no longer busy.
_MNT_DETACH = 2


@dataclass(frozen=True)
class Mount:
    """containerd's ``mount.Mount``: ``mount -t TYPE -o OPTIONS SOURCE TARGET`` as a value."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()


def mount_all(mounts: Iterable[Mount], target: str | os.PathLike[str]) -> None:
    """Mount ``mounts`` in order onto ``target``, containerd's ``mount.All``.

    A mount's own ``target``, when set, is a path inside ``target``. Options are read as
    containerd reads them (flags such as ``ro``, ``rbind``, ``nosuid``; propagation such as
    ``rprivate``; the rest is filesystem data); a read-only bind is remounted read-only.
    On error, the mounts already made stay for the caller's :func:`unmount_all`. Raises
    :class:`~pycontainerd.errdefs.NotFound` when a source, layer or target is missing and
    :class:`~pycontainerd.errdefs.InvalidArgument` for options that cannot be honoured.
    """
    _native.mount_all(
        [(m.type, m.source, m.target, list(m.options)) for m in mounts], os.fspath(target)
    )


def unmount(target: str | os.PathLike[str], *, detach: bool = False) -> None:
    """Unmount ``target`` once (retrying while busy); nothing mounted there is not an error."""
    _native.unmount(os.fspath(target), _MNT_DETACH if detach else 0)


def unmount_all(target: str | os.PathLike[str], *, detach: bool = False) -> None:
    """Unmount ``target`` until nothing is mounted there; a missing path is not an error."""
    _native.unmount_all(os.fspath(target), _MNT_DETACH if detach else 0)


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    out, i = [], 0
    while i < len(field):
        chunk = field[i + 1 : i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """Whether something is mounted on ``path`` (symlinks resolved); False if it is missing."""
    try:
        real = os.path.realpath(os.fspath(path), strict=True)
    except OSError:
        return False
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4 and _unescape(fields[4]) == real:
                return True
    return False


@contextmanager
def temp_mount(
    mounts: Iterable[Mount], *, root: str | os.PathLike[str] | None = None
) -> Iterator[str]:
    """Mount ``mounts`` on a new temporary directory and yield its path, containerd's
    ``mount.WithTempMount``.

    The directory is made under ``root`` (default: the system temporary directory); when the
    block ends, or the mount fails, everything mounted there is unmounted and the (then empty)
    directory removed. Never removes anything recursively.
    """
    target = tempfile.mkdtemp(prefix="pycontainerd-mount-", dir=root)
    try:
        mount_all(mounts, target)
        yield target
    finally:
        try:
            unmount_all(target)
        finally:
            os.rmdir(target)
