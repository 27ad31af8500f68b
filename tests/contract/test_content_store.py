"""One contract for every content store: local, metadata (namespaced) and the gRPC proxy.

The proxy runs against a real daemon; the others in process. A store that has no labels or no
namespaces (the local one) is left out of the tests that need them.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content import Info, Store, read_blob, write_blob
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.metadata import DB, ContentStore

MISSING = "sha256:" + "0" * 64
WRONG = "sha256:" + "1" * 64


@dataclass
class Backend:
    """A store under test: how to get it per namespace, where its bytes live, what it can do."""

    name: str
    content_root: Path
    make: Callable[[str], Store]
    namespaced: bool = True
    labels: bool = True
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def blob_files(self) -> set[str]:
        root = self.content_root / "blobs" / "sha256"
        return set(os.listdir(root)) if root.exists() else set()

    def ingest_dirs(self) -> list[str]:
        return os.listdir(self.content_root / "ingest")


@pytest.fixture(params=["local", "metadata", pytest.param("proxy", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        local = LocalStore(tmp_path / "content")
        yield Backend("local", local.root, lambda ns: local, namespaced=False, labels=False)
    elif request.param == "metadata":
        db = DB(tmp_path / "metadata.db")
        store = ContentStore(db, LocalStore(tmp_path / "content"))
        yield Backend("metadata", tmp_path / "content", store.namespaced)
        db.close()
    else:
        from pycontainerd import Client
        from tests.fixtures.daemon import Daemon

        daemon = request.getfixturevalue("daemon")
        assert isinstance(daemon, Daemon)
        clients: list[Client] = []

        def make(ns: str) -> Store:
            client = Client(daemon.address, namespace=ns)
            clients.append(client)
            # as containerd's content suite: under a lease, or deletes start collections
            # that take what the tests keep without references
            client.lease = client.leases.create().id
            return client.content

        yield Backend("proxy", daemon.root / "content", make)
        for client in clients:
            client.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.make("default")


def _data(size: int, seed: int = 0) -> tuple[bytes, str]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def _put(store: Store, data: bytes, ref: str = "ref", **labels: str) -> str:
    with store.writer(ref) as w:
        w.write(data)
        w.commit(len(data), labels=labels or None)
        return w.digest()


def _ls(store: Store, *filters: str) -> list[str]:
    out: list[Info] = []
    store.walk(out.append, *filters)
    return [i.digest for i in out]


#: For tests of labels and namespaces, which the local store (one flat store) does not keep.
only_namespaced = pytest.mark.parametrize(
    "backend", ["metadata", pytest.param("proxy", marks=pytest.mark.integration)], indirect=True
)


# --- writing and reading -------------------------------------------------------------------


def test_write_commit_read(backend: Backend, store: Store) -> None:
    data, dgst = _data(100_000)
    with store.writer("ref-1", desc=Descriptor("", dgst, len(data))) as w:
        assert w.status().offset == 0
        assert w.write(data[:1000]) == 1000
        assert w.write(memoryview(data)[1000:]) == len(data) - 1000
        assert w.digest() == dgst
        assert w.status().offset == len(data)
        w.commit(len(data), dgst)
    info = store.info(dgst)
    assert (info.digest, info.size) == (dgst, len(data))
    assert info.created_at > 0
    assert read_blob(store, dgst) == data
    assert read_blob(store, Descriptor("application/octet-stream", dgst, len(data))) == data
    with store.reader_at(dgst) as ra:
        assert ra.size == len(data)
        assert ra.read_at(10, 20) == data[10:30]
        assert ra.read_at(0, 5) == data[:5]  # backwards
        assert ra.read_at(len(data) - 3, 100) == data[-3:]  # short at the end
        assert ra.read_at(len(data), 10) == b""
    assert _ls(store) == [dgst]
    assert dgst.split(":")[1] in backend.blob_files()
    assert store.list_statuses() == []
    assert backend.ingest_dirs() == []


def test_empty_blob(store: Store) -> None:
    dgst = _put(store, b"")
    assert dgst == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert store.info(dgst).size == 0
    assert read_blob(store, dgst) == b""


def test_large_blob_in_chunks(store: Store) -> None:
    data = os.urandom(24 << 20)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    with store.writer("big") as w:
        w.write(data)
        w.commit(len(data), dgst)
    h = hashlib.sha256()
    with store.reader_at(dgst) as ra:
        offset = 0
        while offset < ra.size:
            chunk = ra.read_at(offset, 3 << 20)
            h.update(chunk)
            offset += len(chunk)
    assert "sha256:" + h.hexdigest() == dgst


def test_write_blob_helper_resumes(store: Store) -> None:
    data, dgst = _data(50_000, seed=1)
    with store.writer("helper") as w:
        w.write(data[:20_000])
    write_blob(store, "helper", io.BytesIO(data), Descriptor("", dgst, len(data)))
    assert read_blob(store, dgst) == data
    # already there: success without writing
    write_blob(store, "helper-2", io.BytesIO(data), Descriptor("", dgst, len(data)))


# --- resuming, locking, aborting -----------------------------------------------------------


def test_interrupted_write_resumes(store: Store) -> None:
    data, dgst = _data(300_000, seed=2)
    desc = Descriptor("", dgst, len(data))
    w = store.writer("layer-1", desc=desc)
    w.write(data[:123_456])
    w.close()
    st = store.status("layer-1")
    assert (st.ref, st.offset, st.total) == ("layer-1", 123_456, len(data))
    assert st.started_at > 0
    assert st.updated_at >= st.started_at
    with store.writer("layer-1", desc=desc) as w:
        assert w.status().offset == 123_456
        assert w.digest() == "sha256:" + hashlib.sha256(data[:123_456]).hexdigest()
        w.write(data[123_456:])
        w.commit(len(data), dgst)
    assert read_blob(store, dgst) == data
    with pytest.raises(errdefs.NotFound, match="layer-1"):
        store.status("layer-1")


def test_ref_held_by_another_writer(store: Store) -> None:
    w = store.writer("busy")
    try:
        with pytest.raises(errdefs.Unavailable, match=r"ref busy locked for .* \(since "):
            store.writer("busy")
    finally:
        w.close()
    store.writer("busy").close()  # free again once closed


def test_status_and_filters(store: Store) -> None:
    writers = [store.writer(ref) for ref in ("layer-a", "layer-b", "config-c")]
    try:
        writers[0].write(b"12345")
        assert [s.ref for s in store.list_statuses()] == ["config-c", "layer-a", "layer-b"]
        assert [s.ref for s in store.list_statuses("ref~=^layer-")] == ["layer-a", "layer-b"]
        assert [s.ref for s in store.list_statuses("ref==config-c")] == ["config-c"]
        assert [s.ref for s in store.list_statuses("ref==a", "ref==layer-b")] == ["layer-b"]
        assert store.status("layer-a").offset == 5
        with pytest.raises(errdefs.InvalidArgument, match="filters"):
            store.list_statuses("ref==")
    finally:
        for w in writers:
            w.close()


def test_abort(backend: Backend, store: Store) -> None:
    with store.writer("gone") as w:
        w.write(b"partial")
    store.abort("gone")
    with pytest.raises(errdefs.NotFound, match="gone"):
        store.status("gone")
    assert backend.ingest_dirs() == []
    with pytest.raises(errdefs.NotFound, match="gone"):
        store.abort("gone")
    with store.writer("gone") as w:  # a new ingest starts from zero
        assert w.status().offset == 0


def test_truncate(store: Store) -> None:
    with store.writer("t") as w:
        w.write(b"first attempt")
        w.truncate(0)
        w.write(b"second")
        w.commit(6, "sha256:" + hashlib.sha256(b"second").hexdigest())
    assert read_blob(store, "sha256:" + hashlib.sha256(b"second").hexdigest()) == b"second"


# --- bad input -----------------------------------------------------------------------------


def test_wrong_digest_never_enters_the_store(backend: Backend, store: Store) -> None:
    data, dgst = _data(10_000, seed=3)
    with store.writer("corrupt", desc=Descriptor("", WRONG, len(data))) as w:
        w.write(data)
        with pytest.raises(errdefs.FailedPrecondition) as info:
            w.commit(len(data), WRONG)
    message = str(info.value)
    assert "corrupt" in message
    assert dgst in message
    assert WRONG in message
    for d in (dgst, WRONG):
        with pytest.raises(errdefs.NotFound):
            store.info(d)
        assert d.split(":")[1] not in backend.blob_files()
    assert _ls(store) == []
    assert store.list_statuses() == []  # the bad data is gone with its ingest
    assert backend.ingest_dirs() == []


def test_wrong_size(backend: Backend, store: Store) -> None:
    data, dgst = _data(1000, seed=4)
    with store.writer("short") as w:
        w.write(data[:600])
        with pytest.raises(errdefs.FailedPrecondition, match="600.*1000|1000.*600"):
            w.commit(1000, dgst)
    assert store.status("short").offset == 600  # a short write can resume
    with store.writer("short") as w:
        w.write(data[600:])
        w.commit(1000, dgst)
    other, other_dgst = _data(1000, seed=40)
    with store.writer("long") as w:
        w.write(other + b"extra")
        with pytest.raises(errdefs.FailedPrecondition, match="long"):
            w.commit(1000, other_dgst)
    with pytest.raises(errdefs.NotFound):  # more than expected: discarded
        store.status("long")
    assert _ls(store) == [dgst]


def test_already_exists(backend: Backend, store: Store) -> None:
    data, dgst = _data(500, seed=5)
    _put(store, data)
    with pytest.raises(errdefs.AlreadyExists, match=dgst):
        store.writer("again", desc=Descriptor("", dgst, len(data)))
    with store.writer("again-blind") as w:  # nothing said up front: found at commit
        w.write(data)
        with pytest.raises(errdefs.AlreadyExists, match=dgst):
            w.commit(len(data), dgst)
    assert store.list_statuses() == []
    assert backend.ingest_dirs() == []


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "nonsense", "sha256:" + "G" * 64])
def test_invalid_digests_are_named(store: Store, bad: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.info(bad),
        lambda: store.reader_at(bad),
        lambda: store.delete(bad),
        lambda: store.writer("r", desc=Descriptor("", bad, 10)),
    ]
    for call in calls:
        with pytest.raises(errdefs.InvalidArgument, match="invalid digest") as info:
            call()
        assert bad in str(info.value)


def test_invalid_refs(store: Store) -> None:
    for call in (
        lambda: store.writer(""),
        lambda: store.status(""),
        lambda: store.abort(""),
        lambda: store.writer("a\x00b"),
    ):
        with pytest.raises(errdefs.InvalidArgument, match="ref"):
            call()


def test_missing_blob(store: Store) -> None:
    for call in (
        lambda: store.info(MISSING),
        lambda: store.reader_at(MISSING),
        lambda: store.delete(MISSING),
    ):
        with pytest.raises(errdefs.NotFound, match=MISSING):
            call()


def test_delete(store: Store) -> None:
    dgst = _put(store, b"to delete")
    store.delete(dgst)
    with pytest.raises(errdefs.NotFound):
        store.info(dgst)
    with pytest.raises(errdefs.NotFound):
        store.delete(dgst)
    assert _ls(store) == []


# --- labels and filters --------------------------------------------------------------------


@only_namespaced
def test_labels_update(backend: Backend, store: Store) -> None:
    gc_ref = "containerd.io/gc.ref.content.l.0"
    dgst = _put(store, b"labelled", **{"a": "1", "b": "2"})
    assert store.info(dgst).labels == {"a": "1", "b": "2"}
    info = store.update(
        Info(dgst, labels={"a": "x", gc_ref: MISSING}), "labels.a", f"labels.{gc_ref}"
    )
    assert info.labels == {"a": "x", "b": "2", gc_ref: MISSING}
    assert info.updated_at >= info.created_at
    info = store.update(Info(dgst, labels={}), "labels.b")  # absent: removed
    assert info.labels == {"a": "x", gc_ref: MISSING}
    info = store.update(Info(dgst, labels={"only": "this", "empty": ""}), "labels")
    assert info.labels == {"only": "this"}
    info = store.update(Info(dgst, labels={"no": "paths"}))  # no paths: replace all
    assert store.info(dgst).labels == {"no": "paths"} == info.labels
    with pytest.raises(errdefs.InvalidArgument, match='cannot update "size" field on content info'):
        store.update(Info(dgst, size=3), "size")
    with pytest.raises(errdefs.InvalidArgument, match="label key and value greater than maximum"):
        store.update(Info(dgst, labels={"big": "v" * 5000}), "labels.big")
    with pytest.raises(errdefs.NotFound, match=MISSING):
        store.update(Info(MISSING, labels={"a": "b"}), "labels.a")


def test_walk_filters(backend: Backend, store: Store) -> None:
    one = _put(store, b"one", "r1")
    two = _put(store, b"two", "r2")
    assert _ls(store) == sorted([one, two])
    assert _ls(store, f"digest=={one}") == [one]
    assert _ls(store, f"digest=={one}", f"digest=={two}") == sorted([one, two])
    assert _ls(store, f"digest!={one}") == [two]
    assert _ls(store, "digest~=^sha256:") == sorted([one, two])
    assert _ls(store, "size==3") == []  # containerd does not filter on size
    with pytest.raises(errdefs.InvalidArgument, match="filters"):
        _ls(store, "labels.")
    if not backend.labels:
        return
    gc_ref = "containerd.io/gc.ref.content.l.0"
    store.update(Info(one, labels={gc_ref: two, "k": "v"}), f"labels.{gc_ref}", "labels.k")
    assert _ls(store, f'labels."{gc_ref}"') == [one]
    assert _ls(store, f'labels."{gc_ref}"=={two}') == [one]
    assert _ls(store, "labels.k==v,digest~=sha256") == [one]
    assert _ls(store, "labels.k!=v") == [two]


# --- namespaces ----------------------------------------------------------------------------


@only_namespaced
def test_namespaces_are_isolated(backend: Backend) -> None:
    a, b = backend.make("ns-a"), backend.make("ns-b")
    dgst = _put(a, b"only in a")
    for call in (lambda: b.info(dgst), lambda: b.reader_at(dgst), lambda: b.delete(dgst)):
        with pytest.raises(errdefs.NotFound):
            call()
    assert _ls(b) == []
    # the same ref in two namespaces: two ingests, no lock between them
    wa, wb = a.writer("same"), b.writer("same")
    try:
        wa.write(b"aaa")
        wb.write(b"b")
        assert [(s.ref, s.offset) for s in a.list_statuses()] == [("same", 3)]
        assert [(s.ref, s.offset) for s in b.list_statuses()] == [("same", 1)]
    finally:
        wa.close()
        wb.close()


@only_namespaced
def test_shared_content_needs_no_upload(backend: Backend) -> None:
    a, b = backend.make("ns-a"), backend.make("ns-b")
    data, dgst = _data(2 << 20, seed=6)
    _put(a, data)
    files = backend.blob_files()
    with b.writer("fetch", desc=Descriptor("", dgst, len(data))) as w:
        st = w.status()
        assert (st.offset, st.total) == (len(data), len(data))  # nothing left to send
        assert w.digest() == dgst
        w.commit(len(data), dgst, labels={"in": "b"})
    assert b.info(dgst).labels == {"in": "b"}
    assert a.info(dgst).labels == {}
    assert read_blob(b, dgst) == data
    assert backend.blob_files() == files  # stored once
    b.delete(dgst)  # b's record only: a still reads it
    assert read_blob(a, dgst) == data
    with pytest.raises(errdefs.NotFound):
        b.info(dgst)


@only_namespaced
def test_shared_content_uploaded_anyway(backend: Backend) -> None:
    a, b = backend.make("ns-a"), backend.make("ns-b")
    data, dgst = _data(3000, seed=7)
    _put(a, data)
    with b.writer("upload", desc=Descriptor("", dgst, len(data))) as w:
        w.truncate(0)
        w.write(data)
        w.commit(len(data), dgst)
    assert b.info(dgst).size == len(data)
    assert b.list_statuses() == []


@only_namespaced
def test_shared_content_checks_the_commit(backend: Backend) -> None:
    a, b = backend.make("ns-a"), backend.make("ns-b")
    data, dgst = _data(3000, seed=8)
    _put(a, data)
    w = b.writer("check", desc=Descriptor("", dgst, len(data)))
    with pytest.raises(errdefs.FailedPrecondition, match="check"):
        w.commit(len(data) + 1, dgst)
    with pytest.raises(errdefs.NotFound):
        b.info(dgst)
