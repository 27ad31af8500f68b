"""The native transport: gRPC served by ``pcd-rpc`` (Rust), handlers run on this event loop.

HTTP/2, gRPC framing, deadlines and message limits live in Rust on a small runtime of its own
threads; this process does not import ``grpc``. The native server tells this loop about calls
through an eventfd (``loop.add_reader``): one ``drain()`` takes every waiting event, and each new
call runs as an asyncio task. Answers go back with ``respond``/``send``/``finish``, short calls
that never block. Backpressure: ``send`` reports when a call's answer queue is full, and the
handler's generator is not resumed until a WRITABLE event says the client has caught up. Request
messages of streaming clients are read one at a time as the handler consumes them.

Differences from grpc.aio a handler may notice: ``-bin`` metadata values are passed as sent
(base64 text), and ``invocation_metadata()`` leaves out ``content-type``, ``te`` and ``grpc-*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from pycontainerd import _native, errdefs
from pycontainerd.daemon.rpc import AbortError, status_of
from pycontainerd.errdefs import Code

__all__ = ["NativeServer"]

log = logging.getLogger(__name__)

# Method kinds, as the native module numbers them: bit 0 the server streams, bit 1 the client.
_UNARY, _SERVER_STREAMING, _CLIENT_STREAMING, _BIDI = 0, 1, 2, 3

# Event kinds, the first item of each tuple ``RpcServer.drain`` returns.
_CALL, _MESSAGE, _HALF_CLOSE, _CANCELLED, _WRITABLE, _STOPPED = 0, 1, 2, 3, 4, 5

# How long stop() waits for cancelled handlers to unwind, and then for connections to flush.
_UNWIND = 1.0


@dataclass(frozen=True, slots=True)
class _Method:
    path: str
    kind: int
    handler: Callable[..., Any]
    request_type: type[Message]


class _Call:
    """One call in flight: what its handler's context and request iterator read."""

    __slots__ = ("cancelled", "deadline", "id", "metadata", "requests", "task", "writable")

    def __init__(
        self, call_id: int, metadata: Sequence[tuple[str, str]], deadline: float | None
    ) -> None:
        self.id = call_id
        self.metadata = metadata
        self.deadline = deadline
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None
        self.requests: _Requests | None = None
        self.writable: asyncio.Future[None] | None = None


class _Context:
    """:class:`~pycontainerd.daemon.rpc.ServicerContext` of a native call."""

    __slots__ = ("_call", "_loop")

    def __init__(self, call: _Call, loop: asyncio.AbstractEventLoop) -> None:
        self._call = call
        self._loop = loop

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        return self._call.metadata

    async def abort(self, code: Code, details: str) -> NoReturn:
        raise AbortError(code, details)

    def time_remaining(self) -> float | None:
        deadline = self._call.deadline
        return None if deadline is None else max(0.0, deadline - self._loop.time())

    def cancelled(self) -> bool:
        return self._call.cancelled


class _Requests:
    """The request stream of a client-streaming or bidirectional call.

    Holds at most the messages the native side was allowed to read ahead; taking one lets it
    read the next.
    """

    __slots__ = ("_ended", "_id", "_loop", "_native", "_queue", "_type", "_waiter")

    def __init__(
        self,
        call_id: int,
        request_type: type[Message],
        native: _native.RpcServer,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._id = call_id
        self._type = request_type
        self._native = native
        self._loop = loop
        self._queue: deque[bytes] = deque()
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, payload: bytes) -> None:
        self._queue.append(payload)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Any:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        payload = self._queue.popleft()
        self._native.credit(self._id)
        return _decode(self._type, payload)


def _decode(request_type: type[Message], payload: bytes) -> Message:
    try:
        return request_type.FromString(payload)
    except Exception as exc:
        raise AbortError(Code.INTERNAL, f"grpc: error unmarshalling request: {exc}") from exc


