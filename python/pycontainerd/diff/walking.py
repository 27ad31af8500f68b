"""The daemon's differ: layer apply onto mounts and the compare of two mount sets.

containerd's ``diff/apply`` and ``diff/walking``, with the native applier and diff writer.

**Apply** avoids mounting where the mounts say where the layer's files go, as containerd does:

- one bind mount: the layer is applied into its source, whiteouts as deletions (the native
  snapshotter's full copy, or the first layer of an overlay chain);
- one overlay mount with ``upperdir``: the layer is applied into the upper directory, whiteouts
  written as overlayfs whiteouts. The layer's files go straight to disk, but two things need
  the layers below: a parent directory the layer does not name (it takes the lower one's
  metadata) and a hardlink to a file of a lower layer. When either happens the upper
  directory is emptied and the layer applied again through a real overlay mount, where the
  kernel copies such things up. An overlay mount with no ``lowerdir`` (a layer unpacked in
  parallel, before its parents are known) fails with FailedPrecondition instead, and the
  unpacker applies that layer again once its parents are committed;
- anything else is mounted on a temporary directory and the layer applied there.

**Compare** writes the changes from the lower mounts to the upper ones: when the upper is an
overlay whose only extra layer over the lower's is one directory (a snapshot and its parent on
the overlay snapshotter), that directory is the diff and is read alone; otherwise both sides
are mounted read-only and walked side by side. The layer lands in the content store, gzip by
default, labelled with its uncompressed digest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from pycontainerd import archive, errdefs
from pycontainerd.content import Writer
from pycontainerd.descriptor import Descriptor
from pycontainerd.diff import LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP
from pycontainerd.images import mediatypes as mt
from pycontainerd.mount import Mount, temp_mount, unmount_all

__all__ = ["ContentAccess", "WalkingDiff", "cleanup_temp", "layer_dirs"]

Compression = Literal["gzip", "zstd", "none"]

log = logging.getLogger(__name__)

#: Bytes copied from the written diff into the content store at a time.
_CHUNK: Final = 1 << 20


class ContentAccess(Protocol):
    """What the differ needs of one namespace's content store."""

    def blob_path(self, dgst: str) -> Path: ...

    def writer(self, ref: str, *, desc: Descriptor | None = None) -> Writer: ...


@dataclass(frozen=True)
class _Layers:
    """The directories of one mount set, top first, when it is a stack of plain directories."""

    upper: str | None
    lowers: tuple[str, ...]
    overlay: bool


def _options(m: Mount) -> dict[str, str]:
    out: dict[str, str] = {}
    for opt in m.options:
        key, sep, value = opt.partition("=")
        if sep:
            out[key] = value
    return out


def layer_dirs(mounts: Sequence[Mount]) -> _Layers | None:
    """The directories a single bind or overlay mount stacks, or None for anything else."""
    if len(mounts) != 1:
        return None
    m = mounts[0]
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        return _Layers(upper=None, lowers=(m.source,), overlay=False)
    if m.type == "overlay":
        opts = _options(m)
        lowers = tuple(d for d in opts.get("lowerdir", "").split(":") if d)
        return _Layers(upper=opts.get("upperdir"), lowers=lowers, overlay=True)
    return None


def _wipe(directory: str) -> None:
    """Remove everything inside ``directory``, keeping it."""
    with os.scandir(directory) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _needs_parents(exc: errdefs.ContainerdError) -> bool:
    """Whether an apply failed for a hardlink whose target is in a lower layer."""
    return "hardlink target" in exc.message and "not found" in exc.message


def _readonly(mounts: Sequence[Mount]) -> list[Mount]:
    """``mounts`` mounted read-only (containerd's ``WithReadonlyTempMount``)."""
    out = []
    for m in mounts:
        options = (*(o for o in m.options if o not in ("rw", "ro")), "ro")
        out.append(Mount(m.type, m.source, m.target, options))
    return out


def cleanup_temp(tmp_root: Path) -> None:
    """Unmount and remove what a crash left under ``tmp_root`` (containerd's
    ``CleanupTempMounts``): temporary mount points and half-written diffs."""
    if not tmp_root.is_dir():
        return
    for entry in os.scandir(tmp_root):
        try:
            if entry.is_dir(follow_symlinks=False):
                unmount_all(entry.path, detach=True)
                os.rmdir(entry.path)
            elif entry.name.startswith("diff-"):
                os.unlink(entry.path)
        except (OSError, errdefs.ContainerdError) as exc:
            log.warning("temporary mount %s left in place: %s", entry.path, exc)


