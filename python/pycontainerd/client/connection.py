"""A gRPC channel to a daemon's unix socket, and errdefs out of status codes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Final, TypeVar

import grpc

from pycontainerd import errdefs
from pycontainerd.leases import LEASE_HEADER
from pycontainerd.namespaces import NAMESPACE_HEADER

__all__ = ["DEFAULT_ADDRESS", "Connection", "socket_path"]

#: The daemon's socket when no address is given (DESIGN.md).
DEFAULT_ADDRESS: Final = "/run/pycontainerd/pycontainerd.sock"
_MAX_MESSAGE: Final = 16 << 20

Resp = TypeVar("Resp")


def socket_path(address: str) -> str:
    """The filesystem path of a ``unix://`` address or a bare path."""
    return address.removeprefix("unix://").removeprefix("unix:")


def _why_unreachable(path: str) -> str:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        return os.strerror(exc.errno).lower() if exc.errno else str(exc)
    finally:
        probe.close()
    return "the daemon did not answer"


def _is_transport_failure(details: str) -> bool:
    """Whether an UNAVAILABLE status came from grpcio's channel rather than the daemon."""
    lowered = details.lower()
    return any(
        phrase in lowered
        for phrase in ("failed to connect", "socket closed", "connection reset", "unavailable")
    )


class Connection:
    """One channel, the namespace sent with every call and the status-to-error mapping."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self.address = address
        self.path = socket_path(address)
        self.channel = grpc.insecure_channel(
            f"unix://{os.path.abspath(self.path)}",
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE),
                ("grpc.max_send_message_length", _MAX_MESSAGE),
            ],
        )
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise errdefs.Unavailable(
                f"connect to {self.path}: {_why_unreachable(self.path)} "
                f"(no connection within {timeout:g}s)"
            ) from None

    def close(self) -> None:
        self.channel.close()

    def call(
        self,
        method: Callable[..., Resp],
        request: Any,
        *,
        namespace: str | None = None,
        lease: str | None = None,
        timeout: float | None = None,
    ) -> Resp:
        """Invoke a unary stub method; status codes become ``errdefs`` exceptions.

        ``namespace`` and ``lease`` travel as the ``containerd-namespace`` and
        ``containerd-lease`` headers.
        """
        metadata: list[tuple[str, str]] = []
        if namespace is not None:
            metadata.append((NAMESPACE_HEADER, namespace))
        if lease:
            metadata.append((LEASE_HEADER, lease))
        try:
            return method(request, metadata=tuple(metadata), timeout=timeout)
        except grpc.RpcError as exc:
            raise self.error(exc) from None

    def error(self, exc: grpc.RpcError) -> errdefs.ContainerdError:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        message = details or (code.name.lower() if code is not None else "unknown error")
        if code == grpc.StatusCode.UNAVAILABLE and _is_transport_failure(message):
            # The connection failed, not the operation: say which daemon could not be reached.
            message = f"connect to {self.path}: {message}"
        return errdefs.from_code(code.value[0] if code is not None else None, message)
