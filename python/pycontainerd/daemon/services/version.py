"""``containerd.services.version.v1.Version``."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.version.v1 import version_pb2, version_pb2_grpc
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.version import REVISION, VERSION

__all__ = ["VersionService", "registration"]


class VersionService(version_pb2_grpc.VersionServicer):
    """Reports the daemon's version and the revision it was built from."""

    def __init__(self) -> None:
        self._response = version_pb2.VersionResponse(version=VERSION, revision=REVISION)

    def register(self, server: grpc.aio.Server) -> None:
        version_pb2_grpc.add_VersionServicer_to_server(self, server)

    async def Version(
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> version_pb2.VersionResponse:
        return self._response


def _init(ic: InitContext) -> VersionService:
    return VersionService()


registration = Registration(type=Type.GRPC, id="version", init=_init)
