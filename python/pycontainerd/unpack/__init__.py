"""Unpacking an image's layers into a snapshotter while they download (containerd's unpacker).

An :class:`Unpacker` is told of each blob as the pull fetches it (:meth:`Unpacker.fetched`).
Once the manifest and the image config are in, it knows the layers, their diff IDs and their
chain IDs; layers whose chain ID the snapshotter already has are skipped. Each layer is applied
as soon as its blob is in:

- on a snapshotter with the ``rebase`` capability (overlayfs), into a snapshot of its own
  prepared without a parent, all layers at once, and committed under its chain ID onto its
  parent, bottom first, once the one below is committed. A layer that needs its parents while
  it is applied (a directory it does not name, a hardlink into a lower layer) is applied again
  on its parent, in order;
- otherwise one after another, each on its parent.

Every applied layer's diff ID is checked against the config before the commit. The snapshots
carry containerd's ``containerd.io/snapshot.ref`` label; afterwards the config blob gets
``containerd.io/gc.ref.snapshot.<snapshotter>`` (so the image holds its snapshots) and each
layer blob ``containerd.io/uncompressed``. On error, the snapshots being prepared are removed
and the error names the layer; what was committed stays (the pull's lease holds it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from pycontainerd import errdefs
from pycontainerd.content import Info, Provider
from pycontainerd.descriptor import Descriptor
from pycontainerd.diff import LABEL_UNCOMPRESSED, Applier
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import read_document
from pycontainerd.images.manifest import parse_config
from pycontainerd.images.rootfs import chain_ids
from pycontainerd.metadata.snapshots import LABEL_REBASE
from pycontainerd.mount import Mount
from pycontainerd.platforms import MatchComparer
from pycontainerd.snapshots import Snapshotter

__all__ = ["LABEL_SNAPSHOT_REF", "UnpackResult", "Unpacker", "gc_label"]

log = logging.getLogger(__name__)

#: The label containerd's unpacker puts on each layer snapshot: its chain ID.
LABEL_SNAPSHOT_REF: Final = "containerd.io/snapshot.ref"
#: Prefix of the config label naming the top snapshot on a snapshotter.
_GC_SNAPSHOT: Final = "containerd.io/gc.ref.snapshot."


def gc_label(snapshotter: str) -> str:
    """The config blob's label holding an image's top snapshot on ``snapshotter``."""
    return _GC_SNAPSHOT + snapshotter


@dataclass
class UnpackResult:
    """What an unpack did."""

    #: The chain ID of the top layer: the parent of a container's snapshot.
    chain_id: str = ""
    #: Layers applied (not found already unpacked).
    applied: int = 0
    #: Layers applied a second time because they needed their parents.
    reapplied: int = 0
    seconds: float = 0.0
    layers: list[str] = field(default_factory=list)


@dataclass
class _Layer:
    index: int
    desc: Descriptor
    diff_id: str
    chain_id: str
    parent: str
    key: str = ""
    fetched: bool = False
    #: Applied on its (already committed) parent rather than alone.
    on_parent: bool = False
    future: Future[Descriptor | None] | None = None


class Unpacker:
    """Unpack one image into ``snapshotter`` (named ``snapshotter_name``) through ``applier``.

    ``rebase`` says the snapshotter can commit a parentless snapshot onto a parent (layers are
    then applied in parallel). ``platform`` picks the manifest to unpack when an index has
    several. ``hold(chain_id)`` keeps an existing snapshot the unpack builds on from the
    garbage collector (adds it to the lease). ``fetched`` may be called from any thread;
    :meth:`wait` from the pull's.
    """

    def __init__(
        self,
        content: Provider,
        snapshotter: Snapshotter,
        applier: Applier,
        *,
        snapshotter_name: str,
        rebase: bool = False,
        platform: MatchComparer | None = None,
        workers: int | None = None,
        hold: Callable[[str], None] | None = None,
    ) -> None:
        self._content = content
        self._hold = hold
        self._sn = snapshotter
        self._applier = applier
        self.snapshotter_name = snapshotter_name
        self._rebase = rebase
        self._platform = platform
        self._pool = ThreadPoolExecutor(
            max_workers=workers or max(2, os.cpu_count() or 2),
            thread_name_prefix="unpack",
        )
        self._lock = threading.Lock()
        self._manifest: Descriptor | None = None
        self._config: Descriptor | None = None
        self._layer_descs: list[Descriptor] = []
        self._fetched: set[str] = set()
        self._layers: list[_Layer] | None = None
        self._uniq = f"{time.time_ns()}-{secrets.token_hex(3)}"
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._t0 = time.perf_counter()

    # --- told by the fetch ---------------------------------------------------------------

    def fetched(self, desc: Descriptor, children: Sequence[Descriptor]) -> None:
        """``desc`` is in the content store; ``children`` are what the walk visits next."""
        with self._lock:
            if (
                mt.is_manifest_type(desc.media_type)
                and self._manifest is None
                and (
                    desc.platform is None
                    or self._platform is None
                    or (self._platform.match(desc.platform))
                )
            ):
                self._manifest = desc
                self._config = next((c for c in children if mt.is_config_type(c.media_type)), None)
                self._layer_descs = [c for c in children if mt.is_layer_type(c.media_type)]
            self._fetched.add(desc.digest)
            try:
                self._start_ready()
            except BaseException as exc:
                self._fail(exc)

    def set_manifest(self, config: Descriptor, layers: Sequence[Descriptor]) -> None:
        """Unpack the image of this config and these layers (content already present: tell
        :meth:`fetched` of each blob next)."""
        with self._lock:
            self._manifest = Descriptor("", config.digest, 0)
            self._config = config
            self._layer_descs = list(layers)

    def _start_ready(self) -> None:
        """Plan once the config is in; submit every planned layer whose blob is in."""
        if self._layers is None:
            cfg = self._config
            if cfg is None or cfg.digest not in self._fetched:
                return
            self._layers = self._plan(cfg)
        for pos, layer in enumerate(self._layers):
            if layer.future is None and layer.desc.digest in self._fetched:
                layer.fetched = True
                if pos == 0:
                    # the parent is committed already (or there is none): no need to rebase
                    layer.on_parent = True
                    layer.future = self._pool.submit(self._apply_on_parent, layer)
                elif self._rebase:
                    layer.future = self._pool.submit(self._apply_alone, layer)

    def _plan(self, cfg: Descriptor) -> list[_Layer]:
        """The layers still to unpack, after those the snapshotter has."""
        if not mt.is_known_config(cfg.media_type):
            return []
        config = parse_config(read_document(self._content, cfg), cfg.digest)
        diff_ids = list(config.diff_ids)
        if len(diff_ids) != len(self._layer_descs):
            raise errdefs.InvalidArgument(
                f"unpack {cfg.digest}: the config names {len(diff_ids)} layers, "
                f"the manifest {len(self._layer_descs)}"
            )
        chains = chain_ids(diff_ids)
        start = 0
        for i in range(len(chains) - 1, -1, -1):
            try:
                # held first (the caller's lease), then looked at: the collector cannot take
                # a chain found here before the unpack is done with it
                if self._hold is not None:
                    self._hold(chains[i])
                self._sn.stat(chains[i])
            except errdefs.NotFound:
                continue
            start = i + 1
            break
        return [
            _Layer(i, self._layer_descs[i], diff_ids[i], chains[i], chains[i - 1] if i else "")
            for i in range(start, len(chains))
        ]

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._cancel.set()

    # --- applying ------------------------------------------------------------------------

    def _labels(self, layer: _Layer) -> dict[str, str]:
        return {LABEL_SNAPSHOT_REF: layer.chain_id}

    def _new_key(self, layer: _Layer) -> str:
        return f"extract-{self._uniq}-{layer.index} {layer.chain_id}"

    def _apply_alone(self, layer: _Layer) -> Descriptor | None:
        """Apply ``layer`` into a parentless snapshot; None when it needs its parents."""
        if self._cancel.is_set():
            raise errdefs.Canceled("unpack canceled")
        key = layer.key = self._new_key(layer)
        mounts = self._sn.prepare(key, "", labels=self._labels(layer))
        if layer.parent and mounts and mounts[0].type == "bind":
            # containerd 2's parallel unpack: an overlay with only an upper directory tells
            # the applier to write overlay whiteouts without mounting
            mounts = [Mount("overlay", "overlay", options=(f"upperdir={mounts[0].source}",))]
        try:
            return self._applier.apply(layer.desc, mounts)
        except errdefs.FailedPrecondition as exc:
            if "needs its parent layers" not in exc.message:
                raise
            log.debug("unpack %s: again on its parent: %s", layer.desc.digest, exc)
            with contextlib.suppress(errdefs.NotFound):
                self._sn.remove(key)
            layer.key = ""
            return None

    def _apply_on_parent(self, layer: _Layer) -> Descriptor:
        if self._cancel.is_set():
            raise errdefs.Canceled("unpack canceled")
        key = layer.key = self._new_key(layer) + "-p"
        mounts = self._sn.prepare(key, layer.parent, labels=self._labels(layer))
        return self._applier.apply(layer.desc, mounts)

    def _commit(self, layer: _Layer, applied: Descriptor, *, onto: bool) -> None:
        if applied.digest != layer.diff_id:
            raise errdefs.FailedPrecondition(
                f"wrong diff id calculated on extraction {layer.desc.digest}: "
                f"{applied.digest}, the config says {layer.diff_id}"
            )
        labels = self._labels(layer)
        if onto and layer.parent:
            labels[LABEL_REBASE] = layer.parent
        try:
            self._sn.commit(layer.chain_id, layer.key, labels=labels)
        except errdefs.AlreadyExists:
            # unpacked meanwhile by someone else: theirs is the same layer
            with contextlib.suppress(errdefs.NotFound):
                self._sn.remove(layer.key)
        layer.key = ""

    # --- the pull's side -----------------------------------------------------------------

    def wait(self) -> UnpackResult:
        """After the fetch: commit every layer in order; the top chain ID."""
        result = UnpackResult()
        try:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self._manifest is None:
                    return result
                if self._layers is None:
                    self._start_ready()
                layers = self._layers or []
                if self._layers is None:
                    raise errdefs.FailedPrecondition(
                        f"unpack {self._manifest.digest}: its config was not fetched"
                    )
            for layer in layers:
                if not layer.fetched:
                    raise errdefs.FailedPrecondition(
                        f"unpack: layer {layer.desc.digest} was not fetched"
                    )
                applied: Descriptor | None
                what = f"failed to extract layer {layer.desc.digest}"
                try:
                    if layer.future is not None:
                        applied = layer.future.result()
                        if layer.on_parent:
                            assert applied is not None
                            self._commit(layer, applied, onto=False)
                        elif applied is None:
                            applied = self._apply_on_parent(layer)
                            result.reapplied += 1
                            self._commit(layer, applied, onto=False)
                        else:
                            self._commit(layer, applied, onto=True)
                    else:
                        applied = self._apply_on_parent(layer)
                        self._commit(layer, applied, onto=False)
                except errdefs.ContainerdError as exc:
                    raise type(exc)(f"{what}: {exc.message}") from None
                result.applied += 1
                result.layers.append(layer.chain_id)
            if self._error is not None:
                raise self._error
            result.chain_id = self._top_chain()
            self._label_content(layers)
            result.seconds = time.perf_counter() - self._t0
            return result
        except BaseException:
            self._cancel.set()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._remove_prepared()
            raise
        finally:
            self._pool.shutdown(wait=True)

    def _top_chain(self) -> str:
        cfg = self._config
        if cfg is None:
            return ""
        config = parse_config(read_document(self._content, cfg), cfg.digest)
        chains = chain_ids(list(config.diff_ids))
        return chains[-1] if chains else ""

    def _remove_prepared(self) -> None:
        for layer in self._layers or []:
            if layer.future is not None and not layer.future.done():
                continue
            if layer.key:
                with contextlib.suppress(errdefs.ContainerdError):
                    self._sn.remove(layer.key)
                layer.key = ""

    def _label_content(self, layers: Sequence[_Layer]) -> None:
        """The labels containerd sets after an unpack, on the layer blobs and the config."""
        update: Callable[..., Info] | None = getattr(self._content, "update", None)  # a Manager
        if update is None or self._config is None:
            return
        for layer in layers:
            update(
                Info(layer.desc.digest, labels={LABEL_UNCOMPRESSED: layer.diff_id}),
                f"labels.{LABEL_UNCOMPRESSED}",
            )
        top = self._top_chain()
        if top:
            key = gc_label(self.snapshotter_name)
            update(Info(self._config.digest, labels={key: top}), f"labels.{key}")
