"""The CNI runner against Debian's real plugins, without a daemon: ADD, CHECK, DEL.

Each test pins a network namespace of its own (``pycontainerd._native.netns_create``), uses a
bridge and subnet of its own, and removes both; host-local's allocations are checked gone.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import _native, errdefs
from pycontainerd.network import CNI, parse_conflist
from pycontainerd.network.cni import LOOPBACK

pytestmark = pytest.mark.integration

BIN_DIRS = ["/usr/lib/cni"]
IPAM_DIR = Path("/var/lib/cni/networks")


class Sandbox:
    def __init__(self, tmp: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.netns = tmp / "netns"
        _native.netns_create(str(self.netns))
        self.bridge = f"pcdc{self.tag}"
        self.network = f"cni-test-{self.tag}"
        self.cni = CNI(BIN_DIRS, tmp / "cache")
        self.subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/29"

    def conflist(self, version: str, *plugins: dict[str, object]) -> str:
        bridge = {
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": self.subnet},
        }
        return json.dumps(
            {"cniVersion": version, "name": self.network, "plugins": [bridge, *plugins]}
        )

    def links(self) -> str:
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", "ip", "-o", "addr"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def close(self) -> None:
        for entry in sorted((self.cni.cache_dir).glob("*")) if self.cni.cache_dir.is_dir() else []:
            # what a failed test left attached
            cached = json.loads(entry.read_text())
            with contextlib.suppress(errdefs.ContainerdError):
                self.cni.delete(
                    cached["networkName"],
                    container_id=cached["containerId"],
                    ifname=cached["ifName"],
                    force=True,
                )
        _native.netns_remove(str(self.netns))
        if Path(f"/sys/class/net/{self.bridge}").exists():
            subprocess.run(["ip", "link", "delete", self.bridge], check=True)
        ipam = IPAM_DIR / self.network
        if ipam.is_dir():
            leftover = sorted(p.name for p in ipam.iterdir())
            for p in ipam.iterdir():
                p.unlink()
            ipam.rmdir()
            assert set(leftover) <= {"last_reserved_ip.0", "lock"}, leftover


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    b = Sandbox(tmp_path)
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_add_check_del(box: Sandbox, version: str) -> None:
    conf = parse_conflist(
        box.conflist(version, {"type": "portmap", "capabilities": {"portMappings": True}})
    )
    box.cni.add(LOOPBACK, container_id="c1", netns=str(box.netns), ifname="lo")
    result = box.cni.add(
        conf,
        container_id="c1",
        netns=str(box.netns),
        capability_args={"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]},
    )
    assert result["cniVersion"] == version
    address = result["ips"][0]["address"]
    assert address.startswith(box.subnet.rsplit(".", 1)[0] + ".")
    assert address in box.links()
    assert "lo    inet 127.0.0.1/8" in box.links()
    assert (IPAM_DIR / box.network / address.split("/")[0]).is_file()
    cached = box.cni.cached(box.network, "c1")
    assert cached is not None
    assert cached.result == result

    # portmap 1.1.1's CHECK looks for ip6tables chains it never made: CHECK is tested below
    box.cni.delete(box.network, container_id="c1")
    assert not (IPAM_DIR / box.network / address.split("/")[0]).exists()
    assert box.cni.cached(box.network, "c1") is None
    assert "eth0" not in box.links()
    box.cni.delete(box.network, container_id="c1")  # DEL again: nothing to do
    box.cni.delete(LOOPBACK.name, container_id="c1", ifname="lo")


def test_check_finds_a_removed_interface(box: Sandbox) -> None:
    conf = parse_conflist(box.conflist("1.0.0"))
    box.cni.add(conf, container_id="c2", netns=str(box.netns))
    box.cni.check(box.network, container_id="c2")
    subprocess.run(["nsenter", f"--net={box.netns}", "ip", "link", "delete", "eth0"], check=True)
    with pytest.raises(errdefs.ContainerdError, match=r"cni plugin bridge failed \(CHECK"):
        box.cni.check(box.network, container_id="c2")
    box.cni.delete(box.network, container_id="c2")


def test_plugin_errors_become_errdefs(box: Sandbox) -> None:
    conf = parse_conflist(box.conflist("1.0.0", {"type": "pcd-missing"}))
    with pytest.raises(errdefs.NotFound, match="cni plugin pcd-missing not found in /usr/lib/cni"):
        box.cni.add(conf, container_id="c3", netns=str(box.netns))
    # the ADD is undone from the cache; the missing plugin's DEL fails, the others' run
    with pytest.raises(errdefs.NotFound, match="cni plugin pcd-missing not found"):
        box.cni.delete(box.network, container_id="c3")
    assert not (IPAM_DIR / box.network).is_dir() or {
        p.name for p in (IPAM_DIR / box.network).iterdir()
    } <= {"last_reserved_ip.0", "lock"}

    bad_ipam = json.loads(box.conflist("1.0.0"))
    bad_ipam["plugins"][0]["ipam"]["subnet"] = "10.0.0.0/33"
    with pytest.raises(errdefs.ContainerdError, match=r"cni plugin bridge failed \(ADD of network"):
        box.cni.add(parse_conflist(json.dumps(bad_ipam)), container_id="c4", netns=str(box.netns))
    with pytest.raises(errdefs.Unknown, match="invalid CIDR address"):
        box.cni.delete(box.network, container_id="c4")
    assert box.cni.cached(box.network, "c4") is not None  # kept to try DEL again
    with pytest.raises(errdefs.Unknown, match="invalid CIDR address"):
        box.cni.delete(box.network, container_id="c4", force=True)
    assert box.cni.cached(box.network, "c4") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid json"),
        ("[]", "expected a json object"),
        ('{"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}', '"name" must be'),
        (
            '{"name": "x", "cniVersion": "9.9.9", "plugins": [{"type": "b"}]}',
            "cniVersion 9.9.9 is not supported",
        ),
        ('{"name": "x", "cniVersion": "1.0.0", "plugins": [{}]}', 'plugins\\[0\\]: "type"'),
        (
            '{"name": "x", "cniVersion": "1.0.0", "plugins": [{"type": "../b"}]}',
            'plugins\\[0\\]: "type" .*not a plugin name',
        ),
    ],
)
def test_bad_conflists(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "x.conflist"
    path.write_text(text)
    from pycontainerd.network import load_conflist

    with pytest.raises(errdefs.InvalidArgument, match=rf"network config {path}: {problem}"):
        load_conflist(path)
