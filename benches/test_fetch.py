"""Fetch throughput of a large blob from the loopback registry, beside curl on the same blob: the
pull path must not be limited by Python. The size is 500 MiB (16 MiB in a smoke run) unless
``PCD_FETCH_MIB`` says otherwise."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from typing import Any

from benches.conftest import RESULTS, SMOKE
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.remotes import Resolver
from tests.fixtures.registry import run_registry

MIB = 1 << 20
SIZE = int(os.environ.get("PCD_FETCH_MIB", "16" if SMOKE else "500")) * MIB
CHUNK = 4 * MIB


class Pattern:
    """``size`` bytes of a repeated random MiB, generated as they are read."""

    def __init__(self, size: int) -> None:
        self.block = os.urandom(MIB)
        self.size = size
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        off = self.pos % MIB
        n = min(n if n > 0 else MIB, self.size - self.pos, MIB - off)
        self.pos += n
        return self.block[off : off + n]

    def digest(self) -> str:
        h = hashlib.sha256()
        for _ in range(self.size // MIB):
            h.update(self.block)
        h.update(self.block[: self.size % MIB])
        return "sha256:" + h.hexdigest()


def test_fetch_throughput(benchmark: Any) -> None:
    pattern = Pattern(SIZE)
    desc = Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER, pattern.digest(), SIZE)
    with run_registry() as reg, Resolver() as resolver:
        ref = f"{reg.host}/bench/big:latest"
        assert resolver.pusher(ref).push(desc, pattern) == "uploaded"
        fetcher = resolver.fetcher(ref)

        def fetch() -> None:
            with fetcher.fetch(desc) as stream, open(os.devnull, "wb") as out:
                while data := stream.read(CHUNK):
                    out.write(data)
                assert stream.offset == SIZE

        benchmark.pedantic(fetch, rounds=3, iterations=1)
        ours = SIZE / benchmark.stats.stats.min / 1e6
        url = f"http://{reg.host}/v2/bench/big/blobs/{desc.digest}"
        curl = []
        for _ in range(3):
            start = time.monotonic()
            subprocess.run(["curl", "-sSfL", "-o", os.devnull, url], check=True)
            curl.append(time.monotonic() - start)
    RESULTS.setdefault("pycontainerd", {})["fetch_mb_s"] = ours
    RESULTS.setdefault("curl", {})["fetch_mb_s"] = SIZE / min(curl) / 1e6
