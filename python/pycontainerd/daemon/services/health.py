"""``grpc.health.v1.Health``: SERVING while the daemon runs, NOT_SERVING once it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pycontainerd import errdefs
from pycontainerd.api.grpc.health.v1 import health_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["HealthService", "registration"]

_Status = health_pb2.HealthCheckResponse.ServingStatus


class HealthService:
    """The overall server status, under the empty service name as containerd serves it."""

    def __init__(self) -> None:
        self._serving = True
        self._changed = asyncio.Event()

    def register(self, server: RPCServer) -> None:
        server.add_service(health_pb2.DESCRIPTOR.services_by_name["Health"], self)

    def shutdown(self) -> None:
        """Report NOT_SERVING from now on and wake every watcher."""
        self._serving = False
        self._changed.set()

    def _status(self) -> _Status.ValueType:
        return (
            health_pb2.HealthCheckResponse.SERVING
            if self._serving
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service:
            raise errdefs.NotFound(f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: ServicerContext
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
