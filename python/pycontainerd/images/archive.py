"""Image archives: OCI image-layout tars and Docker ``save`` tars, in and out, as containerd's
``images/archive`` and ``ctr images import|export`` handle them.

:func:`import_index` reads a tar stream into a content store and returns the descriptor of an
index of what it holds: the archive's own ``index.json`` for an OCI layout; for a Docker
archive (``manifest.json``, a config and layer tars), a schema 2 manifest per image and an index
over them whose entries carry the image names. :func:`image_records` turns that index into the
image records to create, labelling content for garbage collection on the way.

:func:`export` writes an OCI layout (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``)
with a Docker ``manifest.json`` beside it, so ``docker load`` reads it too. Every blob is
checked against its digest as it is copied out.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import posixpath
import tarfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Protocol

from pycontainerd import errdefs
from pycontainerd.content import Info, Provider, ReaderAt, Store, Writer
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import ALGORITHMS, invalid_reason, split_digest
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import (
    Image,
    children,
    filter_platforms,
    platforms,
    read_document,
    set_children_labels,
    walk,
)
from pycontainerd.images.manifest import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    Index,
    Manifest,
    encode,
    index_to_json,
    manifest_to_json,
    parse_index,
    parse_manifest,
)
from pycontainerd.platforms import MatchComparer, sort_by_preference
from pycontainerd.reference import parse, parse_docker_ref, parse_normalized_named, tag_name_only

__all__ = [
    "OCI_LAYOUT_VERSION",
    "UNCOMPRESSED_LABEL",
    "ExportOptions",
    "ImportOptions",
    "add_name_annotation",
    "add_ref_prefix",
    "digest_translator",
    "export",
    "filter_ref_prefix",
    "image_records",
    "import_index",
    "oci_reference_name",
]

log = logging.getLogger(__name__)

#: The image-layout version we read and write.
OCI_LAYOUT_VERSION = "1.0.0"
#: The label on a compressed blob naming the digest of its uncompressed form.
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
#: The largest JSON file of an archive we read.
JSON_LIMIT = 20 << 20
_CHUNK = 1 << 20


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# --- names --------------------------------------------------------------------------------------


def oci_reference_name(name: str) -> str:
    """The OCI ``ref.name`` of an image name: only its object (``latest``), as containerd."""
    try:
        return parse(name).object
    except errdefs.InvalidArgument:
        return name


def add_name_annotation(name: str, annotations: Mapping[str, str]) -> dict[str, str]:
    """``annotations`` with the image name and its OCI reference name added."""
    out = dict(annotations)
    out[ANNOTATION_IMAGE_NAME] = name
    out[ANNOTATION_REF_NAME] = oci_reference_name(name)
    return out


def _is_image_prefix(s: str, prefix: str) -> bool:
    if not s.startswith(prefix):
        return False
    return len(s) == len(prefix) or s[len(prefix)] in "/:@"


def _ref_translator(image: str, check_prefix: bool) -> Callable[[str], str]:
    def translate(ref: str) -> str:
        if any(c in ref for c in "/:@"):
            if check_prefix and not _is_image_prefix(ref, image):
                return ""
            return ref
        return f"{image}:{ref}"

    return translate


def add_ref_prefix(image: str) -> Callable[[str], str]:
    """Name a tag-only OCI reference ``image:tag``; leave full references alone."""
    return _ref_translator(image, False)


def filter_ref_prefix(image: str) -> Callable[[str], str]:
    """As :func:`add_ref_prefix`, and drop full references not under ``image``."""
    return _ref_translator(image, True)


def digest_translator(prefix: str) -> Callable[[str], str]:
    """Name a manifest ``prefix@digest``."""
    return lambda dgst: f"{prefix}@{dgst}"


def _familiarize(ref: str) -> str:
    try:
        return tag_name_only(parse_normalized_named(ref)).familiar_string()
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"failed to parse {ref!r}: {exc}") from None


# --- import -------------------------------------------------------------------------------------


def _abort_quietly(store: Store, ref: str) -> None:
    with contextlib.suppress(errdefs.ContainerdError):
        store.abort(ref)


def _write_stream(store: Store, ref: str, reader: _Readable, size: int, expected: str = "") -> str:
    """Write ``size`` bytes of ``reader`` as a blob; its digest. ``expected`` is checked at
    commit (and a blob the store has is not written again)."""
    desc = Descriptor("", expected, size)
    try:
        writer = store.writer(ref, desc=desc)
    except errdefs.AlreadyExists:
        return expected
    h = None if expected else hashlib.sha256()
    ok = False
    try:
        if writer.status().offset:
            writer.truncate(0)
        left = size
        while left > 0:
            data = reader.read(min(_CHUNK, left))
            if not data:
                raise errdefs.InvalidArgument(f"ingest {ref}: the archive ends inside the file")
            writer.write(data)
            if h is not None:
                h.update(data)
            left -= len(data)
        dgst = expected or f"sha256:{h.hexdigest() if h else ''}"
        with contextlib.suppress(errdefs.AlreadyExists):
            writer.commit(size, dgst)
        ok = True
        return dgst
    finally:
        if not ok:
            writer.close()
            _abort_quietly(store, ref)


def _write_bytes(store: Store, ref: str, data: bytes, desc: Descriptor) -> None:
    try:
        writer = store.writer(ref, desc=desc)
    except errdefs.AlreadyExists:
        return
    with writer:
        if writer.status().offset:
            writer.truncate(0)
        writer.write(data)
        with contextlib.suppress(errdefs.AlreadyExists):
            writer.commit(desc.size, desc.digest)


def _write_document(store: Store, doc: dict[str, Any], media_type: str) -> Descriptor:
    data = encode(doc)
    desc = Descriptor(media_type, f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))
    _write_bytes(store, f"manifest-{desc.digest}", data, desc)
    return desc


def _digest_from_path(name: str) -> str:
    """``blobs/<alg>/<hex>`` names its digest; anything else names none."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] in ALGORITHMS:
        dgst = f"{parts[1]}:{parts[2]}"
        if invalid_reason(dgst) is None:
            return dgst
    return ""


