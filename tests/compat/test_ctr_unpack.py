"""containerd's own ``ctr`` unpacking through our Diff and Snapshots services: ``ctr images
pull`` (ctr drives the unpack), ``ctr images mount|unmount``, ``ctr snapshots diff``, on
overlayfs and native; and what ctr made is what our own unpack makes."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import Client
from pycontainerd.diff import LABEL_UNCOMPRESSED
from pycontainerd.images.rootfs import chain_ids
from pycontainerd.mount import is_mounted, temp_mount
from pycontainerd.platforms import host
from pycontainerd.remotes import Resolver
from pycontainerd.unpack import UnpackResult, gc_label
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import TestImage, busybox_tar, platform_image, push_image, sha256
from tests.fixtures.registry import Registry, run_registry
from tests.fixtures.trees import differences, tree
from tests.integration.test_unpack import _layers, expected_tree

pytestmark = pytest.mark.compat

SNAPSHOTTERS = ["overlayfs", "native"]


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def image(registry: Registry) -> tuple[str, TestImage, list[bytes]]:
    tars = _layers()
    img = TestImage([platform_image(host(), tars, seed="ctr-unpack")])
    ref = f"{registry.host}/test/ctr-unpack:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    return ref, img, tars


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_ctr_pull_unpacks_through_our_services(
    daemon: Daemon,
    image: tuple[str, TestImage, list[bytes]],
    snapshotter: str,
    tmp_path: Path,
) -> None:
    ref, img, tars = image
    chains = chain_ids([sha256(t) for t in tars])
    daemon.ctr("images", "pull", "--plain-http", "--snapshotter", snapshotter, ref)
    listing = daemon.ctr("snapshots", "--snapshotter", snapshotter, "ls").stdout
    keys = {line.split()[0] for line in listing.splitlines()[1:]}
    assert keys == set(chains)
    with Client(daemon.address) as c:
        info = c.content.info(img.host.config.digest)
        assert info.labels[gc_label(snapshotter)] == chains[-1]
        for layer, t in zip(img.host.layers, tars, strict=True):
            assert c.content.info(layer.digest).labels[LABEL_UNCOMPRESSED] == sha256(t)

    # ctr mounts the image itself, from the mounts our snapshotter gives
    target = tmp_path / "mnt"
    target.mkdir()
    daemon.ctr("images", "mount", "--snapshotter", snapshotter, ref, str(target))
    try:
        assert is_mounted(target)
        got = tree(target)
    finally:
        daemon.ctr("images", "unmount", "--rm", str(target))
    assert not is_mounted(target)
    assert differences(got, expected_tree(tars, tmp_path)) == []
    # unmount --rm removed the snapshot it made
    listing = daemon.ctr("snapshots", "--snapshotter", snapshotter, "ls").stdout
    assert {line.split()[0] for line in listing.splitlines()[1:]} == set(chains)


def test_ctr_pull_then_our_check_sees_it_unpacked(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]]
) -> None:
    ref, _, _ = image
    daemon.ctr("images", "pull", "--plain-http", ref)
    # a second pull by our client finds every layer unpacked by ctr
    with Client(daemon.address) as c:
        done: list[UnpackResult] = []
        c.pull(ref, plain_http=True, unpacked=done)
        assert done[0].applied == 0


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_ctr_snapshots_diff_writes_a_layer(
    daemon: Daemon, registry: Registry, snapshotter: str, tmp_path: Path
) -> None:
    img = TestImage([platform_image(host(), [busybox_tar()], seed="diff-base")])
    ref = f"{registry.host}/test/diff-base:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    daemon.ctr("images", "pull", "--plain-http", "--snapshotter", snapshotter, ref)
    base = sha256(busybox_tar())

    def ctr(*args: str) -> str:
        return daemon.ctr("snapshots", "--snapshotter", snapshotter, *args).stdout

    ctr("prepare", "work", base)
    with Client(daemon.address) as c:
        mounts = c.snapshots(snapshotter).mounts("work")
    with temp_mount(mounts, root=tmp_path) as root:
        Path(root, "added").write_text("new file\n")
        Path(root, "bin", "cat").unlink()
        Path(root, "etc").mkdir()
        Path(root, "etc", "conf").write_text("x=1\n")
    # ctr writes the layer to its stdout; with --keep the daemon keeps it (a gc.root label)
    out = subprocess.run(
        [
            "ctr",
            "-a",
            daemon.address,
            "snapshots",
            "--snapshotter",
            snapshotter,
            "diff",
            "--keep",
            "work",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    raw = gzip.decompress(out)
    with Client(daemon.address) as c:
        info = c.content.info(sha256(out))
        assert info.labels[LABEL_UNCOMPRESSED] == sha256(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
    assert "added" in names
    assert "bin/.wh.cat" in names
    assert "etc/conf" in names
    assert not any(n.startswith("bin/busybox") for n in names)
    # the diff applied on the base gives what the snapshot holds
    ctr("commit", "committed", "work")
    out = json.loads(ctr("info", "committed"))
    assert out["Parent"] == base


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_pyctr_pull_mount_unmount_check_as_ctr(
    daemon: Daemon,
    image: tuple[str, TestImage, list[bytes]],
    snapshotter: str,
    tmp_path: Path,
) -> None:
    ref, _, tars = image
    chains = chain_ids([sha256(t) for t in tars])
    out = daemon.pyctr(
        "images", "pull", "--plain-http", "--snapshotter", snapshotter, "--print-chainid", ref
    ).stdout
    lines = out.splitlines()
    assert lines[-3].startswith("unpacking linux/")
    assert lines[-2] == f"image chain ID: {chains[-1]}"
    assert lines[-1].startswith("done: ")
    # check: unpacked in this snapshotter, not in the other
    other = "native" if snapshotter == "overlayfs" else "overlayfs"
    for sn, want in ((snapshotter, "true"), (other, "false")):
        ours = daemon.pyctr("images", "check", "--snapshotter", sn).stdout.splitlines()
        theirs = daemon.ctr("images", "check", "--snapshotter", sn).stdout.splitlines()
        assert ours[1].split()[-1] == want
        assert theirs[1].split()[-1] == want

    target = tmp_path / "mnt"
    target.mkdir()
    out = daemon.pyctr("images", "mount", "--snapshotter", snapshotter, ref, str(target)).stdout
    assert out.splitlines() == [chains[-1], str(target)]
    try:
        assert is_mounted(target)
        assert differences(tree(target), expected_tree(tars, tmp_path)) == []
        # ctr sees the lease pyctr made, named by the target
        assert str(target) in daemon.ctr("leases", "ls").stdout
    finally:
        out = daemon.pyctr("images", "unmount", "--rm", "--snapshotter", snapshotter, str(target))
    assert out.stdout.strip() == str(target)
    assert not is_mounted(target)
    assert str(target) not in daemon.ctr("leases", "ls").stdout
    listing = daemon.ctr("snapshots", "--snapshotter", snapshotter, "ls").stdout
    assert {line.split()[0] for line in listing.splitlines()[1:]} == set(chains)


def test_pyctr_snapshots_diff_prints_ctrs_bytes(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]], tmp_path: Path
) -> None:
    ref, _, tars = image
    chains = chain_ids([sha256(t) for t in tars])
    daemon.pyctr("images", "pull", "--plain-http", ref)
    daemon.ctr("snapshots", "prepare", "work", chains[-1])
    with Client(daemon.address) as c:
        mounts = c.snapshots().mounts("work")
    with temp_mount(mounts, root=tmp_path) as root:
        Path(root, "etc", "keep").unlink()
        Path(root, "new").write_text("new\n")

    def run(tool: list[str], *args: str) -> bytes:
        return subprocess.run(
            [*tool, "-a", daemon.address, "snapshots", "diff", *args],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout

    from tests.fixtures.daemon import PYCTR

    ours = run(PYCTR, "work")
    assert ours == run(["ctr"], "work")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(ours))) as tar:
        names = tar.getnames()
    assert "new" in names
    assert "etc/.wh.keep" in names
    # between two committed snapshots: from <idA> (lower) to <idB> (upper), as ctr reads them
    up = run(PYCTR, chains[-2], chains[-1])
    assert up == run(["ctr"], chains[-2], chains[-1])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(up))) as tar:
        assert "secret/inner/deep" in tar.getnames()
    down = run(PYCTR, chains[-1], chains[-2])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(down))) as tar:
        assert "secret/.wh.inner" in tar.getnames()
    # an uncompressed diff on request
    raw = run(PYCTR, "--media-type", "application/vnd.oci.image.layer.v1.tar", "work")
    assert raw[257:262] == b"ustar"
