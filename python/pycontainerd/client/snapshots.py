"""``Client.snapshots(name)``: a daemon snapshotter as a ``snapshots.Snapshotter``.

containerd's ``snapshots/proxy``: every method is a call of the Snapshots service in the
client's namespace, naming the snapshotter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from pycontainerd.mount import Mount
from pycontainerd.snapshots import Info, Usage, WalkFunc
from pycontainerd.snapshots.proto import info_from_proto, info_to_proto
from pycontainerd.snapshots.proto import mounts_from_proto as _mounts

if TYPE_CHECKING:
    from collections.abc import Callable

    from pycontainerd.client.connection import Connection

__all__ = ["ProxySnapshotter"]

Resp = TypeVar("Resp")


class ProxySnapshotter:
    """The snapshotter ``name`` of the daemon, in one namespace (and optionally one lease)."""

    def __init__(
        self,
        conn: Connection,
        namespace: str,
        name: str,
        *,
        timeout: float | None = None,
        lease: str | None = None,
    ) -> None:
        self._conn = conn
        self._stub = snapshots_pb2_grpc.SnapshotsStub(conn.channel)
        self.namespace = namespace
        self.name = name
        self.lease = lease
        self._timeout = timeout

    def _call(self, method: Callable[..., Resp], request: Any) -> Resp:
        return self._conn.call(
            method, request, namespace=self.namespace, lease=self.lease, timeout=self._timeout
        )

    def stat(self, key: str) -> Info:
        """The info of the snapshot ``key``; NotFound if there is none."""
        req = snapshots_pb2.StatSnapshotRequest(snapshotter=self.name, key=key)
        return info_from_proto(self._call(self._stub.Stat, req).info)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Change a snapshot's labels: the ``labels.K`` or ``labels`` paths given."""
        req = snapshots_pb2.UpdateSnapshotRequest(
            snapshotter=self.name,
            info=info_to_proto(info),
            update_mask=field_mask_pb2.FieldMask(paths=list(fieldpaths)),
        )
        return info_from_proto(self._call(self._stub.Update, req).info)

    def usage(self, key: str) -> Usage:
        """The disk space and inodes the snapshot ``key`` uses (not its parents)."""
        resp = self._call(
            self._stub.Usage, snapshots_pb2.UsageRequest(snapshotter=self.name, key=key)
        )
        return Usage(size=resp.size, inodes=resp.inodes)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of the active or view snapshot ``key``."""
        req = snapshots_pb2.MountsRequest(snapshotter=self.name, key=key)
        return _mounts(self._call(self._stub.Mounts, req).mounts)

    def prepare(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """An active (writable) snapshot ``key`` on top of ``parent``; its mounts."""
        req = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {})
        )
        return _mounts(self._call(self._stub.Prepare, req).mounts)

    def view(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """A read-only snapshot ``key`` of ``parent``; its mounts."""
        req = snapshots_pb2.ViewSnapshotRequest(
            snapshotter=self.name, key=key, parent=parent, labels=dict(labels or {})
        )
        return _mounts(self._call(self._stub.View, req).mounts)

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Make the active snapshot ``key`` the committed snapshot ``name``."""
        req = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=self.name, name=name, key=key, labels=dict(labels or {})
        )
        self._call(self._stub.Commit, req)

    def remove(self, key: str) -> None:
        """Remove the snapshot ``key``; FailedPrecondition while it has children."""
        req = snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.name, key=key)
        self._call(self._stub.Remove, req)

    def walk(self, fn: WalkFunc, *filters: str) -> None:
        """Call ``fn`` with the info of each snapshot matching any of ``filters``."""
        req = snapshots_pb2.ListSnapshotsRequest(snapshotter=self.name, filters=list(filters))
        stream = self._call(self._stub.List, req)
        try:
            for resp in stream:
                for info in resp.info:
                    fn(info_from_proto(info))
        except grpc.RpcError as exc:
            raise self._conn.error(exc) from None
        finally:
            stream.cancel()

    def cleanup(self) -> None:
        """Free the space of removed snapshots (NotImplemented where the snapshotter
        has no cleanup)."""
        self._call(self._stub.Cleanup, snapshots_pb2.CleanupRequest(snapshotter=self.name))

    def close(self) -> None:
        """The connection belongs to the client: nothing to close here."""
