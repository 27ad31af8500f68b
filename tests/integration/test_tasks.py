"""The Tasks service against the real daemon, runc and containerd's runc shim (or ours).

Each test runs in a namespace of its own: a busybox layer committed on overlayfs, a container
record through the Containers service, stdio FIFOs in containerd's client layout, then the
Tasks calls. Whatever a test leaves running is killed and deleted after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2

from pycontainerd import Client, errdefs
from pycontainerd.api.containerd.events import namespace_pb2
from pycontainerd.api.containerd.events import task_pb2 as task_events
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.api.containerd.types.task import task_pb2
from pycontainerd.client import Event
from pycontainerd.containers import SPEC_TYPE_URL
from tests.fixtures.containers import Stdio, fill_busybox, oci_spec
from tests.fixtures.daemon import Daemon
from tests.fixtures.shims import CONTAINERD_SHIM, shim_pids

pytestmark = pytest.mark.integration

#: The runtime name ctr uses: our shim when it is installed, else containerd's runc shim.
RUNTIME = "io.containerd.runc.v2"
#: containerd's own shim, by path (a path is used as it is): the daemon drives any v2 shim.
SNAPSHOTTER = "overlayfs"
LAYER = "busybox-layer"
#: The test's snapshots are its own to remove: the collector leaves them alone.
ROOT = {"containerd.io/gc.root": "tasks test"}


class Runner:
    """Containers of one test, in their own namespace, cleaned up after it."""

    def __init__(self, daemon: Daemon, tmp: Path, runtime: str) -> None:
        self.daemon = daemon
        self.tmp = tmp
        self.runtime = runtime
        self.namespace = f"tasks-{uuid.uuid4().hex[:8]}"
        self.client = Client(daemon.address, namespace=self.namespace)
        self.tasks = tasks_pb2_grpc.TasksStub(self.client.channel)
        self.containers = containers_pb2_grpc.ContainersStub(self.client.channel)
        self.ids: list[str] = []
        sn = self.client.snapshots(SNAPSHOTTER)
        mounts = sn.prepare(f"{LAYER}-active", "", labels=ROOT)
        assert [m.type for m in mounts] == ["bind"], mounts
        fill_busybox(Path(mounts[0].source))
        sn.commit(LAYER, f"{LAYER}-active", labels=ROOT)

    def call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        return self.client.call(method, request, timeout=timeout)

    def reconnect(self) -> None:
        """A new client, after the daemon restarted."""
        self.client.close()
        self.client = Client(self.daemon.address, namespace=self.namespace)
        self.tasks = tasks_pb2_grpc.TasksStub(self.client.channel)
        self.containers = containers_pb2_grpc.ContainersStub(self.client.channel)

    def container(self, id_: str, args: list[str], *, runtime: str = "") -> str:
        """A container record with a snapshot of the busybox layer."""
        self.client.snapshots(SNAPSHOTTER).prepare(id_, LAYER, labels=ROOT)
        spec = oci_spec(args, namespace=self.namespace, id_=id_)
        self.call(
            self.containers.Create,
            containers_pb2.CreateContainerRequest(
                container=containers_pb2.Container(
                    id=id_,
                    runtime=containers_pb2.Container.Runtime(name=runtime or self.runtime),
                    spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
                    snapshotter=SNAPSHOTTER,
                    snapshot_key=id_,
                )
            ),
        )
        self.ids.append(id_)
        return id_

    def create(self, id_: str, args: list[str], *, stdin: bool = False) -> tuple[int, Stdio]:
        """A container and its task (created, not started); its pid and stdio."""
        self.container(id_, args)
        io = Stdio(self.tmp / "fifo", id_, stdin=stdin)
        resp = self.call(
            self.tasks.Create,
            tasks_pb2.CreateTaskRequest(
                container_id=id_,
                stdin=str(io.stdin_path or ""),
                stdout=str(io.stdout.path),
                stderr=str(io.stderr.path),
            ),
        )
        assert resp.container_id == id_
        return resp.pid, io

    def exec(self, id_: str, exec_id: str, script: str) -> tuple[int, str]:
        """Run ``sh -c script`` in the task, delete the process; its status and output."""
        io = Stdio(self.tmp / "fifo", f"{id_}-{exec_id}")
        process = oci_spec(["sh", "-c", script], namespace=self.namespace, id_=id_)["process"]
        self.call(
            self.tasks.Exec,
            tasks_pb2.ExecProcessRequest(
                container_id=id_,
                exec_id=exec_id,
                stdout=str(io.stdout.path),
                stderr=str(io.stderr.path),
                spec=any_pb2.Any(
                    type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                    value=json.dumps(process).encode(),
                ),
            ),
        )
        self.call(self.tasks.Start, tasks_pb2.StartRequest(container_id=id_, exec_id=exec_id))
        status = self.wait(id_, exec_id)
        output = io.stdout.read()
        deleted = self.call(
            self.tasks.DeleteProcess,
            tasks_pb2.DeleteProcessRequest(container_id=id_, exec_id=exec_id),
        )
        assert (deleted.id, deleted.exit_status) == (exec_id, status)
        return status, output

    def get(self, id_: str, exec_id: str = "") -> task_pb2.Process:
        resp = self.call(self.tasks.Get, tasks_pb2.GetRequest(container_id=id_, exec_id=exec_id))
        return resp.process

    def wait(self, id_: str, exec_id: str = "") -> int:
        resp = self.call(
            self.tasks.Wait, tasks_pb2.WaitRequest(container_id=id_, exec_id=exec_id), timeout=60
        )
        return int(resp.exit_status)

    def delete(self, id_: str) -> tasks_pb2.DeleteResponse:
        return self.call(self.tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=id_))

    def close(self) -> None:
        for id_ in self.ids:
            try:
                self.call(
                    self.tasks.Kill,
                    tasks_pb2.KillRequest(container_id=id_, signal=signal.SIGKILL, all=True),
                )
                self.wait(id_)
            except errdefs.ContainerdError:
                pass
            with contextlib.suppress(errdefs.NotFound):
                self.delete(id_)
            self.client.snapshots(SNAPSHOTTER).remove(id_)
            self.call(self.containers.Delete, containers_pb2.DeleteContainerRequest(id=id_))
        self.client.snapshots(SNAPSHOTTER).remove(LAYER)
        self.client.namespaces.delete(self.namespace)
        self.client.close()
        for controller in Path("/sys/fs/cgroup").iterdir():
            cg = controller / self.namespace
            if cg.is_dir():
                os.rmdir(cg)


@pytest.fixture(params=[RUNTIME, CONTAINERD_SHIM], ids=["default-shim", "containerd-shim"])
def runner(daemon: Daemon, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Runner]:
    r = Runner(daemon, tmp_path, request.param)
    try:
        yield r
    finally:
        r.close()


def test_echo_hi_through_fifos(runner: Runner) -> None:
    pid, io = runner.create("echo", ["echo", "hi"])
    assert pid > 0
    assert runner.get("echo").status == task_pb2.CREATED
    started = runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="echo"))
    assert started.pid == pid
    assert runner.wait("echo") == 0
    assert io.stdout.read() == "hi\n"
    assert io.stderr.read() == ""
    process = runner.get("echo")
    assert (process.status, process.exit_status, process.pid) == (task_pb2.STOPPED, 0, pid)
    deleted = runner.delete("echo")
    assert (deleted.pid, deleted.exit_status) == (pid, 0)
    with pytest.raises(errdefs.NotFound, match="task echo not found"):
        runner.get("echo")


def test_wait_before_start_gets_the_exit_code(runner: Runner) -> None:
    runner.create("three", ["sh", "-c", "exit 3"])
    status: list[int] = []
    waiter = threading.Thread(target=lambda: status.append(runner.wait("three")))
    waiter.start()
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="three"))
    waiter.join(60)
    assert status == [3]
    assert runner.delete("three").exit_status == 3


def test_kill_and_the_errors_of_finished_tasks(runner: Runner) -> None:
    runner.create("sleeper", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="sleeper"))
    assert runner.get("sleeper").status == task_pb2.RUNNING
    with pytest.raises(errdefs.FailedPrecondition, match="must be stopped"):
        runner.delete("sleeper")
    with pytest.raises(errdefs.ContainerdError):  # a second start: runc's refusal
        runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="sleeper"))
    # sleep is pid 1 of its namespace: only SIGKILL ends it
    runner.call(
        runner.tasks.Kill, tasks_pb2.KillRequest(container_id="sleeper", signal=signal.SIGKILL)
    )
    assert runner.wait("sleeper") == 128 + signal.SIGKILL
    with pytest.raises(errdefs.NotFound, match="process already finished"):
        runner.call(
            runner.tasks.Kill,
            tasks_pb2.KillRequest(container_id="sleeper", signal=signal.SIGTERM),
        )
    runner.delete("sleeper")


def test_unknown_container_and_task(runner: Runner) -> None:
    with pytest.raises(errdefs.NotFound, match="nosuch"):
        runner.call(runner.tasks.Create, tasks_pb2.CreateTaskRequest(container_id="nosuch"))
    runner.container("idle", ["true"])
    with pytest.raises(errdefs.NotFound, match="task idle not found"):
        runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="idle"))
    with pytest.raises(errdefs.NotImplemented):
        runner.call(runner.tasks.Checkpoint, tasks_pb2.CheckpointTaskRequest(container_id="idle"))
    runner.container("unrunnable", ["true"], runtime="io.containerd.nosuch.v1")
    with pytest.raises(errdefs.NotFound, match='binary not installed "containerd-shim-nosuch-v1"'):
        runner.call(runner.tasks.Create, tasks_pb2.CreateTaskRequest(container_id="unrunnable"))


def _eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a shim exits on its own time after answering)."""
    for _ in range(400):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def test_failed_create_leaves_nothing(runner: Runner, daemon: Daemon) -> None:
    runner.container("broken", ["/no/such/binary"])
    io = Stdio(runner.tmp / "fifo", "broken")
    with pytest.raises(errdefs.ContainerdError, match="no/such/binary"):
        runner.call(
            runner.tasks.Create,
            tasks_pb2.CreateTaskRequest(
                container_id="broken", stdout=str(io.stdout.path), stderr=str(io.stderr.path)
            ),
        )
    bundles = daemon.state / "io.containerd.runtime.v2.task" / runner.namespace
    assert not bundles.exists() or list(bundles.iterdir()) == []
    with pytest.raises(errdefs.NotFound):
        runner.get("broken")
    listed = runner.call(runner.tasks.List, tasks_pb2.ListTasksRequest())
    assert list(listed.tasks) == []
    _eventually(lambda: shim_pids(runner.namespace) == [], "the shim of a failed create runs on")
    # the same container can have its task once the cause is gone
    spec = oci_spec(["true"], namespace=runner.namespace, id_="broken")
    container = runner.call(runner.containers.Get, containers_pb2.GetContainerRequest(id="broken"))
    container.container.spec.value = json.dumps(spec).encode()
    runner.call(
        runner.containers.Update,
        containers_pb2.UpdateContainerRequest(container=container.container),
    )
    runner.call(runner.tasks.Create, tasks_pb2.CreateTaskRequest(container_id="broken"))
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="broken"))
    assert runner.wait("broken") == 0
    runner.delete("broken")
    _eventually(lambda: shim_pids(runner.namespace) == [], "the shim of a deleted task runs on")