def _read_json(f: IO[bytes], name: str) -> Any:
    data = f.read(JSON_LIMIT + 1)
    if len(data) > JSON_LIMIT:
        raise errdefs.InvalidArgument(f"{name}: larger than {JSON_LIMIT} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errdefs.InvalidArgument(f"{name}: invalid JSON: {exc}") from None


@dataclass(frozen=True)
class ImportOptions:
    """``compress`` gzips the uncompressed layers of a Docker archive, as ctr's
    ``--compress-blobs``."""

    compress: bool = False


@dataclass
class _DockerManifest:
    config: str
    repo_tags: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


def _docker_manifests(doc: Any) -> list[_DockerManifest]:
    if not isinstance(doc, list):
        raise errdefs.InvalidArgument("manifest.json: not a list")
    out = []
    for entry in doc:
        if not isinstance(entry, dict):
            raise errdefs.InvalidArgument("manifest.json: an entry is not an object")
        config = entry.get("Config")
        tags = entry.get("RepoTags") or []
        layers = entry.get("Layers") or []
        if not isinstance(config, str):
            raise errdefs.InvalidArgument("manifest.json: Config must be a string")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise errdefs.InvalidArgument("manifest.json: RepoTags must be strings")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise errdefs.InvalidArgument("manifest.json: Layers must be strings")
        out.append(_DockerManifest(config, list(tags), list(layers)))
    return out


def _is_compressed(head: bytes) -> bool:
    """Whether a blob starts like gzip or zstd (containerd's ``DetectCompression``)."""
    return head.startswith((b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd"))


class _GzipSink:
    """A file-like sink that gzip writes into: bytes go to a content writer and a digest."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self.writer.write(data)
            self.hash.update(data)
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _compress_blob(store: Store, ra: ReaderAt, uncompressed: str) -> Descriptor:
    algorithm, encoded = split_digest(uncompressed)
    ref = f"compress-blob-{algorithm}-{encoded}"
    writer = store.writer(ref)
    ok = False
    try:
        writer.truncate(0)
        sink = _GzipSink(writer)
        with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:
            offset = 0
            while offset < ra.size:
                data = ra.read_at(offset, _CHUNK)
                if not data:
                    break
                gz.write(data)
                offset += len(data)
        dgst = f"sha256:{sink.hash.hexdigest()}"
        with contextlib.suppress(errdefs.AlreadyExists):
            writer.commit(sink.size, dgst, labels={UNCOMPRESSED_LABEL: uncompressed})
        ok = True
        return Descriptor(mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP, dgst, sink.size)
    finally:
        if not ok:
            writer.close()
            _abort_quietly(store, ref)


def _resolve_layers(
    store: Store, files: Sequence[str], blobs: Mapping[str, Descriptor], compress: bool
) -> list[Descriptor]:
    layers: list[Descriptor] = []
    for f in files:
        desc = blobs.get(f)
        if desc is None:
            raise errdefs.NotFound(f"failed to resolve layers: layer {f!r} not found")
        layers.append(desc)
    # A layer imported before and compressed then: use the compressed blob.
    wanted = {d.digest for d in layers}
    compressed: dict[str, Info] = {}
    filters = [f'labels."{UNCOMPRESSED_LABEL}"=={d}' for d in sorted(wanted)]
    if filters:

        def seen(info: Info) -> None:
            dgst = info.labels.get(UNCOMPRESSED_LABEL, "")
            if dgst in wanted:
                compressed[dgst] = info

        store.walk(seen, *filters)
    out: list[Descriptor] = []
    for f, desc in zip(files, layers, strict=True):
        if info := compressed.get(desc.digest):
            with store.reader_at(info.digest) as ra:
                head = ra.read_at(0, 10)
            media_type = (
                mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP
                if _is_compressed(head)
                else mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER
            )
            out.append(Descriptor(media_type, info.digest, info.size))
            continue
        with store.reader_at(desc.digest) as ra:
            head = ra.read_at(0, 10)
            if _is_compressed(head):
                out.append(replace(desc, media_type=mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP))
            elif compress:
                out.append(_compress_blob(store, ra, desc.digest))
            else:
                out.append(replace(desc, media_type=mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER))
        log.debug("import: layer %s is %s", f, out[-1].media_type)
    return out


def import_index(
    store: Store,
    reader: _Readable,
    options: ImportOptions | None = None,
    *,
    cancel: threading.Event | None = None,
) -> Descriptor:
    """Read an OCI layout or Docker archive (a tar stream, plain or gzipped) into ``store``;
    the descriptor of the index of its images (containerd's ``archive.ImportIndex``)."""
    options = options or ImportOptions()
    oci_version = ""
    docker: list[_DockerManifest] | None = None
    symlinks: dict[str, str] = {}
    blobs: dict[str, Descriptor] = {}
    try:
        with tarfile.open(fileobj=reader, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                if cancel is not None and cancel.is_set():
                    raise errdefs.Canceled("import: canceled")
                if member.issym():
                    symlinks[member.name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(member.name), member.linkname)
                    )
                if not member.isreg():
                    continue
                name = posixpath.normpath(member.name)
                f = tar.extractfile(member)
                assert f is not None
                if name == "oci-layout":
                    layout = _read_json(f, name)
                    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else ""
                    oci_version = version if isinstance(version, str) else ""
                    if not oci_version:
                        raise errdefs.InvalidArgument("oci-layout: no imageLayoutVersion")
                elif name == "manifest.json":
                    docker = _docker_manifests(_read_json(f, name))
                else:
                    expected = _digest_from_path(name)
                    try:
                        dgst = _write_stream(store, f"tar-{name}", f, member.size, expected)
                    except errdefs.ContainerdError as exc:
                        raise type(exc)(f"failed to ingest {member.name!r}: {exc}") from None
                    blobs[name] = Descriptor("", dgst, member.size)
    except tarfile.TarError as exc:
        raise errdefs.InvalidArgument(f"import: invalid tar archive: {exc}") from None

    if oci_version:
        if oci_version != OCI_LAYOUT_VERSION:
            raise errdefs.InvalidArgument(f"unsupported OCI version {oci_version}")
        idx = blobs.get("index.json")
        if idx is None:
            raise errdefs.InvalidArgument(f"missing index.json in OCI layout {OCI_LAYOUT_VERSION}")
        return replace(idx, media_type=mt.MEDIA_TYPE_IMAGE_INDEX)
    if docker is None:
        raise errdefs.InvalidArgument("unrecognized image format")

    for name, target in symlinks.items():
        if target not in blobs:
            raise errdefs.InvalidArgument(
                f"no target for symlink layer from {name!r} to {target!r}"
            )
        blobs[name] = blobs[target]

    entries: list[Descriptor] = []
    for m in docker:
        config = blobs.get(posixpath.normpath(m.config)) if m.config else None
        if config is None:
            raise errdefs.NotFound(f"image config {m.config!r} not found")
        config = replace(config, media_type=mt.MEDIA_TYPE_DOCKER_SCHEMA2_CONFIG)
        layers = _resolve_layers(
            store, [posixpath.normpath(x) for x in m.layers], blobs, options.compress
        )
        manifest = Manifest(config, tuple(layers), mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST)
        desc = _write_document(
            store, manifest_to_json(manifest), mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST
        )
        found = platforms(store, desc)
        if found:
            desc = replace(desc, platform=found[0])
        if not m.repo_tags:
            entries.append(desc)
        for tag in m.repo_tags:
            normalized = str(parse_docker_ref(tag))
            entries.append(
                replace(
                    desc,
                    annotations={
                        ANNOTATION_IMAGE_NAME: normalized,
                        ANNOTATION_REF_NAME: oci_reference_name(normalized),
                    },
                )
            )
    return _write_document(store, index_to_json(Index(tuple(entries))), mt.MEDIA_TYPE_IMAGE_INDEX)


def _image_name(annotations: Mapping[str, str], translate: Callable[[str], str] | None) -> str:
    name = annotations.get(ANNOTATION_IMAGE_NAME, "")
    if name:
        return name
    name = annotations.get(ANNOTATION_REF_NAME, "")
    if name and translate is not None:
        name = translate(name)
    return name


def image_records(
    store: Store,
    index: Descriptor,
    *,
    platform: MatchComparer,
    index_name: str = "",
    translate: Callable[[str], str] | None = None,
    digest_ref: Callable[[str], str] | None = None,
    skip_digest_ref: Callable[[str], bool] | None = None,
) -> list[Image]:
    """The images an imported index names (containerd's ``Client.Import`` walk): one per named
    manifest, one for the index itself with ``index_name``, one ``digest_ref(digest)`` per
    manifest; content for ``platform`` gets its garbage-collection labels.
    :class:`~pycontainerd.errdefs.NotFound` when ``platform`` leaves nothing."""
    images: list[Image] = []
    if index_name:
        images.append(Image(index_name, index))
    non_empty = False

    def handle(desc: Descriptor) -> list[Descriptor]:
        nonlocal non_empty
        if desc.digest != index.digest:
            kids = children(store, desc)
        else:
            idx = parse_index(read_document(store, desc), desc.media_type, f"index {desc.digest}")
            for m in idx.manifests:
                name = _image_name(m.annotations, translate)
                if name:
                    images.append(Image(name, m))
                if skip_digest_ref is not None and skip_digest_ref(name):
                    continue
                if digest_ref is not None and (ref := digest_ref(m.digest)):
                    images.append(Image(ref, m))
            kids = list(idx.manifests)
        kids = filter_platforms(kids, platform)
        if kids:
            set_children_labels(store, desc, kids)
            non_empty = True
        return kids

    walk(handle, [index])
    if not non_empty:
        raise errdefs.NotFound("import: image might be filtered out: no content for the platform")
    return images


# --- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    """``platform`` chooses the manifests of an index (and the one ``manifest.json`` names);
    ``all_platforms`` exports every manifest of an index (all must be present);
    ``skip_docker_manifest`` leaves ``manifest.json`` out; ``skip_non_distributable`` leaves
    foreign layers out."""

    platform: MatchComparer | None = None
    all_platforms: bool = False
    skip_docker_manifest: bool = False
    skip_non_distributable: bool = False


@dataclass
class _Record:
    name: str
    mode: int
    size: int = 0
    data: bytes | None = None
    blob: Descriptor | None = None
    directory: bool = False


@dataclass
class _ExportManifest:
    manifest: Descriptor
    names: list[str] = field(default_factory=list)


def _blob_record(desc: Descriptor, options: ExportOptions) -> _Record | None:
    if options.skip_non_distributable and mt.is_non_distributable(desc.media_type):
        return None
    algorithm, encoded = split_digest(desc.digest)
    return _Record(f"blobs/{algorithm}/{encoded}", 0o444, desc.size, blob=desc)


def _records_of(
    store: Provider, desc: Descriptor, algorithms: set[str], options: ExportOptions
) -> list[_Record]:
    out: list[_Record] = []

    def handle(d: Descriptor) -> list[Descriptor]:
        kids = children(store, d)
        if (record := _blob_record(d, options)) is not None:
            out.append(record)
        algorithms.add(split_digest(d.digest)[0])
        return kids

    walk(handle, [desc])
    return out


def _manifest_json(store: Provider, manifests: Iterable[_ExportManifest]) -> bytes:
    entries = []
    for em in manifests:
        m = parse_manifest(
            read_document(store, em.manifest),
            em.manifest.media_type,
            f"manifest {em.manifest.digest}",
        )
        alg, enc = split_digest(m.config.digest)
        layers = []
        for layer in m.layers:
            la, le = split_digest(layer.digest)
            layers.append(f"blobs/{la}/{le}")
        entries.append(
            {
                "Config": f"blobs/{alg}/{enc}",
                "RepoTags": [_familiarize(n) for n in em.names] or None,
                "Layers": layers or None,
            }
        )
    return encode(entries)


class _CheckedReader:
    """A blob read front to back for tarfile, its digest checked at the end."""

    def __init__(self, ra: ReaderAt, desc: Descriptor) -> None:
        self.ra = ra
        self.desc = desc
        self.offset = 0
        self.hash = hashlib.new(split_digest(desc.digest)[0])

    def read(self, n: int = -1) -> bytes:
        left = self.desc.size - self.offset
        if n < 0 or n > left:
            n = left
        data = self.ra.read_at(self.offset, n) if n else b""
        self.offset += len(data)
        self.hash.update(data)
        return data

    def check(self) -> None:
        actual = f"{self.hash.name}:{self.hash.hexdigest()}"
        if self.offset != self.desc.size or actual != self.desc.digest:
            raise errdefs.FailedPrecondition(
                f"export {self.desc.digest}: unexpected digest {actual} copied"
            )


def _tarinfo(record: _Record) -> tarfile.TarInfo:
    info = tarfile.TarInfo(record.name)
    info.mode = record.mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if record.directory:
        info.type = tarfile.DIRTYPE
    else:
        info.size = record.size
    return info


def export(
    store: Provider,
    out: IO[bytes],
    manifests: Sequence[Descriptor],
    options: ExportOptions | None = None,
) -> None:
    """Write the images ``manifests`` name (descriptors of manifests or indexes, with
    :func:`add_name_annotation` names) to ``out`` as an OCI layout tar with a Docker
    ``manifest.json`` (containerd's ``archive.Export``)."""
    options = options or ExportOptions()
    layout = encode({"imageLayoutVersion": OCI_LAYOUT_VERSION})
    index = encode(index_to_json(Index(tuple(manifests))))
    records = [
        _Record("oci-layout", 0o444, len(layout), layout),
        _Record("index.json", 0o644, len(index), index),
    ]
    algorithms: set[str] = set()
    docker: dict[str, _ExportManifest] = {}
    resolved: dict[str, str] = {}
    platform = options.platform
    for desc in manifests:
        if mt.is_manifest_type(desc.media_type):
            em = docker.get(desc.digest)
            if em is None:
                records += _records_of(store, desc, algorithms, options)
                em = docker[desc.digest] = _ExportManifest(desc)
            name = desc.annotations.get(ANNOTATION_IMAGE_NAME, "")
            if name and not options.skip_docker_manifest:
                em.names.append(name)
        elif mt.is_index_type(desc.media_type):
            if desc.digest in resolved:
                d = resolved[desc.digest]
            else:
                if (record := _blob_record(desc, options)) is not None:
                    records.append(record)
                algorithms.add(split_digest(desc.digest)[0])
                idx = parse_index(
                    read_document(store, desc), desc.media_type, f"index {desc.digest}"
                )
                chosen: list[Descriptor] = []
                for m in idx.manifests:
                    if platform is not None:
                        if m.platform is None or platform.match(m.platform):
                            chosen.append(m)
                        elif not options.all_platforms:
                            continue
                    records += _records_of(store, m, algorithms, options)
                d = ""
                if not options.skip_docker_manifest:
                    if chosen:
                        assert platform is not None
                        best = sort_by_preference(chosen, platform, lambda x: x.platform)[0]
                        d = best.digest
                        docker[d] = _ExportManifest(best)
                    elif platform is not None:
                        raise errdefs.NotFound(
                            f"export {desc.digest}: no manifest found for platform {platform}"
                        )
                resolved[desc.digest] = d
            if d and (name := desc.annotations.get(ANNOTATION_IMAGE_NAME, "")):
                docker[d].names.append(name)
        else:
            raise errdefs.InvalidArgument(
                f"export {desc.digest}: only manifests may be exported, not {desc.media_type}"
            )
    if docker:
        data = _manifest_json(store, docker.values())
        records.append(_Record("manifest.json", 0o644, len(data), data))
    if algorithms:
        records.append(_Record("blobs/", 0o755, directory=True))
        records += [_Record(f"blobs/{a}/", 0o755, directory=True) for a in algorithms]

    records.sort(key=lambda r: r.name)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        tar.copybufsize = _CHUNK  # type: ignore[attr-defined]  # missing from typeshed
        last = ""
        for record in records:
            if record.name == last:
                continue
            last = record.name
            info = _tarinfo(record)
            if record.blob is not None:
                with store.reader_at(record.blob) as ra:
                    reader = _CheckedReader(ra, record.blob)
                    tar.addfile(info, reader)
                    reader.check()
            elif record.data is not None:
                tar.addfile(info, io.BytesIO(record.data))
            else:
                tar.addfile(info)
