"""The daemon's ttrpc server on ``<grpc socket>.ttrpc``, as containerd's.

Shims reach the daemon there (their ``TTRPC_ADDRESS``): ``containerd.services.events.ttrpc.v1
.Events/Forward`` puts the task events a shim publishes on the daemon's exchange, as they are.
The server is the ``io.containerd.ttrpc.v1 events`` plugin; it binds while plugins load, so the
runtime can start shims right after, and is closed with the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Final

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.events.ttrpc.v1 import events_pb2
from pycontainerd.daemon.services.events import publisher
from pycontainerd.events import Envelope, Exchange
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.ttrpc import CallContext, Server

__all__ = [
    "TTRPC_PLUGIN_TYPE",
    "EventsTTRPCService",
    "TTRPCServer",
    "registration",
    "ttrpc_address",
]

log = logging.getLogger(__name__)

#: containerd's plugin type for services served over ttrpc.
TTRPC_PLUGIN_TYPE: Final = "io.containerd.ttrpc.v1"


def ttrpc_address(grpc_address: str) -> str:
    """Where the daemon serves ttrpc: its gRPC socket's path plus ``.ttrpc``."""
    return grpc_address.removeprefix("unix://").removeprefix("unix:") + ".ttrpc"


class EventsTTRPCService:
    """``Events/Forward`` over ttrpc: envelopes from shims onto the exchange."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    async def Forward(
        self, request: events_pb2.ForwardRequest, context: CallContext
    ) -> empty_pb2.Empty:
        env = request.envelope
        self._exchange.forward(
            Envelope(
                timestamp=env.timestamp.ToNanoseconds() if env.HasField("timestamp") else 0,
                namespace=env.namespace,
                topic=env.topic,
                event=env.event,
            )
        )
        return empty_pb2.Empty()


class TTRPCServer:
    """The bound socket and the server on it, for the daemon's life.

    The socket is bound at once; serving starts on the running event loop (the daemon's),
    or with :meth:`start` when the plugin was loaded without one.
    """

    def __init__(self, path: str, server: Server) -> None:
        self.path = path
        self.server = server
        self._task: asyncio.Task[None] | None = None
        self._closed = not path  # without a daemon address there is nothing to serve
        self._sock = _bind(path) if path else socket.socket(socket.AF_UNIX)
        if self._closed:
            self._sock.close()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(server.serve_socket(self._sock))

    async def start(self) -> None:
        """Serve, if that has not started yet."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self.server.serve_socket(self._sock)
            )
        if self._task is not None:
            await asyncio.shield(self._task)

    def close(self) -> None:
        """Stop serving and remove the socket."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.server.close()
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        log.debug("ttrpc server on %s stopped", self.path)


def _bind(path: str) -> socket.socket:
    from pycontainerd.daemon.server import claim_socket

    claim_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _init(ic: InitContext) -> TTRPCServer:
    server = Server()
    server.add_service(
        events_pb2.DESCRIPTOR.services_by_name["Events"], EventsTTRPCService(publisher(ic))
    )
    path = ttrpc_address(ic.address) if ic.address else ""
    srv = TTRPCServer(path, server)
    ic.meta.exports["address"] = path
    if path:
        log.info("serving ttrpc on %s", path)
    return srv


registration = Registration(type=TTRPC_PLUGIN_TYPE, id="events", init=_init, requires=(Type.EVENT,))
