"""The runtime's pieces that need no shim: runtime names to shim binaries, bundles on disk,
the plugin's config."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.daemon import config as configmod
from pycontainerd.daemon.builtins import REGISTRATIONS
from pycontainerd.runtime import DEFAULT_SHIMS, Bundle, Config, binary_name, resolve_runtime

SPEC = json.dumps({"ociVersion": "1.0.2", "root": {"path": "rootfs"}}).encode()


def test_binary_names_follow_containerd() -> None:
    assert binary_name("io.containerd.runc.v2") == "containerd-shim-runc-v2"
    assert binary_name("io.containerd.kata.v2") == "containerd-shim-kata-v2"
    assert binary_name("runc") == ""
    assert binary_name("io.containerd.runc.") == ""


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_resolve_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    theirs = _executable(bindir / "containerd-shim-runc-v2")
    assert resolve_runtime("io.containerd.runc.v2", DEFAULT_SHIMS) == str(theirs)
    ours = _executable(bindir / "containerd-shim-pycontainerd-v2")
    assert resolve_runtime("io.containerd.runc.v2", DEFAULT_SHIMS) == str(ours)
    other = _executable(bindir / "containerd-shim-other-v1")
    assert resolve_runtime("io.example.other.v1", DEFAULT_SHIMS) == str(other)
    assert resolve_runtime(str(theirs)) == str(theirs)
    custom = _executable(tmp_path / "custom-shim")
    assert resolve_runtime("io.containerd.runc.v2", {"io.containerd.runc.v2": [str(custom)]}) == (
        str(custom)
    )
    with pytest.raises(errdefs.NotFound, match='runtime "io.x.none.v9" binary not installed'):
        resolve_runtime("io.x.none.v9")
    with pytest.raises(errdefs.InvalidArgument, match="invalid runtime name"):
        resolve_runtime("runc")
    with pytest.raises(errdefs.InvalidArgument, match="invalid custom binary path"):
        resolve_runtime(str(tmp_path / "missing"))
    with pytest.raises(errdefs.InvalidArgument, match="no runtime name"):
        resolve_runtime("")


def test_bundle_layout_and_delete(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    bundle = Bundle.new(root, state, "ns1", "c1", SPEC)
    assert bundle.path == state / "ns1" / "c1"
    assert (bundle.path / "config.json").read_bytes() == SPEC
    assert bundle.rootfs.is_dir()
    assert os.readlink(bundle.path / "work") == str(root / "ns1" / "c1")
    assert stat.S_IMODE(bundle.path.stat().st_mode) == 0o700
    assert Bundle.load(state, "ns1", "c1") == bundle
    with pytest.raises(errdefs.AlreadyExists, match="already exists"):
        Bundle.new(root, state, "ns1", "c1", SPEC)
    (bundle.path / "address").write_text("unix:///x\n")
    assert bundle.read("address") == "unix:///x"
    assert bundle.read("nothing") is None
    bundle.delete()
    assert list((state / "ns1").iterdir()) == []
    assert list((root / "ns1").iterdir()) == []
    bundle.delete()  # twice is fine
    with pytest.raises(errdefs.NotFound):
        Bundle.load(state, "ns1", "c1")


def test_bundle_refuses_bad_ids_and_specs_leaving_nothing(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    with pytest.raises(errdefs.InvalidArgument, match="invalid task id ../x"):
        Bundle.new(root, state, "ns1", "../x", SPEC)
    with pytest.raises(errdefs.InvalidArgument, match="not valid json"):
        Bundle.new(root, state, "ns1", "c2", b"{")
    assert not (state / "ns1" / "c2").exists()
    assert not (root / "ns1" / "c2").exists()


def test_bundle_of_a_user_namespace_belongs_to_its_root_group(tmp_path: Path) -> None:
    spec = json.dumps(
        {"linux": {"gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}}
    ).encode()
    bundle = Bundle.new(tmp_path / "root", tmp_path / "state", "ns1", "c3", spec)
    st = bundle.path.stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (100000, 0o710)
    bundle.delete()


def test_rootfs_with_files_is_not_removed(tmp_path: Path) -> None:
    bundle = Bundle.new(tmp_path / "root", tmp_path / "state", "ns1", "c4", SPEC)
    (bundle.rootfs / "precious").write_text("x")
    with pytest.raises(errdefs.FailedPrecondition, match="remove bundle rootfs"):
        bundle.delete()
    assert (bundle.rootfs / "precious").exists()


def test_config_default_and_override() -> None:
    uri = "io.containerd.runtime.v2.task"
    defaults = configmod.defaults(REGISTRATIONS)
    assert defaults.plugins[uri] == Config()
    assert Config().shims == {k: list(v) for k, v in DEFAULT_SHIMS.items()}
    text = f'version = 2\n[plugins."{uri}"]\nshims = {{"io.containerd.runc.v2" = ["/x/shim"]}}\n'
    loaded = configmod.loads(text, REGISTRATIONS)
    assert loaded.plugins[uri].shims == {"io.containerd.runc.v2": ["/x/shim"]}
    assert configmod.loads(configmod.render(defaults), REGISTRATIONS).plugins[uri] == Config()
