"""The ``io.containerd.runtime.v2 task`` plugin: tasks, each served by its own shim.

containerd's ``runtime/v2`` ShimManager and TaskManager in one: :meth:`TaskManager.create`
makes the bundle, starts the shim for the runtime name, connects to it and creates the task;
a failure at any step removes what the earlier ones made (shim, socket, bundle). The shims
publish the task events themselves (``Events/Forward`` on the daemon's ttrpc socket); the
manager publishes ``/tasks/exit`` and ``/tasks/delete`` only for a shim that died.

On daemon start :meth:`TaskManager.load` finds every bundle under the state directory,
reconnects to each live shim and serves its task again; for a dead one it runs the shim's
``delete`` command, reports the task's exit and removes the bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import stat
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from google.protobuf import any_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import task_pb2 as events
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.events import Exchange
from pycontainerd.mount import Mount
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.runtime.binary import DEFAULT_SHIMS, Exit, ShimCommand, resolve_runtime
from pycontainerd.runtime.bundle import Bundle
from pycontainerd.runtime.shim import ShimLog, ShimTask
from pycontainerd.ttrpc import Client, socket_path

__all__ = [
    "TASK_DELETE_TOPIC",
    "TASK_EXIT_TOPIC",
    "Config",
    "CreateOpts",
    "TaskManager",
    "registration",
]

log = logging.getLogger(__name__)

TASK_EXIT_TOPIC: Final = "/tasks/exit"
TASK_DELETE_TOPIC: Final = "/tasks/delete"

#: containerd's ``io.containerd.timeout.shim.load``, ``.cleanup`` and ``.shutdown``.
LOAD_TIMEOUT: Final = 5.0
CLEANUP_TIMEOUT: Final = 5.0
SHUTDOWN_TIMEOUT: Final = 3.0

#: The status a task gets when its shim died without telling how it ended.
UNKNOWN_EXIT_STATUS: Final = 255


@dataclass
class Config:
    """``[plugins."io.containerd.runtime.v2.task"]``."""

    #: Shim executables per runtime name, the first found wins (a name on PATH or a path).
    #: Other names follow containerd's rule: ``io.containerd.X.vN`` → ``containerd-shim-X-vN``.
    shims: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_SHIMS.items()}
    )


@dataclass(frozen=True)
class CreateOpts:
    """What a task is created from: containerd's ``runtime.CreateOpts``."""

    spec: bytes
    runtime: str
    rootfs: Sequence[Mount] = ()
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    checkpoint: str = ""
    #: The container's runtime options, given to the shim when no task options are.
    runtime_options: any_pb2.Any | None = None
    task_options: any_pb2.Any | None = None


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


