"""A running shim: its ttrpc connection, the ``containerd.task.v2.Task`` calls, its log.

:class:`ShimTask` is one task as the daemon sees it (containerd's ``shimTask``): every call
carries the task's namespace in ttrpc metadata and returns the shim's answer; errors are the
:mod:`~pycontainerd.errdefs` class of the shim's status with its message kept (runc's words
included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from typing import Final, TypeVar

from google.protobuf import any_pb2, empty_pb2
from google.protobuf.message import Message

from pycontainerd import errdefs
from pycontainerd.api.containerd.task.v2 import shim_pb2
from pycontainerd.api.containerd.types import mount_pb2
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.mount import Mount
from pycontainerd.runtime.binary import Exit, ShimCommand
from pycontainerd.runtime.bundle import Bundle
from pycontainerd.ttrpc import Client

__all__ = ["SHIM_SERVICE", "TTRPC_NAMESPACE_KEY", "ShimLog", "ShimTask"]

log = logging.getLogger(__name__)

SHIM_SERVICE: Final = "containerd.task.v2.Task"
#: The ttrpc metadata key containerd passes the namespace in.
TTRPC_NAMESPACE_KEY: Final = "containerd-namespace-ttrpc"
#: Calls that should answer at once; Wait has no limit.
CALL_TIMEOUT: Final = 30.0

M = TypeVar("M", bound=Message)


class ShimLog:
    """The bundle's ``log`` FIFO, read for the shim's life and logged at debug.

    Opened read-write (as containerd does), so it never sees an end while the shim restarts its
    writes, and the shim's writes never block on a missing reader while the daemon runs.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        path = bundle.path / "log"
        try:
            os.mkfifo(path, 0o700)
        except FileExistsError:
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                raise errdefs.FailedPrecondition(f"shim log {path}: not a fifo") from None
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._buf = b""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.strip():
                log.debug(
                    "shim %s/%s: %s",
                    self.bundle.namespace,
                    self.bundle.id,
                    line.decode(errors="replace"),
                )

    def close(self) -> None:
        """Stop reading."""
        if self._fd < 0:
            return
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1