class WalkingDiff:
    """The :class:`~pycontainerd.diff.Applier` and :class:`~pycontainerd.diff.Comparer` of
    one namespace's content store; temporary mounts and files go under ``tmp_root``."""

    def __init__(
        self,
        content: ContentAccess,
        tmp_root: Path,
        *,
        max_uncompressed_size: int | None = None,
    ) -> None:
        self._content = content
        self._tmp = tmp_root
        self._max = max_uncompressed_size

    # --- apply ---------------------------------------------------------------------------

    def apply(self, desc: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        if not mt.is_layer_type(desc.media_type):
            raise errdefs.NotImplemented(f"unsupported diff media type: {desc.media_type}")
        blob = self._content.blob_path(desc.digest)
        what = f"apply layer {desc.digest}"
        layers = layer_dirs(mounts)
        if layers is None:
            stats = self._through_mount(blob, desc, mounts)
        elif not layers.overlay:
            stats = self._apply(blob, layers.lowers[0], "delete", desc)
        elif layers.upper is None:
            raise errdefs.InvalidArgument(f"{what}: an overlay mount without upperdir is read-only")
        else:
            upper = layers.upper
            try:
                stats = self._apply(blob, upper, "overlay", desc)
            except errdefs.InvalidArgument as exc:
                if not _needs_parents(exc) or not layers.lowers:
                    _wipe(upper)
                    if _needs_parents(exc):
                        raise errdefs.FailedPrecondition(
                            f"{what}: needs its parent layers: {exc.message}"
                        ) from None
                    raise
                stats = None
            except BaseException:
                _wipe(upper)
                raise
            if stats is None or stats.implicit_dirs:
                _wipe(upper)
                if not layers.lowers:
                    raise errdefs.FailedPrecondition(
                        f"{what}: needs its parent layers: "
                        f"{stats.implicit_dirs if stats else 0} directories it does not name"
                    )
                try:
                    stats = self._through_mount(blob, desc, mounts)
                except BaseException:
                    _wipe(upper)
                    raise
        assert stats is not None
        return Descriptor(MEDIA_TYPE_LAYER, stats.diff_id, stats.uncompressed_size)

    def _apply(
        self, blob: Path, root: str | Path, whiteouts: str, desc: Descriptor
    ) -> archive.ApplyStats:
        return archive.apply_layer(
            blob,
            root,
            whiteouts="overlay" if whiteouts == "overlay" else "delete",
            media_type=desc.media_type,
            max_uncompressed_size=self._max,
        )

    def _through_mount(
        self, blob: Path, desc: Descriptor, mounts: Sequence[Mount]
    ) -> archive.ApplyStats:
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        with temp_mount(mounts, root=self._tmp) as root:
            return self._apply(blob, root, "delete", desc)

    # --- compare -------------------------------------------------------------------------

    def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        media_type = media_type or MEDIA_TYPE_LAYER_GZIP
        if not mt.is_layer_type(media_type):
            raise errdefs.NotImplemented(f"unsupported diff media type: {media_type}")
        found = mt.diff_compression(media_type)
        compression: Compression = (
            "gzip" if found == "gzip" else "zstd" if found == "zstd" else "none"
        )
        ref = ref or f"diff-{time.time_ns()}-{secrets.token_hex(4)}"
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="diff-", dir=self._tmp)
        os.close(fd)
        try:
            stats = self._write(lower, upper, name, compression)
            desc = Descriptor(media_type, stats.digest, stats.size)
            self._ingest(name, ref, desc, {**(labels or {}), LABEL_UNCOMPRESSED: stats.diff_id})
            return desc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def _write(
        self, lower: Sequence[Mount], upper: Sequence[Mount], out: str, compression: Compression
    ) -> archive.DiffStats:
        lo, up = layer_dirs(lower), layer_dirs(upper)
        if lo is not None and up is not None and up.overlay:
            # the upper's layers, top first, and the lower's: one extra directory is the diff
            up_stack = ((up.upper,) if up.upper else ()) + up.lowers
            lo_stack = ((lo.upper,) if lo.upper else ()) + lo.lowers
            if len(up_stack) == len(lo_stack) + 1 and up_stack[1:] == lo_stack:
                with temp_mount(_readonly(lower), root=self._tmp) as lroot:
                    return archive.write_diff(
                        lroot, up_stack[0], out, compression=compression, upperdir=True
                    )
        with (
            temp_mount(_readonly(lower), root=self._tmp) as lroot,
            temp_mount(_readonly(upper), root=self._tmp) as uroot,
        ):
            return archive.write_diff(lroot, uroot, out, compression=compression)

    def _ingest(self, path: str, ref: str, desc: Descriptor, labels: Mapping[str, str]) -> None:
        try:
            writer = self._content.writer(ref, desc=desc)
        except errdefs.AlreadyExists:
            return  # the same layer is in the store
        with writer, open(path, "rb") as f:
            if writer.status().offset:
                writer.truncate(0)
            while chunk := f.read(_CHUNK):
                writer.write(chunk)
            with contextlib.suppress(errdefs.AlreadyExists):
                writer.commit(desc.size, desc.digest, labels=labels)
