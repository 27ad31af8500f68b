"""Layer apply and diff: containerd's ``archive.Apply`` and ``archive.WriteDiff`` as native calls.

``apply_layer`` streams a layer blob (tar, gzip or zstd) into a directory with every path kept
inside it, and returns what it did, the diff ID (the digest of the uncompressed stream) first.
The work runs in Rust (crate ``rust/pcd-archive``) with the GIL released; from the daemon's event
loop, call it through ``asyncio.to_thread``.

``write_diff`` is the reverse: it compares two trees and writes the layer of their changes,
with its digest and diff ID.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pycontainerd import _native

__all__ = ["ApplyStats", "DiffStats", "apply_layer", "write_diff"]


@dataclass(frozen=True)
class ApplyStats:
    """What an apply did."""

    #: ``sha256:<hex>`` of the uncompressed tar stream.
    diff_id: str
    #: ``uncompressed``, ``gzip`` or ``zstd``.
    compression: str
    uncompressed_size: int
    compressed_size: int
    entries: int
    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    devices: int
    fifos: int
    whiteouts: int
    file_bytes: int
    #: Parent directories made because the layer did not name them before their entries.
    implicit_dirs: int = 0


def apply_layer(
    blob_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    whiteouts: Literal["overlay", "delete"] = "delete",
    media_type: str | None = None,
    max_uncompressed_size: int | None = None,
    same_owner: bool | None = None,
) -> ApplyStats:
    """Apply the layer at ``blob_path`` into the existing directory ``root``.

    ``whiteouts``: ``delete`` removes what a whiteout names (a root that is a full copy of the
    parent, as the native snapshotter has); ``overlay`` writes overlayfs whiteouts (0/0 character
    devices and the opaque xattr) for an overlay upper directory. ``media_type`` gives the
    compression (else the magic bytes decide); ``max_uncompressed_size`` refuses larger streams
    (decompression bombs); ``same_owner`` sets owners from the archive (default: when root).

    A hostile or broken layer raises :class:`~pycontainerd.errdefs.InvalidArgument` naming the
    entry; nothing outside ``root`` is ever touched, but ``root`` may hold part of the layer:
    the caller removes it.
    """
    stats = _native.apply_layer(
        os.fspath(blob_path),
        os.fspath(root),
        whiteouts=whiteouts,
        media_type=media_type,
        max_uncompressed_size=max_uncompressed_size,
        same_owner=same_owner,
    )
    return ApplyStats(**stats)


@dataclass(frozen=True)
class DiffStats:
    """What a diff wrote."""

    #: ``sha256:<hex>`` of the written (compressed) blob.
    digest: str
    #: Bytes of the written blob.
    size: int
    #: ``sha256:<hex>`` of the uncompressed tar stream.
    diff_id: str
    uncompressed_size: int
    #: ``gzip``, ``zstd`` or ``uncompressed``.
    compression: str
    entries: int
    files: int
    dirs: int
    symlinks: int
    hardlinks: int
    devices: int
    fifos: int
    whiteouts: int
    file_bytes: int


def write_diff(
    lower: str | os.PathLike[str],
    upper: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    compression: Literal["gzip", "zstd", "none"] = "gzip",
    upperdir: bool = False,
) -> DiffStats:
    """Write the changes from the tree ``lower`` to the tree ``upper`` as a layer at ``out_path``.

    containerd's ``archive.WriteDiff`` over continuity's ``fs.Changes``: entries sorted by path
    with their unchanged parents, deletions as ``.wh.NAME`` whiteouts, hard links within the
    layer as tar links, xattrs as PAX ``SCHILY.xattr.*`` records. A file counts as unchanged
    when type, mode, owner, xattrs, size and mtime (nanoseconds included) match; when both
    mtimes have zero nanoseconds, contents decide. ``upperdir=True`` reads ``upper`` as an
    overlayfs upper directory over ``lower`` (whiteout devices, opaque directories) instead of
    a full view: the same layer, written without walking what did not change.

    ``out_path`` is created (or replaced) and removed again on any error. Raises
    :class:`~pycontainerd.errdefs.NotFound` for a missing tree or output directory and
    :class:`~pycontainerd.errdefs.InvalidArgument` for an unknown compression.
    """
    stats = _native.write_diff(
        os.fspath(lower),
        os.fspath(upper),
        os.fspath(out_path),
        compression=compression,
        upperdir=upperdir,
    )
    return DiffStats(**stats)
