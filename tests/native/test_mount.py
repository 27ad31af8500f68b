"""pycontainerd.mount from Python: real mounts in temporary directories, always unmounted."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import _native, errdefs
from pycontainerd.mount import (
    Mount,
    is_mounted,
    mount_all,
    temp_mount,
    unmount,
    unmount_all,
)


@pytest.fixture
def cleanup() -> Iterator[list[Path]]:
    """Targets to unmount (detached, repeatedly) after the test, also when it fails."""
    targets: list[Path] = []
    yield targets
    for t in reversed(targets):
        unmount_all(t, detach=True)


def _layers(base: Path, count: int, width: int) -> list[Path]:
    """``count`` lower directories with ``width``-character names, each with a marker file and
    a file ``shared`` that the topmost wins; topmost first."""
    dirs = []
    for i in range(count):
        d = base / f"{'l' * width}-{i:03d}"
        d.mkdir(parents=True)
        (d / f"layer-{i}").write_text(str(i))
        (d / "shared").write_text(str(i))
        dirs.append(d)
    return dirs[::-1]


def test_bind_and_read_only_bind(tmp_path: Path, cleanup: list[Path]) -> None:
    src, rw, ro = tmp_path / "src", tmp_path / "rw", tmp_path / "ro"
    for d in (src, rw, ro):
        d.mkdir()
    (src / "f").write_text("hello")
    cleanup += [rw, ro]
    mount_all([Mount("bind", str(src), options=("rbind", "rw"))], rw)
    mount_all([Mount("bind", str(src), options=("rbind", "ro"))], ro)
    assert is_mounted(rw)
    assert is_mounted(ro)
    (rw / "g").write_text("through the bind")
    assert (src / "g").read_text() == "through the bind"
    assert (ro / "f").read_text() == "hello"
    with pytest.raises(OSError, match="Read-only file system") as err:
        (ro / "h").write_text("refused")
    assert err.value.errno == errno.EROFS
    assert not (src / "h").exists()
    unmount(rw)
    unmount_all(ro)
    assert not is_mounted(rw)
    assert not is_mounted(ro)
    # Not mounted any more: neither call is an error.
    unmount(rw)
    unmount_all(ro)


def test_overlay_with_many_long_layers(tmp_path: Path, cleanup: list[Path]) -> None:
    lowers = _layers(tmp_path / "layers", 160, 150)
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    lowerdir = "lowerdir=" + ":".join(map(str, lowers))
    assert len(lowerdir) > 6 * os.sysconf("SC_PAGE_SIZE")
    cleanup.append(merged)
    overlay = Mount(
        "overlay", "overlay", options=(lowerdir, f"upperdir={upper}", f"workdir={work}")
    )
    mount_all([overlay], merged)
    assert is_mounted(merged)
    assert (merged / "layer-0").read_text() == "0"
    assert (merged / "layer-159").read_text() == "159"
    assert (merged / "shared").read_text() == "159"
    (merged / "new").write_text("upper")
    assert (upper / "new").read_text() == "upper"
    unmount_all(merged)
    assert not is_mounted(merged)


def test_temp_mount_unmounts_and_removes(tmp_path: Path) -> None:
    lowers = _layers(tmp_path / "layers", 3, 10)
    view = Mount("overlay", "overlay", options=("ro", "lowerdir=" + ":".join(map(str, lowers))))
    with temp_mount([view], root=tmp_path) as target:
        assert Path(target).parent == tmp_path
        assert is_mounted(target)
        assert (Path(target) / "shared").read_text() == "2"
        with pytest.raises(OSError, match="Read-only file system") as err:
            (Path(target) / "x").write_text("x")
        assert err.value.errno == errno.EROFS
    assert not os.path.exists(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers"]


def test_temp_mount_cleans_up_after_an_error_inside(tmp_path: Path) -> None:
    tmpfs = Mount("tmpfs", "tmpfs", options=("size=1m",))
    seen: list[str] = []

    def use() -> None:
        with temp_mount([tmpfs], root=tmp_path) as target:
            seen.append(target)
            (Path(target) / "f").write_text("x")
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        use()
    assert len(seen) == 1
    assert not os.path.exists(seen[0])
    assert list(tmp_path.iterdir()) == []


def test_missing_source_is_not_found_and_named(tmp_path: Path, cleanup: list[Path]) -> None:
    target = tmp_path / "t"
    target.mkdir()
    cleanup.append(target)
    missing = tmp_path / "missing"
    with pytest.raises(errdefs.NotFound, match=str(missing)) as err:
        mount_all([Mount("bind", str(missing), options=("rbind",))], target)
    assert str(err.value).startswith("mount bind ")
    assert "ENOENT" in str(err.value)
    with pytest.raises(errdefs.NotFound, match=str(missing)):
        mount_all([Mount("overlay", "overlay", options=(f"lowerdir={target}:{missing}",))], target)
    with pytest.raises(errdefs.NotFound, match="target does not exist"):
        mount_all([Mount("tmpfs", "tmpfs")], tmp_path / "nowhere")

    # A failed mount with temp_mount leaves no directory behind.
    def use() -> None:
        with temp_mount([Mount("bind", str(missing), options=("rbind",))], root=tmp_path):
            pytest.fail("mounted a missing source")

    with pytest.raises(errdefs.NotFound):
        use()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    assert not is_mounted(target)


def test_bad_options_are_invalid_arguments(tmp_path: Path, cleanup: list[Path]) -> None:
    target = tmp_path / "t"
    target.mkdir()
    cleanup.append(target)
    with pytest.raises(errdefs.InvalidArgument, match='"loop"'):
        mount_all([Mount("ext4", "/dev/null", options=("loop",))], target)
    with pytest.raises(errdefs.InvalidArgument, match="tmpfs"):
        mount_all([Mount("tmpfs", "tmpfs", options=("no-such-option=1",))], target)
    with pytest.raises(errdefs.InvalidArgument, match="unknown flags"):
        _native.unmount(str(target), 0x4000)
    assert not is_mounted(target)


def test_is_mounted(tmp_path: Path) -> None:
    assert is_mounted("/")
    assert not is_mounted(tmp_path)
    assert not is_mounted(tmp_path / "missing")
    spaced = tmp_path / "with space"
    spaced.mkdir()
    with temp_mount([Mount("bind", str(spaced), options=("rbind",))], root=tmp_path) as t:
        assert is_mounted(t)
        link = tmp_path / "link"
        link.symlink_to(t)
        assert is_mounted(link)
        link.unlink()
    assert not is_mounted(t)
