"""The content store through the client: the same ``content.Store`` Protocol as the daemon's,
and leases as context managers holding what is written under them."""

from __future__ import annotations

import contextlib
import hashlib
import io

import pytest

from pycontainerd import errdefs
from pycontainerd.content import Info, Store, read_blob, write_blob
from pycontainerd.descriptor import Descriptor
from pycontainerd.leases import Resource
from tests.client.conftest import Env


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _walk(store: Store, *filters: str) -> list[Info]:
    out: list[Info] = []
    store.walk(out.append, *filters)
    return out


def test_the_proxy_is_a_content_store(env: Env) -> None:
    store: Store = env.client.content  # mypy checks the Protocol
    members = [n for n in dir(Store) if not n.startswith("_")]
    assert {"info", "walk", "writer", "reader_at", "abort"} <= set(members)
    assert [n for n in members if not callable(getattr(store, n, None))] == []


def test_write_read_info_update_walk_delete(env: Env) -> None:
    c = env.client
    data = b"hello content " * 5000
    dgst = _digest(data)
    with c.leases.create() as lease:
        store = lease.content
        with store.writer("w-1", desc=Descriptor("", dgst, len(data))) as w:
            assert w.write(data[:100]) == 100
            assert store.status("w-1").offset == 100
            assert [s.ref for s in store.list_statuses()] == ["w-1"]
            w.write(data[100:])
            assert w.digest() == dgst
            w.commit(len(data), dgst, labels={"kind": "test"})
        assert store.list_statuses() == []
        info = store.info(dgst)
        assert (info.digest, info.size, dict(info.labels)) == (dgst, len(data), {"kind": "test"})
        assert info.created_at > 0
        assert read_blob(store, dgst) == data
        with store.reader_at(Descriptor("", dgst, len(data))) as ra:
            assert ra.size == len(data)
            assert ra.read_at(5, 10) == data[5:15]
            assert ra.read_at(len(data) - 2, 10) == data[-2:]
        updated = store.update(
            Info(dgst, labels={"kind": "", "other": "x"}), "labels.kind", "labels.other"
        )
        assert dict(updated.labels) == {"other": "x"}
        assert [i.digest for i in _walk(store)] == [dgst]
        assert [i.digest for i in _walk(store, "labels.other==x")] == [dgst]
        assert _walk(store, "labels.other==y") == []
        assert Resource(dgst, "content") in lease.resources()
        store.delete(dgst)
        with pytest.raises(errdefs.NotFound, match=dgst):
            store.info(dgst)
        with pytest.raises(errdefs.NotFound, match=dgst):
            store.delete(dgst)


def test_write_blob_and_errors(env: Env) -> None:
    c = env.client
    with c.leases.create() as lease:
        store = lease.content
        data = b"small blob"
        desc = Descriptor("application/octet-stream", _digest(data), len(data))
        write_blob(store, "blob-1", io.BytesIO(data), desc)
        write_blob(store, "blob-2", io.BytesIO(data), desc)  # already there: nothing to do
        assert read_blob(store, desc) == data
        wrong = Descriptor("", "sha256:" + "1" * 64, len(data))
        with pytest.raises(errdefs.FailedPrecondition):
            write_blob(store, "blob-3", io.BytesIO(data), wrong)
        with contextlib.suppress(errdefs.NotFound):  # containerd keeps a failed ingest
            store.abort("blob-3")
        assert store.list_statuses() == []
        with store.writer("held"):
            with pytest.raises(errdefs.Unavailable, match="held"):
                store.writer("held")
            store.abort("held")
        with pytest.raises(errdefs.NotFound, match="held"):
            store.status("held")
        with pytest.raises(errdefs.InvalidArgument):
            store.info("not-a-digest")


def test_content_outside_a_lease_goes_with_the_collection(env: Env) -> None:
    c = env.client
    data = b"kept only by the lease"
    dgst = _digest(data)
    lease = c.leases.create(labels={"purpose": "test"}, expire=600)
    assert lease.labels["purpose"] == "test"
    assert "containerd.io/gc.expire" in lease.labels
    assert c.leases.get(lease.id).id == lease.id
    assert lease.id in [x.id for x in c.leases.list('labels."purpose"==test')]
    write_blob(lease.content, "ref", io.BytesIO(data), Descriptor("", dgst, len(data)))
    with c.with_lease(lease) as held:
        assert held == lease.id
        assert c.content.lease == lease.id
    assert c.lease is None
    lease.delete(sync=True)  # the blob's only reference goes: collected before the answer
    with pytest.raises(errdefs.NotFound, match=dgst):
        c.content.info(dgst)
    with pytest.raises(errdefs.NotFound, match=lease.id):
        c.leases.get(lease.id)
    with pytest.raises(errdefs.NotFound, match=lease.id):
        c.leases.delete(lease.id)


def test_with_lease_creates_and_removes_one(env: Env) -> None:
    c = env.client
    with c.with_lease() as lease_id:
        assert [x.id for x in c.leases.list()] == [lease_id]
        with c.with_lease() as inner:  # the client works under one already: kept
            assert inner == lease_id
        assert [x.id for x in c.leases.list()] == [lease_id]
    assert c.leases.list() == []


def test_lease_resources(env: Env) -> None:
    c = env.client
    with c.leases.create(flat=True) as lease:
        assert lease.labels["containerd.io/gc.flat"] == "true"
        res = Resource("sha256:" + "2" * 64, "content")
        lease.add_resource(res)
        assert lease.resources() == [res]
        lease.delete_resource(res)
        assert lease.resources() == []
    assert c.leases.list() == []
    with c.leases.create("named") as lease:
        assert lease.id == "named"
        with pytest.raises(errdefs.AlreadyExists, match="named"):
            c.leases.create("named")
        lease.delete()  # deleted inside: the block's end does not mind
