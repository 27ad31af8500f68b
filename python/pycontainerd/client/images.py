"""``Client.images`` and ``Client.pull``: image records, and moving images in and out.

Records go through the Images service in the client's namespace. Pull and import write content
through the Content service under a lease (``containerd.io/gc.expire`` a day ahead), so garbage
collection leaves their work alone until the image record holds it; the lease goes when they
end, as containerd's client does. A daemon without the Leases service is used without one.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING

from google.protobuf import field_mask_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from pycontainerd.client.content import ProxyContentStore
from pycontainerd.client.diff import ProxyDiff
from pycontainerd.client.snapshots import ProxySnapshotter
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import validate_digest
from pycontainerd.images import archive
from pycontainerd.images import image as imagesmod
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import CheckResult, Image
from pycontainerd.images.manifest import parse_config
from pycontainerd.images.progress import ProgressFunc
from pycontainerd.images.pull import DEFAULT_MAX_CONCURRENT_DOWNLOADS, FetchOptions, fetch
from pycontainerd.images.push import DEFAULT_MAX_CONCURRENT_UPLOADS, PushOptions, push
from pycontainerd.images.rootfs import chain_id
from pycontainerd.leases import RESOURCE_INGESTS, Resource
from pycontainerd.platforms import (
    ALL,
    MatchComparer,
    Platform,
    any_of,
    default,
    default_strict,
    host,
    only,
    only_strict,
    ordered,
    parse,
)
from pycontainerd.plugin import Type
from pycontainerd.remotes import Resolver, docker_config_credentials
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER
from pycontainerd.unpack import Unpacker, UnpackResult

if TYPE_CHECKING:
    from pycontainerd.client.client import Client

__all__ = [
    "PULL_LABEL",
    "ImagesAPI",
    "PlatformSpec",
    "default_resolver",
    "fetch_image",
    "fetch_matcher",
    "image_from_proto",
    "image_to_proto",
    "pull_lease",
    "pull_matcher",
    "temporary_lease",
]

#: The label of a lease holding the partial downloads of a failed pull of its value.
PULL_LABEL = "pycontainerd.io/pull"
#: How long a pull's or import's lease lives if its client never removes it.
LEASE_EXPIRY = datetime.timedelta(hours=24)

#: A platform as the API takes it: ``"linux/arm64"``, a :class:`Platform`, or several.
PlatformSpec = str | Platform | Sequence[str | Platform]

log = logging.getLogger(__name__)


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def image_to_proto(image: Image) -> images_pb2.Image:
    """The Images service's message of ``image``."""
    t = image.target
    return images_pb2.Image(
        name=image.name,
        labels=dict(image.labels),
        target=descriptor_pb2.Descriptor(
            media_type=t.media_type,
            digest=t.digest,
            size=t.size,
            annotations=dict(t.annotations),
        ),
        created_at=_timestamp(image.created_at),
        updated_at=_timestamp(image.updated_at),
    )


def image_from_proto(image: images_pb2.Image) -> Image:
    """An ``Image`` from the Images service's message."""
    t = image.target
    return Image(
        name=image.name,
        target=Descriptor(t.media_type, t.digest, t.size, dict(t.annotations)),
        labels=dict(image.labels),
        created_at=image.created_at.ToNanoseconds(),
        updated_at=image.updated_at.ToNanoseconds(),
    )


def _platforms(spec: PlatformSpec | None) -> list[Platform]:
    if spec is None:
        return []
    items = [spec] if isinstance(spec, (str, Platform)) else list(spec)
    return [parse(p) if isinstance(p, str) else p for p in items]


@contextlib.contextmanager
def temporary_lease(client: Client) -> Iterator[str | None]:
    """A lease for the block (containerd's ``WithLease``), expiring in a day should it outlive
    its client; the client's own lease if it has one (kept); None when the daemon has no
    Leases service."""
    if client.lease:
        yield client.lease
        return
    try:
        lease = client.leases.create(expire=LEASE_EXPIRY).id
    except errdefs.NotImplemented:
        yield None
        return
    try:
        yield lease
    finally:
        with contextlib.suppress(errdefs.NotFound):
            client.leases.delete(lease)


