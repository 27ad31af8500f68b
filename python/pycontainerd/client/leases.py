"""``Client.leases``: create, list and delete leases, and work under one.

::

    with c.leases.create(expire=3600) as lease:      # deleted when the block ends
        with lease.content.writer("ref") as w:      # written under the lease
            ...
        with c.with_lease(lease):                   # every call of c carries the lease
            ...

containerd's ``leases.Manager`` over the Leases service, in the client's namespace. A lease
made here holds what is written under it until it is deleted or expires; then the garbage
collector takes whatever nothing else refers to.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from pycontainerd import errdefs
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pycontainerd.client.content import ProxyContentStore
from pycontainerd.leases import LABEL_GC_FLAT, Lease, Manager, Resource, expiration_labels

if TYPE_CHECKING:
    from pycontainerd.client.connection import Connection

__all__ = ["LeaseHandle", "LeasesAPI"]


def _lease(p: leases_pb2.Lease) -> Lease:
    return Lease(id=p.id, created_at=p.created_at.ToNanoseconds(), labels=dict(p.labels))


def _id(lease: str | Lease) -> str:
    return lease if isinstance(lease, str) else lease.id


@dataclass(frozen=True)
class LeaseHandle(Lease):
    """A lease this client made: the :class:`~pycontainerd.leases.Lease` value, plus calls on it.

    As a context manager it deletes the lease when the block ends (not waiting for garbage
    collection; call :meth:`delete` with ``sync=True`` for that).
    """

    api: LeasesAPI | None = field(default=None, compare=False, repr=False)

    def _api(self) -> LeasesAPI:
        if self.api is None:
            raise errdefs.FailedPrecondition(f'lease "{self.id}": not bound to a client')
        return self.api

    @property
    def content(self) -> ProxyContentStore:
        """The content store of the lease's namespace; what is written there is leased."""
        return self._api().content_store(self.id)

    def delete(self, *, sync: bool = False) -> None:
        """Delete the lease; with ``sync``, return once garbage collection has run."""
        self._api().delete(self.id, sync=sync)

    def add_resource(self, resource: Resource) -> None:
        """Make the lease hold ``resource`` (content, a snapshot, an ingest) too."""
        self._api().add_resource(self.id, resource)

    def delete_resource(self, resource: Resource) -> None:
        """Stop the lease holding ``resource``."""
        self._api().delete_resource(self.id, resource)

    def resources(self) -> builtins.list[Resource]:
        """What the lease holds besides what was written under it."""
        return self._api().list_resources(self.id)

    def __enter__(self) -> LeaseHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(errdefs.NotFound):  # deleted in the block already
            self.delete()


class LeasesAPI:
    """The Leases service in one namespace: a :class:`~pycontainerd.leases.Manager`."""

    def __init__(self, conn: Connection, namespace: str, timeout: float | None = None) -> None:
        self._conn = conn
        self._stub = leases_pb2_grpc.LeasesStub(conn.channel)
        self.namespace = namespace
        self._timeout = timeout

    def content_store(self, lease: str | Lease) -> ProxyContentStore:
        """The namespace's content store, every call under ``lease``."""
        return ProxyContentStore(
            self._conn, self.namespace, timeout=self._timeout, lease=_id(lease)
        )

    def create(
        self,
        id: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        expire: float | timedelta | None = None,
        flat: bool = False,
    ) -> LeaseHandle:
        """Create a lease (the daemon picks the id when ``id`` is empty).

        ``expire`` (seconds or a ``timedelta``) sets ``containerd.io/gc.expire``; ``flat``
        sets ``containerd.io/gc.flat``: the lease holds only what it names.
        """
        all_labels = dict(labels or {})
        if expire is not None:
            all_labels.update(expiration_labels(expire))
        if flat:
            all_labels[LABEL_GC_FLAT] = all_labels.get(LABEL_GC_FLAT) or "true"
        req = leases_pb2.CreateRequest(id=id, labels=all_labels)
        resp = self._conn.call(
            self._stub.Create, req, namespace=self.namespace, timeout=self._timeout
        )
        lease = _lease(resp.lease)
        return LeaseHandle(lease.id, lease.created_at, lease.labels, api=self)

    def list(self, *filters: str) -> builtins.list[Lease]:
        """Leases matching any of ``filters`` (``id==x``, ``labels."k"==v``), all without."""
        req = leases_pb2.ListRequest(filters=builtins.list(filters))
        resp = self._conn.call(
            self._stub.List, req, namespace=self.namespace, timeout=self._timeout
        )
        return [_lease(p) for p in resp.leases]

    def get(self, id: str) -> LeaseHandle:
        """The lease ``id``, bound to this client; NotFound when there is none."""
        for lease in self.list(f"id=={_quote_filter(id)}"):
            if lease.id == id:
                return LeaseHandle(lease.id, lease.created_at, lease.labels, api=self)
        raise errdefs.NotFound(f'lease "{id}": not found')

    def delete(self, lease: str | Lease, *, sync: bool = False) -> None:
        """Delete a lease; with ``sync``, return once garbage collection has run."""
        req = leases_pb2.DeleteRequest(id=_id(lease), sync=sync)
        self._conn.call(self._stub.Delete, req, namespace=self.namespace, timeout=self._timeout)

    def add_resource(self, lease: str | Lease, resource: Resource) -> None:
        """Make ``lease`` hold ``resource`` (content, a snapshot, an ingest) too."""
        req = leases_pb2.AddResourceRequest(
            id=_id(lease), resource=leases_pb2.Resource(id=resource.id, type=resource.type)
        )
        self._conn.call(
            self._stub.AddResource, req, namespace=self.namespace, timeout=self._timeout
        )

    def delete_resource(self, lease: str | Lease, resource: Resource) -> None:
        """Stop ``lease`` holding ``resource``."""
        req = leases_pb2.DeleteResourceRequest(
            id=_id(lease), resource=leases_pb2.Resource(id=resource.id, type=resource.type)
        )
        self._conn.call(
            self._stub.DeleteResource, req, namespace=self.namespace, timeout=self._timeout
        )

    def list_resources(self, lease: str | Lease) -> builtins.list[Resource]:
        """The resources ``lease`` holds; NotFound when there is no such lease."""
        req = leases_pb2.ListResourcesRequest(id=_id(lease))
        resp = self._conn.call(
            self._stub.ListResources, req, namespace=self.namespace, timeout=self._timeout
        )
        return [Resource(id=r.id, type=r.type) for r in resp.resources]


def _quote_filter(value: str) -> str:
    """A filter value, quoted as containerd's filter syntax reads it."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


if TYPE_CHECKING:

    def _is_a_manager(api: LeasesAPI) -> Manager:  # mypy checks LeasesAPI against the Protocol
        return api
