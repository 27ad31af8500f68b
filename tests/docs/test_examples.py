"""Every ```python block of docs/*.md and docs/reference/*.md runs, against a real pycontainerd
daemon and against containerd 1.6, with a real registry holding a busybox image; and
docs/reference is what scripts/gen-docs makes of the current docstrings.

A block runs on its own, with the names the guide documents: ``ADDRESS`` (the daemon's
socket), ``REGISTRY`` (the registry's host) and ``IMAGE`` (``REGISTRY/library/busybox:latest``).
What a block leaves in the namespace ``guide`` is removed after it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pycontainerd import Client
from tests.fixtures.cleanup import empty_namespace
from tests.fixtures.containerd import run_containerd
from tests.fixtures.daemon import Daemon, make_daemon
from tests.fixtures.images import make_test_image, push_image
from tests.fixtures.registry import run_registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NAMESPACE = "guide"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    """A ```python block: its file, first line and code."""

    path: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DOCS)}:{self.line}"


def examples() -> list[Example]:
    """The python blocks of docs/*.md and docs/reference/*.md, in order."""
    out = []
    for path in sorted([*DOCS.glob("*.md"), *DOCS.glob("reference/*.md")]):
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            line = text.count("\n", 0, m.start(1)) + 1
            out.append(Example(path, line, m.group(1)))
    return out


@dataclass(frozen=True)
class Setting:
    address: str
    registry: str
    image: str


@pytest.fixture(scope="session")
def registry() -> Iterator[tuple[str, str]]:
    """The registry's host and the busybox image pushed there."""
    from pycontainerd.remotes import Resolver

    with run_registry() as reg:
        image = f"{reg.host}/library/busybox:latest"
        with Resolver(plain_http=True) as r:
            push_image(r, image, make_test_image("docs"))
        yield reg.host, image


@pytest.fixture(scope="module", params=["pycontainerd", "containerd"])
def setting(
    request: pytest.FixtureRequest,
    registry: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setting]:
    """The examples' names, for our daemon and then for containerd 1.6: the guide's code
    runs unchanged against both."""
    host, image = registry
    if request.param == "containerd":
        with run_containerd() as ctd:
            yield Setting(ctd.address, host, image)
        return
    d: Daemon = make_daemon(tmp_path_factory.mktemp("docs"))
    try:
        d.start()
        d.collect_garbage()
        yield Setting(d.address, host, image)
        status = d.stop()
        assert status == 0, f"daemon exited with {status} on SIGTERM:\n{d.logs()}"
    finally:
        d.stop()
        d.cleanup()


def test_the_docs_have_examples() -> None:
    found = examples()
    assert len([e for e in found if e.path.name == "guide.md"]) >= 8
    for e in found:
        assert e.code.strip(), e.id


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.id)
def test_example_runs(example: Example, setting: Setting) -> None:
    # compiled at its line of the file: a traceback names docs/guide.md:LINE
    code = compile("\n" * (example.line - 1) + example.code, str(example.path), "exec")
    scope = {
        "__name__": "__docs__",
        "ADDRESS": setting.address,
        "REGISTRY": setting.registry,
        "IMAGE": setting.image,
    }
    try:
        exec(code, scope)
    finally:
        with Client(setting.address, namespace=NAMESPACE) as c:
            if NAMESPACE in [n.name for n in c.namespaces.list()]:
                empty_namespace(c)


def test_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-docs"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_reference_has_a_page_per_module() -> None:
    pages = {p.stem for p in (DOCS / "reference").glob("*.md")}
    for module in [
        "pycontainerd",
        "pycontainerd.client",
        "pycontainerd.cio",
        "pycontainerd.errdefs",
        "pycontainerd.containers",
        "pycontainerd.images.image",
        "pycontainerd.content",
        "pycontainerd.snapshots",
        "pycontainerd.leases",
        "pycontainerd.events",
        "pycontainerd.mount",
        "pycontainerd.archive",
        "pycontainerd.diff",
        "pycontainerd.oci",
    ]:
        assert module in pages