def _quote(value: str) -> str:
    """A filter value, quoted as containerd's filters read it."""
    return json.dumps(value, ensure_ascii=False)


@contextlib.contextmanager
def pull_lease(client: Client, ref: str) -> Iterator[str | None]:
    """The lease of a pull: as :func:`temporary_lease`, but when the pull fails its partial
    ingests are handed to a lease labelled ``pycontainerd.io/pull=<ref>`` that expires in a
    day, so that pulling again resumes them; a pull that succeeds removes such leases."""
    if client.lease:
        yield client.lease
        return
    try:
        lease = client.leases.create(expire=LEASE_EXPIRY).id
    except errdefs.NotImplemented:
        yield None
        return
    ok = False
    try:
        yield lease
        ok = True
    finally:
        try:
            if ok:
                for old in client.leases.list(f"labels.{_quote(PULL_LABEL)}=={_quote(ref)}"):
                    with contextlib.suppress(errdefs.NotFound):
                        client.leases.delete(old.id)
            else:
                _keep_partial_ingests(client, lease, ref)
            with contextlib.suppress(errdefs.NotFound):
                client.leases.delete(lease)
        except errdefs.ContainerdError as exc:
            # The daemon is gone (killed, say): the lease stays, and expires by itself.
            if ok:
                raise
            log.info("pull %s: lease %s kept: %s", ref, lease, exc)


def _keep_partial_ingests(client: Client, lease: str, ref: str) -> None:
    ingests = [r for r in client.leases.list_resources(lease) if r.type == RESOURCE_INGESTS]
    active = {s.ref for s in client.content.list_statuses()}
    partial = [r for r in ingests if r.id in active]
    if not partial:
        return
    keep = client.leases.create(labels={PULL_LABEL: ref}, expire=LEASE_EXPIRY)
    for r in partial:
        client.leases.add_resource(keep.id, r)
    log.info("pull %s: %d partial downloads kept under lease %s", ref, len(partial), keep.id)


def _store(client: Client, lease: str | None) -> ProxyContentStore:
    if lease is None or lease == client.lease:
        return client.content
    return client.leases.content_store(lease)


def default_resolver(*, plain_http: bool = False) -> Resolver:
    """A resolver with the default hosts directories and Docker's ``config.json`` credentials."""
    return Resolver(credentials=docker_config_credentials(), plain_http=plain_http)


def fetch_image(
    client: Client,
    ref: str,
    *,
    matcher: MatchComparer | None,
    limit: int,
    all_metadata: bool = False,
    resolver: Resolver | None = None,
    plain_http: bool = False,
    max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
    labels: Mapping[str, str] | None = None,
    progress: ProgressFunc | None = None,
    cancel: threading.Event | None = None,
    unpack: str | None = None,
    unpacked: list[UnpackResult] | None = None,
) -> Image:
    """Fetch ``ref`` under a lease and create or update its image record.

    ``unpack`` names a snapshotter to unpack the image's layers into as they arrive (what it
    did is appended to ``unpacked``)."""
    options = FetchOptions(
        platform=matcher,
        limit=limit,
        all_metadata=all_metadata,
        max_concurrent_downloads=max_concurrent_downloads,
        labels=dict(labels or {}),
    )
    own = resolver is None
    res = resolver or default_resolver(plain_http=plain_http)
    try:
        with pull_lease(client, ref) as lease:
            store = _store(client, lease)
            unpacker = None
            if unpack:
                unpacker = _unpacker(client, lease, store, unpack, matcher or default())
            try:
                img = fetch(
                    store,
                    res,
                    ref,
                    options,
                    progress=progress,
                    cancel=cancel,
                    on_fetched=unpacker.fetched if unpacker else None,
                )
            except BaseException:
                if unpacker is not None:
                    with contextlib.suppress(Exception):
                        unpacker.wait()
                raise
            if unpacker is not None:
                result = unpacker.wait()
                if unpacked is not None:
                    unpacked.append(result)
            return client.images.create_or_update(img)
    finally:
        if own:
            res.close()


