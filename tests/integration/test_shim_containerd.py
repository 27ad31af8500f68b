"""containerd 1.6 itself runs containers through our shim: Debian's ``containerd`` on a private
root, state and socket resolves the runtime ``io.containerd.pycontainerd.v2`` to
``containerd-shim-pycontainerd-v2`` on PATH, and ``ctr`` drives it end to end: output, exit
codes, stdin (whole, though CloseIO follows its end), a terminal, ``--log-uri file://`` and
``binary://``, ``--null-io``, five runs at once, ``run -d`` with the ``tasks`` commands and
``attach``, events in order, an OOM kill, a daemon killed and restarted while containers run
(and one exits meanwhile: its event is retried without a descriptor leaked per try), runc's error
on a bad create, and nothing left behind (no shim, mount, bundle or socket). The idle shim's RSS
is printed."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import wait_for_socket
from tests.fixtures.images import make_test_image, oci_layout_tar

RUNTIME = "io.containerd.pycontainerd.v2"
SHIM = "containerd-shim-pycontainerd-v2"
IMAGE = "docker.io/library/busybox:pcd-shim"
NAMESPACE = "default"
WAIT = 30.0


class Containerd:
    """A real containerd 1.6 on a private root, state and socket, restartable."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.address = str(base / "c.sock")
        self.config = base / "config.toml"
        self.config.write_text(
            f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.address}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("containerd")
        assert binary, "containerd is missing: scripts/setup installs Debian's containerd 1.6"
        with open(self.base / "containerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--config", str(self.config)], stdout=log, stderr=log
            )
        wait_for_socket(self.address, self.proc)

    def kill(self) -> None:
        """SIGKILL: the shims must survive it."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def ctr(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        r = subprocess.run(
            ["ctr", "-a", self.address, "-n", NAMESPACE, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, f"ctr {' '.join(args)}: {r.returncode} {r.stderr!r}"
        return r

    def run(
        self,
        cid: str,
        *args: str,
        flags: tuple[str, ...] = (),
        input: bytes | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """``ctr run`` of the test image on our shim."""
        return self.ctr(
            "run", "--runtime", RUNTIME, *flags, IMAGE, cid, *args, input=input, check=check
        )

    def bundle(self, cid: str) -> Path:
        return self.base / "state" / "io.containerd.runtime.v2.task" / NAMESPACE / cid

    def socket(self, cid: str) -> Path:
        digest = hashlib.sha256(f"{self.address}/{NAMESPACE}/{cid}".encode()).hexdigest()
        return Path("/run/containerd/s") / digest

    def task(self, cid: str) -> tuple[int, str] | None:
        """(pid, status) of ``cid`` in ``ctr tasks ls``."""
        for line in self.ctr("tasks", "ls").stdout.decode().splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid:
                return int(fields[1]), fields[2]
        return None


class EventStream:
    """``ctr events`` running in the background, its lines collected; ready once it shows a
    probe namespace created after it started."""

    def __init__(self, cd: Containerd) -> None:
        self.cd = cd
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["ctr", "-a", cd.address, "events"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        for n in range(200):
            probe = f"probe-{os.getpid()}-{n}"
            cd.ctr("namespaces", "create", probe)
            cd.ctr("namespaces", "remove", probe)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                if any(probe in ln for ln in list(self.lines)):
                    return
                time.sleep(0.02)
        raise AssertionError("ctr events never showed its probe")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode())

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        return self.lines


def shim_pids(cid: str, address: str) -> list[int]:
    """Live shims serving ``cid`` for the daemon at ``address``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or not argv or not argv[0].endswith(SHIM.encode()):
            continue
        if cid.encode() in argv and address.encode() in argv:
            pids.append(int(entry.name))
    return pids


def wait_until(what: str, cond: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"still waiting for {what} after {WAIT}s")


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(str(path))]


def assert_clean(cd: Containerd, cid: str) -> None:
    """No shim, mount, bundle or socket of ``cid`` is left."""
    wait_until(f"the shim of {cid} to exit", lambda: not shim_pids(cid, cd.address))
    assert not cd.bundle(cid).exists(), f"bundle of {cid} left: {list(cd.bundle(cid).iterdir())}"
    assert not cd.socket(cid).exists(), f"socket of {cid} left"
    assert not [m for m in mounts_under(cd.base / "state") if cid in m]


