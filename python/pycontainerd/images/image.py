"""Images over a content store: walking an image's content, and what containerd asks of it.

containerd's ``images/image.go`` and ``images/handlers.go``. A *handler* takes a descriptor and
returns the children to visit (:func:`children` reads manifests and indexes); :func:`walk`
visits depth first. :func:`manifest` picks an image's manifest for a platform, :func:`check`
says whether its content is all present, :func:`size` adds it up as ``ctr images ls`` does,
and :func:`platforms` lists what it runs on. The ``containerd.io/gc.ref.content.*`` labels that
keep an image's content alive are computed by :func:`child_gc_labels` and set by
:func:`set_children_labels`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pycontainerd import errdefs
from pycontainerd.content import Info, Manager, Provider, read_blob
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.manifest import (
    MAX_DOCUMENT_SIZE,
    Manifest,
    parse_config,
    parse_index,
    parse_manifest,
)
from pycontainerd.platforms import MatchComparer, Matcher, Platform, sort_by_preference

__all__ = [
    "GC_REF_CONTENT",
    "CheckResult",
    "Handler",
    "Image",
    "SkipDescriptor",
    "check",
    "child_gc_labels",
    "child_gc_labels_filter_layers",
    "children",
    "config",
    "dispatch",
    "filter_platforms",
    "gc_labels_for",
    "limit_manifests",
    "manifest",
    "platforms",
    "read_document",
    "set_children_labels",
    "size",
    "walk",
]

log = logging.getLogger(__name__)

#: Prefix of the labels by which a blob keeps the content it references alive.
GC_REF_CONTENT = "containerd.io/gc.ref.content."


@dataclass(frozen=True)
class Image:
    """containerd's ``images.Image``: a name pointing at a manifest or index, with labels;
    times are nanoseconds since the epoch (UTC)."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


class SkipDescriptor(Exception):
    """Raised by a handler: do not visit this descriptor's children."""


#: A handler: the children of a descriptor that a walk should visit next.
Handler = Callable[[Descriptor], Sequence[Descriptor]]


def read_document(provider: Provider, desc: Descriptor) -> bytes:
    """A manifest, index or config from the store, refusing one too large to read at once."""
    if desc.size > MAX_DOCUMENT_SIZE:
        kind = desc.media_type or "document"
        raise errdefs.InvalidArgument(
            f"read {desc.digest}: {desc.size} bytes is too large for a {kind}"
        )
    return read_blob(provider, desc)


def children(provider: Provider, desc: Descriptor) -> list[Descriptor]:
    """The immediate children of ``desc``: a manifest's config and layers, an index's
    manifests; nothing for layers, configs and types we do not know."""
    media_type = desc.media_type
    if mt.is_manifest_type(media_type):
        m = parse_manifest(read_document(provider, desc), media_type, f"manifest {desc.digest}")
        return [m.config, *m.layers]
    if mt.is_index_type(media_type):
        idx = parse_index(read_document(provider, desc), media_type, f"index {desc.digest}")
        return list(idx.manifests)
    if not (mt.is_layer_type(media_type) or mt.is_known_config(media_type)):
        log.debug("encountered unknown type %s; children may not be fetched", media_type)
    return []


def walk(handler: Handler, descs: Iterable[Descriptor]) -> None:
    """Visit ``descs`` and, depth first, the children ``handler`` returns for each."""
    for desc in descs:
        try:
            kids = handler(desc)
        except SkipDescriptor:
            continue
        if kids:
            walk(handler, kids)


