"""Container values to and from containerd's protobuf messages (shared by service and client)."""

from __future__ import annotations

from google.protobuf import any_pb2, timestamp_pb2

from pycontainerd.api.containerd.services.containers.v1 import containers_pb2
from pycontainerd.containers import AnyValue, Container, RuntimeInfo

__all__ = ["any_from_proto", "any_to_proto", "container_from_proto", "container_to_proto"]


def any_to_proto(value: AnyValue) -> any_pb2.Any:
    """An ``Any`` message with the same type URL and bytes."""
    return any_pb2.Any(type_url=value.type_url, value=value.value)


def any_from_proto(msg: any_pb2.Any) -> AnyValue:
    """The ``Any``'s type URL and bytes, undecoded."""
    return AnyValue(msg.type_url, bytes(msg.value))


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def container_to_proto(c: Container) -> containers_pb2.Container:
    """The wire form of a container record."""
    runtime = containers_pb2.Container.Runtime(name=c.runtime.name)
    if c.runtime.options is not None:
        runtime.options.CopyFrom(any_to_proto(c.runtime.options))
    msg = containers_pb2.Container(
        id=c.id,
        labels=dict(c.labels),
        image=c.image,
        runtime=runtime,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=_timestamp(c.created_at),
        updated_at=_timestamp(c.updated_at),
    )
    if c.spec is not None:
        msg.spec.CopyFrom(any_to_proto(c.spec))
    for key, ext in c.extensions.items():
        msg.extensions[key].CopyFrom(any_to_proto(ext))
    return msg


def container_from_proto(msg: containers_pb2.Container) -> Container:
    """A container record from its wire form; absent ``Any`` fields become ``None``."""
    options = None
    if msg.HasField("runtime") and msg.runtime.HasField("options"):
        options = any_from_proto(msg.runtime.options)
    return Container(
        id=msg.id,
        runtime=RuntimeInfo(msg.runtime.name, options),
        spec=any_from_proto(msg.spec) if msg.HasField("spec") else None,
        labels=dict(msg.labels),
        image=msg.image,
        snapshotter=msg.snapshotter,
        snapshot_key=msg.snapshot_key,
        created_at=msg.created_at.ToNanoseconds() if msg.HasField("created_at") else 0,
        updated_at=msg.updated_at.ToNanoseconds() if msg.HasField("updated_at") else 0,
        extensions={key: any_from_proto(ext) for key, ext in msg.extensions.items()},
    )
