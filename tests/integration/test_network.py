"""Container networking with CNI through the daemon: real plugins, veths, iptables, netns.

Every test runs its own daemon whose CNI config directory is a temporary one and whose default
``bridge`` network has a bridge and subnet of its own; traffic goes only between the host and
the test's containers. After each test no veth, namespace file, host-local allocation or
iptables rule of its containers remains, and its bridges are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2

from pycontainerd import Client, errdefs
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pycontainerd.containers import SPEC_TYPE_URL
from pycontainerd.network import (
    LABEL_RESULT,
    NetworkStore,
    bridge_conflist,
    container_labels,
    network_result,
)
from pycontainerd.network.manager import cni_container_id
from tests.fixtures.cni import IPAM_DIR, delete_link, remove_cni_rules, remove_ipam
from tests.fixtures.containers import Stdio, fill_busybox, oci_spec
from tests.fixtures.daemon import Daemon, make_daemon

pytestmark = pytest.mark.integration

RUNTIME = "io.containerd.runc.v2"
SNAPSHOTTER = "overlayfs"
LAYER = "busybox-layer"
ROOT = {"containerd.io/gc.root": "network test"}
NETWORK_STATE = "io.containerd.internal.v1.network"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def iptables_rules() -> str:
    out = []
    for table in ("nat", "filter"):
        out.append(
            subprocess.run(
                ["iptables-save", "-t", table], capture_output=True, text=True, check=True
            ).stdout
        )
    return "\n".join(out)


def links_of(bridge: str) -> list[str]:
    """The interfaces enslaved to ``bridge``."""
    master = Path("/sys/class/net") / bridge / "brif"
    return sorted(p.name for p in master.iterdir()) if master.is_dir() else []


class Net:
    """A daemon with a private CNI config and default bridge, and containers on it."""

    def __init__(self, base: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"pcdt{self.tag}"
        self.octets = (200 + secrets.randbelow(50), secrets.randbelow(256))
        self.subnet = self.subnet_of(0, 24)
        self.conf_dir = base / "net.d"
        self.bin_dir = base / "cni-bin"  # plugins of the test's own, found first
        self.bin_dir.mkdir()
        self.daemon: Daemon = make_daemon(base / "d")
        self.daemon.config.write_text(
            "version = 2\n"
            '[plugins."io.containerd.internal.v1.network"]\n'
            f'  conf_dir = "{self.conf_dir}"\n'
            f'  default_subnet = "{self.subnet}"\n'
            f'  default_bridge = "{self.bridge}"\n'
            f'  bin_dirs = ["{self.bin_dir}", "/usr/lib/cni"]\n'
        )
        self.daemon.start()
        self.tmp = base
        self.namespace = f"net-{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []
        self.bridges = [self.bridge]
        self.networks: list[str] = ["bridge"]
        self.ips: list[str] = []
        self._connect()
        sn = self.client.snapshots(SNAPSHOTTER)
        mounts = sn.prepare(f"{LAYER}-active", "", labels=ROOT)
        fill_busybox(Path(mounts[0].source))
        sn.commit(LAYER, f"{LAYER}-active", labels=ROOT)

    def subnet_of(self, offset: int, prefix: int) -> str:
        """A subnet of this test's own: ``10.<a + offset>.<b>.0/<prefix>``."""
        return f"10.{self.octets[0] + offset}.{self.octets[1]}.0/{prefix}"

    def _connect(self) -> None:
        self.client = Client(self.daemon.address, namespace=self.namespace)
        self.tasks = tasks_pb2_grpc.TasksStub(self.client.channel)
        self.containers = containers_pb2_grpc.ContainersStub(self.client.channel)

    @property
    def store(self) -> NetworkStore:
        return NetworkStore(self.conf_dir)

    def state_dir(self) -> Path:
        return self.daemon.state / NETWORK_STATE

    def call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        return self.client.call(method, request, timeout=timeout)

    def create(
        self,
        id_: str,
        args: list[str],
        labels: dict[str, str],
        *,
        start: bool = True,
        hostname: bool = True,
    ) -> Stdio:
        self.client.snapshots(SNAPSHOTTER).prepare(id_, LAYER, labels=ROOT)
        spec = oci_spec(args, namespace=self.namespace, id_=id_)
        if not hostname:
            del spec["hostname"]
        self.call(
            self.containers.Create,
            containers_pb2.CreateContainerRequest(
                container=containers_pb2.Container(
                    id=id_,
                    labels=labels,
                    runtime=containers_pb2.Container.Runtime(name=RUNTIME),
                    spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
                    snapshotter=SNAPSHOTTER,
                    snapshot_key=id_,
                )
            ),
        )
        self.ids.append(id_)
        io = Stdio(self.tmp / "fifo", id_)
        self.call(
            self.tasks.Create,
            tasks_pb2.CreateTaskRequest(
                container_id=id_, stdout=str(io.stdout.path), stderr=str(io.stderr.path)
            ),
        )
        result = self.result(id_)
        assert result is not None
        self.ips.extend(ip["address"].split("/")[0] for ip in result["ips"])
        if start:
            self.call(self.tasks.Start, tasks_pb2.StartRequest(container_id=id_))
        return io

    def labels(self, id_: str) -> dict[str, str]:
        resp = self.call(self.containers.Get, containers_pb2.GetContainerRequest(id=id_))
        return dict(resp.container.labels)

    def result(self, id_: str) -> dict[str, Any] | None:
        return network_result(self.labels(id_))

    def wait(self, id_: str) -> int:
        resp = self.call(self.tasks.Wait, tasks_pb2.WaitRequest(container_id=id_), timeout=60)
        return int(resp.exit_status)

    def kill_and_delete(self, id_: str) -> None:
        with contextlib.suppress(errdefs.NotFound, errdefs.FailedPrecondition):
            self.call(self.tasks.Kill, tasks_pb2.KillRequest(container_id=id_, signal=9, all=True))
            self.wait(id_)
        with contextlib.suppress(errdefs.NotFound):
            self.call(self.tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=id_))

    def assert_clean(self) -> None:
        """Nothing of the test's containers is left on the host."""
        netns = self.state_dir() / "netns"
        assert not netns.is_dir() or not list(netns.iterdir())
        for bridge in self.bridges:
            assert links_of(bridge) == []
        for network in self.networks:
            ipam = IPAM_DIR / network
            leftover = [p.name for p in ipam.iterdir()] if ipam.is_dir() else []
            assert not [ip for ip in self.ips if ip in leftover], leftover
        rules = iptables_rules()
        for ip in self.ips:
            assert f"{ip}/32" not in rules, ip
            assert f" {ip}:" not in rules, ip
        for kept in (
            self.daemon.root / NETWORK_STATE / "results",  # the CNI result cache
            self.daemon.root / NETWORK_STATE / "attachments",
            self.state_dir() / "etc",  # hosts, resolv.conf, hostname
        ):
            assert not kept.is_dir() or not list(kept.iterdir()), list(kept.iterdir())

    def close(self) -> None:
        for id_ in self.ids:
            with contextlib.suppress(errdefs.ContainerdError):
                self.kill_and_delete(id_)
            with contextlib.suppress(errdefs.NotFound):
                self.client.snapshots(SNAPSHOTTER).remove(id_)
            with contextlib.suppress(errdefs.NotFound):
                self.call(self.containers.Delete, containers_pb2.DeleteContainerRequest(id=id_))
        with contextlib.suppress(errdefs.NotFound):
            self.client.snapshots(SNAPSHOTTER).remove(LAYER)
        self.client.namespaces.delete(self.namespace)
        self.client.close()
        for controller in Path("/sys/fs/cgroup").iterdir():
            cg = controller / self.namespace
            if cg.is_dir():
                os.rmdir(cg)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    try:
        yield n
        n.close()
        n.assert_clean()
        assert n.daemon.stop() == 0, n.daemon.logs()
    finally:
        n.daemon.stop(signal.SIGKILL)
        n.daemon.cleanup()
        for name in n.networks:
            if name != "bridge":
                with contextlib.suppress(errdefs.ContainerdError):
                    n.store.remove(name)
            # after a failure (a passing test has none left); the default network's name
            # is not the test's own: only its containers' rules
            ids = [cni_container_id(n.namespace, i) for i in n.ids] if name == "bridge" else None
            remove_cni_rules(name, ids)
            remove_ipam(name)
        for bridge in n.bridges:
            delete_link(bridge)


