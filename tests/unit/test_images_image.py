"""Walking images in a content store: children, labels for garbage collection, platform choice,
size and completeness, and the concurrent dispatcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content import Store, write_blob
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import image as images
from pycontainerd.images import mediatypes as mt
from pycontainerd.metadata import DB, ContentStore
from pycontainerd.platforms import ALL, Platform, default, host, only
from tests.fixtures.images import Blob, TestImage, make_test_image, other_platform


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = DB(tmp_path / "metadata.db")
    yield ContentStore(db, LocalStore(tmp_path / "content")).namespaced("default")
    db.close()


def put(store: Store, *blobs: Blob) -> None:
    import io

    for b in blobs:
        write_blob(store, f"test-{b.digest}", io.BytesIO(b.data), b.descriptor())


def put_image(store: Store, img: TestImage) -> None:
    put(store, *img.blobs)


def test_children(store: Store) -> None:
    img = make_test_image("children", multi=True)
    put_image(store, img)
    assert img.index is not None
    kids = images.children(store, img.index.descriptor())
    assert [k.digest for k in kids] == [i.manifest.digest for i in img.images]
    assert kids[0].platform == img.images[0].platform
    me = img.host
    assert [k.digest for k in images.children(store, me.manifest.descriptor())] == [
        me.config.digest,
        *(layer.digest for layer in me.layers),
    ]
    assert images.children(store, me.layers[0].descriptor()) == []
    assert images.children(store, Descriptor("application/x-unknown", me.config.digest, 1)) == []


def test_gc_labels() -> None:
    cfg = Descriptor(mt.MEDIA_TYPE_IMAGE_CONFIG, "sha256:" + "c" * 64, 1)
    layers = [Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, f"sha256:{i}" + "0" * 63, 1) for i in "12"]
    man = Descriptor(mt.MEDIA_TYPE_IMAGE_MANIFEST, "sha256:" + "d" * 64, 1)
    idx = Descriptor(mt.MEDIA_TYPE_IMAGE_INDEX, "sha256:" + "e" * 64, 1)
    other = Descriptor("application/x-thing", "sha256:" + "f" * 64, 1)
    p = images.GC_REF_CONTENT
    assert images.gc_labels_for([cfg, *layers]) == {
        p + "config": cfg.digest,
        p + "l.0": layers[0].digest,
        p + "l.1": layers[1].digest,
    }
    assert images.gc_labels_for([man, man, idx, other, cfg, cfg]) == {
        p + "m.0": man.digest,
        p + "m.1": man.digest,
        p + "0": idx.digest,
        p + "1": other.digest,
        p + "config": cfg.digest,
        p + "config1": cfg.digest,
    }
    assert images.gc_labels_for([cfg, *layers], images.child_gc_labels_filter_layers) == {
        p + "config": cfg.digest
    }


def test_set_children_labels(store: Store) -> None:
    img = make_test_image("labels")
    put_image(store, img)
    me = img.host
    desc = me.manifest.descriptor()
    images.set_children_labels(store, desc, images.children(store, desc))
    labels = store.info(desc.digest).labels
    assert labels[images.GC_REF_CONTENT + "config"] == me.config.digest
    assert labels[images.GC_REF_CONTENT + "l.1"] == me.layers[1].digest


def test_manifest_picks_the_platform(store: Store) -> None:
    img = make_test_image("pick", multi=True)
    put_image(store, img)
    assert img.index is not None
    root = img.index.descriptor()
    m = images.manifest(store, root, default())
    assert m.config.digest == img.host.config.digest
    other = only(other_platform())
    assert images.manifest(store, root, other).config.digest == (
        img.for_platform(other_platform()).config.digest
    )
    with pytest.raises(errdefs.NotFound, match="no match for platform"):
        images.manifest(store, root, only(Platform("linux", "s390x")))
    # A manifest alone is taken whatever its platform.
    lone = img.for_platform(other_platform()).manifest.descriptor()
    assert images.manifest(store, lone, default()).config.digest == (
        img.for_platform(other_platform()).config.digest
    )


def test_size_platforms_and_check(store: Store) -> None:
    img = make_test_image("size", multi=True)
    put_image(store, img)
    assert img.index is not None
    root = img.index.descriptor()
    me = img.host
    assert images.size(store, root, default()) == img.index.size + sum(b.size for b in me.blobs)
    assert images.platforms(store, root) == [host_platform(), other_platform()]
    result = images.check(store, root, default())
    assert result.complete
    assert len(result.required) == 3
    store.delete(me.layers[0].digest)
    result = images.check(store, root, default())
    assert result.available
    assert not result.complete
    assert [d.digest for d in result.missing] == [me.layers[0].digest]
    store.delete(me.manifest.digest)
    assert not images.check(store, root, default()).available


def host_platform() -> Platform:
    me = host()
    return Platform(me.os, me.architecture, me.variant)


def test_limit_manifests_orders_and_cuts() -> None:
    idx = Descriptor(mt.MEDIA_TYPE_IMAGE_INDEX, "sha256:" + "e" * 64, 1)
    me, other = host(), other_platform()
    a = Descriptor(mt.MEDIA_TYPE_IMAGE_MANIFEST, "sha256:" + "a" * 64, 1, platform=other)
    b = Descriptor(mt.MEDIA_TYPE_IMAGE_MANIFEST, "sha256:" + "b" * 64, 1, platform=me)
    c = Descriptor(mt.MEDIA_TYPE_IMAGE_MANIFEST, "sha256:" + "c" * 64, 1)
    assert images.limit_manifests(idx, [c, a, b], default(), 1) == [b]
    assert images.limit_manifests(idx, [c, a, b], default(), 0)[0] == b
    assert images.limit_manifests(idx, [c, a, b], ALL, 0) == [a, b, c]  # no platform: last
    with pytest.raises(errdefs.NotFound):
        images.limit_manifests(idx, [], default(), 1)


def _desc(i: int) -> Descriptor:
    return Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER, f"sha256:{i:064x}", 1)


def test_dispatch_visits_everything_once_concurrently() -> None:
    seen: list[str] = []
    lock = threading.Lock()
    active = {"now": 0, "max": 0}

    def handle(d: Descriptor) -> list[Descriptor]:
        with lock:
            seen.append(d.digest)
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.02)
        with lock:
            active["now"] -= 1
        n = int(d.digest.partition(":")[2], 16)
        return [_desc(n * 2 + 1), _desc(n * 2 + 2), _desc(1)] if n < 7 else []

    images.dispatch(handle, [_desc(0)], workers=3)
    assert sorted(seen) == sorted({_desc(i).digest for i in range(15)})
    assert len(seen) == 15
    assert 1 < active["max"] <= 3


def test_dispatch_stops_at_the_first_error() -> None:
    cancel = threading.Event()
    started: list[int] = []

    def handle(d: Descriptor) -> list[Descriptor]:
        n = int(d.digest.partition(":")[2], 16)
        started.append(n)
        if n == 0:
            return [_desc(i) for i in range(1, 50)]
        if n == 3:
            raise errdefs.Unavailable("layer 3 broke")
        cancel.wait(0.05)
        return []

    with pytest.raises(errdefs.Unavailable, match="layer 3 broke"):
        images.dispatch(handle, [_desc(0)], workers=2, cancel=cancel)
    assert cancel.is_set()
    assert len(started) < 50


def test_walk_skips() -> None:
    seen: list[str] = []

    def handle(d: Descriptor) -> list[Descriptor]:
        seen.append(d.digest)
        n = int(d.digest.partition(":")[2], 16)
        if n == 1:
            raise images.SkipDescriptor
        return [_desc(n + 1)] if n < 3 else []

    images.walk(handle, [_desc(1), _desc(2)])
    assert seen == [_desc(1).digest, _desc(2).digest, _desc(3).digest]
