"""``Client.run`` and the task API on the real daemon, shim and runc, with a busybox image
pushed to a real registry: output captured or streamed, exit codes, stdin, options, detached
tasks and their calls, errors, and nothing left behind (FIFOs, containers, snapshots)."""

from __future__ import annotations

import io
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pycontainerd import Client, cio, errdefs
from pycontainerd.api.io.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from pycontainerd.api.io.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from pycontainerd.client.run import ContainerError, RunResult
from pycontainerd.client.tasks import ExitStatus, ProcessStatus, Task
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import make_test_image, push_image
from tests.fixtures.registry import run_registry
from tests.fixtures.shims import CONTAINERD_SHIM, shims_and_mounts

pytestmark = pytest.mark.integration

SNAPSHOTTER = "overlayfs"


@pytest.fixture(scope="module")
def image_ref() -> Iterator[str]:
    from pycontainerd.remotes import Resolver

    with run_registry() as reg:
        ref = f"{reg.host}/test/busybox:run"
        with Resolver(plain_http=True) as r:
            push_image(r, ref, make_test_image("run"))
        yield ref


class Env:
    """A client in a namespace of its own with the image pulled; everything removed after."""

    def __init__(self, daemon: Daemon, ref: str, tmp: Path) -> None:
        self.ref = ref
        self.namespace = f"run-{uuid.uuid4().hex[:8]}"
        self.client = Client(daemon.address, namespace=self.namespace)
        self.fifo_dir = tmp / "fifo"
        self.fifo_dir.mkdir()

    def run(self, args: list[str], **kw: Any) -> RunResult:
        kw.setdefault("fifo_dir", str(self.fifo_dir))
        res = self.client.run(self.ref, args, plain_http=True, **kw)
        assert isinstance(res, RunResult)
        return res

    def leftovers(self) -> tuple[list[str], list[str], list[str]]:
        containers = [c.id for c in self.client.containers.list()]
        snapshots: list[str] = []
        self.client.snapshots(SNAPSHOTTER).walk(
            lambda i: snapshots.append(i.name) if i.kind.name.lower() == "active" else None
        )
        assert shims_and_mounts(self.namespace) == ([], [])
        return containers, snapshots, sorted(os.listdir(self.fifo_dir))

    def close(self) -> None:
        c = self.client
        for task_id, _, _ in c.tasks.list():
            t = c.tasks.get(task_id)
            t.delete(force=True)
        for container in c.containers.list():
            c.containers.delete(container.id, cleanup_snapshot=True)
        for img in c.images.list():
            c.images.delete(img.name, sync=True)
        c.namespaces.delete(self.namespace)
        c.close()
        for controller in Path("/sys/fs/cgroup").iterdir():
            cg = controller / self.namespace
            if cg.is_dir():
                cg.rmdir()


@pytest.fixture
def env(daemon: Daemon, image_ref: str, tmp_path: Path) -> Iterator[Env]:
    e = Env(daemon, image_ref, tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_run_captures_stdout_and_stderr_and_leaves_nothing(env: Env) -> None:
    res = env.run(["echo", "hi"])
    assert (res.exit_code, res.stdout, res.stderr) == (0, b"hi\n", b"")
    assert res.wait() == res.exit_status
    assert res.exit_status.exited_at is not None
    res = env.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.exit_code, res.stdout, res.stderr) == (3, b"out\n", b"err\n")
    with pytest.raises(ContainerError, match="exited with 3: err"):
        res.check()
    assert env.leftovers() == ([], [], [])


def test_run_pulls_a_missing_image_once(env: Env) -> None:
    assert env.client.images.list() == []
    env.run(["true"])
    assert [i.name for i in env.client.images.list()] == [env.ref]
    assert env.run(["true"]).exit_code == 0


def test_run_streams_into_given_files(env: Env, tmp_path: Path) -> None:
    out_path = tmp_path / "out.txt"
    err = io.BytesIO()
    with open(out_path, "wb") as out:
        res = env.run(["sh", "-c", "echo to-file; echo to-buffer >&2"], stdout=out, stderr=err)
    assert (res.stdout, res.stderr) == (None, None)
    assert out_path.read_bytes() == b"to-file\n"
    assert err.getvalue() == b"to-buffer\n"


def test_run_stdin_bytes_and_stream(env: Env) -> None:
    assert env.run(["cat"], stdin=b"through stdin\n").stdout == b"through stdin\n"
    big = os.urandom(300_000)  # more than a pipe holds
    # on containerd's shim: ours drops what the FIFO still buffers on CloseIO (reported)
    res = env.run(
        ["sh", "-c", "cat | busybox wc -c"], stdin=io.BytesIO(big), runtime=CONTAINERD_SHIM
    )
    assert res.stdout is not None
    assert int(res.stdout) == len(big)
    r, w = os.pipe()
    os.write(w, b"from a descriptor")
    os.close(w)
    try:
        assert env.run(["cat"], stdin=r).stdout == b"from a descriptor"
    finally:
        os.close(r)


