"""The Python SDK: ``with Client(address, namespace=...) as c: ...``."""

from pycontainerd.client.client import Client, PluginInfo, ServerInfo, Version
from pycontainerd.client.events import Event, EventStream
from pycontainerd.client.leases import LeaseHandle, LeasesAPI
from pycontainerd.client.namespaces import NamespacesAPI
from pycontainerd.client.tasks import ContainerHandle, ExitStatus, Process, Task, TasksAPI

__all__ = [
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