class NativeServer:
    """:class:`~pycontainerd.daemon.rpc.RPCServer` on the native transport.

    ``start(path)`` binds the socket synchronously on the calling thread, so a umask the caller
    sets around it applies; the caller chmods/chowns afterwards, and unlinks the path after
    ``stop``. Message limits answer RESOURCE_EXHAUSTED, as gRPC does. ``send_buffer`` bounds the
    bytes of answers queued for one streaming call before its handler waits for the client.
    """

    def __init__(
        self,
        *,
        max_recv_message_size: int = 16 << 20,
        max_send_message_size: int = 16 << 20,
        send_buffer: int = 1 << 20,
    ) -> None:
        self._limits = (max_recv_message_size, max_send_message_size, send_buffer)
        self._services: list[str] = []
        self._methods: list[_Method] = []
        self._calls: dict[int, _Call] = {}
        self._native: _native.RpcServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._refusing = False

    def add_service(self, descriptor: ServiceDescriptor, implementation: object) -> None:
        if self._native is not None:
            raise errdefs.FailedPrecondition(
                f"add service {descriptor.full_name}: the server has started"
            )
        self._services.append(descriptor.full_name)
        for m in descriptor.methods:
            handler = getattr(implementation, m.name, None)
            if handler is None:
                continue  # answered "unknown method", as grpc-go does
            kind = (_SERVER_STREAMING if m.server_streaming else 0) | (
                _CLIENT_STREAMING if m.client_streaming else 0
            )
            self._methods.append(
                _Method(
                    path=f"/{descriptor.full_name}/{m.name}",
                    kind=kind,
                    handler=handler,
                    request_type=GetMessageClass(m.input_type),
                )
            )

    async def start(self, path: str) -> None:
        if self._native is not None:
            raise errdefs.FailedPrecondition(f"serve {path}: the server has started")
        loop = asyncio.get_running_loop()
        recv, send, buffer = self._limits
        native = _native.RpcServer(
            os.fspath(path),
            self._services,
            [(m.path, m.kind) for m in self._methods],
            max_recv_message_size=recv,
            max_send_message_size=send,
            send_high_water=buffer,
        )
        self._native, self._loop = native, loop
        self._stopped = loop.create_future()
        loop.add_reader(native.fileno(), self._on_events)

    async def stop(self, grace: float) -> None:
        native, loop, stopped = self._native, self._loop, self._stopped
        if native is None or loop is None or stopped is None:
            return
        native.shutdown()  # the socket closes now; calls in flight go on
        running = [c.task for c in self._calls.values() if c.task is not None]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        self._refusing = True
        stragglers = list(self._calls.values())
        for call in stragglers:
            if not call.cancelled:
                call.cancelled = True
                native.finish(call.id, Code.UNAVAILABLE, "server is stopping")
            if call.task is not None:
                call.task.cancel()
        unwinding = [c.task for c in stragglers if c.task is not None]
        if unwinding:
            _, pending = await asyncio.wait(unwinding, timeout=_UNWIND)
            for task in pending:
                log.warning("rpc handler ignored its cancellation: %s", task.get_name())
        native.close(_UNWIND)
        try:
            await asyncio.wait_for(asyncio.shield(stopped), _UNWIND + 5)
        except TimeoutError:
            log.warning("rpc server: connections still open after stop, %d calls", len(self._calls))
        loop.remove_reader(native.fileno())
        self._native = None

    # The event pump: runs on the loop whenever the event fd is readable.

    def _on_events(self) -> None:
        native = self._native
        if native is None:
            return
        calls = self._calls
        for kind, call_id, number, metadata, payload, timeout in native.drain():
            if kind == _CALL:
                self._begin(native, call_id, number, metadata or [], payload, timeout)
                continue
            call = calls.get(call_id)
            if kind == _STOPPED:
                if self._stopped is not None and not self._stopped.done():
                    self._stopped.set_result(None)
            elif call is None:
                continue  # the handler is done; the transport is catching up
            elif kind == _MESSAGE:
                if call.requests is not None and payload is not None:
                    call.requests.push(payload)
            elif kind == _HALF_CLOSE:
                if call.requests is not None:
                    call.requests.end()
            elif kind == _WRITABLE:
                if call.writable is not None and not call.writable.done():
                    call.writable.set_result(None)
            elif kind == _CANCELLED:
                call.cancelled = True
                if call.task is not None:
                    call.task.cancel()

    def _begin(
        self,
        native: _native.RpcServer,
        call_id: int,
        index: int,
        metadata: Sequence[tuple[str, str]],
        payload: bytes | None,
        timeout: float | None,
    ) -> None:
        if self._refusing:
            native.finish(call_id, Code.UNAVAILABLE, "server is stopping")
            return
        loop = self._loop
        assert loop is not None
        method = self._methods[index]
        call = _Call(call_id, metadata, None if timeout is None else loop.time() + timeout)
        if method.kind & _CLIENT_STREAMING:
            call.requests = _Requests(call_id, method.request_type, native, loop)
        self._calls[call_id] = call
        task = loop.create_task(self._run(native, loop, call, method, payload))
        call.task = task
        task.add_done_callback(lambda _: self._calls.pop(call_id, None))

    async def _run(
        self,
        native: _native.RpcServer,
        loop: asyncio.AbstractEventLoop,
        call: _Call,
        method: _Method,
        payload: bytes | None,
    ) -> None:
        context = _Context(call, loop)
        try:
            if method.kind & _CLIENT_STREAMING:
                request: Any = call.requests
            else:
                request = _decode(method.request_type, payload or b"")
            if method.kind & _SERVER_STREAMING:
                async with contextlib.aclosing(method.handler(request, context)) as answers:
                    async for answer in answers:
                        if not native.send(call.id, answer.SerializeToString()):
                            await self._writable(loop, call)
                native.finish(call.id, Code.OK, "")
            else:
                answer = await method.handler(request, context)
                native.respond(call.id, answer.SerializeToString())
        except asyncio.CancelledError:
            # The transport ended the call (client gone, deadline) or stop() did and answered.
            if not call.cancelled:
                native.finish(call.id, Code.CANCELLED, "handler cancelled")
        except Exception as exc:
            code, message = status_of(exc, method.path)
            native.finish(call.id, code, message)

    @staticmethod
    async def _writable(loop: asyncio.AbstractEventLoop, call: _Call) -> None:
        call.writable = loop.create_future()
        try:
            await call.writable
        finally:
            call.writable = None