def shim_pid(task_pid: int) -> int:
    """The shim is the task's parent (its subreaper)."""
    stat = Path(f"/proc/{task_pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def wait_detached(net: Net, id_: str) -> None:
    """Wait (bounded) until the daemon has removed the container's network result."""
    for _ in range(300):
        if LABEL_RESULT not in net.labels(id_):
            return
        time.sleep(0.1)
    assert LABEL_RESULT not in net.labels(id_)


def fetch(url: str) -> str:
    """GET ``url``, retried while the server is not yet listening (bounded)."""
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return str(resp.read().decode())
        except (ConnectionError, OSError):
            time.sleep(0.1)
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


HTTPD = (
    "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
)


def test_http_between_containers_and_published_port(net: Net) -> None:
    port = free_port()
    net.create("web", ["sh", "-c", HTTPD], container_labels("bridge", {port: 80}))
    result = net.result("web")
    assert result is not None
    assert result["network"] == "bridge"
    assert result["interface"] == "eth0"
    assert len(result["mac"]) == 17
    (ip,) = result["ips"]
    web_ip = ip["address"].split("/")[0]
    assert ip["gateway"] == net.subnet.replace(".0/24", ".1")
    assert result["ports"] == [
        {"hostPort": port, "containerPort": 80, "protocol": "tcp", "hostIP": ""}
    ]
    assert len(links_of(net.bridge)) == 1
    assert f"{web_ip}/32" in iptables_rules()  # what the cleanup checks below look for
    assert web_ip in [p.name for p in (IPAM_DIR / "bridge").iterdir()]

    script = (
        f"cat /etc/hostname; grep -c client /etc/hosts; ip -o link show lo | grep -c UP; "
        f"for i in $(seq 100); do wget -q -O - http://{web_ip}/ && exit 0; sleep 0.1; done; exit 1"
    )
    io = net.create("client", ["sh", "-c", script], container_labels("bridge"))
    assert net.wait("client") == 0, io.stderr.read()
    assert io.stdout.read() == "client\n1\n1\nhello-from-web\n"

    assert fetch(f"http://127.0.0.1:{port}/") == "hello-from-web\n"

    netns = net.state_dir() / "netns"
    assert sorted(p.name for p in netns.iterdir()) == [
        f"{net.namespace}-client",
        f"{net.namespace}-web",
    ]
    for id_ in ("web", "client"):
        net.kill_and_delete(id_)
        assert LABEL_RESULT not in net.labels(id_)
    net.assert_clean()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_daemon_killed_and_tasks_gone_meanwhile(net: Net) -> None:
    port = free_port()
    net.create("sleeper", ["sleep", "1000"], container_labels("bridge", {port: 80}))
    net.create("other", ["sleep", "1000"], container_labels("bridge"))
    assert len(links_of(net.bridge)) == 2
    pids = {}
    for id_ in ("sleeper", "other"):
        resp = net.call(net.tasks.Get, tasks_pb2.GetRequest(container_id=id_))
        pids[id_] = resp.process.pid
    shims = [shim_pid(pid) for pid in pids.values()]
    net.client.close()
    net.daemon.stop(signal.SIGKILL)
    # while the daemon is down, the tasks die with their shims
    for pid in [*pids.values(), *shims]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    net.daemon.start()
    net._connect()
    for id_ in ("sleeper", "other"):
        wait_detached(net, id_)  # once the daemon has cleaned up after the shims
        with pytest.raises(errdefs.NotFound):
            net.call(net.tasks.Get, tasks_pb2.GetRequest(container_id=id_))
    net.assert_clean()


def test_bad_conflist_is_refused_and_leaves_nothing(net: Net) -> None:
    net.conf_dir.mkdir(exist_ok=True)
    broken = net.conf_dir / "pycontainerd-broken.conflist"
    broken.write_text('{"cniVersion": "1.0.0", "name": "broken", "plugins": [')
    with pytest.raises(
        errdefs.InvalidArgument, match=r"pycontainerd-broken.conflist: not valid json"
    ):
        net.create("c1", ["true"], container_labels("broken"))
    broken.write_text('{"cniVersion": "1.0.0", "name": "broken", "plugins": []}')
    with pytest.raises(errdefs.InvalidArgument, match=r'"plugins" must be a non-empty array'):
        net.create("c2", ["true"], container_labels("broken"))
    with pytest.raises(errdefs.NotFound, match="network nowhere: not found"):
        net.create("c3", ["true"], container_labels("nowhere"))
    assert LABEL_RESULT not in net.labels("c1")
    net.assert_clean()


def test_missing_plugin_is_refused_and_leaves_nothing(net: Net) -> None:
    net.conf_dir.mkdir(exist_ok=True)
    conf = {
        "cniVersion": "1.0.0",
        "name": f"missing-{net.tag}",
        "plugins": [{"type": "pcd-no-such-plugin"}],
    }
    (net.conf_dir / "missing.conflist").write_text(json.dumps(conf))
    with pytest.raises(
        errdefs.NotFound,
        match=rf"cni plugin pcd-no-such-plugin not found in {net.bin_dir}, /usr/lib/cni",
    ):
        net.create("c1", ["true"], container_labels(f"missing-{net.tag}"))
    net.assert_clean()


def test_exhausted_subnet_and_taken_ports(net: Net) -> None:
    name = f"tiny-{net.tag}"
    bridge = f"pcdu{net.tag}"
    net.networks.append(name)
    net.bridges.append(bridge)
    created = net.store.create(name, subnet=net.subnet_of(1, 30), bridge=bridge)
    assert created.name == name
    port = free_port()
    net.create("first", ["sleep", "1000"], container_labels(name, {port: 80}))
    assert len(links_of(bridge)) == 1
    allocated = sorted(p.name for p in (IPAM_DIR / name).iterdir())

    with pytest.raises(errdefs.Unavailable, match=rf"network {name}.*subnet is exhausted"):
        net.create("second", ["sleep", "1000"], container_labels(name))
    assert len(links_of(bridge)) == 1
    assert sorted(p.name for p in (IPAM_DIR / name).iterdir()) == allocated
    assert not (net.state_dir() / "netns" / f"{net.namespace}-second").exists()

    with pytest.raises(
        errdefs.AlreadyExists,
        match=rf"publish port 0.0.0.0:{port}/tcp: port is already allocated to container "
        rf"{net.namespace}/first",
    ):
        net.create("third", ["sleep", "1000"], container_labels("bridge", {port: 80}))
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(
            errdefs.AlreadyExists,
            match=rf"publish port 0.0.0.0:{taken}/tcp: port is already in use on the host",
        ):
            net.create("fourth", ["sleep", "1000"], container_labels("bridge", {taken: 80}))
    assert links_of(net.bridge) == []
    with pytest.raises(
        errdefs.FailedPrecondition, match=rf"remove network {name}: in use by {net.namespace}/first"
    ):
        net.store.remove(name, in_use=lambda n: [f"{net.namespace}/first"] if n == name else [])
    net.kill_and_delete("first")
    net.assert_clean()


def test_shim_dying_while_the_daemon_runs_detaches(net: Net) -> None:
    net.create("doomed", ["sleep", "1000"], container_labels("bridge"))
    resp = net.call(net.tasks.Get, tasks_pb2.GetRequest(container_id="doomed"))
    shim = shim_pid(resp.process.pid)
    os.kill(resp.process.pid, signal.SIGKILL)
    os.kill(shim, signal.SIGKILL)
    wait_detached(net, "doomed")
    with pytest.raises(errdefs.NotFound):
        net.call(net.tasks.Get, tasks_pb2.GetRequest(container_id="doomed"))
    net.assert_clean()


def test_check_and_repeated_delete(net: Net) -> None:
    net.create("checked", ["sleep", "1000"], container_labels("bridge"), start=False)
    net.kill_and_delete("checked")
    net.kill_and_delete("checked")  # a second delete finds no task: nothing else happens
    net.assert_clean()


def test_named_network_with_pyctr(net: Net) -> None:
    name = f"named-{net.tag}"
    bridge = f"pcdn{net.tag}"
    subnet = net.subnet_of(2, 24)
    net.networks.append(name)
    net.bridges.append(bridge)
    conf = ["network", "--conf-dir", str(net.conf_dir)]
    created = net.daemon.pyctr(*conf, "create", name, "--subnet", subnet, "--bridge", bridge)
    assert created.stdout == f"{net.conf_dir}/pycontainerd-{name}.conflist\n"
    again = net.daemon.pyctr(*conf, "create", name, check=False)
    assert (again.returncode, again.stderr) == (1, f"pyctr: network {name}: already exists\n")
    listed = net.daemon.pyctr(*conf, "ls").stdout.splitlines()
    assert listed[0].split() == ["NAME", "BRIDGE", "SUBNET", "PLUGINS", "FILE"]
    assert listed[1].split()[:3] == [name, bridge, subnet]
    inspected = json.loads(net.daemon.pyctr(*conf, "inspect", name).stdout)
    assert inspected["plugins"][0]["bridge"] == bridge

    net.create("server", ["sh", "-c", HTTPD], container_labels(name))
    result = net.result("server")
    assert result is not None
    server_ip = result["ips"][0]["address"].split("/")[0]
    assert server_ip.startswith(subnet.rsplit(".", 1)[0] + ".")
    info = json.loads(
        net.daemon.pyctr("containers", "info", "server", namespace=net.namespace).stdout
    )
    assert json.loads(info["Labels"][LABEL_RESULT]) == result
    shown = net.daemon.pyctr(*conf, "result", "server", namespace=net.namespace).stdout
    assert json.loads(shown) == result

    check = [*conf, "check", "--root", str(net.daemon.root), "server"]
    assert net.daemon.pyctr(*check, namespace=net.namespace).stdout == f"server: {name} ok\n"

    script = (
        f"for i in $(seq 100); do wget -q -O - http://{server_ip}/ && exit 0; sleep 0.1; done; "
        "exit 1"
    )
    io = net.create("fetcher", ["sh", "-c", script], container_labels(name))
    assert net.wait("fetcher") == 0, io.stderr.read()
    assert io.stdout.read() == "hello-from-server\n"

    pid = net.call(net.tasks.Get, tasks_pb2.GetRequest(container_id="server")).process.pid
    down = ["nsenter", "-t", str(pid), "-n", "ip", "link", "set", "eth0", "down"]
    subprocess.run(down, check=True)  # its routes go with the link: CHECK says so
    broken = net.daemon.pyctr(*check, check=False, namespace=net.namespace)
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"pyctr: cni plugin bridge failed (CHECK of network {name}): ")

    refused = net.daemon.pyctr(*conf, "rm", name, check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"pyctr: unable to remove network {name}: remove network {name}: "
        f"in use by {net.namespace}/fetcher, {net.namespace}/server\n"
    )
    for id_ in ("server", "fetcher"):
        net.kill_and_delete(id_)
        net.call(net.containers.Delete, containers_pb2.DeleteContainerRequest(id=id_))
        net.client.snapshots(SNAPSHOTTER).remove(id_)
    net.ids.clear()
    assert net.daemon.pyctr(*conf, "rm", name).stdout == f"{name}\n"
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert not (net.conf_dir / f"pycontainerd-{name}.conflist").exists()


