"""The client suite runs every test twice: against pycontainerd and against containerd 1.6.

``target`` is module-scoped and parametrized, so each module starts one daemon of each kind in
turn (and never both at once); ``client`` gives each test a :class:`pycontainerd.Client` in a
namespace of its own, emptied and removed after the test. A test that containerd 1.6 cannot
pass because it lacks the feature (not because of a bug here) carries
``@pytest.mark.xfail_containerd("reason")``: on containerd it is a strict xfail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pycontainerd import Client
from pycontainerd.client.run import RunResult
from tests.fixtures.cleanup import empty_namespace
from tests.fixtures.containerd import run_containerd
from tests.fixtures.daemon import make_daemon
from tests.fixtures.images import make_test_image, push_image
from tests.fixtures.registry import run_registry

pytestmark = pytest.mark.integration

SNAPSHOTTER = "overlayfs"
PYCONTAINERD = "pycontainerd"
CONTAINERD = "containerd"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "xfail_containerd(reason): containerd 1.6 lacks the feature; a strict xfail there",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("xfail_containerd")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or callspec.params.get("target") != CONTAINERD:
            continue
        reason = marker.args[0] if marker.args else marker.kwargs["reason"]
        item.add_marker(pytest.mark.xfail(strict=True, reason=f"containerd 1.6: {reason}"))


@dataclass(frozen=True)
class Registry:
    """The suite's registry and the test image pushed there."""

    host: str
    ref: str


@dataclass(frozen=True)
class Target:
    """A running daemon the suite talks to."""

    name: str
    address: str
    registry: Registry

    @property
    def is_containerd(self) -> bool:
        return self.name == CONTAINERD


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A registry with a busybox image (``REGISTRY/test/busybox:1``), plain HTTP."""
    from pycontainerd.remotes import Resolver

    with run_registry() as reg:
        ref = f"{reg.host}/test/busybox:1"
        with Resolver(plain_http=True) as r:
            push_image(r, ref, make_test_image("client-suite"))
        yield Registry(reg.host, ref)


@contextlib.contextmanager
def _pycontainerd(base: Path) -> Iterator[str]:
    d = make_daemon(base)
    try:
        d.start()
        d.collect_garbage()
        yield d.address
        status = d.stop()
        assert status == 0, f"daemon exited with {status} on SIGTERM:\n{d.logs()}"
    finally:
        d.stop()
        d.cleanup()


@pytest.fixture(scope="module", params=[PYCONTAINERD, CONTAINERD])
def target(
    request: pytest.FixtureRequest, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """Our daemon, then containerd 1.6 with its own runc shim, for the module's tests."""
    if request.param == PYCONTAINERD:
        with _pycontainerd(tmp_path_factory.mktemp("pcd")) as address:
            yield Target(PYCONTAINERD, address, registry)
    else:
        with run_containerd() as ctd:
            yield Target(CONTAINERD, ctd.address, registry)


class Env:
    """A test's view of a daemon: a client in a fresh namespace and a FIFO directory."""

    def __init__(self, target: Target, client: Client, fifo_dir: Path) -> None:
        self.target = target
        self.client = client
        self.fifo_dir = fifo_dir
        self.ref = target.registry.ref

    @property
    def namespace(self) -> str:
        return self.client.namespace

    def pull(self) -> Any:
        """The test image, pulled and unpacked into the namespace."""
        return self.client.pull(self.ref, plain_http=True)

    def run(self, args: list[str], **kw: Any) -> RunResult:
        """``Client.run`` of the test image, FIFOs in the test's directory."""
        kw.setdefault("fifo_dir", str(self.fifo_dir))
        res = self.client.run(self.ref, args, plain_http=True, **kw)
        assert isinstance(res, RunResult)
        return res


@pytest.fixture
def env(target: Target, tmp_path: Path) -> Iterator[Env]:
    """A client of ``target`` in a namespace of its own, emptied and removed after the test;
    no FIFO may be left in its FIFO directory."""
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    client = Client(target.address, namespace=f"t-{uuid.uuid4().hex[:10]}")
    try:
        yield Env(target, client, fifo_dir)
    finally:
        try:
            if client.namespace in [n.name for n in client.namespaces.list()]:
                empty_namespace(client)
        finally:
            client.close()
    assert sorted(os.listdir(fifo_dir)) == []


@pytest.fixture
def client(env: Env) -> Client:
    """The test's client (``env.client``)."""
    return env.client
