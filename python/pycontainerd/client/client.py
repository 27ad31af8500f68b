"""``pycontainerd.Client``: the entry point of the SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from pycontainerd import namespaces as nsmod
from pycontainerd.api.containerd.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)
from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc
from pycontainerd.client.connection import DEFAULT_ADDRESS, Connection
from pycontainerd.client.containers import DEFAULT_RUNTIME, ContainersAPI
from pycontainerd.client.content import ProxyContentStore
from pycontainerd.client.diff import ProxyDiff
from pycontainerd.client.events import EventsAPI, EventStream
from pycontainerd.client.images import (
    ImagesAPI,
    PlatformSpec,
    fetch_image,
    fetch_matcher,
    pull_matcher,
)
from pycontainerd.client.leases import LeasesAPI
from pycontainerd.client.namespaces import NamespacesAPI
from pycontainerd.client.snapshots import ProxySnapshotter
from pycontainerd.client.tasks import ContainerHandle, Task, TasksAPI
from pycontainerd.events import Envelope
from pycontainerd.images.image import Image
from pycontainerd.images.progress import ProgressFunc
from pycontainerd.images.pull import DEFAULT_MAX_CONCURRENT_DOWNLOADS
from pycontainerd.leases import Lease
from pycontainerd.platforms import Platform
from pycontainerd.remotes import Resolver
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER
from pycontainerd.unpack import UnpackResult

if TYPE_CHECKING:
    from pycontainerd import cio
    from pycontainerd.client.run import MountSpec, RunResult

__all__ = ["Client", "PluginInfo", "ServerInfo", "Version"]

Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Version:
    """The daemon's version and the revision it was built from."""

    version: str
    revision: str


@dataclass(frozen=True)
class ServerInfo:
    """Who the daemon is: its UUID stays the same across restarts."""

    uuid: str


