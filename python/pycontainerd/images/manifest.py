"""Manifests, indexes and image configs: their JSON read into values, and written as Go does.

The readers check what containerd checks (``validateMediaType``: a manifest is no index, an
index no manifest, schema 1 refused) and name the blob in every error. :func:`encode` writes
JSON byte for byte as Go's ``encoding/json`` does for containerd's structs (compact, fields in
struct order, map keys sorted, ``<``, ``>`` and ``&`` escaped), so a document we generate
(an imported Docker archive's manifests and index, an export's ``index.json``) has the digest
containerd gives it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import invalid_reason
from pycontainerd.images import mediatypes as mt
from pycontainerd.platforms import Platform, normalize

__all__ = [
    "ANNOTATION_IMAGE_NAME",
    "ANNOTATION_REF_NAME",
    "ImageConfig",
    "Index",
    "Manifest",
    "descriptor_from_json",
    "descriptor_to_json",
    "encode",
    "index_to_json",
    "manifest_to_json",
    "parse_config",
    "parse_index",
    "parse_manifest",
    "platform_from_json",
    "platform_to_json",
    "validate_media_type",
]

#: The annotation naming the image a manifest in an archive's index belongs to (containerd's).
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
#: OCI's reference-name annotation (a tag, in containerd's archives).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

#: The largest manifest, index or config read into memory.
MAX_DOCUMENT_SIZE = 20 << 20


@dataclass(frozen=True)
class Manifest:
    """An image manifest, OCI or Docker schema 2."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Index:
    """An image index or Docker manifest list."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageConfig:
    """What pycontainerd reads of an image config: its platform and layer diff IDs."""

    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""
    diff_ids: tuple[str, ...] = ()

    @property
    def platform(self) -> Platform:
        """The platform as containerd 1.6 reads it from a config: os and architecture only,
        normalized."""
        return normalize(Platform(self.os, self.architecture))


# --- JSON out -----------------------------------------------------------------------------------

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode(doc: Any) -> bytes:
    """``doc`` as Go's ``json.Marshal`` writes it: compact, UTF-8, HTML characters escaped.

    Dicts keep their order (build them in Go's struct field order); mappings meant as Go maps
    must be sorted by the caller (:func:`descriptor_to_json` does).
    """
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.translate(_GO_ESCAPES).encode()


def platform_to_json(p: Platform) -> dict[str, Any]:
    """OCI's platform object, in Go's field order."""
    out: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
    if p.os_version:
        out["os.version"] = p.os_version
    if p.os_features:
        out["os.features"] = list(p.os_features)
    if p.variant:
        out["variant"] = p.variant
    return out


def descriptor_to_json(d: Descriptor) -> dict[str, Any]:
    """An OCI descriptor object, in Go's field order."""
    out: dict[str, Any] = {}
    if d.media_type:
        out["mediaType"] = d.media_type
    out["digest"] = d.digest
    out["size"] = d.size
    if d.urls:
        out["urls"] = list(d.urls)
    if d.annotations:
        out["annotations"] = dict(sorted(d.annotations.items()))
    if d.platform is not None:
        out["platform"] = platform_to_json(d.platform)
    return out


def manifest_to_json(m: Manifest) -> dict[str, Any]:
    """A schema 2 manifest object as containerd writes one (``schemaVersion`` first)."""
    out: dict[str, Any] = {"schemaVersion": 2}
    if m.media_type:
        out["mediaType"] = m.media_type
    out["config"] = descriptor_to_json(m.config)
    out["layers"] = [descriptor_to_json(d) for d in m.layers]
    if m.annotations:
        out["annotations"] = dict(sorted(m.annotations.items()))
    return out


def index_to_json(idx: Index) -> dict[str, Any]:
    """An index object as Go's ``ocispec.Index`` marshals (``manifests`` is never omitted)."""
    out: dict[str, Any] = {"schemaVersion": 2}
    if idx.media_type:
        out["mediaType"] = idx.media_type
    out["manifests"] = [descriptor_to_json(d) for d in idx.manifests]
    if idx.annotations:
        out["annotations"] = dict(sorted(idx.annotations.items()))
    return out


# --- JSON in ------------------------------------------------------------------------------------


def _invalid(what: str, reason: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"{what}: {reason}")


def _strings(value: Any, what: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(what, f"{name} must be a list of strings")
    return tuple(value)


def _string_map(value: Any, what: str, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid(what, f"{name} must be an object of strings")
    return dict(value)


def _string(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(what, f"{key} must be a string")
    return value


def platform_from_json(obj: Any, what: str = "platform") -> Platform:
    """An OCI platform object."""
    if not isinstance(obj, dict):
        raise _invalid(what, "platform must be an object")
    return Platform(
        os=_string(obj, "os", what),
        architecture=_string(obj, "architecture", what),
        variant=_string(obj, "variant", what),
        os_version=_string(obj, "os.version", what),
        os_features=_strings(obj.get("os.features"), what, "os.features"),
    )


def descriptor_from_json(obj: Any, what: str = "descriptor") -> Descriptor:
    """An OCI descriptor object, checked: a valid digest and a size that is a whole number."""
    if not isinstance(obj, dict):
        raise _invalid(what, "descriptor must be an object")
    dgst = obj.get("digest")
    if not isinstance(dgst, str) or (reason := invalid_reason(dgst)) is not None:
        reason = "missing" if dgst is None else reason if isinstance(dgst, str) else "not a string"
        raise _invalid(what, f"invalid descriptor digest {dgst!r}: {reason}")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(what, f"descriptor {dgst} has invalid size {size!r}")
    platform = obj.get("platform")
    return Descriptor(
        media_type=_string(obj, "mediaType", what),
        digest=dgst,
        size=size,
        annotations=_string_map(obj.get("annotations"), what, "annotations"),
        urls=_strings(obj.get("urls"), what, "urls"),
        platform=platform_from_json(platform, what) if platform is not None else None,
    )


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(what, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid(what, "not a JSON object")
    return doc


def validate_media_type(doc: Mapping[str, Any], media_type: str, what: str = "document") -> None:
    """Refuse a document whose content contradicts ``media_type`` (containerd's
    ``validateMediaType``): schema 1 anywhere, an index served as a manifest, or the reverse."""
    declared = doc.get("mediaType")
    if doc.get("fsLayers"):
        raise errdefs.NotImplemented(f"{what}: schema 1 manifests are not supported")
    if mt.is_manifest_type(media_type):
        if doc.get("manifests") or (isinstance(declared, str) and mt.is_index_type(declared)):
            raise _invalid(what, f"expected manifest but found index ({media_type})")
    elif mt.is_index_type(media_type) and (
        doc.get("config")
        or doc.get("layers")
        or (isinstance(declared, str) and mt.is_manifest_type(declared))
    ):
        raise _invalid(what, f"expected index but found manifest ({media_type})")


def parse_manifest(data: bytes, media_type: str = "", what: str = "manifest") -> Manifest:
    """An image manifest; ``media_type`` is what its descriptor says."""
    doc = _load(data, what)
    validate_media_type(doc, media_type or mt.MEDIA_TYPE_IMAGE_MANIFEST, what)
    if "config" not in doc:
        raise _invalid(what, "manifest has no config")
    layers = doc.get("layers")
    if layers is None:
        layers = []
    if not isinstance(layers, list):
        raise _invalid(what, "layers must be a list")
    return Manifest(
        config=descriptor_from_json(doc["config"], f"{what}: config"),
        layers=tuple(descriptor_from_json(x, f"{what}: layer {i}") for i, x in enumerate(layers)),
        media_type=_string(doc, "mediaType", what),
        annotations=_string_map(doc.get("annotations"), what, "annotations"),
    )


def parse_index(data: bytes, media_type: str = "", what: str = "index") -> Index:
    """An image index or manifest list; ``media_type`` is what its descriptor says."""
    doc = _load(data, what)
    validate_media_type(doc, media_type or mt.MEDIA_TYPE_IMAGE_INDEX, what)
    manifests = doc.get("manifests")
    if manifests is None:
        manifests = []
    if not isinstance(manifests, list):
        raise _invalid(what, "manifests must be a list")
    return Index(
        manifests=tuple(
            descriptor_from_json(x, f"{what}: manifest {i}") for i, x in enumerate(manifests)
        ),
        media_type=_string(doc, "mediaType", what),
        annotations=_string_map(doc.get("annotations"), what, "annotations"),
    )


def parse_config(data: bytes, what: str = "config") -> ImageConfig:
    """The platform and diff IDs of an image config."""
    doc = _load(data, what)
    rootfs = doc.get("rootfs")
    diff_ids: tuple[str, ...] = ()
    if isinstance(rootfs, dict):
        diff_ids = _strings(rootfs.get("diff_ids"), what, "rootfs.diff_ids")
    return ImageConfig(
        os=_string(doc, "os", what),
        architecture=_string(doc, "architecture", what),
        variant=_string(doc, "variant", what),
        os_version=_string(doc, "os.version", what),
        diff_ids=diff_ids,
    )
