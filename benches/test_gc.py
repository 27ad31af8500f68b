"""How long garbage collection stalls the writers and readers around it.

10,000 unreferenced blobs (1,000 in a smoke run) are collected while a thread commits small
blobs one after another and another reads one: the figure that matters is the longest single
commit (and read) that overlapped the collection, beside the longest one before it began.

Two set-ups: in process (the metadata store, the local store and the collector, as the daemon
holds them), and end to end (a daemon collecting on ``leases rm --sync`` while a client commits
through the Content service). The blobs are put in place directly, records and files, before
the measurement; they are held by a lease whose deletion makes them garbage.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benches.conftest import RESULTS, SMOKE, percentile
from pycontainerd import Client
from pycontainerd.content.local import LocalStore
from pycontainerd.metadata import DB, ContentStore, GarbageCollector, GCStats, LeaseStore
from tests.fixtures.daemon import Daemon, make_daemon

BLOBS = 1_000 if SMOKE else 10_000
ROUNDS = 1 if SMOKE else 3
#: How long the writers run before the collection starts: their latency without it.
WARMUP = 0.3 if SMOKE else 1.0


def populate(root: Path, n: int, *, namespace: str = "default", lease: str = "garbage") -> None:
    """``n`` small blobs in ``namespace``, recorded and on disk, held by ``lease``."""
    db = DB(root / "metadata.db")
    local = LocalStore(root / "content")
    LeaseStore(db).create(namespace, lease)
    now = time.time_ns()
    token = os.urandom(8).hex()
    rows = []
    for i in range(n):
        data = f"garbage {token} {i}".encode()
        dgst = "sha256:" + hashlib.sha256(data).hexdigest()
        path = local.blob_path(dgst)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        rows.append((namespace, dgst, len(data), now))
    with db.update() as tx:
        tx.executemany(
            "INSERT INTO blobs (namespace, digest, size, labels, created_at, updated_at) "
            "VALUES (?, ?, ?, '{}', ?, ?)",
            [(ns, d, size, t, t) for ns, d, size, t in rows],
        )
        tx.executemany(
            "INSERT INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, 'content', ?)",
            [(ns, lease, d) for ns, d, _, _ in rows],
        )
    db.close()


@dataclass
class Load:
    """Threads calling ``op`` back to back, each call's start and duration recorded."""

    ops: dict[str, Callable[[int], None]]
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name, op in self.ops.items():
            samples = self.samples.setdefault(name, [])
            t = threading.Thread(target=self._run, args=(op, samples), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, op: Callable[[int], None], samples: list[tuple[float, float]]) -> None:
        i = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                op(i)
                samples.append((t0, time.perf_counter() - t0))
                i += 1
        except BaseException as exc:
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        assert not self.errors, self.errors

    def during(self, name: str, window: tuple[float, float]) -> list[float]:
        """Durations of the calls that overlapped ``window``."""
        start, end = window
        return [d for t0, d in self.samples[name] if t0 < end and t0 + d > start]

    def before(self, name: str, start: float) -> list[float]:
        return [d for t0, d in self.samples[name] if t0 + d <= start]


@dataclass
class Figures:
    gc: list[float] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    stall: dict[str, list[float]] = field(default_factory=dict)
    base: dict[str, list[float]] = field(default_factory=dict)

    def add(self, load: Load, window: tuple[float, float]) -> None:
        for name in load.ops:
            self.stall.setdefault(name, []).extend(load.during(name, window))
            self.base.setdefault(name, []).extend(load.before(name, window[0]))

    def report(self, target: str, benchmark: Any) -> None:
        res = RESULTS.setdefault(target, {})
        res["gc_blobs"] = BLOBS
        res["gc_s"] = max(self.gc)
        if self.holds:
            res["gc_hold_ms"] = max(self.holds) * 1e3
        for name in self.stall:
            res[f"gc_{name}_stall_ms"] = max(self.stall[name]) * 1e3
            res[f"gc_{name}_p99_ms"] = percentile(self.stall[name], 99) * 1e3
            res[f"gc_{name}_base_max_ms"] = max(self.base[name]) * 1e3
            res[f"gc_{name}_base_p99_ms"] = percentile(self.base[name], 99) * 1e3
        benchmark.extra_info.update(res)


