"""Container records as values (containerd's ``containers`` package).

A container is metadata only: an id, the runtime that will run its tasks, the OCI spec (an
``Any`` whose value is the spec's JSON), the snapshot that holds its root filesystem, the image
it came from, labels and client extensions. Running anything is the tasks' business. ``Any``
values other than the spec are kept byte for byte: the daemon never decodes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SPEC_TYPE_URL", "AnyValue", "Container", "RuntimeInfo"]

#: The type URL of a container spec held in an ``Any`` (the value is the spec's JSON).
SPEC_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


@dataclass(frozen=True)
class AnyValue:
    """A protobuf ``Any``, kept byte for byte: a type URL and the encoded value."""

    type_url: str
    value: bytes


@dataclass(frozen=True)
class RuntimeInfo:
    """The runtime that runs the container's tasks (``io.containerd.runc.v2``) and its options."""

    name: str
    options: AnyValue | None = None


@dataclass(frozen=True)
class Container:
    """A container record in a namespace.

    ``id`` and ``runtime.name`` are immutable, ``snapshotter`` too; ``spec``, ``labels``,
    ``image``, ``snapshot_key`` and ``extensions`` may be updated. Times are nanoseconds since
    the epoch, set by the store.
    """

    id: str
    runtime: RuntimeInfo
    spec: AnyValue | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    created_at: int = 0
    updated_at: int = 0
    extensions: Mapping[str, AnyValue] = field(default_factory=dict)
