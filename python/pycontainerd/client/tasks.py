"""Tasks and processes: containerd's ``Task`` and ``Process`` in Python.

::

    ctr = c.container("web")                       # a handle on a container record
    task = ctr.new_task(io=cio.capture())          # Tasks.Create: the shim runs runc create
    exited = task.wait_future()                    # Wait, registered before the start
    task.start()
    status = exited.result()                       # ExitStatus(code, exited_at)
    task.delete()                                  # the exit status again; FIFOs removed
    task.io.stdout_data                            # what it printed

    p = task.exec("sh1", ["sh", "-c", "echo hi"], io=cio.capture()); p.start(); p.wait()

:meth:`Client.run <pycontainerd.Client.run>` does all of that in one call. Every call goes
through the Tasks service in the client's namespace; errors are the ``errdefs`` classes with
the daemon's message (runc's, when runc refused).
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import datetime
import enum
import json
import signal as signalmod
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

from pycontainerd import cio, errdefs
from pycontainerd.api.containerd.runc.v1 import oci_pb2
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.api.io.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from pycontainerd.api.io.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from pycontainerd.containers import Container
from pycontainerd.oci import spec_from_any, with_user
from pycontainerd.snapshots.proto import mounts_to_proto

if TYPE_CHECKING:
    from pycontainerd.client.client import Client

__all__ = [
    "PROCESS_SPEC_TYPE_URL",
    "UNKNOWN_EXIT_STATUS",
    "ContainerHandle",
    "ExitStatus",
    "Metrics",
    "Process",
    "ProcessInfo",
    "ProcessStatus",
    "Status",
    "Task",
    "TasksAPI",
    "parse_signal",
]

#: The type of an exec's process spec (containerd's ``typeurl`` of ``specs.Process``).
PROCESS_SPEC_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Process"
#: The exit status of a process whose exit nobody saw (containerd's ``UnknownExitStatus``).
UNKNOWN_EXIT_STATUS: Final = 255
_CGROUPS_V1: Final = "io.containerd.cgroups.v1.Metrics"
_CGROUPS_V2: Final = "io.containerd.cgroups.v2.Metrics"


class ProcessStatus(enum.StrEnum):
    """A process's state, as containerd's client names it."""

    UNKNOWN = "unknown"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    PAUSING = "pausing"


_STATUS: Final = {
    task_pb2.UNKNOWN: ProcessStatus.UNKNOWN,
    task_pb2.CREATED: ProcessStatus.CREATED,
    task_pb2.RUNNING: ProcessStatus.RUNNING,
    task_pb2.STOPPED: ProcessStatus.STOPPED,
    task_pb2.PAUSED: ProcessStatus.PAUSED,
    task_pb2.PAUSING: ProcessStatus.PAUSING,
}


def _time(ts: timestamp_pb2.Timestamp) -> datetime.datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: its exit code (128 + signal when killed by one) and when."""

    code: int
    exited_at: datetime.datetime | None = None

    @property
    def signal(self) -> signalmod.Signals | None:
        """The signal that killed the process, if one did (the code is 128 + its number)."""
        if 128 < self.code < 128 + 65:
            with contextlib.suppress(ValueError):
                return signalmod.Signals(self.code - 128)
        return None


@dataclass(frozen=True)
class Status:
    """A process's state, and its exit status once stopped (containerd's ``Status``)."""

    status: ProcessStatus
    exit_status: int = 0
    exited_at: datetime.datetime | None = None


@dataclass(frozen=True)
class ProcessInfo:
    """One process of a task's container (``ListPids``): its pid and the shim's details."""

    pid: int
    info: any_pb2.Any | None = None

    @property
    def exec_id(self) -> str:
        """The exec id, when the process is one the task's ``exec`` started."""
        if self.info is None or not self.info.type_url.endswith("ProcessDetails"):
            return ""
        details = oci_pb2.ProcessDetails()
        details.ParseFromString(self.info.value)
        return details.exec_id