def test_exec_pause_resume_pids_metrics(runner: Runner) -> None:
    pid, _ = runner.create("busy", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="busy"))

    pids = runner.call(runner.tasks.ListPids, tasks_pb2.ListPidsRequest(container_id="busy"))
    assert pid in [p.pid for p in pids.processes]

    assert runner.exec("busy", "ex1", "echo from-exec; exit 7") == (7, "from-exec\n")

    runner.call(runner.tasks.Pause, tasks_pb2.PauseTaskRequest(container_id="busy"))
    assert runner.get("busy").status == task_pb2.PAUSED
    runner.call(runner.tasks.Resume, tasks_pb2.ResumeTaskRequest(container_id="busy"))
    assert runner.get("busy").status == task_pb2.RUNNING

    metrics = runner.call(runner.tasks.Metrics, tasks_pb2.MetricsRequest(filters=["id==busy"]))
    assert [m.id for m in metrics.metrics] == ["busy"]
    assert metrics.metrics[0].data.type_url.endswith("io.containerd.cgroups.v1.Metrics") or (
        metrics.metrics[0].data.type_url.endswith("io.containerd.cgroups.v2.Metrics")
    )
    listed = runner.call(runner.tasks.List, tasks_pb2.ListTasksRequest())
    assert [(t.id, t.pid, t.status) for t in listed.tasks] == [("busy", pid, task_pb2.RUNNING)]

    runner.call(
        runner.tasks.Kill,
        tasks_pb2.KillRequest(container_id="busy", signal=signal.SIGKILL, all=True),
    )
    assert runner.wait("busy") == 128 + signal.SIGKILL
    runner.delete("busy")


