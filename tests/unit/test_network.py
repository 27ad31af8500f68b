"""Network labels, conflist parsing and the network store: no root, no plugins run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pycontainerd import errdefs
from pycontainerd.network import (
    LABEL_NETWORK,
    LABEL_PORTS,
    LABEL_RESULT,
    NetworkStore,
    PortMapping,
    container_labels,
    network_result,
    parse_port,
    parse_ports,
)
from pycontainerd.network.manager import _add_file_mounts, _hosts, _set_netns, summarize


def test_container_labels() -> None:
    assert container_labels() == {LABEL_NETWORK: "bridge"}
    ports: dict[int | str, int] = {8080: 80, "5353/udp": 53}
    labels = container_labels("web", ports, host_ip="127.0.0.1")
    assert labels[LABEL_NETWORK] == "web"
    assert json.loads(labels[LABEL_PORTS]) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
    ]
    assert container_labels("host") == {}
    assert container_labels("none") == {}
    with pytest.raises(
        errdefs.InvalidArgument, match="ports cannot be published with network host"
    ):
        container_labels("host", {1: 2})
    with pytest.raises(errdefs.InvalidArgument, match="host port 0: must be 1 to 65535"):
        container_labels("bridge", {0: 80})
    with pytest.raises(errdefs.InvalidArgument, match="container port 70000: must be 1 to 65535"):
        container_labels("bridge", {80: 70000})
    with pytest.raises(errdefs.InvalidArgument, match="protocol 'icmp' is not tcp, udp or sctp"):
        container_labels("bridge", {"80/icmp": 80})


def test_parse_port() -> None:
    assert parse_port("8080:80") == PortMapping(8080, 80)
    assert parse_port("53:53/udp") == PortMapping(53, 53, "udp")
    assert parse_port("127.0.0.1:8080:80/tcp") == PortMapping(8080, 80, "tcp", "127.0.0.1")
    assert str(parse_port("127.0.0.1:8080:80")) == "127.0.0.1:8080/tcp"
    with pytest.raises(errdefs.InvalidArgument, match="expected \\[HOSTIP:\\]HOSTPORT"):
        parse_port("8080")
    with pytest.raises(errdefs.InvalidArgument, match="ports must be numbers"):
        parse_port("a:b")
    with pytest.raises(errdefs.InvalidArgument, match="host ip 'nope' is not an address"):
        parse_port("nope:1:2")


def test_parse_ports_label() -> None:
    assert parse_ports("") == ()
    with pytest.raises(errdefs.InvalidArgument, match="not valid json"):
        parse_ports("{")
    with pytest.raises(errdefs.InvalidArgument, match="expected a json array"):
        parse_ports("{}")
    with pytest.raises(errdefs.InvalidArgument, match="entry 0: unknown keys color"):
        parse_ports('[{"hostPort": 1, "containerPort": 1, "color": "red"}]')
    with pytest.raises(errdefs.InvalidArgument, match="host port 80/tcp published twice"):
        parse_ports('[{"hostPort": 80, "containerPort": 1}, {"hostPort": 80, "containerPort": 2}]')


def test_network_result() -> None:
    assert network_result({}) is None
    assert network_result({LABEL_RESULT: "{"}) is None
    assert network_result({LABEL_RESULT: '{"ips": []}'}) == {"ips": []}


def test_summarize_1_0_and_0_4_results() -> None:
    result: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "pcd0", "mac": "aa:aa:aa:aa:aa:aa"},
            {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
            {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"},
        ],
        "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}],
    }
    summary = summarize("bridge", result, [PortMapping(8080, 80)])
    assert summary == {
        "network": "bridge",
        "interface": "eth0",
        "mac": "cc:cc:cc:cc:cc:cc",
        "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
        "ports": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
    }
    old = dict(result, cniVersion="0.4.0")
    old["ips"] = [dict(result["ips"][0], version="4")]
    assert summarize("bridge", old, [])["ips"] == summary["ips"]
    assert _hosts("web", summary).splitlines()[-1] == "10.88.0.5\tweb"


def test_spec_changes() -> None:
    spec: dict[str, Any] = {
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]},
        "mounts": [],
    }
    _set_netns(spec, "/run/x")
    assert spec["linux"]["namespaces"][1] == {"type": "network", "path": "/run/x"}
    host: dict[str, Any] = {"linux": {"namespaces": [{"type": "pid"}]}}
    _set_netns(host, "/run/y")
    assert host["linux"]["namespaces"][-1] == {"type": "network", "path": "/run/y"}
    spec["mounts"] = [{"destination": "/etc/hosts", "type": "bind", "source": "/mine"}]
    _add_file_mounts(spec, {"/etc/hosts": Path("/a"), "/etc/hostname": Path("/b")})
    assert [m["destination"] for m in spec["mounts"]] == ["/etc/hosts", "/etc/hostname"]
    assert spec["mounts"][0]["source"] == "/mine"  # the client's own mount wins
    assert spec["mounts"][1]["options"] == ["rbind", "rprivate", "rw"]


def test_store_default_network_written_on_first_use(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path / "net.d", default_subnet="10.77.0.0/16", default_bridge="pcdq")
    assert store.list() == []
    conf = store.get("bridge")
    assert conf.path == str(tmp_path / "net.d" / "pycontainerd-bridge.conflist")
    assert conf.cni_version == "1.0.0"
    assert [p["type"] for p in conf.plugins] == ["bridge", "portmap", "firewall"]
    bridge = conf.plugins[0]
    assert (bridge["bridge"], bridge["isGateway"], bridge["ipMasq"]) == ("pcdq", True, True)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.77.0.0/16"}]]
    assert conf.plugins[1]["capabilities"] == {"portMappings": True}
    assert store.get("bridge") == conf
    with pytest.raises(errdefs.NotFound, match=r"network other: not found in .*net.d"):
        store.get("other")


def test_store_create_list_remove(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path, default_subnet="10.89.0.0/24")
    a = store.create("a")  # the default subnet's /24 is taken: the next one
    assert a.plugins[0]["ipam"]["ranges"] == [[{"subnet": "10.89.1.0/24"}]]
    assert a.plugins[0]["bridge"] == "pcd-a"
    b = store.create("b", subnet="10.90.0.0/24", bridge="pcdb")
    assert b.plugins[0]["bridge"] == "pcdb"
    with pytest.raises(errdefs.AlreadyExists, match="network a: already exists"):
        store.create("a")
    with pytest.raises(errdefs.InvalidArgument, match="subnet 10.90.0.0/25 overlaps 10.90.0.0/24"):
        store.create("c", subnet="10.90.0.0/25")
    with pytest.raises(errdefs.AlreadyExists, match="bridge pcdb is used by network b"):
        store.create("c", bridge="pcdb")
    with pytest.raises(errdefs.InvalidArgument, match="subnet 'x': "):
        store.create("c", subnet="x")
    with pytest.raises(errdefs.InvalidArgument, match="too small"):
        store.create("c", subnet="10.91.0.0/31")
    with pytest.raises(errdefs.InvalidArgument, match="bridge name 'a-very-long-bridge-name'"):
        store.create("c", bridge="a-very-long-bridge-name")
    with pytest.raises(errdefs.InvalidArgument, match="network name '../x'"):
        store.create("../x")
    (tmp_path / "junk.conflist").write_text("{")
    assert [n.name for n in store.list()] == ["a", "b"]  # the bad file is skipped (logged)
    info, conf = store.inspect("b")
    assert (info.bridge, info.subnets, conf.name) == ("pcdb", ("10.90.0.0/24",), "b")
    with pytest.raises(errdefs.FailedPrecondition, match="remove network a: in use by ns/c1"):
        store.remove("a", in_use=lambda name: ["ns/c1"] if name == "a" else [])
    store.remove("a", in_use=lambda name: [])
    assert [n.name for n in store.list()] == ["b"]
    with pytest.raises(errdefs.NotFound, match="network a: not found"):
        store.remove("a")
    (tmp_path / "foreign.conflist").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "foreign", "plugins": [{"type": "bridge"}]})
    )
    with pytest.raises(errdefs.FailedPrecondition, match="was not written by pycontainerd"):
        store.remove("foreign")


def test_store_names_the_broken_file(tmp_path: Path) -> None:
    (tmp_path / "pycontainerd-broken.conflist").write_text("not json")
    with pytest.raises(
        errdefs.InvalidArgument, match=r"pycontainerd-broken.conflist: not valid json"
    ):
        NetworkStore(tmp_path).get("broken")
