"""A daemon snapshotter through the client, as the ``snapshots.Snapshotter`` Protocol, and the
differ over it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.mount import Mount
from pycontainerd.snapshots import Info, Kind, Snapshotter
from tests.client.conftest import SNAPSHOTTER, Env


def _names(sn: Snapshotter, *filters: str) -> list[str]:
    out: list[Info] = []
    sn.walk(out.append, *filters)
    return sorted(i.name for i in out)


def _mount(mounts: list[Mount], target: Path) -> None:
    for m in mounts:
        options = ",".join(m.options)
        args = ["mount", "-t", m.type, m.source, str(target)]
        if options:
            args[1:1] = ["-o", options]
        subprocess.run(args, check=True, capture_output=True)


def test_the_proxy_is_a_snapshotter(env: Env) -> None:
    assert isinstance(env.client.snapshots(SNAPSHOTTER), Snapshotter)


def test_prepare_commit_view_stat_update_usage_walk_remove(env: Env, tmp_path: Path) -> None:
    c = env.client
    with c.with_lease():
        sn = c.snapshots(SNAPSHOTTER)
        mounts = sn.prepare("base-active", labels={"stage": "one"})
        assert mounts
        assert sn.mounts("base-active") == mounts
        info = sn.stat("base-active")
        assert (info.name, info.kind, info.parent) == ("base-active", Kind.ACTIVE, "")
        assert info.labels["stage"] == "one"
        target = tmp_path / "mnt"
        target.mkdir()
        _mount(mounts, target)
        try:
            (target / "file").write_bytes(b"x" * 10_000)
        finally:
            subprocess.run(["umount", str(target)], check=True)
        sn.commit("base", "base-active", labels={"stage": "two"})
        with pytest.raises(errdefs.NotFound, match="base-active"):
            sn.stat("base-active")
        base = sn.stat("base")
        assert (base.kind, base.labels["stage"]) == (Kind.COMMITTED, "two")
        assert sn.usage("base").size >= 10_000
        updated = sn.update(Info("base", Kind.COMMITTED, labels={"extra": "1"}), "labels.extra")
        assert updated.labels["extra"] == "1"

        sn.prepare("child", "base")
        view = sn.view("look", "base")
        assert sn.stat("look").kind == Kind.VIEW
        _mount(view, target)
        try:
            assert (target / "file").read_bytes() == b"x" * 10_000
        finally:
            subprocess.run(["umount", str(target)], check=True)
        assert _names(sn) == ["base", "child", "look"]
        assert _names(sn, "kind==view") == ["look"]
        assert _names(sn, "parent==base") == ["child", "look"]

        with pytest.raises(errdefs.AlreadyExists, match="child"):
            sn.prepare("child", "base")
        with pytest.raises(errdefs.NotFound, match="nope"):
            sn.prepare("x", "nope")
        with pytest.raises(errdefs.FailedPrecondition):
            sn.remove("base")  # it has children
        for key in ("child", "look", "base"):
            sn.remove(key)
        assert _names(sn) == []
        with pytest.raises(errdefs.NotFound, match="base"):
            sn.remove("base")
        sn.close()
    assert os.listdir(target) == []


@pytest.mark.xfail_containerd("its snapshotters do not implement Cleanup (NotImplemented)")
def test_cleanup(env: Env) -> None:
    env.client.snapshots(SNAPSHOTTER).cleanup()


def test_diff_compare_and_apply(env: Env, tmp_path: Path) -> None:
    c = env.client
    with c.with_lease():
        sn = c.snapshots(SNAPSHOTTER)
        lower = sn.prepare("lower")
        sn.commit("lower-c", "lower")
        upper = sn.prepare("upper", "lower-c")
        target = tmp_path / "mnt"
        target.mkdir()
        _mount(upper, target)
        try:
            (target / "hello").write_bytes(b"from a diff\n")
        finally:
            subprocess.run(["umount", str(target)], check=True)
        lower = sn.view("lower-v", "lower-c")
        differ = c.diff()
        desc = differ.compare(lower, sn.mounts("upper"), labels={"made": "here"})
        assert desc.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert c.content.info(desc.digest).labels["made"] == "here"
        fresh = sn.prepare("fresh")
        applied = differ.apply(desc, fresh)
        assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
        view = sn.view("fresh-v", "lower-c")  # a read-only mount to compare against
        _mount(sn.mounts("fresh"), target)
        try:
            assert (target / "hello").read_bytes() == b"from a diff\n"
        finally:
            subprocess.run(["umount", str(target)], check=True)
        assert view
        for key in ("fresh", "fresh-v", "lower-v", "upper", "lower-c"):
            sn.remove(key)
        c.content.delete(desc.digest)
