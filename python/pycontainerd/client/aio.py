"""``pycontainerd.AsyncClient``: the SDK for asyncio, over the same implementation.

::

    async with AsyncClient(address, namespace="default") as c:
        await c.pull("docker.io/library/busybox:latest")
        res = await c.run("docker.io/library/busybox:latest", ["echo", "hi"])
        await res.wait()                                  # its ExitStatus
        async with c.events('topic~="^/tasks/"') as stream:
            async for ev in stream: ...

Every object here wraps the synchronous one of :class:`~pycontainerd.Client` and runs its
blocking calls on the client's thread pool (``max_workers`` threads, made as needed), so both
clients behave alike by construction: same arguments, results and ``errdefs`` errors. Methods
are delegated by name (:class:`_aio`), and only those returning a handle (a task, a process,
a lease, an event stream, a reader or a writer) are written out, to wrap the handle.

Calls run concurrently up to ``max_workers`` at a time; a blocking call (``Task.wait``, an
event stream's next event) holds a thread until it returns. Cancelling an ``await`` stops
waiting for the result, not the call itself (gRPC's sync calls cannot be interrupted but by
their deadline or :meth:`AsyncClient.aclose`). Callbacks given to a call (``progress``,
``walk``'s function) run on a pool thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    overload,
)

from pycontainerd import errdefs
from pycontainerd import namespaces as nsmod
from pycontainerd.client.client import (
    DEFAULT_RUNTIME,
    DEFAULT_SNAPSHOTTER,
    Client,
)
from pycontainerd.client.connection import DEFAULT_ADDRESS

if TYPE_CHECKING:
    import grpc

    from pycontainerd import cio
    from pycontainerd.client.containers import ContainersAPI
    from pycontainerd.client.content import ProxyContentStore, RemoteReaderAt, RemoteWriter
    from pycontainerd.client.diff import ProxyDiff
    from pycontainerd.client.events import Event, EventStream
    from pycontainerd.client.images import ImagesAPI
    from pycontainerd.client.leases import LeaseHandle, LeasesAPI
    from pycontainerd.client.namespaces import NamespacesAPI
    from pycontainerd.client.run import MountSpec, RunResult
    from pycontainerd.client.snapshots import ProxySnapshotter
    from pycontainerd.client.tasks import ContainerHandle, ExitStatus, Process, Task, TasksAPI
    from pycontainerd.containers import Container
    from pycontainerd.descriptor import Descriptor
    from pycontainerd.leases import Lease
    from pycontainerd.remotes import Resolver

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "AsyncClient",
    "AsyncContainerHandle",
    "AsyncContainers",
    "AsyncContentStore",
    "AsyncDiff",
    "AsyncEventStream",
    "AsyncImages",
    "AsyncLeaseHandle",
    "AsyncLeases",
    "AsyncNamespaces",
    "AsyncProcess",
    "AsyncReaderAt",
    "AsyncRunResult",
    "AsyncSnapshotter",
    "AsyncTask",
    "AsyncTasks",
    "AsyncWriter",
]

#: Threads an :class:`AsyncClient` runs blocking calls on, at most (made as needed).
DEFAULT_MAX_WORKERS: Final = 64

_S = TypeVar("_S")
_S_co = TypeVar("_S_co", covariant=True)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_END: Final = object()


class _Runner:
    """Runs blocking calls of the sync core on a thread pool, in the caller's context."""

    def __init__(self, max_workers: int, what: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="pycontainerd-aio")
        self._what = what
        self._closed = False

    async def __call__(self, fn: Callable[[], _R]) -> _R:
        if self._closed:
            raise errdefs.FailedPrecondition(f"{self._what} is closed")
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, functools.partial(ctx.run, fn))

    def shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Async(Generic[_S]):
    """An async face of the sync object ``sync``: its methods run on ``runner``'s pool."""

    def __init__(self, sync: _S, runner: _Runner) -> None:
        self._sync = sync
        self._run = runner

    @property
    def sync(self) -> _S:
        """The synchronous object behind this one."""
        return self._sync

    def __repr__(self) -> str:
        return f"<async {self._sync!r}>"


class _HasSync(Protocol[_S_co]):
    @property
    def sync(self) -> _S_co: ...

    @property
    def _run(self) -> _Runner: ...