def _commit(store: Any, tag: str) -> Callable[[int], None]:
    def op(i: int) -> None:
        data = f"new {tag} {i}".encode()
        with store.writer(f"new-{tag}-{i}") as w:
            w.write(data)
            w.commit()

    return op


def _read(store: Any, dgst: str) -> Callable[[int], None]:
    def op(i: int) -> None:
        store.info(dgst)
        with store.reader_at(dgst) as ra:
            ra.read_at(0, 64)

    return op


def test_gc_stall_in_process(benchmark: Any, tmp_path: Path) -> None:
    figures = Figures()
    rounds = iter(range(ROUNDS))
    state: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        root = tmp_path / f"round-{next(rounds)}"
        populate(root, BLOBS)
        db = DB(root / "metadata.db")
        content = ContentStore(db, LocalStore(root / "content"))
        collector = GarbageCollector(db)
        collector.add_content_store(content)
        leases = LeaseStore(db)
        leases.create("default", "writer")
        writer = content.namespaced("default", lease="writer")
        _commit(writer, "warm")(0)
        kept = "sha256:" + hashlib.sha256(b"new warm 0").hexdigest()
        collector.garbage_collect()  # the first collection also cleans the store: not measured
        leases.delete("default", "garbage")  # now 10,000 blobs are garbage
        load = Load({"commit": _commit(writer, "load"), "read": _read(writer, kept)})
        load.start()
        time.sleep(WARMUP)
        state.update(db=db, load=load)
        return (collector,), {}

    def collect(collector: GarbageCollector) -> None:
        t0 = time.perf_counter()
        stats: GCStats = collector.garbage_collect()
        t1 = time.perf_counter()
        time.sleep(0.1)
        load: Load = state["load"]
        load.stop()
        figures.gc.append(t1 - t0)
        figures.holds.append(stats.longest_hold)
        figures.add(load, (t0, t1))
        assert stats.removed.get("content") == BLOBS
        assert stats.removed.get("content files") == BLOBS
        state["db"].close()

    benchmark.pedantic(collect, setup=setup, rounds=ROUNDS, iterations=1)
    figures.report("pycontainerd (in process)", benchmark)


@pytest.fixture
def daemon_with_garbage(tmp_path: Path) -> Iterator[Daemon]:
    d = make_daemon(tmp_path)
    populate(d.root, BLOBS)
    try:
        d.start()
        yield d
        assert d.stop() == 0
    finally:
        d.stop()
        d.cleanup()


def test_gc_stall_daemon(benchmark: Any, daemon_with_garbage: Daemon) -> None:
    d = daemon_with_garbage
    figures = Figures()
    with Client(d.address) as c, Client(d.address) as reader:
        lease = c.leases.create("writer")
        _commit(lease.content, "warm")(0)
        kept = "sha256:" + hashlib.sha256(b"new warm 0").hexdigest()
        c.leases.create().delete(sync=True)  # the startup collection, behind us
        load = Load({"commit": _commit(lease.content, "load"), "read": _read(reader.content, kept)})
        load.start()
        time.sleep(WARMUP)

        def collect() -> None:
            t0 = time.perf_counter()
            c.leases.delete("garbage", sync=True)
            t1 = time.perf_counter()
            time.sleep(0.1)
            load.stop()
            figures.gc.append(t1 - t0)
            figures.add(load, (t0, t1))

        benchmark.pedantic(collect, rounds=1, iterations=1)
        assert len(c.content.list_statuses()) == 0
        infos: list[object] = []
        c.content.walk(infos.append)
        assert len(infos) == len(load.samples["commit"]) + 1  # only the writer's blobs are left
    figures.report("pycontainerd (daemon)", benchmark)