@dataclass(frozen=True)
class PluginInfo:
    """One plugin of the daemon, and the error that stopped it if it failed."""

    type: str
    id: str
    requires: tuple[str, ...] = ()
    platforms: tuple[Platform, ...] = ()
    exports: Mapping[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    error: str | None = None

    @property
    def status(self) -> str:
        """``ok``, ``skip`` (the plugin does not apply here) or ``error``, as ctr shows them."""
        if self.error is None:
            return "ok"
        return "skip" if "skip plugin" in self.error else "error"


def _plugin_from_proto(p: introspection_pb2.Plugin) -> PluginInfo:
    return PluginInfo(
        type=p.type,
        id=p.id,
        requires=tuple(p.requires),
        platforms=tuple(Platform(x.os, x.architecture, x.variant) for x in p.platforms),
        exports=dict(p.exports),
        capabilities=tuple(p.capabilities),
        error=(p.init_err.message or f"code {p.init_err.code}") if p.HasField("init_err") else None,
    )


class Client:
    """A connection to a pycontainerd (or containerd) daemon.

    ``with Client("/run/pycontainerd/pycontainerd.sock", namespace="default") as c:``. The
    constructor connects, and fails with :class:`~pycontainerd.errdefs.Unavailable` naming the
    address when no daemon answers within ``timeout`` seconds. ``call_timeout`` bounds each call.

    ``lease``, when set (or inside :meth:`with_lease`), is sent with the client's calls:
    the content they write belongs to that lease.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        namespace: str = nsmod.DEFAULT,
        timeout: float = 10.0,
        call_timeout: float | None = None,
        lease: str | None = None,
    ) -> None:
        self.address = address or DEFAULT_ADDRESS
        self.namespace = namespace
        self.lease = lease
        self._conn = Connection(self.address, timeout=timeout)
        self._call_timeout = call_timeout
        self._version = version_pb2_grpc.VersionStub(self._conn.channel)
        self._introspection = introspection_pb2_grpc.IntrospectionStub(self._conn.channel)
        self.namespaces = NamespacesAPI(self._conn, call_timeout, lambda: self.namespace)
        self._content: ProxyContentStore | None = None
        self._leases: LeasesAPI | None = None
        self.images = ImagesAPI(self)
        self.containers = ContainersAPI(self)
        self.tasks = TasksAPI(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; the client cannot be used afterwards."""
        self._conn.close()

    @property
    def content(self) -> ProxyContentStore:
        """The daemon's content store in this client's namespace (a ``content.Store``)."""
        store = self._content
        if store is None or store.namespace != self.namespace or store.lease != self.lease:
            store = self._content = ProxyContentStore(
                self._conn, self.namespace, timeout=self._call_timeout, lease=self.lease
            )
        return store

    def snapshots(self, name: str = DEFAULT_SNAPSHOTTER) -> ProxySnapshotter:
        """The daemon's snapshotter ``name`` in this client's namespace (a ``Snapshotter``)."""
        return ProxySnapshotter(
            self._conn, self.namespace, name, timeout=self._call_timeout, lease=self.lease
        )

    def diff(self) -> ProxyDiff:
        """The daemon's differ in this client's namespace (``Applier`` and ``Comparer``)."""
        return ProxyDiff(self._conn, self.namespace, timeout=self._call_timeout, lease=self.lease)

    def events(self, *filters: str) -> EventStream:
        """Subscribe to the daemon's events, of every namespace, matching any of ``filters``.

        ``with c.events('topic~="^/images/"') as stream: for ev in stream: ...``; closing
        the stream (from any thread) ends the iteration.
        """
        return self._events_api().subscribe(*filters)

    def publish(self, topic: str, event: Message) -> None:
        """Publish ``event`` under ``topic`` (``/my/topic``) in this client's namespace."""
        self._events_api().publish(topic, event)

    def forward(self, envelope: Envelope) -> None:
        """Forward an envelope as it is (its own namespace and timestamp)."""
        self._events_api().forward(envelope)

    def _events_api(self) -> EventsAPI:
        return EventsAPI(self._conn, self.namespace, self._call_timeout)

    @property
    def leases(self) -> LeasesAPI:
        """The daemon's leases in this client's namespace."""
        api = self._leases
        if api is None or api.namespace != self.namespace:
            api = self._leases = LeasesAPI(self._conn, self.namespace, self._call_timeout)
        return api

    @contextmanager
    def with_lease(
        self, lease: str | Lease | None = None, *, expire: float | timedelta = 24 * 3600
    ) -> Iterator[str]:
        """Make this client's calls in the block carry a lease; yields its id.

        Without ``lease``, as containerd's ``Client.WithLease``: a lease expiring after
        ``expire`` is created and deleted when the block ends, unless the client already
        works under one, which is kept.
        """
        previous = self.lease
        created: str | None = None
        if lease is not None:
            lease_id = lease if isinstance(lease, str) else lease.id
        elif previous:
            lease_id = previous
        else:
            lease_id = created = self.leases.create(expire=expire).id
        self.lease = lease_id
        try:
            yield lease_id
        finally:
            self.lease = previous
            if created is not None:
                self.leases.delete(created)

    def pull(
        self,
        ref: str,
        *,
        platform: PlatformSpec | None = None,
        all_platforms: bool = False,
        resolver: Resolver | None = None,
        plain_http: bool = False,
        max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        labels: Mapping[str, str] | None = None,
        progress: ProgressFunc | None = None,
        unpack: bool = True,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        unpacked: list[UnpackResult] | None = None,
    ) -> Image:
        """Fetch ``ref`` into the content store, record it as an image, and unpack it.

        One platform (default this machine's) pulls the best matching manifest of an index;
        several, or ``all_platforms``, every match. ``resolver`` reaches the registry (default:
        Docker's ``config.json`` credentials, ``certs.d`` hosts, HTTPS unless ``plain_http``).
        ``progress`` is called, from worker threads, with each
        :class:`~pycontainerd.images.progress.Progress`. With ``unpack`` (the default) the
        layers are unpacked into ``snapshotter`` while they download, the first matching
        platform's; ``unpacked`` receives what the unpack did.
        """
        matcher, limit = pull_matcher(platform, all_platforms)
        return fetch_image(
            self,
            ref,
            matcher=matcher,
            limit=limit,
            resolver=resolver,
            plain_http=plain_http,
            max_concurrent_downloads=max_concurrent_downloads,
            labels=labels,
            progress=progress,
            unpack=snapshotter if unpack else None,
            unpacked=unpacked,
        )

    def fetch(
        self,
        ref: str,
        *,
        platform: PlatformSpec | None = None,
        all_platforms: bool = False,
        all_metadata: bool = False,
        resolver: Resolver | None = None,
        plain_http: bool = False,
        max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        labels: Mapping[str, str] | None = None,
        progress: ProgressFunc | None = None,
    ) -> Image:
        """containerd's ``Client.Fetch`` (``ctr content fetch``): every manifest matching
        ``platform`` (default this machine's, exactly), with ``all_metadata`` the other
        platforms' manifests and configs too; recorded as an image."""
        return fetch_image(
            self,
            ref,
            matcher=fetch_matcher(platform, all_platforms),
            limit=0,
            all_metadata=all_metadata,
            resolver=resolver,
            plain_http=plain_http,
            max_concurrent_downloads=max_concurrent_downloads,
            labels=labels,
            progress=progress,
        )

    def container(self, container_id: str) -> ContainerHandle:
        """A handle on the container ``container_id``, to create and find its task."""
        return ContainerHandle(self, container_id)

    @overload
    def run(
        self,
        image: str,
        args: Sequence[str] | None = ...,
        *,
        detach: Literal[False] = ...,
        env: Mapping[str, str] | Sequence[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        mounts: Sequence[MountSpec] = (),
        tty: bool = False,
        stdin: cio.Input | None = None,
        remove: bool = True,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        network: Literal["none", "host"] = "none",
        read_only: bool = False,
        stdout: cio.Output | None = None,
        stderr: cio.Output | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        runtime: str = DEFAULT_RUNTIME,
        resolver: Resolver | None = None,
        plain_http: bool = False,
        fifo_dir: str | None = None,
    ) -> RunResult: ...

    @overload
    def run(
        self,
        image: str,
        args: Sequence[str] | None = ...,
        *,
        detach: Literal[True],
        env: Mapping[str, str] | Sequence[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        mounts: Sequence[MountSpec] = (),
        tty: bool = False,
        stdin: cio.Input | None = None,
        remove: bool = True,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        network: Literal["none", "host"] = "none",
        read_only: bool = False,
        stdout: cio.Output | None = None,
        stderr: cio.Output | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        runtime: str = DEFAULT_RUNTIME,
        resolver: Resolver | None = None,
        plain_http: bool = False,
        fifo_dir: str | None = None,
    ) -> Task: ...

    def run(
        self,
        image: str,
        args: Sequence[str] | None = None,
        *,
        detach: bool = False,
        env: Mapping[str, str] | Sequence[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        mounts: Sequence[MountSpec] = (),
        tty: bool = False,
        stdin: cio.Input | None = None,
        remove: bool = True,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        network: Literal["none", "host"] = "none",
        read_only: bool = False,
        stdout: cio.Output | None = None,
        stderr: cio.Output | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        runtime: str = DEFAULT_RUNTIME,
        resolver: Resolver | None = None,
        plain_http: bool = False,
        fifo_dir: str | None = None,
    ) -> RunResult | Task:
        """Run ``args`` (default: the image's entrypoint and command) in a new container.

        The image is pulled (``resolver``, ``plain_http``) and unpacked into ``snapshotter``
        if missing. Keywords: ``env`` (a mapping or ``KEY=VALUE`` strings), ``cwd``,
        ``user`` (``uid[:gid]`` or names from the container's ``/etc/passwd``), ``mounts``
        (OCI mount objects, ``Mount`` values or ctr's ``type=bind,src=..,dst=..``), ``tty``,
        ``stdin`` (bytes, text, a file descriptor or a readable stream), ``remove`` (default
        True: the container and its snapshot go when the task is deleted), ``name`` (the
        container id, default random), ``labels``, ``memory`` (bytes), ``cpus``, ``network``
        (``"none"``, the default: a network namespace of its own; or ``"host"``),
        ``read_only``, ``stdout`` and ``stderr`` (a stream, file or descriptor; default
        captured), ``runtime``, ``fifo_dir``.

        Without ``detach``, waits for the exit and returns a
        :class:`~pycontainerd.client.run.RunResult` (exit status, captured stdout and
        stderr); the task is deleted. With ``detach``, returns the started
        :class:`~pycontainerd.client.tasks.Task`: ``wait()``, then ``delete()``; captured
        output is ``task.io.stdout_data`` and ``task.io.stderr_data``.
        """
        from pycontainerd.client.run import run

        return run(
            self,
            image,
            args,
            detach=detach,
            env=env,
            cwd=cwd,
            user=user,
            mounts=mounts,
            tty=tty,
            stdin=stdin,
            remove=remove,
            name=name,
            labels=labels,
            memory=memory,
            cpus=cpus,
            network=network,
            read_only=read_only,
            stdout=stdout,
            stderr=stderr,
            snapshotter=snapshotter,
            runtime=runtime,
            resolver=resolver,
            plain_http=plain_http,
            fifo_dir=fifo_dir,
        )

    @property
    def channel(self) -> grpc.Channel:
        """The gRPC channel, for the raw stubs of ``pycontainerd.api``."""
        return self._conn.channel

    def call(
        self, method: Callable[..., Resp], request: Any, *, timeout: float | None = None
    ) -> Resp:
        """Invoke a raw stub method in this client's namespace; errors become ``errdefs``.

        ``c.call(ImagesStub(c.channel).List, ListImagesRequest())``; the client's lease, if
        any, goes with it.
        """
        return self._conn.call(
            method,
            request,
            namespace=self.namespace,
            lease=self.lease,
            timeout=timeout or self._call_timeout,
        )

    def version(self) -> Version:
        resp = self._conn.call(self._version.Version, empty_pb2.Empty(), timeout=self._call_timeout)
        return Version(resp.version, resp.revision)

    def server(self) -> ServerInfo:
        resp = self._conn.call(
            self._introspection.Server, empty_pb2.Empty(), timeout=self._call_timeout
        )
        return ServerInfo(resp.uuid)

    def plugins(self, filters: Sequence[str] = ()) -> list[PluginInfo]:
        """The daemon's plugins, optionally filtered (``type==io.containerd.grpc.v1``)."""
        req = introspection_pb2.PluginsRequest(filters=list(filters))
        resp = self._conn.call(self._introspection.Plugins, req, timeout=self._call_timeout)
        return [_plugin_from_proto(p) for p in resp.plugins]
