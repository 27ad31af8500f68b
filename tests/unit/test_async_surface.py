"""``AsyncClient`` has ``Client``'s surface: every public method of the client and of each
object it hands out has its async counterpart, awaitable where the sync one blocks."""

from __future__ import annotations

import inspect

import pytest

from pycontainerd.client import aio
from pycontainerd.client.client import Client
from pycontainerd.client.containers import ContainersAPI
from pycontainerd.client.content import ProxyContentStore, RemoteReaderAt, RemoteWriter
from pycontainerd.client.diff import ProxyDiff
from pycontainerd.client.images import ImagesAPI
from pycontainerd.client.leases import LeaseHandle, LeasesAPI
from pycontainerd.client.namespaces import NamespacesAPI
from pycontainerd.client.snapshots import ProxySnapshotter
from pycontainerd.client.tasks import ContainerHandle, Process, Task, TasksAPI

PAIRS = [
    (Client, aio.AsyncClient),
    (ContainersAPI, aio.AsyncContainers),
    (ProxyContentStore, aio.AsyncContentStore),
    (RemoteReaderAt, aio.AsyncReaderAt),
    (RemoteWriter, aio.AsyncWriter),
    (ProxyDiff, aio.AsyncDiff),
    (ImagesAPI, aio.AsyncImages),
    (LeaseHandle, aio.AsyncLeaseHandle),
    (LeasesAPI, aio.AsyncLeases),
    (NamespacesAPI, aio.AsyncNamespaces),
    (ProxySnapshotter, aio.AsyncSnapshotter),
    (ContainerHandle, aio.AsyncContainerHandle),
    (Process, aio.AsyncProcess),
    (Task, aio.AsyncTask),
    (TasksAPI, aio.AsyncTasks),
]
#: Sync-only by nature: context-manager protocols, dataclass plumbing.
_SKIP = {"api", "expires_at"}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and n not in _SKIP}


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=lambda c: c.__name__)
def test_every_public_name_has_an_async_counterpart(sync: type, async_: type) -> None:
    assert _public(sync) - _public(async_) == set()


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=lambda c: c.__name__)
def test_blocking_methods_are_coroutines(sync: type, async_: type) -> None:
    """A sync method doing I/O is a coroutine function on the async side (checked on the
    delegating descriptors and the methods written out)."""
    not_awaitable = {
        # return handles or values without I/O
        "content_store", "snapshots", "diff", "container", "close", "wait_future",
    }  # fmt: skip
    for name in _public(sync):
        member = inspect.getattr_static(sync, name)
        if isinstance(member, property | staticmethod) or not callable(member):
            continue
        if name in not_awaitable or name.startswith("with_"):
            continue
        counterpart = inspect.getattr_static(async_, name, None)
        if counterpart is None:  # inherited: AsyncTask from AsyncProcess
            counterpart = getattr(async_, name)
        assert isinstance(counterpart, aio._aio) or inspect.iscoroutinefunction(counterpart), (
            f"{async_.__name__}.{name} is not awaitable"
        )