@dataclass(frozen=True)
class Metrics:
    """A task's cgroup statistics: ``data`` is ``io.containerd.cgroups.v1.Metrics`` or the v2
    message (whichever the host runs), or the raw ``Any`` of another type."""

    id: str
    timestamp: datetime.datetime | None
    type_url: str
    data: Message
    #: The collection time in nanoseconds since the epoch (``timestamp`` to the microsecond).
    timestamp_ns: int = 0


def _decode_metrics(value: any_pb2.Any) -> Message:
    url = value.type_url.rsplit("/", 1)[-1]
    msg: Message
    if url == _CGROUPS_V1:
        msg = cgroups_v1.Metrics()
    elif url == _CGROUPS_V2:
        msg = cgroups_v2.Metrics()
    else:
        return value
    msg.ParseFromString(value.value)
    return msg


def parse_signal(sig: int | str | signalmod.Signals) -> int:
    """A signal number from a number, ``SIGTERM``, ``TERM`` or ``"15"`` (containerd's
    ``ParseSignal``)."""
    if isinstance(sig, int):
        return int(sig)
    text = sig.strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return int(signalmod.Signals[name])
    except KeyError:
        raise errdefs.InvalidArgument(f"unknown signal {sig!r}") from None


class Process:
    """A process of a task: its init process (exec id empty) or one started by ``exec``.

    ``io`` is the client's side of its stdio; :meth:`delete` closes it.
    """

    def __init__(self, api: TasksAPI, container_id: str, exec_id: str, pid: int, io: cio.IO):
        self._api = api
        self.container_id = container_id
        self.exec_id = exec_id
        self.pid = pid
        self.io = io

    @property
    def id(self) -> str:
        """The process's id: the exec id, or the container's for the task itself."""
        return self.exec_id or self.container_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} pid={self.pid}>"

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        return self._api._client.call(method, request, timeout=timeout)

    def start(self) -> int:
        """Start the process; its pid."""
        stub = self._api._stub
        try:
            resp = self._call(
                stub.Start,
                tasks_pb2.StartRequest(container_id=self.container_id, exec_id=self.exec_id),
            )
        except errdefs.ContainerdError:
            if self.exec_id:  # as containerd: a process that failed to start is deleted
                with contextlib.suppress(errdefs.ContainerdError):
                    self._call(
                        stub.DeleteProcess,
                        tasks_pb2.DeleteProcessRequest(
                            container_id=self.container_id, exec_id=self.exec_id
                        ),
                    )
                self.io.close()
            raise
        self.pid = int(resp.pid)
        self.io.start()
        return self.pid

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Block until the process exits (at once if it has); its :class:`ExitStatus`.

        ``timeout`` (seconds) ends the wait with
        :class:`~pycontainerd.errdefs.DeadlineExceeded`."""
        resp = self._call(
            self._api._stub.Wait,
            tasks_pb2.WaitRequest(container_id=self.container_id, exec_id=self.exec_id),
            timeout=timeout,
        )
        return ExitStatus(int(resp.exit_status), _time(resp.exited_at))

    def wait_future(self) -> concurrent.futures.Future[ExitStatus]:
        """Start waiting now, in a thread (containerd's ``Wait`` channel): call it before
        :meth:`start` and read the exit status from the future."""
        future: concurrent.futures.Future[ExitStatus] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.wait())
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, daemon=True, name=f"wait-{self.id}").start()
        return future

    def kill(self, signal: int | str = signalmod.SIGTERM, *, all: bool = False) -> None:
        """Send ``signal`` (a number or a name) to the process; with ``all``, to every process
        of the container."""
        self._call(
            self._api._stub.Kill,
            tasks_pb2.KillRequest(
                container_id=self.container_id,
                exec_id=self.exec_id,
                signal=parse_signal(signal),
                all=all,
            ),
        )

    def status(self) -> Status:
        """The process's state (and exit status once stopped)."""
        resp = self._call(
            self._api._stub.Get,
            tasks_pb2.GetRequest(container_id=self.container_id, exec_id=self.exec_id),
        )
        p = resp.process
        return Status(
            _STATUS.get(p.status, ProcessStatus.UNKNOWN), p.exit_status, _time(p.exited_at)
        )

    def close_stdin(self) -> None:
        """End the process's input (``CloseIO``)."""
        self._call(
            self._api._stub.CloseIO,
            tasks_pb2.CloseIORequest(
                container_id=self.container_id, exec_id=self.exec_id, stdin=True
            ),
        )

    def resize(self, width: int, height: int) -> None:
        """Set the size of the process's terminal (columns, rows)."""
        self._call(
            self._api._stub.ResizePty,
            tasks_pb2.ResizePtyRequest(
                container_id=self.container_id,
                exec_id=self.exec_id,
                width=width,
                height=height,
            ),
        )

    def delete(self, *, force: bool = False) -> ExitStatus:
        """Remove the stopped process; its exit status. Its output is drained first, then
        its IO closed. ``force`` kills it (``SIGKILL``) and waits for it first."""
        self._check_stopped(force)
        resp = self._call(
            self._api._stub.DeleteProcess,
            tasks_pb2.DeleteProcessRequest(container_id=self.container_id, exec_id=self.exec_id),
        )
        self._finish_io()
        return ExitStatus(int(resp.exit_status), _time(resp.exited_at))

    def _check_stopped(self, force: bool) -> None:
        state = self.status().status
        if state in (ProcessStatus.STOPPED, ProcessStatus.UNKNOWN, ProcessStatus.CREATED):
            return
        if not force:
            raise errdefs.FailedPrecondition(
                f"{self._what()} must be stopped before deletion: {state}"
            )
        waiter = self.wait_future()
        with contextlib.suppress(errdefs.NotFound, errdefs.FailedPrecondition):
            self.kill(signalmod.SIGKILL, all=not self.exec_id)
        waiter.result()

    def _what(self) -> str:
        return f"process {self.exec_id}" if self.exec_id else "task"

    def _finish_io(self) -> None:
        # the shim has closed its ends: the outputs drain to their end of file
        self.io.wait()
        self.io.close()


class Task(Process):
    """A container's running instance: its init process, plus the container-wide calls.

    A task :class:`Client.run <pycontainerd.Client.run>` returned with ``remove`` also
    removes its container (and snapshot) when deleted.
    """

    def __init__(
        self, api: TasksAPI, container_id: str, pid: int, io: cio.IO, *, remove: bool = False
    ):
        super().__init__(api, container_id, "", pid, io)
        self.remove_container = remove

    def pause(self) -> None:
        """Freeze every process of the container."""
        self._call(self._api._stub.Pause, tasks_pb2.PauseTaskRequest(container_id=self.id))

    def resume(self) -> None:
        """Thaw a paused task."""
        self._call(self._api._stub.Resume, tasks_pb2.ResumeTaskRequest(container_id=self.id))

    def pids(self) -> builtins.list[ProcessInfo]:
        """The container's processes (pids on the host)."""
        resp = self._call(self._api._stub.ListPids, tasks_pb2.ListPidsRequest(container_id=self.id))
        return [
            ProcessInfo(int(p.pid), p.info if p.HasField("info") else None) for p in resp.processes
        ]

    def metrics(self) -> Metrics:
        """The container's cgroup statistics."""
        resp = self._call(
            self._api._stub.Metrics, tasks_pb2.MetricsRequest(filters=[f"id=={self.id}"])
        )
        for m in resp.metrics:
            if m.id == self.id:
                return Metrics(
                    m.id,
                    _time(m.timestamp),
                    m.data.type_url,
                    _decode_metrics(m.data),
                    m.timestamp.ToNanoseconds(),
                )
        raise errdefs.NotFound(f"metrics of task {self.id}: not found")

    def update(self, resources: Mapping[str, Any] | None = None, **annotations: str) -> None:
        """Change the container's resources (an OCI ``linux.resources`` object)."""
        req = tasks_pb2.UpdateTaskRequest(container_id=self.id, annotations=annotations)
        if resources is not None:
            req.resources.CopyFrom(
                any_pb2.Any(
                    type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                    value=json.dumps(dict(resources)).encode(),
                )
            )
        self._call(self._api._stub.Update, req)

    def exec(
        self,
        exec_id: str,
        args: Sequence[str] | Mapping[str, Any],
        *,
        io: cio.Creator = cio.null_io,
        terminal: bool | None = None,
        cwd: str | None = None,
        env: Sequence[str] | None = None,
        user: str | None = None,
    ) -> Process:
        """Create (not start) a process ``exec_id`` in the container.

        ``args`` is the command (on the container's own process spec: its env, user, cwd), or
        a whole OCI process spec. ``terminal`` defaults to whether ``io`` makes one; ``env``
        entries are added; ``user`` is an id (``uid[:gid]``) or a name from the container's
        ``/etc/passwd``.
        """
        if isinstance(args, Mapping):
            process: dict[str, Any] = dict(args)
        else:
            if not args:
                raise errdefs.InvalidArgument(f"exec {exec_id} in {self.id}: args are required")
            process = self._api._container_process(self.id)
            process["args"] = list(args)
        pio = io(exec_id)
        try:
            cfg = pio.config
            process["terminal"] = cfg.terminal if terminal is None else terminal
            if cwd:
                process["cwd"] = cwd
            if env:
                process["env"] = [*(process.get("env") or []), *env]
            if user:
                spec = {"process": process, "root": {"path": ""}}
                with_user(user)(spec)
            req = tasks_pb2.ExecProcessRequest(
                container_id=self.id,
                exec_id=exec_id,
                stdin=cfg.stdin,
                stdout=cfg.stdout,
                stderr=cfg.stderr,
                terminal=bool(process["terminal"]),
                spec=any_pb2.Any(
                    type_url=PROCESS_SPEC_TYPE_URL, value=json.dumps(process).encode()
                ),
            )
            self._call(self._api._stub.Exec, req)
        except BaseException:
            pio.close()
            raise
        proc = Process(self._api, self.id, exec_id, 0, pio)
        pio.set_stdin_closer(proc.close_stdin)
        return proc

    def load_process(self, exec_id: str, *, io: cio.IO | None = None) -> Process:
        """A handle on the task's existing process ``exec_id``."""
        resp = self._call(
            self._api._stub.Get, tasks_pb2.GetRequest(container_id=self.id, exec_id=exec_id)
        )
        p = resp.process
        return Process(self._api, self.id, exec_id, int(p.pid), io or cio.load(_config_of(p)))

    def delete(self, *, force: bool = False) -> ExitStatus:
        """Remove the stopped (or never started) task; its exit status. Output is drained and
        the IO closed after; with ``remove_container`` set, the container and its snapshot are
        removed too. ``force`` kills a running task and waits for it first."""
        self._check_stopped(force)
        resp = self._call(self._api._stub.Delete, tasks_pb2.DeleteTaskRequest(container_id=self.id))
        self._finish_io()
        if self.remove_container:
            self._api._client.containers.delete(self.id, cleanup_snapshot=True)
        return ExitStatus(int(resp.exit_status), _time(resp.exited_at))


def _config_of(p: task_pb2.Process) -> cio.IOConfig:
    return cio.IOConfig(p.stdin, p.stdout, p.stderr, p.terminal)


class TasksAPI:
    """The tasks of the client's namespace (``Client.tasks``)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = tasks_pb2_grpc.TasksStub(client.channel)

    def _container_process(self, container_id: str) -> dict[str, Any]:
        record = self._client.containers.get(container_id)
        if record.spec is None:
            raise errdefs.FailedPrecondition(f"container {container_id} has no spec")
        process = spec_from_any(record.spec).get("process")
        return dict(process or {})

    def create(
        self,
        container: str | Container,
        *,
        io: cio.Creator = cio.null_io,
        runtime_path: str = "",
        remove_container: bool = False,
    ) -> Task:
        """Create the task of ``container`` (``Tasks.Create``: the shim and ``runc create``);
        its stdio from ``io`` (default none). A failed create leaves no FIFOs behind.

        As containerd's client, the request carries the mounts of the container's snapshot
        as the task's root filesystem (containerd does not look them up itself)."""
        record = self._client.containers.get(container) if isinstance(container, str) else container
        container_id = record.id
        rootfs = self._rootfs(record)
        tio = io(container_id)
        cfg = tio.config
        try:
            resp = self._client.call(
                self._stub.Create,
                tasks_pb2.CreateTaskRequest(
                    container_id=container_id,
                    stdin=cfg.stdin,
                    stdout=cfg.stdout,
                    stderr=cfg.stderr,
                    terminal=cfg.terminal,
                    runtime_path=runtime_path,
                    rootfs=rootfs,
                ),
            )
        except BaseException:
            tio.close()
            raise
        task = Task(self, container_id, int(resp.pid), tio, remove=remove_container)
        tio.set_stdin_closer(task.close_stdin)
        return task

    def _rootfs(self, record: Container) -> builtins.list[mount_pb2.Mount]:
        """The mounts of the container's snapshot, for the task's root filesystem."""
        if not record.snapshot_key:
            return []
        if not record.snapshotter:
            raise errdefs.InvalidArgument(
                f"container {record.id}: unable to resolve rootfs mounts without a snapshotter"
            )
        mounts = self._client.snapshots(record.snapshotter).mounts(record.snapshot_key)
        return mounts_to_proto(mounts)

    def get(
        self,
        container_id: str,
        *,
        attach: Callable[[cio.IOConfig], cio.IO] | None = None,
    ) -> Task:
        """The task of ``container_id`` (:class:`~pycontainerd.errdefs.NotFound` if none).

        Without ``attach`` its IO only removes its FIFOs when the task is deleted
        (``cio.load``); with :func:`pycontainerd.cio.attach` it copies through them."""
        resp = self._client.call(self._stub.Get, tasks_pb2.GetRequest(container_id=container_id))
        p = resp.process
        config = _config_of(p)
        tio = attach(config) if attach is not None else cio.load(config)
        task = Task(self, container_id, int(p.pid), tio)
        tio.set_stdin_closer(task.close_stdin)
        return task

    def list(self, *filters: str) -> builtins.list[tuple[str, int, ProcessStatus]]:
        """``(container id, pid, status)`` of every task in the namespace."""
        resp = self._client.call(
            self._stub.List, tasks_pb2.ListTasksRequest(filter=",".join(filters))
        )
        return [
            (t.id, int(t.pid), _STATUS.get(t.status, ProcessStatus.UNKNOWN)) for t in resp.tasks
        ]

    def metrics(self, *filters: str) -> builtins.list[Metrics]:
        """Statistics of the tasks matching any of ``filters`` (``id==web``); all without."""
        resp = self._client.call(
            self._stub.Metrics, tasks_pb2.MetricsRequest(filters=list(filters))
        )
        return [
            Metrics(
                m.id,
                _time(m.timestamp),
                m.data.type_url,
                _decode_metrics(m.data),
                m.timestamp.ToNanoseconds(),
            )
            for m in resp.metrics
        ]


class ContainerHandle:
    """A container of the client's namespace, to start tasks in (containerd's
    ``Container``)."""

    def __init__(self, client: Client, container_id: str) -> None:
        self._client = client
        self.id = container_id

    def __repr__(self) -> str:
        return f"<ContainerHandle {self.id!r}>"

    def info(self) -> Container:
        """The container's record."""
        return self._client.containers.get(self.id)

    def spec(self) -> dict[str, Any]:
        """The container's OCI spec."""
        record = self.info()
        if record.spec is None:
            raise errdefs.FailedPrecondition(f"container {self.id} has no spec")
        return spec_from_any(record.spec)

    def new_task(self, *, io: cio.Creator = cio.null_io, runtime_path: str = "") -> Task:
        """Create the container's task (not started) with stdio from ``io``."""
        return self._client.tasks.create(self.id, io=io, runtime_path=runtime_path)

    def task(self, *, attach: Callable[[cio.IOConfig], cio.IO] | None = None) -> Task:
        """The container's existing task."""
        return self._client.tasks.get(self.id, attach=attach)

    def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the record and, by default, its snapshot (a container with a task is
        refused)."""
        self._client.containers.delete(self.id, cleanup_snapshot=cleanup_snapshot)
