"""ttrpc, containerd's lightweight RPC over unix sockets, for asyncio.

The daemon serves ``containerd.services.events.ttrpc.v1.Events`` to its shims with
:class:`Server` and talks to each shim's ``containerd.task.v2.Task`` with :class:`Client`.
"""

from pycontainerd.ttrpc.channel import (
    HEADER_LENGTH,
    MESSAGE_LENGTH_MAX,
    Closed,
    MessageType,
    socket_path,
)
from pycontainerd.ttrpc.client import Client
from pycontainerd.ttrpc.server import CallContext, Handler, Server

__all__ = [
    "HEADER_LENGTH",
    "MESSAGE_LENGTH_MAX",
    "CallContext",
    "Client",
    "Closed",
    "Handler",
    "MessageType",
    "Server",
    "socket_path",
]
