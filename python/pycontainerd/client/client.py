"""``pycontainerd.Client``: the entry point of the SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

from pycontainerd import namespaces as nsmod
from pycontainerd.client.connection import DEFAULT_ADDRESS, Connection

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

    from pycontainerd import cio
    from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2
    from pycontainerd.client.containers import ContainersAPI
    from pycontainerd.client.content import ProxyContentStore
    from pycontainerd.client.diff import ProxyDiff
    from pycontainerd.client.events import EventsAPI, EventStream
    from pycontainerd.client.images import ImagesAPI, PlatformSpec
    from pycontainerd.client.leases import LeasesAPI
    from pycontainerd.client.namespaces import NamespacesAPI
    from pycontainerd.client.run import MountSpec, RunResult
    from pycontainerd.client.snapshots import ProxySnapshotter
    from pycontainerd.client.tasks import ContainerHandle, Task, TasksAPI
    from pycontainerd.events import Envelope
    from pycontainerd.images.image import Image
    from pycontainerd.images.progress import ProgressFunc
    from pycontainerd.leases import Lease
    from pycontainerd.platforms import Platform
    from pycontainerd.remotes import Resolver
    from pycontainerd.unpack import UnpackResult

__all__ = ["Client", "PluginInfo", "ServerInfo", "Version"]

Resp = TypeVar("Resp")

# Defaults of the keyword arguments below, spelled here so that importing the client loads
# neither the image nor the snapshot machinery (tests/unit check they match their sources).
#: ``pycontainerd.snapshots.DEFAULT_SNAPSHOTTER``
DEFAULT_SNAPSHOTTER: Final = "overlayfs"
#: ``pycontainerd.client.containers.DEFAULT_RUNTIME``
DEFAULT_RUNTIME: Final = "io.containerd.runc.v2"
#: ``pycontainerd.images.pull.DEFAULT_MAX_CONCURRENT_DOWNLOADS``
DEFAULT_MAX_CONCURRENT_DOWNLOADS: Final = 3


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
    from pycontainerd.platforms import Platform

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

    ``with Client("/run/pycontainerd/pycontainerd.sock", namespace="default") as c:``.
    Making a client does no I/O: the connection is made by the first call, and a daemon
    that cannot be reached (no socket, nobody listening, or gone since) fails that call
    with :class:`~pycontainerd.errdefs.Unavailable` naming the address, at once.
    :meth:`connect` connects now, waiting up to ``timeout`` seconds for a daemon that is
    starting. ``call_timeout`` bounds each call.

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
        self._content: ProxyContentStore | None = None
        self._leases: LeasesAPI | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address!r} namespace={self.namespace!r}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self, timeout: float | None = None) -> None:
        """Connect now (calls connect by themselves): wait up to ``timeout`` seconds (default
        the client's ``timeout``) for a daemon that accepts connections but does not answer
        yet; :class:`~pycontainerd.errdefs.Unavailable` naming the address if none does, at
        once when the socket is missing or nobody listens on it."""
        self._conn.connect(timeout)

    def close(self) -> None:
        """Close the connection; the client cannot be used afterwards."""
        self._conn.close()

    @cached_property
    def namespaces(self) -> NamespacesAPI:
        """The daemon's namespaces."""
        from pycontainerd.client.namespaces import NamespacesAPI

        return NamespacesAPI(self._conn, self._call_timeout, lambda: self.namespace)

    @cached_property
    def images(self) -> ImagesAPI:
        """The image records of this client's namespace, and moving images in and out."""
        from pycontainerd.client.images import ImagesAPI

        return ImagesAPI(self)

    @cached_property
    def containers(self) -> ContainersAPI:
        """The container records of this client's namespace."""
        from pycontainerd.client.containers import ContainersAPI

        return ContainersAPI(self)

    @cached_property
    def tasks(self) -> TasksAPI:
        """The tasks of this client's namespace."""
        from pycontainerd.client.tasks import TasksAPI

        return TasksAPI(self)

    @property
    def content(self) -> ProxyContentStore:
        """The daemon's content store in this client's namespace (a ``content.Store``)."""
        from pycontainerd.client.content import ProxyContentStore

        store = self._content
        if store is None or store.namespace != self.namespace or store.lease != self.lease:
            store = self._content = ProxyContentStore(
                self._conn, self.namespace, timeout=self._call_timeout, lease=self.lease
            )
        return store

    def snapshots(self, name: str = DEFAULT_SNAPSHOTTER) -> ProxySnapshotter:
        """The daemon's snapshotter ``name`` in this client's namespace (a ``Snapshotter``)."""
        from pycontainerd.client.snapshots import ProxySnapshotter

        return ProxySnapshotter(
            self._conn, self.namespace, name, timeout=self._call_timeout, lease=self.lease
        )

    def diff(self) -> ProxyDiff:
        """The daemon's differ in this client's namespace (``Applier`` and ``Comparer``)."""
        from pycontainerd.client.diff import ProxyDiff

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
        from pycontainerd.client.events import EventsAPI

        return EventsAPI(self._conn, self.namespace, self._call_timeout)

    @property
    def leases(self) -> LeasesAPI:
        """The daemon's leases in this client's namespace."""
        from pycontainerd.client.leases import LeasesAPI

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
        from pycontainerd.client.images import fetch_image, pull_matcher

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
        from pycontainerd.client.images import fetch_image, fetch_matcher

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
        from pycontainerd.client.tasks import ContainerHandle

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
        network: str = "none",
        ports: Mapping[int | str, int] | None = None,
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
        network: str = "none",
        ports: Mapping[int | str, int] | None = None,
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
        network: str = "none",
        ports: Mapping[int | str, int] | None = None,
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
        (``"none"``, the default: a network namespace of its own; ``"host"``; or a CNI
        network's name such as ``"bridge"``, attached by the daemon), ``ports`` (published
        on a CNI network: ``{8080: 80}``, ``{"5353/udp": 53}``),
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
            ports=ports,
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
        """The daemon's version and revision."""
        from google.protobuf import empty_pb2

        from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc

        stub = version_pb2_grpc.VersionStub(self.channel)
        resp = self._conn.call(stub.Version, empty_pb2.Empty(), timeout=self._call_timeout)
        return Version(resp.version, resp.revision)

    def server(self) -> ServerInfo:
        """Who the daemon is (its UUID)."""
        from google.protobuf import empty_pb2

        from pycontainerd.api.containerd.services.introspection.v1 import introspection_pb2_grpc

        stub = introspection_pb2_grpc.IntrospectionStub(self.channel)
        resp = self._conn.call(stub.Server, empty_pb2.Empty(), timeout=self._call_timeout)
        return ServerInfo(resp.uuid)

    def plugins(self, filters: Sequence[str] = ()) -> list[PluginInfo]:
        """The daemon's plugins, optionally filtered (``type==io.containerd.grpc.v1``)."""
        from pycontainerd.api.containerd.services.introspection.v1 import (
            introspection_pb2,
            introspection_pb2_grpc,
        )

        stub = introspection_pb2_grpc.IntrospectionStub(self.channel)
        req = introspection_pb2.PluginsRequest(filters=list(filters))
        resp = self._conn.call(stub.Plugins, req, timeout=self._call_timeout)
        return [_plugin_from_proto(p) for p in resp.plugins]