def test_run_options(env: Env, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host\n")
    res = env.run(
        ["sh", "-c", 'echo "$GREETING"; busybox pwd; cat /mnt/note; busybox id -u'],
        env={"GREETING": "hello"},
        cwd="/tmp",
        mounts=[f"type=bind,src={shared},dst=/mnt,options=rbind:ro"],
        user="1000:1000",
        name="opts",
        labels={"app": "test"},
        memory=64 << 20,
        cpus=0.5,
    )
    assert res.id == "opts"
    assert res.stdout == b"hello\n/tmp\nfrom the host\n1000\n", res.stderr
    res = env.run(["sh", "-c", "echo x > /x"], read_only=True)
    assert res.exit_code != 0
    assert b"Read-only file system" in (res.stderr or b"")
    host = env.run(["sh", "-c", "busybox hostname"], network="host").stdout
    assert host == os.uname().nodename.encode() + b"\n"


def test_run_tty_merges_output(env: Env) -> None:
    res = env.run(["sh", "-c", "echo out; echo err >&2; busybox tty"], tty=True)
    assert res.stderr is None
    assert res.stdout is not None
    lines = res.stdout.replace(b"\r\n", b"\n").splitlines()
    assert lines[:2] == [b"out", b"err"]
    assert lines[2].startswith(b"/dev/pts/")


def test_detached_task_calls(env: Env) -> None:
    c = env.client
    task = c.run(
        env.ref,
        ["sh", "-c", "echo started; busybox sleep 1000"],
        detach=True,
        name="bg",
        plain_http=True,
        fifo_dir=str(env.fifo_dir),
    )
    assert isinstance(task, Task)
    assert task.status().status is ProcessStatus.RUNNING
    assert [(t[0], t[2]) for t in c.tasks.list()] == [("bg", ProcessStatus.RUNNING)]
    assert task.pid in [p.pid for p in task.pids()]

    p = task.exec("e1", ["sh", "-c", "echo inside; echo oops >&2; exit 4"], io=cio.capture())
    exited = p.wait_future()
    p.start()
    assert exited.result().code == 4
    assert [x.exec_id for x in task.pids() if x.exec_id] in ([], ["e1"])
    assert p.delete().code == 4
    assert (p.io.stdout_data, p.io.stderr_data) == (b"inside\n", b"oops\n")

    task.pause()
    assert task.status().status is ProcessStatus.PAUSED
    task.resume()
    m = task.metrics()
    assert m.id == "bg"
    assert isinstance(m.data, cgroups_v1.Metrics | cgroups_v2.Metrics)
    assert m.data.memory.ByteSize() > 0

    with pytest.raises(errdefs.FailedPrecondition, match="task must be stopped before deletion"):
        task.delete()
    task.kill(signal.SIGKILL)
    status = task.wait()
    assert status.code == 137
    assert status.signal is signal.SIGKILL
    with pytest.raises(errdefs.NotFound):
        task.kill("SIGTERM")  # the process is gone
    assert task.delete().code == 137
    assert (task.io.stdout_data, task.io.stderr_data) == (b"started\n", b"")
    assert env.leftovers() == ([], [], [])  # remove: the container went with the task


def test_container_handle_and_wait_before_start(env: Env) -> None:
    c = env.client
    img = c.pull(env.ref, plain_http=True)
    c.containers.create_from_image("h", img, args=["sh", "-c", "read x; echo got $x; exit 5"])
    handle = c.container("h")
    assert handle.spec()["process"]["args"][0] == "sh"
    task = handle.new_task(io=cio.capture(b"line\n", fifo_dir=str(env.fifo_dir)))
    exited = task.wait_future()
    assert task.status().status is ProcessStatus.CREATED
    task.start()
    status = exited.result()
    assert status.code == 5
    assert handle.task().pid == task.pid
    assert task.delete() == ExitStatus(5, status.exited_at)
    assert task.io.stdout_data == b"got line\n"
    with pytest.raises(errdefs.NotFound):
        handle.task()
    handle.delete()
    assert env.leftovers() == ([], [], [])


def test_errors(env: Env) -> None:
    c = env.client
    with pytest.raises(errdefs.NotFound):
        c.run(env.ref.replace(":run", ":missing"), ["true"], plain_http=True)
    with pytest.raises(errdefs.ContainerdError, match="/no/such/binary"):
        env.run(["/no/such/binary"])
    assert env.leftovers() == ([], [], [])  # a failed create leaves nothing behind
    task = c.run(env.ref, ["busybox", "sleep", "1000"], detach=True, plain_http=True, name="x")
    try:
        with pytest.raises(errdefs.ContainerdError):
            task.start()  # a second start
        with pytest.raises(errdefs.AlreadyExists):
            env.run(["true"], name="x")
        with pytest.raises(errdefs.InvalidArgument, match="unknown signal"):
            task.kill("SIGNOPE")
        with pytest.raises(errdefs.InvalidArgument, match="ports cannot be published"):
            c.run(env.ref, ["true"], network="none", ports={8080: 80})
    finally:
        task.delete(force=True)
    assert env.leftovers() == ([], [], [])


def test_keep_the_container_without_remove(env: Env) -> None:
    res = env.run(["echo", "kept"], remove=False, name="kept")
    assert res.stdout == b"kept\n"
    assert [c.id for c in env.client.containers.list()] == ["kept"]
    env.client.container("kept").delete()
    assert env.leftovers() == ([], [], [])
