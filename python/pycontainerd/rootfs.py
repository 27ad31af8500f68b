"""Root file systems from snapshots: containerd's ``rootfs`` package.

:func:`create_diff` writes the changes a snapshot holds over its parent as a new layer
(``ctr snapshots diff``, committing a container to an image layer); :func:`with_mounts` gives
the mounts of a snapshot of any kind, through a temporary view of a committed one.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.diff import Comparer
from pycontainerd.mount import Mount
from pycontainerd.snapshots import Kind, Snapshotter

__all__ = ["create_diff", "with_mounts"]


def _unique() -> str:
    return f"{time.time_ns()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def _view(sn: Snapshotter, key: str, parent: str) -> Iterator[list[Mount]]:
    mounts = sn.view(key, parent)
    try:
        yield mounts
    finally:
        with contextlib.suppress(errdefs.NotFound):
            sn.remove(key)


@contextlib.contextmanager
def with_mounts(sn: Snapshotter, key: str) -> Iterator[list[Mount]]:
    """The mounts of ``key``: its own when active, a temporary view's when committed."""
    info = sn.stat(key)
    if info.kind == Kind.ACTIVE:
        yield sn.mounts(key)
        return
    with _view(sn, f"{key}-view-key", key) as mounts:
        yield mounts


def create_diff(
    sn: Snapshotter,
    comparer: Comparer,
    key: str,
    *,
    media_type: str = "",
    ref: str = "",
    labels: Mapping[str, str] | None = None,
) -> Descriptor:
    """The layer of what ``key`` changes over its parent, written to the content store."""
    info = sn.stat(key)
    with _view(sn, f"{info.parent}-parent-view-{_unique()}", info.parent) as lower:
        if info.kind == Kind.ACTIVE:
            upper_cm: contextlib.AbstractContextManager[list[Mount]] = contextlib.nullcontext(
                sn.mounts(key)
            )
        else:
            upper_cm = _view(sn, f"{key}-view-{_unique()}", key)
        with upper_cm as upper:
            return comparer.compare(
                lower, upper, media_type=media_type, ref=ref, labels=labels or {}
            )
