"""containerd's own ``ctr`` against our daemon's image side, and our client against a real
containerd: fetch, ls, tag, label, rm, export and import both ways, push, and the same digests
and labels whoever does the work."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycontainerd import Client
from pycontainerd.content import Info
from pycontainerd.images import mediatypes as mt
from pycontainerd.platforms import host
from pycontainerd.remotes import Resolver
from tests.fixtures.daemon import Daemon, wait_for_socket
from tests.fixtures.images import (
    TestImage,
    docker_save_tar,
    make_test_image,
    push_image,
    read_tar,
)
from tests.fixtures.registry import Registry, run_registry

pytestmark = pytest.mark.compat


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def image(registry: Registry) -> tuple[str, TestImage]:
    img = make_test_image("compat", multi=True)
    ref = f"{registry.host}/compat/multi:v1"
    with Resolver(plain_http=True) as r:
        push_image(r, ref, img)
    return ref, img


@dataclass
class Containerd:
    address: str
    base: Path

    def ctr(self, *args: str, namespace: str = "default") -> str:
        result = subprocess.run(
            ["ctr", "-a", self.address, "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    """A real containerd 1.6 on a private socket (CRI off), removed afterwards."""
    binary = shutil.which("containerd")
    assert binary, "containerd is missing: apt-get install containerd (scripts/setup does)"
    base = Path(tempfile.mkdtemp(prefix="ctd-"))
    address = str(base / "containerd.sock")
    config = base / "config.toml"
    config.write_text(
        f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""
    )
    with open(base / "containerd.log", "wb") as log:
        proc = subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=log)
    try:
        wait_for_socket(address, proc)
        yield Containerd(address, base)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-R", str(base / "root")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def rows(text: str) -> list[list[str]]:
    """A ctr table: cells split on runs of spaces or tabs."""
    return [line.split() for line in text.splitlines() if line.strip()]


def contents(address: str, namespace: str = "default") -> dict[str, Info]:
    out: dict[str, Info] = {}
    with Client(address, namespace=namespace) as c:
        c.content.walk(lambda i: out.__setitem__(i.digest, i))
    return out


@pytest.mark.parametrize("command", ["content fetch", "images pull"])
def test_ctr_pull_matches_ours(daemon: Daemon, image: tuple[str, TestImage], command: str) -> None:
    ref, img = image
    daemon.ctr(*command.split(), "--plain-http", ref, namespace="ctr")
    listed = rows(daemon.ctr("content", "ls", namespace="ctr").stdout)
    assert listed[0] == ["DIGEST", "SIZE", "AGE", "LABELS"]
    want = {img.root.digest, *(b.digest for b in img.host.blobs)}
    assert {r[0] for r in listed[1:]} == want

    daemon.pyctr(*command.split(), "--plain-http", ref, namespace="ours")
    theirs, ours = contents(daemon.address, "ctr"), contents(daemon.address, "ours")
    assert set(ours) == want
    # The same labels whoever pulled: sources and references for the collector, and after
    # an unpack the layers' uncompressed digests and the config's snapshot reference.
    for dgst in want:
        assert dict(ours[dgst].labels) == dict(theirs[dgst].labels), dgst
    unpacked = any("containerd.io/uncompressed" in ours[d].labels for d in want)
    assert unpacked == (command == "images pull")
    assert rows(daemon.ctr("images", "ls", "-q", namespace="ctr").stdout) == [[ref]]


def test_ctr_images_ls_tag_label_rm(daemon: Daemon, image: tuple[str, TestImage]) -> None:
    ref, img = image
    daemon.pyctr("images", "pull", "--plain-http", ref)
    theirs = rows(daemon.ctr("images", "ls").stdout)
    ours = rows(daemon.pyctr("images", "ls").stdout)
    assert theirs == ours
    assert theirs[1][:3] == [ref, mt.MEDIA_TYPE_IMAGE_INDEX, img.root.digest]

    assert daemon.ctr("images", "tag", ref, "example.com/tagged:1").stdout == (
        "example.com/tagged:1\n"
    )
    assert daemon.ctr("images", "label", "example.com/tagged:1", "a=b").stdout == "a=b\n"
    assert rows(daemon.pyctr("images", "ls").stdout) == rows(daemon.ctr("images", "ls").stdout)
    assert daemon.pyctr("images", "tag", ref, "example.com/tagged:1", check=False).returncode
    daemon.pyctr("images", "tag", "--force", ref, "example.com/tagged:1")
    assert daemon.ctr("images", "rm", "example.com/tagged:1").stdout == "example.com/tagged:1\n"
    assert daemon.pyctr("images", "ls", "-q").stdout == f"{ref}\n"
    assert daemon.pyctr("images", "rm", "--sync", ref).stdout == f"{ref}\n"
    assert daemon.ctr("images", "ls", "-q").stdout == ""


def test_export_import_with_ctr_both_ways(daemon: Daemon, image: tuple[str, TestImage]) -> None:
    ref, img = image
    daemon.pyctr("images", "pull", "--plain-http", ref)
    theirs, ours = daemon.base / "ctr.tar", daemon.base / "ours.tar"
    daemon.ctr("images", "export", str(theirs), ref)
    daemon.pyctr("images", "export", str(ours), ref)
    # The same files with the same bytes.
    assert read_tar(theirs.read_bytes()) == read_tar(ours.read_bytes())

    daemon.ctr("images", "import", str(ours), namespace="by-ctr")
    daemon.pyctr("images", "import", str(theirs), namespace="by-us")
    want = {img.root.digest, *(b.digest for b in img.host.blobs)}
    for ns in ("by-ctr", "by-us"):
        listed = rows(daemon.ctr("images", "ls", namespace=ns).stdout)
        assert listed[1][:3] == [ref, mt.MEDIA_TYPE_IMAGE_INDEX, img.root.digest], ns
        assert set(contents(daemon.address, ns)) == want, ns
    by_ctr, by_us = contents(daemon.address, "by-ctr"), contents(daemon.address, "by-us")
    for dgst in want:
        assert dict(by_ctr[dgst].labels) == dict(by_us[dgst].labels), dgst


def test_docker_archive_imports_as_ctr_imports_it(daemon: Daemon) -> None:
    img = make_test_image("docker-archive", docker=True)
    archive = daemon.base / "docker.tar"
    archive.write_bytes(docker_save_tar(img.host, ["example.com/saved:1", "saved:2"]))
    daemon.ctr("images", "import", "--no-unpack", str(archive), namespace="ctr")
    daemon.pyctr("images", "import", "--no-unpack", str(archive), namespace="ours")
    theirs = rows(daemon.ctr("images", "ls", namespace="ctr").stdout)
    ours = rows(daemon.ctr("images", "ls", namespace="ours").stdout)
    assert theirs == ours  # the generated manifests have containerd's digests
    assert [r[0] for r in ours[1:]] == ["docker.io/library/saved:2", "example.com/saved:1"]


def test_ctr_push_then_containerd_pulls_the_same(
    daemon: Daemon, registry: Registry, containerd: Containerd, image: tuple[str, TestImage]
) -> None:
    ref, img = image
    daemon.pyctr("images", "pull", "--plain-http", "--all-platforms", ref)
    dst = f"{registry.host}/compat/pushed-by-ctr:v1"
    daemon.ctr("images", "push", "--plain-http", dst, ref)
    containerd.ctr("content", "fetch", "--plain-http", "--all-platforms", dst, namespace="push")
    theirs = set(containerd.ctr("content", "ls", "-q", namespace="push").split())
    assert theirs == {b.digest for b in img.blobs}


def test_our_client_against_containerd(
    containerd: Containerd, registry: Registry, image: tuple[str, TestImage]
) -> None:
    ref, img = image
    with Client(containerd.address, namespace="py") as c:
        pulled = c.pull(ref, plain_http=True)
        assert pulled.target.digest == img.root.digest
        assert c.images.check(pulled).complete
        assert c.leases.list() == []
        assert set(contents(containerd.address, "py")) == {
            img.root.digest,
            *(b.digest for b in img.host.blobs),
        }
        listed = rows(containerd.ctr("images", "ls", namespace="py"))
        assert listed[1][:3] == [ref, mt.MEDIA_TYPE_IMAGE_INDEX, img.root.digest]

        out = containerd.base / "from-containerd.tar"
        with open(out, "wb") as f:
            c.images.export(f, [ref])
        names = read_tar(out.read_bytes())
        assert json.loads(names["manifest.json"])[0]["RepoTags"] == [ref]

        dst = f"{registry.host}/compat/pushed-by-us:v1"
        pushed = c.images.push(dst, ref, plain_http=True, platform=str(host()))
        assert pushed.digest == img.host.manifest.digest
    with Client(containerd.address, namespace="py-import") as c, open(out, "rb") as f:
        [record] = c.images.import_(f)
        assert record.name == ref
        assert c.images.check(record).complete