class _aio(Generic[_S, _P, _R]):
    """An async method delegating to the sync object's method of the same name.

    ``get = _aio(lambda: ImagesAPI.get)``: the lambda is never called; it only gives the
    type checker the sync method, so the async one has its parameters and result. At run
    time the method is looked up by name on the wrapped object, which keeps importing this
    module cheap (the sync modules load when a client first needs them).
    """

    def __init__(self, signature: Callable[[], Callable[Concatenate[_S, _P], _R]]) -> None:
        self._signature = signature
        self._name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name
        self.__doc__ = f"Async ``{name}``: the sync object's method, run on the client's pool."

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(
        self, obj: _HasSync[_S], owner: type[Any]
    ) -> Callable[_P, Coroutine[Any, Any, _R]]: ...

    def __get__(self, obj: _HasSync[_S] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        method: Callable[_P, _R] = getattr(obj.sync, self._name)
        run = obj._run

        async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            return await run(lambda: method(*args, **kwargs))

        call.__name__ = call.__qualname__ = self._name
        call.__doc__ = method.__doc__
        return call


# --- stores -------------------------------------------------------------------------------


class AsyncReaderAt(_Async["RemoteReaderAt"]):
    """A blob being read (:class:`~pycontainerd.client.content.RemoteReaderAt`)."""

    read_at = _aio(lambda: RemoteReaderAt.read_at)
    close = _aio(lambda: RemoteReaderAt.close)

    @property
    def size(self) -> int:
        """The blob's size."""
        return self._sync.size

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncWriter(_Async["RemoteWriter"]):
    """An ingest being written (:class:`~pycontainerd.client.content.RemoteWriter`)."""

    write = _aio(lambda: RemoteWriter.write)
    digest = _aio(lambda: RemoteWriter.digest)
    status = _aio(lambda: RemoteWriter.status)
    commit = _aio(lambda: RemoteWriter.commit)
    truncate = _aio(lambda: RemoteWriter.truncate)
    close = _aio(lambda: RemoteWriter.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncContentStore(_Async["ProxyContentStore"]):
    """The daemon's content store (:class:`~pycontainerd.client.content.ProxyContentStore`)."""

    info = _aio(lambda: ProxyContentStore.info)
    update = _aio(lambda: ProxyContentStore.update)
    walk = _aio(lambda: ProxyContentStore.walk)
    delete = _aio(lambda: ProxyContentStore.delete)
    status = _aio(lambda: ProxyContentStore.status)
    list_statuses = _aio(lambda: ProxyContentStore.list_statuses)
    abort = _aio(lambda: ProxyContentStore.abort)

    async def reader_at(self, desc: Descriptor | str) -> AsyncReaderAt:
        """A reader of the blob ``desc`` (a descriptor or a digest)."""
        return AsyncReaderAt(await self._run(lambda: self._sync.reader_at(desc)), self._run)

    async def writer(self, ref: str, *, desc: Descriptor | None = None) -> AsyncWriter:
        """A writer of the ingest ``ref`` (``desc``: the expected descriptor)."""
        return AsyncWriter(await self._run(lambda: self._sync.writer(ref, desc=desc)), self._run)

    async def read_blob(self, desc: Descriptor | str) -> bytes:
        """The whole blob ``desc`` (a descriptor or a digest)."""

        def read() -> bytes:
            with self._sync.reader_at(desc) as r:
                return r.read_at(0, r.size)

        return await self._run(read)


class AsyncSnapshotter(_Async["ProxySnapshotter"]):
    """A snapshotter of the daemon (:class:`~pycontainerd.client.snapshots.ProxySnapshotter`)."""

    stat = _aio(lambda: ProxySnapshotter.stat)
    update = _aio(lambda: ProxySnapshotter.update)
    usage = _aio(lambda: ProxySnapshotter.usage)
    mounts = _aio(lambda: ProxySnapshotter.mounts)
    prepare = _aio(lambda: ProxySnapshotter.prepare)
    view = _aio(lambda: ProxySnapshotter.view)
    commit = _aio(lambda: ProxySnapshotter.commit)
    remove = _aio(lambda: ProxySnapshotter.remove)
    walk = _aio(lambda: ProxySnapshotter.walk)
    cleanup = _aio(lambda: ProxySnapshotter.cleanup)
    close = _aio(lambda: ProxySnapshotter.close)


class AsyncDiff(_Async["ProxyDiff"]):
    """The daemon's differ (:class:`~pycontainerd.client.diff.ProxyDiff`)."""

    apply = _aio(lambda: ProxyDiff.apply)
    compare = _aio(lambda: ProxyDiff.compare)


# --- records ------------------------------------------------------------------------------


class AsyncNamespaces(_Async["NamespacesAPI"]):
    """The daemon's namespaces (:class:`~pycontainerd.client.namespaces.NamespacesAPI`)."""

    create = _aio(lambda: NamespacesAPI.create)
    get = _aio(lambda: NamespacesAPI.get)
    list = _aio(lambda: NamespacesAPI.list)
    labels = _aio(lambda: NamespacesAPI.labels)
    set_label = _aio(lambda: NamespacesAPI.set_label)
    update = _aio(lambda: NamespacesAPI.update)
    delete = _aio(lambda: NamespacesAPI.delete)


class AsyncImages(_Async["ImagesAPI"]):
    """Image records and moving images in and out
    (:class:`~pycontainerd.client.images.ImagesAPI`)."""

    get = _aio(lambda: ImagesAPI.get)
    list = _aio(lambda: ImagesAPI.list)
    create = _aio(lambda: ImagesAPI.create)
    update = _aio(lambda: ImagesAPI.update)
    delete = _aio(lambda: ImagesAPI.delete)
    create_or_update = _aio(lambda: ImagesAPI.create_or_update)
    tag = _aio(lambda: ImagesAPI.tag)
    set_labels = _aio(lambda: ImagesAPI.set_labels)
    size = _aio(lambda: ImagesAPI.size)
    platforms = _aio(lambda: ImagesAPI.platforms)
    check = _aio(lambda: ImagesAPI.check)
    chain_id = _aio(lambda: ImagesAPI.chain_id)
    is_unpacked = _aio(lambda: ImagesAPI.is_unpacked)
    unpack = _aio(lambda: ImagesAPI.unpack)
    push = _aio(lambda: ImagesAPI.push)
    export = _aio(lambda: ImagesAPI.export)
    import_ = _aio(lambda: ImagesAPI.import_)


class AsyncContainers(_Async["ContainersAPI"]):
    """Container records (:class:`~pycontainerd.client.containers.ContainersAPI`)."""

    get = _aio(lambda: ContainersAPI.get)
    list = _aio(lambda: ContainersAPI.list)
    create = _aio(lambda: ContainersAPI.create)
    update = _aio(lambda: ContainersAPI.update)
    set_labels = _aio(lambda: ContainersAPI.set_labels)
    delete = _aio(lambda: ContainersAPI.delete)
    create_from_image = _aio(lambda: ContainersAPI.create_from_image)


# --- leases -------------------------------------------------------------------------------


class AsyncLeaseHandle(_Async["LeaseHandle"]):
    """A lease this client made or found (:class:`~pycontainerd.client.leases.LeaseHandle`);
    ``async with`` deletes it when the block ends."""

    delete = _aio(lambda: LeaseHandle.delete)
    add_resource = _aio(lambda: LeaseHandle.add_resource)
    delete_resource = _aio(lambda: LeaseHandle.delete_resource)
    resources = _aio(lambda: LeaseHandle.resources)

    @property
    def id(self) -> str:
        """The lease's id."""
        return self._sync.id

    @property
    def labels(self) -> Mapping[str, str]:
        """The lease's labels."""
        return self._sync.labels

    @property
    def created_at(self) -> int:
        """When the lease was made, in nanoseconds since the epoch."""
        return self._sync.created_at

    @property
    def content(self) -> AsyncContentStore:
        """The content store of the lease's namespace; what is written there is leased."""
        return AsyncContentStore(self._sync.content, self._run)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._run(lambda: self._sync.__exit__(exc_type, exc, tb))


class AsyncLeases(_Async["LeasesAPI"]):
    """The leases of the client's namespace (:class:`~pycontainerd.client.leases.LeasesAPI`)."""

    list = _aio(lambda: LeasesAPI.list)
    delete = _aio(lambda: LeasesAPI.delete)
    add_resource = _aio(lambda: LeasesAPI.add_resource)
    delete_resource = _aio(lambda: LeasesAPI.delete_resource)
    list_resources = _aio(lambda: LeasesAPI.list_resources)

    def content_store(self, lease: str | Lease) -> AsyncContentStore:
        """The namespace's content store, every call under ``lease``."""
        return AsyncContentStore(self._sync.content_store(lease), self._run)

    async def create(
        self,
        id: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        expire: float | timedelta | None = None,
        flat: bool = False,
    ) -> AsyncLeaseHandle:
        """Create a lease (``LeasesAPI.create``): ``async with await c.leases.create():``."""
        handle = await self._run(
            lambda: self._sync.create(id, labels=labels, expire=expire, flat=flat)
        )
        return AsyncLeaseHandle(handle, self._run)

    async def get(self, id: str) -> AsyncLeaseHandle:
        """The lease ``id``; NotFound when there is none."""
        return AsyncLeaseHandle(await self._run(lambda: self._sync.get(id)), self._run)


# --- events -------------------------------------------------------------------------------


class AsyncEventStream(_Async["EventStream"]):
    """A running subscription: ``async for ev in stream``; :meth:`aclose` ends it.

    Each step waits for the next event on a pool thread. Closing (from anywhere) ends the
    iteration without error; a lost daemon raises ``Unavailable``.
    """

    def __init__(self, sync: EventStream, runner: _Runner) -> None:
        super().__init__(sync, runner)
        self._events = iter(sync)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        event = await self._run(lambda: next(self._events, _END))
        if event is _END:
            raise StopAsyncIteration
        return event  # type: ignore[return-value]

    def close(self) -> None:
        """End the subscription (does not block)."""
        self._sync.close()

    async def aclose(self) -> None:
        """End the subscription."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- tasks --------------------------------------------------------------------------------


class AsyncProcess(_Async["Process"]):
    """A process of a task (:class:`~pycontainerd.client.tasks.Process`): ``await p.start()``,
    ``await p.wait()``..."""

    start = _aio(lambda: Process.start)
    wait = _aio(lambda: Process.wait)
    kill = _aio(lambda: Process.kill)
    status = _aio(lambda: Process.status)
    close_stdin = _aio(lambda: Process.close_stdin)
    resize = _aio(lambda: Process.resize)
    delete = _aio(lambda: Process.delete)

    @property
    def id(self) -> str:
        """The exec id, or the container's for the task itself."""
        return self._sync.id

    @property
    def container_id(self) -> str:
        """The container whose task this process belongs to."""
        return self._sync.container_id

    @property
    def exec_id(self) -> str:
        """The exec id (empty for the task's init process)."""
        return self._sync.exec_id

    @property
    def pid(self) -> int:
        """The process's pid (0 before it started)."""
        return self._sync.pid

    @property
    def io(self) -> cio.IO:
        """The client's side of the process's stdio (``io.stdout_data`` when captured)."""
        return self._sync.io

    def wait_future(self) -> asyncio.Future[ExitStatus]:
        """Start waiting now (call it before :meth:`start`); await the future for the exit."""
        return asyncio.wrap_future(self._sync.wait_future())


class AsyncTask(AsyncProcess):
    """A container's task (:class:`~pycontainerd.client.tasks.Task`), its calls awaitable."""

    _sync: Task

    pause = _aio(lambda: Task.pause)
    resume = _aio(lambda: Task.resume)
    pids = _aio(lambda: Task.pids)
    metrics = _aio(lambda: Task.metrics)

    def __init__(self, sync: Task, runner: _Runner) -> None:
        super().__init__(sync, runner)

    @property
    def sync(self) -> Task:
        """The synchronous task behind this one."""
        return self._sync

    async def update(self, resources: Mapping[str, Any] | None = None, **annotations: str) -> None:
        """Change the task's resources (an OCI ``linux.resources`` object) and annotations."""
        await self._run(lambda: self._sync.update(resources, **annotations))

    @property
    def remove_container(self) -> bool:
        """Whether :meth:`delete` removes the container and its snapshot too."""
        return self._sync.remove_container

    async def exec(self, exec_id: str, args: Sequence[str], **kwargs: Any) -> AsyncProcess:
        """A new process in the task (``Task.exec``, same keywords), not started yet."""
        return AsyncProcess(
            await self._run(lambda: self._sync.exec(exec_id, args, **kwargs)), self._run
        )

    async def load_process(self, exec_id: str, *, io: cio.IO | None = None) -> AsyncProcess:
        """A handle on the task's existing process ``exec_id``."""
        return AsyncProcess(
            await self._run(lambda: self._sync.load_process(exec_id, io=io)), self._run
        )


class AsyncTasks(_Async["TasksAPI"]):
    """The tasks of the client's namespace (:class:`~pycontainerd.client.tasks.TasksAPI`)."""

    list = _aio(lambda: TasksAPI.list)
    metrics = _aio(lambda: TasksAPI.metrics)

    async def create(
        self,
        container: str | Container,
        *,
        io: cio.Creator | None = None,
        runtime_path: str = "",
        remove_container: bool = False,
    ) -> AsyncTask:
        """Create the task of ``container`` (``TasksAPI.create``; ``io`` default none)."""

        def create() -> Task:
            kw: dict[str, Any] = {} if io is None else {"io": io}
            return self._sync.create(
                container, runtime_path=runtime_path, remove_container=remove_container, **kw
            )

        return AsyncTask(await self._run(create), self._run)

    async def get(
        self, container_id: str, *, attach: Callable[[cio.IOConfig], cio.IO] | None = None
    ) -> AsyncTask:
        """The task of ``container_id`` (NotFound if none)."""
        return AsyncTask(
            await self._run(lambda: self._sync.get(container_id, attach=attach)), self._run
        )


class AsyncContainerHandle(_Async["ContainerHandle"]):
    """A container to start tasks in (:class:`~pycontainerd.client.tasks.ContainerHandle`)."""

    info = _aio(lambda: ContainerHandle.info)
    spec = _aio(lambda: ContainerHandle.spec)
    delete = _aio(lambda: ContainerHandle.delete)

    @property
    def id(self) -> str:
        """The container's id."""
        return self._sync.id

    async def new_task(self, *, io: cio.Creator | None = None, runtime_path: str = "") -> AsyncTask:
        """Create the container's task (not started) with stdio from ``io`` (default none)."""

        def create() -> Task:
            if io is None:
                return self._sync.new_task(runtime_path=runtime_path)
            return self._sync.new_task(io=io, runtime_path=runtime_path)

        return AsyncTask(await self._run(create), self._run)

    async def task(self, *, attach: Callable[[cio.IOConfig], cio.IO] | None = None) -> AsyncTask:
        """The container's existing task."""
        return AsyncTask(await self._run(lambda: self._sync.task(attach=attach)), self._run)


@dataclass(frozen=True)
class AsyncRunResult:
    """What :meth:`AsyncClient.run` left (:class:`~pycontainerd.client.run.RunResult`):
    exit status and captured output; ``await res.wait()`` as a task's."""

    result: RunResult

    @property
    def id(self) -> str:
        """The container's id."""
        return self.result.id

    @property
    def exit_status(self) -> ExitStatus:
        """How the container exited."""
        return self.result.exit_status

    @property
    def exit_code(self) -> int:
        """The container's exit code."""
        return self.result.exit_code

    @property
    def stdout(self) -> bytes | None:
        """Captured standard output (``None`` when it went elsewhere)."""
        return self.result.stdout

    @property
    def stderr(self) -> bytes | None:
        """Captured standard error (``None`` when it went elsewhere)."""
        return self.result.stderr

    async def wait(self) -> ExitStatus:
        """The exit status (the container has exited: a task's ``wait`` shape)."""
        return self.result.exit_status

    def check(self) -> AsyncRunResult:
        """This result, or :class:`~pycontainerd.client.run.ContainerError` if the exit code
        is not 0."""
        self.result.check()
        return self


# --- the client ---------------------------------------------------------------------------


class AsyncClient(_Async[Client]):
    """A connection to a pycontainerd (or containerd) daemon, for asyncio.

    ``async with AsyncClient(address, namespace="default") as c:``; the same arguments,
    methods and errors as :class:`~pycontainerd.Client`, every call awaitable. Blocking
    work runs on a pool of up to ``max_workers`` threads (see the module's notes). Leaving
    the block (or :meth:`aclose`) closes the channel and the pool.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        namespace: str = nsmod.DEFAULT,
        timeout: float = 10.0,
        call_timeout: float | None = None,
        lease: str | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        client = Client(
            address or DEFAULT_ADDRESS,
            namespace=namespace,
            timeout=timeout,
            call_timeout=call_timeout,
            lease=lease,
        )
        super().__init__(client, _Runner(max_workers, f"client of {client._conn.path}"))

    def __repr__(self) -> str:
        return f"<AsyncClient {self.address!r} namespace={self.namespace!r}>"

    @property
    def address(self) -> str:
        """The daemon's address."""
        return self._sync.address

    @property
    def namespace(self) -> str:
        """The namespace of the client's calls (settable)."""
        return self._sync.namespace

    @namespace.setter
    def namespace(self, value: str) -> None:
        self._sync.namespace = value

    @property
    def lease(self) -> str | None:
        """The lease sent with the client's calls, if any (settable)."""
        return self._sync.lease

    @lease.setter
    def lease(self, value: str | None) -> None:
        self._sync.lease = value

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel (calls in flight end) and the thread pool."""
        self.close()

    def close(self) -> None:
        """Close the channel and the thread pool, without waiting."""
        self._sync.close()
        self._run.shutdown()

    connect = _aio(lambda: Client.connect)
    version = _aio(lambda: Client.version)
    server = _aio(lambda: Client.server)
    plugins = _aio(lambda: Client.plugins)
    publish = _aio(lambda: Client.publish)
    forward = _aio(lambda: Client.forward)
    pull = _aio(lambda: Client.pull)
    fetch = _aio(lambda: Client.fetch)

    @property
    def channel(self) -> grpc.Channel:
        """The (sync) gRPC channel, for the raw stubs of ``pycontainerd.api``."""
        return self._sync.channel

    async def call(
        self, method: Callable[..., _R], request: Any, *, timeout: float | None = None
    ) -> _R:
        """Invoke a raw stub method in this client's namespace (``Client.call``)."""
        return await self._run(lambda: self._sync.call(method, request, timeout=timeout))

    @functools.cached_property
    def namespaces(self) -> AsyncNamespaces:
        """The daemon's namespaces."""
        return AsyncNamespaces(self._sync.namespaces, self._run)

    @functools.cached_property
    def images(self) -> AsyncImages:
        """The image records of this client's namespace."""
        return AsyncImages(self._sync.images, self._run)

    @functools.cached_property
    def containers(self) -> AsyncContainers:
        """The container records of this client's namespace."""
        return AsyncContainers(self._sync.containers, self._run)

    @functools.cached_property
    def tasks(self) -> AsyncTasks:
        """The tasks of this client's namespace."""
        return AsyncTasks(self._sync.tasks, self._run)

    @property
    def content(self) -> AsyncContentStore:
        """The daemon's content store in this client's namespace."""
        return AsyncContentStore(self._sync.content, self._run)

    @property
    def leases(self) -> AsyncLeases:
        """The daemon's leases in this client's namespace."""
        return AsyncLeases(self._sync.leases, self._run)

    def snapshots(self, name: str = DEFAULT_SNAPSHOTTER) -> AsyncSnapshotter:
        """The daemon's snapshotter ``name`` in this client's namespace."""
        return AsyncSnapshotter(self._sync.snapshots(name), self._run)

    def diff(self) -> AsyncDiff:
        """The daemon's differ in this client's namespace."""
        return AsyncDiff(self._sync.diff(), self._run)

    def container(self, container_id: str) -> AsyncContainerHandle:
        """A handle on the container ``container_id``, to create and find its task."""
        return AsyncContainerHandle(self._sync.container(container_id), self._run)

    async def events(self, *filters: str) -> AsyncEventStream:
        """Subscribe to the daemon's events, of every namespace, matching any of ``filters``:
        ``async with await c.events(...) as stream: async for ev in stream: ...``."""
        return AsyncEventStream(self._sync.events(*filters), self._run)

    @contextlib.asynccontextmanager
    async def with_lease(
        self, lease: str | Lease | None = None, *, expire: float | timedelta = 24 * 3600
    ) -> AsyncIterator[str]:
        """Make this client's calls in the block carry a lease; yields its id
        (``Client.with_lease``: without ``lease`` one is made and deleted after)."""
        manager = self._sync.with_lease(lease, expire=expire)
        lease_id = await self._run(manager.__enter__)
        try:
            yield lease_id
        except BaseException as exc:
            info = (type(exc), exc, exc.__traceback__)
            if not await self._run(lambda: manager.__exit__(*info)):
                raise
        else:
            await self._run(lambda: manager.__exit__(None, None, None))

    @overload
    async def run(
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
    ) -> AsyncRunResult: ...

    @overload
    async def run(
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
    ) -> AsyncTask: ...

    async def run(
        self, image: str, args: Sequence[str] | None = None, *, detach: bool = False, **kw: Any
    ) -> AsyncRunResult | AsyncTask:
        """Run ``args`` in a new container (``Client.run``, same keywords).

        Without ``detach``, waits for the exit: ``res = await c.run(image, ["true"])``, then
        ``await res.wait()``, ``res.stdout``. With ``detach``, the started
        :class:`AsyncTask`: ``await task.wait()``, then ``await task.delete()``.
        """
        client = self._sync
        if detach:
            task = await self._run(lambda: client.run(image, args, detach=True, **kw))
            return AsyncTask(task, self._run)
        result = await self._run(lambda: client.run(image, args, detach=False, **kw))
        return AsyncRunResult(result)
