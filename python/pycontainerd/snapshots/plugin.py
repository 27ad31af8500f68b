"""The ``io.containerd.snapshotter.v1`` plugins ``overlayfs`` and ``native``.

Each keeps its data at ``<root>/snapshots/<id>`` (DESIGN.md), beside ``content/``.
"""

from __future__ import annotations

from pycontainerd import platforms
from pycontainerd.plugin import InitContext, Registration, SkipPlugin, Type
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter, supported

__all__ = ["native_registration", "overlay_registration"]


def _init_overlay(ic: InitContext) -> OverlaySnapshotter:
    if not supported():
        raise SkipPlugin("overlayfs is not supported by the kernel (see /proc/filesystems)")
    ic.meta.platforms.append(platforms.host())
    ic.meta.capabilities.append("rebase")  # layers unpack in parallel (containerd 2's name)
    root = ic.root.parent / "snapshots" / "overlayfs"
    ic.meta.exports["root"] = str(root)
    return OverlaySnapshotter(root)


def _init_native(ic: InitContext) -> NativeSnapshotter:
    ic.meta.platforms.append(platforms.host())
    root = ic.root.parent / "snapshots" / "native"
    ic.meta.exports["root"] = str(root)
    return NativeSnapshotter(root)


overlay_registration = Registration(type=Type.SNAPSHOT, id="overlayfs", init=_init_overlay)
native_registration = Registration(type=Type.SNAPSHOT, id="native", init=_init_native)