def test_daemon_killed_while_tasks_run(runner: Runner, daemon: Daemon) -> None:
    pid, _ = runner.create("survivor", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="survivor"))
    gone_pid, _ = runner.create("leaver", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="leaver"))

    daemon.stop(signal.SIGKILL)
    os.kill(gone_pid, signal.SIGKILL)  # exits while nobody listens
    daemon.start()
    runner.reconnect()

    process = runner.get("survivor")
    assert (process.status, process.pid) == (task_pb2.RUNNING, pid)
    assert runner.exec("survivor", "after", "echo still here") == (0, "still here\n")
    assert runner.wait("leaver") == 128 + signal.SIGKILL
    assert runner.get("leaver").status == task_pb2.STOPPED
    assert runner.delete("leaver").exit_status == 128 + signal.SIGKILL

    runner.call(
        runner.tasks.Kill, tasks_pb2.KillRequest(container_id="survivor", signal=signal.SIGKILL)
    )
    assert runner.wait("survivor") == 128 + signal.SIGKILL
    runner.delete("survivor")


def test_daemon_restarted_while_a_task_runs(runner: Runner, daemon: Daemon) -> None:
    pid, io = runner.create("steady", ["sh", "-c", "echo before; read line; echo got $line"],
                            stdin=True)  # fmt: skip
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="steady"))
    io.stdout.wait_for("before\n")
    daemon.restart()  # SIGTERM: exits 0, the task runs on
    runner.reconnect()
    listed = runner.call(runner.tasks.List, tasks_pb2.ListTasksRequest())
    assert [(t.id, t.pid, t.status) for t in listed.tasks] == [("steady", pid, task_pb2.RUNNING)]
    io.write(b"after restart\n")  # the shim kept its FIFOs: stdio goes on
    assert runner.wait("steady") == 0
    assert io.stdout.read() == "before\ngot after restart\n"
    io.close_stdin()
    runner.delete("steady")


