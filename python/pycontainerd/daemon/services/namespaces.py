"""``containerd.services.namespaces.v1.Namespaces``."""

from __future__ import annotations

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import namespace_pb2 as events_pb2
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import namespace_of
from pycontainerd.daemon.services.events import publisher
from pycontainerd.events import Publisher
from pycontainerd.metadata import DB, Namespace, NamespaceStore
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["NamespacesService", "registration"]


def _to_proto(ns: Namespace) -> namespace_pb2.Namespace:
    return namespace_pb2.Namespace(name=ns.name, labels=dict(ns.labels))


def _caller_namespace(context: ServicerContext, default: str) -> str:
    """The namespace events go out in: the caller's, as containerd's.

    containerd fails the call (after the change) when the caller names none; ours goes out in
    ``default``, the namespace the call is about.
    """
    try:
        return namespace_of(context)
    except errdefs.ContainerdError:
        return default


class NamespacesService:
    """Namespaces over the metadata store; publishes ``/namespaces/*`` events."""

    def __init__(self, store: NamespaceStore, events: Publisher | None = None) -> None:
        self._store = store
        self._events = events

    def _publish(self, namespace: str, topic: str, event: Message) -> None:
        if self._events is not None:
            self._events.publish(namespace, topic, event)

    def register(self, server: RPCServer) -> None:
        server.add_service(namespace_pb2.DESCRIPTOR.services_by_name["Namespaces"], self)

    async def Get(
        self, request: namespace_pb2.GetNamespaceRequest, context: ServicerContext
    ) -> namespace_pb2.GetNamespaceResponse:
        return namespace_pb2.GetNamespaceResponse(
            namespace=_to_proto(self._store.get(request.name))
        )

    async def List(
        self, request: namespace_pb2.ListNamespacesRequest, context: ServicerContext
    ) -> namespace_pb2.ListNamespacesResponse:
        return namespace_pb2.ListNamespacesResponse(
            namespaces=[_to_proto(ns) for ns in self._store.list()]
        )

    async def Create(
        self, request: namespace_pb2.CreateNamespaceRequest, context: ServicerContext
    ) -> namespace_pb2.CreateNamespaceResponse:
        ns = self._store.create(request.namespace.name, dict(request.namespace.labels))
        self._publish(
            _caller_namespace(context, ns.name),
            "/namespaces/create",
            events_pb2.NamespaceCreate(name=ns.name, labels=dict(request.namespace.labels)),
        )
        return namespace_pb2.CreateNamespaceResponse(namespace=_to_proto(ns))

    async def Update(
        self, request: namespace_pb2.UpdateNamespaceRequest, context: ServicerContext
    ) -> namespace_pb2.UpdateNamespaceResponse:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        ns = self._store.update(request.namespace.name, dict(request.namespace.labels), paths)
        self._publish(
            _caller_namespace(context, ns.name),
            "/namespaces/update",
            events_pb2.NamespaceUpdate(name=ns.name, labels=dict(request.namespace.labels)),
        )
        return namespace_pb2.UpdateNamespaceResponse(namespace=_to_proto(ns))

    async def Delete(
        self, request: namespace_pb2.DeleteNamespaceRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        self._store.delete(request.name)
        # in the deleted namespace, as containerd's
        self._publish(
            request.name, "/namespaces/delete", events_pb2.NamespaceDelete(name=request.name)
        )
        return empty_pb2.Empty()


def _init(ic: InitContext) -> NamespacesService:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    return NamespacesService(NamespaceStore(db), publisher(ic))


registration = Registration(
    type=Type.GRPC, id="namespaces", init=_init, requires=(Type.EVENT, Type.METADATA)
)
