"""containerd's own ``ctr containers`` against our daemon, and our spec beside ctr's.

The image these tests use is unpacked by hand (its one layer written into a committed snapshot
named by its chain ID, as an unpacker leaves it), which is all ``ctr containers create`` asks of
an image: it then prepares the container's snapshot, mounts it to look the user up and creates
the record through our Snapshots, Leases and Containers services.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from pycontainerd import Client, errdefs
from pycontainerd.containers import AnyValue, Container, RuntimeInfo
from pycontainerd.oci import generate_spec, spec_from_any, spec_to_any, without_mounts
from tests.fixtures.daemon import Daemon
from tests.integration.test_containers import GROUP, PASSWD, install_image

pytestmark = pytest.mark.compat

IMAGE = "example.com/compat/app:1"
CONFIG: dict[str, Any] = {
    "User": "web",
    "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
    "Entrypoint": ["/bin/app"],
    "Cmd": ["--serve"],
    "WorkingDir": "/srv",
    "Labels": {"org.example": "yes"},
}


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


def test_default_spec_is_ctr_oci_spec() -> None:
    out = subprocess.run(["ctr", "oci", "spec"], capture_output=True, text=True, check=True)
    theirs = json.loads(out.stdout)
    # the one documented difference: we also mount the cgroup filesystem read-only
    ours = generate_spec("default", "")
    assert ours != theirs
    assert generate_spec("default", "", without_mounts("/sys/fs/cgroup")) == theirs
    # key for key in the same order, as Go writes them
    assert json.dumps(generate_spec("default", "", without_mounts("/sys/fs/cgroup"))) == (
        json.dumps(theirs)
    )


def test_ls_info_label_rm_on_our_records(daemon: Daemon, client: Client) -> None:
    client.containers.create(
        Container(
            "web",
            RuntimeInfo(
                "io.containerd.runc.v2", AnyValue("containerd.runc.v1.Options", b"\x08\x01")
            ),
            spec=spec_to_any(generate_spec("default", "web")),
            labels={"app": "web", "<&>": "x"},
            image="docker.io/library/web:1",
            snapshotter="overlayfs",
            snapshot_key="web",
            extensions={"ext": AnyValue("example.com/Ext", b"\x00\xff")},
        )
    )
    client.containers.create("bare", spec={"ociVersion": "1.0.2-dev"})

    for args in (["ls"], ["ls", "-q"], ["ls", "labels.app==web"], ["ls", "runtime.name~=runc"]):
        theirs = daemon.ctr("containers", *args).stdout
        assert theirs == daemon.pyctr("containers", *args).stdout
    rows = [line.split() for line in daemon.ctr("containers", "ls").stdout.splitlines()]
    assert rows == [
        ["CONTAINER", "IMAGE", "RUNTIME"],
        ["bare", "-", "io.containerd.runc.v2"],
        ["web", "docker.io/library/web:1", "io.containerd.runc.v2"],
    ]

    for cid in ("web", "bare"):
        theirs = daemon.ctr("containers", "info", cid).stdout
        assert theirs == daemon.pyctr("containers", "info", cid).stdout
        theirs = daemon.ctr("containers", "info", "--spec", cid).stdout
        assert theirs == daemon.pyctr("containers", "info", "--spec", cid).stdout
    info = json.loads(daemon.ctr("containers", "info", "web").stdout)
    assert info["Extensions"] == {"ext": {"type_url": "example.com/Ext", "value": "AP8="}}
    assert info["Spec"] == generate_spec("default", "web")

    # ctr prints labels in Go's map order; the sets agree
    out = daemon.ctr("containers", "label", "web", "tier=front", "app=").stdout.strip()
    assert set(out.split(",")) == {"tier=front", "<&>=x"}
    assert client.containers.get("web").labels == {"tier": "front", "<&>": "x"}
    out = daemon.pyctr("containers", "label", "web", "tier=back").stdout.strip()
    assert out == "<&>=x,tier=back"

    err = daemon.ctr("containers", "info", "nope", check=False)
    assert err.returncode != 0
    assert 'container "nope" in namespace "default": not found' in err.stderr

    daemon.ctr("containers", "rm", "bare")
    assert [c.id for c in client.containers.list()] == ["web"]


def test_rm_cleans_the_snapshot_unless_kept(daemon: Daemon, client: Client) -> None:
    sn = client.snapshots("overlayfs")
    spec = spec_to_any(generate_spec("default", "x"))
    for cid in ("a", "b", "c"):
        # a root: a kept snapshot that nothing refers to would go at the next collection
        sn.prepare(cid, "", labels={"containerd.io/gc.root": "x"})
        client.containers.create(cid, spec=spec, snapshotter="overlayfs", snapshot_key=cid)
    daemon.ctr("containers", "rm", "a")
    daemon.ctr("containers", "rm", "--keep-snapshot", "b")
    daemon.pyctr("containers", "rm", "c")
    with pytest.raises(errdefs.NotFound):
        sn.stat("a")
    sn.stat("b")
    with pytest.raises(errdefs.NotFound):
        sn.stat("c")
    assert client.containers.list() == []
    sn.remove("b")


def test_ctr_create_and_ours_build_the_same_spec(daemon: Daemon, client: Client) -> None:
    install_image(client, IMAGE, CONFIG, {"etc/passwd": PASSWD, "etc/group": GROUP})
    flags = ["--env", "EXTRA=1", "--label", "mine=1", "--cwd", "/work", "--read-only"]
    daemon.ctr("containers", "create", *flags, IMAGE, "theirs", "/bin/sh", "run.sh", "x")
    daemon.pyctr("containers", "create", *flags, IMAGE, "ours", "/bin/sh", "run.sh", "x")
    theirs = client.containers.get("theirs")
    ours = client.containers.get("ours")
    assert theirs.spec is not None
    assert ours.spec is not None
    their_spec = spec_from_any(theirs.spec)
    our_spec = spec_from_any(ours.spec)
    # the documented difference, and the ids in the cgroup path
    our_spec = {**our_spec, "mounts": [m for m in our_spec["mounts"] if m["type"] != "cgroup"]}
    assert their_spec["linux"].pop("cgroupsPath") == "/default/theirs"
    assert our_spec["linux"].pop("cgroupsPath") == "/default/ours"
    assert our_spec == their_spec
    assert their_spec["process"]["user"] == {
        "uid": 1000,
        "gid": 1001,
        "additionalGids": [1001, 2000, 29],
    }
    assert (ours.image, ours.snapshotter, ours.runtime) == (
        theirs.image,
        theirs.snapshotter,
        theirs.runtime,
    )
    assert ours.labels == theirs.labels
    their_snap = client.snapshots("overlayfs").stat("theirs")
    our_snap = client.snapshots("overlayfs").stat("ours")
    assert their_snap.parent == our_snap.parent != ""

    assert daemon.ctr("containers", "ls").stdout == daemon.pyctr("containers", "ls").stdout
    for cid in ("theirs", "ours"):
        theirs_info = daemon.ctr("containers", "info", cid).stdout
        assert theirs_info == daemon.pyctr("containers", "info", cid).stdout
    daemon.ctr("containers", "rm", "ours")
    daemon.pyctr("containers", "rm", "theirs")
    assert client.containers.list() == []
    with pytest.raises(errdefs.NotFound):
        client.snapshots("overlayfs").stat("theirs")
