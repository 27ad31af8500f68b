"""Garbage collection through the daemon: leases, images, sync deletes, startup, config."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pycontainerd import Client
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.content.local import LocalStore
from pycontainerd.leases import Resource
from tests.fixtures.daemon import Daemon, make_daemon

pytestmark = pytest.mark.integration

REF = "containerd.io/gc.ref.content"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob_file(daemon: Daemon, dgst: str) -> Path:
    return daemon.root / "content" / "blobs" / "sha256" / dgst.split(":", 1)[1]


def _ingest_dirs(daemon: Daemon) -> list[str]:
    return os.listdir(daemon.root / "content" / "ingest")


def _put(client: Client, data: bytes, labels: dict[str, str] | None = None) -> str:
    with client.content.writer(f"w-{_sha(data)}") as w:
        w.write(data)
        w.commit(labels=labels)
    return _sha(data)


def _create_image(client: Client, name: str, target: str, size: int) -> None:
    stub = images_pb2_grpc.ImagesStub(client.channel)
    image = images_pb2.Image(
        name=name,
        target=descriptor_pb2.Descriptor(
            media_type="application/vnd.oci.image.index.v1+json", digest=target, size=size
        ),
    )
    client.call(stub.Create, images_pb2.CreateImageRequest(image=image))


def _delete_image(client: Client, name: str, *, sync: bool) -> None:
    stub = images_pb2_grpc.ImagesStub(client.channel)
    client.call(stub.Delete, images_pb2.DeleteImageRequest(name=name, sync=sync))


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


def test_lease_rm_sync_removes_the_files(daemon: Daemon, client: Client) -> None:
    with client.with_lease(client.leases.create("pull")):
        layer = _put(client, b"layer")
        manifest = _put(client, b"manifest", {f"{REF}.l.0": layer})
        with client.content.writer("partial") as w:
            w.write(b"half a layer")
    assert _blob_file(daemon, layer).exists()
    assert _blob_file(daemon, manifest).exists()
    assert len(_ingest_dirs(daemon)) == 1
    assert daemon.pyctr("leases", "rm", "--sync", "pull").stdout == "pull\n"
    # sync: gone when the command returns
    assert not _blob_file(daemon, layer).exists()
    assert not _blob_file(daemon, manifest).exists()
    assert _ingest_dirs(daemon) == []
    assert client.content.list_statuses() == []
    assert daemon.pyctr("content", "ls", "-q").stdout == ""


def test_images_keep_their_content_until_deleted(daemon: Daemon, client: Client) -> None:
    with client.with_lease() as lease:
        layer = _put(client, b"layer bytes")
        config = _put(client, b"config bytes")
        manifest = _put(client, b"manifest bytes", {f"{REF}.l.0": layer, f"{REF}.config": config})
        index = _put(client, b"index bytes", {f"{REF}.m.0": manifest})
        loose = _put(client, b"loose bytes")
        _create_image(client, "example.com/app:1", index, 11)
        _create_image(client, "example.com/app:2", index, 11)
        assert lease
    client.leases.create().delete(sync=True)  # the lease is gone: collect
    kept = (layer, config, manifest, index)
    assert all(_blob_file(daemon, d).exists() for d in kept)
    assert not _blob_file(daemon, loose).exists()
    _delete_image(client, "example.com/app:1", sync=True)
    assert all(_blob_file(daemon, d).exists() for d in kept)  # app:2 still refers to them
    _delete_image(client, "example.com/app:2", sync=True)
    assert not any(_blob_file(daemon, d).exists() for d in kept)
    assert daemon.pyctr("content", "ls", "-q").stdout == ""


def test_deletes_collect_without_sync(daemon: Daemon, client: Client) -> None:
    keep = _put(client, b"keep", {"containerd.io/gc.root": "test"})
    drop = _put(client, b"drop")
    other = _put(client, b"other")
    client.content.delete(drop)  # a deletion: collected at the next scheduled time
    assert _wait(lambda: not _blob_file(daemon, other).exists())
    assert not _blob_file(daemon, drop).exists()
    assert _blob_file(daemon, keep).exists()


def test_blobs_shared_by_namespaces(daemon: Daemon) -> None:
    with Client(daemon.address, namespace="a") as a, Client(daemon.address, namespace="b") as b:
        with a.with_lease(), b.with_lease(b.leases.create("hold")):
            dgst = _put(a, b"shared")
            _put(b, b"shared")
        a.leases.create().delete(sync=True)
        assert _blob_file(daemon, dgst).exists()  # b's lease holds it
        assert b.content.info(dgst).size == 6
        b.leases.delete("hold", sync=True)
        assert not _blob_file(daemon, dgst).exists()


def test_startup_collection_cleans_what_a_crash_left(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        # a blob file and an ingest no record knows, as a crash mid-collection leaves them
        local = LocalStore(d.root / "content")
        with local.writer("orphan") as w:
            w.write(b"orphan")
            w.commit()
        with local.writer("orphan-ingest") as w:
            w.write(b"partial")
        d.start()
        assert _wait(lambda: not local.blob_path(_sha(b"orphan")).exists())
        assert _wait(lambda: local.status_refs() == [])
        assert d.stop() == 0
    finally:
        d.stop()
        d.cleanup()


def test_scheduler_plugin_and_config(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    d.config.write_text(
        'version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\n'
        'deletion_threshold = 1\nschedule_delay = "10ms"\nstartup_delay = "0s"\n'
    )
    try:
        d.start()
        with Client(d.address) as c:
            (gc,) = [p for p in c.plugins() if p.type == "io.containerd.gc.v1"]
            assert gc.id == "scheduler"
            assert gc.status == "ok"
            assert gc.exports == {
                "PauseThreshold": "0.02",
                "DeletionThreshold": "1",
                "MutationThreshold": "100",
                "ScheduleDelay": "10ms",
            }
            loose = _put(c, b"loose")
            gone = _put(c, b"gone")
            time.sleep(0.3)
            assert _blob_file(d, loose).exists()  # no startup collection
            c.content.delete(gone)  # one deletion is the threshold
            assert _wait(lambda: not _blob_file(d, loose).exists())
        assert d.stop() == 0
    finally:
        d.stop()
        d.cleanup()


def test_gc_survives_many_blobs(daemon: Daemon, client: Client) -> None:
    with client.with_lease(client.leases.create("many")):
        digests = [_put(client, f"blob {i}".encode()) for i in range(300)]
    assert client.leases.list_resources("many")[:1] == [Resource(min(digests), "content")]
    client.leases.delete("many", sync=True)
    assert daemon.pyctr("content", "ls", "-q").stdout == ""
    assert os.listdir(daemon.root / "content" / "blobs" / "sha256") == []


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
