"""Benchmark fixtures: our daemon and containerd 1.6's, side by side on private sockets.

Set PCD_BENCH_SMOKE=1 for a quick run (CI): a few rounds instead of the full count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benches.unpack_report import unpack_summary
from tests.fixtures.containerd import run_containerd
from tests.fixtures.daemon import Daemon, make_daemon

SMOKE = os.environ.get("PCD_BENCH_SMOKE") == "1"
#: Results gathered by the benchmarks, printed side by side at the end: {daemon: {metric: value}}.
RESULTS: dict[str, dict[str, Any]] = {}


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Target:
    """A daemon under measurement."""

    name: str
    address: str
    pid: int


@pytest.fixture(scope="session")
def pycontainerd_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    d: Daemon = make_daemon(tmp_path_factory.mktemp("pcd-bench"))
    try:
        d.start()
        assert d.proc is not None
        yield Target("pycontainerd", d.address, d.proc.pid)
    finally:
        d.stop()
        d.cleanup()


@pytest.fixture(scope="session")
def containerd_target() -> Iterator[Target]:
    with run_containerd() as ctd:
        yield Target("containerd", ctd.address, ctd.pid)


@pytest.fixture(params=["pycontainerd", "containerd"])
def target(request: pytest.FixtureRequest) -> Target:
    t: Target = request.getfixturevalue(f"{request.param}_target")
    return t


def settle() -> None:
    time.sleep(0.5 if SMOKE else 2.0)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _gc_summary(tr: Any) -> None:
    """benches/test_gc.py: the longest commit and read while collecting, beside before."""
    rows = [(name, res) for name, res in RESULTS.items() if "gc_s" in res]
    if not rows:
        return
    tr.section("garbage collection: longest stall of writers and readers")
    for name, res in rows:
        tr.write_line(
            f"{name}: {res['gc_blobs']:,} blobs collected in {res['gc_s']:.2f}s"
            + (f", longest lock hold {res['gc_hold_ms']:.1f}ms" if "gc_hold_ms" in res else "")
        )
        for op in ("commit", "read"):
            if f"gc_{op}_stall_ms" not in res:
                continue
            tr.write_line(
                f"  {op:6}  during: max {res[f'gc_{op}_stall_ms']:7.1f}ms "
                f"p99 {res[f'gc_{op}_p99_ms']:6.1f}ms   "
                f"before: max {res[f'gc_{op}_base_max_ms']:7.1f}ms "
                f"p99 {res[f'gc_{op}_base_p99_ms']:6.1f}ms"
            )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    _gc_summary(tr)
    unpack_summary(tr, RESULTS, SMOKE)
    if not any(n in RESULTS for n in ("pycontainerd", "containerd", "curl")):
        return
    tr.section("pycontainerd vs containerd 1.6, same machine, same run")
    if SMOKE:
        tr.write_line("smoke run (PCD_BENCH_SMOKE=1): few rounds, figures are not meaningful")
    metrics = [
        ("idle_rss_mib", "idle RSS (MiB)", "{:.1f}"),
        ("version_py_p50_us", "Version p50, Python client (us)", "{:.0f}"),
        ("version_py_p99_us", "Version p99, Python client (us)", "{:.0f}"),
        ("version_ctr_p50_ms", "Version p50, ctr process (ms)", "{:.1f}"),
        ("version_ctr_p99_ms", "Version p99, ctr process (ms)", "{:.1f}"),
        ("fetch_mb_s", "blob fetch from loopback registry (MB/s)", "{:.0f}"),
        ("pull_wall_s", "cold content pull, wall (s)", "{:.2f}"),
        ("pull_mb_s", "cold content pull (MB/s)", "{:.0f}"),
        ("pull_daemon_cpu_s", "cold content pull, daemon CPU (s)", "{:.2f}"),
        ("pull_daemon_cpu_per_gb", "cold content pull, daemon CPU (s/GB)", "{:.2f}"),
        ("pull_client_cpu_s", "cold content pull, client CPU (s)", "{:.2f}"),
        ("pull_api_wall_s", "cold pull by Client.fetch, wall (s)", "{:.2f}"),
        ("pull_api_mb_s", "cold pull by Client.fetch (MB/s)", "{:.0f}"),
        ("net_host_run_p50_ms", "ctr run --rm, host network, p50 (ms)", "{:.1f}"),
        ("net_bridge_run_p50_ms", "ctr run --rm, CNI bridge, p50 (ms)", "{:.1f}"),
        ("net_bridge_added_ms", "added by CNI bridge, p50 (ms)", "{:.1f}"),
        ("client_run_p50_ms", "Client.run(true).wait() p50 (ms)", "{:.1f}"),
        ("client_run_p99_ms", "Client.run(true).wait() p99 (ms)", "{:.1f}"),
        ("import_connect_ms", "import, Client, version: in it (ms)", "{:.0f}"),
        ("import_connect_wall_ms", "import, Client, version: process (ms)", "{:.0f}"),
        ("cli_help_ms", "pyctr --help | ctr --help (ms)", "{:.0f}"),
    ]
    names = [n for n in ("pycontainerd", "containerd", "curl") if n in RESULTS]
    tr.write_line(f"{'metric':36}" + "".join(f"{n:>16}" for n in names) + f"{'ratio':>10}")
    for key, label, fmt in metrics:
        values = [RESULTS[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        cells = "".join(f"{(fmt.format(v) if v is not None else '-'):>16}" for v in values)
        ratio = ""
        if len(values) >= 2 and values[0] and values[1]:
            ratio = f"{values[0] / values[1]:.2f}x"  # type: ignore[operator]
        tr.write_line(f"{label:36}{cells}{ratio:>10}")
    ours, theirs = RESULTS.get("pycontainerd", {}), RESULTS.get("containerd", {})
    if "pull_mb_s" in ours and "pull_mb_s" in theirs and not SMOKE:
        speed = ours["pull_mb_s"] / theirs["pull_mb_s"]
        cpu = ours["pull_daemon_cpu_per_gb"] / theirs["pull_daemon_cpu_per_gb"]
        met = "met" if speed >= 1.0 and cpu <= 1.5 else "NOT met"
        tr.write_line(
            f"pull goal (issue 3: speed >= 1x containerd's, daemon CPU/MB <= 1.5x): {met} "
            f"(speed {speed:.2f}x, CPU/MB {cpu:.2f}x)"
        )
    from benches.test_client import client_goals

    for line in client_goals(RESULTS):
        tr.write_line(line)
