"""The Python SDK: ``with Client(address, namespace=...) as c: ...``.

``Client`` and ``AsyncClient`` load on first use, and the modules behind them load when a
call needs them (PEP 562), so ``import pycontainerd`` and making a client stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycontainerd.client.aio import (
        AsyncClient,
        AsyncContainerHandle,
        AsyncEventStream,
        AsyncProcess,
        AsyncTask,
    )
    from pycontainerd.client.client import Client, PluginInfo, ServerInfo, Version
    from pycontainerd.client.events import Event, EventStream
    from pycontainerd.client.leases import LeaseHandle, LeasesAPI
    from pycontainerd.client.namespaces import NamespacesAPI
    from pycontainerd.client.tasks import ContainerHandle, ExitStatus, Process, Task, TasksAPI

__all__ = [
    "AsyncClient",
    "AsyncContainerHandle",
    "AsyncEventStream",
    "AsyncProcess",
    "AsyncTask",
    "Client",
    "ContainerHandle",
    "Event",
    "EventStream",
    "ExitStatus",
    "LeaseHandle",
    "LeasesAPI",
    "NamespacesAPI",
    "PluginInfo",
    "Process",
    "ServerInfo",
    "Task",
    "TasksAPI",
    "Version",
]

#: Where each public name lives.
_LAZY = {
    "AsyncClient": "aio",
    "AsyncContainerHandle": "aio",
    "AsyncEventStream": "aio",
    "AsyncProcess": "aio",
    "AsyncTask": "aio",
    "Client": "client",
    "PluginInfo": "client",
    "ServerInfo": "client",
    "Version": "client",
    "Event": "events",
    "EventStream": "events",
    "LeaseHandle": "leases",
    "LeasesAPI": "leases",
    "NamespacesAPI": "namespaces",
    "ContainerHandle": "tasks",
    "ExitStatus": "tasks",
    "Process": "tasks",
    "Task": "tasks",
    "TasksAPI": "tasks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pycontainerd.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pycontainerd.client.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
