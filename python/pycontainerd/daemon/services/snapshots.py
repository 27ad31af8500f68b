"""``containerd.services.snapshots.v1.Snapshots``: the snapshotters, per namespace.

The request's ``snapshotter`` names the ``io.containerd.snapshotter.v1`` plugin. Calls run off
the event loop: a native prepare copies a whole tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from pycontainerd.api.containerd.events import snapshot_pb2 as events_pb2
from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import lease_of, namespace_of
from pycontainerd.daemon.services.events import publisher
from pycontainerd.events import Publisher
from pycontainerd.gc.scheduler import gc_scheduler
from pycontainerd.metadata import DB, NamespacedSnapshotter, SnapshotStore
from pycontainerd.metadata.gc import GarbageCollector
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.snapshots import Info, Snapshotter
from pycontainerd.snapshots.proto import info_from_proto, info_to_proto, mounts_to_proto

__all__ = ["SnapshotsService", "registration", "service_registration"]

#: Infos per List response, as containerd batches them.
_BATCH = 100


class SnapshotsService:
    """Snapshots over the namespaced snapshot store."""

    def __init__(self, store: SnapshotStore, events: Publisher | None = None) -> None:
        self._store = store
        self._events = events

    def _publish(self, context: ServicerContext, topic: str, event: Message) -> None:
        if self._events is not None:
            self._events.publish(namespace_of(context), topic, event)

    def register(self, server: RPCServer) -> None:
        server.add_service(snapshots_pb2.DESCRIPTOR.services_by_name["Snapshots"], self)

    def _sn(self, name: str, context: ServicerContext) -> NamespacedSnapshotter:
        return self._store.namespaced(namespace_of(context), name, lease=lease_of(context))

    async def Prepare(
        self, request: snapshots_pb2.PrepareSnapshotRequest, context: ServicerContext
    ) -> snapshots_pb2.PrepareSnapshotResponse:
        sn = self._sn(request.snapshotter, context)
        mounts = await asyncio.to_thread(
            sn.prepare, request.key, request.parent, labels=dict(request.labels)
        )
        self._publish(
            context,
            "/snapshot/prepare",
            events_pb2.SnapshotPrepare(key=request.key, parent=request.parent),
        )
        return snapshots_pb2.PrepareSnapshotResponse(mounts=mounts_to_proto(mounts))

    async def View(
        self, request: snapshots_pb2.ViewSnapshotRequest, context: ServicerContext
    ) -> snapshots_pb2.ViewSnapshotResponse:
        sn = self._sn(request.snapshotter, context)
        mounts = await asyncio.to_thread(
            sn.view, request.key, request.parent, labels=dict(request.labels)
        )
        return snapshots_pb2.ViewSnapshotResponse(mounts=mounts_to_proto(mounts))

    async def Mounts(
        self, request: snapshots_pb2.MountsRequest, context: ServicerContext
    ) -> snapshots_pb2.MountsResponse:
        sn = self._sn(request.snapshotter, context)
        mounts = await asyncio.to_thread(sn.mounts, request.key)
        return snapshots_pb2.MountsResponse(mounts=mounts_to_proto(mounts))

    async def Commit(
        self, request: snapshots_pb2.CommitSnapshotRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        sn = self._sn(request.snapshotter, context)
        await asyncio.to_thread(sn.commit, request.name, request.key, labels=dict(request.labels))
        self._publish(
            context,
            "/snapshot/commit",
            events_pb2.SnapshotCommit(key=request.key, name=request.name),
        )
        return empty_pb2.Empty()

    async def Remove(
        self, request: snapshots_pb2.RemoveSnapshotRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        sn = self._sn(request.snapshotter, context)
        await asyncio.to_thread(sn.remove, request.key)
        self._publish(context, "/snapshot/remove", events_pb2.SnapshotRemove(key=request.key))
        return empty_pb2.Empty()

    async def Stat(
        self, request: snapshots_pb2.StatSnapshotRequest, context: ServicerContext
    ) -> snapshots_pb2.StatSnapshotResponse:
        sn = self._sn(request.snapshotter, context)
        info = await asyncio.to_thread(sn.stat, request.key)
        return snapshots_pb2.StatSnapshotResponse(info=info_to_proto(info))

    async def Update(
        self, request: snapshots_pb2.UpdateSnapshotRequest, context: ServicerContext
    ) -> snapshots_pb2.UpdateSnapshotResponse:
        sn = self._sn(request.snapshotter, context)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        info = await asyncio.to_thread(sn.update, info_from_proto(request.info), *paths)
        return snapshots_pb2.UpdateSnapshotResponse(info=info_to_proto(info))

    async def List(
        self, request: snapshots_pb2.ListSnapshotsRequest, context: ServicerContext
    ) -> AsyncIterator[snapshots_pb2.ListSnapshotsResponse]:
        sn = self._sn(request.snapshotter, context)
        infos: list[Info] = []
        await asyncio.to_thread(sn.walk, infos.append, *request.filters)
        for start in range(0, len(infos), _BATCH):
            batch = infos[start : start + _BATCH]
            yield snapshots_pb2.ListSnapshotsResponse(info=[info_to_proto(i) for i in batch])

    async def Usage(
        self, request: snapshots_pb2.UsageRequest, context: ServicerContext
    ) -> snapshots_pb2.UsageResponse:
        sn = self._sn(request.snapshotter, context)
        usage = await asyncio.to_thread(sn.usage, request.key)
        return snapshots_pb2.UsageResponse(size=usage.size, inodes=usage.inodes)

    async def Cleanup(
        self, request: snapshots_pb2.CleanupRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        sn = self._sn(request.snapshotter, context)
        await asyncio.to_thread(sn.cleanup)
        return empty_pb2.Empty()


def _init_store(ic: InitContext) -> SnapshotStore:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    backends: dict[str, Snapshotter] = {}
    for name, instance in ic.plugins.instances(Type.SNAPSHOT).items():
        assert isinstance(instance, Snapshotter)
        backends[name] = instance
    store = SnapshotStore(db, backends)
    # the collector removes from the backends what no namespace records any more
    gc = gc_scheduler(ic)
    if gc is not None and isinstance(gc.collector, GarbageCollector):
        gc.collector.register_cleaner(
            "snapshots", lambda stats: stats.count("snapshot backends", store.clean())
        )
    return store


def _init(ic: InitContext) -> SnapshotsService:
    store = ic.get(Type.SERVICE, "snapshots-service")
    assert isinstance(store, SnapshotStore)
    return SnapshotsService(store, events=publisher(ic))


service_registration = Registration(
    type=Type.SERVICE,
    id="snapshots-service",
    init=_init_store,
    requires=(Type.METADATA, Type.SNAPSHOT, Type.GC),
)

registration = Registration(
    type=Type.GRPC, id="snapshots", init=_init, requires=(Type.EVENT, Type.SERVICE)
)
