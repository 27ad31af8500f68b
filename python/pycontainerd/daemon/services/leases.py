"""``containerd.services.leases.v1.Leases``: leases of the caller's namespace.

Two plugins, as containerd's: ``io.containerd.service.v1 leases-service`` is the lease store
over the metadata database, for this service and any other part of the daemon;
``io.containerd.grpc.v1 leases`` serves it, and waits for the garbage collector
(``io.containerd.gc.v1 scheduler``) when a delete asks for ``sync``.
"""

from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import namespace_of
from pycontainerd.gc.scheduler import Scheduler, gc_scheduler
from pycontainerd.leases import Lease, Resource
from pycontainerd.metadata import DB
from pycontainerd.metadata.leases import LeaseStore
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["LeasesService", "lease_to_proto", "registration", "service_registration"]


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def lease_to_proto(lease: Lease) -> leases_pb2.Lease:
    return leases_pb2.Lease(
        id=lease.id, created_at=_timestamp(lease.created_at), labels=dict(lease.labels)
    )


def _resource(r: leases_pb2.Resource) -> Resource:
    return Resource(id=r.id, type=r.type)


class LeasesService:
    """Leases over the metadata store; ``sync`` deletes wait for a collection."""

    def __init__(self, store: LeaseStore, gc: Scheduler | None) -> None:
        self._store = store
        self._gc = gc

    def register(self, server: RPCServer) -> None:
        server.add_service(leases_pb2.DESCRIPTOR.services_by_name["Leases"], self)

    async def Create(
        self, request: leases_pb2.CreateRequest, context: ServicerContext
    ) -> leases_pb2.CreateResponse:
        ns = namespace_of(context)
        lease = await asyncio.to_thread(self._store.create, ns, request.id, dict(request.labels))
        return leases_pb2.CreateResponse(lease=lease_to_proto(lease))

    async def Delete(
        self, request: leases_pb2.DeleteRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        ns = namespace_of(context)
        await asyncio.to_thread(self._store.delete, ns, request.id)
        if request.sync:
            if self._gc is None:
                raise errdefs.FailedPrecondition(
                    f'delete lease "{request.id}": no garbage collector to wait for'
                )
            await self._gc.schedule_and_wait_async()
        return empty_pb2.Empty()

    async def List(
        self, request: leases_pb2.ListRequest, context: ServicerContext
    ) -> leases_pb2.ListResponse:
        ns = namespace_of(context)
        leases = await asyncio.to_thread(self._store.list, ns, *request.filters)
        return leases_pb2.ListResponse(leases=[lease_to_proto(lease) for lease in leases])

    async def AddResource(
        self, request: leases_pb2.AddResourceRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        ns = namespace_of(context)
        resource = _resource(request.resource)
        await asyncio.to_thread(self._store.add_resource, ns, request.id, resource)
        return empty_pb2.Empty()

    async def DeleteResource(
        self, request: leases_pb2.DeleteResourceRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        ns = namespace_of(context)
        resource = _resource(request.resource)
        await asyncio.to_thread(self._store.delete_resource, ns, request.id, resource)
        return empty_pb2.Empty()

    async def ListResources(
        self, request: leases_pb2.ListResourcesRequest, context: ServicerContext
    ) -> leases_pb2.ListResourcesResponse:
        ns = namespace_of(context)
        resources = await asyncio.to_thread(self._store.list_resources, ns, request.id)
        return leases_pb2.ListResourcesResponse(
            resources=[leases_pb2.Resource(id=r.id, type=r.type) for r in resources]
        )


def _init_store(ic: InitContext) -> LeaseStore:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    return LeaseStore(db)


def _init(ic: InitContext) -> LeasesService:
    store = ic.get(Type.SERVICE, "leases-service")
    assert isinstance(store, LeaseStore)
    return LeasesService(store, gc_scheduler(ic))


service_registration = Registration(
    type=Type.SERVICE, id="leases-service", init=_init_store, requires=(Type.METADATA,)
)

registration = Registration(
    type=Type.GRPC, id="leases", init=_init, requires=(Type.SERVICE, Type.GC)
)
