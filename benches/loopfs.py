"""A journaled ext4 on a loop device, made by a benchmark for its file-system work.

The machine's root file system is ext4 without a journal, where inode reuse makes repeated
extraction slower run after run: unpack benchmarks run here instead. The image is a sparse
file; the inode tables and the journal are written at ``mkfs`` time (no lazy initialisation
running in the background while measuring). Everything is unmounted and removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DESCRIPTION", "loop_ext4", "mounts_under"]

DESCRIPTION = "journaled ext4 on a loop device made by the benchmark (sparse file, mkfs.ext4)"


def _run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def mounts_under(path: Path) -> list[str]:
    """Mount points strictly below ``path``, deepest first."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


@contextlib.contextmanager
def loop_ext4(size: int = 16 << 30) -> Iterator[Path]:
    """Mount a new journaled ext4 of ``size`` bytes (sparse) and yield its mount point."""
    if os.geteuid() != 0:
        raise RuntimeError("the unpack benchmark runs as root: it mounts a loop device")
    base = Path(tempfile.mkdtemp(prefix="pcd-bench-fs-"))
    image, mnt = base / "ext4.img", base / "mnt"
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(size)
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            str(image),
        )
        features = _run("dumpe2fs", "-h", str(image))
        assert "has_journal" in features, f"{image}: mkfs.ext4 made no journal"
        mnt.mkdir()
        _run("mount", "-t", "ext4", "-o", "loop", str(image), str(mnt))
        mounted = True
        yield mnt
    finally:
        if mounted:
            for point in mounts_under(mnt):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
            result = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
            if result.returncode != 0:  # still busy: detach it, the loop device follows
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
