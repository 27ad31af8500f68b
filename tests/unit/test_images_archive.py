"""Image archives in and out of a content store: OCI layouts, Docker ``save`` tars."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content import Store, read_blob, write_blob
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import archive
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import GC_REF_CONTENT, check
from pycontainerd.images.manifest import parse_index, parse_manifest
from pycontainerd.metadata import DB, ContentStore
from pycontainerd.platforms import ALL, default, default_strict
from tests.fixtures.images import (
    TestImage,
    docker_save_tar,
    make_test_image,
    oci_layout_tar,
    read_tar,
    sha256,
    tar_layer,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = DB(tmp_path / "metadata.db")
    yield ContentStore(db, LocalStore(tmp_path / "content")).namespaced("default")
    db.close()


def digests(store: Store) -> set[str]:
    out: set[str] = set()
    store.walk(lambda i: out.add(i.digest))
    return out


def put_image(store: Store, img: TestImage) -> None:
    for b in img.blobs:
        write_blob(store, f"test-{b.digest}", io.BytesIO(b.data), b.descriptor())


def test_import_oci_layout(store: Store) -> None:
    img = make_test_image("oci", multi=True)
    name = "example.com/test/oci:v1"
    index = archive.import_index(store, io.BytesIO(oci_layout_tar(img, name)))
    assert index.media_type == mt.MEDIA_TYPE_IMAGE_INDEX
    assert digests(store) >= {b.digest for b in img.blobs}
    records = archive.image_records(store, index, platform=default())
    assert [(r.name, r.target.digest) for r in records] == [(name, img.root.digest)]
    # The host platform's content is labelled for the collector, the other's is not walked.
    labels = store.info(img.host.manifest.digest).labels
    assert labels[GC_REF_CONTENT + "config"] == img.host.config.digest
    assert img.index is not None
    assert store.info(img.index.digest).labels == {GC_REF_CONTENT + "m.0": img.host.manifest.digest}
    assert not check(store, img.root.descriptor(), default()).missing


def test_import_with_prefixes_and_digests(store: Store) -> None:
    img = make_test_image("names")
    doc = {
        "schemaVersion": 2,
        "manifests": [
            img.root.json(annotations={"org.opencontainers.image.ref.name": "latest"}),
            img.root.json(annotations={"org.opencontainers.image.ref.name": "other/repo:1"}),
        ],
    }
    files: list[tuple[str, bytes | str, int]] = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o444),
        ("index.json", json.dumps(doc).encode(), 0o644),
    ]
    files += [(f"blobs/sha256/{b.digest[7:]}", b.data, 0o444) for b in img.blobs]
    index = archive.import_index(store, io.BytesIO(tar_layer(files)))
    records = archive.image_records(
        store,
        index,
        platform=default(),
        index_name="the-index",
        translate=archive.filter_ref_prefix("base/name"),
        digest_ref=archive.digest_translator("base/name"),
    )
    assert [r.name for r in records] == [
        "the-index",
        "base/name:latest",
        f"base/name@{img.root.digest}",
        f"base/name@{img.root.digest}",
    ]
    records = archive.image_records(
        store, index, platform=default(), translate=archive.add_ref_prefix("base/name")
    )
    assert [r.name for r in records] == ["base/name:latest", "other/repo:1"]


def test_import_docker_save(store: Store) -> None:
    img = make_test_image("docker", docker=True)
    me = img.host
    data = docker_save_tar(me, ["busybox:test", "example.com/a/b:c"])
    index = archive.import_index(store, io.BytesIO(data))
    idx = parse_index(read_blob(store, index), index.media_type)
    assert [m.annotations["io.containerd.image.name"] for m in idx.manifests] == [
        "docker.io/library/busybox:test",
        "example.com/a/b:c",
    ]
    assert [m.annotations["org.opencontainers.image.ref.name"] for m in idx.manifests] == [
        "test",
        "c",
    ]
    entry = idx.manifests[0]
    assert entry.media_type == mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST
    assert entry.platform is not None
    assert entry.platform.os == "linux"
    man = parse_manifest(read_blob(store, entry), entry.media_type)
    assert man.config.digest == me.config.digest
    assert man.config.media_type == mt.MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG
    # docker save writes layers uncompressed: they are imported as they are.
    raw = [gzip.decompress(layer.data) for layer in me.layers]
    assert [layer.digest for layer in man.layers] == [sha256(r) for r in raw]
    assert {layer.media_type for layer in man.layers} == {mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER}
    # The manifest is written as containerd writes it, so its digest is containerd's.
    doc = read_blob(store, entry)
    assert doc.startswith(b'{"schemaVersion":2,"mediaType":"application/vnd.docker.')
    records = archive.image_records(store, index, platform=default())
    assert [r.name for r in records] == [
        "docker.io/library/busybox:test",
        "example.com/a/b:c",
    ]


def test_import_docker_save_compressing(store: Store) -> None:
    img = make_test_image("compress", docker=True)
    data = docker_save_tar(img.host, ["compress:1"])
    index = archive.import_index(store, io.BytesIO(data), archive.ImportOptions(compress=True))
    entry = parse_index(read_blob(store, index)).manifests[0]
    man = parse_manifest(read_blob(store, entry), entry.media_type)
    assert {layer.media_type for layer in man.layers} == {mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP}
    raw = [gzip.decompress(layer.data) for layer in img.host.layers]
    for layer, r in zip(man.layers, raw, strict=True):
        assert gzip.decompress(read_blob(store, layer)) == r
        assert store.info(layer.digest).labels == {archive.UNCOMPRESSED_LABEL: sha256(r)}
    # Imported again, the compressed blobs are found by their label and used as they are.
    again = archive.import_index(store, io.BytesIO(data))
    entry2 = parse_index(read_blob(store, again)).manifests[0]
    assert entry2.digest == entry.digest


def test_import_refuses_a_corrupt_blob(store: Store) -> None:
    img = make_test_image("corrupt")
    good = oci_layout_tar(img, "x/y:z")
    layer = img.host.layers[0]
    files = read_tar(good)
    path = f"blobs/sha256/{layer.digest[7:]}"
    bad = bytearray(files[path])
    bad[len(bad) // 2] ^= 0xFF
    files[path] = bytes(bad)
    tar = tar_layer([(n, d, 0o644) for n, d in files.items()])
    with pytest.raises(errdefs.FailedPrecondition, match=path):
        archive.import_index(store, io.BytesIO(tar))
    assert layer.digest not in digests(store)
    assert store.list_statuses() == []


@pytest.mark.parametrize(
    ("files", "text"),
    [
        ([("hello.txt", b"hi", 0o644)], "unrecognized image format"),
        ([("oci-layout", b'{"imageLayoutVersion":"2.0.0"}', 0o644)], "unsupported OCI version"),
        ([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)], "missing index.json"),
        ([("manifest.json", b'[{"Config":"c.json"}]', 0o644)], "image config 'c.json' not found"),
        ([("manifest.json", b"{}", 0o644)], "not a list"),
    ],
)
def test_import_refuses_bad_archives(
    store: Store, files: list[tuple[str, bytes, int]], text: str
) -> None:
    with pytest.raises(errdefs.ContainerdError, match=text):
        archive.import_index(store, io.BytesIO(tar_layer(files)))


def test_import_refuses_what_is_not_a_tar(store: Store) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="tar"):
        archive.import_index(store, io.BytesIO(b"this is not a tar archive at all" * 40))


def _export(store: Store, names: dict[str, Descriptor], **kw: object) -> bytes:
    out = io.BytesIO()
    manifests = [
        Descriptor(d.media_type, d.digest, d.size, archive.add_name_annotation(n, {}))
        for n, d in names.items()
    ]
    archive.export(store, out, manifests, archive.ExportOptions(**kw))  # type: ignore[arg-type]
    return out.getvalue()


def test_export_layout(store: Store) -> None:
    img = make_test_image("export", multi=True)
    put_image(store, img)
    name = "docker.io/library/export:v1"
    data = _export(store, {name: img.root.descriptor()}, platform=default_strict())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
    files = read_tar(data)
    other = [b.digest for b in img.images[1].blobs if b.digest != img.images[1].manifest.digest]
    assert set(members) == {
        "blobs",
        "blobs/sha256",
        "oci-layout",
        "index.json",
        "manifest.json",
        *(f"blobs/sha256/{b.digest[7:]}" for b in [*img.host.blobs, img.root]),
    }
    assert not any(f"blobs/sha256/{d[7:]}" in members for d in other)
    assert members["oci-layout"].mode == 0o444
    assert members["index.json"].mode == 0o644
    assert files["oci-layout"] == b'{"imageLayoutVersion":"1.0.0"}'
    index = json.loads(files["index.json"])
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": "v1",
    }
    manifest = json.loads(files["manifest.json"])
    assert manifest == [
        {
            "Config": f"blobs/sha256/{img.host.config.digest[7:]}",
            "RepoTags": ["export:v1"],
            "Layers": [f"blobs/sha256/{layer.digest[7:]}" for layer in img.host.layers],
        }
    ]
    for b in [*img.host.blobs, img.root]:
        assert files[f"blobs/sha256/{b.digest[7:]}"] == b.data


def test_export_all_platforms_and_round_trip(store: Store, tmp_path: Path) -> None:
    img = make_test_image("roundtrip", multi=True, docker=True)
    put_image(store, img)
    data = _export(
        store, {"rt:1": img.root.descriptor()}, platform=default_strict(), all_platforms=True
    )
    assert {f"blobs/sha256/{b.digest[7:]}" for b in img.blobs} <= set(read_tar(data))

    db = DB(tmp_path / "other.db")
    try:
        other = ContentStore(db, LocalStore(tmp_path / "other")).namespaced("default")
        index = archive.import_index(other, io.BytesIO(data))
        records = archive.image_records(other, index, platform=ALL)
        assert [(r.name, r.target.digest) for r in records] == [("rt:1", img.root.digest)]
        assert digests(other) >= {b.digest for b in img.blobs}
    finally:
        db.close()


def test_export_refuses_missing_platform_and_bad_types(store: Store) -> None:
    img = make_test_image("missing", multi=True)
    put_image(store, img)
    from pycontainerd.platforms import Platform, only_strict

    with pytest.raises(errdefs.NotFound, match="no manifest found for platform"):
        _export(
            store,
            {"m:1": img.root.descriptor()},
            platform=only_strict(Platform("linux", "s390x")),
        )
    with pytest.raises(errdefs.InvalidArgument, match="only manifests may be exported"):
        _export(store, {"m:1": img.host.config.descriptor()})


def test_export_checks_digests(store: Store, tmp_path: Path) -> None:
    img = make_test_image("tamper")
    put_image(store, img)
    layer = img.host.layers[0]
    path = tmp_path / "content" / "blobs" / "sha256" / layer.digest[7:]
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(errdefs.FailedPrecondition, match="unexpected digest"):
        _export(store, {"t:1": img.root.descriptor()})


def test_names() -> None:
    assert archive.oci_reference_name("docker.io/library/busybox:latest") == "latest"
    assert archive.oci_reference_name("example.com/x@sha256:" + "a" * 64) == "@sha256:" + "a" * 64
    assert archive.add_ref_prefix("foo/bar")("latest") == "foo/bar:latest"
    assert archive.add_ref_prefix("foo/bar")("x/y:1") == "x/y:1"
    assert archive.filter_ref_prefix("foo/bar")("x/y:1") == ""
    assert archive.filter_ref_prefix("foo/bar")("foo/bar:2") == "foo/bar:2"
    assert archive.filter_ref_prefix("foo/bar")("foo/barbaz:2") == ""
