"""``pyctr images export|import`` and ``Client.images.export|import_`` against the real daemon:
OCI layouts and Docker archives, round trips between namespaces, names, bad archives."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from pycontainerd import Client, errdefs
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import GC_REF_CONTENT
from pycontainerd.remotes import Resolver
from tests.fixtures.daemon import PYCTR, Daemon
from tests.fixtures.images import (
    TestImage,
    docker_save_tar,
    make_test_image,
    oci_layout_tar,
    push_image,
    read_tar,
    tar_layer,
)
from tests.fixtures.registry import Registry, run_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def pulled(registry: Registry) -> tuple[str, TestImage]:
    img = make_test_image("archive", multi=True)
    ref = f"{registry.host}/test/archive:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    return ref, img


def digests(c: Client) -> set[str]:
    out: set[str] = set()
    c.content.walk(lambda i: out.add(i.digest))
    return out


def test_export_import_round_trip(
    daemon: Daemon, registry: Registry, pulled: tuple[str, TestImage]
) -> None:
    ref, img = pulled
    out = daemon.base / "export.tar"
    with Client(daemon.address) as c:
        c.pull(ref, plain_http=True)
    daemon.pyctr("images", "export", str(out), ref)
    files = read_tar(out.read_bytes())
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == [ref]
    assert set(files) == {
        "oci-layout",
        "index.json",
        "manifest.json",
        *(f"blobs/sha256/{b.digest[7:]}" for b in [img.root, *img.host.blobs]),
    }

    printed = daemon.pyctr("images", "import", str(out), namespace="copy").stdout
    assert printed.startswith(f"unpacking {ref} (sha256:")
    assert printed.endswith("...done\n")
    with Client(daemon.address, namespace="copy") as c:
        [record] = c.images.list()
        assert record.name == ref
        assert record.target.digest == img.root.digest
        assert record.target.media_type == mt.MEDIA_TYPE_IMAGE_INDEX
        assert digests(c) == {img.root.digest, *(b.digest for b in img.host.blobs)}
        assert c.images.check(record).complete
        # Labelled for the collector as a pull labels it.
        labels = c.content.info(img.host.manifest.digest).labels
        assert labels[GC_REF_CONTENT + "config"] == img.host.config.digest
        assert c.leases.list() == []


def test_export_to_stdout_and_import_from_stdin(
    daemon: Daemon, pulled: tuple[str, TestImage]
) -> None:
    ref, img = pulled
    with Client(daemon.address) as c:
        c.pull(ref, plain_http=True, all_platforms=True)
    exported = subprocess.run(
        [*PYCTR, "-a", daemon.address, "images", "export", "--all-platforms", "-", ref],
        capture_output=True,
        check=True,
    ).stdout
    assert {f"blobs/sha256/{b.digest[7:]}" for b in img.blobs} <= set(read_tar(exported))
    subprocess.run(
        [*PYCTR, "-a", daemon.address, "-n", "stdin", "images", "import", "--all-platforms", "-"],
        input=exported,
        capture_output=True,
        check=True,
    )
    with Client(daemon.address, namespace="stdin") as c:
        assert digests(c) == {b.digest for b in img.blobs}


def test_import_names(daemon: Daemon) -> None:
    img = make_test_image("names")
    doc = {
        "schemaVersion": 2,
        "manifests": [img.root.json(annotations={"org.opencontainers.image.ref.name": "1.0"})],
    }
    files: list[tuple[str, bytes | str, int]] = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o444),
        ("index.json", json.dumps(doc).encode(), 0o644),
    ]
    files += [(f"blobs/sha256/{b.digest[7:]}", b.data, 0o444) for b in img.blobs]
    with Client(daemon.address) as c:
        records = c.images.import_(
            io.BytesIO(tar_layer(files)),
            base_name="example.com/base",
            index_name="example.com/the-index:1",
            digests=True,
        )
        names = sorted(r.name for r in records)
        assert names == sorted(
            [
                "example.com/the-index:1",
                "example.com/base:1.0",
                f"example.com/base@{img.root.digest}",
            ]
        )
        assert sorted(i.name for i in c.images.list()) == names
        # Without a base name, tag-only names get a dated one, as ctr gives them.
        [record] = c.images.import_(io.BytesIO(tar_layer(files)))
        assert record.name.startswith("import-")
        assert record.name.endswith(":1.0")


def test_import_docker_save(daemon: Daemon) -> None:
    img = make_test_image("docker-save", docker=True)
    archive = daemon.base / "docker.tar"
    archive.write_bytes(docker_save_tar(img.host, ["busybox:saved"]))
    daemon.pyctr("images", "import", "--compress-blobs", str(archive))
    with Client(daemon.address) as c:
        record = c.images.get("docker.io/library/busybox:saved")
        assert record.target.media_type == mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST
        assert c.images.check(record).complete
        assert c.images.platforms(record)[0].os == "linux"
    listed = daemon.pyctr("images", "ls", "-q").stdout.split()
    assert listed == ["docker.io/library/busybox:saved"]


def _wait_until(check: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_failed_import_leaves_nothing_behind(daemon: Daemon) -> None:
    img = make_test_image("broken")
    files = read_tar(oci_layout_tar(img, "x/broken:1"))
    layer = img.host.layers[0]
    path = f"blobs/sha256/{layer.digest[7:]}"
    bad = bytearray(files[path])
    bad[1000] ^= 0xFF
    files[path] = bytes(bad)
    archive = daemon.base / "broken.tar"
    archive.write_bytes(tar_layer([(n, d, 0o644) for n, d in sorted(files.items())]))
    result = daemon.pyctr("images", "import", str(archive), check=False)
    assert result.returncode == 1
    assert path in result.stderr
    with Client(daemon.address) as c:
        assert c.images.list() == []
        assert c.content.list_statuses() == []
        assert c.leases.list() == []
        # What the import wrote before the bad blob goes with its lease.
        assert _wait_until(lambda: not digests(c)), digests(c)


def test_import_refuses_garbage(daemon: Daemon) -> None:
    archive = daemon.base / "garbage.tar"
    archive.write_bytes(tar_layer([("readme.txt", b"hello", 0o644)]))
    result = daemon.pyctr("images", "import", str(archive), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "pyctr: unrecognized image format"
    missing = daemon.pyctr("images", "import", str(daemon.base / "nope.tar"), check=False)
    assert missing.returncode == 1
    assert "nope.tar" in missing.stderr


def test_export_errors(daemon: Daemon) -> None:
    result = daemon.pyctr("images", "export", str(daemon.base / "x.tar"), "nope:1", check=False)
    assert result.returncode == 1
    assert "nope:1" in result.stderr
    assert not (daemon.base / "x.tar").exists()
    assert daemon.pyctr("images", "export", check=False).returncode == 1
    with Client(daemon.address) as c, pytest.raises(errdefs.InvalidArgument):
        c.images.export(io.BytesIO(), [])
