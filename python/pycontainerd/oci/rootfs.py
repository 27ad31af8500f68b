"""Reading files of a container's root filesystem without mounting it.

containerd mounts a snapshot in a temporary directory to read ``/etc/passwd`` and
``/etc/group``. Here a root is read where its files lie: a directory (a bind mount, a native
snapshot, an unpacked rootfs) or the layers of an overlay mount, upper first, with overlayfs's
rules (a ``0:0`` character device is a whiteout, a directory with ``trusted.overlay.opaque=y``
hides the layers below). Symbolic links are followed inside the root only: an absolute target
starts again at the root and ``..`` stops there, as containerd's ``fs.RootPath`` does.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from pycontainerd import errdefs
from pycontainerd.mount import Mount

__all__ = ["MAX_SYMLINKS", "LayeredRoot", "RootReader", "open_root", "root_from_mounts"]

#: Symbolic links followed in one lookup before giving up (Linux's limit).
MAX_SYMLINKS = 255

_OPAQUE_XATTR = "trusted.overlay.opaque"


@runtime_checkable
class RootReader(Protocol):
    """A container root filesystem whose files can be read by their path inside it."""

    def read_file(self, path: str) -> bytes:
        """The content of ``path`` (absolute inside the root); :class:`FileNotFoundError`
        when there is no such file."""
        ...


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class LayeredRoot:
    """A root made of directories, the first on top (one directory is a plain root)."""

    def __init__(self, layers: Sequence[str | os.PathLike[str]]) -> None:
        if not layers:
            raise errdefs.InvalidArgument("a root filesystem needs at least one directory")
        self.layers = tuple(Path(layer) for layer in layers)

    def __repr__(self) -> str:
        return f"LayeredRoot({[str(p) for p in self.layers]!r})"

    def _lookup(self, parts: Sequence[str]) -> tuple[Path, os.stat_result] | None:
        """The topmost entry at the symlink-free path ``parts``, as overlayfs would show it."""
        for layer in self.layers:
            stop_below = False
            hidden = False
            missing_parent = False
            for depth in range(1, len(parts)):
                ancestor = layer.joinpath(*parts[:depth])
                try:
                    st = os.lstat(ancestor)
                except (FileNotFoundError, NotADirectoryError):
                    missing_parent = True
                    break
                if not stat.S_ISDIR(st.st_mode):
                    hidden = True  # a whiteout or a file hides every lower layer's tree
                    break
                if _is_opaque(ancestor):
                    stop_below = True
            if hidden:
                return None
            if missing_parent:
                continue
            path = layer.joinpath(*parts)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                if stop_below:
                    return None
                continue
            if _is_whiteout(st):
                return None
            return path, st
        return None

    def resolve(self, path: str) -> Path:
        """The host path of the file at ``path`` in the root, symbolic links followed inside."""
        pending = [p for p in path.split("/") if p]
        pending.reverse()
        resolved: list[str] = []
        hops = 0
        while pending:
            name = pending.pop()
            if name == ".":
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            found = self._lookup([*resolved, name])
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "no such file in the container", path)
            host, st = found
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(host)
                if target.startswith("/"):
                    resolved = []
                pending.extend(reversed([p for p in target.split("/") if p]))
                continue
            if pending and not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory in the container", path)
            resolved.append(name)
        found = self._lookup(resolved) if resolved else (self.layers[0], os.lstat(self.layers[0]))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such file in the container", path)
        return found[0]

    def read_file(self, path: str) -> bytes:
        """The content of ``path`` inside the root."""
        host = self.resolve(path)
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file in the container", path)
            chunks: list[bytes] = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


def root_from_mounts(mounts: Sequence[Mount]) -> LayeredRoot:
    """The root a snapshot's mounts would assemble: a bind's source, or an overlay's layers."""
    if len(mounts) != 1:
        raise errdefs.NotImplemented(
            f"reading a root filesystem of {len(mounts)} mounts without mounting them"
        )
    m = mounts[0]
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        return LayeredRoot([m.source])
    if m.type == "overlay":
        upper: list[str] = []
        lower: list[str] = []
        for opt in m.options:
            key, _, value = opt.partition("=")
            if key == "upperdir":
                upper = [value]
            elif key == "lowerdir":
                lower = [p for p in value.split(":") if p]
        if not lower:
            raise errdefs.InvalidArgument("overlay mount without lowerdir")
        return LayeredRoot([*upper, *lower])
    raise errdefs.NotImplemented(f'reading a root filesystem of a "{m.type}" mount')


def open_root(root: str | os.PathLike[str] | RootReader) -> RootReader:
    """A :class:`RootReader` for a directory path, or ``root`` itself."""
    if isinstance(root, (str, os.PathLike)):
        return LayeredRoot([root])
    return root
