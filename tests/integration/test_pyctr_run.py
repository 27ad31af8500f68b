"""``pyctr run`` and ``pyctr tasks ...`` on the real daemon, shim and runc, with a busybox
image pulled from a real registry: output, exit codes, stdin, a terminal, container flags,
detached tasks and the task commands (their output compared with containerd's ``ctr`` against
the same daemon), errors; no FIFOs, containers or snapshots left behind."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import Client
from pycontainerd.cio import DEFAULT_FIFO_DIR
from tests.fixtures.daemon import PYCTR, Daemon
from tests.fixtures.images import make_test_image, push_image
from tests.fixtures.registry import run_registry
from tests.fixtures.shims import CONTAINERD_SHIM, shims_and_mounts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image_ref() -> Iterator[str]:
    from pycontainerd.remotes import Resolver

    with run_registry() as reg:
        ref = f"{reg.host}/test/busybox:pyctr"
        with Resolver(plain_http=True) as r:
            push_image(r, ref, make_test_image("pyctr"))
        yield ref


class Cli:
    """pyctr (and ctr) in a namespace of its own, FIFOs under the test's directory."""

    def __init__(self, daemon: Daemon, ref: str, tmp: Path) -> None:
        self.daemon = daemon
        self.ref = ref
        self.namespace = f"pyctr-{uuid.uuid4().hex[:8]}"
        self.fifo_dir = tmp / "fifo"
        self.fifo_dir.mkdir()
        self.client = Client(daemon.address, namespace=self.namespace)
        self.client.pull(ref, plain_http=True)

    def base(self, tool: str) -> list[str]:
        cmd = PYCTR if tool == "pyctr" else ["ctr"]
        return [*cmd, "-a", self.daemon.address, "-n", self.namespace]

    def __call__(
        self, *args: str, stdin: str | None = None, tool: str = "pyctr"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base(tool), *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str, stdin: str | None = None, tool: str = "pyctr") -> str:
        result = self(*args, stdin=stdin, tool=tool)
        assert result.returncode == 0, f"{tool} {' '.join(args)}: {result.stderr}"
        return result.stdout

    def run(
        self, *args: str, flags: tuple[str, ...] = ("--rm",), stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self("run", *flags, "--fifo-dir", str(self.fifo_dir), self.ref, *args, stdin=stdin)

    def leftovers(self) -> tuple[str, str, list[str]]:
        assert shims_and_mounts(self.namespace) == ([], [])
        return (
            self.ok("containers", "ls", "-q"),
            self.ok("tasks", "ls", "-q"),
            os.listdir(self.fifo_dir),
        )

    def close(self) -> None:
        c = self.client
        for task_id, _, _ in c.tasks.list():
            c.tasks.get(task_id).delete(force=True)
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
def cli(daemon: Daemon, image_ref: str, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(daemon, image_ref, tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_run_rm_output_exit_codes_and_stdin(cli: Cli) -> None:
    result = cli.run("hi", "echo", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
    result = cli.run("three", "sh", "-c", "echo oops >&2; exit 3")
    assert (result.returncode, result.stderr) == (3, "oops\n")
    result = cli.run("piped", "cat", stdin="through stdin\n")
    assert (result.returncode, result.stdout) == (0, "through stdin\n"), result.stderr
    # in the default FIFO directory: nothing left there either
    before = set(os.listdir(DEFAULT_FIFO_DIR)) if os.path.isdir(DEFAULT_FIFO_DIR) else set()
    result = cli("run", "--rm", cli.ref, "default-fifos", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    assert set(os.listdir(DEFAULT_FIFO_DIR)) == before
    assert cli.leftovers() == ("", "", [])


def test_run_container_flags(cli: Cli, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host\n")
    flags = (
        "--rm",
        "--env",
        "GREETING=hello",
        "--cwd",
        "/tmp",
        "--mount",
        f"type=bind,src={shared},dst=/mnt,options=rbind:ro",
        "--memory-limit",
        str(64 << 20),
        "--cpus",
        "0.5",
    )
    result = cli.run(
        "flags", "sh", "-c", 'echo "$GREETING"; busybox pwd; cat /mnt/note', flags=flags
    )
    assert (result.returncode, result.stdout) == (0, "hello\n/tmp\nfrom the host\n"), result.stderr
    result = cli.run("ro", "sh", "-c", "echo x > /x", flags=("--rm", "--read-only"))
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    result = cli.run("net", "busybox", "hostname", flags=("--rm", "--net-host"))
    assert result.stdout == os.uname().nodename + "\n"
    result = cli.run("null", "echo", "nothing", flags=("--rm", "--null-io"))
    assert (result.returncode, result.stdout) == (0, "")
    assert cli.leftovers() == ("", "", [])


@pytest.mark.parametrize("runtime", ["io.containerd.runc.v2", CONTAINERD_SHIM])
def test_run_log_uri_file(cli: Cli, tmp_path: Path, runtime: str) -> None:
    log = tmp_path / "logs" / "out.log"
    flags = ("--rm", "--runtime", runtime, "--log-uri", f"file://{log}")
    result = cli.run("logged", "sh", "-c", "echo to-the-log; echo err >&2", flags=flags)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result.stderr
    assert sorted(log.read_text().splitlines()) == ["err", "to-the-log"]
    assert cli.leftovers() == ("", "", [])


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_run_with_a_terminal(cli: Cli) -> None:
    """Raw mode (typed input echoed by the container's terminal, not ours), the terminal's
    size at the start and after a SIGWINCH, the exit code."""
    script = (
        "busybox tty; busybox stty size; "
        'while [ "$(busybox stty size)" = "40 100" ]; do busybox sleep 0.05; done; '
        "busybox stty size; read x; echo got:$x; exit 7"
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: pyctr on the terminal
        _set_size(0, 40, 100)
        os.execvp(
            PYCTR[0],
            [
                *cli.base("pyctr"),
                "run",
                "--rm",
                "-t",
                "--fifo-dir",
                str(cli.fifo_dir),
                cli.ref,
                "tty-run",
                "sh",
                "-c",
                script,
            ],
        )
    output = b""
    resized = sent = False
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, output
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        output += data
        if not resized and b"40 100\r\n" in output:
            _set_size(fd, 50, 120)  # the kernel sends pyctr SIGWINCH
            resized = True
        if not sent and b"50 120\r\n" in output:
            os.write(fd, b"typed\r")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 7, output
    lines = output.split(b"\r\n")
    assert lines[0].startswith(b"/dev/pts/"), output
    assert lines[1:5] == [b"40 100", b"50 120", b"typed", b"got:typed"], output
    assert cli.leftovers() == ("", "", [])


def test_detached_and_the_tasks_commands(cli: Cli) -> None:
    result = cli.run("bg", "busybox", "sleep", "1000", flags=("-d",))
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    shims, mounts = shims_and_mounts(cli.namespace, grace=0)
    assert len(shims) == 1  # the leftovers check would see them
    assert [m for m in mounts if m.endswith("/bg/rootfs")], mounts
    ours = cli.ok("tasks", "ls")
    assert ours == cli.ok("tasks", "ls", tool="ctr")
    header, row = ours.splitlines()
    assert header.split() == ["TASK", "PID", "STATUS"]
    task_id, pid, status = row.split()
    assert (task_id, status) == ("bg", "RUNNING")
    assert cli.ok("tasks", "ps", "bg") == cli.ok("tasks", "ps", "bg", tool="ctr")
    assert pid in cli.ok("tasks", "ps", "bg")

    metrics = cli.ok("tasks", "metrics", "bg").splitlines()
    theirs = cli.ok("tasks", "metrics", "bg", tool="ctr").splitlines()
    assert [line.split()[0] for line in metrics if line] == [
        line.split()[0] for line in theirs if line
    ]
    assert metrics[0].split() == theirs[0].split() == ["ID", "TIMESTAMP"]
    assert re.fullmatch(r"bg +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC +", metrics[1])

    ours_json = json.loads(cli.ok("tasks", "metrics", "--format", "json", "bg"))
    theirs_json = json.loads(cli.ok("tasks", "metrics", "--format", "json", "bg", tool="ctr"))
    assert list(ours_json) == list(theirs_json)
    assert ours_json["pids"] == theirs_json["pids"] == {"current": 1}

    cli.ok("tasks", "pause", "bg")
    assert cli.ok("tasks", "ls").splitlines()[1].split()[2] == "PAUSED"
    cli.ok("tasks", "resume", "bg")
    assert cli.ok("tasks", "exec", "--exec-id", "e1", "bg", "echo", "inside") == "inside\n"
    result = cli("tasks", "exec", "--exec-id", "e2", "bg", "sh", "-c", "cat; exit 4", stdin="in\n")
    assert (result.returncode, result.stdout) == (4, "in\n")
    cli.ok("tasks", "exec", "-d", "--exec-id", "e3", "bg", "busybox", "sleep", "1000")
    ps = cli.ok("tasks", "ps", "bg")
    assert ps == cli.ok("tasks", "ps", "bg", tool="ctr")
    assert "ExecID:e3" in ps
    cli.ok("tasks", "kill", "--exec-id", "e3", "-s", "KILL", "bg")
    cli.ok("tasks", "rm", "-f", "--exec-id", "e3", "bg")
    assert "ExecID" not in cli.ok("tasks", "ps", "bg")
    refused = cli("tasks", "rm", "bg")
    assert refused.returncode == 1
    assert "must be stopped before deletion: running" in refused.stderr
    cli.ok("tasks", "kill", "-s", "SIGKILL", "bg")
    cli.ok("tasks", "rm", "--force", "bg")
    assert cli.ok("tasks", "ls", "-q") == ""
    cli.ok("containers", "rm", "bg")
    assert cli.leftovers() == ("", "", [])


def test_run_forwards_signals(cli: Cli) -> None:
    script = 'trap "echo got-term; exit 9" TERM; echo ready; while :; do busybox sleep 0.1; done'
    proc = subprocess.Popen(
        [
            *cli.base("pyctr"),
            "run",
            "--rm",
            "--fifo-dir",
            str(cli.fifo_dir),
            cli.ref,
            "sig",
            "sh",
            "-c",
            script,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (9, b"got-term\n"), err
    assert cli.leftovers() == ("", "", [])


def test_tasks_start_and_attach(cli: Cli) -> None:
    cli.ok("containers", "create", cli.ref, "created", "sh", "-c", "echo started; exit 2")
    result = cli("tasks", "start", "--fifo-dir", str(cli.fifo_dir), "created")
    assert (result.returncode, result.stdout) == (2, "started\n")
    assert cli.ok("tasks", "ls", "-q") == ""  # start without -d deletes the task

    cli.ok("containers", "create", cli.ref, "attached", "sh", "-c", "read x; echo got:$x")
    cli.ok("tasks", "start", "-d", "--fifo-dir", str(cli.fifo_dir), "attached")
    # the detached start's stdin was /dev/null: the task read its end of file already
    result = cli("tasks", "attach", "attached")
    assert result.returncode == 0, result.stderr
    assert result.stdout in ("", "got:\n")
    cli.ok("tasks", "rm", "attached")
    cli.ok("containers", "rm", "created", "attached")
    assert cli.leftovers() == ("", "", [])


def test_errors(cli: Cli) -> None:
    result = cli("run", "--rm", cli.ref.replace(":pyctr", ":missing"), "x", "true")
    assert result.returncode == 1
    assert "not found" in result.stderr
    result = cli.run("broken", "/no/such/binary")
    assert result.returncode == 1
    assert "/no/such/binary" in result.stderr
    assert cli.leftovers() == ("", "", [])
    result = cli("run", "--rm", "-d", cli.ref, "both", "true")
    assert "cannot be specified together" in result.stderr
    cli.run("twice", "busybox", "sleep", "1000", flags=("-d", "--null-io"))
    again = cli("tasks", "start", "--null-io", "twice")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    result = cli("tasks", "kill", "-s", "SIGNOPE", "twice")
    assert "unknown signal" in result.stderr
    cli.ok("tasks", "kill", "twice")  # SIGTERM, the image's stop signal
    cli.ok("tasks", "rm", "-f", "twice")
    cli.ok("containers", "rm", "twice")
    assert cli("tasks", "ps", "nothing").returncode == 1
    assert cli.leftovers() == ("", "", [])


def test_ctr_run_rm_on_the_same_image(cli: Cli) -> None:
    # the image pulled through our client runs under containerd's ctr as under pyctr
    result = cli(
        "run", "--rm", "--fifo-dir", str(cli.fifo_dir), cli.ref, "ctr-hi", "echo", "hi", tool="ctr"
    )
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    assert cli.leftovers() == ("", "", [])
