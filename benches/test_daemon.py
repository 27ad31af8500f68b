"""Idle memory and Version latency of our daemon and containerd 1.6's, in the same run.

Goals (issue 2): idle RSS below containerd's; Version p50 no worse than 2x containerd's.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from benches.conftest import RESULTS, SMOKE, Target, percentile, rss_kib, settle
from pycontainerd import Client

CALLS = 20 if SMOKE else 1000
CTR_CALLS = 5 if SMOKE else 1000


def test_idle_rss(target: Target) -> None:
    # A few calls first, so lazily loaded code is counted, then let the daemon go idle.
    with Client(target.address) as c:
        for _ in range(10):
            c.version()
        c.namespaces.list()
    settle()
    RESULTS.setdefault(target.name, {})["idle_rss_mib"] = rss_kib(target.pid) / 1024


def test_version_python_client(benchmark: Any, target: Target) -> None:
    with Client(target.address) as c:
        for _ in range(50):  # warm up the connection
            c.version()
        samples: list[float] = []

        def call() -> None:
            t0 = time.perf_counter_ns()
            c.version()
            samples.append((time.perf_counter_ns() - t0) / 1000)

        benchmark.pedantic(call, rounds=CALLS, iterations=1)
    res = RESULTS.setdefault(target.name, {})
    res["version_py_p50_us"] = percentile(samples, 50)
    res["version_py_p99_us"] = percentile(samples, 99)
    benchmark.extra_info.update(
        {"p50_us": res["version_py_p50_us"], "p99_us": res["version_py_p99_us"]}
    )


def test_version_ctr(benchmark: Any, target: Target) -> None:
    samples: list[float] = []

    def call() -> None:
        t0 = time.perf_counter_ns()
        subprocess.run(["ctr", "-a", target.address, "version"], check=True, capture_output=True)
        samples.append((time.perf_counter_ns() - t0) / 1e6)

    benchmark.pedantic(call, rounds=CTR_CALLS, iterations=1)
    res = RESULTS.setdefault(target.name, {})
    res["version_ctr_p50_ms"] = percentile(samples, 50)
    res["version_ctr_p99_ms"] = percentile(samples, 99)
    benchmark.extra_info.update(
        {"p50_ms": res["version_ctr_p50_ms"], "p99_ms": res["version_ctr_p99_ms"]}
    )
