"""Snapshot values to and from containerd's protobuf messages (shared by service and client)."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import timestamp_pb2

from pycontainerd.api.containerd.services.snapshots.v1 import snapshots_pb2
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.mount import Mount
from pycontainerd.snapshots import Info, Kind

__all__ = ["info_from_proto", "info_to_proto", "mounts_from_proto", "mounts_to_proto"]

_KINDS = {
    Kind.UNKNOWN: snapshots_pb2.UNKNOWN,
    Kind.VIEW: snapshots_pb2.VIEW,
    Kind.ACTIVE: snapshots_pb2.ACTIVE,
    Kind.COMMITTED: snapshots_pb2.COMMITTED,
}
_KINDS_BACK = {v: k for k, v in _KINDS.items()}


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def info_to_proto(info: Info) -> snapshots_pb2.Info:
    return snapshots_pb2.Info(
        name=info.name,
        parent=info.parent,
        kind=_KINDS[info.kind],
        created_at=_timestamp(info.created_at),
        updated_at=_timestamp(info.updated_at),
        labels=dict(info.labels),
    )


def info_from_proto(info: snapshots_pb2.Info) -> Info:
    return Info(
        name=info.name,
        kind=_KINDS_BACK.get(info.kind, Kind.UNKNOWN),
        parent=info.parent,
        labels=dict(info.labels),
        created_at=info.created_at.ToNanoseconds(),
        updated_at=info.updated_at.ToNanoseconds(),
    )


def mounts_to_proto(mounts: Iterable[Mount]) -> list[mount_pb2.Mount]:
    return [
        mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def mounts_from_proto(mounts: Iterable[mount_pb2.Mount]) -> list[Mount]:
    return [Mount(m.type, m.source, m.target, tuple(m.options)) for m in mounts]
