"""Usage of committed snapshots on the directory-backed snapshotters: measured on the first
``usage`` call after the commit (a commit does not walk the layer), then kept with the record,
across a restart too."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.snapshots.local import LocalSnapshotter, disk_usage
from pycontainerd.snapshots.native import NativeSnapshotter
from pycontainerd.snapshots.overlay import OverlaySnapshotter

Make = Callable[[], LocalSnapshotter]


@pytest.fixture(params=["overlayfs", "native"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    cls = OverlaySnapshotter if request.param == "overlayfs" else NativeSnapshotter
    opened: list[LocalSnapshotter] = []

    def open_one() -> LocalSnapshotter:
        sn = cls(tmp_path / request.param)
        opened.append(sn)
        return sn

    yield open_one
    for sn in opened:
        sn.close()


def _fill(root: Path, files: int) -> None:
    (root / "d").mkdir()
    for i in range(files):
        (root / "d" / f"f{i}").write_bytes(os.urandom(5000))
    os.link(root / "d" / "f0", root / "hard")  # counted once


def test_committed_usage_is_the_layer_s(make: Make) -> None:
    sn = make()
    (m,) = sn.prepare("a")
    _fill(Path(m.source), 20)
    active = sn.usage("a")
    assert active.inodes == 1 + 1 + 20  # the root, d, the files (the hard link is f0)
    assert active.size >= 20 * 5000
    sn.commit("c", "a")
    assert sn.usage("c") == active
    assert sn.usage("c") == disk_usage(Path(m.source))


def test_committed_usage_is_measured_once_and_kept(make: Make) -> None:
    sn = make()
    (m,) = sn.prepare("a")
    _fill(Path(m.source), 5)
    sn.commit("c", "a")
    first = sn.usage("c")
    # a committed snapshot does not change: a file slipped in behind the snapshotter's back
    # shows that the figure is the kept one, not measured again
    (Path(m.source) / "later").write_bytes(b"x" * 10000)
    assert sn.usage("c") == first
    sn.close()
    assert make().usage("c") == first


def test_usage_measured_after_a_restart(make: Make) -> None:
    sn = make()
    (m,) = sn.prepare("a")
    _fill(Path(m.source), 3)
    expected = sn.usage("a")
    sn.commit("c", "a")
    sn.close()
    assert make().usage("c") == expected


def test_usage_of_a_removed_snapshot(make: Make) -> None:
    sn = make()
    sn.prepare("a")
    sn.commit("c", "a")
    sn.remove("c")
    with pytest.raises(errdefs.NotFound):
        sn.usage("c")