class TaskManager:
    """Every task of every namespace, by namespace and id."""

    def __init__(
        self,
        *,
        root: Path,
        state: Path,
        address: str,
        ttrpc_address: str,
        exchange: Exchange,
        shims: Mapping[str, Sequence[str]] = DEFAULT_SHIMS,
        publish_binary: str = "",
    ) -> None:
        self.root = root
        self.state = state
        self.address = address
        self.ttrpc_address = ttrpc_address
        self.exchange = exchange
        self.shims = {k: tuple(v) for k, v in shims.items()}
        self.publish_binary = publish_binary
        self._tasks: dict[tuple[str, str], ShimTask] = {}
        self._creating: set[tuple[str, str]] = set()
        self._closing = False
        self._loaded = asyncio.Event()
        self._loading = False
        self._background: set[asyncio.Task[None]] = set()

    # -- lookup

    async def loaded(self) -> None:
        """Wait until the tasks found on start are loaded (starting that if need be)."""
        self.start_loading()
        await self._loaded.wait()

    def get(self, namespace: str, id_: str) -> ShimTask:
        """The task ``id_``; NotFound as containerd's ``task ID not found``."""
        task = self._tasks.get((namespace, id_))
        if task is None:
            raise errdefs.NotFound(f"task {id_} not found")
        return task

    def tasks(self, namespace: str | None = None) -> list[ShimTask]:
        """The tasks of ``namespace`` (of all with None), by id."""
        return sorted(
            (t for (ns, _), t in self._tasks.items() if namespace is None or ns == namespace),
            key=lambda t: (t.namespace, t.id),
        )

    # -- create and delete

    def _command(self, binary: str, bundle: Bundle) -> ShimCommand:
        return ShimCommand(
            binary=binary,
            bundle=bundle,
            address=self.address,
            ttrpc_address=self.ttrpc_address,
            publish_binary=self.publish_binary,
            debug=logging.getLogger().isEnabledFor(logging.DEBUG),
        )

    async def create(self, namespace: str, id_: str, opts: CreateOpts) -> ShimTask:
        """Start a shim for ``id_`` and create its task (not started)."""
        await self.loaded()
        key = (namespace, id_)
        if key in self._tasks or key in self._creating:
            raise errdefs.AlreadyExists(f"task {id_}: already exists")
        self._creating.add(key)
        try:
            task = await self._start_shim(namespace, id_, opts)
            try:
                task.pid = await task.create(
                    rootfs=opts.rootfs,
                    stdin=opts.stdin,
                    stdout=opts.stdout,
                    stderr=opts.stderr,
                    terminal=opts.terminal,
                    checkpoint=opts.checkpoint,
                    options=opts.task_options or opts.runtime_options,
                )
            except errdefs.ContainerdError as exc:
                await self._discard(task)
                raise errdefs.from_code(
                    exc.code, f"failed to create shim task: {exc.message}"
                ) from None
            except BaseException:
                await self._discard(task)
                raise
            task.runtime = opts.runtime
            self._tasks[key] = task
            return task
        finally:
            self._creating.discard(key)

    async def _start_shim(self, namespace: str, id_: str, opts: CreateOpts) -> ShimTask:
        try:
            binary = resolve_runtime(opts.runtime, self.shims)
        except errdefs.ContainerdError as exc:
            raise errdefs.from_code(
                exc.code, f"failed to start shim: failed to resolve runtime path: {exc.message}"
            ) from None
        bundle = await asyncio.to_thread(
            Bundle.new, self.root, self.state, namespace, id_, opts.spec
        )
        shim_log: ShimLog | None = None
        command = self._command(binary, bundle)
        address = ""
        try:
            shim_log = ShimLog(bundle)
            address = await command.start(opts.task_options or opts.runtime_options)
            (bundle.path / "shim-binary-path").write_text(binary)
            client = await Client.connect(address, on_close=lambda: self._on_close(bundle))
        except BaseException as exc:
            if shim_log is not None:
                shim_log.close()
            if address:  # the shim runs but cannot be reached: have it clean up
                with contextlib.suppress(Exception):
                    await command.delete()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(bundle.delete)
            if isinstance(exc, errdefs.ContainerdError):
                raise errdefs.from_code(exc.code, f"failed to start shim: {exc.message}") from None
            raise
        return ShimTask(bundle, client, command, shim_log)

    async def _discard(self, task: ShimTask) -> None:
        """After a failed create: delete what the shim made, stop it, remove the bundle."""
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                with contextlib.suppress(errdefs.NotFound, errdefs.Unavailable):
                    await task.delete_process()
        except Exception as exc:
            log.warning("cleanup of task %s/%s: %s", task.namespace, task.id, exc)
        await self._stop_shim(task)

    async def _stop_shim(self, task: ShimTask) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await task.shutdown()
        except Exception as exc:
            log.warning("shutdown of shim %s/%s: %s", task.namespace, task.id, exc)
        await task.close()
        try:
            await asyncio.to_thread(task.bundle.delete)
        except Exception as exc:
            log.error("delete bundle %s: %s", task.bundle.path, exc)

    async def delete(self, namespace: str, id_: str) -> Exit:
        """Delete a stopped (or never started) task, stop its shim, remove its bundle."""
        await self.loaded()
        task = self.get(namespace, id_)
        try:
            state = await task.state()
        except (errdefs.Unavailable, errdefs.NotFound):  # gone, or never created in the shim
            state = None
        if state is not None and state.status in (
            task_pb2.RUNNING,
            task_pb2.PAUSED,
            task_pb2.PAUSING,
        ):
            status = task_pb2.Status.Name(state.status).lower()
            raise errdefs.FailedPrecondition(f"task must be stopped before deletion: {status}")
        shim_error: errdefs.ContainerdError | None = None
        exit_ = Exit(pid=0, status=0, timestamp=0)
        try:
            exit_ = await task.delete_process()
        except errdefs.Unavailable as exc:  # the shim is gone: clean up all the same
            shim_error = exc
        except errdefs.NotFound as exc:
            shim_error = exc
        if self._tasks.get((namespace, id_)) is task:
            del self._tasks[(namespace, id_)]
        await self._stop_shim(task)
        if shim_error is not None:
            raise shim_error
        return exit_

    # -- dead shims

    def _on_close(self, bundle: Bundle) -> None:
        key = (bundle.namespace, bundle.id)
        task = self._tasks.get(key)
        if self._closing or task is None or task.client.closed_by_user:
            return
        log.info("shim disconnected: %s/%s", bundle.namespace, bundle.id)
        self._spawn(self._cleanup_dead(task))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        bg = asyncio.get_running_loop().create_task(coro)
        self._background.add(bg)
        bg.add_done_callback(self._background.discard)

    async def _cleanup_dead(self, task: ShimTask) -> None:
        """containerd's ``cleanupAfterDeadShim``: delete, report the exit, remove the bundle."""
        ns, id_ = task.namespace, task.id
        log.warning("cleaning up after shim disconnected: %s/%s", ns, id_)
        exit_: Exit | None = None
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                exit_ = await task.command.delete()
        except Exception as exc:
            log.warning("failed to clean up after shim disconnected %s/%s: %s", ns, id_, exc)
        task.abort()
        if self._tasks.get((ns, id_)) is task:
            del self._tasks[(ns, id_)]
        elif self._tasks.get((ns, id_)) is not None or self._closing:
            return
        try:
            await asyncio.to_thread(_remove_dead_socket, task.bundle)
            await asyncio.to_thread(task.bundle.delete)
        except Exception as exc:
            log.error("delete bundle %s: %s", task.bundle.path, exc)
        if exit_ is None:
            exit_ = Exit(pid=0, status=UNKNOWN_EXIT_STATUS, timestamp=time.time_ns())
        at = _timestamp(exit_.timestamp or time.time_ns())
        self.exchange.publish(
            ns,
            TASK_EXIT_TOPIC,
            events.TaskExit(
                container_id=id_, id=id_, pid=exit_.pid, exit_status=exit_.status, exited_at=at
            ),
        )
        self.exchange.publish(
            ns,
            TASK_DELETE_TOPIC,
            events.TaskDelete(
                container_id=id_, pid=exit_.pid, exit_status=exit_.status, exited_at=at
            ),
        )

    # -- restart

    def start_loading(self) -> None:
        """Load the tasks found on start in the background (:meth:`loaded` waits for it);
        once only."""
        if self._loading:
            return
        self._loading = True
        self._spawn(self._load_guarded())

    async def _load_guarded(self) -> None:
        try:
            await self.load()
        except Exception:
            log.exception("loading existing tasks")
        finally:
            self._loaded.set()

    async def load(self) -> None:
        """Serve again every task whose shim is alive; clean up after the dead ones."""
        if not self.state.is_dir():
            return
        for ns_dir in sorted(self.state.iterdir()):
            if not ns_dir.is_dir() or ns_dir.name.startswith("."):
                continue
            for task_dir in sorted(ns_dir.iterdir()):
                if not task_dir.is_dir() or task_dir.name.startswith("."):
                    continue
                await self._load_one(Bundle.load(self.state, ns_dir.name, task_dir.name))
            self._cleanup_work_dirs(ns_dir.name)

    async def _load_one(self, bundle: Bundle) -> None:
        ns, id_ = bundle.namespace, bundle.id
        if not any(bundle.path.iterdir()):
            await asyncio.to_thread(bundle.delete)
            return
        binary = bundle.read("shim-binary-path")
        if not binary:
            log.error("task %s/%s: no shim recorded in its bundle, removing it", ns, id_)
            await asyncio.to_thread(bundle.delete)
            return
        command = self._command(binary, bundle)
        shim_log: ShimLog | None = None
        client: Client | None = None
        try:
            address = bundle.read("address")
            if not address:
                raise errdefs.NotFound(f"shim address of task {ns}/{id_}: not found")
            # the log first, as containerd: a shim may wait for a reader before it serves
            shim_log = ShimLog(bundle)
            client = await Client.connect(
                address, timeout=LOAD_TIMEOUT, on_close=lambda: self._on_close(bundle)
            )
            task = ShimTask(bundle, client, command, shim_log)
            async with asyncio.timeout(LOAD_TIMEOUT):
                connected = await task.connect()
        except Exception as exc:
            log.info("shim of task %s/%s is gone (%s): cleaning up", ns, id_, exc)
            if client is not None:
                client.abort()
            if shim_log is not None:
                shim_log.close()
            dead = ShimTask(bundle, _ClosedClient(), command, None)
            self._tasks[(ns, id_)] = dead
            await self._cleanup_dead(dead)
            return
        if connected.task_pid == 0:  # the daemon died between starting the shim and the create
            log.info("shim of task %s/%s holds no task: stopping it", ns, id_)
            await self._stop_shim(task)
            return
        self._tasks[(ns, id_)] = task
        log.info("reconnected to the shim of task %s/%s", ns, id_)

    def _cleanup_work_dirs(self, namespace: str) -> None:
        work = self.root / namespace
        if not work.is_dir():
            return
        for d in work.iterdir():
            if (namespace, d.name) not in self._tasks:
                shutil.rmtree(d, ignore_errors=True)

    # -- daemon stop

    def shutdown(self) -> None:
        """The daemon stops: shims keep running, their disconnection is no death."""
        self._closing = True

    def close(self) -> None:
        """Drop every shim connection (the tasks run on) and stop background work."""
        self._closing = True
        for task in self._tasks.values():
            task.abort()
        for bg in list(self._background):
            bg.cancel()


