"""pycontainerd.archive.apply_layer from Python: the native applier behind one call."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import threading
import time
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.archive import ApplyStats, apply_layer

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_600_000_000
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


def test_applies_and_reports_the_diff_id(tmp_path: Path, root: Path) -> None:
    raw = _tar(
        [
            _dir("etc"),
            _file("etc/hostname", b"box\n"),
            _symlink("hn", "etc/hostname"),
            _file("bin/tool", b"\x7fELF", 0o4755),
        ]
    )
    blob = tmp_path / "layer.tar.gz"
    blob.write_bytes(gzip.compress(raw))
    stats = apply_layer(blob, root, media_type=GZIP_LAYER)
    assert isinstance(stats, ApplyStats)
    assert stats.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert stats.compression == "gzip"
    assert (stats.files, stats.dirs, stats.symlinks) == (2, 1, 1)
    assert (root / "etc/hostname").read_bytes() == b"box\n"
    assert os.readlink(root / "hn") == "etc/hostname"
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o4755
    assert int((root / "etc/hostname").stat().st_mtime) == 1_600_000_000


def test_compression_detected_from_magic_bytes(tmp_path: Path, root: Path) -> None:
    raw = _tar([_file("a", b"1")])
    blob = tmp_path / "layer"
    blob.write_bytes(gzip.compress(raw))
    assert apply_layer(blob, root).compression == "gzip"
    blob.write_bytes(raw)
    assert apply_layer(blob, root).compression == "uncompressed"


@pytest.mark.parametrize(
    ("entries", "entry"),
    [
        ([_file("../escape", b"x")], "../escape"),
        ([_symlink("link", "/"), _file("link/../../escape", b"x")], "link/../../escape"),
    ],
)
def test_hostile_layer_is_refused_naming_the_entry(
    tmp_path: Path, root: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], entry: str
) -> None:
    blob = tmp_path / "bad.tar"
    blob.write_bytes(_tar(entries))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(errdefs.InvalidArgument, match=f'entry "{entry}"'):
        apply_layer(blob, root)
    assert sorted(os.listdir(tmp_path)) == before


def test_writes_through_a_symlink_stay_inside_the_root(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    blob = tmp_path / "l.tar"
    blob.write_bytes(_tar([_symlink("etc", str(outside)), _file("etc/passwd", b"evil")]))
    apply_layer(blob, root)
    assert os.listdir(outside) == []
    assert (root / str(outside).lstrip("/") / "passwd").read_bytes() == b"evil"


def test_whiteouts(tmp_path: Path, root: Path) -> None:
    (root / "gone").write_text("lower")
    (root / "dir").mkdir()
    (root / "dir" / "old").write_text("lower")
    blob = tmp_path / "l.tar"
    blob.write_bytes(_tar([_file(".wh.gone", b""), _dir("dir"), _file("dir/.wh..wh..opq", b"")]))
    stats = apply_layer(blob, root, whiteouts="delete")
    assert stats.whiteouts == 2
    assert not (root / "gone").exists()
    assert os.listdir(root / "dir") == []
    upper = tmp_path / "upper"
    upper.mkdir()
    apply_layer(blob, upper, whiteouts="overlay")
    st = (upper / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == 0
    assert os.getxattr(upper / "dir", "trusted.overlay.opaque") == b"y"


def test_bad_arguments(tmp_path: Path, root: Path) -> None:
    blob = tmp_path / "l.tar"
    blob.write_bytes(_tar([_file("a", b"1")]))
    with pytest.raises(errdefs.InvalidArgument, match="unknown whiteout mode"):
        apply_layer(blob, root, whiteouts="sideways")  # type: ignore[arg-type]
    with pytest.raises(errdefs.NotImplemented, match="unsupported media type"):
        apply_layer(blob, root, media_type="application/x-rar")
    with pytest.raises(errdefs.NotFound):
        apply_layer(tmp_path / "missing", root)


def test_decompression_bomb_is_refused(tmp_path: Path, root: Path) -> None:
    blob = tmp_path / "bomb.tar.gz"
    blob.write_bytes(gzip.compress(_tar([_file("zeros", bytes(8 << 20))])))
    with pytest.raises(errdefs.InvalidArgument):
        apply_layer(blob, root, max_uncompressed_size=1 << 20)


def test_truncated_layer_is_refused(tmp_path: Path, root: Path) -> None:
    raw = gzip.compress(_tar([_file("big", os.urandom(200_000))]))
    blob = tmp_path / "cut.tar.gz"
    blob.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(errdefs.InvalidArgument):
        apply_layer(blob, root)


def test_the_gil_is_released(tmp_path: Path, root: Path) -> None:
    entries = [_file(f"d{i % 50}/f{i}", os.urandom(2048)) for i in range(4000)]
    blob = tmp_path / "many.tar.gz"
    blob.write_bytes(gzip.compress(_tar(entries), compresslevel=1))
    ticks = 0
    done = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0)

    t = threading.Thread(target=tick)
    t.start()
    try:
        start_ticks = ticks
        apply_layer(blob, root)
        during = ticks - start_ticks
    finally:
        done.set()
        t.join()
    assert during > 100, "another Python thread made no progress during apply_layer"
