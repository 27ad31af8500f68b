"""containerd's own ``ctr leases`` and ``ctr content`` (with garbage collection) against us."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest

from pycontainerd import Client
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.leases import LABEL_GC_EXPIRE, Resource, parse_rfc3339
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.compat

REF = "containerd.io/gc.ref.content"


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ctr(daemon: Daemon, *args: str, namespace: str = "default") -> str:
    return daemon.ctr(*args, namespace=namespace).stdout


def test_create_ls_rm(daemon: Daemon) -> None:
    assert _ctr(daemon, "leases", "create", "--id", "ctr-1", "-x", "2h", "b=2", "a=1") == "ctr-1\n"
    generated = _ctr(daemon, "leases", "create").strip()  # the daemon picks the id
    assert re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", generated)
    assert _ctr(daemon, "leases", "create", "--id", "forever", "-x", "0") == "forever\n"
    with Client(daemon.address) as c:
        lease = c.leases.get("ctr-1")
        assert lease.labels["a"] == "1"
        expires = parse_rfc3339(lease.labels[LABEL_GC_EXPIRE])
        assert abs(expires - (lease.created_at + 2 * 3600 * 10**9)) < 5 * 10**9
        assert c.leases.get("forever").labels == {}
    # the same table, byte for byte, from ctr and pyctr
    table = _ctr(daemon, "leases", "ls")
    assert table == daemon.pyctr("leases", "ls").stdout
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "AT", "LABELS"]  # widths follow the ids
    assert [line.split()[0] for line in lines[1:]] == sorted([generated, "ctr-1", "forever"])
    assert _ctr(daemon, "leases", "ls", "-q") == daemon.pyctr("leases", "ls", "-q").stdout
    assert _ctr(daemon, "leases", "ls", "-q", "labels.a==1") == "ctr-1\n"
    assert _ctr(daemon, "leases", "rm", "ctr-1", generated) == f"ctr-1\n{generated}\n"
    failed = daemon.ctr("leases", "rm", "ctr-1", check=False)
    assert failed.returncode != 0
    assert 'lease "ctr-1": not found' in failed.stderr
    assert _ctr(daemon, "leases", "ls", "-q") == "forever\n"


def test_leases_are_per_namespace(daemon: Daemon) -> None:
    _ctr(daemon, "leases", "create", "--id", "mine", namespace="one")
    assert _ctr(daemon, "leases", "ls", "-q", namespace="two") == ""
    assert _ctr(daemon, "leases", "ls", "-q", namespace="one") == "mine\n"
    # a lease does not keep its namespace from going
    assert _ctr(daemon, "namespaces", "rm", "one").strip() == "one"


def test_rm_sync_collects_what_the_lease_held(daemon: Daemon) -> None:
    _ctr(daemon, "leases", "create", "--id", "held")
    with Client(daemon.address) as c, c.with_lease("held"):
        with c.content.writer("blob") as w:
            w.write(b"leased bytes")
            w.commit()
        assert c.leases.list_resources("held") == [Resource(_sha(b"leased bytes"), "content")]
    assert _ctr(daemon, "content", "ls", "-q") == f"{_sha(b'leased bytes')}\n"
    assert _ctr(daemon, "leases", "rm", "--sync", "held") == "held\n"
    assert _ctr(daemon, "content", "ls", "-q") == ""
    blobs = daemon.root / "content" / "blobs" / "sha256"
    assert list(blobs.iterdir()) == []


def _image(daemon: Daemon) -> dict[str, str]:
    """An index -> manifest -> (config, two layers) chain, referenced by an image."""
    with Client(daemon.address) as c, c.with_lease():

        def put(data: bytes, labels: dict[str, str] | None = None) -> str:
            with c.content.writer(f"w-{_sha(data)}") as w:
                w.write(data)
                w.commit(labels=labels)
            return _sha(data)

        blobs = {"layer0": put(b"layer zero"), "layer1": put(b"layer one")}
        blobs["config"] = put(b"config")
        blobs["manifest"] = put(
            b"manifest",
            {
                f"{REF}.config": blobs["config"],
                f"{REF}.l.0": blobs["layer0"],
                f"{REF}.l.1": blobs["layer1"],
            },
        )
        blobs["index"] = put(b"index", {f"{REF}.m.0": blobs["manifest"]})
        blobs["loose"] = put(b"loose")
        stub = images_pb2_grpc.ImagesStub(c.channel)
        target = descriptor_pb2.Descriptor(
            media_type="application/vnd.oci.image.index.v1+json", digest=blobs["index"], size=5
        )
        c.call(
            stub.Create,
            images_pb2.CreateImageRequest(image=images_pb2.Image(name="x/y:z", target=target)),
        )
    return blobs


def test_content_prune_references(daemon: Daemon) -> None:
    blobs = _image(daemon)
    _ctr(daemon, "content", "prune", "references")
    # the layers were let go; what the image refers to otherwise stays
    left = set(_ctr(daemon, "content", "ls", "-q").split())
    assert left == {blobs["index"], blobs["manifest"], blobs["config"]}
    with Client(daemon.address) as c:
        assert c.content.info(blobs["manifest"]).labels == {f"{REF}.config": blobs["config"]}


def test_pyctr_content_prune_references(daemon: Daemon) -> None:
    blobs = _image(daemon)
    dry = daemon.pyctr("content", "prune", "references", "--dry")
    assert f"{REF}.l.0" in dry.stderr
    left = set(_ctr(daemon, "content", "ls", "-q").split())
    assert blobs["layer0"] in left  # only told
    assert blobs["loose"] not in left  # but the collection ran
    daemon.pyctr("content", "prune", "references")
    left = set(_ctr(daemon, "content", "ls", "-q").split())
    assert left == {blobs["index"], blobs["manifest"], blobs["config"]}


def test_ctr_images_rm_sync(daemon: Daemon) -> None:
    blobs = _image(daemon)
    _ctr(daemon, "leases", "create", "--id", "dummy")
    _ctr(daemon, "leases", "rm", "--sync", "dummy")
    assert set(_ctr(daemon, "content", "ls", "-q").split()) == set(blobs.values()) - {
        blobs["loose"]
    }
    assert _ctr(daemon, "images", "rm", "--sync", "x/y:z") == "x/y:z\n"
    assert _ctr(daemon, "content", "ls", "-q") == ""


def test_ctr_content_rm_then_collection(daemon: Daemon) -> None:
    data = b"ingested by ctr"
    src = daemon.base / "in"
    src.write_bytes(data)
    with open(src, "rb") as f:
        subprocess.run(
            ["ctr", "-a", daemon.address, "content", "ingest", "ref"], stdin=f, check=True
        )
    dgst = _sha(data)
    _ctr(daemon, "content", "label", dgst, "containerd.io/gc.root=yes")
    _ctr(daemon, "leases", "create", "--id", "x")
    _ctr(daemon, "leases", "rm", "--sync", "x")
    assert _ctr(daemon, "content", "ls", "-q") == f"{dgst}\n"  # a root
    assert _ctr(daemon, "content", "rm", dgst) == f"{dgst}\n"
    _ctr(daemon, "leases", "create", "--id", "y")
    _ctr(daemon, "leases", "rm", "--sync", "y")
    assert not (daemon.root / "content" / "blobs" / "sha256" / dgst[7:]).exists()