def _unpacker(
    client: Client,
    lease: str | None,
    store: ProxyContentStore,
    snapshotter: str,
    platform: MatchComparer,
) -> Unpacker:
    """An unpacker through the daemon's Snapshots and Diff services, under ``lease``."""

    def hold(chain: str) -> None:
        if lease is not None:
            client.leases.add_resource(lease, Resource(chain, f"snapshots/{snapshotter}"))

    return Unpacker(
        store,
        ProxySnapshotter(client._conn, client.namespace, snapshotter, lease=lease),
        ProxyDiff(client._conn, client.namespace, lease=lease),
        snapshotter_name=snapshotter,
        rebase=_can_rebase(client, snapshotter),
        platform=platform,
        hold=hold,
    )


def _can_rebase(client: Client, snapshotter: str) -> bool:
    """Whether the daemon's ``snapshotter`` commits parentless snapshots onto parents (its
    ``rebase`` capability): then layers unpack in parallel."""
    try:
        plugins = client.plugins([f"type=={Type.SNAPSHOT.value},id=={snapshotter}"])
    except errdefs.ContainerdError:
        return False
    return any("rebase" in p.capabilities for p in plugins)


class ImagesAPI:
    """The image records of the client's namespace, and import, export and push."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._stub = images_pb2_grpc.ImagesStub(client.channel)

    # --- records ---------------------------------------------------------------------------

    def get(self, name: str) -> Image:
        """The image record ``name``; NotFound if there is none."""
        resp = self._client.call(self._stub.Get, images_pb2.GetImageRequest(name=name))
        return image_from_proto(resp.image)

    def list(self, *filters: str) -> list[Image]:
        """Images matching any of ``filters`` (``name==x``, ``labels."k"==v``); all without."""
        req = images_pb2.ListImagesRequest(filters=list(filters))
        return [image_from_proto(i) for i in self._client.call(self._stub.List, req).images]

    def create(self, image: Image) -> Image:
        """Record ``image``; AlreadyExists if the name is taken."""
        req = images_pb2.CreateImageRequest(image=image_to_proto(image))
        return image_from_proto(self._client.call(self._stub.Create, req).image)

    def update(self, image: Image, *fieldpaths: str) -> Image:
        """Replace the record, or only the ``labels``, ``labels.K``, ``target``,
        ``annotations`` paths given."""
        req = images_pb2.UpdateImageRequest(image=image_to_proto(image))
        if fieldpaths:
            req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(fieldpaths)))
        return image_from_proto(self._client.call(self._stub.Update, req).image)

    def delete(self, name: str, *, sync: bool = False) -> None:
        """Remove the record; ``sync`` asks the daemon to collect its content before answering."""
        self._client.call(self._stub.Delete, images_pb2.DeleteImageRequest(name=name, sync=sync))

    def create_or_update(self, image: Image) -> Image:
        """Create the record, or replace it if the name is taken (containerd's pull does)."""
        while True:
            try:
                return self.create(image)
            except errdefs.AlreadyExists:
                pass
            try:
                return self.update(image)
            except errdefs.NotFound:
                continue  # removed meanwhile: create it again

    def tag(self, source: str, *targets: str, force: bool = False) -> builtins.list[Image]:
        """Records named ``targets`` pointing where ``source`` points; ``force`` replaces
        existing ones."""
        if not targets:
            raise errdefs.InvalidArgument("please provide an image reference to tag to")
        src = self.get(source)
        out = []
        for target in targets:
            img = Image(target, src.target, src.labels)
            try:
                out.append(self.create(img))
            except errdefs.AlreadyExists:
                if not force:
                    raise
                self.delete(target)
                out.append(self.create(img))
        return out

    def set_labels(
        self, name: str, labels: Mapping[str, str], *, replace_all: bool = False
    ) -> Image:
        """Set labels (an empty value removes one), or replace them all."""
        paths = ["labels"] if replace_all else [f"labels.{k}" for k in labels]
        img = Image(name, Descriptor("", "", 0), {k: v for k, v in labels.items() if v})
        if not paths:
            return self.get(name)
        return self.update(img, *paths)

    # --- content ---------------------------------------------------------------------------

    def size(self, image: Image, platform: MatchComparer | None = None) -> int:
        """The packed size for ``platform`` (default: this machine's), as ``ctr images ls``."""
        return imagesmod.size(self._client.content, image.target, platform or default())

    def platforms(self, image: Image) -> builtins.list[Platform]:
        """The platforms ``image`` has manifests for."""
        return imagesmod.platforms(self._client.content, image.target)

    def check(self, image: Image, platform: MatchComparer | None = None) -> CheckResult:
        """Which of the blobs ``image`` needs on ``platform`` are present."""
        return imagesmod.check(self._client.content, image.target, platform or default())

    def chain_id(self, image: Image, platform: MatchComparer | None = None) -> str:
        """The chain ID of the image's root file system on ``platform``: the key of its top
        layer's snapshot (containerd's ``identity.ChainID(image.RootFS())``)."""
        store = self._client.content
        cfg = imagesmod.config(store, image.target, platform or default())
        diff_ids = parse_config(imagesmod.read_document(store, cfg), cfg.digest).diff_ids
        return chain_id(diff_ids)

    def is_unpacked(
        self,
        image: Image,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        platform: MatchComparer | None = None,
    ) -> bool:
        """Whether the image's top layer is in ``snapshotter`` (containerd's ``IsUnpacked``)."""
        try:
            top = self.chain_id(image, platform)
            if top:
                self._client.snapshots(snapshotter).stat(top)
        except errdefs.NotFound:
            return False
        return True

    def unpack(
        self,
        image: Image | str,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        platform: MatchComparer | None = None,
    ) -> UnpackResult:
        """Unpack an image whose content is present into ``snapshotter`` (layers already
        there are skipped): containerd's ``Image.Unpack``, as ``ctr run`` and ``ctr images
        mount`` do before using an image."""
        client = self._client
        img = self.get(image) if isinstance(image, str) else image
        matcher = platform or default()
        with temporary_lease(client) as lease:
            store = _store(client, lease)
            m = imagesmod.manifest(store, img.target, matcher)
            unpacker = _unpacker(client, lease, store, snapshotter, matcher)
            unpacker.set_manifest(m.config, m.layers)
            for desc in (m.config, *m.layers):
                store.info(desc.digest)  # NotFound names a missing blob
                unpacker.fetched(desc, ())
            return unpacker.wait()

    # --- transfers -------------------------------------------------------------------------

    def push(
        self,
        ref: str,
        local: str | Descriptor | None = None,
        *,
        platform: PlatformSpec | None = None,
        resolver: Resolver | None = None,
        plain_http: bool = False,
        max_concurrent_uploads: int = DEFAULT_MAX_CONCURRENT_UPLOADS,
        allow_non_distributable: bool = False,
        progress: ProgressFunc | None = None,
        cancel: threading.Event | None = None,
    ) -> Descriptor:
        """Push the image ``local`` (a name or a manifest descriptor; default ``ref``) to
        ``ref``; with ``platform``, only that platform's manifests of an index. The descriptor
        pushed under the tag."""
        if isinstance(local, Descriptor):
            desc = local
            validate_digest(desc.digest)
        else:
            desc = self.get(local or ref).target
        plats = _platforms(platform)
        matcher = any_of(*plats) if plats else None
        cs = self._client.content
        if len(plats) == 1 and mt.is_index_type(desc.media_type):
            # As ctr: one platform of an index pushes that platform's manifest alone.
            p = only_strict(plats[0])
            for m in imagesmod.children(cs, desc):
                if m.platform is not None and p.match(m.platform):
                    imagesmod.children(cs, m)
                    desc = m
                    break
        own = resolver is None
        res = resolver or default_resolver(plain_http=plain_http)
        try:
            options = PushOptions(
                platform=matcher,
                max_concurrent_uploads=max_concurrent_uploads,
                allow_non_distributable=allow_non_distributable,
            )
            push(cs, res, ref, desc, options, progress=progress, cancel=cancel)
        finally:
            if own:
                res.close()
        return desc

    def export(
        self,
        out: IO[bytes],
        names: Sequence[str],
        *,
        platform: PlatformSpec | None = None,
        all_platforms: bool = False,
        skip_manifest_json: bool = False,
        skip_non_distributable: bool = False,
    ) -> None:
        """Write the images ``names`` to ``out`` as an OCI layout tar with a Docker
        ``manifest.json`` for one platform (default: exactly this machine's), as
        ``ctr images export``."""
        if not names:
            raise errdefs.InvalidArgument("please provide an image reference to export")
        plats = _platforms(platform)
        matcher = ordered(*plats) if plats else default_strict()
        manifests = []
        for name in names:
            img = self.get(name)
            annotations = archive.add_name_annotation(name, img.target.annotations)
            manifests.append(
                Descriptor(img.target.media_type, img.target.digest, img.target.size, annotations)
            )
        options = archive.ExportOptions(
            platform=matcher,
            all_platforms=all_platforms,
            skip_docker_manifest=skip_manifest_json,
            skip_non_distributable=skip_non_distributable,
        )
        archive.export(self._client.content, out, manifests, options)

    def import_(
        self,
        reader: IO[bytes],
        *,
        base_name: str = "",
        index_name: str = "",
        digests: bool = False,
        skip_digest_for_named: bool = False,
        platform: str | Platform | None = None,
        all_platforms: bool = False,
        compress_blobs: bool = False,
    ) -> builtins.list[Image]:
        """Import an OCI layout or Docker archive, as ``ctr images import --no-unpack``: the
        images it names (tag-only names get ``base_name``, default ``import-YYYY-MM-DD``), the
        index as ``index_name``, and ``base_name@digest`` per manifest with ``digests``. Content
        for ``platform`` (default this machine's; ``all_platforms``: all) is labelled for
        garbage collection."""
        if skip_digest_for_named and not digests:
            raise errdefs.InvalidArgument(
                "--skip-digest-for-named must be specified with --digests option"
            )
        if base_name:
            translate = archive.filter_ref_prefix(base_name)
            prefix = base_name
        else:
            prefix = "import-" + datetime.date.today().strftime("%Y-%m-%d")
            translate = archive.add_ref_prefix(prefix)
        matcher: MatchComparer = default()
        if all_platforms:
            matcher = ALL
        elif platform is not None:
            matcher = only_strict(parse(platform) if isinstance(platform, str) else platform)
        skip: Callable[[str], bool] | None = (lambda n: n != "") if skip_digest_for_named else None
        with temporary_lease(self._client) as lease:
            cs = _store(self._client, lease)
            index = archive.import_index(cs, reader, archive.ImportOptions(compress=compress_blobs))
            records = archive.image_records(
                cs,
                index,
                platform=matcher,
                index_name=index_name,
                translate=translate,
                digest_ref=archive.digest_translator(prefix) if digests else None,
                skip_digest_ref=skip,
            )
            out = []
            for img in records:
                try:
                    out.append(self.update(img, "target"))
                except errdefs.NotFound:
                    out.append(self.create(img))
            return out


def pull_matcher(platform: PlatformSpec | None, all_platforms: bool) -> tuple[MatchComparer, int]:
    """The matcher and manifest limit of a pull: all platforms; several (any of them); or one
    (default this machine's), its best manifest only, as containerd's ``Client.Pull``."""
    if all_platforms:
        return ALL, 0
    plats = _platforms(platform)
    if len(plats) > 1:
        return any_of(*plats), 0
    return (only(plats[0]) if plats else default()), 1


def fetch_matcher(platform: PlatformSpec | None, all_platforms: bool) -> MatchComparer:
    """The matcher of a fetch (``ctr content fetch``): all platforms, or any of those given
    (default: this machine's), each exactly."""
    if all_platforms:
        return ALL
    return any_of(*(_platforms(platform) or [host()]))
