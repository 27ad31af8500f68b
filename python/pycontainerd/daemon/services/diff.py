"""``containerd.services.diff.v1.Diff``: layer apply onto mounts and compare of two mount sets.

An adapter over :class:`~pycontainerd.diff.walking.WalkingDiff` in the caller's namespace (and
lease: a compare's new blob joins it). Both run off the event loop: they read and write whole
layers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import lease_of, namespace_of
from pycontainerd.descriptor import Descriptor
from pycontainerd.diff.walking import WalkingDiff, cleanup_temp
from pycontainerd.metadata import ContentStore
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.snapshots.proto import mounts_from_proto

__all__ = ["DiffService", "registration"]


def _desc_to_proto(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=d.digest, size=d.size, annotations=dict(d.annotations)
    )


class DiffService:
    """Diff over the namespaced content store; temporary mounts under ``tmp_root``."""

    def __init__(self, content: ContentStore, tmp_root: Path) -> None:
        self._content = content
        self._tmp = tmp_root

    def register(self, server: RPCServer) -> None:
        server.add_service(diff_pb2.DESCRIPTOR.services_by_name["Diff"], self)

    def _differ(self, context: ServicerContext) -> WalkingDiff:
        store = self._content.namespaced(namespace_of(context), lease=lease_of(context))
        return WalkingDiff(store, self._tmp)

    async def Apply(
        self, request: diff_pb2.ApplyRequest, context: ServicerContext
    ) -> diff_pb2.ApplyResponse:
        d = request.diff
        desc = Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))
        applied = await asyncio.to_thread(
            self._differ(context).apply, desc, mounts_from_proto(request.mounts)
        )
        return diff_pb2.ApplyResponse(applied=_desc_to_proto(applied))

    async def Diff(
        self, request: diff_pb2.DiffRequest, context: ServicerContext
    ) -> diff_pb2.DiffResponse:
        differ = self._differ(context)
        desc = await asyncio.to_thread(
            lambda: differ.compare(
                mounts_from_proto(request.left),
                mounts_from_proto(request.right),
                media_type=request.media_type,
                ref=request.ref,
                labels=dict(request.labels),
            )
        )
        return diff_pb2.DiffResponse(diff=_desc_to_proto(desc))


def _init(ic: InitContext) -> DiffService:
    store = ic.get(Type.SERVICE, "content-service")
    assert isinstance(store, ContentStore)
    # containerd's ``tmpmounts`` directory, beside the snapshots under the root
    tmp = ic.root.parent / "tmpmounts"
    cleanup_temp(tmp)
    return DiffService(store, tmp)


registration = Registration(type=Type.GRPC, id="diff", init=_init, requires=(Type.SERVICE,))
