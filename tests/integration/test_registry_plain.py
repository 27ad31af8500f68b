"""The registry client against a real docker-registry over plain HTTP on loopback."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.remotes import (
    HostsConfig,
    Resolver,
    RetryPolicy,
    distribution_source_label_key,
)
from tests.fixtures.registry import Blob, Image, Registry, free_port, make_image, run_registry

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture
def resolver() -> Iterator[Resolver]:
    with Resolver(retry=FAST) as r:
        yield r


def desc(b: Blob, **kw: object) -> Descriptor:
    return Descriptor(b.media_type, b.digest, b.size, **kw)  # type: ignore[arg-type]


def push_image(resolver: Resolver, ref: str, image: Image) -> list[str]:
    pusher = resolver.pusher(ref)
    return [pusher.push(desc(b), io.BytesIO(b.data)) for b in image.blobs]


def test_push_resolve_fetch(registry: Registry, resolver: Resolver) -> None:
    image = make_image("roundtrip")
    ref = f"{registry.host}/test/roundtrip:v1"
    assert push_image(resolver, ref, image) == ["uploaded"] * 4

    name, index = resolver.resolve(ref)
    assert name == ref
    assert index == Descriptor(mt.MEDIA_TYPE_IMAGE_INDEX, image.index.digest, image.index.size)

    for target in (image.index, image.manifest):
        by_digest = f"{registry.host}/test/roundtrip@{target.digest}"
        assert resolver.resolve(by_digest) == (by_digest, desc(target))
    # A tag and a digest: the digest wins, as in Docker's normalization.
    both = f"{registry.host}/test/roundtrip:v1@{image.manifest.digest}"
    assert resolver.resolve(both)[1].digest == image.manifest.digest

    fetcher = resolver.fetcher(name)
    doc = json.loads(fetcher.fetch_bytes(index))
    entry = doc["manifests"][0]
    manifest_desc = Descriptor(entry["mediaType"], entry["digest"], entry["size"])
    manifest = json.loads(fetcher.fetch_bytes(manifest_desc))
    for child in [manifest["config"], *manifest["layers"]]:
        d = Descriptor(child["mediaType"], child["digest"], child["size"])
        with fetcher.fetch(d, verify=True) as stream:
            data = stream.read()
            assert stream.read() == b""
            assert stream.offset == d.size
        assert data in (image.config.data, image.layer.data)


def test_push_again_finds_everything(registry: Registry, resolver: Resolver) -> None:
    image = make_image("again")
    ref = f"{registry.host}/test/again:v1"
    push_image(resolver, ref, image)
    # Blobs exist; the tag points at the index, so pushing the index again finds it too.
    pusher = resolver.pusher(ref)
    assert pusher.push(desc(image.layer), io.BytesIO(b"")) == "exists"
    assert pusher.push(desc(image.index), io.BytesIO(b"")) == "exists"
    # A manifest pushed by digest only is found by digest.
    assert pusher.push(desc(image.manifest), io.BytesIO(b""), tag=False) == "exists"


def test_fetch_from_offsets(registry: Registry, resolver: Resolver) -> None:
    image = make_image("offsets", size=256 << 10)
    ref = f"{registry.host}/test/offsets:v1"
    push_image(resolver, ref, image)
    fetcher = resolver.fetcher(ref)
    layer = desc(image.layer)
    for offset in (0, 1, 4096, layer.size // 2, layer.size - 1, layer.size):
        with fetcher.fetch(layer, offset) as stream:
            chunks = []
            while data := stream.read(7919):
                chunks.append(data)
        assert b"".join(chunks) == image.layer.data[offset:], offset
    with pytest.raises(errdefs.InvalidArgument):
        fetcher.fetch(layer, layer.size + 1)
    # readinto works as io expects.
    with fetcher.fetch(layer, 10) as stream:
        buf = bytearray(100)
        assert stream.readinto(buf) == 100
        assert bytes(buf) == image.layer.data[10:110]


def test_docker_media_types(registry: Registry, resolver: Resolver) -> None:
    image = make_image("docker")
    manifest = json.loads(image.manifest.data)
    manifest["mediaType"] = mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST
    manifest["config"]["mediaType"] = mt.MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG
    manifest["layers"][0]["mediaType"] = mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP
    m = Blob(mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.size,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    lst = Blob(mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST, json.dumps(index).encode())
    ref = f"{registry.host}/test/docker:v2"
    pusher = resolver.pusher(ref)
    config = Blob(mt.MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG, image.config.data)
    layer = Blob(mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP, image.layer.data)
    for b in (layer, config, m, lst):
        pusher.push(desc(b), io.BytesIO(b.data))
    assert resolver.resolve(ref)[1] == desc(lst)
    assert resolver.resolve(f"{registry.host}/test/docker@{m.digest}")[1] == desc(m)


def test_chunked_upload(registry: Registry, resolver: Resolver) -> None:
    image = make_image("chunked", size=300_000)
    ref = f"{registry.host}/test/chunked:v1"
    pusher = resolver.pusher(ref, chunk_size=65_536)
    for b in image.blobs:
        assert pusher.push(desc(b), io.BytesIO(b.data)) == "uploaded"
    assert resolver.fetcher(ref).fetch_bytes(desc(image.layer)) == image.layer.data


def test_cross_repository_mount(registry: Registry, resolver: Resolver) -> None:
    image = make_image("mount")
    source = f"{registry.host}/team/source:v1"
    push_image(resolver, source, image)
    key = distribution_source_label_key(registry.host)
    target = f"{registry.host}/team/target:v1"
    pusher = resolver.pusher(target)
    # The label names the source repository: the registry mounts the blob.
    layer = desc(image.layer)
    assert pusher.push(layer, io.BytesIO(b""), labels={key: "team/source"}) == "mounted"
    # The same from the descriptor's annotations, as containerd passes them.
    config = desc(image.config, annotations={key: "other/repo,team/source"})
    assert pusher.push(config, io.BytesIO(b"")) == "mounted"
    assert resolver.fetcher(target).fetch_bytes(layer) == image.layer.data
    # A source that lacks the blob: the registry starts a plain upload instead.
    fresh = make_image("mount-miss")
    result = pusher.push(desc(fresh.layer), io.BytesIO(fresh.layer.data), labels={key: "nope/x"})
    assert result == "uploaded"


def test_not_found(registry: Registry, resolver: Resolver) -> None:
    ref = f"{registry.host}/test/missing:v1"
    with pytest.raises(errdefs.NotFound, match="test/missing:v1"):
        resolver.resolve(ref)
    image = make_image("missing-blob")
    push_image(resolver, f"{registry.host}/test/present:v1", image)
    absent = Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, "sha256:" + "0" * 64, 10)
    with pytest.raises(errdefs.NotFound) as info:
        resolver.fetcher(f"{registry.host}/test/present:v1").fetch(absent)
    assert absent.digest in str(info.value)
    assert "test/present" in str(info.value)
    with pytest.raises(errdefs.NotFound):
        resolver.resolve(f"{registry.host}/test/present@sha256:{'1' * 64}")


def test_push_checks_manifest_bytes(registry: Registry, resolver: Resolver) -> None:
    image = make_image("badpush")
    pusher = resolver.pusher(f"{registry.host}/test/badpush:v1")
    wrong = Descriptor(image.manifest.media_type, image.index.digest, image.manifest.size)
    with pytest.raises(errdefs.FailedPrecondition, match="digest"):
        pusher.push(wrong, io.BytesIO(image.manifest.data))
    short = desc(image.layer)
    with pytest.raises(errdefs.FailedPrecondition, match="content ended"):
        pusher.push(short, io.BytesIO(image.layer.data[:100]))
    with pytest.raises(errdefs.NotImplemented, match="schema 1"):
        pusher.push(
            Descriptor(mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST, image.layer.digest, 1),
            io.BytesIO(b"x"),
        )


def test_blob_with_wrong_digest_is_refused_by_the_registry(
    registry: Registry, resolver: Resolver
) -> None:
    image = make_image("baddigest")
    pusher = resolver.pusher(f"{registry.host}/test/baddigest:v1")
    lying = Descriptor(image.layer.media_type, image.config.digest, image.layer.size)
    with pytest.raises(errdefs.FailedPrecondition, match="digest invalid"):
        pusher.push(lying, io.BytesIO(image.layer.data))


def test_connection_refused_is_unavailable() -> None:
    port = free_port()
    start = time.monotonic()
    with Resolver(retry=FAST) as r, pytest.raises(errdefs.Unavailable) as info:
        r.resolve(f"127.0.0.1:{port}/test/app:v1")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "refused" in str(info.value).lower()
    assert time.monotonic() - start < 5


def test_plain_http_flag(registry: Registry) -> None:
    # localhost is plain HTTP by default (containerd 1.6); https by choice fails on a plain port.
    https = HostsConfig(hosts_dirs=(), default_scheme="https")
    with Resolver(hosts=https, retry=FAST) as r, pytest.raises(errdefs.Unavailable, match="tls"):
        r.resolve(f"{registry.host}/test/roundtrip:v1")
    with Resolver(plain_http=True, retry=FAST) as r:
        image = make_image("plainflag")
        push_image(r, f"{registry.host}/test/plainflag:v1", image)
        assert r.resolve(f"{registry.host}/test/plainflag:v1")[1].digest == image.index.digest


def test_many_threads_share_a_resolver(registry: Registry, resolver: Resolver) -> None:
    image = make_image("threads", size=512 << 10)
    ref = f"{registry.host}/test/threads:v1"
    push_image(resolver, ref, image)
    fetcher = resolver.fetcher(ref)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert resolver.resolve(ref)[1].digest == image.index.digest
                assert fetcher.fetch_bytes(desc(image.layer)) == image.layer.data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