def _remove_dead_socket(bundle: Bundle) -> None:
    """Remove the socket of a shim that was killed (it could not remove it itself).

    Only a filesystem socket nothing listens on any more is removed.
    """
    address = bundle.read("address")
    if not address:
        return
    path = socket_path(address)
    if path.startswith("\0"):
        return
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            log.debug("removed the socket %s of a dead shim", path)
    except OSError:
        pass
    finally:
        probe.close()


class _ClosedClient(Client):
    """Stands in for the connection to a shim that could not be reached."""

    def __init__(self) -> None:  # no connection at all
        pass

    @property
    def closed(self) -> bool:
        return True

    @property
    def closed_by_user(self) -> bool:
        return True

    def abort(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _init(ic: InitContext) -> TaskManager:
    from pycontainerd.daemon.services.events import publisher
    from pycontainerd.daemon.ttrpc import ttrpc_address

    config = ic.config if isinstance(ic.config, Config) else Config()
    for name, candidates in config.shims.items():
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise errdefs.InvalidArgument(
                f"runtime config: shims for {name}: expected an array of strings"
            )
    ic.state.mkdir(parents=True, exist_ok=True, mode=0o711)
    ic.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    manager = TaskManager(
        root=ic.root,
        state=ic.state,
        address=ic.address,
        ttrpc_address=ttrpc_address(ic.address),
        exchange=publisher(ic),
        shims=config.shims,
        publish_binary=shutil.which("pycontainerd") or "",
    )
    ic.meta.exports["state"] = str(ic.state)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # loaded outside the daemon: the first call loads
        return manager
    manager.start_loading()
    return manager


registration = Registration(
    type=Type.RUNTIME_V2, id="task", init=_init, requires=(Type.EVENT,), config=Config
)
