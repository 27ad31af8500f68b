"""containerd's own ``ctr snapshots`` against us, and ``pyctr snapshots`` printing the same."""

from __future__ import annotations

import json
import shutil

import pytest

from pycontainerd import Client
from pycontainerd.snapshots import Kind
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.compat


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_prepare_ls_info_mounts_commit_rm(daemon: Daemon, snapshotter: str) -> None:
    def ctr(*args: str) -> str:
        return daemon.ctr("snapshots", "--snapshotter", snapshotter, *args).stdout

    def pyctr(*args: str) -> str:
        return daemon.pyctr("snapshots", "--snapshotter", snapshotter, *args).stdout

    out = ctr("prepare", "--target", "/mnt", "base")
    assert out.startswith("mount -t bind /")
    assert out.rstrip().endswith("/mnt -o rw,rbind")
    with Client(daemon.address) as client:
        sn = client.snapshots(snapshotter)
        assert sn.stat("base").kind == Kind.ACTIVE
        assert "containerd.io/gc.root" in sn.stat("base").labels
    ctr("commit", "layer1", "base")
    ctr("prepare", "work", "layer1")
    ctr("view", "look", "layer1")

    listing = ctr("ls")
    assert listing == pyctr("ls")
    rows = [line.split() for line in listing.splitlines()]
    assert rows[0] == ["KEY", "PARENT", "KIND"]
    assert sorted(map(tuple, rows[1:])) == [
        ("layer1", "Committed"),
        ("look", "layer1", "View"),
        ("work", "layer1", "Active"),
    ]
    assert ctr("tree") == pyctr("tree")
    assert " layer1\n" in ctr("tree")

    info = json.loads(ctr("info", "work"))
    assert (info["Kind"], info["Name"], info["Parent"]) == ("Active", "work", "layer1")
    mine = json.loads(pyctr("info", "work"))
    assert mine.keys() == info.keys()
    assert json.loads(ctr("info", "layer1"))["Kind"] == "Committed"

    mounts = ctr("mounts", "/target", "work")
    assert mounts == pyctr("mounts", "/target", "work")
    if snapshotter == "overlayfs":
        assert mounts.startswith("mount -t overlay overlay /target -o ")
        assert "lowerdir=" in mounts
        assert "upperdir=" in mounts
    else:
        assert mounts.startswith("mount -t bind ")
        assert mounts.rstrip().endswith("-o rw,rbind")

    usage = ctr("usage", "--b", "work").splitlines()
    assert usage[0].split() == ["KEY", "SIZE", "INODES"]
    assert usage[1].split()[0] == "work"

    assert "a=1" in ctr("label", "layer1", "a=1").strip().split(",")
    assert json.loads(ctr("info", "layer1"))["Labels"]["a"] == "1"
    assert "a=1" not in pyctr("label", "layer1", "a=").strip().split(",")
    assert "a" not in json.loads(ctr("info", "layer1"))["Labels"]

    failed = daemon.ctr("snapshots", "--snapshotter", snapshotter, "rm", "layer1", check=False)
    assert failed.returncode != 0
    ctr("rm", "work", "look")
    ctr("rm", "layer1")
    assert ctr("ls") == pyctr("ls") == "KEY PARENT KIND \n"
