"""Container records through the client on both daemons: create, get, list, update, delete."""

from __future__ import annotations

import pytest

from pycontainerd import errdefs
from pycontainerd.containers import Container, RuntimeInfo
from tests.client.conftest import SNAPSHOTTER, Env

SPEC = {"ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/"}}


def test_create_get_list_update_delete(env: Env) -> None:
    c = env.client
    made = c.containers.create("one", spec=SPEC, labels={"app": "web"}, image="img:1")
    assert (made.id, made.image, dict(made.labels)) == ("one", "img:1", {"app": "web"})
    assert made.runtime.name == "io.containerd.runc.v2"
    assert made.created_at > 0
    c.containers.create("two", spec=SPEC, labels={"app": "db"})
    got = c.containers.get("one")
    assert got == made
    assert sorted(x.id for x in c.containers.list()) == ["one", "two"]
    assert [x.id for x in c.containers.list("labels.app==db")] == ["two"]
    assert sorted(x.id for x in c.containers.list("labels.app==db", "image==img:1")) == [
        "one",
        "two",
    ]
    assert c.container("one").spec() == SPEC

    updated = c.containers.update(
        Container("one", RuntimeInfo(""), labels={"tier": "front"}), "labels.tier"
    )
    assert dict(updated.labels) == {"app": "web", "tier": "front"}
    assert updated.updated_at >= made.updated_at
    assert c.containers.set_labels("one", {"app": ""}) == {"tier": "front"}
    record = c.containers.get("one")
    whole = c.containers.update(
        Container("one", record.runtime, spec=record.spec, image="img:2", labels={"a": "b"})
    )
    assert (whole.image, dict(whole.labels)) == ("img:2", {"a": "b"})

    c.containers.delete("one")
    c.container("two").delete()
    assert c.containers.list() == []


def test_errors(env: Env) -> None:
    c = env.client
    c.containers.create("dup", spec=SPEC)
    with pytest.raises(errdefs.AlreadyExists, match="dup"):
        c.containers.create("dup", spec=SPEC)
    with pytest.raises(errdefs.NotFound, match="missing"):
        c.containers.get("missing")
    with pytest.raises(errdefs.NotFound, match="missing"):
        c.containers.delete("missing")
    with pytest.raises(errdefs.NotFound, match="missing"):
        c.containers.update(Container("missing", RuntimeInfo("x")), "labels.a")
    with pytest.raises(errdefs.InvalidArgument, match="runtime"):
        c.containers.update(Container("dup", RuntimeInfo("other")), "runtime")
    with pytest.raises(errdefs.InvalidArgument):
        c.containers.create("bad id!", spec=SPEC)
    with pytest.raises(errdefs.InvalidArgument, match="[Ss]pec"):
        c.containers.create("nospec")
    with pytest.raises(errdefs.InvalidArgument, match="[Rr]untime"):
        c.containers.create("noruntime", runtime="", spec=SPEC)
    c.containers.delete("dup")
    assert c.containers.list() == []


def test_create_from_image(env: Env) -> None:
    c = env.client
    img = env.pull()
    made = c.containers.create_from_image("fromimg", img, args=["sh", "-c", "exit 0"])
    assert (made.image, made.snapshotter, made.snapshot_key) == (
        env.ref,
        SNAPSHOTTER,
        "fromimg",
    )
    assert made.labels["io.containerd.image.config.stop-signal"] == "SIGTERM"
    spec = c.container("fromimg").spec()
    assert spec["process"]["args"] == ["sh", "-c", "exit 0"]
    assert c.snapshots(SNAPSHOTTER).stat("fromimg").parent == c.images.chain_id(img)
    with pytest.raises(errdefs.AlreadyExists, match="fromimg"):
        c.containers.create_from_image("fromimg", img)
    c.containers.delete("fromimg", cleanup_snapshot=True)
    with pytest.raises(errdefs.NotFound, match="fromimg"):
        c.snapshots(SNAPSHOTTER).stat("fromimg")
