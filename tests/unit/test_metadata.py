"""The metadata database: WAL, migrations, transactions, namespaces and images."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.metadata import DB, SCHEMA_VERSION, Image, ImageStore, NamespaceStore
from pycontainerd.metadata.migrations import MIGRATIONS

DIGEST = "sha256:" + "0" * 64
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def db(tmp_path: Path) -> DB:
    d = DB(tmp_path / "metadata.db")
    yield d  # type: ignore[misc]
    d.close()


def test_new_database_is_wal_and_current(db: DB) -> None:
    assert db.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    with db.view() as tx:
        assert tx.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrates_forward_from_an_older_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO namespaces VALUES ('kept', 1, 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    db = DB(path)
    try:
        assert db.schema_version == SCHEMA_VERSION
        assert [n.name for n in NamespaceStore(db).list()] == ["kept"]
        ImageStore(db).create("kept", Image("a", Descriptor(MANIFEST, DIGEST, 1)))
    finally:
        db.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(errdefs.FailedPrecondition, match="newer than this release supports"):
        DB(path)


def test_failed_transaction_changes_nothing(db: DB) -> None:
    store = NamespaceStore(db)
    store.create("a", {"k": "v"})

    def crash() -> None:
        with db.update() as tx:
            tx.execute("DELETE FROM namespace_labels")
            raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        crash()
    assert store.get("a").labels == {"k": "v"}


def test_namespace_delete_refused_while_it_holds_images(db: DB) -> None:
    images = ImageStore(db)
    images.create("ns", Image("img", Descriptor(MANIFEST, DIGEST, 10)))  # creates ns
    with pytest.raises(errdefs.FailedPrecondition, match="still has images"):
        NamespaceStore(db).delete("ns")
    images.delete("ns", "img")
    NamespaceStore(db).delete("ns")


def test_images_are_namespaced(db: DB) -> None:
    images = ImageStore(db)
    images.create("a", Image("img", Descriptor(MANIFEST, DIGEST, 10), {"x": "1"}))
    images.create("b", Image("img", Descriptor(MANIFEST, DIGEST, 20)))
    assert images.get("a", "img").target.size == 10
    assert images.get("b", "img").target.size == 20
    with pytest.raises(errdefs.NotFound):
        images.get("c", "img")
    with pytest.raises(errdefs.AlreadyExists, match='image "img": already exists'):
        images.create("a", Image("img", Descriptor(MANIFEST, DIGEST, 10)))


def test_image_update_paths(db: DB) -> None:
    images = ImageStore(db)
    first = images.create(
        "ns", Image("img", Descriptor(MANIFEST, DIGEST, 10, {"a": "1"}), {"keep": "1", "drop": "2"})
    )
    new = Image(
        "img",
        Descriptor("other", "sha256:" + "1" * 64, 99, {"b": "2"}),
        {"keep": "changed", "added": "3"},
    )
    updated = images.update("ns", new, ["labels.added", "labels.drop", "annotations.b"])
    assert updated.labels == {"keep": "1", "added": "3"}
    assert updated.target.digest == DIGEST
    assert updated.target.annotations == {"a": "1", "b": "2"}
    assert updated.created_at == first.created_at
    assert updated.updated_at >= first.updated_at
    replaced = images.update("ns", new, ["target"])
    assert replaced.target == new.target
    with pytest.raises(errdefs.InvalidArgument, match='cannot update "name" field on image "img"'):
        images.update("ns", new, ["name"])


def test_image_validation(db: DB) -> None:
    images = ImageStore(db)
    with pytest.raises(errdefs.InvalidArgument, match="Target.Digest"):
        images.create("ns", Image("x", Descriptor(MANIFEST, "sha256:short", 1)))
    with pytest.raises(errdefs.InvalidArgument, match="Target.Size must be greater than zero"):
        images.create("ns", Image("x", Descriptor(MANIFEST, DIGEST, 0)))
    with pytest.raises(errdefs.InvalidArgument, match="image name must not be empty"):
        images.create("ns", Image("", Descriptor(MANIFEST, DIGEST, 1)))


def test_image_list_filters(db: DB) -> None:
    images = ImageStore(db)
    images.create("ns", Image("docker.io/library/a:1", Descriptor(MANIFEST, DIGEST, 1), {"t": "x"}))
    images.create("ns", Image("docker.io/library/b:1", Descriptor("other", DIGEST, 1)))
    names = lambda *f: [i.name for i in images.list("ns", f)]  # noqa: E731
    assert names() == ["docker.io/library/a:1", "docker.io/library/b:1"]
    assert names("labels.t==x") == ["docker.io/library/a:1"]
    assert names(f"target.mediatype=={MANIFEST}") == ["docker.io/library/a:1"]
    assert names("name~=b:1$") == ["docker.io/library/b:1"]
