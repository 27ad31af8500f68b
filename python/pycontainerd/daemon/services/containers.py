"""``containerd.services.containers.v1.Containers``: container records in the caller's namespace.

Publishes ``/containers/create``, ``/containers/update`` and ``/containers/delete`` as
containerd does. A deleted container's snapshot and content stay until the garbage collector
finds nothing else holds them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import container_pb2 as events_pb2
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2
from pycontainerd.containers.proto import any_to_proto, container_from_proto, container_to_proto
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import namespace_of
from pycontainerd.daemon.services.events import publisher
from pycontainerd.events import Publisher
from pycontainerd.metadata import DB, ContainerStore
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["ContainersService", "registration"]


class ContainersService:
    """Containers over the metadata store."""

    def __init__(self, store: ContainerStore, events: Publisher | None = None) -> None:
        self._store = store
        self._events = events

    def register(self, server: RPCServer) -> None:
        server.add_service(containers_pb2.DESCRIPTOR.services_by_name["Containers"], self)

    async def Get(
        self, request: containers_pb2.GetContainerRequest, context: ServicerContext
    ) -> containers_pb2.GetContainerResponse:
        container = self._store.get(namespace_of(context), request.id)
        return containers_pb2.GetContainerResponse(container=container_to_proto(container))

    async def List(
        self, request: containers_pb2.ListContainersRequest, context: ServicerContext
    ) -> containers_pb2.ListContainersResponse:
        found = self._store.list(namespace_of(context), request.filters)
        return containers_pb2.ListContainersResponse(
            containers=[container_to_proto(c) for c in found]
        )

    async def ListStream(
        self, request: containers_pb2.ListContainersRequest, context: ServicerContext
    ) -> AsyncIterator[containers_pb2.ListContainerMessage]:
        # one container per message, as containerd streams them
        for c in self._store.list(namespace_of(context), request.filters):
            yield containers_pb2.ListContainerMessage(container=container_to_proto(c))

    async def Create(
        self, request: containers_pb2.CreateContainerRequest, context: ServicerContext
    ) -> containers_pb2.CreateContainerResponse:
        ns = namespace_of(context)
        created = self._store.create(ns, container_from_proto(request.container))
        if self._events is not None:
            event = events_pb2.ContainerCreate(
                id=created.id,
                image=created.image,
                runtime=events_pb2.ContainerCreate.Runtime(name=created.runtime.name),
            )
            if created.runtime.options is not None:
                event.runtime.options.CopyFrom(any_to_proto(created.runtime.options))
            self._events.publish(ns, "/containers/create", event)
        return containers_pb2.CreateContainerResponse(container=container_to_proto(created))

    async def Update(
        self, request: containers_pb2.UpdateContainerRequest, context: ServicerContext
    ) -> containers_pb2.UpdateContainerResponse:
        if not request.container.id:
            raise errdefs.InvalidArgument("Container.ID required")
        ns = namespace_of(context)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        updated = self._store.update(ns, container_from_proto(request.container), *paths)
        if self._events is not None:
            event = events_pb2.ContainerUpdate(
                id=updated.id,
                image=updated.image,
                labels=dict(updated.labels),
                snapshot_key=updated.snapshot_key,
            )
            self._events.publish(ns, "/containers/update", event)
        return containers_pb2.UpdateContainerResponse(container=container_to_proto(updated))

    async def Delete(
        self, request: containers_pb2.DeleteContainerRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        ns = namespace_of(context)
        self._store.delete(ns, request.id)
        if self._events is not None:
            self._events.publish(
                ns, "/containers/delete", events_pb2.ContainerDelete(id=request.id)
            )
        return empty_pb2.Empty()


def _init(ic: InitContext) -> ContainersService:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    return ContainersService(ContainerStore(db), publisher(ic))


registration = Registration(
    type=Type.GRPC, id="containers", init=_init, requires=(Type.EVENT, Type.METADATA)
)
