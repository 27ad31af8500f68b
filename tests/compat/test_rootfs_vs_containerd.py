"""The root file system we unpack is containerd's: every benchmark image (smaller here) is pulled
by a real containerd 1.6 on a private socket and by us, on overlayfs and native, mounted, and
compared path by path (type, mode, owner, link target, device numbers, xattrs, contents,
mtimes; directories' mtimes included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benches.images import BenchImage, debian_image, six_image
from pycontainerd import Client
from pycontainerd.mount import is_mounted, temp_mount
from pycontainerd.remotes import Resolver
from pycontainerd.unpack import UnpackResult
from tests.fixtures.bench_images import files_image, large_image_gz, rootfs_image
from tests.fixtures.containerd import Containerd, run_containerd
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import TestImage, push_image
from tests.fixtures.registry import Registry, run_registry
from tests.fixtures.trees import differences, tree

pytestmark = pytest.mark.compat

IMAGES: dict[str, Callable[[], TestImage | BenchImage]] = {
    "rootfs": lambda: rootfs_image(scale=0.05),
    "files": lambda: files_image(1500),
    "large": lambda: large_image_gz(24 << 20),
    # the unpack benchmark's images (benches/images.py), smaller
    "six-gzip": lambda: six_image("gzip", scale=0.01),
    "six-zstd": lambda: six_image("zstd", scale=0.01),
    "debian-stand-in": lambda: debian_image(smoke=True),
}


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    with run_containerd() as ctd:
        yield ctd


@pytest.fixture(scope="module")
def refs(registry: Registry) -> dict[str, str]:
    out = {}
    with Resolver(plain_http=True) as r:
        for name, build in IMAGES.items():
            img = build()
            ref = f"{registry.host}/bench/{name}:v1"
            if isinstance(img, BenchImage):
                img.push(r, ref)
            else:
                push_image(r, ref, img)
            out[name] = ref
    return out


def containerd_tree(
    ctd: Containerd, ref: str, snapshotter: str, tmp: Path
) -> dict[str, tuple[object, ...]]:
    ctd.ctr("images", "pull", "--plain-http", "--snapshotter", snapshotter, ref)
    target = tmp / f"containerd-{snapshotter}"
    target.mkdir()
    ctd.ctr("images", "mount", "--snapshotter", snapshotter, ref, str(target))
    try:
        return tree(target, with_dir_times=True)
    finally:
        ctd.ctr("images", "unmount", "--rm", str(target))
        assert not is_mounted(target)


def our_tree(
    daemon: Daemon, ref: str, snapshotter: str, tmp: Path
) -> dict[str, tuple[object, ...]]:
    with Client(daemon.address) as c:
        done: list[UnpackResult] = []
        c.pull(ref, plain_http=True, snapshotter=snapshotter, unpacked=done)
        with c.with_lease():  # the view is garbage to the collector otherwise
            sn = c.snapshots(snapshotter)
            mounts = sn.view(f"compare-{snapshotter}", done[0].chain_id)
            try:
                with temp_mount(mounts, root=tmp) as root:
                    return tree(root, with_dir_times=True)
            finally:
                sn.remove(f"compare-{snapshotter}")


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
@pytest.mark.parametrize("name", list(IMAGES))
def test_same_root_filesystem_as_containerd(
    daemon: Daemon,
    containerd: Containerd,
    refs: dict[str, str],
    name: str,
    snapshotter: str,
    tmp_path: Path,
) -> None:
    ref = refs[name]
    theirs = containerd_tree(containerd, ref, snapshotter, tmp_path)
    ours = our_tree(daemon, ref, snapshotter, tmp_path)
    assert len(ours) > 3
    diffs = differences(ours, theirs)
    assert not diffs, "\n".join(diffs)
