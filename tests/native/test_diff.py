"""pycontainerd.archive.write_diff from Python: a diff applied onto a copy of the lower tree
gives the upper tree back, and the overlay upper-directory walk writes the same layer."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.archive import DiffStats, apply_layer, write_diff
from pycontainerd.mount import Mount, is_mounted, temp_mount


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir()
    subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a layer carries of every path under ``root``: type and mode, owner, device, size,
    mtime in seconds (not for directories), xattrs, content digest or link target, links."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            xattrs = sorted(
                (n, os.getxattr(p, n, follow_symlinks=False))
                for n in os.listxattr(p, follow_symlinks=False)
                if not n.startswith("trusted.overlay.") and n != "security.selinux"
            )
            if stat.S_ISREG(st.st_mode):
                body: object = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            else:
                body = None
            is_dir = stat.S_ISDIR(st.st_mode)
            out[rel] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_rdev,
                0 if is_dir else st.st_size,
                0 if is_dir else int(st.st_mtime),
                xattrs,
                body,
                1 if is_dir else st.st_nlink,
            )
    return out


def _lower(root: Path) -> None:
    (root / "etc/conf.d").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0\n")
    (root / "etc/conf.d/a.conf").write_text("a=1\n")
    (root / "var/cache").mkdir(parents=True)
    for i in range(5):
        (root / f"var/cache/{i}").write_text(str(i))
    (root / "old-dir").mkdir()
    (root / "old-dir/child").write_text("c")
    (root / "link").symlink_to("etc/passwd")
    (root / "same-second").write_bytes(b"aaaa")
    os.utime(root / "same-second", ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))


def _change(root: Path) -> None:
    (root / "etc/passwd").write_text("root:x:0:0\nuser:x:1000:1000\n")
    os.chown(root / "etc/conf.d/a.conf", 1000, 1001)
    os.chmod(root / "etc/conf.d/a.conf", 0o4750)
    (root / "var/cache/3").unlink()
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
    (root / "usr/share/a").write_bytes(b"pair")
    os.link(root / "usr/share/a", root / "usr/share/b")
    os.mkfifo(root / "usr/share/fifo", 0o600)
    os.mknod(root / "usr/share/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "usr/share/cap").write_bytes(b"#!/bin/true\n")
    cap = bytes([0, 0, 0, 2, 0, 4, 0, 0]) + bytes(12)
    os.setxattr(root / "usr/share/cap", "security.capability", cap, follow_symlinks=False)
    os.setxattr(root / "usr/share/cap", "user.note", b"\x00bin\xff", follow_symlinks=False)
    # Same size and second as in lower, zero nanoseconds on both: only the content tells.
    (root / "same-second").write_bytes(b"AAAA")
    os.utime(root / "same-second", ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_round_trip(tmp_path: Path, compression: str) -> None:
    lower, upper, target = tmp_path / "lower", tmp_path / "upper", tmp_path / "target"
    lower.mkdir()
    _lower(lower)
    _copy(lower, upper)
    _copy(lower, target)
    _change(upper)
    out = tmp_path / "layer"
    stats = write_diff(lower, upper, out, compression=compression)  # type: ignore[arg-type]
    assert isinstance(stats, DiffStats)
    blob = out.read_bytes()
    assert stats.size == len(blob)
    assert stats.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert stats.compression == ("uncompressed" if compression == "none" else compression)
    assert (stats.whiteouts, stats.hardlinks, stats.fifos, stats.devices) == (1, 1, 1, 1)
    applied = apply_layer(out, target)
    assert applied.diff_id == stats.diff_id
    assert applied.uncompressed_size == stats.uncompressed_size
    assert _tree(target) == _tree(upper)


def test_layer_layout(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    _lower(lower)
    _copy(lower, upper)
    _change(upper)
    out = tmp_path / "layer.tar.gz"
    stats = write_diff(lower, upper, out)
    raw = gzip.decompress(out.read_bytes())
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(out) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert "var/cache/.wh.3" in names
    assert "old-dir/.wh.child" not in names
    assert "etc/conf.d/a.conf" in names
    assert "var/cache/0" not in names
    by_name = {m.name: m for m in members}
    assert by_name["usr/share/b"].islnk()
    assert by_name["usr/share/b"].linkname == "usr/share/a"
    assert by_name["usr/share/cap"].pax_headers["SCHILY.xattr.security.capability"]
    assert by_name["etc/conf.d/a.conf"].mode == 0o4750
    assert (by_name["etc/conf.d/a.conf"].uid, by_name["etc/conf.d/a.conf"].gid) == (1000, 1001)
    assert by_name["usr/share/null"].ischr()
    assert by_name["usr/share/null"].devmajor == 1


def test_upperdir_gives_the_same_layer(tmp_path: Path) -> None:
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for d in (lower, upper, work):
        d.mkdir()
    _lower(lower)
    overlay = Mount(
        "overlay",
        "overlay",
        options=(f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}", "index=off"),
    )
    walked = tmp_path / "walked.tar"
    with temp_mount([overlay], root=tmp_path) as merged:
        _change(Path(merged))
        (Path(merged) / "var/cache/0").unlink()
        expect = _tree(Path(merged))
        double = write_diff(lower, merged, walked, compression="none")
    assert not is_mounted(merged)
    fast_out = tmp_path / "fast.tar"
    fast = write_diff(lower, upper, fast_out, compression="none", upperdir=True)
    assert fast == double
    assert fast_out.read_bytes() == walked.read_bytes()
    target = tmp_path / "target"
    _copy(lower, target)
    apply_layer(fast_out, target)
    assert _tree(target) == expect


def test_errors_name_the_path_and_leave_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    missing = tmp_path / "missing"
    out = tmp_path / "out"
    with pytest.raises(errdefs.NotFound, match=f'lower "{missing}": not found'):
        write_diff(missing, tree, out)
    with pytest.raises(errdefs.NotFound, match=f'upper "{missing}"'):
        write_diff(tree, missing, out)
    with pytest.raises(errdefs.InvalidArgument, match="unknown compression"):
        write_diff(tree, tree, out, compression="bzip2")  # type: ignore[arg-type]
    with pytest.raises(errdefs.NotFound):
        write_diff(tree, tree, missing / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]
