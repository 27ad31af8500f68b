"""The layer we write for a change is containerd's: a real containerd 1.6 on a private socket
diffs two snapshots (``ctr snapshots diff``, its walking differ over continuity's double walk of
the mounted views), we diff the same change (native: the same two directories; overlayfs: the
upper directory alone against the parent), and the archives are compared entry by entry."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycontainerd.archive import write_diff
from pycontainerd.mount import Mount, temp_mount
from tests.fixtures.daemon import wait_for_socket

pytestmark = pytest.mark.compat

TAR = "application/vnd.oci.image.layer.v1.tar"


# A containerd of its own: snapshots made with ctr carry no lease, so its garbage collector
# (which runs 100 ms after start, and then only after many changes) must not start early.
CONFIG = """version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{base}/containerd.sock"

[ttrpc]
  address = "{base}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"

[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "1h"
"""


@dataclass
class Containerd:
    """containerd 1.6 on a private socket."""

    address: str

    def ctr(self, *args: str) -> bytes:
        """Run ctr against it and return its standard output; fail with its error."""
        result = subprocess.run(
            ["ctr", "-a", self.address, *args], capture_output=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr.decode()}"
        return result.stdout


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    binary = shutil.which("containerd")
    assert binary, "containerd is missing: scripts/setup installs Debian's containerd 1.6"
    base = Path(tempfile.mkdtemp(prefix="ctd-diff-"))  # short: a socket path fits 108 bytes
    (base / "config.toml").write_text(CONFIG.format(base=base))
    address = str(base / "containerd.sock")
    with open(base / "containerd.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "--config", str(base / "config.toml")], stdout=log, stderr=log
        )
        try:
            wait_for_socket(address, proc)
            yield Containerd(address)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            subprocess.run(["umount", "-R", str(base / "root")], capture_output=True, check=False)
            shutil.rmtree(base, ignore_errors=True)


def _mount(ctd: Containerd, snapshotter: str, key: str) -> Mount:
    """The mount of a snapshot, from the command ctr prints for it."""
    words = ctd.ctr("snapshots", "--snapshotter", snapshotter, "mounts", "/mnt", key).decode()
    # mount -t TYPE SOURCE /mnt -o OPTIONS
    _, _, kind, source, _, _, options = words.split()
    return Mount(kind, source, options=tuple(options.split(",")))


def _dir(ctd: Containerd, snapshotter: str, key: str) -> Path:
    """The directory a bind-mounted snapshot is."""
    m = _mount(ctd, snapshotter, key)
    assert m.type == "bind", m
    return Path(m.source)


def _lower(root: Path) -> None:
    (root / "etc/conf.d").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0\n")
    (root / "etc/conf.d/a.conf").write_text("a=1\n")
    (root / "etc/conf.d/b.conf").write_text("b=1\n")
    (root / "var/cache").mkdir(parents=True)
    for i in range(5):
        (root / f"var/cache/{i}").write_text(str(i))
    (root / "old-dir").mkdir()
    (root / "old-dir/child").write_text("c")
    (root / "link").symlink_to("etc/passwd")
    (root / "pair-a").write_text("linked")
    os.link(root / "pair-a", root / "pair-b")
    (root / "same-second").write_bytes(b"aaaa")
    os.utime(root / "same-second", (1_600_000_000, 1_600_000_000))


def _change(root: Path) -> None:
    (root / "etc/passwd").write_text("root:x:0:0\nuser:x:1000:1000\n")
    os.chown(root / "etc/conf.d/a.conf", 1000, 1001)
    os.chmod(root / "etc/conf.d/a.conf", 0o4750)
    (root / "etc/conf.d/b.conf").unlink()
    for p in sorted((root / "var/cache").iterdir()):
        p.unlink()
    (root / "var/cache/fresh").write_text("new")
    for p in sorted((root / "old-dir").iterdir()):
        p.unlink()
    (root / "old-dir").rmdir()
    (root / "old-dir").write_text("a file now")
    (root / "link").unlink()
    (root / "link").symlink_to("/somewhere/else")
    deep = root / "usr/share" / ("d" * 120) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_bytes(b"long names")
    (root / "usr/share/ünïcode").write_bytes(b"utf-8")
    (root / "usr/share/new-a").write_bytes(b"new pair")
    os.link(root / "usr/share/new-a", root / "usr/share/new-b")
    os.link(root / "pair-a", root / "pair-c")
    os.mkfifo(root / "usr/share/fifo", 0o600)
    os.mknod(root / "usr/share/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "usr/share/cap").write_bytes(b"#!/bin/true\n")
    cap = bytes([0, 0, 0, 2, 0, 4, 0, 0]) + bytes(12)
    os.setxattr(root / "usr/share/cap", "security.capability", cap, follow_symlinks=False)
    (root / "usr/share/big").write_bytes(os.urandom(1 << 20))
    (root / "same-second").write_bytes(b"AAAA")
    os.utime(root / "same-second", (1_600_000_000, 1_600_000_000))


def _entries(blob: bytes) -> list[tuple[object, ...]]:
    """Every entry as containerd's applier would see it; whiteouts without their mtime, which
    containerd stamps with the time of the diff."""
    out: list[tuple[object, ...]] = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tf:
        for m in tf.getmembers():
            data = tf.extractfile(m) if m.isreg() else None
            digest = hashlib.sha256(data.read()).hexdigest() if data else ""
            whiteout = os.path.basename(m.name).startswith(".wh.")
            xattrs = sorted(
                (k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")
            )
            out.append(
                (
                    m.name,
                    m.type,
                    m.mode,
                    m.uid,
                    m.gid,
                    m.size,
                    0 if whiteout else int(m.mtime),
                    m.linkname,
                    m.devmajor,
                    m.devminor,
                    xattrs,
                    digest,
                )
            )
    return out


@pytest.mark.parametrize("snapshotter", ["native", "overlayfs"])
def test_same_layer_as_containerd(containerd: Containerd, snapshotter: str, tmp_path: Path) -> None:
    snap = ("snapshots", "--snapshotter", snapshotter)
    containerd.ctr(*snap, "prepare", "base")
    _lower(_dir(containerd, snapshotter, "base"))
    containerd.ctr(*snap, "commit", "base-c", "base")
    containerd.ctr(*snap, "prepare", "top", "base-c")
    containerd.ctr(*snap, "view", "base-v", "base-c")
    lower = _dir(containerd, snapshotter, "base-v")
    top = _mount(containerd, snapshotter, "top")
    with temp_mount([top], root=tmp_path) as merged:
        _change(Path(merged))
    theirs = containerd.ctr(*snap, "diff", "--media-type", TAR, "top")

    out = tmp_path / "ours.tar"
    if snapshotter == "overlayfs":
        # the overlay upper directory alone, against the parent
        assert top.type == "overlay"
        upperdir = next(
            o.removeprefix("upperdir=") for o in top.options if o.startswith("upperdir=")
        )
        stats = write_diff(lower, upperdir, out, compression="none", upperdir=True)
    else:
        stats = write_diff(lower, top.source, out, compression="none")
    assert stats.entries > 20
    assert _entries(out.read_bytes()) == _entries(theirs)
