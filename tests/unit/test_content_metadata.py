"""The namespaced content store: its records, its ingests' expiry, namespaces that hold blobs."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.metadata import DB, ContentStore, NamespaceStore
from pycontainerd.metadata.content import INGEST_EXPIRY


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    d = DB(tmp_path / "metadata.db")
    yield d
    d.close()


@pytest.fixture
def content(db: DB, tmp_path: Path) -> ContentStore:
    return ContentStore(db, LocalStore(tmp_path / "content"))


def test_ingest_records_expire_in_a_day(content: ContentStore, db: DB) -> None:
    before = time.time_ns()
    with content.namespaced("ns").writer("layer-1"):
        pass
    with db.view() as tx:
        ref, bref, expected, expires = tx.execute(
            "SELECT ref, bref, expected, expires_at FROM ingests WHERE namespace = 'ns'"
        ).fetchone()
    assert ref == "layer-1"
    assert bref.startswith("ns/")
    assert bref.endswith("/layer-1")
    assert expected == ""
    assert before + INGEST_EXPIRY <= expires <= time.time_ns() + INGEST_EXPIRY


def test_errors_name_the_callers_ref(content: ContentStore) -> None:
    store = content.namespaced("ns")
    with store.writer("mine") as w:
        w.write(b"abc")
        with pytest.raises(errdefs.FailedPrecondition) as info:
            w.commit(3, _sha(b"other"))
    assert 'ref "mine"' in str(info.value)
    assert "ns/" not in str(info.value)
    w = store.writer("held")
    try:
        with pytest.raises(errdefs.Unavailable, match=r"^ref held locked for"):
            store.writer("held")
    finally:
        w.close()


def test_failed_commit_forgets_its_ingest(content: ContentStore, db: DB) -> None:
    with content.namespaced("ns").writer("bad") as w:
        w.write(b"abc")
        with pytest.raises(errdefs.FailedPrecondition):
            w.commit(3, _sha(b"other"))
    with db.view() as tx:
        assert tx.execute("SELECT COUNT(*) FROM ingests").fetchone()[0] == 0


def test_namespace_holding_blobs_cannot_be_deleted(content: ContentStore, db: DB) -> None:
    store = content.namespaced("busy")
    with store.writer("r") as w:
        w.write(b"blob")
        w.commit()
    with pytest.raises(errdefs.FailedPrecondition, match="still has blobs"):
        NamespaceStore(db).delete("busy")
    store.delete(_sha(b"blob"))
    NamespaceStore(db).delete("busy")


def test_namespace_delete_drops_its_ingests(content: ContentStore, db: DB) -> None:
    content.namespaced("idle").writer("r").close()
    NamespaceStore(db).delete("idle")
    with db.view() as tx:
        assert tx.execute("SELECT COUNT(*) FROM ingests").fetchone()[0] == 0


def test_delete_keeps_the_bytes(content: ContentStore, tmp_path: Path) -> None:
    store = content.namespaced("ns")
    with store.writer("r") as w:
        w.write(b"kept for gc")
        w.commit()
    store.delete(_sha(b"kept for gc"))
    assert content.backend.info(_sha(b"kept for gc")).size == 11


def test_isolated_policy_uploads_again(db: DB, tmp_path: Path) -> None:
    content = ContentStore(db, LocalStore(tmp_path / "content"), shared=False)
    data = os.urandom(1000)
    with content.namespaced("a").writer("r") as w:
        w.write(data)
        w.commit()
    with content.namespaced("b").writer("r", desc=Descriptor("", _sha(data), 1000)) as w:
        assert w.status().offset == 0  # must prove it has the bytes
        w.write(data)
        w.commit(1000, _sha(data))
    assert content.namespaced("b").info(_sha(data)).size == 1000


def test_shared_size_mismatch_is_not_shared(content: ContentStore) -> None:
    data = os.urandom(100)
    with content.namespaced("a").writer("r") as w:
        w.write(data)
        w.commit()
    with content.namespaced("b").writer("r", desc=Descriptor("", _sha(data), 99)) as w:
        assert w.status().offset == 0


def test_exclusive_waits_for_commits(content: ContentStore) -> None:
    import threading

    store = content.namespaced("ns")
    w = store.writer("r")
    w.write(b"data")
    order: list[str] = []
    with content.exclusive():
        t = threading.Thread(target=lambda: (w.commit(), order.append("commit")))
        t.start()
        t.join(0.2)
        order.append("sweep done")
    t.join(5)
    assert order == ["sweep done", "commit"]