class Events:
    """The test namespace's task events, read by a thread; in place once :meth:`ready`."""

    SYNC = "/test/sync"

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.stream = runner.client.events(
            f'namespace=="{runner.namespace}",topic~="^/tasks/"',
            f'namespace=="{runner.namespace}",topic=="{self.SYNC}"',
        )
        self.queue: queue.Queue[Event | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.stream:
                self.queue.put(ev)
        except BaseException as exc:
            self.queue.put(exc)

    def ready(self) -> None:
        """Publish markers until one comes back; drop the markers."""
        for _ in range(100):
            self.runner.client.publish(self.SYNC, namespace_pb2.NamespaceUpdate(name="sync"))
            try:
                ev = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            assert isinstance(ev, Event), ev
            return
        raise AssertionError("the subscription never received a marker")

    def next_task_event(self) -> Event:
        while True:
            ev = self.queue.get(timeout=60)
            assert isinstance(ev, Event), ev
            if ev.topic != self.SYNC:
                return ev

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def events(runner: Runner) -> Iterator[Events]:
    ev = Events(runner)
    try:
        ev.ready()
        yield ev
    finally:
        ev.close()


def _shim_pid(task_pid: int) -> int:
    """The shim is the task's parent (its subreaper)."""
    stat = Path(f"/proc/{task_pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _shim_socket(daemon: Daemon, namespace: str, id_: str) -> Path | None:
    """The shim's socket file, from its bundle's ``address`` (None for an abstract one)."""
    bundle = daemon.state / "io.containerd.runtime.v2.task" / namespace / id_
    path = (bundle / "address").read_text().strip().removeprefix("unix://")
    if path.startswith(("@", "\0")):
        return None
    assert Path(path).exists()
    return Path(path)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_the_shims_events_are_forwarded(runner: Runner, events: Events) -> None:
    pid, _ = runner.create("evented", ["sh", "-c", "exit 4"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="evented"))
    assert runner.wait("evented") == 4
    runner.delete("evented")
    seen = [events.next_task_event() for _ in range(4)]
    assert [e.topic for e in seen] == [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ]
    create, start, exit_, delete = (e.event for e in seen)
    assert isinstance(create, task_events.TaskCreate)
    assert (create.container_id, create.pid) == ("evented", pid)
    assert isinstance(start, task_events.TaskStart)
    assert isinstance(exit_, task_events.TaskExit)
    assert (exit_.container_id, exit_.pid, exit_.exit_status) == ("evented", pid, 4)
    assert isinstance(delete, task_events.TaskDelete)
    assert (delete.container_id, delete.exit_status) == ("evented", 4)


def test_a_dead_shim_is_cleaned_up_and_its_exit_reported(
    runner: Runner, events: Events, daemon: Daemon
) -> None:
    pid, _ = runner.create("doomed", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="doomed"))
    assert [events.next_task_event().topic for _ in range(2)] == ["/tasks/create", "/tasks/start"]

    socket_file = _shim_socket(daemon, runner.namespace, "doomed")
    os.kill(_shim_pid(pid), signal.SIGKILL)
    exit_, delete = events.next_task_event(), events.next_task_event()
    assert (exit_.topic, delete.topic) == ("/tasks/exit", "/tasks/delete")
    assert isinstance(exit_.event, task_events.TaskExit)
    assert (exit_.event.container_id, exit_.event.pid) == ("doomed", pid)
    assert exit_.event.exit_status == 128 + signal.SIGKILL
    with pytest.raises(errdefs.NotFound, match="task doomed not found"):
        runner.get("doomed")
    assert _gone(pid)
    assert not (
        daemon.state / "io.containerd.runtime.v2.task" / runner.namespace / "doomed"
    ).exists()
    assert socket_file is None or not socket_file.exists()  # removed for the killed shim


def test_a_shim_dead_while_the_daemon_was_down(runner: Runner, daemon: Daemon) -> None:
    pid, _ = runner.create("orphan", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="orphan"))
    socket_file = _shim_socket(daemon, runner.namespace, "orphan")
    daemon.stop(signal.SIGKILL)
    os.kill(_shim_pid(pid), signal.SIGKILL)
    daemon.start()
    runner.reconnect()
    with pytest.raises(errdefs.NotFound, match="task orphan not found"):
        runner.get("orphan")
    assert _gone(pid)
    assert not (
        daemon.state / "io.containerd.runtime.v2.task" / runner.namespace / "orphan"
    ).exists()
    assert socket_file is None or not socket_file.exists()  # removed for the killed shim


