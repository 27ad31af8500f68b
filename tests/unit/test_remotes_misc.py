"""Reference handling, request paths, mount candidates and media types."""

from __future__ import annotations

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.reference import Reference
from pycontainerd.remotes import (
    Resolver,
    append_distribution_source_label,
    distribution_source_label_key,
    select_repository_mount_candidate,
)
from pycontainerd.remotes.hosts import HostsConfig, RegistryHost
from pycontainerd.remotes.session import parse_ref

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("user/app:1", "docker.io/user/app:1"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
        ("localhost:5000/a:t@" + DIGEST, "localhost:5000/a@" + DIGEST),
        ("docker.io/library/busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST),
    ],
)
def test_parse_ref(ref: str, expected: str) -> None:
    assert str(parse_ref(ref)) == expected


def test_parse_ref_errors() -> None:
    with pytest.raises(errdefs.InvalidArgument):
        parse_ref("UPPER/case")
    with pytest.raises(errdefs.InvalidArgument):
        parse_ref("busybox@sha256:short")


def test_repository_paths_and_mirror_namespace() -> None:
    r = Resolver(hosts=HostsConfig(hosts_dirs=()))
    repo = r._repository("busybox")
    (origin,) = repo.hosts
    assert repo.path(origin, "manifests", "latest") == "/v2/library/busybox/manifests/latest"
    assert repo.path(origin, "blobs", "uploads/") == "/v2/library/busybox/blobs/uploads/"
    mirror = RegistryHost("127.0.0.1:5001", "http", "/v2")
    assert repo.path(mirror, "blobs", DIGEST) == f"/v2/library/busybox/blobs/{DIGEST}?ns=docker.io"
    prefixed = RegistryHost("m.example", "https", "/v2/prefix")
    assert repo.path(prefixed, "manifests", "1").startswith("/v2/prefix/library/busybox/")
    bare = RegistryHost("m.example", "https", "")
    assert repo.path(bare, "manifests", "1").startswith("/library/busybox/manifests/1")


def test_distribution_source_labels() -> None:
    assert (
        distribution_source_label_key("127.0.0.1:5000")
        == "containerd.io/distribution.source.127.0.0.1"
    )
    assert (
        distribution_source_label_key("docker.io") == "containerd.io/distribution.source.docker.io"
    )
    assert append_distribution_source_label("", "a/b") == "a/b"
    assert append_distribution_source_label("x/y,a/b", "a/b") == "a/b,x/y"
    assert append_distribution_source_label("x/y", "c") == "c,x/y"


def test_select_repository_mount_candidate() -> None:
    key = "containerd.io/distribution.source.127.0.0.1"
    ref = Reference("127.0.0.1:5000/team/app/web", "v1")
    assert select_repository_mount_candidate(ref, {}) == ""
    assert select_repository_mount_candidate(ref, {key: "team/app/web"}) == ""  # itself
    labels = {key: "other/thing,team/app/api,team/lib"}
    assert select_repository_mount_candidate(ref, labels) == "team/app/api"
    other_host = {"containerd.io/distribution.source.docker.io": "team/app/api"}
    assert select_repository_mount_candidate(ref, other_host) == ""


def test_descriptor_new_fields_are_optional() -> None:
    d = Descriptor("t", DIGEST, 1)
    assert d.urls == ()
    assert d.platform is None
    assert Descriptor("t", DIGEST, 1, {"a": "b"}) == Descriptor("t", DIGEST, 1, {"a": "b"}, ())


def test_media_type_predicates() -> None:
    assert mt.is_index_type(mt.MEDIA_TYPE_IMAGE_INDEX)
    assert mt.is_index_type(mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST)
    assert mt.is_manifest_type(mt.MEDIA_TYPE_IMAGE_MANIFEST)
    assert mt.is_manifest_type(mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST)
    assert not mt.is_manifest_type(mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST)
    assert mt.is_schema1(mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST)
    assert mt.is_schema1("application/vnd.docker.distribution.manifest.v1+json")
    assert mt.is_layer_type(mt.MEDIA_TYPE_IMAGE_LAYER_ZSTD)
    assert mt.is_layer_type(mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP)
    assert mt.is_layer_type(mt.MEDIA_TYPE_IMAGE_LAYER_GZIP_ENCRYPTED)
    assert not mt.is_layer_type(mt.MEDIA_TYPE_IMAGE_CONFIG)
    assert mt.is_config_type(mt.MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG)
    assert mt.is_known_config(mt.MEDIA_TYPE_CONTAINERD1_CHECKPOINT_CONFIG)
    assert mt.is_non_distributable(mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP)
    assert mt.is_non_distributable(mt.MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE)
    assert mt.is_docker_type(mt.MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG)


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (mt.MEDIA_TYPE_IMAGE_LAYER, ""),
        (mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, "gzip"),
        (mt.MEDIA_TYPE_IMAGE_LAYER_ZSTD, "zstd"),
        (mt.MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE_GZIP, "gzip"),
        (mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER, "unknown"),
        (mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP, "gzip"),
        (mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP, "gzip"),
        (mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP + "+encrypted", ""),
    ],
)
def test_diff_compression(media_type: str, compression: str) -> None:
    assert mt.diff_compression(media_type) == compression


def test_diff_compression_of_a_non_layer() -> None:
    with pytest.raises(errdefs.NotImplemented):
        mt.diff_compression(mt.MEDIA_TYPE_IMAGE_CONFIG)
