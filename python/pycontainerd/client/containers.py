"""``Client.containers``: container records, and new containers from images.

::

    c.containers.create(Container("web", RuntimeInfo("io.containerd.runc.v2"), spec=...))
    c.containers.create_from_image("web", "docker.io/library/alpine:latest", args=["sh"])
    c.containers.list("labels.app==web")
    c.containers.delete("web", cleanup_snapshot=True)

Records go through the Containers service in the client's namespace. ``create_from_image``
does what containerd's ``NewContainer`` with ``WithNewSnapshot`` and ``WithNewSpec`` does for
``ctr run``: a snapshot on top of the image's unpacked layers (key = the container id), a spec
from the image config (the user looked up in the snapshot's own ``/etc/passwd``), and the
record; all under a lease so that garbage collection cannot take the snapshot before the
record holds it, and nothing is left behind when a step fails.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import field_mask_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.client.snapshots import ProxySnapshotter
from pycontainerd.containers import AnyValue, Container, RuntimeInfo
from pycontainerd.containers.proto import container_from_proto, container_to_proto
from pycontainerd.content import read_blob
from pycontainerd.fieldpath import validate_label
from pycontainerd.images import image as imagesmod
from pycontainerd.images.image import Image
from pycontainerd.images.rootfs import chain_id
from pycontainerd.oci import (
    SpecOpt,
    generate_spec,
    root_from_mounts,
    spec_to_any,
    with_default_unix_devices,
    with_image_config,
    with_process_args,
)
from pycontainerd.platforms import MatchComparer, default
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER

if TYPE_CHECKING:
    from pycontainerd.client.client import Client

__all__ = [
    "DEFAULT_RUNTIME",
    "STOP_SIGNAL_LABEL",
    "ContainersAPI",
    "ImageConfigInfo",
    "image_config",
]

#: ctr's default runtime.
DEFAULT_RUNTIME: Final = "io.containerd.runc.v2"
#: How long the lease of a container being created lives if the client never removes it.
LEASE_EXPIRY: Final = 3600.0
#: The label holding the image's stop signal (containerd's ``WithImageStopSignal``).
STOP_SIGNAL_LABEL: Final = "io.containerd.image.config.stop-signal"


class ImageConfigInfo:
    """An image's config for one platform: the raw document and the parts a container needs."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"image config is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise errdefs.InvalidArgument("image config is not a JSON object")
        self.doc: dict[str, Any] = doc
        rootfs = doc.get("rootfs") or {}
        self.diff_ids: list[str] = list(rootfs.get("diff_ids") or [])
        config = doc.get("config") or {}
        self.labels: dict[str, str] = dict(config.get("Labels") or {})
        self.stop_signal: str = config.get("StopSignal") or ""

    @property
    def chain_id(self) -> str:
        """The chain ID of the image's whole layer stack: its top snapshot when unpacked."""
        return chain_id(self.diff_ids)


def image_config(
    client: Client, image: Image, platform: MatchComparer | None = None
) -> ImageConfigInfo:
    """The config of ``image`` for ``platform`` (default: this machine's), from the content
    store."""
    manifest = imagesmod.manifest(client.content, image.target, platform or default())
    return ImageConfigInfo(read_blob(client.content, manifest.config))


