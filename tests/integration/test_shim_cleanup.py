"""Our shim under the daemon: stdin arrives whole though CloseIO follows its end at once, and
nothing is left behind, whatever the path a task takes: a batch of detached runs where one
fails inside ``Tasks.Create``, force-deleted, then the daemon stopped with SIGTERM and started
again; creates the client gives up on while the shim still creates (the daemon deletes the task
and shuts the shim down meanwhile). Nothing means no shim process, no mount and no bundle."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pycontainerd import Client, errdefs
from pycontainerd.client.tasks import Task
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import make_test_image, push_image
from tests.fixtures.registry import run_registry

pytestmark = pytest.mark.integration

SHIM = b"containerd-shim-pycontainerd-v2"
#: How long a shim whose task is gone may take to finish exiting.
GRACE = 30.0


@pytest.fixture(scope="module")
def image_ref() -> Iterator[str]:
    from pycontainerd.remotes import Resolver

    with run_registry() as reg:
        ref = f"{reg.host}/test/busybox:cleanup"
        with Resolver(plain_http=True) as r:
            push_image(r, ref, make_test_image("cleanup"))
        yield ref


def shims(namespace: str) -> list[int]:
    """Our shims (not zombies) serving tasks of ``namespace``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and args[0].endswith(SHIM) and namespace.encode() in args:
            pids.append(int(entry.name))
    return pids


def mounts(daemon: Daemon, namespace: str) -> list[str]:
    points = [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(str(daemon.state)) or f"/{namespace}/" in p]


def bundles(daemon: Daemon, namespace: str) -> list[str]:
    d = daemon.state / "io.containerd.runtime.v2.task" / namespace
    return sorted(os.listdir(d)) if d.is_dir() else []


def leftovers(daemon: Daemon, namespace: str) -> tuple[list[int], list[str], list[str]]:
    """Shims, mounts and bundles of ``namespace``; shims get a while to finish exiting."""
    deadline = time.monotonic() + GRACE
    while shims(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    return shims(namespace), mounts(daemon, namespace), bundles(daemon, namespace)


class Env:
    """A namespace of its own on ``daemon``; what a failed test leaves is removed after."""

    def __init__(self, daemon: Daemon, ref: str) -> None:
        self.daemon = daemon
        self.ref = ref
        self.namespace = f"cleanup-{uuid.uuid4().hex[:8]}"

    def client(self, call_timeout: float | None = None) -> Client:
        return Client(self.daemon.address, namespace=self.namespace, call_timeout=call_timeout)

    def close(self) -> None:
        if self.daemon.proc is None:
            self.daemon.start()
        with self.client() as c:
            for task_id, _, _ in c.tasks.list():
                with contextlib.suppress(errdefs.ContainerdError):
                    c.tasks.get(task_id).delete(force=True)
            for container in c.containers.list():
                with contextlib.suppress(errdefs.ContainerdError):
                    c.containers.delete(container.id, cleanup_snapshot=True)
            for img in c.images.list():
                c.images.delete(img.name, sync=True)
            with contextlib.suppress(errdefs.ContainerdError):
                c.namespaces.delete(self.namespace)
        for pid in shims(self.namespace):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):  # runc's state directory of the namespace, empty
            Path("/run/containerd/runc", self.namespace).rmdir()
        # the tasks' cgroups are gone; their parent goes once the kernel let them go (v1 may
        # still be tearing a child down: retry a little)
        for controller in Path("/sys/fs/cgroup").iterdir():
            cg = controller / self.namespace
            for _ in range(100):
                if not cg.is_dir():
                    break
                with contextlib.suppress(OSError):
                    cg.rmdir()
                    break
                time.sleep(0.05)


@pytest.fixture
def env(daemon: Daemon, image_ref: str) -> Iterator[Env]:
    e = Env(daemon, image_ref)
    try:
        yield e
    finally:
        e.close()


def test_a_batch_with_a_failed_create_force_deleted_then_sigterm_leaves_nothing(
    env: Env,
) -> None:
    c = env.client()
    c.pull(env.ref, plain_http=True)
    commands = {f"b{i}": ["busybox", "sleep", "1000"] for i in range(4)}
    commands["bad"] = ["/no-such-binary"]

    def run(cid: str) -> Task | Exception:
        try:
            task = c.run(env.ref, commands[cid], name=cid, detach=True)
            assert isinstance(task, Task)
            return task
        except errdefs.ContainerdError as exc:
            return exc

    with ThreadPoolExecutor(len(commands)) as pool:
        results = dict(zip(commands, pool.map(run, commands), strict=True))
    failed = results.pop("bad")
    assert isinstance(failed, errdefs.ContainerdError)
    assert "no-such-binary" in str(failed)
    for task in results.values():
        assert isinstance(task, Task), task
        task.delete(force=True)
    assert c.tasks.list() == []
    assert c.containers.list() == []
    c.close()
    assert leftovers(env.daemon, env.namespace) == ([], [], [])
    assert env.daemon.stop() == 0
    assert leftovers(env.daemon, env.namespace) == ([], [], [])
    env.daemon.start()
    assert leftovers(env.daemon, env.namespace) == ([], [], [])


def test_force_delete_of_a_running_task_then_restart_leaves_nothing(env: Env) -> None:
    with env.client() as c:
        task = c.run(env.ref, ["busybox", "sleep", "1000"], name="forced", detach=True)
        assert isinstance(task, Task)
        assert shims(env.namespace)
        task.delete(force=True)
    env.daemon.restart()
    with env.client() as c:
        assert c.tasks.list() == []
    assert leftovers(env.daemon, env.namespace) == ([], [], [])


def test_creates_the_client_gives_up_on_leave_nothing(env: Env) -> None:
    # The client's deadline ends each create at a different point: before the shim starts,
    # while it mounts or runs runc create, or after; the daemon cleans up what it began.
    with env.client() as c:
        c.pull(env.ref, plain_http=True)
        for i, limit in enumerate((0.02, 0.05, 0.08, 0.12, 0.2, 0.3)):
            cid = f"hurried{i}"
            c.containers.create_from_image(cid, env.ref, args=["busybox", "sleep", "1000"])
            with (
                env.client(call_timeout=limit) as hurried,
                contextlib.suppress(errdefs.ContainerdError),
            ):
                hurried.tasks.create(cid)
            # whatever the daemon did create (it answered too late) is the client's to delete
            with contextlib.suppress(errdefs.NotFound):
                c.tasks.get(cid).delete(force=True)
            c.containers.delete(cid, cleanup_snapshot=True)
            assert leftovers(env.daemon, env.namespace) == ([], [], []), cid


def test_stdin_arrives_whole_through_the_tasks_api(env: Env, tmp_path: Path) -> None:
    # The client sends CloseIO as soon as its input is written: what the FIFO still holds
    # reaches the process all the same, every time.
    data = os.urandom(300_000)  # more than a pipe holds
    digest = hashlib.sha256(data).hexdigest()
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    with env.client() as c:
        c.pull(env.ref, plain_http=True)
        for i in range(5):
            res = c.run(
                env.ref, ["busybox", "sha256sum"], stdin=data, name=f"in{i}", fifo_dir=str(fifo_dir)
            )
            assert res.stdout is not None
            assert res.stdout.split() == [digest.encode(), b"-"], (i, res.stderr)
    assert leftovers(env.daemon, env.namespace) == ([], [], [])
