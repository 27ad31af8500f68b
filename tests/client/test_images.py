"""Images through the client on both daemons: pull from a real registry, records, tags,
export and import, push, unpack; and their errors."""

from __future__ import annotations

import io
import uuid

import pytest

from pycontainerd import errdefs
from pycontainerd.images.image import Image
from pycontainerd.images.progress import Progress
from tests.client.conftest import SNAPSHOTTER, Env


def test_pull_records_and_unpacks(env: Env) -> None:
    c = env.client
    seen: list[Progress] = []
    img = c.pull(env.ref, plain_http=True, labels={"origin": "test"}, progress=seen.append)
    assert img.name == env.ref
    assert img.labels == {"origin": "test"}
    assert img.target.digest.startswith("sha256:")
    assert seen
    assert c.images.get(env.ref) == img
    assert [i.name for i in c.images.list()] == [env.ref]
    assert c.images.is_unpacked(img, snapshotter=SNAPSHOTTER)
    top = c.snapshots(SNAPSHOTTER).stat(c.images.chain_id(img))
    assert top.kind.name == "COMMITTED"
    check = c.images.check(img)
    assert check.complete
    assert c.images.size(img) > 0
    again = c.pull(env.ref, plain_http=True)  # present: the same record, updated
    assert again.target == img.target


def test_tag_list_filters_labels_delete(env: Env) -> None:
    c = env.client
    img = c.pull(env.ref, plain_http=True, unpack=False)
    tagged = c.images.tag(env.ref, "example.com/a:1", "example.com/b:2")
    assert [t.name for t in tagged] == ["example.com/a:1", "example.com/b:2"]
    assert all(t.target == img.target for t in tagged)
    with pytest.raises(errdefs.AlreadyExists, match="example.com/a:1"):
        c.images.tag(env.ref, "example.com/a:1")
    c.images.tag(env.ref, "example.com/a:1", force=True)
    names = sorted(i.name for i in c.images.list())
    assert names == sorted([env.ref, "example.com/a:1", "example.com/b:2"])
    assert [i.name for i in c.images.list("name==example.com/b:2")] == ["example.com/b:2"]
    c.images.set_labels("example.com/b:2", {"k": "v"})
    assert [i.name for i in c.images.list('labels."k"==v')] == ["example.com/b:2"]
    c.images.set_labels("example.com/b:2", {"k": ""})
    assert c.images.get("example.com/b:2").labels == {}
    c.images.delete("example.com/a:1")
    c.images.delete("example.com/b:2", sync=True)
    assert [i.name for i in c.images.list()] == [env.ref]
    with pytest.raises(errdefs.NotFound, match="example.com/a:1"):
        c.images.get("example.com/a:1")
    with pytest.raises(errdefs.NotFound, match="example.com/a:1"):
        c.images.delete("example.com/a:1")
    with pytest.raises(errdefs.InvalidArgument):
        c.images.tag(env.ref)


def test_create_update_records(env: Env) -> None:
    c = env.client
    img = c.pull(env.ref, plain_http=True, unpack=False)
    made = c.images.create(Image("local/copy:1", img.target, {"a": "1"}))
    assert made.created_at > 0
    with pytest.raises(errdefs.AlreadyExists, match="local/copy:1"):
        c.images.create(Image("local/copy:1", img.target))
    updated = c.images.update(Image("local/copy:1", img.target, {"b": "2"}), "labels.b")
    assert updated.labels == {"a": "1", "b": "2"}
    with pytest.raises(errdefs.NotFound, match="local/missing:1"):
        c.images.update(Image("local/missing:1", img.target))


def test_export_and_import(env: Env) -> None:
    c = env.client
    img = c.pull(env.ref, plain_http=True, unpack=False)
    out = io.BytesIO()
    c.images.export(out, [env.ref])
    assert out.tell() > 0
    c.images.delete(env.ref, sync=True)
    out.seek(0)
    imported = c.images.import_(out, base_name="re/imported")
    assert [(i.name, i.target.digest) for i in imported] == [(env.ref, img.target.digest)]
    assert c.images.check(c.images.get(env.ref)).complete
    c.images.unpack(env.ref, snapshotter=SNAPSHOTTER)
    assert c.images.is_unpacked(c.images.get(env.ref), snapshotter=SNAPSHOTTER)
    with pytest.raises(errdefs.InvalidArgument):
        c.images.export(io.BytesIO(), [])
    with pytest.raises(errdefs.NotFound, match="no/such:image"):
        c.images.export(io.BytesIO(), ["no/such:image"])


def test_push_to_the_registry(env: Env) -> None:
    c = env.client
    img = c.pull(env.ref, plain_http=True, unpack=False)
    pushed_ref = f"{env.target.registry.host}/test/pushed-{uuid.uuid4().hex[:8]}:1"
    desc = c.images.push(pushed_ref, env.ref, plain_http=True)
    assert desc.digest == img.target.digest
    back = c.pull(pushed_ref, plain_http=True, unpack=False)
    assert back.target.digest == img.target.digest


def test_pull_errors(env: Env) -> None:
    c = env.client
    missing = env.ref.rsplit(":", 1)[0] + ":missing"
    with pytest.raises(errdefs.NotFound, match="missing"):
        c.pull(missing, plain_http=True)
    with pytest.raises(errdefs.InvalidArgument):
        c.pull("Not A Reference", plain_http=True)
    assert c.images.list() == []
