"""Cold content-only pull of a multi-layer image from the loopback registry: ``pyctr content fetch``
against our daemon beside ``ctr content fetch`` against containerd 1.6, in the same run.

The image is built here: 5 gzip layers, each a tar of random bytes and files copied from ``/usr``
(text, libraries, binaries), together at least 500 MiB compressed (5 x 2 MiB in a smoke run),
pushed with our pusher to Debian's ``docker-registry`` on loopback. Each round starts from an empty
content store (the image removed with ``--sync``, which collects its blobs) and must write every
byte again. Reported per daemon: wall time, MB/s, CPU seconds of the daemon process (utime +
stime from ``/proc``) and of the client process, and the daemon's CPU seconds per GB.

Goal (issue 3): at least as fast as containerd; daemon CPU per MB at most 1.5x containerd's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benches.conftest import RESULTS, SMOKE, Target
from pycontainerd import Client
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.platforms import host
from pycontainerd.remotes import Resolver
from tests.fixtures.daemon import PYCTR
from tests.fixtures.registry import run_registry

MIB = 1 << 20
LAYERS = 5
#: Compressed bytes per layer: 5 x 104 MiB = 520 MiB in all (5 x 2 MiB in a smoke run).
LAYER_BYTES = int(os.environ.get("PCD_PULL_LAYER_MIB", "2" if SMOKE else "104")) * MIB
ROUNDS = 1 if SMOKE else 5
#: Share of each layer's uncompressed bytes that is random (incompressible); the rest is /usr.
RANDOM_SHARE = 0.35
RANDOM_FILE = min(4 * MIB, LAYER_BYTES // 4)
USR_FILE_MAX = 16 * MIB
NAMESPACE = "bench-pull"
MTIME = 1_700_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the image ----------------------------------------------------------------------------------


class _GzipSink:
    """A write-only file for tarfile: hashes the tar (the diff ID), gzips it (level 1, as a
    fast registry push would) into ``path`` and hashes and counts the compressed bytes."""

    def __init__(self, path: Path) -> None:
        self.out = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip wrapper, mtime 0
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.blob.update(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self._emit(self.comp.compress(data))
        return len(data)

    def close(self) -> None:
        self._emit(self.comp.flush())
        self.out.close()


def _usr_files() -> list[Path]:
    """Regular files under /usr, in a stable order, skipping tiny ones."""
    files = []
    for top in ("/usr/lib", "/usr/bin", "/usr/share", "/usr/libexec", "/usr/sbin"):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath, name)
                try:
                    if p.is_file() and not p.is_symlink() and p.stat().st_size >= 4096:
                        files.append(p)
                except OSError:
                    continue
    return files


def _build_layer(index: int, directory: str, files: list[str], target: int) -> dict[str, Any]:
    """Layer ``index``: random files and ``files`` (cycled) until ``target`` compressed bytes."""
    path = Path(directory, f"layer{index}.tar.gz")
    sink = _GzipSink(path)
    random_in = usr_in = n = 0
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        while sink.size < target:
            if random_in < RANDOM_SHARE * (random_in + usr_in + 1):
                name, data = f"random/{index}-{n}.bin", os.urandom(RANDOM_FILE)
                random_in += len(data)
            else:
                src = files[(index * 7919 + n) % len(files)]
                try:
                    with open(src, "rb") as f:
                        data = f.read(USR_FILE_MAX)
                except OSError:
                    n += 1
                    continue
                name = f"usr/{n}{src}"
                usr_in += len(data)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
            n += 1
    sink.close()
    return {
        "path": str(path),
        "digest": "sha256:" + sink.blob.hexdigest(),
        "size": sink.size,
        "diff_id": "sha256:" + sink.diff.hexdigest(),
        "raw": random_in + usr_in,
    }


@dataclass
class PullImage:
    """The generated image, its blobs as files in a temporary directory."""

    layers: list[dict[str, Any]]
    config: bytes
    manifest: bytes

    @property
    def total(self) -> int:
        return sum(x["size"] for x in self.layers) + len(self.config) + len(self.manifest)

    @property
    def digests(self) -> set[str]:
        docs = [self.config, self.manifest]
        return {x["digest"] for x in self.layers} | {
            "sha256:" + hashlib.sha256(d).hexdigest() for d in docs
        }


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@pytest.fixture(scope="session")
def pull_image() -> Iterator[PullImage]:
    directory = tempfile.mkdtemp(prefix="pcd-pull-bench-")
    try:
        t0 = time.monotonic()
        files = [str(p) for p in _usr_files()]
        with ProcessPoolExecutor(max_workers=min(LAYERS, os.cpu_count() or 1)) as pool:
            layers = list(
                pool.map(
                    _build_layer,
                    range(LAYERS),
                    [directory] * LAYERS,
                    [files] * LAYERS,
                    [LAYER_BYTES] * LAYERS,
                )
            )
        plat = host()
        config = _encode(
            {
                "architecture": plat.architecture,
                "os": plat.os,
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [x["diff_id"] for x in layers]},
                "created": "2023-11-14T22:13:20Z",
            }
        )
        manifest = _encode(
            {
                "schemaVersion": 2,
                "mediaType": mt.MEDIA_TYPE_IMAGE_MANIFEST,
                "config": {
                    "mediaType": mt.MEDIA_TYPE_IMAGE_CONFIG,
                    "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": mt.MEDIA_TYPE_IMAGE_LAYER_GZIP,
                        "digest": x["digest"],
                        "size": x["size"],
                    }
                    for x in layers
                ],
            }
        )
        image = PullImage(layers, config, manifest)
        raw = sum(x["raw"] for x in layers)
        print(
            f"\npull image: {LAYERS} layers, {image.total / MIB:.0f} MiB gzip "
            f"({raw / MIB:.0f} MiB raw), built in {time.monotonic() - t0:.1f}s"
        )
        yield image
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pull_ref(pull_image: PullImage) -> Iterator[str]:
    """The image pushed (by our pusher) to a registry on loopback; its reference."""
    with run_registry() as reg, Resolver() as resolver:
        ref = f"{reg.host}/bench/pull:latest"
        pusher = resolver.pusher(ref)
        t0 = time.monotonic()
        for x in pull_image.layers:
            with open(x["path"], "rb") as f:
                desc = Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, x["digest"], x["size"])
                pusher.push(desc, f, tag=False)
        for media_type, data in (
            (mt.MEDIA_TYPE_IMAGE_CONFIG, pull_image.config),
            (mt.MEDIA_TYPE_IMAGE_MANIFEST, pull_image.manifest),
        ):
            desc = Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
            pusher.push(desc, io.BytesIO(data), tag=media_type.endswith("manifest.v1+json"))
        print(f"pushed to {reg.host} in {time.monotonic() - t0:.1f}s")
        yield ref


# --- measuring ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def written_bytes(pid: int) -> int:
    """Bytes the process has passed to write calls (``wchar`` of /proc/<pid>/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError(f"no wchar for pid {pid}")


def cli(target: Target) -> list[str]:
    """The target's own client: pyctr for ours, ctr for containerd."""
    base = PYCTR if target.name == "pycontainerd" else ["ctr"]
    return [*base, "-a", target.address, "-n", NAMESPACE]


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
    return result


def content_digests(target: Target) -> set[str]:
    return set(run([*cli(target), "content", "ls", "-q"]).stdout.split())


def make_cold(target: Target, ref: str) -> None:
    """Remove the image and collect its blobs; fail unless the namespace holds no content."""
    run([*cli(target), "images", "rm", "--sync", ref], check=False)
    left = content_digests(target)
    if left:  # not referenced by the image (an earlier failure): delete them and collect
        run([*cli(target), "content", "rm", *sorted(left)], check=False)
        run([*cli(target), "content", "prune", "references"], check=False)
    assert not content_digests(target), f"{target.name}: content store not empty before a pull"


@dataclass
class Sample:
    wall: float
    daemon_cpu: float
    client_cpu: float
    written: int


def test_pull_cold(benchmark: Any, target: Target, pull_image: PullImage, pull_ref: str) -> None:
    samples: list[Sample] = []
    cmd = [*cli(target), "content", "fetch", "--plain-http", pull_ref]

    def pull() -> None:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu, wrote = cpu_seconds(target.pid), written_bytes(target.pid)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        daemon_cpu = cpu_seconds(target.pid) - cpu
        wrote = written_bytes(target.pid) - wrote
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        samples.append(Sample(wall, daemon_cpu, client_cpu, wrote))

    try:
        benchmark.pedantic(pull, setup=lambda: make_cold(target, pull_ref), rounds=ROUNDS)
        # Every round fetched every blob, and wrote every byte of them (nothing was shared).
        assert content_digests(target) == pull_image.digests
        for s in samples:
            assert s.written >= pull_image.total, (target.name, s.written, pull_image.total)
    finally:
        make_cold(target, pull_ref)
        run([*cli(target), "namespaces", "rm", NAMESPACE], check=False)
    _record(benchmark, target.name, samples, pull_image.total)


def test_pull_cold_api(
    benchmark: Any, pycontainerd_target: Target, pull_image: PullImage, pull_ref: str
) -> None:
    """The same pull by ``Client.fetch`` in this process (no CLI start-up), our daemon only."""
    target = pycontainerd_target
    samples: list[Sample] = []

    def pull() -> None:
        cpu, wrote, mine = cpu_seconds(target.pid), written_bytes(target.pid), time.process_time()
        t0 = time.perf_counter()
        with Client(target.address, namespace=NAMESPACE) as c:
            c.fetch(pull_ref, plain_http=True)
        wall = time.perf_counter() - t0
        samples.append(
            Sample(
                wall,
                cpu_seconds(target.pid) - cpu,
                time.process_time() - mine,
                written_bytes(target.pid) - wrote,
            )
        )

    try:
        benchmark.pedantic(pull, setup=lambda: make_cold(target, pull_ref), rounds=ROUNDS)
        assert content_digests(target) == pull_image.digests
        for s in samples:
            assert s.written >= pull_image.total, (s.written, pull_image.total)
    finally:
        make_cold(target, pull_ref)
        run([*cli(target), "namespaces", "rm", NAMESPACE], check=False)
    res = RESULTS.setdefault(target.name, {})
    res["pull_api_wall_s"] = statistics.median(s.wall for s in samples)
    res["pull_api_mb_s"] = pull_image.total / res["pull_api_wall_s"] / 1e6


def _record(benchmark: Any, name: str, samples: list[Sample], total: int) -> None:
    """Medians over the rounds into RESULTS and the benchmark's extra info."""
    wall = statistics.median(s.wall for s in samples)
    daemon_cpu = statistics.median(s.daemon_cpu for s in samples)
    res = RESULTS.setdefault(name, {})
    res["pull_wall_s"] = wall
    res["pull_mb_s"] = total / wall / 1e6
    res["pull_daemon_cpu_s"] = daemon_cpu
    res["pull_client_cpu_s"] = statistics.median(s.client_cpu for s in samples)
    res["pull_daemon_cpu_per_gb"] = daemon_cpu / (total / 1e9)
    benchmark.extra_info.update({k: v for k, v in res.items() if k.startswith("pull_")})
    benchmark.extra_info["rounds"] = [s.__dict__ for s in samples]
