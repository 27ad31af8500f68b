"""Pushes from the real daemon's content store to a real docker-registry: ``Client.images.push``
and ``pyctr images push``, cross-repository mounts, platforms, manifests last."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from pycontainerd import Client, errdefs
from pycontainerd.content import write_blob
from pycontainerd.images.progress import Progress, make_ref_key
from pycontainerd.remotes import Resolver
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import (
    TestImage,
    make_test_image,
    oci_layout_tar,
    other_platform,
    push_image,
)
from tests.fixtures.registry import FakeServer, Registry, Request, Response, run_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def source(registry: Registry) -> tuple[str, TestImage]:
    img = make_test_image("push-src", multi=True)
    ref = f"{registry.host}/src/multi:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    return ref, img


def registry_has(ref: str, img: TestImage, blobs: list[str]) -> None:
    """``ref`` resolves to the image's root, and every blob in ``blobs`` can be fetched."""
    with Resolver(plain_http=True) as r:
        name, desc = r.resolve(ref)
        assert desc.digest == img.root.digest
        fetcher = r.fetcher(name)
        by_digest = {b.digest: b for b in img.blobs}
        for dgst in blobs:
            b = by_digest[dgst]
            assert fetcher.fetch_bytes(b.descriptor(), max_size=64 << 20) == b.data


def test_push_mounts_from_the_source_repository(
    daemon: Daemon, registry: Registry, source: tuple[str, TestImage]
) -> None:
    src, img = source
    dst = f"{registry.host}/dst/multi:v2"
    events: list[Progress] = []
    with Client(daemon.address) as c:
        c.pull(src, plain_http=True, all_platforms=True)
        pushed = c.images.push(dst, src, plain_http=True, progress=events.append)
    assert pushed.digest == img.root.digest
    final = {e.ref: e.status for e in events if e.status in ("done", "exists", "mounted")}
    for i in img.images:
        for layer in [*i.layers, i.config]:
            assert final[make_ref_key(layer.descriptor())] == "mounted"
        assert final[make_ref_key(i.manifest.descriptor())] == "done"
    assert img.index is not None
    assert final[make_ref_key(img.index.descriptor())] == "done"
    registry_has(dst, img, [b.digest for b in img.blobs])


def test_pyctr_push_uploads_and_orders_manifests_last(daemon: Daemon, registry: Registry) -> None:
    img = make_test_image("pyctr-push", multi=True, docker=True)
    name = "example.com/local/image:v1"
    archive = daemon.base / "image.tar"
    archive.write_bytes(oci_layout_tar(img, name))
    daemon.pyctr("images", "import", "--all-platforms", str(archive))
    archive.unlink()

    order: list[tuple[str, str]] = []

    def handler(req: Request) -> Response | None:
        if req.method == "PUT":
            kind = "manifest" if "/manifests/" in req.path else "blob"
            order.append((kind, req.path))
        return None

    with FakeServer(handler, registry.host) as fake:
        dst = f"{fake.host}/pushed/image:v1"
        out = daemon.pyctr("images", "push", "--plain-http", dst, name).stdout
    lines = out.splitlines()
    for b in img.blobs:
        assert any(f"{b.digest}: done" in line for line in lines)
    assert lines[-1].startswith("elapsed: ")
    kinds = [k for k, _ in order]
    assert kinds == ["blob"] * (len(kinds) - 3) + ["manifest"] * 3
    # The index goes last, under the tag; the manifests under their digests.
    assert order[-1][1].endswith("/manifests/v1")
    assert all("/manifests/sha256:" in p for _, p in order[-3:-1])
    registry_has(f"{registry.host}/pushed/image:v1", img, [b.digest for b in img.blobs])

    again = daemon.pyctr("images", "push", "--plain-http", f"{registry.host}/pushed/image:v1", name)
    assert f"{img.root.digest}: exists" in again.stdout


def test_push_one_platform_of_an_index(
    daemon: Daemon, registry: Registry, source: tuple[str, TestImage]
) -> None:
    src, img = source
    other = img.for_platform(other_platform())
    dst = f"{registry.host}/one/platform:v1"
    with Client(daemon.address) as c:
        c.pull(src, plain_http=True, all_platforms=True)
        pushed = c.images.push(dst, src, plain_http=True, platform=str(other_platform()))
    assert pushed.digest == other.manifest.digest
    with Resolver(plain_http=True) as r:
        assert r.resolve(dst)[1].digest == other.manifest.digest


def test_push_errors(daemon: Daemon, registry: Registry, source: tuple[str, TestImage]) -> None:
    src, img = source
    missing = daemon.pyctr(
        "images", "push", "--plain-http", f"{registry.host}/x/y:z", "nope:1", check=False
    )
    assert missing.returncode == 1
    assert "nope:1" in missing.stderr
    assert "not found" in missing.stderr
    # Only the host's platform was pulled: the whole index cannot be pushed.
    with Client(daemon.address) as c:
        c.pull(src, plain_http=True)
        other = img.for_platform(other_platform())
        with pytest.raises(errdefs.NotFound, match=other.manifest.digest):
            c.images.push(f"{registry.host}/partial/multi:v1", src, plain_http=True)
    with Resolver(plain_http=True) as r, pytest.raises(errdefs.NotFound):
        r.resolve(f"{registry.host}/partial/multi:v1")


def test_push_by_manifest_digest(daemon: Daemon, registry: Registry) -> None:
    img = make_test_image("by-digest")
    with Client(daemon.address) as c:
        # Under a lease: content nothing refers to is the garbage collector's.
        lease = c.leases.create(expire=600)
        for b in img.blobs:
            write_blob(lease.content, f"test-{b.digest}", io.BytesIO(b.data), b.descriptor())
    dst = f"{registry.host}/by/digest:v1"
    daemon.pyctr(
        "images",
        "push",
        "--plain-http",
        "--manifest",
        img.root.digest,
        "--manifest-type",
        img.root.media_type,
        dst,
    )
    registry_has(dst, img, [b.digest for b in img.blobs])
