"""``Client.namespaces``: create, list, label and delete namespaces."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from google.protobuf import field_mask_pb2

from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pycontainerd.namespaces import Namespace

if TYPE_CHECKING:
    from pycontainerd.client.connection import Connection

__all__ = ["NamespacesAPI"]

Resp = TypeVar("Resp")


def _from_proto(ns: namespace_pb2.Namespace) -> Namespace:
    return Namespace(ns.name, dict(ns.labels))


class NamespacesAPI:
    """The Namespaces service, as containerd's ``namespaces.Store`` plus ``get``."""

    def __init__(
        self, conn: Connection, timeout: float | None, namespace: Callable[[], str]
    ) -> None:
        self._conn = conn
        self._stub = namespace_pb2_grpc.NamespacesStub(conn.channel)
        self._timeout = timeout
        # Sent with every call as containerd's clients do; the daemon's events carry it.
        self._namespace = namespace

    def _call(self, method: Callable[..., Resp], request: object) -> Resp:
        return self._conn.call(method, request, namespace=self._namespace(), timeout=self._timeout)

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create ``name``; :class:`~pycontainerd.errdefs.AlreadyExists` if it exists."""
        req = namespace_pb2.CreateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=dict(labels or {}))
        )
        resp = self._call(self._stub.Create, req)
        return _from_proto(resp.namespace)

    def get(self, name: str) -> Namespace:
        """The namespace ``name`` with its labels."""
        req = namespace_pb2.GetNamespaceRequest(name=name)
        return _from_proto(self._call(self._stub.Get, req).namespace)

    def list(self) -> list[Namespace]:
        """Every namespace with its labels."""
        resp = self._call(self._stub.List, namespace_pb2.ListNamespacesRequest())
        return [_from_proto(ns) for ns in resp.namespaces]

    def labels(self, name: str) -> dict[str, str]:
        """The labels of the namespace ``name``."""
        return dict(self.get(name).labels)

    def set_label(self, name: str, key: str, value: str) -> None:
        """Set one label; an empty ``value`` removes it."""
        self.update(name, {key: value} if value else {}, fields=[f"labels.{key}"])

    def update(
        self, name: str, labels: Mapping[str, str], *, fields: Sequence[str] = ()
    ) -> Namespace:
        """Replace all labels, or only the ``labels.KEY`` paths given in ``fields``."""
        req = namespace_pb2.UpdateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=dict(labels)),
            update_mask=field_mask_pb2.FieldMask(paths=list(fields)) if fields else None,
        )
        resp = self._call(self._stub.Update, req)
        return _from_proto(resp.namespace)

    def delete(self, name: str) -> None:
        """Delete an empty namespace."""
        req = namespace_pb2.DeleteNamespaceRequest(name=name)
        self._call(self._stub.Delete, req)
