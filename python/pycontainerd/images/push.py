"""Pushing an image's content from a content store to a registry, as containerd's
``remotes.PushContent``: children before parents, manifests last, the root under the tag.

Layers and configs go first, ``max_concurrent_uploads`` at a time; each is checked for on the
registry, mounted from another repository of the same registry when its
``containerd.io/distribution.source.<host>`` label names one, or uploaded. Then the manifests
and indexes, deepest first; only the root goes under the reference's tag, the others under
their digests. Non-distributable (foreign) layers are left out unless asked for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from pycontainerd import errdefs
from pycontainerd.content import Manager, Provider, ReaderAt
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import SkipDescriptor, children, dispatch, filter_platforms
from pycontainerd.images.progress import Progress, ProgressFunc, make_ref_key
from pycontainerd.platforms import Matcher
from pycontainerd.remotes import DISTRIBUTION_SOURCE_LABEL, Pusher, Resolver

__all__ = ["DEFAULT_MAX_CONCURRENT_UPLOADS", "PushOptions", "push"]

#: Blobs uploaded at once by default.
DEFAULT_MAX_CONCURRENT_UPLOADS = 3


class _ContentStore(Provider, Manager, Protocol):
    """What a push reads: blobs and their labels."""


@dataclass(frozen=True)
class PushOptions:
    """``platform`` chooses the manifests of an index to push (None: all);
    ``allow_non_distributable`` pushes foreign layers too."""

    platform: Matcher | None = None
    max_concurrent_uploads: int = DEFAULT_MAX_CONCURRENT_UPLOADS
    allow_non_distributable: bool = False


class _BlobReader:
    """A blob of the store read front to back, reporting how far it got."""

    def __init__(
        self,
        ra: ReaderAt,
        ref: str,
        desc: Descriptor,
        progress: ProgressFunc | None,
        cancel: threading.Event,
    ) -> None:
        self.ra = ra
        self.ref = ref
        self.desc = desc
        self.progress = progress
        self.cancel = cancel
        self.offset = 0

    def read(self, n: int = -1, /) -> bytes:
        if self.cancel.is_set():
            raise errdefs.Canceled(f"push {self.desc.digest}: canceled")
        left = self.desc.size - self.offset
        if n < 0 or n > left:
            n = left
        data = self.ra.read_at(self.offset, n) if n > 0 else b""
        self.offset += len(data)
        if self.progress is not None and data:
            self.progress(Progress(self.ref, "uploading", self.offset, self.desc.size, self.desc))
        return data


def _missing(
    ref: object, desc: Descriptor, root: Descriptor | None, exc: errdefs.NotFound
) -> errdefs.NotFound:
    what = f"push {ref}: {desc.media_type or 'blob'} {desc.digest} is not in the content store"
    if root is not None and desc.digest != root.digest and mt.is_manifest_type(desc.media_type):
        # Another platform's manifest, never pulled.
        what += "; pull all platforms, or push one"
    return errdefs.NotFound(f"{what} ({exc})")


def _push_one(
    store: _ContentStore,
    pusher: Pusher,
    desc: Descriptor,
    *,
    tag: bool,
    progress: ProgressFunc | None,
    cancel: threading.Event,
) -> None:
    ref = make_ref_key(desc)
    try:
        info = store.info(desc.digest)
    except errdefs.NotFound as exc:
        raise _missing(pusher.repository.ref, desc, None, exc) from None
    labels = {k: v for k, v in info.labels.items() if k.startswith(DISTRIBUTION_SOURCE_LABEL)}
    with store.reader_at(desc) as ra:
        reader = _BlobReader(ra, ref, desc, progress, cancel)
        result = pusher.push(desc, reader, labels=labels, tag=tag)
    if progress is not None:
        status = "done" if result == "uploaded" else result
        progress(Progress(ref, status, desc.size, desc.size, desc))


def push(
    store: _ContentStore,
    resolver: Resolver,
    ref: str,
    root: Descriptor,
    options: PushOptions | None = None,
    *,
    progress: ProgressFunc | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Push ``root`` (a manifest or an index) and everything it references from ``store`` to
    the repository of ``ref``, tagging the root with ``ref``'s tag."""
    options = options or PushOptions()
    cancel = cancel or threading.Event()
    pusher = resolver.pusher(ref)
    manifests: list[Descriptor] = []
    lock = threading.Lock()

    def handle(desc: Descriptor) -> list[Descriptor]:
        if mt.is_non_distributable(desc.media_type) and not options.allow_non_distributable:
            raise SkipDescriptor
        if progress is not None:
            progress(Progress(make_ref_key(desc), "waiting", 0, desc.size, desc))
        if mt.is_manifest_type(desc.media_type) or mt.is_index_type(desc.media_type):
            try:
                kids = children(store, desc)
            except errdefs.NotFound as exc:
                raise _missing(ref, desc, root, exc) from None
            with lock:
                manifests.append(desc)
            return filter_platforms(kids, options.platform)
        _push_one(store, pusher, desc, tag=False, progress=progress, cancel=cancel)
        return []

    dispatch(handle, [root], workers=options.max_concurrent_uploads, cancel=cancel)
    for desc in reversed(manifests):
        try:
            _push_one(
                store,
                pusher,
                desc,
                tag=desc.digest == root.digest,
                progress=progress,
                cancel=cancel,
            )
        except errdefs.InvalidArgument as exc:
            if mt.is_index_type(desc.media_type):
                raise errdefs.InvalidArgument(
                    "manifest list/index references to blobs and/or manifests are missing in "
                    f"your target registry: {exc}"
                ) from None
            raise
