"""What every gRPC service plugin shares: registration on the server, the namespace header."""

from __future__ import annotations

from typing import Final, Protocol

from pycontainerd import errdefs, identifiers
from pycontainerd.daemon.rpc import RPCServer, ServicerContext
from pycontainerd.namespaces import NAMESPACE_HEADER

__all__ = ["LEASE_HEADER", "NAMESPACE_HEADER", "GRPCService", "lease_of", "namespace_of"]

#: gRPC metadata key naming the lease a call's objects belong to.
LEASE_HEADER: Final = "containerd-lease"


class GRPCService(Protocol):
    """An ``io.containerd.grpc.v1`` plugin instance: it adds its servicer to the server."""

    def register(self, server: RPCServer) -> None: ...


def namespace_of(context: ServicerContext) -> str:
    """The call's namespace; containerd's error when it is missing or invalid."""
    for key, value in context.invocation_metadata() or ():
        if key == NAMESPACE_HEADER:
            identifiers.validate(value)
            return value
    raise errdefs.FailedPrecondition("namespace is required")


def lease_of(context: ServicerContext) -> str | None:
    """The lease the call names, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == LEASE_HEADER and value:
            return value
    return None
