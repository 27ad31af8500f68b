"""The Containers service through the client, and containers made from images, on a real daemon."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2

from pycontainerd import Client, errdefs
from pycontainerd.api.containerd.events import container_pb2 as events_pb2
from pycontainerd.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from pycontainerd.containers import SPEC_TYPE_URL, AnyValue, Container, RuntimeInfo
from pycontainerd.content import write_blob
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import Image
from pycontainerd.images.rootfs import chain_id
from pycontainerd.oci import spec_from_any, with_env, with_hostname
from pycontainerd.platforms import host
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import Blob, sha256, tar_layer
from tests.integration.test_events import Collector

SPEC = AnyValue(SPEC_TYPE_URL, b'{"ociVersion":"1.0.2-dev"}')
OPTIONS = AnyValue("containerd.runc.v1.Options", b"\x08\x01\xff\x00")


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address, namespace="test") as c:
        yield c


def test_create_get_list_update_delete(client: Client) -> None:
    created = client.containers.create(
        Container(
            "web",
            RuntimeInfo("io.containerd.runc.v2", OPTIONS),
            spec=SPEC,
            labels={"app": "web"},
            image="docker.io/library/alpine:latest",
            snapshotter="overlayfs",
            snapshot_key="web",
            extensions={"ext": AnyValue("x.y/Z", b"\x00\x01\x02")},
        )
    )
    assert created.created_at > 0
    got = client.containers.get("web")
    assert got == created
    assert got.runtime.options == OPTIONS
    assert got.extensions == {"ext": AnyValue("x.y/Z", b"\x00\x01\x02")}

    client.containers.create("db", spec={"ociVersion": "1.0.2-dev"}, labels={"app": "db"})
    assert [c.id for c in client.containers.list()] == ["db", "web"]
    assert [c.id for c in client.containers.list("labels.app==db")] == ["db"]
    assert [c.id for c in client.containers.list("image~=alpine", "id==db")] == ["db", "web"]
    assert spec_from_any(client.containers.get("db").spec) == {"ociVersion": "1.0.2-dev"}  # type: ignore[arg-type]

    labels = client.containers.set_labels("web", {"tier": "front", "app": ""})
    assert labels == {"tier": "front"}
    updated = client.containers.update(
        Container("web", RuntimeInfo(""), image="other"), "image", "extensions.ext"
    )
    assert updated.image == "other"
    assert updated.extensions == {}
    assert updated.created_at == created.created_at
    assert updated.updated_at > created.updated_at

    client.containers.delete("db")
    with pytest.raises(errdefs.NotFound, match='container "db" in namespace "test": not found'):
        client.containers.get("db")
    with pytest.raises(errdefs.NotFound):
        client.containers.delete("db")


def test_bad_input_gets_containerd_codes(client: Client) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="container.Spec must be set"):
        client.containers.create("nospec")
    with pytest.raises(errdefs.InvalidArgument, match=r"container.ID: identifier \"\.\./x\""):
        client.containers.create("../x", spec=SPEC)
    with pytest.raises(errdefs.InvalidArgument, match="container.Runtime.Name must be set"):
        client.containers.create("c", runtime="", spec=SPEC)
    with pytest.raises(errdefs.InvalidArgument, match="Snapshotter must be set"):
        client.containers.create("c", spec=SPEC, snapshot_key="k")
    client.containers.create("c", spec=SPEC, snapshotter="overlayfs")
    with pytest.raises(errdefs.AlreadyExists, match='container "c": already exists'):
        client.containers.create("c", spec=SPEC)
    current = client.containers.get("c")
    with pytest.raises(errdefs.InvalidArgument, match="container.Snapshotter field is immutable"):
        client.containers.update(Container("c", current.runtime, spec=SPEC, snapshotter="native"))
    with pytest.raises(errdefs.InvalidArgument, match='cannot update "runtime" field on "c"'):
        client.containers.update(current, "runtime")
    with pytest.raises(errdefs.InvalidArgument, match="Container.ID required"):
        client.containers.update(Container("", current.runtime), "labels")
    with pytest.raises(errdefs.InvalidArgument):
        client.containers.list("id==")
    assert client.containers.get("c") == current


def test_list_stream_and_namespace_required(daemon: Daemon, client: Client) -> None:
    for i in range(3):
        client.containers.create(f"c{i}", spec=SPEC)
    stub = containers_pb2_grpc.ContainersStub(client.channel)
    stream = stub.ListStream(
        containers_pb2.ListContainersRequest(filters=["id!=c1"]),
        metadata=(("containerd-namespace", "test"),),
    )
    assert [m.container.id for m in stream] == ["c0", "c2"]
    with Client(daemon.address, namespace="other") as other:
        assert other.containers.list() == []
    with pytest.raises(errdefs.FailedPrecondition, match="namespace is required"):
        client._conn.call(stub.List, containers_pb2.ListContainersRequest())


def test_a_namespace_with_containers_cannot_be_deleted(client: Client) -> None:
    client.containers.create("c", spec=SPEC)
    with pytest.raises(errdefs.FailedPrecondition, match="still has containers"):
        client.namespaces.delete("test")
    client.containers.delete("c")
    client.namespaces.delete("test")


def test_events(client: Client) -> None:
    col = Collector(client, 'topic~="^/containers/"')
    try:
        col.ready()
        client.containers.create(Container("probe", RuntimeInfo("r", OPTIONS), spec=SPEC))
        client.containers.set_labels("probe", {"a": "1"})
        client.containers.delete("probe")
        got = col.take(3)
        assert [(e.namespace, e.topic, e.event) for e in got] == [
            (
                "test",
                "/containers/create",
                events_pb2.ContainerCreate(
                    id="probe",
                    runtime=events_pb2.ContainerCreate.Runtime(
                        name="r",
                        options=any_pb2.Any(type_url=OPTIONS.type_url, value=OPTIONS.value),
                    ),
                ),
            ),
            (
                "test",
                "/containers/update",
                events_pb2.ContainerUpdate(id="probe", labels={"a": "1"}),
            ),
            ("test", "/containers/delete", events_pb2.ContainerDelete(id="probe")),
        ]
        col.nothing_more()
    finally:
        col.close()


# --- containers from images --------------------------------------------------------------


PASSWD = b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n"
GROUP = b"root:x:0:\nwebgrp:x:1001:\nextra:x:2000:web,other\naudio:x:29:web\n"


def install_image(
    client: Client, name: str, config: dict[str, Any], files: dict[str, bytes]
) -> tuple[Image, str]:
    """An image whose one layer holds ``files``, recorded and "unpacked" by hand: its files
    written into a committed snapshot named by the chain ID (as an unpacker would)."""
    layer_tar = tar_layer([(path, data, 0o644) for path, data in files.items()])
    diff_id = sha256(layer_tar)
    layer = Blob(mt.MEDIA_TYPE_IMAGE_LAYER, layer_tar)
    cfg = Blob(
        mt.MEDIA_TYPE_IMAGE_CONFIG,
        json.dumps(
            {
                "architecture": host().architecture,
                "os": host().os,
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode(),
    )
    manifest = Blob(
        mt.MEDIA_TYPE_IMAGE_MANIFEST,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.MEDIA_TYPE_IMAGE_MANIFEST,
                "config": {"mediaType": cfg.media_type, "digest": cfg.digest, "size": cfg.size},
                "layers": [
                    {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                ],
            }
        ).encode(),
    )
    chain = chain_id([diff_id])
    labels = {
        # as an unpacker labels them: the image holds its content and its top snapshot
        manifest.digest: {
            "containerd.io/gc.ref.content.config": cfg.digest,
            "containerd.io/gc.ref.content.l.0": layer.digest,
        },
        cfg.digest: {"containerd.io/gc.ref.snapshot.overlayfs": chain},
    }
    key = "extract-" + name.replace("/", "-").replace(":", "-")
    with client.with_lease():  # garbage collection may run at any time
        for b in (layer, cfg, manifest):
            write_blob(
                client.content,
                b.digest,
                io.BytesIO(b.data),
                b.descriptor(),
                labels=labels.get(b.digest, {}),
            )
        image = client.images.create(Image(name, manifest.descriptor(), labels={"from": "record"}))
        sn = client.snapshots("overlayfs")
        mounts = sn.prepare(key, "")
        root = Path(mounts[0].source)
        for path, data in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
        sn.commit(chain, key)
    return image, chain


def test_create_from_image(client: Client) -> None:
    image, chain = install_image(
        client,
        "example.com/app:1",
        {
            "User": "web",
            "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
            "Entrypoint": ["/bin/app"],
            "Cmd": ["--serve"],
            "WorkingDir": "/srv",
            "Labels": {"org.example": "yes"},
            "StopSignal": "SIGQUIT",
        },
        {"etc/passwd": PASSWD, "etc/group": GROUP},
    )
    c = client.containers.create_from_image(
        "app",
        "example.com/app:1",
        labels={"mine": "1"},
        spec_opts=[with_env(["LANG=en_US.UTF-8", "EXTRA=1"]), with_hostname("box")],
    )
    assert (c.image, c.snapshotter, c.snapshot_key) == ("example.com/app:1", "overlayfs", "app")
    assert c.labels == {
        "org.example": "yes",
        "from": "record",
        "mine": "1",
        "io.containerd.image.config.stop-signal": "SIGQUIT",
    }
    assert c.spec is not None
    spec = spec_from_any(c.spec)
    proc = spec["process"]
    assert proc["args"] == ["/bin/app", "--serve"]
    assert proc["cwd"] == "/srv"
    assert proc["env"] == ["PATH=/usr/bin:/bin", "LANG=en_US.UTF-8", "EXTRA=1"]
    assert proc["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [1001, 2000, 29]}
    assert spec["hostname"] == "box"
    assert spec["linux"]["cgroupsPath"] == "/test/app"
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in spec["linux"][
        "resources"
    ]["devices"]
    info = client.snapshots("overlayfs").stat("app")
    assert info.parent == chain

    # args replace entrypoint and command, as ctr run's
    c2 = client.containers.create_from_image("app2", image, args=["/bin/sh", "-c", "true"])
    assert spec_from_any(c2.spec)["process"]["args"] == ["/bin/sh", "-c", "true"]  # type: ignore[arg-type]

    client.containers.delete("app2", cleanup_snapshot=True)
    with pytest.raises(errdefs.NotFound):
        client.snapshots("overlayfs").stat("app2")
    client.containers.delete("app")
    client.snapshots("overlayfs").stat("app")  # kept without cleanup_snapshot
    assert client.leases.list() == []  # the creation's lease is gone


def test_create_from_image_failures_leave_nothing(client: Client) -> None:
    install_image(client, "example.com/nouser:1", {"User": "ghost"}, {"etc/passwd": PASSWD})
    sn = client.snapshots("overlayfs")
    with pytest.raises(errdefs.NotFound, match='user "ghost": not found'):
        client.containers.create_from_image("c", "example.com/nouser:1")
    with pytest.raises(errdefs.NotFound):
        sn.stat("c")
    assert client.containers.list() == []

    with pytest.raises(errdefs.NotFound, match='image "nope": not found'):
        client.containers.create_from_image("c", "nope")

    # an image whose layers are not unpacked: a clear error, nothing created
    _, chain = install_image(client, "example.com/packed:1", {}, {"etc/x": b"x"})
    sn.remove(chain)
    with pytest.raises(errdefs.NotFound, match="is not unpacked for snapshotter"):
        client.containers.create_from_image("c", "example.com/packed:1")
    assert client.containers.list() == []

    # a container id taken: the new snapshot goes again
    client.containers.create("taken", spec=SPEC)
    install_image(client, "example.com/ok:1", {}, {"etc/passwd": PASSWD, "etc/ok": b"1"})
    with pytest.raises(errdefs.AlreadyExists):
        client.containers.create_from_image("taken", "example.com/ok:1")
    with pytest.raises(errdefs.NotFound):
        sn.stat("taken")
    assert client.leases.list() == []


def test_a_container_holds_its_snapshot(daemon: Daemon, client: Client) -> None:
    sn = client.snapshots("overlayfs")
    with client.with_lease():
        sn.prepare("held", "")
        sn.prepare("loose", "")
        client.containers.create("c", spec=SPEC, snapshotter="overlayfs", snapshot_key="held")
    daemon.collect_garbage()
    sn.stat("held")
    with pytest.raises(errdefs.NotFound):
        sn.stat("loose")
    client.containers.delete("c")
    daemon.collect_garbage()
    with pytest.raises(errdefs.NotFound):
        sn.stat("held")
