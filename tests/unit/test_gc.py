"""Mark and sweep over a real SQLite database and a real local store, in temporary directories."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.gc import Node, tricolor
from pycontainerd.leases import LABEL_GC_EXPIRE, LABEL_GC_FLAT, Resource, format_rfc3339
from pycontainerd.metadata import (
    DB,
    ContentStore,
    GarbageCollector,
    Image,
    ImageStore,
    LeaseStore,
    NamespacedContentStore,
)
from pycontainerd.metadata.gc import (
    ContentSource,
    Emit,
    ResourceType,
    Trigger,
    default_sources,
    label_refs,
)

REF = "containerd.io/gc.ref.content"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Env:
    """A database, a content store over a local store, and a collector cleaning it."""

    def __init__(self, base: Path) -> None:
        self.db = DB(base / "metadata.db")
        self.local = LocalStore(base / "content")
        self.content = ContentStore(self.db, self.local)
        self.images = ImageStore(self.db)
        self.leases = LeaseStore(self.db)
        self.gc = GarbageCollector(self.db)
        self.gc.add_content_store(self.content)

    def ns(self, namespace: str = "ns", lease: str | None = None) -> NamespacedContentStore:
        return self.content.namespaced(namespace, lease=lease)

    def put(
        self,
        data: bytes,
        labels: dict[str, str] | None = None,
        *,
        namespace: str = "ns",
        lease: str | None = None,
    ) -> str:
        dgst = _sha(data)
        with (
            contextlib.suppress(errdefs.AlreadyExists),
            self.ns(namespace, lease).writer(f"w-{dgst}") as w,
        ):
            w.write(data)
            w.commit(labels=labels)
        return dgst

    def image(self, name: str, target: str, namespace: str = "ns") -> None:
        self.images.create(namespace, Image(name, Descriptor("application/x-test", target, 1)))

    def digests(self, namespace: str = "ns") -> set[str]:
        with self.db.view() as tx:
            rows = tx.execute("SELECT digest FROM blobs WHERE namespace = ?", (namespace,))
            return {row[0] for row in rows}

    def has_file(self, dgst: str) -> bool:
        return self.local.blob_path(dgst).exists()

    def ingest_refs(self) -> set[str]:
        with self.db.view() as tx:
            return {row[0] for row in tx.execute("SELECT ref FROM ingests")}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.db.close()


# --- the mark ------------------------------------------------------------------------------


def test_tricolor_follows_chains_and_cycles() -> None:
    def n(key: str, t: int = 1) -> Node:
        return Node(t, "ns", key)

    graph = {n("a"): [n("b")], n("b"): [n("c"), n("a")], n("c"): [n("d", 0x21)], n("x"): [n("y")]}
    reachable = tricolor([n("a")], lambda node: graph.get(node, []))
    assert reachable == {n("a"), n("b"), n("c"), n("d")}  # flags stripped
    visited: set[Node] = set()
    tricolor([n("a")], lambda node: graph.get(node, []), visited=visited)
    more = tricolor([n("b"), n("x")], lambda node: graph.get(node, []), visited=visited)
    assert more == {n("x"), n("y")}


def test_tricolor_survives_a_long_chain() -> None:
    chain = 50_000
    reachable = tricolor(
        [Node(1, "ns", "0")],
        lambda node: [Node(1, "ns", str(int(node.key) + 1))] if int(node.key) < chain else [],
    )
    assert len(reachable) == chain + 1


def test_label_refs() -> None:
    out: list[Node] = []
    label_refs(
        "ns",
        {
            REF: "sha256:a",
            f"{REF}.l.0": "sha256:b",
            f"{REF}/config": "sha256:c",
            f"{REF}x": "sha256:not-a-ref",
            "containerd.io/gc.ref.snapshot.overlayfs": "key1",
            "containerd.io/gc.ref.snapshot.native/named": "key2",
            "other": "sha256:nope",
        },
        out.append,
    )
    assert set(out) == {
        Node(ResourceType.CONTENT, "ns", "sha256:a"),
        Node(ResourceType.CONTENT, "ns", "sha256:b"),
        Node(ResourceType.CONTENT, "ns", "sha256:c"),
        Node(ResourceType.SNAPSHOT, "ns", "overlayfs/key1"),
        Node(ResourceType.SNAPSHOT, "ns", "native/key2"),
    }


# --- what is kept, what goes ----------------------------------------------------------------


def test_images_keep_content_through_label_chains(env: Env) -> None:
    layer = env.put(b"layer")
    config = env.put(b"config")
    manifest = env.put(b"manifest", {f"{REF}.l.0": layer, f"{REF}.config": config})
    index = env.put(b"index", {f"{REF}.m.0": manifest})
    loose = env.put(b"loose")
    env.image("img", index)
    stats = env.gc.garbage_collect()
    assert env.digests() == {layer, config, manifest, index}
    assert not env.has_file(loose)
    assert all(env.has_file(d) for d in (layer, config, manifest, index))
    assert stats.removed == {"content": 1, "content files": 1}

    env.images.delete("ns", "img")
    env.gc.garbage_collect()
    assert env.digests() == set()
    assert os.listdir(env.local.root / "blobs" / "sha256") == []


def test_image_labels_refer_too(env: Env) -> None:
    extra = env.put(b"extra")
    target = env.put(b"target")
    env.images.create(
        "ns", Image("img", Descriptor("x", target, 6), labels={f"{REF}.extra": extra})
    )
    env.gc.garbage_collect()
    assert env.digests() == {extra, target}


def test_references_stay_within_the_namespace(env: Env) -> None:
    child = env.put(b"child", namespace="other")
    parent = env.put(b"parent", {f"{REF}.l.0": child})
    env.image("img", parent)
    env.gc.garbage_collect()
    assert env.digests("other") == set()  # ns's label names a blob of ns, not of "other"
    assert env.digests() == {parent}


def test_gc_root_keeps_a_blob_and_what_it_references(env: Env) -> None:
    child = env.put(b"child")
    root = env.put(b"root", {"containerd.io/gc.root": "2030-01-01T00:00:00Z", f"{REF}.0": child})
    decoy = env.put(b"decoy", {"note": "containerd.io/gc.root"})
    env.gc.garbage_collect()
    assert env.digests() == {root, child}
    assert not env.has_file(decoy)


def test_leases_keep_content_and_ingests(env: Env) -> None:
    env.leases.create("ns", "pull")
    child = env.put(b"child")
    blob = env.put(b"leased", {f"{REF}.l.0": child}, lease="pull")
    with env.ns(lease="pull").writer("in-progress") as w:
        w.write(b"half")
    env.gc.garbage_collect()
    assert env.digests() == {blob, child}
    assert env.ingest_refs() == {"in-progress"}
    assert env.local.status_refs()  # its data is there

    env.leases.delete("ns", "pull")
    stats = env.gc.garbage_collect()
    assert env.digests() == set()
    assert env.ingest_refs() == set()
    assert env.local.status_refs() == []
    assert not env.has_file(blob)
    assert stats.removed == {
        "content": 2,
        "ingests": 1,
        "content files": 2,
        "ingest files": 1,
    }


def test_lease_resources_added_by_hand(env: Env) -> None:
    kept = env.put(b"kept")
    env.leases.create("ns", "hold")
    env.leases.add_resource("ns", "hold", Resource(kept, "content"))
    env.leases.add_resource("ns", "hold", Resource("layer-1", "snapshots/overlayfs"))
    env.gc.garbage_collect()
    assert env.digests() == {kept}
    env.leases.delete_resource("ns", "hold", Resource(kept, "content"))
    env.gc.garbage_collect()
    assert env.digests() == set()


def test_expired_leases_are_collected_with_what_they_held(env: Env) -> None:
    past = format_rfc3339(time.time_ns() - 10**9)
    future = format_rfc3339(time.time_ns() + 3600 * 10**9)
    env.leases.create("ns", "old", {LABEL_GC_EXPIRE: past})
    env.leases.create("ns", "new", {LABEL_GC_EXPIRE: future})
    env.leases.create("ns", "odd", {LABEL_GC_EXPIRE: "not a time"})  # ignored: the lease holds
    old = env.put(b"old", lease="old")
    new = env.put(b"new", lease="new")
    odd = env.put(b"odd", lease="odd")
    stats = env.gc.garbage_collect()
    assert {lease.id for lease in env.leases.list("ns")} == {"new", "odd"}
    assert env.digests() == {new, odd}
    assert not env.has_file(old)
    assert stats.removed["leases"] == 1


def test_flat_leases_hold_only_what_they_name(env: Env) -> None:
    env.leases.create("ns", "flat", {LABEL_GC_FLAT: "1"})
    child = env.put(b"child")
    parent = env.put(b"parent", {f"{REF}.l.0": child}, lease="flat")
    env.gc.garbage_collect()
    assert env.digests() == {parent}
    # the same blob reached through an image is followed in full
    child = env.put(b"child")
    env.image("img", parent)
    env.gc.garbage_collect()
    assert env.digests() == {parent, child}


def test_ingests_expire(env: Env) -> None:
    with env.ns().writer("fresh") as w:
        w.write(b"fresh")
    with env.ns().writer("stale") as w:
        w.write(b"stale")
    with env.db.update() as tx:
        tx.execute("UPDATE ingests SET expires_at = ? WHERE ref = 'stale'", (time.time_ns() - 1,))
    env.gc.garbage_collect()
    assert env.ingest_refs() == {"fresh"}
    assert [s.ref for s in env.ns().list_statuses()] == ["fresh"]
    assert len(env.local.status_refs()) == 1


def test_shared_ingest_keeps_the_file_it_expects(env: Env) -> None:
    data = b"shared across namespaces"
    dgst = env.put(data, namespace="a")
    # b's writer finds the blob in the backend: it shares it, writing nothing
    w = env.ns("b").writer("want", desc=Descriptor("", dgst, len(data)))
    env.ns("a").delete(dgst)
    env.gc.garbage_collect()
    assert env.has_file(dgst)  # the ingest in b still expects it
    w.commit(len(data), dgst)
    assert env.digests("b") == {dgst}


def test_files_go_only_when_no_namespace_refers_to_them(env: Env) -> None:
    dgst = env.put(b"in two namespaces", namespace="a")
    env.put(b"in two namespaces", namespace="b")
    env.image("img", dgst, namespace="b")
    env.gc.garbage_collect()
    assert env.digests("a") == set()  # unreferenced in a: its record goes...
    assert env.has_file(dgst)  # ...but b still refers to the bytes
    env.images.delete("b", "img")
    env.gc.garbage_collect()
    assert not env.has_file(dgst)


def test_orphan_files_are_cleaned_on_the_first_collection(env: Env) -> None:
    # a crash between a sweep and its file cleanup leaves files no namespace records
    with env.local.writer("orphan") as w:
        w.write(b"orphan")
        w.commit()
    with env.local.writer("orphan-ingest") as w:
        w.write(b"partial")
    env.gc.garbage_collect()
    assert not env.has_file(_sha(b"orphan"))
    assert env.local.status_refs() == []
    # later collections clean the store only when something made it dirty
    with env.local.writer("orphan2") as w:
        w.write(b"orphan2")
        w.commit()
    env.gc.garbage_collect()
    assert env.has_file(_sha(b"orphan2"))


def test_deletes_mark_the_database_dirty(env: Env) -> None:
    dgst = env.put(b"x")
    env.image("img", dgst)
    env.db.take_dirty()
    env.images.delete("ns", "img")
    assert env.db.take_dirty() == (1, set())
    env.ns().delete(dgst)
    assert env.db.take_dirty() == (1, {"content"})


# --- concurrency ----------------------------------------------------------------------------


def test_the_mark_does_not_block_writes(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.put(b"x")
    wrote = threading.Event()
    original = ContentSource.scan_roots

    def scan_roots(self: ContentSource, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        t = threading.Thread(target=lambda: (env.put(b"written during the mark"), wrote.set()))
        t.start()
        assert wrote.wait(5), "a write waited for the mark"
        t.join()
        original(self, tx, now, emit)

    monkeypatch.setattr(ContentSource, "scan_roots", scan_roots)
    env.gc.garbage_collect()
    # the mark did not see it; the sweep did not take it
    assert _sha(b"written during the mark") in env.digests()


def test_references_made_after_the_mark_are_kept(env: Env) -> None:
    layer = env.put(b"layer")
    manifest = env.put(b"manifest", {f"{REF}.l.0": layer})
    relabelled = env.put(b"relabelled")
    later_child = env.put(b"later child")
    leased = env.put(b"leased later")
    recommitted = env.put(b"recommitted")
    env.leases.create("ns", "late")
    gone = env.put(b"gone")

    def meanwhile() -> None:
        env.image("img", manifest)  # a new image over two candidates
        from pycontainerd.content import Info

        env.ns().update(Info(relabelled, labels={"containerd.io/gc.root": "x"}))
        env.ns().update(Info(relabelled, labels={"containerd.io/gc.root": "x", REF: later_child}))
        env.leases.add_resource("ns", "late", Resource(leased, "content"))
        env.ns().delete(recommitted)  # deleted and committed again, under the lease
        env.put(b"recommitted", lease="late")

    env.gc.after_mark = meanwhile
    env.gc.garbage_collect()
    assert env.digests() == {layer, manifest, relabelled, later_child, leased, recommitted}
    assert all(env.has_file(d) for d in env.digests())
    assert not env.has_file(gone)


def test_a_commit_racing_the_file_sweep_keeps_its_blob(env: Env) -> None:
    data = b"deleted, then committed again"
    dgst = env.put(data, namespace="a")
    env.ns("a").delete(dgst)
    real = env.content.exclusive
    raced = []

    @contextlib.contextmanager
    def exclusive() -> Iterator[None]:
        # between the sweep's scan (no namespace records the blob) and its delete, another
        # namespace commits the same bytes: the backend has them, so only a record is added
        if not raced:
            raced.append(env.put(data, namespace="b"))
        with real():
            yield

    env.content.exclusive = exclusive  # type: ignore[method-assign]
    env.gc.garbage_collect()
    assert raced == [dgst]
    assert env.digests("b") == {dgst}
    assert env.has_file(dgst)
    with env.ns("b").reader_at(dgst) as ra:
        assert ra.read_at(0, 100) == data


def test_a_new_ingest_racing_the_file_sweep_keeps_its_data(env: Env) -> None:
    real = env.content.exclusive
    writers = []

    @contextlib.contextmanager
    def exclusive() -> Iterator[None]:
        if not writers:
            w = env.ns().writer("late-ingest")
            w.write(b"late")
            writers.append(w)
        with real():
            yield

    with env.local.writer("orphan") as w:  # gives the sweep something to do
        w.write(b"o")
    env.content.exclusive = exclusive  # type: ignore[method-assign]
    env.gc.garbage_collect()
    writers[0].commit()
    assert env.digests() == {_sha(b"late")}


def test_stress_commits_and_deletes_racing_collections(env: Env) -> None:
    blobs = [f"blob {i}".encode() for i in range(40)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(namespace: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                data = rng.choice(blobs)
                if rng.random() < 0.5:
                    dgst = env.put(data, namespace=namespace)
                    if rng.random() < 0.3:
                        with contextlib.suppress(errdefs.AlreadyExists):
                            env.image(dgst, dgst, namespace=namespace)
                else:
                    with contextlib.suppress(errdefs.NotFound):
                        env.ns(namespace).delete(_sha(data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(f"ns{i}", i)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(15):
            env.gc.garbage_collect()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    env.gc.garbage_collect()
    with env.db.view() as tx:
        recorded = {row[0] for row in tx.execute("SELECT digest FROM blobs")}
    assert recorded  # the churn left some
    for dgst in recorded:
        assert env.has_file(dgst), f"{dgst} is recorded but its file is gone"


# --- extension: a source for a table the store does not have yet --------------------------


class WidgetsSource:
    """A made-up table of widgets: each row keeps what its labels name."""

    tables: tuple[str, ...] = ("widgets",)
    types: frozenset[int] = frozenset({ResourceType.TASK})
    triggers: tuple[Trigger, ...] = (
        Trigger("widgets", str(int(ResourceType.TASK)), "NEW.namespace", "NEW.id"),
    )

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        for ns, cid in tx.execute("SELECT namespace, id FROM widgets"):
            emit(Node(ResourceType.TASK, ns, cid))

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        row = tx.execute(
            "SELECT labels FROM widgets WHERE namespace = ? AND id = ?",
            (node.namespace, node.key),
        ).fetchone()
        if row is not None:
            label_refs(node.namespace, json.loads(row[0]), emit)

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        return None

    def remove(self, tx: sqlite3.Connection, nodes: object) -> set[str]:
        return set()


def test_a_source_plugs_in_once_its_table_exists(env: Env) -> None:
    gc = GarbageCollector(env.db, sources=[*default_sources(), WidgetsSource()])
    gc.add_content_store(env.content)
    kept = env.put(b"widget image")
    gc.garbage_collect()  # no widgets table: the source takes no part
    assert env.digests() == set()
    kept = env.put(b"widget image")
    with env.db.update() as tx:
        tx.execute("CREATE TABLE widgets (namespace TEXT, id TEXT, labels TEXT)")
        tx.execute(
            "INSERT INTO widgets VALUES ('ns', 'c1', ?)", (json.dumps({f"{REF}.img": kept}),)
        )
    gc.garbage_collect()
    assert env.digests() == {kept}


def test_stats_report_the_longest_hold(env: Env) -> None:
    for i in range(600):
        env.put(f"garbage {i}".encode())
    gc = GarbageCollector(env.db, sweep_batch=100, file_batch=50)
    gc.add_content_store(env.content)
    stats = gc.garbage_collect()
    assert stats.removed == {"content": 600, "content files": 600}
    assert 0 < stats.longest_hold < stats.sweep + stats.stores
    assert stats.elapsed() == stats.mark + stats.sweep


def test_the_store_lock_starves_neither_side(env: Env) -> None:
    lock = env.content._lock
    stop = threading.Event()
    counts = {"shared": 0, "exclusive": 0}

    def loop(side: str) -> None:
        take = lock.shared if side == "shared" else lock.exclusive
        while not stop.is_set():
            with take():
                counts[side] += 1
                time.sleep(0.001)

    # two overlapping shared holders (never all out at once) and one exclusive, back to back
    threads = [
        threading.Thread(target=loop, args=(s,), daemon=True)
        for s in ("shared", "shared", "exclusive")
    ]
    for t in threads:
        t.start()
    # Starvation shows as one side never reaching its count; the bound is generous for loaded
    # machines and is not a speed requirement.
    deadline = time.monotonic() + 20
    while min(counts.values()) <= 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "the lock deadlocked"
    assert counts["exclusive"] > 20
    assert counts["shared"] > 20
