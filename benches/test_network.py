"""Added start latency of bridge networking over host networking, ours and containerd 1.6's.

Each round is one ``ctr run --rm --rootfs <busybox dir> ID true`` process, end to end, on a
daemon of its own started here:

- pycontainerd: ``--net-host`` against ``--label pycontainerd.io/network=bridge`` (the daemon
  attaches the task to its default bridge network: netns, loopback, bridge, host-local, portmap,
  firewall);
- containerd 1.6: ``--net-host`` against ``ctr run --cni``, where ctr itself runs CNI with the
  same plugins (containerd has no networking of its own outside CRI). ctr reads the first
  conflist of ``/etc/cni/net.d``: one is written there for the run (``00-pcd-bench-*``) and
  removed after, with its bridge.

The figures: p50 of each and the difference (the added latency of bridge networking).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from benches.conftest import RESULTS, SMOKE, percentile
from tests.fixtures.cni import delete_link, remove_cni_rules, remove_ipam
from tests.fixtures.containerd import run_containerd
from tests.fixtures.containers import fill_busybox
from tests.fixtures.daemon import make_daemon

ROUNDS = 3 if SMOKE else 30
CNI_CONF_DIR = Path("/etc/cni/net.d")


def _time_runs(address: str, rootfs: Path, fifo: Path, flags: list[str], tag: str) -> list[float]:
    samples = []
    for i in range(ROUNDS + 1):
        argv = [
            "ctr", "-a", address, "-n", "bench-net", "run", "--rm", *flags,
            "--fifo-dir", str(fifo), "--rootfs", str(rootfs), f"{tag}-{i}", "/bin/true",
        ]  # fmt: skip
        t0 = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        elapsed = (time.perf_counter() - t0) * 1000
        assert result.returncode == 0, result.stderr
        if i:  # the first run warms caches
            samples.append(elapsed)
    return samples


def _record(name: str, host: list[float], bridge: list[float]) -> None:
    res = RESULTS.setdefault(name, {})
    res["net_host_run_p50_ms"] = percentile(host, 50)
    res["net_bridge_run_p50_ms"] = percentile(bridge, 50)
    res["net_bridge_added_ms"] = res["net_bridge_run_p50_ms"] - res["net_host_run_p50_ms"]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    fill_busybox(root)
    (tmp_path / "fifo").mkdir()
    return root


def _cleanup_namespace(address: str) -> None:
    subprocess.run(["ctr", "-a", address, "namespaces", "rm", "bench-net"], capture_output=True)
    for controller in Path("/sys/fs/cgroup").iterdir():
        cg = controller / "bench-net"
        if cg.is_dir():
            with contextlib.suppress(OSError):
                cg.rmdir()


def test_bridge_start_latency_pycontainerd(benchmark: Any, rootfs: Path, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    bridge = f"pcdb{tag}"
    d = make_daemon(tmp_path / "pcd")
    d.config.write_text(
        "version = 2\n"
        '[plugins."io.containerd.internal.v1.network"]\n'
        f'  conf_dir = "{tmp_path / "net.d"}"\n'
        f'  default_subnet = "10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24"\n'
        f'  default_bridge = "{bridge}"\n'
    )
    try:
        d.start()
        fifo = tmp_path / "fifo"
        host = _time_runs(d.address, rootfs, fifo, ["--net-host"], "host")
        labels = ["--label", "pycontainerd.io/network=bridge"]
        bridged = benchmark.pedantic(
            lambda: _time_runs(d.address, rootfs, fifo, labels, "bridge"), rounds=1, iterations=1
        )
        _record("pycontainerd", host, bridged)
        benchmark.extra_info.update(RESULTS["pycontainerd"])
        _cleanup_namespace(d.address)
    finally:
        d.stop()
        d.cleanup()
        delete_link(bridge)
        remove_ipam("bridge")


def test_bridge_start_latency_containerd(benchmark: Any, rootfs: Path, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    bridge = f"ctdb{tag}"
    network = f"pcd-bench-{tag}"
    made_dir = not CNI_CONF_DIR.exists()
    CNI_CONF_DIR.mkdir(parents=True, exist_ok=True)
    conf = CNI_CONF_DIR / f"00-pcd-bench-{tag}.conflist"
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24"
    conf.write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": network,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]]},
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
                    {"type": "firewall"},
                ],
            }
        )
    )
    try:
        with run_containerd(tmp_path) as ctd:
            fifo = tmp_path / "fifo"
            host = _time_runs(ctd.address, rootfs, fifo, ["--net-host"], "host")
            bridged = benchmark.pedantic(
                lambda: _time_runs(ctd.address, rootfs, fifo, ["--cni"], "cni"),
                rounds=1,
                iterations=1,
            )
            _record("containerd", host, bridged)
            benchmark.extra_info.update(RESULTS["containerd"])
            _cleanup_namespace(ctd.address)
    finally:
        conf.unlink()
        if made_dir:
            with contextlib.suppress(OSError):
                CNI_CONF_DIR.rmdir()
        remove_cni_rules(network)
        delete_link(bridge)
        remove_ipam(network)
