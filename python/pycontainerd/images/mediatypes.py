"""Media types of OCI and Docker images, and containerd's predicates over them.

The names follow containerd's ``images`` package and the OCI image-spec's ``specs-go/v1``
(``MediaTypeDockerSchema2Manifest`` → :data:`MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST`,
``ocispec.MediaTypeImageIndex`` → :data:`MEDIA_TYPE_IMAGE_INDEX`).
"""

from __future__ import annotations

from pycontainerd import errdefs

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "MEDIA_TYPE_CONTAINERD1_CHECKPOINT",
    "MEDIA_TYPE_CONTAINERD1_CHECKPOINT_CONFIG",
    "MEDIA_TYPE_CONTAINERD1_CHECKPOINT_OPTIONS",
    "MEDIA_TYPE_CONTAINERD1_CHECKPOINT_PRE_DUMP",
    "MEDIA_TYPE_CONTAINERD1_CHECKPOINT_RUNTIME_NAME",
    "MEDIA_TYPE_CONTAINERD1_CHECKPOINT_RUNTIME_OPTIONS",
    "MEDIA_TYPE_CONTAINERD1_RESOURCE",
    "MEDIA_TYPE_CONTAINERD1_RW",
    "MEDIA_TYPE_DESCRIPTOR",
    "MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST",
    "MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST_UNSIGNED",
    "MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG",
    "MEDIA_TYPE_DOCKER_SCHEMA2_LAYER",
    "MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN",
    "MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP",
    "MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_ZSTD",
    "MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST",
    "MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST",
    "MEDIA_TYPE_EMPTY_JSON",
    "MEDIA_TYPE_IMAGE_CONFIG",
    "MEDIA_TYPE_IMAGE_INDEX",
    "MEDIA_TYPE_IMAGE_LAYER",
    "MEDIA_TYPE_IMAGE_LAYER_ENCRYPTED",
    "MEDIA_TYPE_IMAGE_LAYER_GZIP",
    "MEDIA_TYPE_IMAGE_LAYER_GZIP_ENCRYPTED",
    "MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE",
    "MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE_GZIP",
    "MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE_ZSTD",
    "MEDIA_TYPE_IMAGE_LAYER_ZSTD",
    "MEDIA_TYPE_IMAGE_MANIFEST",
    "MEDIA_TYPE_LAYOUT_HEADER",
    "diff_compression",
    "is_config_type",
    "is_docker_type",
    "is_index_type",
    "is_known_config",
    "is_layer_type",
    "is_manifest_type",
    "is_non_distributable",
    "is_schema1",
]

# --- OCI image-spec -----------------------------------------------------------------------------

MEDIA_TYPE_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
MEDIA_TYPE_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
MEDIA_TYPE_IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_IMAGE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_IMAGE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_IMAGE_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE_GZIP = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)
MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE_ZSTD = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)
#: The empty JSON object ``{}`` (image-spec 1.1), a config for artifacts.
MEDIA_TYPE_EMPTY_JSON = "application/vnd.oci.empty.v1+json"

# --- Docker -------------------------------------------------------------------------------------

MEDIA_TYPE_DOCKER_SCHEMA2_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)
#: Not in Docker's own specification, but written by some tools (buildkit) and read by containerd.
MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST = (
    "application/vnd.docker.distribution.manifest.list.v2+json"
)
#: Docker's schema 1 manifest, signed; pycontainerd refuses it.
MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"
#: Docker's schema 1 manifest without signatures; refused as well.
MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST_UNSIGNED = "application/vnd.docker.distribution.manifest.v1+json"

# --- containerd ---------------------------------------------------------------------------------

