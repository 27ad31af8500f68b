"""Garbage collection of snapshots: records swept in the metadata store, then the backend
cleaned, over a real database and the native snapshotter in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.leases import LABEL_GC_FLAT, Resource
from pycontainerd.metadata import DB, GarbageCollector, Image, ImageStore, LeaseStore
from pycontainerd.metadata.snapshots import NamespacedSnapshotter, SnapshotStore
from pycontainerd.snapshots import Info, Kind
from pycontainerd.snapshots.native import NativeSnapshotter

ROOT = "containerd.io/gc.root"


class Env:
    def __init__(self, base: Path) -> None:
        self.db = DB(base / "metadata.db")
        self.backend = NativeSnapshotter(base / "native")
        self.store = SnapshotStore(self.db, {"native": self.backend})
        self.images = ImageStore(self.db)
        self.leases = LeaseStore(self.db)
        self.gc = GarbageCollector(self.db)
        self.gc.register_cleaner("snapshots", lambda stats: self.store.clean() and None)

    def sn(self, namespace: str = "ns", lease: str | None = None) -> NamespacedSnapshotter:
        return self.store.namespaced(namespace, "native", lease=lease)

    def chain(
        self, *names: str, namespace: str = "ns", top_labels: dict[str, str] | None = None
    ) -> None:
        """Commit a chain of snapshots named ``names``, bottom first."""
        sn = self.sn(namespace)
        parent = ""
        for i, name in enumerate(names):
            mounts = sn.prepare(f"extract-{name}", parent)
            (Path(mounts[0].source) / f"file-{name}").write_text(name)
            last = i == len(names) - 1
            sn.commit(name, f"extract-{name}", labels=top_labels if last else None)
            parent = name

    def keys(self, namespace: str = "ns") -> set[str]:
        out: set[str] = set()
        self.sn(namespace).walk(lambda info: out.add(info.name))
        return out

    def backend_dirs(self) -> int:
        return len(list((self.backend.root / "snapshots").iterdir()))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.store.close()
    e.db.close()


def test_unreferenced_snapshots_go_with_their_files(env: Env) -> None:
    env.chain("a", "b", "c")
    assert env.backend_dirs() == 3
    stats = env.gc.garbage_collect()
    assert env.keys() == set()
    assert env.backend_dirs() == 0
    assert stats.removed["snapshots"] == 3


def test_a_root_label_keeps_the_whole_chain(env: Env) -> None:
    env.chain("a", "b", "c", top_labels={ROOT: "2026-01-01T00:00:00Z"})
    env.chain("x")
    env.gc.garbage_collect()
    assert env.keys() == {"a", "b", "c"}
    assert env.backend_dirs() == 3


def test_an_image_keeps_its_snapshot_through_its_config_label(env: Env) -> None:
    env.chain("a", "b")
    env.images.create(
        "ns",
        Image(
            "img",
            Descriptor("application/x-test", "sha256:" + "0" * 64, 1),
            labels={"containerd.io/gc.ref.snapshot.native": "b"},
        ),
    )
    env.gc.garbage_collect()
    assert env.keys() == {"a", "b"}
    env.images.delete("ns", "img")
    env.gc.garbage_collect()
    assert env.keys() == set()


def test_a_lease_holds_what_was_made_under_it(env: Env) -> None:
    lease = env.leases.create("ns", "pull").id
    sn = env.sn(lease=lease)
    sn.prepare("extract-1", "")
    sn.commit("layer1", "extract-1")
    sn.prepare("extract-2", "layer1")
    env.gc.garbage_collect()
    assert env.keys() == {"layer1", "extract-2"}
    resources = env.leases.namespaced("ns").list_resources(lease)
    assert {(r.type, r.id) for r in resources} == {
        ("snapshots/native", "layer1"),
        ("snapshots/native", "extract-2"),
    }
    env.leases.namespaced("ns").delete(lease)
    env.gc.garbage_collect()
    assert env.keys() == set()
    assert env.backend_dirs() == 0


def test_a_snapshot_made_under_a_missing_lease_is_refused(env: Env) -> None:
    with pytest.raises(errdefs.NotFound):
        env.sn(lease="nope").prepare("k", "")
    assert env.keys() == set()
    assert env.backend_dirs() == 0


def test_a_flat_lease_holds_the_chain_but_not_label_references(env: Env) -> None:
    env.chain("a", "b")
    env.chain("other")
    ref = "containerd.io/gc.ref.snapshot.native"
    env.sn().update(Info("b", Kind.COMMITTED, labels={ref: "other"}), f"labels.{ref}")
    lease = env.leases.create("ns", "flat", labels={LABEL_GC_FLAT: "x"}).id
    env.leases.namespaced("ns").add_resource(lease, Resource("b", "snapshots/native"))
    env.gc.garbage_collect()
    assert env.keys() == {"a", "b"}


def test_namespaces_do_not_hold_each_others_snapshots(env: Env) -> None:
    env.chain("a", namespace="one", top_labels={ROOT: "x"})
    env.chain("a", namespace="two")
    env.gc.garbage_collect()
    assert env.keys("one") == {"a"}
    assert env.keys("two") == set()
    assert env.backend_dirs() == 1


def test_removal_marks_the_database_dirty_and_leaves_no_files(env: Env) -> None:
    env.chain("a", top_labels={ROOT: "x"})
    env.db.take_dirty()
    env.sn().remove("a")
    assert env.db.take_dirty()[0] == 1
    assert env.backend_dirs() == 0
