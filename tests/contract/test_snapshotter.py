"""One contract for every snapshotter: overlayfs and native, through the metadata store in
process and over gRPC through a daemon. Mounts are checked as values; nothing is mounted."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.metadata import DB, NamespaceStore, SnapshotStore
from pycontainerd.mount import Mount
from pycontainerd.snapshots import Info, Kind, Snapshotter
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter, supported


@dataclass
class Backend:
    name: str  # the snapshotter: overlayfs or native
    make: Callable[[str], Snapshotter]
    delete_namespace: Callable[[str], None]
    _closers: list[Callable[[], None]] = field(default_factory=list)


PARAMS = [
    "overlayfs-metadata",
    "native-metadata",
    pytest.param("overlayfs-proxy", marks=pytest.mark.integration),
    pytest.param("native-proxy", marks=pytest.mark.integration),
]


@pytest.fixture(params=PARAMS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name, where = str(request.param).split("-")
    if where == "metadata":
        db = DB(tmp_path / "metadata.db")
        backends: dict[str, Snapshotter] = {
            "overlayfs": OverlaySnapshotter(tmp_path / "snapshots" / "overlayfs"),
            "native": NativeSnapshotter(tmp_path / "snapshots" / "native"),
        }
        store = SnapshotStore(db, backends)
        yield Backend(name, lambda ns: store.namespaced(ns, name), NamespaceStore(db).delete)
        store.close()
        db.close()
        return
    assert name != "overlayfs" or supported(), "the kernel has no overlay file system"
    from pycontainerd import Client
    from tests.fixtures.daemon import Daemon

    daemon = request.getfixturevalue("daemon")
    assert isinstance(daemon, Daemon)
    clients: list[Client] = []

    def make(ns: str) -> Snapshotter:
        client = Client(daemon.address, namespace=ns)
        clients.append(client)
        # what the tests make is garbage to the daemon's collector but for a lease
        client.lease = client.leases.create(expire=3600).id
        return client.snapshots(name)

    def delete_namespace(ns: str) -> None:
        with Client(daemon.address) as admin:
            try:
                admin.namespaces.delete(ns)
                return
            except errdefs.FailedPrecondition as exc:
                if "snapshots" in exc.message:
                    raise
            # only the tests' leases are left
            for client in clients:
                if client.namespace == ns and client.lease:
                    client.leases.delete(client.lease)
                    client.lease = None
            admin.namespaces.delete(ns)

    yield Backend(name, make, delete_namespace)
    for client in clients:
        client.close()


@pytest.fixture
def sn(backend: Backend) -> Snapshotter:
    return backend.make("default")


def _fs_of(mount: Mount) -> Path:
    """The writable directory of an active snapshot's mount."""
    if mount.type == "bind":
        return Path(mount.source)
    (upper,) = [o for o in mount.options if o.startswith("upperdir=")]
    return Path(upper.removeprefix("upperdir="))


def _lowers(mount: Mount) -> list[str]:
    (lower,) = [o for o in mount.options if o.startswith("lowerdir=")]
    return lower.removeprefix("lowerdir=").split(":")


def _keys(sn: Snapshotter, *filters: str) -> list[str]:
    infos: list[Info] = []
    sn.walk(infos.append, *filters)
    return sorted(i.name for i in infos)


def test_prepare_without_parent_is_a_writable_bind(sn: Snapshotter) -> None:
    (mount,) = sn.prepare("a", labels={"x": "1"})
    assert mount.type == "bind"
    assert mount.options == ("rw", "rbind")
    assert Path(mount.source).is_dir()
    info = sn.stat("a")
    assert (info.name, info.kind, info.parent) == ("a", Kind.ACTIVE, "")
    assert dict(info.labels) == {"x": "1"}
    assert info.created_at > 0
    assert sn.mounts("a") == [mount]


def test_commit_and_chain(backend: Backend, sn: Snapshotter) -> None:
    (m1,) = sn.prepare("k1")
    (_fs_of(m1) / "one").write_text("1")
    sn.commit("c1", "k1", labels={"l": "v"})
    with pytest.raises(errdefs.NotFound):
        sn.stat("k1")
    c1 = sn.stat("c1")
    assert (c1.kind, dict(c1.labels)) == (Kind.COMMITTED, {"l": "v"})
    assert sn.usage("c1").inodes >= 2

    (m2,) = sn.prepare("k2", "c1")
    assert sn.stat("k2").parent == "c1"
    (_fs_of(m2) / "two").write_text("2")
    sn.commit("c2", "k2")
    (m3,) = sn.prepare("k3", "c2")
    if backend.name == "overlayfs":
        assert m3.type == "overlay"
        assert any(o.startswith("workdir=") for o in m3.options)
        lowers = _lowers(m3)
        assert len(lowers) == 2
        assert (Path(lowers[0]) / "two").exists()  # nearest parent first
        assert (Path(lowers[1]) / "one").exists()
        assert os.listdir(_fs_of(m3)) == []
    else:
        assert m3.type == "bind"
        assert m3.options == ("rw", "rbind")
        assert sorted(os.listdir(m3.source)) == ["one", "two"]


