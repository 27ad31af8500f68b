"""The grpc.aio transport: services of :mod:`pycontainerd.daemon.rpc` on grpcio's server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from pycontainerd.daemon.rpc import AbortError, status_of
from pycontainerd.errdefs import Code

__all__ = ["AioServer"]

_Handler = Callable[..., Any]


class _Context:
    """:class:`~pycontainerd.daemon.rpc.ServicerContext` over a grpc.aio context."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._ctx = ctx

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        return [
            (k, v if isinstance(v, str) else v.decode())
            for k, v in self._ctx.invocation_metadata() or ()
        ]

    async def abort(self, code: Code, details: str) -> NoReturn:
        raise AbortError(code, details)

    def time_remaining(self) -> float | None:
        return self._ctx.time_remaining()

    def cancelled(self) -> bool:
        return self._ctx.cancelled()


async def _fail(ctx: grpc.aio.ServicerContext[Any, Any], exc: Exception, method: str) -> NoReturn:
    code, details = status_of(exc, method)
    await ctx.abort(grpc.StatusCode[code.name], details)


def _unary(fn: _Handler, method: str) -> _Handler:
    async def call(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await fn(request, _Context(ctx))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(ctx, exc, method)

    return call


def _streaming(fn: _Handler, method: str) -> _Handler:
    async def call(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for item in fn(request, _Context(ctx)):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(ctx, exc, method)

    return call


def _handler(m: MethodDescriptor, fn: _Handler, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    request_cls = GetMessageClass(m.input_type)
    kwargs: dict[str, Any] = {
        "request_deserializer": request_cls.FromString,
        "response_serializer": lambda msg: msg.SerializeToString(),
    }
    if m.client_streaming and m.server_streaming:
        return grpc.stream_stream_rpc_method_handler(_streaming(fn, method), **kwargs)
    if m.server_streaming:
        return grpc.unary_stream_rpc_method_handler(_streaming(fn, method), **kwargs)
    if m.client_streaming:
        return grpc.stream_unary_rpc_method_handler(_unary(fn, method), **kwargs)
    return grpc.unary_unary_rpc_method_handler(_unary(fn, method), **kwargs)


class AioServer:
    """grpc.aio on a unix socket."""

    def __init__(self, *, max_recv_message_size: int, max_send_message_size: int) -> None:
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_recv_message_size),
                ("grpc.max_send_message_length", max_send_message_size),
                ("grpc.so_reuseport", 0),
            ],
        )

    def add_service(self, descriptor: ServiceDescriptor, implementation: object) -> None:
        handlers = {}
        for m in descriptor.methods:
            fn = getattr(implementation, m.name, None)
            if fn is not None:
                handlers[m.name] = _handler(m, fn, f"/{descriptor.full_name}/{m.name}")
        generic = grpc.method_handlers_generic_handler(descriptor.full_name, handlers)
        self._server.add_generic_rpc_handlers((generic,))

    async def start(self, path: str) -> None:
        self._server.add_insecure_port(f"unix:{path}")
        await self._server.start()

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)
