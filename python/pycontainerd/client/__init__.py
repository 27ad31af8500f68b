"""The Python SDK: ``with Client(address, namespace=...) as c: ...``."""

from pycontainerd.client.client import Client, PluginInfo, ServerInfo, Version
from pycontainerd.client.events import Event, EventStream
from pycontainerd.client.leases import LeaseHandle, LeasesAPI
from pycontainerd.client.namespaces import NamespacesAPI

__all__ = [
    "Client",
    "Event",
    "EventStream",
    "LeaseHandle",
    "LeasesAPI",
    "NamespacesAPI",
    "PluginInfo",
    "ServerInfo",
    "Version",
]