def test_views(backend: Backend, sn: Snapshotter) -> None:
    (v0,) = sn.view("v0")
    assert v0.type == "bind"
    assert v0.options[0] == "ro"
    (m,) = sn.prepare("k")
    (_fs_of(m) / "f").write_text("x")
    sn.commit("c", "k")
    (v1,) = sn.view("v1", "c")
    assert v1.type == "bind"
    assert v1.options[0] == "ro"
    assert (Path(v1.source) / "f").read_text() == "x"
    assert sn.stat("v1").kind == Kind.VIEW
    with pytest.raises(errdefs.FailedPrecondition):
        sn.commit("nope", "v1")
    sn.prepare("k2", "c")
    sn.commit("c2", "k2")
    (v2,) = sn.view("v2", "c2")
    if backend.name == "overlayfs":
        assert v2.type == "overlay"
        assert not any(o.startswith(("upperdir=", "workdir=")) for o in v2.options)
        assert len(_lowers(v2)) == 2
    else:
        assert v2.type == "bind"
        assert v2.options[0] == "ro"


def test_errors(sn: Snapshotter) -> None:
    sn.prepare("a")
    with pytest.raises(errdefs.AlreadyExists):
        sn.prepare("a")
    with pytest.raises(errdefs.NotFound):
        sn.prepare("b", "missing")
    with pytest.raises(errdefs.NotFound):
        sn.stat("missing")
    with pytest.raises(errdefs.NotFound):
        sn.remove("missing")
    with pytest.raises(errdefs.NotFound):
        sn.commit("c", "missing")
    with pytest.raises(errdefs.InvalidArgument):
        sn.prepare("")
    sn.commit("c", "a")
    sn.prepare("child", "c")
    with pytest.raises(errdefs.FailedPrecondition):
        sn.remove("c")
    sn.prepare("d")
    with pytest.raises(errdefs.AlreadyExists):
        sn.commit("c", "d")
    assert sn.stat("d").kind == Kind.ACTIVE  # the failed commit left it as it was


def test_remove(sn: Snapshotter) -> None:
    (m,) = sn.prepare("a")
    (_fs_of(m) / "f").write_text("x")
    sn.commit("c", "a")
    sn.prepare("b", "c")
    sn.remove("b")
    sn.remove("c")
    assert _keys(sn) == []
    assert not _fs_of(m).exists()


def test_update_labels(sn: Snapshotter) -> None:
    sn.prepare("a", labels={"x": "1", "y": "2"})
    info = sn.update(Info("a", Kind.ACTIVE, labels={"x": "9", "z": "3"}), "labels.x")
    assert dict(info.labels) == {"x": "9", "y": "2"}
    info = sn.update(Info("a", Kind.ACTIVE, labels={"z": "3"}), "labels.y", "labels.z")
    assert dict(info.labels) == {"x": "9", "z": "3"}
    info = sn.update(Info("a", Kind.ACTIVE, labels={"only": "1"}))
    assert dict(info.labels) == {"only": "1"}
    assert dict(sn.stat("a").labels) == {"only": "1"}
    with pytest.raises(errdefs.InvalidArgument):
        sn.update(Info("a", Kind.ACTIVE), "parent")
    with pytest.raises(errdefs.NotFound):
        sn.update(Info("missing", Kind.ACTIVE), "labels")


def test_walk_filters(sn: Snapshotter) -> None:
    sn.prepare("a", labels={"team": "x"})
    sn.commit("c", "a", labels={"team": "y"})
    sn.prepare("b", "c")
    sn.view("v", "c")
    assert _keys(sn) == ["b", "c", "v"]
    assert _keys(sn, "kind==committed") == ["c"]
    assert _keys(sn, "kind==active", "kind==view") == ["b", "v"]
    assert _keys(sn, "parent==c") == ["b", "v"]
    assert _keys(sn, "labels.team==y") == ["c"]
    assert _keys(sn, "name~=^[ab]$") == ["b"]


def test_usage(sn: Snapshotter) -> None:
    (m,) = sn.prepare("a")
    before = sn.usage("a")
    (_fs_of(m) / "big").write_bytes(os.urandom(64 * 1024))
    after = sn.usage("a")
    assert after.inodes == before.inodes + 1
    assert after.size >= before.size + 64 * 1024
    sn.commit("c", "a")
    assert sn.usage("c") == after


def test_namespaces_are_separate(backend: Backend) -> None:
    one, two = backend.make("one"), backend.make("two")
    (m1,) = one.prepare("same")
    (m2,) = two.prepare("same")
    assert m1.source != m2.source
    one.commit("c", "same")
    with pytest.raises(errdefs.NotFound):
        two.stat("c")
    with pytest.raises(errdefs.NotFound):
        two.prepare("x", "c")
    assert _keys(two) == ["same"]
    with pytest.raises(errdefs.FailedPrecondition, match=f'snapshots on "{backend.name}"'):
        backend.delete_namespace("one")
    one.remove("c")
    backend.delete_namespace("one")


def test_cleanup_keeps_live_snapshots(sn: Snapshotter) -> None:
    (m,) = sn.prepare("a")
    (_fs_of(m) / "f").write_text("x")
    sn.cleanup()
    assert (_fs_of(m) / "f").read_text() == "x"