def test_failed_del_is_retried_after_a_restart(net: Net) -> None:
    """A plugin gone at DEL: the task is deleted all the same, the attachment (namespace,
    cache) stays and is detached on the next start, once the plugin is back."""
    plugin = net.bin_dir / f"pcd-test-{net.tag}"
    shutil.copy2("/usr/lib/cni/tuning", plugin)
    name = f"retry-{net.tag}"
    bridge = f"pcdr{net.tag}"
    net.networks.append(name)
    net.bridges.append(bridge)
    conf = json.loads(bridge_conflist(name, bridge=bridge, subnet=net.subnet_of(3, 24)).to_json())
    conf["plugins"].append({"type": plugin.name})
    net.conf_dir.mkdir(exist_ok=True)
    (net.conf_dir / f"{name}.conflist").write_text(json.dumps(conf))

    net.create("kept", ["sleep", "1000"], container_labels(name))
    assert len(links_of(bridge)) == 1
    moved = plugin.rename(net.bin_dir / "away")
    net.kill_and_delete("kept")
    with pytest.raises(errdefs.NotFound, match="task kept not found"):
        net.call(net.tasks.Get, tasks_pb2.GetRequest(container_id="kept"))
    assert f"cni plugin {plugin.name} not found" in net.daemon.logs()
    netns = net.state_dir() / "netns" / f"{net.namespace}-kept"
    assert netns.exists()  # kept for the DEL to come, which needs it
    assert LABEL_RESULT in net.labels("kept")

    moved.rename(plugin)
    net.client.close()
    assert net.daemon.stop() == 0
    net.daemon.start()
    net._connect()
    wait_detached(net, "kept")
    assert links_of(bridge) == []
    net.assert_clean()