class ShimTask:
    """One task served by one shim."""

    def __init__(
        self,
        bundle: Bundle,
        client: Client,
        command: ShimCommand,
        shim_log: ShimLog | None,
    ) -> None:
        self.bundle = bundle
        self.client = client
        self.command = command
        self.log = shim_log
        #: The runtime name the task was created with (containerd's task label ``runtime``).
        self.runtime = ""
        #: The task's pid once created here (0 for a task found on start: ask :meth:`state`).
        self.pid = 0

    @property
    def id(self) -> str:
        """The task's id: its container's."""
        return self.bundle.id

    @property
    def namespace(self) -> str:
        """The namespace the task belongs to."""
        return self.bundle.namespace

    async def _call(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        *,
        timeout: float | None = CALL_TIMEOUT,
    ) -> M:
        payload = await self.client.call(
            SHIM_SERVICE,
            method,
            request.SerializeToString(),
            timeout=timeout,
            metadata=((TTRPC_NAMESPACE_KEY, self.namespace),),
        )
        return response_type.FromString(payload)

    async def connect(self) -> shim_pb2.ConnectResponse:
        """The shim's and the task's pids (and the shim's version)."""
        return await self._call(
            "Connect", shim_pb2.ConnectRequest(id=self.id), shim_pb2.ConnectResponse
        )

    async def create(
        self,
        *,
        rootfs: Sequence[Mount] = (),
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        checkpoint: str = "",
        options: any_pb2.Any | None = None,
    ) -> int:
        """Create the task (runc create); its pid."""
        request = shim_pb2.CreateTaskRequest(
            id=self.id,
            bundle=str(self.bundle.path),
            rootfs=[
                mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options))
                for m in rootfs
            ],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
            checkpoint=checkpoint,
        )
        if options is not None:
            request.options.CopyFrom(options)
        # runc create may take long on a loaded host: the caller's deadline governs
        response = await self._call("Create", request, shim_pb2.CreateTaskResponse, timeout=None)
        return response.pid

    async def start(self, exec_id: str = "") -> int:
        """Start the task or one of its exec processes; its pid."""
        response = await self._call(
            "Start", shim_pb2.StartRequest(id=self.id, exec_id=exec_id), shim_pb2.StartResponse
        )
        return response.pid

    async def state(self, exec_id: str = "") -> shim_pb2.StateResponse:
        """The state of the task or of an exec process."""
        return await self._call(
            "State", shim_pb2.StateRequest(id=self.id, exec_id=exec_id), shim_pb2.StateResponse
        )

    async def delete_process(self, exec_id: str = "") -> Exit:
        """Delete the task (with an empty ``exec_id``) or an exec process in the shim."""
        response = await self._call(
            "Delete", shim_pb2.DeleteRequest(id=self.id, exec_id=exec_id), shim_pb2.DeleteResponse
        )
        return _exit(response.pid, response.exit_status, response)

    async def kill(self, signal: int, *, exec_id: str = "", all: bool = False) -> None:
        """Signal the task (every process of it with ``all``) or an exec process."""
        await self._call(
            "Kill",
            shim_pb2.KillRequest(id=self.id, exec_id=exec_id, signal=signal, all=all),
            empty_pb2.Empty,
        )

    async def exec(
        self,
        exec_id: str,
        spec: any_pb2.Any,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
    ) -> None:
        """Add an exec process (runc's process spec as ``spec``); started by :meth:`start`."""
        request = shim_pb2.ExecProcessRequest(
            id=self.id,
            exec_id=exec_id,
            terminal=terminal,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
        request.spec.CopyFrom(spec)
        await self._call("Exec", request, empty_pb2.Empty)

    async def pids(self) -> list[task_pb2.ProcessInfo]:
        """The processes in the task's container."""
        response = await self._call("Pids", shim_pb2.PidsRequest(id=self.id), shim_pb2.PidsResponse)
        return list(response.processes)

    async def pause(self) -> None:
        """Freeze every process of the task (runc pause)."""
        await self._call("Pause", shim_pb2.PauseRequest(id=self.id), empty_pb2.Empty)

    async def resume(self) -> None:
        """Thaw a paused task (runc resume)."""
        await self._call("Resume", shim_pb2.ResumeRequest(id=self.id), empty_pb2.Empty)

    async def resize_pty(self, width: int, height: int, *, exec_id: str = "") -> None:
        """Set the terminal size of the task or of an exec process."""
        await self._call(
            "ResizePty",
            shim_pb2.ResizePtyRequest(id=self.id, exec_id=exec_id, width=width, height=height),
            empty_pb2.Empty,
        )

    async def close_io(self, *, exec_id: str = "", stdin: bool = True) -> None:
        """Let the process's stdin end once the client has closed its end of the FIFO."""
        await self._call(
            "CloseIO",
            shim_pb2.CloseIORequest(id=self.id, exec_id=exec_id, stdin=stdin),
            empty_pb2.Empty,
        )

    async def update(
        self, resources: any_pb2.Any | None, annotations: Mapping[str, str] | None = None
    ) -> None:
        """Change the task's resources (runc update)."""
        request = shim_pb2.UpdateTaskRequest(id=self.id, annotations=dict(annotations or {}))
        if resources is not None:
            request.resources.CopyFrom(resources)
        await self._call("Update", request, empty_pb2.Empty)

    async def wait(self, exec_id: str = "") -> Exit:
        """Block until the task or exec process exits; its status (pid not reported)."""
        response = await self._call(
            "Wait",
            shim_pb2.WaitRequest(id=self.id, exec_id=exec_id),
            shim_pb2.WaitResponse,
            timeout=None,
        )
        return _exit(0, response.exit_status, response)

    async def stats(self) -> any_pb2.Any:
        """The task's cgroup statistics, as the shim encodes them."""
        response = await self._call(
            "Stats", shim_pb2.StatsRequest(id=self.id), shim_pb2.StatsResponse
        )
        return response.stats

    async def shutdown(self, *, now: bool = False) -> None:
        """Ask the shim to exit (it does once it holds no task); a closed connection is fine."""
        with contextlib.suppress(errdefs.Unavailable):
            await self._call(
                "Shutdown", shim_pb2.ShutdownRequest(id=self.id, now=now), empty_pb2.Empty
            )

    def abort(self) -> None:
        """Drop the connection and stop reading the log now; the shim keeps running."""
        self.client.abort()
        if self.log is not None:
            self.log.close()

    async def close(self) -> None:
        """Drop the connection and stop reading the log; the shim keeps running."""
        await self.client.close()
        if self.log is not None:
            self.log.close()


def _exit(pid: int, status: int, response: shim_pb2.DeleteResponse | shim_pb2.WaitResponse) -> Exit:
    at = response.exited_at.ToNanoseconds() if response.HasField("exited_at") else 0
    return Exit(pid=pid, status=status, timestamp=at)
