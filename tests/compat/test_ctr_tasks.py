"""containerd's ``ctr`` runs containers through our daemon (Containers and Tasks services,
the runtime v2 shim, the FIFOs ctr makes): ``run --rm`` output and exit codes, stdin, ``run
-d`` with the ``tasks`` commands, and an imported image unpacked and run by ctr."""

from __future__ import annotations

import os
import pty
import queue
import select
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import Client
from pycontainerd.platforms import host
from pycontainerd.remotes import Resolver
from tests.fixtures.containers import fill_busybox
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import (
    TestImage,
    busybox_tar,
    oci_layout_tar,
    platform_image,
    push_image,
)
from tests.fixtures.registry import run_registry

pytestmark = [pytest.mark.integration, pytest.mark.compat]


class Ctr:
    """ctr against the daemon in a namespace of its own, FIFOs under the test's directory."""

    def __init__(self, daemon: Daemon, tmp: Path) -> None:
        self.daemon = daemon
        self.namespace = f"ctr-{uuid.uuid4().hex[:8]}"
        self.fifo_dir = tmp / "fifo"
        self.fifo_dir.mkdir()
        self.rootfs = tmp / "rootfs"
        fill_busybox(self.rootfs)

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "-a", self.daemon.address, "-n", self.namespace, *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr}"
        return result.stdout

    def run(
        self, id_: str, *args: str, flags: tuple[str, ...] = ("--rm",), stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``ctr run`` on the busybox directory (ctr's ``--rootfs``: no image)."""
        return self(
            "run",
            *flags,
            "--fifo-dir",
            str(self.fifo_dir),
            "--env",
            "PATH=/bin",
            "--rootfs",
            str(self.rootfs),
            id_,
            *args,
            stdin=stdin,
        )

    def cleanup(self) -> None:
        for line in self("tasks", "ls", "-q").stdout.split():
            self("tasks", "kill", "-s", "SIGKILL", line)
            self("tasks", "delete", "--force", line)
        for line in self("containers", "ls", "-q").stdout.split():
            self("containers", "delete", line)
        for line in self("images", "ls", "-q").stdout.split():
            self("images", "rm", "--sync", line)
        self("namespaces", "remove", self.namespace)
        for controller in Path("/sys/fs/cgroup").iterdir():
            cg = controller / self.namespace
            if cg.is_dir():
                cg.rmdir()


@pytest.fixture
def ctr(daemon: Daemon, tmp_path: Path) -> Iterator[Ctr]:
    c = Ctr(daemon, tmp_path)
    try:
        yield c
    finally:
        c.cleanup()


def test_run_rm_prints_hi_and_keeps_exit_codes(ctr: Ctr) -> None:
    result = ctr.run("hi", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    result = ctr.run("three", "sh", "-c", "exit 3")
    assert result.returncode == 3, result.stderr
    result = ctr.run("piped", "cat", flags=("--rm",), stdin="through stdin\n")
    assert (result.returncode, result.stdout) == (0, "through stdin\n"), result.stderr
    assert ctr.ok("containers", "ls", "-q") == ""
    assert list(ctr.fifo_dir.iterdir()) == []


def test_run_missing_binary_fails_with_runcs_message(ctr: Ctr) -> None:
    result = ctr.run("broken", "/no/such/binary")
    assert result.returncode != 0
    assert "/no/such/binary" in result.stderr
    assert "failed to create shim task" in result.stderr


def test_run_detached_and_the_tasks_commands(ctr: Ctr) -> None:
    result = ctr.run("bg", "sleep", "1000", flags=("-d",))
    assert result.returncode == 0, result.stderr
    listed = ctr.ok("tasks", "ls").splitlines()
    assert listed[1].split()[0::2] == ["bg", "RUNNING"]
    pid = listed[1].split()[1]
    assert pid in ctr.ok("tasks", "ps", "bg")
    assert "memory" in ctr.ok("tasks", "metrics", "bg")
    ctr.ok("tasks", "pause", "bg")
    assert ctr.ok("tasks", "ls").splitlines()[1].split()[2] == "PAUSED"
    ctr.ok("tasks", "resume", "bg")
    assert ctr.ok("tasks", "exec", "--exec-id", "e1", "bg", "echo", "inside") == "inside\n"
    refused = ctr("tasks", "delete", "bg")
    assert refused.returncode != 0
    assert "must be stopped" in refused.stderr
    ctr.ok("tasks", "kill", "-s", "SIGKILL", "bg")
    ctr.ok("tasks", "delete", "--force", "bg")  # waits for the exit
    assert ctr.ok("tasks", "ls", "-q") == ""
    ctr.ok("containers", "delete", "bg")


def test_run_an_imported_image(ctr: Ctr, tmp_path: Path) -> None:
    image = TestImage([platform_image(host(), [busybox_tar()], seed="tasks")])
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(oci_layout_tar(image, "example.com/test/busybox:tasks"))
    ctr.ok("images", "import", "--snapshotter", "overlayfs", str(archive))
    result = ctr(
        "run",
        "--rm",
        "--snapshotter",
        "overlayfs",
        "--fifo-dir",
        str(ctr.fifo_dir),
        "example.com/test/busybox:tasks",
        "img",
        "/bin/echo",
        "hi",
    )
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr


def _run_on_a_terminal(argv: list[str], typed: bytes) -> tuple[bytes, int]:
    """Run ``argv`` on a new pseudo-terminal, type ``typed``, collect what it shows."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: ctr on the terminal
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    sent = False
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not data:
                break
            out += data
            if not sent and b"ready" in out:
                os.write(fd, typed)
                sent = True
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return out, os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("runtime", ["io.containerd.runc.v2", "/usr/bin/containerd-shim-runc-v2"])
def test_run_with_a_terminal(ctr: Ctr, runtime: str) -> None:
    argv = [
        "ctr", "-a", ctr.daemon.address, "-n", ctr.namespace, "run", "--rm", "-t",
        "--runtime", runtime, "--fifo-dir", str(ctr.fifo_dir), "--env", "PATH=/bin",
        "--rootfs", str(ctr.rootfs), "tty",
        "sh", "-c", "tty; echo ready; read line; echo got $line; exit 4",
    ]  # fmt: skip
    out, code = _run_on_a_terminal(argv, b"typed\r")
    text = out.decode(errors="replace")
    assert code == 4, text
    assert "/dev/pts/" in text
    assert "got typed" in text


def test_ctr_events_shows_the_task_events(ctr: Ctr) -> None:
    events = subprocess.Popen(
        ["ctr", "-a", ctr.daemon.address, "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in events.stdout or ()], daemon=True
    )
    reader.start()
    try:
        # the subscription is in place once one of our own events comes through
        marker = f"marker-{ctr.namespace}"
        for _ in range(100):
            ctr.ok("namespaces", "create", marker)
            ctr.ok("namespaces", "remove", marker)
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if marker in line:
                break
        else:
            raise AssertionError("ctr events never showed an event")
        result = ctr.run("evented", "true")
        assert result.returncode == 0, result.stderr
        wanted = ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
        seen: list[str] = []
        while len(seen) < len(wanted):
            line = lines.get(timeout=60)
            if ctr.namespace in line and "/tasks/" in line:
                seen.append(next(t for t in line.split() if t.startswith("/tasks/")))
        assert seen == wanted
    finally:
        events.terminate()
        events.wait()


def test_five_runs_at_once(ctr: Ctr) -> None:
    results: dict[int, subprocess.CompletedProcess[str]] = {}

    def one(n: int) -> None:
        results[n] = ctr.run(f"par{n}", "sh", "-c", f"echo run {n}; exit {n}")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == list(range(5))
    for n, result in results.items():
        assert (result.returncode, result.stdout) == (n, f"run {n}\n"), result.stderr
    assert ctr.ok("containers", "ls", "-q") == ""


def test_run_an_image_our_daemon_pulled_and_unpacked(ctr: Ctr) -> None:
    image = TestImage([platform_image(host(), [busybox_tar()], seed="pulled")])
    with run_registry() as registry:
        ref = f"{registry.host}/test/busybox:pulled"
        with Resolver(plain_http=True) as resolver:
            push_image(resolver, ref, image)
        with Client(ctr.daemon.address, namespace=ctr.namespace) as client:
            client.pull(ref, plain_http=True, snapshotter="overlayfs")
    # ctr sees our unpack as its own: the image is unpacked for overlayfs, nothing to redo
    checked = ctr.ok("images", "check", "--snapshotter", "overlayfs", "name==" + ref)
    assert checked.splitlines()[1].split()[-1] == "true", checked
    result = ctr(
        "run", "--rm", "--snapshotter", "overlayfs", "--fifo-dir", str(ctr.fifo_dir),
        ref, "pulled", "/bin/echo", "hi",
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr


@pytest.mark.parametrize("runtime", ["io.containerd.runc.v2", "/usr/bin/containerd-shim-runc-v2"])
def test_run_with_null_io_and_a_log_file(ctr: Ctr, tmp_path: Path, runtime: str) -> None:
    flags = ("--rm", "--runtime", runtime)
    result = ctr.run("quiet", "sh", "-c", "echo unseen; exit 2", flags=(*flags, "--null-io"))
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    log = tmp_path / "container.log"
    script = "echo to the log; echo err >&2"
    result = ctr.run("logged", "sh", "-c", script, flags=(*flags, "--log-uri", f"file://{log}"))
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert sorted(log.read_text().splitlines()) == ["err", "to the log"]


def test_run_with_ctrs_spec_options(ctr: Ctr, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host\n")
    script = (
        "echo $GREETING; pwd; cat /data/note; "
        "touch /rootfs-write 2>/dev/null && echo writable || echo read-only; "
        "cat /proc/net/dev | grep -c ':'"
    )
    result = ctr.run(
        "opts", "sh", "-c", script,
        flags=(
            "--rm", "--env", "GREETING=hello", "--cwd", "/tmp",
            "--mount", f"type=bind,src={shared},dst=/data,options=rbind:ro",
            "--read-only", "--net-host",
        ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["hello", "/tmp", "from the host", "read-only"]
    host_interfaces = sum(":" in line for line in Path("/proc/net/dev").read_text().splitlines())
    assert int(lines[4]) == host_interfaces  # the host's network namespace


@pytest.mark.parametrize("runtime", ["io.containerd.runc.v2", "/usr/bin/containerd-shim-runc-v2"])
def test_attach_to_a_detached_task(ctr: Ctr, runtime: str) -> None:
    script = "read x; echo got $x; exit 6"
    result = ctr.run("attached", "sh", "-c", script, flags=("-d", "--runtime", runtime))
    assert result.returncode == 0, result.stderr
    attached = ctr("tasks", "attach", "attached", stdin="hey\n")
    assert (attached.returncode, attached.stdout) == (6, "got hey\n"), attached.stderr
    assert ctr.ok("tasks", "ls", "-q") == ""  # ctr's attach deletes the task it waited for
    ctr.ok("containers", "delete", "attached")
