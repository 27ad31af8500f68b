"""What every gRPC service plugin shares: registration on the server, the namespace header."""

from __future__ import annotations

from typing import Any, Protocol

import grpc

from pycontainerd import errdefs, identifiers
from pycontainerd.namespaces import NAMESPACE_HEADER

__all__ = ["NAMESPACE_HEADER", "GRPCService", "namespace_of"]

class GRPCService(Protocol):
    """An ``io.containerd.grpc.v1`` plugin instance: it adds its servicer to the server."""

    def register(self, server: grpc.aio.Server) -> None: ...


def namespace_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The call's namespace; containerd's error when it is missing or invalid."""
    for key, value in context.invocation_metadata() or ():
        if key == NAMESPACE_HEADER:
            name = value if isinstance(value, str) else value.decode()
            identifiers.validate(name)
            return name
    raise errdefs.FailedPrecondition("namespace is required")
