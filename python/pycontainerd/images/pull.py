"""Fetching an image's content from a registry into a content store, as containerd's client does.

:func:`fetch` resolves a reference, then walks the index or manifest it names: every blob is
streamed into an ingest of the store (ref ``layer-sha256:...``), which checks size and digest
when it commits, so nothing unverified becomes visible. A blob the store has is skipped; an
ingest left by an earlier, interrupted pull is resumed from its offset with an HTTP range
request. Manifests are labelled with ``containerd.io/gc.ref.content.*`` references to their
children, and every blob with the ``containerd.io/distribution.source.<host>`` repository it
came from. Blobs are fetched ``max_concurrent_downloads`` at a time (3, as containerd).

The walk does not create the image record; :meth:`pycontainerd.Client.pull` does, under a
lease, once everything is in.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pycontainerd import errdefs, fieldpath
from pycontainerd.content import Info, Store, Writer
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import (
    Image,
    children,
    dispatch,
    filter_platforms,
    limit_manifests,
    set_children_labels,
)
from pycontainerd.images.progress import Progress, ProgressFunc, make_ref_key
from pycontainerd.platforms import ALL, MatchComparer
from pycontainerd.remotes import (
    Fetcher,
    Resolver,
    append_distribution_source_label,
    distribution_source_label_key,
)
from pycontainerd.remotes.session import parse_ref

__all__ = ["DEFAULT_MAX_CONCURRENT_DOWNLOADS", "FetchOptions", "fetch", "fetch_blob"]

log = logging.getLogger(__name__)

#: Blobs fetched at once by default, as containerd's ``WithMaxConcurrentDownloads`` default.
DEFAULT_MAX_CONCURRENT_DOWNLOADS = 3
#: Bytes read from the registry and written to the ingest at a time.
CHUNK = 1 << 20
#: How long to wait for another writer (another pull of the same blob) to release a ref.
WRITER_WAIT = 3600.0


@dataclass(frozen=True)
class FetchOptions:
    """How :func:`fetch` walks an image.

    ``platform`` chooses the manifests of an index (None: all); ``limit`` keeps at most that
    many manifests of an index, best first (0: every match; a pull keeps 1).
    ``all_metadata`` also fetches the manifests and configs of the other platforms.
    ``labels`` go on the image record the caller makes.
    """

    platform: MatchComparer | None = None
    limit: int = 0
    all_metadata: bool = False
    max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS
    labels: Mapping[str, str] = field(default_factory=dict)


def _emit(progress: ProgressFunc | None, event: Progress) -> None:
    if progress is not None:
        try:
            progress(event)
        except Exception:  # a broken display must not break the pull
            log.exception("progress callback failed")


def _open_writer(store: Store, ref: str, desc: Descriptor, cancel: threading.Event) -> Writer:
    """A writer for ``ref``, waiting while another writer holds it (another pull of the same
    blob: it will commit, and this one find the blob there)."""
    deadline = time.monotonic() + WRITER_WAIT
    retry = 16
    while True:
        try:
            return store.writer(ref, desc=desc)
        except errdefs.Unavailable:
            if time.monotonic() >= deadline:
                raise
        if cancel.wait(random.randrange(retry) / 1000):
            raise errdefs.Canceled(f"fetch {desc.digest}: canceled")
        retry = min(retry * 2, 2048)


def fetch_blob(
    store: Store,
    fetcher: Fetcher,
    desc: Descriptor,
    *,
    progress: ProgressFunc | None = None,
    cancel: threading.Event | None = None,
    what: str = "",
) -> bool:
    """Fetch ``desc`` into ``store`` unless it is there; True if it was fetched, False if the
    store had it. A partial ingest under the same ref resumes at its offset; bytes that do not
    match the digest are refused at commit, and the ingest is aborted so a retry starts clean.
    """
    cancel = cancel or threading.Event()
    what = what or f"fetch {desc.digest}"
    if mt.is_schema1(desc.media_type):
        raise errdefs.NotImplemented(f"{what}: {desc.media_type} not supported")
    if desc.size <= 0:
        raise errdefs.InvalidArgument(
            f"{what}: unable to fetch descriptor which reports content size of zero"
        )
    ref = make_ref_key(desc)
    try:
        writer = _open_writer(store, ref, desc, cancel)
    except errdefs.AlreadyExists:
        _emit(progress, Progress(ref, "exists", desc.size, desc.size, desc))
        return False
    committed = False
    try:
        offset = writer.status().offset
        if offset > desc.size:  # more than the blob: start over
            writer.truncate(0)
            offset = 0
        _emit(progress, Progress(ref, "downloading", offset, desc.size, desc))
        if offset < desc.size:
            with fetcher.fetch(desc, offset) as stream:
                while offset < desc.size:
                    if cancel.is_set():
                        raise errdefs.Canceled(f"{what}: canceled")
                    data = stream.read(min(CHUNK, desc.size - offset))
                    if not data:
                        break
                    writer.write(data)
                    offset += len(data)
                    _emit(progress, Progress(ref, "downloading", offset, desc.size, desc))
        try:
            writer.commit(desc.size, desc.digest)
        except errdefs.AlreadyExists:
            pass
        except errdefs.FailedPrecondition as exc:
            # The registry sent other bytes than the descriptor names: never keep them.
            with contextlib.suppress(errdefs.ContainerdError):
                store.abort(ref)
            raise errdefs.FailedPrecondition(f"{what}: {exc}") from None
        committed = True
    finally:
        if not committed:
            writer.close()
    _emit(progress, Progress(ref, "done", desc.size, desc.size, desc))
    return True


def _distribution_source(ref: str) -> tuple[str, str]:
    """The label key and repository a pull of ``ref`` records on its blobs."""
    spec = parse_ref(ref)
    return distribution_source_label_key(spec.hostname), spec.repository


def _append_source(store: Store, desc: Descriptor, key: str, repo: str) -> None:
    info = store.info(desc.digest)
    value = append_distribution_source_label(info.labels.get(key, ""), repo)
    if info.labels.get(key) == value:
        return
    try:
        fieldpath.validate_labels({key: value}, prefix="labels")
    except errdefs.InvalidArgument as exc:
        log.warning("skip appending the distribution label: %s", exc)
        return
    store.update(Info(desc.digest, labels={key: value}), f"labels.{key}")


def fetch(
    store: Store,
    resolver: Resolver,
    ref: str,
    options: FetchOptions | None = None,
    *,
    progress: ProgressFunc | None = None,
    cancel: threading.Event | None = None,
    on_fetched: Callable[[Descriptor, Sequence[Descriptor]], None] | None = None,
) -> Image:
    """Resolve ``ref`` and fetch what ``options`` selects into ``store``; the image to record
    (name, target and labels). Errors name the reference and the blob.

    ``on_fetched(desc, children)`` is called, from the fetching threads, as each blob is in
    the store (an unpacker starts on layers while others download)."""
    options = options or FetchOptions()
    cancel = cancel or threading.Event()
    _emit(progress, Progress(ref, "resolving"))
    try:
        name, root = resolver.resolve(ref)
    except errdefs.ContainerdError as exc:
        raise type(exc)(f"failed to resolve reference {ref!r}: {exc}") from None
    _emit(progress, Progress(ref, "resolved", descriptor=root))
    fetcher = resolver.fetcher(name)
    source_key, source_repo = _distribution_source(name)
    platform = options.platform

    def handle(desc: Descriptor) -> list[Descriptor]:
        what = f"pull {name}: fetch {desc.digest}"
        _emit(progress, Progress(make_ref_key(desc), "waiting", 0, desc.size, desc))
        fetch_blob(store, fetcher, desc, progress=progress, cancel=cancel, what=what)
        kids: list[Descriptor] = []
        if mt.is_manifest_type(desc.media_type) or mt.is_index_type(desc.media_type):
            kids = children(store, desc)
            set_children_labels(store, desc, kids)
            if options.all_metadata:
                if (
                    mt.is_manifest_type(desc.media_type)
                    and desc.platform is not None
                    and platform is not None
                    and not platform.match(desc.platform)
                ):
                    kids = [k for k in kids if mt.is_config_type(k.media_type)]
            else:
                kids = filter_platforms(kids, platform)
            if options.limit > 0:
                kids = limit_manifests(desc, kids, platform or ALL, options.limit)
        _append_source(store, desc, source_key, source_repo)
        if on_fetched is not None:
            on_fetched(desc, kids)
        return kids

    dispatch(handle, [root], workers=options.max_concurrent_downloads, cancel=cancel)
    return Image(name=name, target=root, labels=dict(options.labels))