def test_hostname_defaults_to_the_container_id(net: Net) -> None:
    script = (
        "hostname; cat /etc/hostname; grep -c named /etc/hosts; "
        "grep -c nameserver.127 /etc/resolv.conf"
    )
    io = net.create("unnamed", ["sh", "-c", script], container_labels("bridge"), hostname=False)
    assert net.wait("unnamed") == 1, io.stderr.read()  # the last grep finds no loopback server
    assert io.stdout.read() == "unnamed\nunnamed\n1\n0\n"
    net.kill_and_delete("unnamed")
    net.assert_clean()


def test_ctr_run_with_the_network_label(net: Net) -> None:
    """containerd's own ctr asks for a network with ``--label``: its default spec (a new
    network namespace, no hostname) is attached like ours."""
    rootfs = net.tmp / "rootfs"
    fill_busybox(rootfs)
    port = free_port()
    ports = json.dumps([{"hostPort": port, "containerPort": 80}])
    result = net.daemon.ctr(
        "run", "--rm", "--label", "pycontainerd.io/network=bridge",
        "--label", f"pycontainerd.io/ports={ports}", "--fifo-dir", str(net.tmp / "fifo"),
        "--rootfs", str(rootfs), "ctr-net",
        "/bin/sh", "-c", "hostname; ip -o -4 addr show eth0 | grep -o 'inet [0-9./]*'",
        namespace=net.namespace,
    )  # fmt: skip
    prefix = net.subnet.rsplit(".", 1)[0]
    hostname, address = result.stdout.splitlines()
    assert hostname == "ctr-net"
    assert address.startswith(f"inet {prefix}.")
    assert address.endswith("/24")
    net.ips.append(address.split()[1].split("/")[0])
    net.assert_clean()  # --rm deleted the task: detached


