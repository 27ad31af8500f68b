"""``Client.diff``: the daemon's differ as a :class:`~pycontainerd.diff.Applier` and
:class:`~pycontainerd.diff.Comparer` (containerd's ``diff/proxy``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pycontainerd.api.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.descriptor import Descriptor
from pycontainerd.mount import Mount
from pycontainerd.snapshots.proto import mounts_to_proto

if TYPE_CHECKING:
    from pycontainerd.client.connection import Connection

__all__ = ["ProxyDiff"]


def _from_proto(d: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(d.media_type, d.digest, d.size, dict(d.annotations))


class ProxyDiff:
    """The Diff service in one namespace (and optionally one lease)."""

    def __init__(
        self,
        conn: Connection,
        namespace: str,
        *,
        timeout: float | None = None,
        lease: str | None = None,
    ) -> None:
        self._conn = conn
        self._stub = diff_pb2_grpc.DiffStub(conn.channel)
        self.namespace = namespace
        self.lease = lease
        self._timeout = timeout

    def apply(self, desc: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        """Unpack the layer ``desc`` onto ``mounts``; the descriptor of the uncompressed
        layer applied."""
        req = diff_pb2.ApplyRequest(
            diff=descriptor_pb2.Descriptor(
                media_type=desc.media_type,
                digest=desc.digest,
                size=desc.size,
                annotations=dict(desc.annotations),
            ),
            mounts=mounts_to_proto(mounts),
        )
        resp = self._conn.call(
            self._stub.Apply, req, namespace=self.namespace, lease=self.lease, timeout=self._timeout
        )
        return _from_proto(resp.applied)

    def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """A layer of the changes from ``lower`` to ``upper``, written to the content
        store (``ref`` its ingest, ``labels`` on the blob); its descriptor."""
        req = diff_pb2.DiffRequest(
            left=mounts_to_proto(lower),
            right=mounts_to_proto(upper),
            media_type=media_type,
            ref=ref,
            labels=dict(labels or {}),
        )
        resp = self._conn.call(
            self._stub.Diff, req, namespace=self.namespace, lease=self.lease, timeout=self._timeout
        )
        return _from_proto(resp.diff)
