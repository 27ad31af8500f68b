"""Diffs: applying a layer onto mounts, and comparing two mount sets into a new layer.

containerd's ``diff`` package: an :class:`Applier` applies a layer descriptor from the content
store onto a snapshot's mounts and returns the descriptor of what it applied (the uncompressed
layer: its digest is the diff ID); a :class:`Comparer` writes the changes between two mount
sets into the content store as a new layer. The daemon implements both in
:mod:`pycontainerd.diff.walking`; the client reaches them through the Diff service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

from pycontainerd.descriptor import Descriptor
from pycontainerd.mount import Mount

__all__ = [
    "LABEL_UNCOMPRESSED",
    "MEDIA_TYPE_LAYER",
    "MEDIA_TYPE_LAYER_GZIP",
    "Applier",
    "Comparer",
]

#: The label of a compressed layer blob naming its uncompressed digest (the diff ID).
LABEL_UNCOMPRESSED: Final = "containerd.io/uncompressed"
#: What an apply returns: the uncompressed layer.
MEDIA_TYPE_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
#: What a compare writes unless told otherwise.
MEDIA_TYPE_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"


@runtime_checkable
class Applier(Protocol):
    """containerd's ``diff.Applier``."""

    def apply(self, desc: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        """Apply the layer ``desc`` onto ``mounts``; the uncompressed layer's descriptor."""
        ...


@runtime_checkable
class Comparer(Protocol):
    """containerd's ``diff.Comparer``."""

    def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Write the changes from ``lower`` to ``upper`` as a layer into the content store."""
        ...