def remove(cd: Containerd, cid: str) -> None:
    cd.ctr("tasks", "kill", "-s", "KILL", cid, check=False)
    wait_until(f"{cid} to stop", lambda: (cd.task(cid) or (0, "STOPPED"))[1] == "STOPPED")
    cd.ctr("tasks", "delete", cid, check=False)
    cd.ctr("containers", "rm", cid)
    assert_clean(cd, cid)


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    assert shutil.which(SHIM), f"{SHIM} is not on PATH: scripts/setup installs it"
    base = Path(tempfile.mkdtemp(prefix="ctd-shim-"))
    cd = Containerd(base)
    try:
        cd.start()
        archive = base / "busybox.tar"
        archive.write_bytes(oci_layout_tar(make_test_image("pcd-shim"), IMAGE))
        cd.ctr("images", "import", str(archive))
        yield cd
    finally:
        if cd.proc is None:
            cd.start()
        for line in cd.ctr("tasks", "ls", check=False).stdout.decode().splitlines()[1:]:
            cid = line.split()[0]
            cd.ctr("tasks", "kill", "-s", "KILL", cid, check=False)
            cd.ctr("tasks", "delete", "-f", cid, check=False)
        for cid in cd.ctr("containers", "ls", "-q", check=False).stdout.decode().split():
            cd.ctr("containers", "rm", cid, check=False)
        cd.stop()
        for m in sorted(mounts_under(base), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_run_rm_prints_exactly_hi(containerd: Containerd) -> None:
    r = containerd.run("echo", "echo", "hi", flags=("--rm",))
    assert r.stdout == b"hi\n"
    assert_clean(containerd, "echo")


def test_five_runs_at_once(containerd: Containerd) -> None:
    run = ["ctr", "-a", containerd.address, "run", "--rm", "--runtime", RUNTIME, IMAGE]
    procs = [
        subprocess.Popen(
            [*run, f"many{i}", "sh", "-c", f"echo run-{i}; exit {i}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(5)
    ]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        assert (p.returncode, out) == (i, f"run-{i}\n".encode()), err
    for i in range(5):
        assert_clean(containerd, f"many{i}")


def test_exit_code_is_the_containers(containerd: Containerd) -> None:
    r = containerd.run("exit3", "sh", "-c", "exit 3", flags=("--rm",), check=False)
    assert r.returncode == 3, r.stderr
    assert_clean(containerd, "exit3")


def test_stdin_is_piped_through(containerd: Containerd) -> None:
    # Short: ctr reads its end of input while it still creates the task, and then never sends
    # CloseIO (containerd#4489): the input ends when ctr closes the FIFO.
    data = b"hello\nworld\n" * 1000
    r = containerd.run("stdin", "cat", flags=("--rm",), input=data)
    assert r.stdout == data
    assert_clean(containerd, "stdin")


def test_stdin_arrives_whole_though_closeio_follows_its_end(containerd: Containerd) -> None:
    # ctr sends CloseIO right after the end of its input: what the FIFO still holds must reach
    # the process (the shim closes only its own hold on the FIFO).
    data = os.urandom(1 << 20)
    digest = hashlib.sha256(data).hexdigest()
    for i in range(5):
        r = containerd.run(f"digest{i}", "busybox", "sha256sum", flags=("--rm",), input=data)
        assert r.stdout.decode().split() == [digest, "-"], r.stderr
        assert_clean(containerd, f"digest{i}")
    containerd.run("execin", "busybox", "sleep", "1000", flags=("-d",))
    for i in range(10):
        line = f"short input {i}\n".encode()
        r = containerd.ctr(
            "tasks", "exec", "--exec-id", f"in{i}", "execin", "busybox", "wc", "-c", input=line
        )
        assert r.stdout.strip() == str(len(line)).encode(), (i, r.stdout, r.stderr)
    remove(containerd, "execin")


def test_log_uri_file(containerd: Containerd, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "out.log"
    r = containerd.run(
        "logfile",
        "sh",
        "-c",
        "echo out; echo err >&2",
        flags=("--rm", "--log-uri", f"file://{log}"),
    )
    assert r.stdout == b""
    assert sorted(log.read_bytes().splitlines()) == [b"err", b"out"]
    assert_clean(containerd, "logfile")


LOGGER = """#!/bin/sh
# containerd's logging binary protocol: stdout on fd 3, stderr on fd 4, ready when fd 5 closes.
echo "$CONTAINER_NAMESPACE/$CONTAINER_ID" >"$2/env"
{ cat <&3 >"$2/stdout.tmp" && mv "$2/stdout.tmp" "$2/stdout"; } 5>&- &
{ cat <&4 >"$2/stderr.tmp" && mv "$2/stderr.tmp" "$2/stderr"; } 5>&- &
exec 5>&-
wait
"""


def test_log_uri_binary(containerd: Containerd, tmp_path: Path) -> None:
    logger = tmp_path / "logger.sh"
    logger.write_text(LOGGER)
    logger.chmod(0o755)
    uri = f"binary://{logger}?dir={tmp_path}"
    r = containerd.run(
        "logbin", "sh", "-c", "echo out; echo err >&2", flags=("--rm", "--log-uri", uri)
    )
    assert r.stdout == b""
    wait_until("the logger's stderr", (tmp_path / "stderr").exists)
    wait_until("the logger's stdout", (tmp_path / "stdout").exists)
    assert (tmp_path / "stdout").read_bytes() == b"out\n"
    assert (tmp_path / "stderr").read_bytes() == b"err\n"
    assert (tmp_path / "env").read_text() == f"{NAMESPACE}/logbin\n"
    assert_clean(containerd, "logbin")


def test_null_io(containerd: Containerd) -> None:
    r = containerd.run(
        "nullio", "sh", "-c", "echo out; exit 4", flags=("--rm", "--null-io"), check=False
    )
    assert (r.returncode, r.stdout) == (4, b"")
    assert_clean(containerd, "nullio")


def test_terminal(containerd: Containerd) -> None:
    cmd = f"ctr -a {containerd.address} run --rm -t --runtime {RUNTIME} {IMAGE} tty sh -c tty"
    r = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout
    assert b"/dev/pts/0" in r.stdout
    assert_clean(containerd, "tty")


def test_detached_task_commands(containerd: Containerd) -> None:
    cid = "detached"
    containerd.run(cid, "busybox", "sleep", "1000", flags=("-d",))
    task = containerd.task(cid)
    assert task is not None
    assert task[1] == "RUNNING"
    pid = task[0]
    shims = shim_pids(cid, containerd.address)
    assert len(shims) == 1
    status = Path(f"/proc/{shims[0]}/status").read_text()
    rss = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:"))
    rollup = Path(f"/proc/{shims[0]}/smaps_rollup").read_text()
    pss = next(ln.split()[1] for ln in rollup.splitlines() if ln.startswith("Pss:"))
    print(f"\nidle {SHIM}: RSS {rss} KiB, PSS {pss} KiB (containerd-shim-runc-v2: ~13 MiB RSS)")

    out = containerd.ctr(
        "tasks", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo in; exit 5", check=False
    )
    assert (out.returncode, out.stdout) == (5, b"in\n")
    ps = containerd.ctr("tasks", "ps", cid).stdout.decode().split()
    assert str(pid) in ps

    containerd.ctr("tasks", "pause", cid)
    assert containerd.task(cid) == (pid, "PAUSED")
    containerd.ctr("tasks", "resume", cid)
    assert containerd.task(cid) == (pid, "RUNNING")

    metrics = containerd.ctr("tasks", "metrics", cid).stdout.decode()
    assert "pids.current" in metrics
    current = next(ln.split()[1] for ln in metrics.splitlines() if ln.startswith("pids.current"))
    assert int(current) >= 1

    # A live task cannot be deleted; a kill stops it with 128 + SIGKILL.
    r = containerd.ctr("tasks", "delete", cid, check=False)
    assert r.returncode != 0
    containerd.ctr("tasks", "kill", "-s", "KILL", cid)
    wait_until("the task to stop", lambda: containerd.task(cid) == (pid, "STOPPED"))
    r = containerd.ctr("tasks", "delete", cid)
    assert b"137" in r.stderr
    containerd.ctr("containers", "rm", cid)
    assert_clean(containerd, cid)


def test_attach_reads_a_detached_tasks_output(containerd: Containerd) -> None:
    script = "read line; echo got-$line; busybox sleep 1; echo late"
    containerd.run("attached", "sh", "-c", script, flags=("-d",))
    r = containerd.ctr("tasks", "attach", "attached", input=b"ping\n")
    assert r.stdout == b"got-ping\nlate\n"
    # ctr tasks attach deletes the task once it exits.
    assert containerd.task("attached") is None
    containerd.ctr("containers", "rm", "attached")
    assert_clean(containerd, "attached")


def test_events_in_order(containerd: Containerd) -> None:
    events = EventStream(containerd)
    try:
        containerd.run("evt", "true", flags=("--rm",))
        assert_clean(containerd, "evt")
    finally:
        lines = events.stop()
    topics = [ln.split()[5] for ln in lines if '"evt"' in ln]
    task_topics = [t for t in topics if t.startswith("/tasks/")]
    assert task_topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]


def test_oom_kill_is_published(containerd: Containerd) -> None:
    events = EventStream(containerd)
    try:
        hog = "a=$(busybox yes | busybox head -c 100000000); echo survived"
        r = containerd.run(
            "oom",
            "busybox",
            "sh",
            "-c",
            hog,
            flags=("--rm", "--memory-limit", "20000000"),
            check=False,
        )
        assert r.returncode == 137, r.stderr
        assert b"survived" not in r.stdout
        assert_clean(containerd, "oom")
    finally:
        lines = events.stop()
    topics = [ln.split()[5] for ln in lines if '"oom"' in ln]
    assert "/tasks/oom" in topics


def test_runc_error_and_nothing_left(containerd: Containerd) -> None:
    r = containerd.run("bad", "no-such-binary", flags=("--rm",), check=False)
    assert r.returncode != 0
    assert b"OCI runtime create failed" in r.stderr
    assert b"no-such-binary" in r.stderr
    containerd.ctr("containers", "rm", "bad", check=False)
    assert_clean(containerd, "bad")


def test_shims_survive_a_daemon_kill(containerd: Containerd) -> None:
    containerd.run("keeps", "busybox", "sleep", "1000", flags=("-d",))
    containerd.run("dies", "busybox", "sleep", "1000", flags=("-d",))
    keeps = containerd.task("keeps")
    dies = containerd.task("dies")
    assert keeps is not None
    assert dies is not None

    containerd.kill()
    assert shim_pids("keeps", containerd.address)
    assert shim_pids("dies", containerd.address)
    # The container exits while the daemon is down: the shim records it on disk.
    os.kill(dies[0], signal.SIGKILL)
    record = containerd.bundle("dies") / "exit" / "init"
    wait_until("the exit record", record.exists)
    assert '"exit_status":137' in record.read_text()
    # Its /tasks/exit waits for the daemon, retried (at least every 2s): no descriptor per try.
    (shim,) = shim_pids("dies", containerd.address)
    before = len(os.listdir(f"/proc/{shim}/fd"))
    time.sleep(5)
    after = len(os.listdir(f"/proc/{shim}/fd"))
    assert after <= before, f"the shim's descriptors grew from {before} to {after}"

    containerd.start()
    assert containerd.task("keeps") == (keeps[0], "RUNNING")
    assert containerd.task("dies") == (dies[0], "STOPPED")
    out = containerd.ctr("tasks", "exec", "--exec-id", "again", "keeps", "echo", "again")
    assert out.stdout == b"again\n"
    r = containerd.ctr("tasks", "delete", "dies")
    assert b"137" in r.stderr
    containerd.ctr("containers", "rm", "dies")
    assert_clean(containerd, "dies")
    remove(containerd, "keeps")
