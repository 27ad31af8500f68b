"""``containerd.services.version.v1.Version``."""

from __future__ import annotations

from google.protobuf import empty_pb2

from pycontainerd.api.containerd.services.version.v1 import version_pb2
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.version import REVISION, VERSION

__all__ = ["VersionService", "registration"]


class VersionService:
    """Reports the daemon's version and the revision it was built from."""

    def __init__(self) -> None:
        self._response = version_pb2.VersionResponse(version=VERSION, revision=REVISION)

    def register(self, server: RPCServer) -> None:
        server.add_service(version_pb2.DESCRIPTOR.services_by_name["Version"], self)

    async def Version(
        self, request: empty_pb2.Empty, context: ServicerContext
    ) -> version_pb2.VersionResponse:
        return self._response


def _init(ic: InitContext) -> VersionService:
    return VersionService()


registration = Registration(type=Type.GRPC, id="version", init=_init)
