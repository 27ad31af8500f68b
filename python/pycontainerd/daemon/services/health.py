"""``grpc.health.v1.Health``: SERVING while the daemon runs, NOT_SERVING once it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from pycontainerd.api.grpc.health.v1 import health_pb2, health_pb2_grpc
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["HealthService", "registration"]

_Context = grpc.aio.ServicerContext[Any, Any]
_Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthService(health_pb2_grpc.HealthServicer):
    """The overall server status, under the empty service name as containerd serves it."""

    def __init__(self) -> None:
        self._serving = True
        self._changed = asyncio.Event()

    def register(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    def shutdown(self) -> None:
        """Report NOT_SERVING from now on and wake every watcher."""
        self._serving = False
        self._changed.set()

    def _status(self) -> _Status.ValueType:
        return health_pb2.HealthCheckResponse.SERVING if self._serving else (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: _Context
    ) -> health_pb2.HealthCheckResponse:
        if request.service:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: _Context
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        if request.service:
            yield health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            )
            return
        yield health_pb2.HealthCheckResponse(status=self._status())
        if self._serving:
            await self._changed.wait()
            yield health_pb2.HealthCheckResponse(status=self._status())


def _init(ic: InitContext) -> HealthService:
    return HealthService()


registration = Registration(type=Type.GRPC, id="healthcheck", init=_init)