MEDIA_TYPE_CONTAINERD1_CHECKPOINT = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
MEDIA_TYPE_CONTAINERD1_CHECKPOINT_PRE_DUMP = (
    "application/vnd.containerd.container.criu.checkpoint.predump.tar"
)
MEDIA_TYPE_CONTAINERD1_RESOURCE = "application/vnd.containerd.container.resource.tar"
MEDIA_TYPE_CONTAINERD1_RW = "application/vnd.containerd.container.rw.tar"
MEDIA_TYPE_CONTAINERD1_CHECKPOINT_CONFIG = (
    "application/vnd.containerd.container.checkpoint.config.v1+proto"
)
MEDIA_TYPE_CONTAINERD1_CHECKPOINT_OPTIONS = (
    "application/vnd.containerd.container.checkpoint.options.v1+proto"
)
MEDIA_TYPE_CONTAINERD1_CHECKPOINT_RUNTIME_NAME = (
    "application/vnd.containerd.container.checkpoint.runtime.name"
)
MEDIA_TYPE_CONTAINERD1_CHECKPOINT_RUNTIME_OPTIONS = (
    "application/vnd.containerd.container.checkpoint.runtime.options+proto"
)
MEDIA_TYPE_IMAGE_LAYER_ENCRYPTED = MEDIA_TYPE_IMAGE_LAYER + "+encrypted"
MEDIA_TYPE_IMAGE_LAYER_GZIP_ENCRYPTED = MEDIA_TYPE_IMAGE_LAYER_GZIP + "+encrypted"

#: The manifest and index types a resolver asks a registry for, in order of preference.
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    MEDIA_TYPE_IMAGE_INDEX,
    MEDIA_TYPE_IMAGE_MANIFEST,
    MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST,
)


def _parse(mt: str) -> tuple[str, list[str]]:
    """The base type and the sorted ``+`` extensions of ``mt``."""
    base, *ext = mt.split("+") if mt else [""]
    return base, sorted(ext)


def diff_compression(media_type: str) -> str:
    """The compression of a layer type: ``gzip``, ``zstd``, ``""`` (none or unknown extension),
    or ``unknown`` (a Docker tar layer, whose compression must be detected).

    Raises :class:`~pycontainerd.errdefs.NotImplemented` for a type that is no layer.
    """
    base, ext = _parse(media_type)
    if base in (MEDIA_TYPE_DOCKER_SCHEMA2_LAYER, MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN):
        return "" if ext else "unknown"
    if base in (MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP, MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP):
        return "" if ext else "gzip"
    if base == MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_ZSTD:
        return "" if ext else "zstd"
    if base in (MEDIA_TYPE_IMAGE_LAYER, MEDIA_TYPE_IMAGE_LAYER_NON_DISTRIBUTABLE):
        if ext and ext[-1] in ("gzip", "zstd"):
            return ext[-1]
        return ""
    raise errdefs.NotImplemented(f"unrecognised mediatype {media_type}")


def is_non_distributable(media_type: str) -> bool:
    """Whether layers of this type may not be pushed to a registry (foreign layers)."""
    return media_type.startswith(
        (
            "application/vnd.oci.image.layer.nondistributable.",
            "application/vnd.docker.image.rootfs.foreign.",
        )
    )


def is_layer_type(media_type: str) -> bool:
    """Whether this is a layer type, compressed or not, OCI or Docker."""
    if media_type.startswith("application/vnd.oci.image.layer."):
        return True
    base, _ = _parse(media_type)
    return base in (
        MEDIA_TYPE_DOCKER_SCHEMA2_LAYER,
        MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP,
        MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN,
        MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP,
        MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_ZSTD,
    )


def is_docker_type(media_type: str) -> bool:
    """Whether this is one of Docker's types rather than OCI's."""
    return media_type.startswith("application/vnd.docker.")


def is_manifest_type(media_type: str) -> bool:
    """An image manifest, OCI or Docker schema 2."""
    return media_type in (MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST, MEDIA_TYPE_IMAGE_MANIFEST)


def is_index_type(media_type: str) -> bool:
    """An image index: OCI index or Docker manifest list."""
    return media_type in (MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST_LIST)


def is_config_type(media_type: str) -> bool:
    """An image config, OCI or Docker."""
    return media_type in (MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG, MEDIA_TYPE_IMAGE_CONFIG)


def is_known_config(media_type: str) -> bool:
    """A config containerd knows: an image config or a checkpoint."""
    return media_type in (
        MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG,
        MEDIA_TYPE_IMAGE_CONFIG,
        MEDIA_TYPE_CONTAINERD1_CHECKPOINT,
        MEDIA_TYPE_CONTAINERD1_CHECKPOINT_CONFIG,
    )


def is_schema1(media_type: str) -> bool:
    """Docker's schema 1 manifest, signed or not (``text/plain`` is how old registries serve it)."""
    return media_type in (
        MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST,
        MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST_UNSIGNED,
    )
