"""Unpack during pull, through the real daemon's Diff and Snapshots services, on overlayfs
(layers applied in parallel, committed onto their parents) and native; the root file system
compared with the layers applied one by one into a plain directory."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import Client, archive, errdefs
from pycontainerd.content import Info
from pycontainerd.diff import LABEL_UNCOMPRESSED
from pycontainerd.images.rootfs import chain_ids
from pycontainerd.mount import temp_mount
from pycontainerd.platforms import host
from pycontainerd.remotes import Resolver
from pycontainerd.snapshots import Kind
from pycontainerd.unpack import LABEL_SNAPSHOT_REF, UnpackResult, gc_label
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import (
    MTIME,
    TestImage,
    busybox_tar,
    oci_layout_tar,
    platform_image,
    push_image,
    sha256,
)
from tests.fixtures.registry import Registry, run_registry
from tests.fixtures.trees import differences, tree

pytestmark = pytest.mark.integration

SNAPSHOTTERS = ["overlayfs", "native"]


def _tar(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info, data = e if isinstance(e, tuple) else (e, b"")
            info.mtime = MTIME
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return raw.getvalue()


def _dir(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info


def _file(name: str, data: bytes, mode: int = 0o644, uid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid = uid
    info.gid = uid
    return info, data


def _link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    return info


def _layers() -> list[bytes]:
    """Four layers exercising whiteouts, opaque directories, links and modes; the last needs
    its parents (a directory it does not name, a hardlink into a lower layer)."""
    base = _tar(
        [
            _dir("etc/"),
            _file("etc/removeme", b"gone soon"),
            _file("etc/keep", b"kept", 0o600, uid=1000),
            _dir("opq/"),
            _file("opq/old", b"hidden by the opaque marker"),
            _dir("secret/", 0o700),
            _file("secret/a", b"a"),
            _dir("tmp/", 0o1777),
            _file("usr-bin-setuid", b"#!/bin/sh\n", 0o4755),
        ]
    )
    second = _tar(
        [
            _dir("etc/"),
            _file("etc/.wh.removeme", b""),
            _file("etc/keep", b"changed", 0o640, uid=1000),
            _dir("opq/"),
            _file("opq/.wh..wh..opq", b""),
            _file("opq/new", b"new"),
            _link("etc/alias", "keep"),
            _dir("data/"),
            _file("data/one", b"1" * 5000),
            _link("data/two", "data/one", hard=True),
        ]
    )
    third = _tar(
        [
            _file("secret/inner/deep", b"implicit parents"),
            _link("etc/keep-link", "etc/keep", hard=True),
        ]
    )
    return [busybox_tar(), base, second, third]


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def image(registry: Registry) -> tuple[str, TestImage, list[bytes]]:
    tars = _layers()
    img = TestImage([platform_image(host(), tars, seed="unpack")])
    ref = f"{registry.host}/test/unpack:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    return ref, img, tars


def expected_tree(tars: list[bytes], tmp: Path) -> dict[str, tuple[object, ...]]:
    root = tmp / "expected"
    root.mkdir()
    for i, data in enumerate(tars):
        blob = tmp / f"layer-{i}.tar"
        blob.write_bytes(data)
        archive.apply_layer(blob, root, whiteouts="delete")
    return tree(root)


def rootfs_tree(
    client: Client, snapshotter: str, chain: str, tmp: Path
) -> dict[str, tuple[object, ...]]:
    with client.with_lease():  # the view is garbage to the collector otherwise
        sn = client.snapshots(snapshotter)
        mounts = sn.view("check-view", chain)
        try:
            with temp_mount(mounts, root=tmp) as root:
                return tree(root)
        finally:
            sn.remove("check-view")


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_pull_unpacks_the_image(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]], snapshotter: str, tmp_path: Path
) -> None:
    ref, img, tars = image
    chains = chain_ids([sha256(t) for t in tars])
    with Client(daemon.address) as c:
        done: list[UnpackResult] = []
        c.pull(ref, plain_http=True, snapshotter=snapshotter, unpacked=done)
        assert done[0].chain_id == chains[-1]
        assert done[0].applied == len(tars)
        if snapshotter == "overlayfs":
            # the last layer names a directory only by its file: applied again on its parent
            assert done[0].reapplied == 1
        sn = c.snapshots(snapshotter)
        infos = {}
        sn.walk(lambda i: infos.__setitem__(i.name, i))
        assert set(infos) == set(chains), "only the chain is left: no extract-* snapshot"
        for i, chain in enumerate(chains):
            assert infos[chain].kind == Kind.COMMITTED
            assert infos[chain].parent == (chains[i - 1] if i else "")
            assert infos[chain].labels[LABEL_SNAPSHOT_REF] == chain
        plat = img.host
        assert c.content.info(plat.config.digest).labels[gc_label(snapshotter)] == chains[-1]
        for layer, t in zip(plat.layers, tars, strict=True):
            assert c.content.info(layer.digest).labels[LABEL_UNCOMPRESSED] == sha256(t)
        got = rootfs_tree(c, snapshotter, chains[-1], tmp_path)
    want = expected_tree(tars, tmp_path)
    assert differences(got, want) == []
    assert got["etc/keep-link"][5] == got["etc/keep"][5]
    assert got["etc/keep"][1] == ("etc/keep-link",), "a hardlink into a lower layer is a link"
    assert "etc/removeme" not in got
    assert "opq/old" not in got
    assert got["secret"][2] == 0o700


def test_a_second_pull_finds_the_layers_unpacked(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]]
) -> None:
    ref, _, _ = image
    with Client(daemon.address) as c:
        first: list[UnpackResult] = []
        c.pull(ref, plain_http=True, unpacked=first)
        again: list[UnpackResult] = []
        c.pull(ref, plain_http=True, unpacked=again)
        assert again[0].applied == 0
        assert again[0].chain_id == first[0].chain_id


def test_pull_without_unpack_makes_no_snapshot(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]]
) -> None:
    ref, _, _ = image
    with Client(daemon.address) as c:
        c.pull(ref, plain_http=True, unpack=False)
        names: list[str] = []
        c.snapshots().walk(lambda i: names.append(i.name))
        assert names == []


def test_deleting_the_image_lets_gc_take_its_snapshots(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]]
) -> None:
    ref, _, _ = image
    with Client(daemon.address) as c:
        c.pull(ref, plain_http=True)
        daemon.collect_garbage()
        names: list[str] = []
        c.snapshots().walk(lambda i: names.append(i.name))
        assert len(names) == 4, "the image holds its chain through its config's label"
        c.images.delete(ref, sync=True)
        names.clear()
        c.snapshots().walk(lambda i: names.append(i.name))
        assert names == []
    snapshots_dir = daemon.root / "snapshots" / "overlayfs" / "snapshots"
    assert list(snapshots_dir.iterdir()) == []


def test_a_wrong_diff_id_fails_the_pull_and_leaves_no_snapshot(
    daemon: Daemon, registry: Registry
) -> None:
    tars = [busybox_tar()]
    liar = TestImage([platform_image(host(), tars, seed="liar", diff_ids=["sha256:" + "ab" * 32])])
    ref = f"{registry.host}/test/liar:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, liar)
    with Client(daemon.address) as c:
        with pytest.raises(errdefs.FailedPrecondition, match="wrong diff id"):
            c.pull(ref, plain_http=True)
        names: list[str] = []
        c.snapshots().walk(lambda i: names.append(i.name))
        assert names == []
        with pytest.raises(errdefs.NotFound):
            c.images.get(ref)


def test_a_corrupt_layer_fails_the_pull_naming_it(daemon: Daemon, registry: Registry) -> None:
    good = busybox_tar()
    bad = good[:512] + b"\xff" * 512 + good[1024:]  # a broken header after the first entry
    img = TestImage([platform_image(host(), [good, bad], seed="corrupt")])
    ref = f"{registry.host}/test/corrupt:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    with Client(daemon.address) as c:
        with pytest.raises(errdefs.InvalidArgument) as exc:
            c.pull(ref, plain_http=True)
        assert img.host.layers[1].digest in str(exc.value)
        names: list[str] = []
        c.snapshots().walk(lambda i: names.append(i.name))
        # the good bottom layer may stay, committed under its chain ID; nothing half-made
        assert all(not n.startswith("extract-") for n in names)
        assert names in ([], [sha256(good)])


def test_the_config_label_keeps_blob_info(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]]
) -> None:
    ref, img, _ = image
    with Client(daemon.address) as c:
        c.pull(ref, plain_http=True, snapshotter="native")
        info: Info = c.content.info(img.host.config.digest)
        assert gc_label("native") in info.labels
        assert gc_label("overlayfs") not in info.labels


def test_import_unpacks_unless_told_not_to(
    daemon: Daemon, image: tuple[str, TestImage, list[bytes]], tmp_path: Path
) -> None:
    _, img, tars = image
    archive_path = tmp_path / "image.tar"
    archive_path.write_bytes(oci_layout_tar(img, "example.com/unpack:v1"))
    out = daemon.pyctr("images", "import", "--no-unpack", str(archive_path)).stdout
    assert "unpacking" not in out
    with Client(daemon.address) as c:
        names: list[str] = []
        c.snapshots().walk(lambda i: names.append(i.name))
        assert names == []
    out = daemon.pyctr("images", "import", str(archive_path)).stdout
    assert out.startswith("unpacking example.com/unpack:v1 (sha256:")
    assert out.rstrip().endswith("...done")
    chains = chain_ids([sha256(t) for t in tars])
    with Client(daemon.address) as c:
        assert c.snapshots().stat(chains[-1]).kind == Kind.COMMITTED
        assert c.images.is_unpacked(c.images.get("example.com/unpack:v1"))
        assert not c.images.is_unpacked(c.images.get("example.com/unpack:v1"), snapshotter="native")
        # unpacking again finds everything there
        assert c.images.unpack("example.com/unpack:v1").applied == 0


def test_an_image_of_many_layers_mounts_past_the_option_limit(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    count = 130
    tars = [
        _tar([_dir("layers/"), _file(f"layers/{i:03d}", str(i).encode())]) for i in range(count)
    ]
    img = TestImage([platform_image(host(), tars, seed="many", compressed=False)])
    ref = f"{registry.host}/test/many:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    with Client(daemon.address) as c:
        done: list[UnpackResult] = []
        c.pull(ref, plain_http=True, unpacked=done)
        assert done[0].applied == count
        with c.with_lease():
            mounts = c.snapshots().view("many-view", done[0].chain_id)
            options = ",".join(mounts[0].options)
            assert len(options) > 4096, "the lowerdir list is longer than a page"
            with temp_mount(mounts, root=tmp_path) as root:
                assert sorted(os.listdir(Path(root, "layers"))) == [
                    f"{i:03d}" for i in range(count)
                ]
            c.snapshots().remove("many-view")
    # containerd's ctr mounts it too (its own long-option handling)
    target = tmp_path / "ctr-mnt"
    target.mkdir()
    daemon.ctr("images", "mount", ref, str(target))
    try:
        assert len(os.listdir(target / "layers")) == count
    finally:
        daemon.ctr("images", "unmount", "--rm", str(target))