def test_stdin_and_close_io(runner: Runner) -> None:
    _, io = runner.create("reader", ["cat"], stdin=True)
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="reader"))
    io.write(b"through the fifo\n")
    io.stdout.wait_for("through the fifo\n")
    assert runner.get("reader").status == task_pb2.RUNNING
    # as containerd's client: close our end, then CloseIO drops the shim's hold on the FIFO
    io.close_stdin()
    runner.call(runner.tasks.CloseIO, tasks_pb2.CloseIORequest(container_id="reader", stdin=True))
    assert runner.wait("reader") == 0
    assert io.stdout.read() == "through the fifo\n"
    runner.delete("reader")


def test_update_resources(runner: Runner) -> None:
    runner.create("limited", ["sleep", "1000"])
    runner.call(runner.tasks.Start, tasks_pb2.StartRequest(container_id="limited"))
    resources = {"pids": {"limit": 77}}
    runner.call(
        runner.tasks.Update,
        tasks_pb2.UpdateTaskRequest(
            container_id="limited",
            resources=any_pb2.Any(
                type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                value=json.dumps(resources).encode(),
            ),
        ),
    )
    v1 = Path("/sys/fs/cgroup/pids") / runner.namespace / "limited" / "pids.max"
    v2 = Path("/sys/fs/cgroup") / runner.namespace / "limited" / "pids.max"
    assert (v1 if v1.exists() else v2).read_text().strip() == "77"
    runner.call(
        runner.tasks.Kill, tasks_pb2.KillRequest(container_id="limited", signal=signal.SIGKILL)
    )
    assert runner.wait("limited") == 128 + signal.SIGKILL
    runner.delete("limited")
