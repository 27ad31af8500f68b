"""Manifest, index and config documents: reading them as containerd checks them, writing them
as Go's ``encoding/json`` does."""

from __future__ import annotations

import json

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import manifest as m
from pycontainerd.images import mediatypes as mt
from pycontainerd.platforms import Platform

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_encode_is_gos_json() -> None:
    doc = {"b": "<a&b>", "a": "é\u2028", "n": [1, 2], "o": {}}
    assert m.encode(doc) == (
        b'{"b":"\\u003ca\\u0026b\\u003e","a":"\xc3\xa9\\u2028","n":[1,2],"o":{}}'
    )


def test_descriptor_json_in_go_field_order() -> None:
    d = Descriptor(
        mt.MEDIA_TYPE_IMAGE_MANIFEST,
        D1,
        7,
        annotations={"z": "1", "a": "2"},
        urls=("http://x/y",),
        platform=Platform("linux", "arm64", "v8", os_features=("f",)),
    )
    assert m.encode(m.descriptor_to_json(d)) == (
        b'{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"'
        + D1.encode()
        + b'","size":7,"urls":["http://x/y"],"annotations":{"a":"2","z":"1"},'
        b'"platform":{"architecture":"arm64","os":"linux","os.features":["f"],"variant":"v8"}}'
    )
    assert m.descriptor_from_json(json.loads(m.encode(m.descriptor_to_json(d)))) == d


def test_index_json_has_manifests_always() -> None:
    assert m.encode(m.index_to_json(m.Index())) == b'{"schemaVersion":2,"manifests":[]}'


def _manifest(**extra: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.MEDIA_TYPE_IMAGE_MANIFEST,
        "config": {"mediaType": mt.MEDIA_TYPE_IMAGE_CONFIG, "digest": D1, "size": 3},
        "layers": [{"mediaType": mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, "digest": D2, "size": 5}],
        **extra,
    }
    return json.dumps(doc).encode()


def test_parse_manifest() -> None:
    man = m.parse_manifest(_manifest(annotations={"k": "v"}), mt.MEDIA_TYPE_IMAGE_MANIFEST)
    assert man.config == Descriptor(mt.MEDIA_TYPE_IMAGE_CONFIG, D1, 3)
    assert man.layers == (Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, D2, 5),)
    assert man.annotations == {"k": "v"}


def test_parse_index_with_platforms() -> None:
    doc = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.MEDIA_TYPE_IMAGE_MANIFEST,
                "digest": D1,
                "size": 3,
                "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
            }
        ],
    }
    idx = m.parse_index(json.dumps(doc).encode(), mt.MEDIA_TYPE_IMAGE_INDEX)
    assert idx.manifests[0].platform == Platform("linux", "arm", "v7")


@pytest.mark.parametrize(
    ("data", "media_type", "error", "text"),
    [
        (b"{nope", mt.MEDIA_TYPE_IMAGE_MANIFEST, errdefs.InvalidArgument, "invalid JSON"),
        (b"[]", mt.MEDIA_TYPE_IMAGE_MANIFEST, errdefs.InvalidArgument, "not a JSON object"),
        (
            b'{"schemaVersion":1,"fsLayers":[{"blobSum":"x"}]}',
            mt.MEDIA_TYPE_IMAGE_MANIFEST,
            errdefs.NotImplemented,
            "schema 1",
        ),
        (
            json.dumps({"manifests": [{"digest": D1, "size": 1}]}).encode(),
            mt.MEDIA_TYPE_IMAGE_MANIFEST,
            errdefs.InvalidArgument,
            "expected manifest but found index",
        ),
        (b'{"layers":[]}', mt.MEDIA_TYPE_IMAGE_MANIFEST, errdefs.InvalidArgument, "no config"),
        (
            json.dumps({"config": {"digest": "sha256:abc", "size": 1}}).encode(),
            mt.MEDIA_TYPE_IMAGE_MANIFEST,
            errdefs.InvalidArgument,
            "invalid descriptor digest",
        ),
        (
            json.dumps({"config": {"digest": D1, "size": -1}}).encode(),
            mt.MEDIA_TYPE_IMAGE_MANIFEST,
            errdefs.InvalidArgument,
            "invalid size",
        ),
    ],
)
def test_parse_manifest_refuses(
    data: bytes, media_type: str, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text) as info:
        m.parse_manifest(data, media_type, what=f"manifest {D2}")
    assert D2 in str(info.value)


def test_index_that_is_a_manifest_is_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="expected index but found manifest"):
        m.parse_index(_manifest(), mt.MEDIA_TYPE_IMAGE_INDEX)


def test_parse_config() -> None:
    cfg = m.parse_config(
        json.dumps(
            {"os": "linux", "architecture": "x86_64", "rootfs": {"diff_ids": [D1, D2]}}
        ).encode()
    )
    assert cfg.platform == Platform("linux", "amd64")
    assert cfg.diff_ids == (D1, D2)
