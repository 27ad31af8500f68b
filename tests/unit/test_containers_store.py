"""Container records in the metadata database: validation, updates, filters, holdings, GC."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.containers import SPEC_TYPE_URL, AnyValue, Container, RuntimeInfo
from pycontainerd.content.local import LocalStore
from pycontainerd.gc import Node
from pycontainerd.metadata import (
    DB,
    ContainerStore,
    ContentStore,
    GarbageCollector,
    NamespaceStore,
)
from pycontainerd.metadata.gc import ContainerSource, ResourceType

SPEC = AnyValue(SPEC_TYPE_URL, b'{"ociVersion":"1.0.2-dev"}')
RUNC = RuntimeInfo("io.containerd.runc.v2")
# bytes that are not valid UTF-8 nor JSON: kept as they are
OPTIONS = AnyValue("containerd.runc.v1.Options", b"\x00\xff\x80binary")
REF = "containerd.io/gc.ref.content"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    d = DB(tmp_path / "metadata.db")
    yield d
    d.close()


@pytest.fixture
def store(db: DB) -> ContainerStore:
    return ContainerStore(db)


def _container(cid: str = "c1", **kw: object) -> Container:
    fields: dict[str, object] = {"runtime": RUNC, "spec": SPEC}
    fields.update(kw)
    return Container(cid, **fields)  # type: ignore[arg-type]


def test_create_get_round_trips_every_field_byte_for_byte(store: ContainerStore) -> None:
    c = Container(
        "web-1",
        RuntimeInfo("io.containerd.runc.v2", OPTIONS),
        spec=SPEC,
        labels={"a": "1", "b": "two"},
        image="docker.io/library/alpine:latest",
        snapshotter="overlayfs",
        snapshot_key="web-1",
        extensions={"ext": AnyValue("x/y", b"\x01\x02"), "empty": AnyValue("", b"")},
    )
    created = store.create("ns", c)
    assert created.created_at > 0
    assert created.created_at == created.updated_at
    got = store.get("ns", "web-1")
    assert got == created
    assert got.runtime.options == OPTIONS
    assert got.extensions["ext"].value == b"\x01\x02"
    assert replace(got, created_at=0, updated_at=0) == c


def test_namespaces_are_separate(store: ContainerStore) -> None:
    store.create("a", _container("same", image="x"))
    store.create("b", _container("same", image="y"))
    assert store.get("a", "same").image == "x"
    assert store.get("b", "same").image == "y"
    with pytest.raises(errdefs.NotFound, match='container "same" in namespace "c": not found'):
        store.get("c", "same")


def test_create_twice_already_exists(store: ContainerStore) -> None:
    store.create("ns", _container())
    with pytest.raises(errdefs.AlreadyExists, match='container "c1": already exists'):
        store.create("ns", _container())


@pytest.mark.parametrize(
    ("container", "message"),
    [
        (_container(""), "container.ID: identifier must not be empty"),
        (_container("../x"), r"container.ID: identifier \"../x\" must match"),
        (_container("a/b"), "must match"),
        (_container("x" * 77), "greater than maximum length"),
        (_container(runtime=RuntimeInfo("")), "container.Runtime.Name must be set"),
        (_container(spec=None), "container.Spec must be set"),
        (
            _container(snapshot_key="k"),
            "container.Snapshotter must be set if container.SnapshotKey is set",
        ),
        (
            _container(extensions={"": AnyValue("t", b"")}),
            "container.Extension keys must not be zero-length",
        ),
        (_container(labels={"k": "v" * 5000}), "containers.Labels: label key and value greater"),
    ],
)
def test_create_validates(store: ContainerStore, container: Container, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="create container failed validation: "):
        store.create("ns", container)
    with pytest.raises(errdefs.InvalidArgument, match=message):
        store.create("ns", container)
    assert store.list("ns") == []


def test_a_snapshotter_without_key_is_accepted(store: ContainerStore) -> None:
    assert store.create("ns", _container(snapshotter="overlayfs")).snapshotter == "overlayfs"


def test_empty_labels_do_not_persist(store: ContainerStore) -> None:
    assert store.create("ns", _container(labels={"a": "", "b": "1"})).labels == {"b": "1"}
    assert store.get("ns", "c1").labels == {"b": "1"}


def test_update_without_paths_replaces_mutable_fields(store: ContainerStore) -> None:
    first = store.create(
        "ns",
        _container(labels={"a": "1"}, snapshotter="overlayfs", snapshot_key="k1", image="i1"),
    )
    new = replace(
        first,
        labels={"b": "2"},
        image="i2",
        snapshot_key="k2",
        spec=AnyValue(SPEC_TYPE_URL, b"{}"),
        extensions={"e": AnyValue("t", b"v")},
        runtime=RuntimeInfo(RUNC.name, OPTIONS),  # options are not updated
    )
    updated = store.update("ns", new)
    assert updated.labels == {"b": "2"}
    assert updated.image == "i2"
    assert updated.snapshot_key == "k2"
    assert updated.spec == AnyValue(SPEC_TYPE_URL, b"{}")
    assert updated.extensions == {"e": AnyValue("t", b"v")}
    assert updated.runtime.options is None
    assert updated.created_at == first.created_at
    assert updated.updated_at >= first.updated_at
    assert store.get("ns", "c1") == updated


def test_update_without_paths_refuses_immutable_changes(store: ContainerStore) -> None:
    first = store.create("ns", _container(snapshotter="overlayfs"))
    with pytest.raises(errdefs.InvalidArgument, match="container.Snapshotter field is immutable"):
        store.update("ns", replace(first, snapshotter="native"))
    with pytest.raises(errdefs.InvalidArgument, match="container.Runtime.Name field is immutable"):
        store.update("ns", replace(first, runtime=RuntimeInfo("io.containerd.runsc.v1")))
    assert store.get("ns", "c1") == first


def test_update_with_paths(store: ContainerStore) -> None:
    first = store.create(
        "ns",
        _container(
            labels={"a": "1", "b": "2", "dotted.key": "x"},
            image="i1",
            extensions={"e1": AnyValue("t", b"1"), "e2": AnyValue("t", b"2")},
        ),
    )
    new = _container(
        labels={"a": "10", "c": "3"},
        image="i2",
        extensions={"e1": AnyValue("t", b"100")},
        snapshotter="ignored",
    )
    updated = store.update(
        "ns", new, "labels.a", "labels.b", "labels.c", "labels.dotted.key", "extensions.e1",
        "extensions.e2",
    )  # fmt: skip
    assert updated.labels == {"a": "10", "c": "3"}
    assert updated.extensions == {"e1": AnyValue("t", b"100")}
    assert updated.image == "i1"  # not named
    assert updated.snapshotter == ""  # immutable; paths ignore it
    assert store.update("ns", new, "image").image == "i2"
    assert store.update("ns", new, "labels").labels == {"a": "10", "c": "3"}
    assert store.update("ns", _container(), "extensions").extensions == {}
    assert store.get("ns", "c1").created_at == first.created_at


def test_update_refuses_unknown_paths_and_invalid_results(store: ContainerStore) -> None:
    store.create("ns", _container())
    with pytest.raises(errdefs.InvalidArgument, match='cannot update "runtime" field on "c1"'):
        store.update("ns", _container(), "runtime")
    with pytest.raises(errdefs.InvalidArgument, match="update failed validation: .*Spec"):
        store.update("ns", _container(spec=None), "spec")
    with pytest.raises(errdefs.InvalidArgument, match="Snapshotter must be set"):
        store.update("ns", _container(snapshot_key="k"), "snapshotkey")
    with pytest.raises(errdefs.InvalidArgument, match="must specify a container id"):
        store.update("ns", _container(""))
    with pytest.raises(errdefs.NotFound, match='container "nope": not found'):
        store.update("ns", _container("nope"))
    assert store.get("ns", "c1").spec == SPEC


def test_delete(store: ContainerStore, db: DB) -> None:
    store.create("ns", _container())
    before = db.dirty
    store.delete("ns", "c1")
    assert db.dirty == before + 1
    with pytest.raises(errdefs.NotFound, match='container "c1": not found'):
        store.delete("ns", "c1")
    with pytest.raises(errdefs.NotFound):
        store.get("ns", "c1")


def test_filters(store: ContainerStore) -> None:
    store.create("ns", _container("a", labels={"app": "web", "tier": "1"}, image="alpine"))
    store.create(
        "ns", _container("b", labels={"app": "db"}, runtime=RuntimeInfo("io.containerd.other"))
    )
    store.create("ns", _container("c"))

    def ids(*fs: str) -> list[str]:
        return [c.id for c in store.list("ns", fs)]

    assert ids() == ["a", "b", "c"]
    assert ids("id==b") == ["b"]
    assert ids("id~=^[ab]$") == ["a", "b"]
    assert ids("runtime.name==io.containerd.runc.v2") == ["a", "c"]
    assert ids("runtime") == []
    assert ids("image") == ["a"]
    assert ids("image==alpine") == ["a"]
    assert ids("labels.app") == ["a", "b"]
    assert ids("labels.app==web,labels.tier==1") == ["a"]
    assert ids("labels.app==db", "id==c") == ["b", "c"]  # alternatives
    assert ids('labels."app"!=web') == ["b", "c"]
    assert ids("unknown==x") == []
    with pytest.raises(errdefs.InvalidArgument):
        store.list("ns", ["id=="])


def test_a_namespace_with_containers_cannot_be_deleted(db: DB, store: ContainerStore) -> None:
    namespaces = NamespaceStore(db)
    store.create("busy", _container())
    with pytest.raises(errdefs.FailedPrecondition, match="still has containers"):
        namespaces.delete("busy")
    store.delete("busy", "c1")
    namespaces.delete("busy")


def _put(content: ContentStore, data: bytes) -> str:
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    with contextlib.suppress(errdefs.AlreadyExists), content.namespaced("ns").writer("w") as w:
        w.write(data)
        w.commit()
    return dgst


def _digests(db: DB) -> set[str]:
    with db.view() as tx:
        return {row[0] for row in tx.execute("SELECT digest FROM blobs WHERE namespace = 'ns'")}


def test_containers_are_gc_roots(tmp_path: Path, db: DB, store: ContainerStore) -> None:
    content = ContentStore(db, LocalStore(tmp_path / "content"))
    gc = GarbageCollector(db)
    gc.add_content_store(content)
    kept = _put(content, b"held by the container")
    loose = _put(content, b"loose")
    store.create("ns", _container(labels={f"{REF}.x": kept}))
    gc.garbage_collect()
    assert _digests(db) == {kept}
    assert loose != kept

    # a reference added while a collection runs is kept
    later = _put(content, b"labelled after the mark")
    new = _container(labels={f"{REF}.y": later})

    def meanwhile() -> None:
        store.update("ns", new, f"labels.{REF}.y")

    gc.after_mark = meanwhile
    gc.garbage_collect()
    assert _digests(db) == {kept, later}
    gc.after_mark = None

    store.delete("ns", "c1")
    gc.garbage_collect()
    assert _digests(db) == set()


def test_container_source_names_its_snapshot(db: DB, store: ContainerStore) -> None:
    store.create(
        "ns",
        _container(snapshotter="overlayfs", snapshot_key="c1", labels={f"{REF}": "sha256:x"}),
    )
    store.create("ns", _container("bare"))
    roots: list[Node] = []
    with db.view() as tx:
        ContainerSource().scan_roots(tx, 0, roots.append)
    assert set(roots) == {
        Node(ResourceType.SNAPSHOT, "ns", "overlayfs/c1"),
        Node(ResourceType.CONTENT, "ns", "sha256:x"),
    }
    refs: list[Node] = []
    with db.view() as tx:
        ContainerSource().references(tx, Node(ResourceType.CONTAINER, "ns", "c1"), refs.append)
    assert set(refs) == set(roots)
