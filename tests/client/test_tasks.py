"""Tasks and ``Client.run`` on both daemons (ours with its shim, containerd with its own
runc shim): stdio through client-side FIFOs, exit statuses, signals, exec, pause and resume,
pids, metrics, stdin, terminals; and the errors."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest

from pycontainerd import cio, errdefs
from pycontainerd.api.io.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from pycontainerd.api.io.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from pycontainerd.client.run import ContainerError
from pycontainerd.client.tasks import ExitStatus, ProcessStatus, Task
from tests.client.conftest import Env


def test_run_captures_stdout_and_stderr(env: Env) -> None:
    res = env.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.exit_code, res.stdout, res.stderr) == (3, b"out\n", b"err\n")
    assert res.exit_status.exited_at is not None
    assert res.wait() == res.exit_status
    with pytest.raises(ContainerError, match="exited with 3: err"):
        res.check()
    assert env.run(["echo", "hi"]).check().stdout == b"hi\n"
    assert env.client.containers.list() == []  # removed with their tasks


def test_run_options_and_stdin(env: Env) -> None:
    res = env.run(
        ["sh", "-c", 'echo "$GREETING"; busybox pwd; busybox id -u; cat'],
        env={"GREETING": "hello"},
        cwd="/tmp",
        user="1000:1000",
        stdin=b"from stdin\n",
        name="opts",
        labels={"app": "test"},
    )
    assert res.id == "opts"
    assert res.stdout == b"hello\n/tmp\n1000\nfrom stdin\n", res.stderr
    out = io.BytesIO()
    res = env.run(["sh", "-c", "echo streamed"], stdout=out)
    assert (res.stdout, out.getvalue()) == (None, b"streamed\n")


def test_run_mounts_limits_network_and_files(env: Env, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host\n")
    out_path = tmp_path / "out.txt"
    with open(out_path, "wb") as out:
        res = env.run(
            ["sh", "-c", "cat /mnt/note; busybox hostname; echo x > /x || echo read-only >&2"],
            mounts=[f"type=bind,src={shared},dst=/mnt,options=rbind:ro"],
            read_only=True,
            network="host",
            memory=64 << 20,
            cpus=0.5,
            stdout=out,
        )
    assert (res.exit_code, res.stdout) == (0, None)
    host = os.uname().nodename
    assert out_path.read_text() == f"from the host\n{host}\n"
    assert b"read-only" in (res.stderr or b"")


def test_wait_with_a_timeout(env: Env) -> None:
    task = env.client.run(
        env.ref,
        ["busybox", "sleep", "1000"],
        detach=True,
        plain_http=True,
        fifo_dir=str(env.fifo_dir),
    )
    try:
        with pytest.raises(errdefs.DeadlineExceeded):
            task.wait(timeout=0.2)
    finally:
        task.delete(force=True)


def test_run_keeps_the_container_without_remove(env: Env) -> None:
    c = env.client
    assert env.run(["true"], name="kept", remove=False).exit_code == 0
    assert [x.id for x in c.containers.list()] == ["kept"]
    c.containers.delete("kept", cleanup_snapshot=True)


def test_new_task_start_wait_delete(env: Env) -> None:
    c = env.client
    env.pull()
    c.containers.create_from_image("t1", env.ref, args=["sh", "-c", "read x; echo got $x; exit 5"])
    ctr = c.container("t1")
    task = ctr.new_task(io=cio.capture(b"line\n", fifo_dir=str(env.fifo_dir)))
    assert task.status().status is ProcessStatus.CREATED
    assert task.pid > 0
    exited = task.wait_future()
    task.start()
    status = exited.result()
    assert status.code == 5
    assert status.exited_at is not None
    assert task.status().status is ProcessStatus.STOPPED
    assert ctr.task().pid == task.pid
    assert task.delete() == ExitStatus(5, status.exited_at)
    assert task.io.stdout_data == b"got line\n"
    with pytest.raises(errdefs.NotFound, match="t1"):
        ctr.task()
    ctr.delete()


def test_detached_task_calls(env: Env) -> None:
    c = env.client
    task = c.run(
        env.ref,
        ["sh", "-c", "echo started; exec busybox sleep 1000"],
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
    assert p.pid > 0
    assert exited.result().code == 4
    assert p.status().status is ProcessStatus.STOPPED
    assert p.delete().code == 4
    assert (p.io.stdout_data, p.io.stderr_data) == (b"inside\n", b"oops\n")

    task.pause()
    assert task.status().status is ProcessStatus.PAUSED
    task.resume()
    assert task.status().status is ProcessStatus.RUNNING
    m = task.metrics()
    assert m.id == "bg"
    assert isinstance(m.data, cgroups_v1.Metrics | cgroups_v2.Metrics)
    assert m.data.memory.ByteSize() > 0
    assert [x.id for x in c.tasks.metrics("id==bg")] == ["bg"]

    with pytest.raises(errdefs.FailedPrecondition, match="must be stopped"):
        task.delete()
    task.kill(signal.SIGKILL)
    status = task.wait()
    assert (status.code, status.signal) == (137, signal.SIGKILL)
    assert task.delete().code == 137
    assert (task.io.stdout_data, task.io.stderr_data) == (b"started\n", b"")
    assert c.containers.list() == []


def test_exec_lists_its_pid(env: Env) -> None:
    c = env.client
    task = c.run(
        env.ref,
        ["busybox", "sleep", "1000"],
        detach=True,
        plain_http=True,
        fifo_dir=str(env.fifo_dir),
    )
    try:
        p = task.exec("sleeper", ["busybox", "sleep", "1000"])
        p.start()
        execs = [x for x in task.pids() if x.exec_id]
        assert [(x.pid, x.exec_id) for x in execs] == [(p.pid, "sleeper")]
        with pytest.raises(errdefs.AlreadyExists, match="sleeper"):
            task.exec("sleeper", ["true"])
        p.kill("TERM")
        assert p.wait().signal is signal.SIGTERM
        p.delete()
    finally:
        task.delete(force=True)


def test_input_end_closes_stdin(env: Env) -> None:
    c = env.client
    env.pull()
    c.containers.create_from_image("cat", env.ref, args=["sh", "-c", "cat; echo eof"])
    r, w = os.pipe()
    try:
        task = c.container("cat").new_task(io=cio.capture(r, fifo_dir=str(env.fifo_dir)))
        exited = task.wait_future()
        task.start()
        os.write(w, b"some input\n")
        os.close(w)  # the end of the input: the client closes the FIFO, then calls CloseIO
        assert exited.result().code == 0
        task.delete()
    finally:
        os.close(r)
    assert task.io.stdout_data == b"some input\neof\n"
    c.containers.delete("cat", cleanup_snapshot=True)


@pytest.mark.xfail_containerd(
    "its shim's CloseIO closes only the shim's own writer of the stdin FIFO: the process sees "
    "the end of its input once the client's writer (open while the input lasts) closes too"
)
def test_close_stdin_while_the_input_is_open(env: Env) -> None:
    c = env.client
    env.pull()
    c.containers.create_from_image("cat", env.ref, args=["sh", "-c", "cat; echo eof"])
    r, w = os.pipe()  # input that has not ended
    try:
        task = c.container("cat").new_task(io=cio.capture(r, fifo_dir=str(env.fifo_dir)))
        exited = task.wait_future()
        task.start()
        os.write(w, b"some input\n")
        while task.io.stdout_data != b"some input\n":  # cat has read it
            time.sleep(0.01)
        task.close_stdin()
        try:
            status = exited.result(timeout=20)  # no end of input: the test fails, not hangs
        finally:
            os.close(w)
        assert status.code == 0
        task.delete()
    finally:
        os.close(r)
    assert task.io.stdout_data == b"some input\neof\n"
    c.containers.delete("cat", cleanup_snapshot=True)


def test_terminal_and_resize(env: Env) -> None:
    c = env.client
    r, w = os.pipe()  # the size is read once a line comes in, after the resize
    try:
        task = c.run(
            env.ref,
            ["sh", "-c", "read x; busybox stty size"],
            tty=True,
            stdin=r,
            detach=True,
            plain_http=True,
            fifo_dir=str(env.fifo_dir),
        )
        task.resize(100, 40)
        os.write(w, b"go\n")
        assert task.wait().code == 0
    finally:
        os.close(w)
    task.delete()
    os.close(r)
    output = (task.io.stdout_data or b"").replace(b"\r\n", b"\n")
    assert output.endswith(b"\n40 100\n"), output  # after the terminal's echo of the line


def test_task_errors(env: Env) -> None:
    c = env.client
    with pytest.raises(errdefs.NotFound, match="nope"):
        c.tasks.get("nope")
    env.pull()
    c.containers.create_from_image("e", env.ref, args=["/no/such/binary"])
    with pytest.raises(errdefs.Unknown, match="/no/such/binary"):  # runc's create refuses
        c.container("e").new_task(io=cio.capture(fifo_dir=str(env.fifo_dir)))
    assert os.listdir(env.fifo_dir) == []  # nothing half-made
    with pytest.raises(errdefs.NotFound, match="e"):
        c.container("e").task()
    c.containers.delete("e", cleanup_snapshot=True)
    task = c.run(
        env.ref,
        ["busybox", "sleep", "1000"],
        detach=True,
        plain_http=True,
        name="x",
        fifo_dir=str(env.fifo_dir),
    )
    try:
        with pytest.raises(errdefs.AlreadyExists, match="x"):
            env.run(["true"], name="x")
        with pytest.raises(errdefs.FailedPrecondition, match="x"):
            c.containers.delete("x")
        with pytest.raises(errdefs.InvalidArgument, match="unknown signal"):
            task.kill("SIGNOPE")
        with pytest.raises(errdefs.InvalidArgument, match="args are required"):
            task.exec("empty", [])
    finally:
        task.delete(force=True)
    with pytest.raises(errdefs.NotFound):
        task.kill("TERM")  # the task is gone
    assert c.containers.list() == []