class ContainersAPI:
    """The container records of the client's namespace."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = containers_pb2_grpc.ContainersStub(client.channel)

    # --- records ---------------------------------------------------------------------------

    def get(self, container_id: str) -> Container:
        """The container ``container_id``; :class:`~pycontainerd.errdefs.NotFound` if none."""
        req = containers_pb2.GetContainerRequest(id=container_id)
        return container_from_proto(self._client.call(self._stub.Get, req).container)

    def list(self, *filters: str) -> builtins.list[Container]:
        """Containers matching any of ``filters`` (``labels.app==web``, ``image==x``,
        ``runtime.name==...``, ``id~=^web``); all without."""
        req = containers_pb2.ListContainersRequest(filters=list(filters))
        return [container_from_proto(c) for c in self._client.call(self._stub.List, req).containers]

    def create(
        self,
        container: Container | str,
        *,
        runtime: str | RuntimeInfo = DEFAULT_RUNTIME,
        spec: Mapping[str, Any] | AnyValue | None = None,
        image: str = "",
        snapshotter: str = "",
        snapshot_key: str = "",
        labels: Mapping[str, str] | None = None,
        extensions: Mapping[str, AnyValue] | None = None,
    ) -> Container:
        """Record a container: a :class:`Container`, or an id with the fields as keywords (a
        ``spec`` given as a ``dict`` is stored as JSON under the runtime spec's type URL)."""
        if isinstance(container, Container):
            record = container
        else:
            if isinstance(spec, Mapping):
                spec = spec_to_any(dict(spec))
            record = Container(
                id=container,
                runtime=RuntimeInfo(runtime) if isinstance(runtime, str) else runtime,
                spec=spec,
                labels=dict(labels or {}),
                image=image,
                snapshotter=snapshotter,
                snapshot_key=snapshot_key,
                extensions=dict(extensions or {}),
            )
        req = containers_pb2.CreateContainerRequest(container=container_to_proto(record))
        return container_from_proto(self._client.call(self._stub.Create, req).container)

    def update(self, container: Container, *fieldpaths: str) -> Container:
        """Update ``container.id``: the fields ``fieldpaths`` name (``labels.K``, ``labels``,
        ``spec``, ``image``, ``snapshotkey``, ``extensions``, ``extensions.K``), or without
        any, every mutable field."""
        req = containers_pb2.UpdateContainerRequest(container=container_to_proto(container))
        if fieldpaths:
            req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(fieldpaths)))
        return container_from_proto(self._client.call(self._stub.Update, req).container)

    def set_labels(self, container_id: str, labels: Mapping[str, str]) -> dict[str, str]:
        """Set (or with an empty value, remove) labels; returns all the container's labels."""
        record = Container(container_id, RuntimeInfo(""), labels=dict(labels))
        paths = [f"labels.{key}" for key in labels]
        if not paths:
            return dict(self.get(container_id).labels)
        return dict(self.update(record, *paths).labels)

    def delete(self, container_id: str, *, cleanup_snapshot: bool = False) -> None:
        """Delete the record; with ``cleanup_snapshot``, its snapshot first (as
        ``ctr containers rm``). A container with a task is refused."""
        if self._has_task(container_id):
            raise errdefs.FailedPrecondition(f"cannot delete running task {container_id}")
        if cleanup_snapshot:
            record = self.get(container_id)
            if record.snapshotter and record.snapshot_key:
                with contextlib.suppress(errdefs.NotFound):
                    self._client.snapshots(record.snapshotter).remove(record.snapshot_key)
        req = containers_pb2.DeleteContainerRequest(id=container_id)
        self._client.call(self._stub.Delete, req)

    def _has_task(self, container_id: str) -> bool:
        stub = tasks_pb2_grpc.TasksStub(self._client.channel)
        try:
            self._client.call(stub.Get, tasks_pb2.GetRequest(container_id=container_id))
        except (errdefs.NotFound, errdefs.NotImplemented):
            return False
        return True

    # --- from an image ---------------------------------------------------------------------

    def create_from_image(
        self,
        container_id: str,
        image: str | Image,
        *,
        args: Sequence[str] | None = None,
        spec_opts: Sequence[SpecOpt] = (),
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        runtime: str | RuntimeInfo = DEFAULT_RUNTIME,
        labels: Mapping[str, str] | None = None,
        snapshot_labels: Mapping[str, str] | None = None,
        platform: MatchComparer | None = None,
    ) -> Container:
        """A container running ``image`` as ``ctr run`` would create it.

        The image must be unpacked for ``snapshotter`` (its top chain ID a committed snapshot);
        the container's snapshot is ``container_id`` on top of it. The spec is containerd's
        default with the standard devices and the image config; ``args`` replace the image's
        entrypoint and command; ``spec_opts`` come after. Labels are the image config's, the
        image record's, ``labels``, and the stop signal.
        """
        client = self._client
        img = client.images.get(image) if isinstance(image, str) else image
        cfg = image_config(client, img, platform)
        parent = cfg.chain_id
        sn = client.snapshots(snapshotter)
        if parent:
            try:
                sn.stat(parent)
            except errdefs.NotFound:
                raise errdefs.NotFound(
                    f'image "{img.name}" is not unpacked for snapshotter "{snapshotter}": '
                    f'snapshot "{parent}" not found'
                ) from None
        record_labels: dict[str, str] = dict(cfg.labels)
        for key, value in img.labels.items():
            try:
                validate_label(key, value)
            except errdefs.InvalidArgument:
                continue
            record_labels[key] = value
        record_labels.update(labels or {})
        record_labels[STOP_SIGNAL_LABEL] = cfg.stop_signal or "SIGTERM"
        # the snapshot is leased until the record holds it; the client itself is not changed,
        # so that threads may share it
        lease = client.lease or client.leases.create(expire=LEASE_EXPIRY).id
        try:
            sn = ProxySnapshotter(
                client._conn,
                client.namespace,
                snapshotter,
                timeout=client._call_timeout,
                lease=lease,
            )
            mounts = sn.prepare(container_id, parent, labels=dict(snapshot_labels or {}))
            try:
                opts: builtins.list[SpecOpt] = [
                    with_default_unix_devices(),
                    with_image_config(cfg.raw, root_from_mounts(mounts)),
                ]
                if args:
                    opts.append(with_process_args(*args))
                spec = generate_spec(client.namespace, container_id, *opts, *spec_opts)
                return self.create(
                    container_id,
                    runtime=runtime,
                    spec=spec_to_any(spec),
                    image=img.name,
                    snapshotter=snapshotter,
                    snapshot_key=container_id,
                    labels=record_labels,
                )
            except BaseException:
                with contextlib.suppress(errdefs.ContainerdError):
                    sn.remove(container_id)
                raise
        finally:
            if lease != client.lease:
                with contextlib.suppress(errdefs.ContainerdError):
                    client.leases.delete(lease)
