"""Leases in the metadata store: records, resources, ids, and content written under a lease."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.leases import (
    LABEL_GC_EXPIRE,
    Lease,
    Resource,
    format_rfc3339,
    parse_rfc3339,
    random_id,
    validate_id,
)
from pycontainerd.metadata import DB, ContentStore, LeaseStore, NamespaceStore


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    d = DB(tmp_path / "metadata.db")
    yield d
    d.close()


@pytest.fixture
def leases(db: DB) -> LeaseStore:
    return LeaseStore(db)


@pytest.fixture
def content(db: DB, tmp_path: Path) -> ContentStore:
    return ContentStore(db, LocalStore(tmp_path / "content"))


# --- ids and times ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    ["a", "lease-1", "1234567-aB_-", "9-__--", "x.y_z", "A" * 76, "/mnt/image", "ä", "a b"],
)
def test_valid_ids(good: str) -> None:
    validate_id(good)


@pytest.mark.parametrize("bad", ["", "A" * 4097, "a\x00", "a\nb", "\udcff"])
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        validate_id(bad)


def test_random_ids_look_like_containerds() -> None:
    ids = {random_id() for _ in range(200)}
    assert len(ids) == 200
    for lease_id in ids:
        assert re.fullmatch(r"\d{1,9}-[A-Za-z0-9_-]{4}", lease_id)
        validate_id(lease_id)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("2024-02-29T12:00:00-00:30", 1709209800 * 1_000_000_000),
    ],
)
def test_parse_rfc3339(text: str, ns: int) -> None:
    assert parse_rfc3339(text) == ns


@pytest.mark.parametrize("bad", ["", "2024-01-01", "2024-01-01 00:00:00Z", "2024-13-01T00:00:00Z"])
def test_parse_rfc3339_refuses(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_rfc3339(bad)


def test_format_rfc3339_round_trips() -> None:
    assert format_rfc3339(0) == "1970-01-01T00:00:00Z"
    when = 1_700_000_000 * 1_000_000_000
    assert parse_rfc3339(format_rfc3339(when)) == when
    assert parse_rfc3339(format_rfc3339(when, local=True)) == when


def test_lease_expires_at() -> None:
    assert Lease("a").expires_at is None
    assert Lease("a", labels={LABEL_GC_EXPIRE: "1970-01-01T00:00:10Z"}).expires_at == 10**10
    assert Lease("a", labels={LABEL_GC_EXPIRE: "tomorrow"}).expires_at is None


# --- the store ----------------------------------------------------------------------------


def test_create_list_delete(leases: LeaseStore) -> None:
    a = leases.create("ns", "a", {"x": "1"})
    assert a.id == "a"
    assert a.labels == {"x": "1"}
    assert a.created_at > 0
    b = leases.create("ns", "", {})
    assert re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", b.id)
    assert {lease.id for lease in leases.list("ns")} == {"a", b.id}
    assert leases.list("other") == []
    assert leases.get("ns", "a") == a
    with pytest.raises(errdefs.AlreadyExists, match='lease "a": already exists'):
        leases.create("ns", "a")
    leases.delete("ns", "a")
    with pytest.raises(errdefs.NotFound, match='lease "a": not found'):
        leases.delete("ns", "a")
    assert [lease.id for lease in leases.list("ns")] == [b.id]


def test_create_refuses_bad_ids_and_labels(leases: LeaseStore) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        leases.create("ns", "bad\nid")
    with pytest.raises(errdefs.InvalidArgument, match="lease.Labels"):
        leases.create("ns", "ok", {"k": "v" * 5000})


def test_list_filters(leases: LeaseStore) -> None:
    leases.create("ns", "one", {"kind": "pull"})
    leases.create("ns", "two", {"kind": "build"})
    leases.create("ns", "three")
    assert [lease.id for lease in leases.list("ns", "id==two")] == ["two"]
    assert [lease.id for lease in leases.list("ns", "labels.kind==pull")] == ["one"]
    assert [lease.id for lease in leases.list("ns", "labels.kind")] == ["one", "two"]
    assert [lease.id for lease in leases.list("ns", "id==one", "id==three")] == ["one", "three"]
    with pytest.raises(errdefs.InvalidArgument):
        leases.list("ns", "id==")


def test_resources(leases: LeaseStore, db: DB) -> None:
    leases.create("ns", "l")
    d1, d2 = _sha(b"1"), _sha(b"2")
    for r in [
        Resource(d2, "content"),
        Resource("ref-1", "ingests"),
        Resource("key", "snapshots/overlayfs"),
        Resource(d1, "content"),
        Resource(d1, "content"),  # twice is once
    ]:
        leases.add_resource("ns", "l", r)
    assert leases.list_resources("ns", "l") == [
        Resource(d1, "content"),
        Resource(d2, "content"),
        Resource("ref-1", "ingests"),
        Resource("key", "snapshots/overlayfs"),
    ]
    dirty = db.dirty
    leases.delete_resource("ns", "l", Resource(d1, "content"))
    leases.delete_resource("ns", "l", Resource(d1, "content"))  # not held: fine
    assert db.dirty == dirty + 2
    assert Resource(d1, "content") not in leases.list_resources("ns", "l")
    with pytest.raises(errdefs.NotFound):
        leases.add_resource("ns", "nope", Resource(d1, "content"))
    with pytest.raises(errdefs.NotFound):
        leases.list_resources("ns", "nope")
    with pytest.raises(errdefs.NotFound):
        leases.list_resources("other", "l")


@pytest.mark.parametrize(
    ("resource", "error"),
    [
        (Resource("sha256:nope", "content"), errdefs.InvalidArgument),
        (Resource(_sha(b""), "content/x"), errdefs.InvalidArgument),
        (Resource("ref", "ingests/x"), errdefs.InvalidArgument),
        (Resource("key", "snapshots"), errdefs.InvalidArgument),
        (Resource("key", "snapshots/a/b"), errdefs.InvalidArgument),
        (Resource("x", "containers"), errdefs.NotImplemented),
    ],
)
def test_bad_resources(
    leases: LeaseStore, resource: Resource, error: type[errdefs.ContainerdError]
) -> None:
    leases.create("ns", "l")
    with pytest.raises(error):
        leases.add_resource("ns", "l", resource)


def test_leases_do_not_hold_a_namespace(leases: LeaseStore, db: DB) -> None:
    leases.create("gone", "l")
    leases.add_resource("gone", "l", Resource(_sha(b"x"), "content"))
    NamespaceStore(db).delete("gone")  # as containerd: leases go with the namespace
    assert leases.list("gone") == []
    with db.view() as tx:
        assert tx.execute("SELECT count(*) FROM lease_resources").fetchone()[0] == 0


def test_delete_counts_as_dirty(leases: LeaseStore, db: DB) -> None:
    seen: list[bool] = []
    db.register_mutation_callback(seen.append)
    leases.create("ns", "l")
    assert seen == [False]
    leases.delete("ns", "l")
    assert seen == [False, True]
    assert db.take_dirty() == (1, set())
    assert db.dirty == 0


# --- content under a lease ----------------------------------------------------------------


def _ingest_row(db: DB, ref: str) -> tuple[str, int | None] | None:
    with db.view() as tx:
        row = tx.execute("SELECT ref, expires_at FROM ingests WHERE ref = ?", (ref,)).fetchone()
    return None if row is None else (row[0], row[1])


def test_writes_under_a_lease_belong_to_it(
    leases: LeaseStore, content: ContentStore, db: DB
) -> None:
    leases.create("ns", "l")
    store = content.namespaced("ns", lease="l")
    with store.writer("layer") as w:
        w.write(b"leased")
        # the ingest is the lease's, and does not expire on its own
        assert leases.list_resources("ns", "l") == [Resource("layer", "ingests")]
        assert _ingest_row(db, "layer") == ("layer", None)
        w.commit()
    assert leases.list_resources("ns", "l") == [Resource(_sha(b"leased"), "content")]


def test_writer_of_present_blob_still_leases_it(leases: LeaseStore, content: ContentStore) -> None:
    data = b"already here"
    with content.namespaced("ns").writer("r") as w:
        w.write(data)
        w.commit()
    leases.create("ns", "l")
    with pytest.raises(errdefs.AlreadyExists):
        content.namespaced("ns", lease="l").writer("r2", desc=Descriptor("", _sha(data), 12))
    assert leases.list_resources("ns", "l") == [Resource(_sha(data), "content")]


def test_abort_and_delete_leave_the_lease(
    leases: LeaseStore, content: ContentStore, db: DB
) -> None:
    leases.create("ns", "l")
    store = content.namespaced("ns", lease="l")
    with store.writer("gone") as w:
        w.write(b"x")
    store.abort("gone")
    assert leases.list_resources("ns", "l") == []
    with store.writer("kept") as w:
        w.write(b"y")
        w.commit()
    db.take_dirty()
    store.delete(_sha(b"y"))
    assert leases.list_resources("ns", "l") == []
    assert db.take_dirty() == (1, {"content"})


def test_unleased_writer_refreshes_expiry(
    leases: LeaseStore, content: ContentStore, db: DB
) -> None:
    leases.create("ns", "l")
    with content.namespaced("ns", lease="l").writer("r") as w:
        w.write(b"x")
    assert _ingest_row(db, "r") == ("r", None)
    with content.namespaced("ns").writer("r") as w:
        pass
    row = _ingest_row(db, "r")
    assert row is not None
    assert row[1] is not None


def test_writing_under_a_missing_lease_fails(content: ContentStore, db: DB) -> None:
    with pytest.raises(errdefs.NotFound, match='lease "nope": not found'):
        content.namespaced("ns", lease="nope").writer("r")
    assert _ingest_row(db, "r") is None
