"""A ttrpc server over asyncio on a unix socket.

Services are registered by descriptor with an object holding one ``async`` method per RPC,
named as in the ``.proto`` and called ``method(request, context)``, the same convention as the
daemon's gRPC services. Errors map through :func:`pycontainerd.daemon.rpc.status_of`'s table:
an :mod:`~pycontainerd.errdefs` exception answers with its code and message. As containerd's,
the server only talks to peers running as its own user (or root).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import status_pb2

from pycontainerd import errdefs
from pycontainerd.api.ttrpc import ttrpc_pb2
from pycontainerd.errdefs import Code
from pycontainerd.ttrpc.channel import (
    Closed,
    MessageTooLarge,
    MessageType,
    encode_frame,
    read_frame,
)

__all__ = ["CallContext", "Handler", "Server"]

log = logging.getLogger(__name__)

#: A method: the serialized request and the call's context in, the serialized answer out.
Handler = Callable[[bytes, "CallContext"], Awaitable[bytes]]


@dataclass(frozen=True)
class CallContext:
    """What a handler may know of its call."""

    service: str
    method: str
    metadata: Sequence[tuple[str, str]] = field(default_factory=tuple)
    timeout: float | None = None

    def get(self, key: str) -> str | None:
        """The first metadata value for ``key``."""
        for k, v in self.metadata:
            if k == key:
                return v
        return None


def _status(code: Code, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=int(code), message=message)


def _peer_allowed(sock: socket.socket | None) -> bool:
    """containerd's ``UnixSocketRequireSameUser``: the peer is root or runs as we do."""
    if sock is None:
        return False
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.geteuid())


class Server:
    """Serves registered services on one unix socket."""

    def __init__(self) -> None:
        self._methods: dict[tuple[str, str], Handler] = {}
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def register(self, service: str, method: str, handler: Handler) -> None:
        """Serve ``service``/``method`` with a handler of serialized messages."""
        if (service, method) in self._methods:
            raise errdefs.AlreadyExists(f"ttrpc method {service}/{method}: already registered")
        self._methods[(service, method)] = handler

    def add_service(self, descriptor: ServiceDescriptor, implementation: object) -> None:
        """Serve every method of ``descriptor`` that ``implementation`` has."""
        for method in descriptor.methods:
            impl = getattr(implementation, method.name, None)
            if impl is None:
                continue
            self.register(
                descriptor.full_name,
                method.name,
                _typed(impl, GetMessageClass(method.input_type)),
            )

    async def start(self, path: str) -> None:
        """Bind ``path`` (the caller has made it free) and accept connections."""
        self._server = await asyncio.start_unix_server(self._serve_connection, path=path)

    async def serve_socket(self, sock: socket.socket) -> None:
        """Accept connections on a bound, listening socket."""
        self._server = await asyncio.start_unix_server(self._serve_connection, sock=sock)

    def close(self) -> None:
        """Stop accepting and end every connection (their calls are cancelled)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()

    async def stop(self) -> None:
        """:meth:`close`, then wait for the connections to end."""
        tasks = list(self._connections)
        self.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        calls: set[asyncio.Task[None]] = set()
        try:
            if not _peer_allowed(writer.get_extra_info("socket")):
                log.warning("ttrpc: refusing a connection from another user")
                return
            while True:
                try:
                    frame = await read_frame(reader)
                except MessageTooLarge as exc:
                    _send(writer, exc.stream_id, _status(exc.code, exc.message), b"")
                    continue
                if frame.type != MessageType.REQUEST:
                    continue
                if frame.stream_id % 2 == 0:
                    _send(
                        writer,
                        frame.stream_id,
                        _status(
                            Code.INVALID_ARGUMENT,
                            "StreamID must be odd for client initiated streams",
                        ),
                        b"",
                    )
                    continue
                call = asyncio.create_task(self._call(writer, frame.stream_id, frame.payload))
                calls.add(call)
                call.add_done_callback(calls.discard)
        except Closed:
            pass
        finally:
            for call in calls:
                call.cancel()
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _call(self, writer: asyncio.StreamWriter, stream_id: int, payload: bytes) -> None:
        try:
            request = ttrpc_pb2.Request.FromString(payload)
        except DecodeError as exc:
            status = _status(Code.INVALID_ARGUMENT, f"unmarshal request error: {exc}")
            _send(writer, stream_id, status, b"")
            return
        handler = self._methods.get((request.service, request.method))
        if handler is None:
            known = any(service == request.service for service, _ in self._methods)
            what = f"method {request.method}" if known else f"service {request.service}"
            _send(writer, stream_id, _status(Code.UNIMPLEMENTED, what), b"")
            return
        timeout = request.timeout_nano / 1e9 if request.timeout_nano > 0 else None
        ctx = CallContext(
            service=request.service,
            method=request.method,
            metadata=tuple((kv.key, kv.value) for kv in request.metadata),
            timeout=timeout,
        )
        answer = b""
        status = _status(Code.OK, "")
        try:
            async with asyncio.timeout(timeout):
                answer = await handler(request.payload, ctx)
        except TimeoutError:
            status = _status(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
        except errdefs.ContainerdError as exc:
            status = _status(exc.code, exc.message)
        except Exception as exc:
            log.exception("ttrpc %s/%s failed", request.service, request.method)
            status = _status(Code.UNKNOWN, str(exc) or type(exc).__name__)
        _send(writer, stream_id, status, answer)


def _send(
    writer: asyncio.StreamWriter, stream_id: int, status: status_pb2.Status, payload: bytes
) -> None:
    response = ttrpc_pb2.Response(payload=payload)
    if status.code != 0:
        response.status.CopyFrom(status)
    if writer.is_closing():
        return
    writer.write(encode_frame(stream_id, MessageType.RESPONSE, response.SerializeToString()))


def _typed(
    impl: Callable[[Message, CallContext], Awaitable[Message]], request_class: type[Message]
) -> Handler:
    async def handle(payload: bytes, ctx: CallContext) -> bytes:
        try:
            request = request_class.FromString(payload)
        except DecodeError as exc:
            raise errdefs.InvalidArgument(
                f"ttrpc: error unmarshalling payload of {ctx.service}/{ctx.method}: {exc}"
            ) from None
        response = await impl(request, ctx)
        return response.SerializeToString()

    return handle
