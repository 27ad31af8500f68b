"""containerd's own ctr (Debian's containerd package) against our daemon's socket."""

from __future__ import annotations

import shutil

import pytest

from pycontainerd import Client
from pycontainerd.version import REVISION, VERSION
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.compat


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


def test_version(daemon: Daemon) -> None:
    out = daemon.ctr("version").stdout
    server = out.split("Server:", 1)[1]
    assert f"Version:  {VERSION}" in server
    assert f"Revision: {REVISION}" in server
    with Client(daemon.address) as c:
        assert f"UUID: {c.server().uuid}" in server


def test_namespaces(daemon: Daemon) -> None:
    daemon.ctr("namespaces", "create", "ns1", "a=b")
    rows = [line.split() for line in daemon.ctr("namespaces", "ls").stdout.splitlines()]
    assert rows[0] == ["NAME", "LABELS"]
    assert ["ns1", "a=b"] in rows
    daemon.ctr("namespaces", "label", "ns1", "a=c")
    rows = [line.split() for line in daemon.ctr("namespaces", "ls").stdout.splitlines()]
    assert ["ns1", "a=c"] in rows
    with Client(daemon.address) as c:
        assert c.namespaces.labels("ns1") == {"a": "c"}
    daemon.ctr("namespaces", "label", "ns1", "a=")  # clears
    assert ["ns1"] in [line.split() for line in daemon.ctr("namespaces", "ls").stdout.splitlines()]
    assert daemon.ctr("namespaces", "rm", "ns1").stdout.strip() == "ns1"
    assert daemon.ctr("namespaces", "ls", "-q").stdout.strip() == ""


def test_namespace_errors(daemon: Daemon) -> None:
    daemon.ctr("namespaces", "create", "dup")
    result = daemon.ctr("namespaces", "create", "dup", check=False)
    assert result.returncode != 0
    assert 'namespace "dup": already exists' in result.stderr
    result = daemon.ctr("namespaces", "create", "bad/name", check=False)
    assert result.returncode != 0
    assert "identifier" in result.stderr


def test_namespace_in_use_cannot_be_removed(daemon: Daemon) -> None:
    from tests.integration.test_namespaces import _create_image

    with Client(daemon.address, namespace="busy") as c:
        _create_image(c, "example.com/app:1")
    result = daemon.ctr("namespaces", "rm", "busy", check=False)
    assert result.returncode != 0
    assert "must be empty, but it still has images" in result.stderr
    # ctr sees the image record too
    out = daemon.ctr("images", "ls", "-q", namespace="busy").stdout
    assert out.split() == ["example.com/app:1"]


def test_plugins_ls(daemon: Daemon) -> None:
    rows = [line.split() for line in daemon.ctr("plugins", "ls").stdout.splitlines()]
    assert rows[0] == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    found = {(r[0], r[1]): r[3] for r in rows[1:]}
    assert found[("io.containerd.grpc.v1", "version")] == "ok"
    assert found[("io.containerd.grpc.v1", "namespaces")] == "ok"
    assert found[("io.containerd.grpc.v1", "introspection")] == "ok"
    assert found[("io.containerd.metadata.v1", "sqlite")] == "ok"
    # ctr's filters are evaluated by our daemon
    rows = daemon.ctr("plugins", "ls", "-q", "type==io.containerd.metadata.v1").stdout.split()
    assert rows == ["sqlite"]


def test_plugins_ls_shows_a_failed_plugin(tmp_path: object) -> None:
    from pathlib import Path

    from tests.fixtures.daemon import make_daemon

    assert isinstance(tmp_path, Path)
    d = make_daemon(tmp_path)
    try:
        (d.root / "metadata.db").mkdir(parents=True)
        d.start()
        rows = [line.split() for line in d.ctr("plugins", "ls").stdout.splitlines()]
        found = {(r[0], r[1]): r[3] for r in rows[1:]}
        assert found[("io.containerd.metadata.v1", "sqlite")] == "error"
        detail = d.ctr("plugins", "ls", "-d", "id==sqlite").stdout
        assert "open metadata database" in detail
    finally:
        d.stop()
        d.cleanup()
