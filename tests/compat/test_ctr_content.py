"""containerd's own ``ctr content`` against our daemon's Content service."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from pycontainerd import Client
from pycontainerd.descriptor import Descriptor
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.compat


@pytest.fixture(autouse=True)
def _ctr_installed() -> None:
    assert shutil.which("ctr"), "ctr is missing: apt-get install containerd (scripts/setup does)"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ctr(
    daemon: Daemon, *args: str, stdin: bytes = b"", namespace: str = "default"
) -> subprocess.CompletedProcess[bytes]:
    """Run ``ctr content``; stdin is a file, which ctr seeks when it resumes an ingest."""
    src = daemon.base / "stdin"
    src.write_bytes(stdin)
    with open(src, "rb") as f:
        return subprocess.run(
            ["ctr", "-a", daemon.address, "-n", namespace, "content", *args],
            stdin=f,
            capture_output=True,
            timeout=120,
        )


def _ok(daemon: Daemon, *args: str, stdin: bytes = b"", namespace: str = "default") -> str:
    result = _ctr(daemon, *args, stdin=stdin, namespace=namespace)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def _rows(text: str) -> list[list[str]]:
    return [[cell for cell in line.split("\t") if cell] for line in text.splitlines()]


def test_ingest_ls_get_label_rm(daemon: Daemon) -> None:
    data = os.urandom(5 << 20)
    dgst = _sha(data)
    size = str(len(data))
    _ok(daemon, "ingest", "--expected-digest", dgst, "--expected-size", size, "ref-1", stdin=data)
    rows = _rows(_ok(daemon, "ls"))
    assert rows[0] == ["DIGEST", "SIZE", "AGE", "LABELS"]
    assert rows[1][0] == dgst
    assert rows[1][1] == "5.243MB"
    assert rows[1][-1] == "-"
    assert _ok(daemon, "ls", "-q") == f"{dgst}\n"

    got = _ctr(daemon, "get", dgst)
    assert got.returncode == 0, got.stderr
    assert got.stdout == data

    gc_ref = "containerd.io/gc.ref.content.l.0"
    assert _ok(daemon, "label", dgst, f"{gc_ref}={_sha(b'x')}") == f"{gc_ref}={_sha(b'x')}\n"
    with Client(daemon.address) as c:
        assert c.content.info(dgst).labels == {gc_ref: _sha(b"x")}
    assert _ok(daemon, "ls", "-q", f'labels."{gc_ref}"') == f"{dgst}\n"
    assert _ok(daemon, "ls", "-q", "labels.nope") == ""
    assert _ok(daemon, "label", dgst, f"{gc_ref}=") == "\n"  # cleared

    assert _ok(daemon, "rm", dgst) == f"{dgst}\n"
    assert _ok(daemon, "ls", "-q") == ""
    assert _ok(daemon, "rm", dgst) == ""  # not found: skipped, as ctr does


def test_ingest_of_corrupt_data_is_refused(daemon: Daemon) -> None:
    data = b"what the registry sent"
    wrong = _sha(b"what the manifest promised")
    result = _ctr(daemon, "ingest", "--expected-digest", wrong, "bad-ref", stdin=data)
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "bad-ref" in err
    assert wrong in err
    assert _sha(data) in err
    assert "failed precondition" in err
    assert _ok(daemon, "ls", "-q") == ""
    assert _rows(_ok(daemon, "active")) == [["REF", "SIZE", "AGE"]]


def test_active_shows_a_write_in_flight(daemon: Daemon) -> None:
    with Client(daemon.address) as c, c.content.writer("layer-in-flight") as w:
        w.write(b"x" * 1500)
        rows = _rows(_ok(daemon, "active"))
        assert rows[0] == ["REF", "SIZE", "AGE"]
        assert rows[1][:2] == ["layer-in-flight", "1.5kB"]


def test_ctr_resumes_an_ingest(daemon: Daemon) -> None:
    data = os.urandom(3 << 20)
    dgst = _sha(data)
    with Client(daemon.address) as c:
        with c.content.writer("resume-me", desc=Descriptor("", dgst, len(data))) as w:
            w.write(data[: 1 << 20])
        # ctr's copy skips what the ingest holds and sends the rest
        _ok(daemon, "ingest", "--expected-digest", dgst, "resume-me", stdin=data)
        assert c.content.info(dgst).size == len(data)
        assert c.content.list_statuses() == []


def test_content_shared_across_namespaces(daemon: Daemon) -> None:
    data = os.urandom(1 << 20)
    dgst = _sha(data)
    _ok(daemon, "ingest", "--expected-digest", dgst, "ref", stdin=data, namespace="one")
    assert _ok(daemon, "ls", "-q", namespace="two") == ""
    _ok(daemon, "ingest", "--expected-digest", dgst, "ref", stdin=data, namespace="two")
    assert _ok(daemon, "ls", "-q", namespace="two") == f"{dgst}\n"
    assert _ctr(daemon, "get", dgst, namespace="two").stdout == data
    # the delete in one starts a collection: two's copy is held by a root label
    _ok(daemon, "label", dgst, "containerd.io/gc.root=test", namespace="two")
    _ok(daemon, "rm", dgst, namespace="one")
    assert _ctr(daemon, "get", dgst, namespace="two").stdout == data


def test_errors(daemon: Daemon) -> None:
    result = _ctr(daemon, "get", _sha(b"missing"))
    assert result.returncode != 0
    assert f"content digest {_sha(b'missing')}: not found" in result.stderr.decode()
    result = _ctr(daemon, "label", _sha(b"missing"), "a=b")
    assert result.returncode != 0
    assert "not found" in result.stderr.decode()