class _Dispatch:
    """One :func:`dispatch`: a pool, a count of unfinished descriptors, the first error."""

    def __init__(self, handler: Handler, workers: int, cancel: threading.Event) -> None:
        self.handler = handler
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="dispatch")
        self.cancel = cancel
        self.cond = threading.Condition()
        self.pending = 0
        self.error: BaseException | None = None
        self.seen: set[str] = set()

    def submit(self, desc: Descriptor) -> None:
        with self.cond:
            if desc.digest in self.seen:
                return
            self.seen.add(desc.digest)
            self.pending += 1
        try:
            self.pool.submit(self.run, desc)
        except RuntimeError:  # the pool is shut down: the dispatch has failed already
            self.finish()

    def finish(self) -> None:
        with self.cond:
            self.pending -= 1
            if self.pending == 0:
                self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = exc
            self.cancel.set()
            self.cond.notify_all()

    def run(self, desc: Descriptor) -> None:
        try:
            if self.cancel.is_set():
                return
            kids = self.handler(desc)
            for kid in kids:
                self.submit(kid)
        except SkipDescriptor:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.finish()

    def wait(self) -> None:
        """Wait until every handler has returned (after an error they stop early), then
        raise the first error."""
        try:
            with self.cond:
                while self.pending > 0:
                    self.cond.wait()
        except BaseException as exc:  # KeyboardInterrupt: stop the workers, then go
            self.fail(exc)
            raise
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.error is not None:
            raise self.error


def dispatch(
    handler: Handler,
    descs: Iterable[Descriptor],
    *,
    workers: int = 3,
    cancel: threading.Event | None = None,
) -> None:
    """Run ``handler`` on ``descs`` and on the children it returns, ``workers`` at a time
    (containerd's ``images.Dispatch`` with a limiter). A digest is handled once. The first
    error sets ``cancel`` (handlers should watch it), waits for the running handlers to stop,
    and is raised."""
    d = _Dispatch(handler, workers, cancel if cancel is not None else threading.Event())
    for desc in descs:
        d.submit(desc)
    d.wait()


def child_gc_labels(desc: Descriptor) -> list[str]:
    """The label keys by which a parent references ``desc`` (containerd's ``ChildGCLabels``);
    a key ending in ``.`` gets the child's number among its kind appended."""
    media_type = desc.media_type
    if mt.is_known_config(media_type):
        return [GC_REF_CONTENT + "config"]
    if mt.is_manifest_type(media_type):
        return [GC_REF_CONTENT + "m."]
    if mt.is_layer_type(media_type):
        return [GC_REF_CONTENT + "l."]
    return [GC_REF_CONTENT]


def child_gc_labels_filter_layers(desc: Descriptor) -> list[str]:
    """As :func:`child_gc_labels`, without layers (for content fetched without its layers)."""
    if mt.is_layer_type(desc.media_type):
        return []
    return child_gc_labels(desc)


def gc_labels_for(
    kids: Sequence[Descriptor],
    label_map: Callable[[Descriptor], list[str]] = child_gc_labels,
) -> dict[str, str]:
    """The labels a parent carries for ``kids``: ``...config``, ``...m.0``, ``...l.0``, ``...l.1``.
    A key that does not end in ``.`` is numbered from its second use on (``config1``)."""
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for kid in kids:
        for base in label_map(kid):
            idx = counts.get(base, 0)
            counts[base] = idx + 1
            key = f"{base}{idx}" if idx > 0 or base.endswith(".") else base
            labels[key] = kid.digest
    return labels


def set_children_labels(
    manager: Manager,
    desc: Descriptor,
    kids: Sequence[Descriptor],
    label_map: Callable[[Descriptor], list[str]] = child_gc_labels,
) -> None:
    """Label ``desc`` in the store with the references to ``kids``, so garbage collection keeps
    them while it lives (containerd's ``SetChildrenMappedLabels``)."""
    labels = gc_labels_for(kids, label_map)
    if labels:
        manager.update(Info(desc.digest, labels=labels), *(f"labels.{k}" for k in labels))


def filter_platforms(kids: Sequence[Descriptor], matcher: Matcher | None) -> list[Descriptor]:
    """The children without a platform, and those whose platform ``matcher`` accepts."""
    if matcher is None:
        return list(kids)
    return [d for d in kids if d.platform is None or matcher.match(d.platform)]


def limit_manifests(
    desc: Descriptor, kids: Sequence[Descriptor], matcher: MatchComparer, limit: int
) -> list[Descriptor]:
    """For an index, its manifests best platform first, at most ``limit`` of them (0: all);
    :class:`~pycontainerd.errdefs.NotFound` when none is left. Other children pass."""
    if not mt.is_index_type(desc.media_type):
        return list(kids)
    ordered = sort_by_preference(kids, matcher, lambda d: d.platform)
    if limit > 0:
        if not ordered:
            raise errdefs.NotFound(f"no match for platform in manifest {desc.digest}")
        ordered = ordered[:limit]
    return ordered