def test_client_run_and_pyctr_run_on_the_bridge(net: Net) -> None:
    image = "docker.io/library/busybox:net"
    archive = net.tmp / "busybox.tar"
    script = Path(__file__).resolve().parents[2] / "scripts" / "busybox-image"
    subprocess.run([sys.executable, str(script), str(archive), image], check=True, timeout=60)
    net.daemon.pyctr("images", "import", str(archive), namespace=net.namespace)
    prefix = net.subnet.rsplit(".", 2)[0] + "."
    # Client.run(network=, ports=): attached by the daemon, published on the host
    res = net.client.run(image, ["ip", "-o", "-4", "addr", "show", "eth0"], network="bridge")
    assert res.exit_code == 0, res.stderr
    assert f"inet {prefix}" in res.stdout.decode()
    port = free_port()
    task = net.client.run(
        image, ["sh", "-c", HTTPD], network="bridge", ports={port: 80}, name="web", detach=True
    )
    try:
        assert fetch(f"http://127.0.0.1:{port}/") == "hello-from-web\n"
    finally:
        task.kill(9)
        task.wait()
        task.delete()
    # pyctr run --net bridge -p HOST:CONTAINER
    port = free_port()
    out = net.daemon.pyctr(
        "run",
        "--rm",
        "--net",
        "bridge",
        "-p",
        f"{port}:80/tcp",
        image,
        "cli-net",
        "sh",
        "-c",
        "ip -o -4 addr show eth0 | grep -c inet; cat /etc/hostname",
        namespace=net.namespace,
    ).stdout
    assert out == "1\ncli-net\n"
    bad = net.daemon.pyctr(
        "run", "--rm", "-p", "80:80", image, "x", "true", check=False, namespace=net.namespace
    )
    assert bad.returncode != 0
    assert "--publish needs a network" in bad.stderr
    with Client(net.daemon.address, namespace=net.namespace) as c:
        assert [ctr.id for ctr in c.containers.list()] == []
        c.images.delete(image, sync=True)  # its content and snapshots go with it
