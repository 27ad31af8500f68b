"""``containerd.services.tasks.v1.Tasks``: tasks of containers, run by the runtime's shims.

A thin adapter, as containerd's ``services/tasks``: the container record gives the spec, the
runtime name and options and the snapshot; the runtime (:class:`~pycontainerd.runtime
.TaskManager`) does the work. When a Create names no rootfs, the mounts of the container's
snapshot are used. Errors keep the shim's status code and message (runc's words included):
``process already finished`` is NOT_FOUND, an unknown task ``task ID not found``; deleting a
running task is FAILED_PRECONDITION. Checkpoints are not implemented. A container whose labels
ask for a network (:mod:`pycontainerd.network`) is attached to it before its task is created, and
detached when the task is deleted (or its creation fails).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from pycontainerd import errdefs, filters, identifiers
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2
from pycontainerd.api.containerd.task.v2 import shim_pb2
from pycontainerd.api.containerd.types import metrics_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.containers import AnyValue, Container
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.daemon.services.base import namespace_of
from pycontainerd.metadata import DB, ContainerStore, SnapshotStore
from pycontainerd.mount import Mount
from pycontainerd.network.labels import LABEL_NETWORK, NO_NETWORK
from pycontainerd.network.manager import NetworkManager
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.runtime import CreateOpts, Exit, ShimTask, TaskManager
from pycontainerd.snapshots import Snapshotter

__all__ = ["TasksService", "registration"]

log = logging.getLogger(__name__)


def _any(value: AnyValue | None) -> any_pb2.Any | None:
    return None if value is None else any_pb2.Any(type_url=value.type_url, value=value.value)


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def _process(task: ShimTask, state: shim_pb2.StateResponse, exec_id: str) -> task_pb2.Process:
    proc = task_pb2.Process(
        container_id=task.id,
        id=exec_id or task.id,
        pid=state.pid,
        status=state.status,
        stdin=state.stdin,
        stdout=state.stdout,
        stderr=state.stderr,
        terminal=state.terminal,
        exit_status=state.exit_status,
    )
    if state.HasField("exited_at"):
        proc.exited_at.CopyFrom(state.exited_at)
    return proc


def _delete_response(exit_: Exit, id_: str = "") -> tasks_pb2.DeleteResponse:
    return tasks_pb2.DeleteResponse(
        id=id_, pid=exit_.pid, exit_status=exit_.status, exited_at=_timestamp(exit_.timestamp)
    )


class TasksService:
    """Tasks over the container store, the snapshots and the runtime."""

    def __init__(
        self,
        containers: ContainerStore,
        snapshots: SnapshotStore,
        runtime: TaskManager,
        network: NetworkManager | None = None,
    ) -> None:
        self._containers = containers
        self._snapshots = snapshots
        self._runtime = runtime
        self._network = network

    def register(self, server: RPCServer) -> None:
        server.add_service(tasks_pb2.DESCRIPTOR.services_by_name["Tasks"], self)

    async def _container(self, context: ServicerContext, id_: str) -> tuple[str, Container]:
        ns = namespace_of(context)
        await self._runtime.loaded()
        return ns, self._containers.get(ns, id_)

    async def _task(self, context: ServicerContext, id_: str) -> ShimTask:
        ns, container = await self._container(context, id_)
        return self._runtime.get(ns, container.id)

    async def _rootfs(self, ns: str, container: Container) -> list[Mount]:
        if not container.snapshot_key:
            return []
        sn = self._snapshots.namespaced(ns, container.snapshotter)
        return await asyncio.to_thread(sn.mounts, container.snapshot_key)

    async def Create(
        self, request: tasks_pb2.CreateTaskRequest, context: ServicerContext
    ) -> tasks_pb2.CreateTaskResponse:
        ns, container = await self._container(context, request.container_id)
        if request.HasField("checkpoint"):
            raise errdefs.NotImplemented(
                f"create task {container.id}: restoring from a checkpoint is not supported"
            )
        if container.spec is None:
            raise errdefs.FailedPrecondition(f"create task {container.id}: container has no spec")
        rootfs = [
            Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))
            for m in request.rootfs
        ] or await self._rootfs(ns, container)
        spec = container.spec.value
        if self._network is not None:  # the network its labels ask for (pycontainerd.network)
            spec = await self._network.attach(ns, container)
        elif container.labels.get(LABEL_NETWORK, "") not in NO_NETWORK:
            raise errdefs.FailedPrecondition(
                f"create task {container.id}: network {container.labels[LABEL_NETWORK]} "
                "asked for, but the network plugin is not loaded"
            )
        try:
            task = await self._create(ns, container, request, rootfs, spec)
        except BaseException:
            if self._network is not None:
                await self._network.release(ns, container.id)
            raise
        return tasks_pb2.CreateTaskResponse(container_id=container.id, pid=task.pid)

    async def _create(
        self,
        ns: str,
        container: Container,
        request: tasks_pb2.CreateTaskRequest,
        rootfs: list[Mount],
        spec: bytes,
    ) -> ShimTask:
        return await self._runtime.create(
            ns,
            container.id,
            CreateOpts(
                spec=spec,
                runtime=request.runtime_path or container.runtime.name,
                rootfs=rootfs,
                stdin=request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                terminal=request.terminal,
                runtime_options=_any(container.runtime.options),
                task_options=request.options if request.HasField("options") else None,
            ),
        )

    async def Start(
        self, request: tasks_pb2.StartRequest, context: ServicerContext
    ) -> tasks_pb2.StartResponse:
        task = await self._task(context, request.container_id)
        pid = await task.start(request.exec_id)
        return tasks_pb2.StartResponse(pid=pid)

    async def Delete(
        self, request: tasks_pb2.DeleteTaskRequest, context: ServicerContext
    ) -> tasks_pb2.DeleteResponse:
        ns, container = await self._container(context, request.container_id)
        try:
            exit_ = await self._runtime.delete(ns, container.id)
        except (errdefs.NotFound, errdefs.Unavailable):  # no task or no shim: detach all the same
            if self._network is not None:
                await self._network.release(ns, container.id)
            raise
        if self._network is not None:
            await self._network.release(ns, container.id)
        return _delete_response(exit_)

    async def DeleteProcess(
        self, request: tasks_pb2.DeleteProcessRequest, context: ServicerContext
    ) -> tasks_pb2.DeleteResponse:
        if not request.exec_id:
            raise errdefs.InvalidArgument("exec id cannot be empty")
        task = await self._task(context, request.container_id)
        exit_ = await task.delete_process(request.exec_id)
        return _delete_response(exit_, request.exec_id)

    async def Get(
        self, request: tasks_pb2.GetRequest, context: ServicerContext
    ) -> tasks_pb2.GetResponse:
        task = await self._task(context, request.container_id)
        state = await task.state(request.exec_id)
        return tasks_pb2.GetResponse(process=_process(task, state, request.exec_id))

    async def List(
        self, request: tasks_pb2.ListTasksRequest, context: ServicerContext
    ) -> tasks_pb2.ListTasksResponse:
        ns = namespace_of(context)
        await self._runtime.loaded()
        response = tasks_pb2.ListTasksResponse()
        for task in self._runtime.tasks(ns):
            try:
                state = await task.state()
            except errdefs.NotFound:  # deleted meanwhile
                continue
            except errdefs.ContainerdError as exc:
                log.error("state of task %s/%s: %s", ns, task.id, exc)
                continue
            response.tasks.append(_process(task, state, ""))
        return response

    async def Kill(
        self, request: tasks_pb2.KillRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        task = await self._task(context, request.container_id)
        await task.kill(request.signal, exec_id=request.exec_id, all=request.all)
        return empty_pb2.Empty()

    async def Exec(
        self, request: tasks_pb2.ExecProcessRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        if not request.exec_id:
            raise errdefs.InvalidArgument("exec id cannot be empty")
        try:
            identifiers.validate(request.exec_id)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(
                f"invalid exec id {request.exec_id}: {exc.message}"
            ) from None
        task = await self._task(context, request.container_id)
        await task.exec(
            request.exec_id,
            request.spec,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
            terminal=request.terminal,
        )
        return empty_pb2.Empty()

    async def ResizePty(
        self, request: tasks_pb2.ResizePtyRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        task = await self._task(context, request.container_id)
        await task.resize_pty(request.width, request.height, exec_id=request.exec_id)
        return empty_pb2.Empty()

    async def CloseIO(
        self, request: tasks_pb2.CloseIORequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        task = await self._task(context, request.container_id)
        if request.stdin:
            await task.close_io(exec_id=request.exec_id, stdin=True)
        return empty_pb2.Empty()

    async def Pause(
        self, request: tasks_pb2.PauseTaskRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        task = await self._task(context, request.container_id)
        await task.pause()
        return empty_pb2.Empty()

    async def Resume(
        self, request: tasks_pb2.ResumeTaskRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        task = await self._task(context, request.container_id)
        await task.resume()
        return empty_pb2.Empty()

    async def ListPids(
        self, request: tasks_pb2.ListPidsRequest, context: ServicerContext
    ) -> tasks_pb2.ListPidsResponse:
        task = await self._task(context, request.container_id)
        return tasks_pb2.ListPidsResponse(processes=await task.pids())

    async def Update(
        self, request: tasks_pb2.UpdateTaskRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        task = await self._task(context, request.container_id)
        resources = request.resources if request.HasField("resources") else None
        await task.update(resources, dict(request.annotations))
        return empty_pb2.Empty()

    async def Wait(
        self, request: tasks_pb2.WaitRequest, context: ServicerContext
    ) -> tasks_pb2.WaitResponse:
        task = await self._task(context, request.container_id)
        exit_ = await task.wait(request.exec_id)
        return tasks_pb2.WaitResponse(
            exit_status=exit_.status, exited_at=_timestamp(exit_.timestamp)
        )

    async def Metrics(
        self, request: tasks_pb2.MetricsRequest, context: ServicerContext
    ) -> tasks_pb2.MetricsResponse:
        ns = namespace_of(context)
        filter_ = filters.parse(*request.filters)
        await self._runtime.loaded()
        response = tasks_pb2.MetricsResponse()
        for task in self._runtime.tasks(ns):
            if not filter_.match(filters.adapt(_metrics_fields(task))):
                continue
            collected = time.time_ns()
            try:
                stats = await task.stats()
            except errdefs.NotFound:
                continue
            except errdefs.ContainerdError as exc:
                log.error("collecting metrics for %s: %s", task.id, exc)
                continue
            response.metrics.append(
                metrics_pb2.Metric(timestamp=_timestamp(collected), id=task.id, data=stats)
            )
        return response

    async def Checkpoint(
        self, request: tasks_pb2.CheckpointTaskRequest, context: ServicerContext
    ) -> tasks_pb2.CheckpointTaskResponse:
        raise errdefs.NotImplemented("checkpoint is not supported")


def _metrics_fields(task: ShimTask) -> Callable[[Sequence[str]], tuple[str, bool]]:
    def field(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "id":
            return task.id, True
        if path[0] == "namespace":
            return task.namespace, True
        if path[0] == "runtime":
            return task.runtime, bool(task.runtime)
        return "", False

    return field


def _snapshot_store(ic: InitContext, db: DB) -> SnapshotStore:
    try:
        store = ic.get(Type.SERVICE, "snapshots-service")
    except errdefs.NotFound:
        backends: dict[str, Snapshotter] = {}
        for name, instance in ic.plugins.instances(Type.SNAPSHOT).items():
            assert isinstance(instance, Snapshotter)
            backends[name] = instance
        return SnapshotStore(db, backends)
    assert isinstance(store, SnapshotStore)
    return store


def _init(ic: InitContext) -> TasksService:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    runtime = ic.get(Type.RUNTIME_V2, "task")
    assert isinstance(runtime, TaskManager)
    network: NetworkManager | None = None
    try:
        found = ic.get(Type.INTERNAL, "network")
        network = found if isinstance(found, NetworkManager) else None
    except (errdefs.NotFound, errdefs.FailedPrecondition) as exc:  # containers asking fail
        log.warning("no network plugin (%s): tasks run in the network their spec gives", exc)
    return TasksService(ContainerStore(db), _snapshot_store(ic, db), runtime, network)


registration = Registration(
    type=Type.GRPC,
    id="tasks",
    init=_init,
    requires=(
        Type.EVENT,
        Type.RUNTIME_V2,
        Type.METADATA,
        Type.SNAPSHOT,
        Type.SERVICE,
        Type.INTERNAL,
    ),
)