def manifest(
    provider: Provider, image: Descriptor, platform: MatchComparer | None = None
) -> Manifest:
    """The manifest of ``image`` for ``platform`` (best match of an index; a manifest without
    a platform in its index is judged by its config). :class:`~pycontainerd.errdefs.NotFound`
    when there is none."""
    found: list[Manifest] = []
    was_index = False

    def handle(desc: Descriptor) -> list[Descriptor]:
        nonlocal was_index
        media_type = desc.media_type
        if mt.is_manifest_type(media_type):
            m = parse_manifest(read_document(provider, desc), media_type, f"manifest {desc.digest}")
            if desc.digest != image.digest and platform is not None:
                if desc.platform is not None and not platform.match(desc.platform):
                    return []
                if desc.platform is None:
                    cfg = parse_config(
                        read_document(provider, m.config), f"config {m.config.digest}"
                    )
                    if not platform.match(cfg.platform):
                        return []
            found.append(m)
            return []
        if mt.is_index_type(media_type):
            idx = parse_index(read_document(provider, desc), media_type, f"index {desc.digest}")
            if platform is None:
                return list(idx.manifests)
            descs = sort_by_preference(
                filter_platforms(idx.manifests, platform), platform, lambda d: d.platform
            )
            was_index = True
            return descs[:1]
        raise errdefs.NotFound(f"unexpected media type {media_type} for {desc.digest}")

    walk(handle, [image])
    if not found:
        if was_index:
            raise errdefs.NotFound(f"no match for platform in manifest {image.digest}")
        raise errdefs.NotFound(f"manifest {image.digest}: not found")
    return found[0]


def config(
    provider: Provider, image: Descriptor, platform: MatchComparer | None = None
) -> Descriptor:
    """The config descriptor of ``image`` for ``platform``."""
    return manifest(provider, image, platform).config


def platforms(provider: Provider, image: Descriptor) -> list[Platform]:
    """The platforms of ``image``: those its index names, or its config's (normalized)."""
    found: list[Platform] = []

    def handle(desc: Descriptor) -> list[Descriptor]:
        if desc.platform is not None:
            found.append(desc.platform)
            raise SkipDescriptor
        if mt.is_config_type(desc.media_type):
            cfg = parse_config(read_document(provider, desc), f"config {desc.digest}")
            found.append(cfg.platform)
        return children(provider, desc)

    walk(handle, [image])
    return found


def size(provider: Provider, image: Descriptor, platform: MatchComparer) -> int:
    """The packed size of ``image`` for ``platform``: the index (if any), the best manifest,
    its config and layers, as ``ctr images ls`` shows it."""
    total = 0

    def handle(desc: Descriptor) -> list[Descriptor]:
        nonlocal total
        if desc.size < 0:
            raise errdefs.InvalidArgument(f"invalid size {desc.size} in {desc.digest}")
        total += desc.size
        kids = filter_platforms(children(provider, desc), platform)
        return limit_manifests(desc, kids, platform, 1)

    walk(handle, [image])
    return total


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` found: whether the manifest could be read (``available``), the config
    and layers it needs (``required``), and which of them are ``present`` or ``missing``."""

    available: bool
    required: tuple[Descriptor, ...] = ()
    present: tuple[Descriptor, ...] = ()
    missing: tuple[Descriptor, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether the image is usable here: its root is present and no blob is missing."""
        return self.available and not self.missing


def check(provider: Provider, image: Descriptor, platform: MatchComparer | None) -> CheckResult:
    """Whether every blob ``image`` needs on ``platform`` is in ``provider`` (containerd's
    ``images.Check``)."""
    try:
        m = manifest(provider, image, platform)
    except errdefs.NotFound:
        return CheckResult(False, (image,), (), (image,))
    required = (m.config, *m.layers)
    present: list[Descriptor] = []
    missing: list[Descriptor] = []
    for desc in required:
        try:
            provider.reader_at(desc).close()
        except errdefs.NotFound:
            missing.append(desc)
        else:
            present.append(desc)
    return CheckResult(True, required, tuple(present), tuple(missing))
