"""A gRPC channel to a daemon's unix socket, and errdefs out of status codes.

The channel (and grpcio itself) is created on first use, so making a client costs no I/O;
as containerd's Go client does, a connection that cannot be made (no socket, nobody
listening) fails the call at once with :class:`~pycontainerd.errdefs.Unavailable` naming
the address, instead of waiting.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pycontainerd import errdefs

if TYPE_CHECKING:
    import grpc

__all__ = ["DEFAULT_ADDRESS", "Connection", "socket_path"]

#: The daemon's socket when no address is given (DESIGN.md).
DEFAULT_ADDRESS: Final = "/run/pycontainerd/pycontainerd.sock"
_MAX_MESSAGE: Final = 16 << 20
#: gRPC metadata keys of the namespace and lease (``pycontainerd.namespaces`` and
#: ``pycontainerd.leases`` name them too; kept here so a client loads neither).
_NAMESPACE_HEADER: Final = "containerd-namespace"
_LEASE_HEADER: Final = "containerd-lease"

Resp = TypeVar("Resp")


def socket_path(address: str) -> str:
    """The filesystem path of a ``unix://`` address or a bare path."""
    return address.removeprefix("unix://").removeprefix("unix:")


def _probe(path: str) -> str | None:
    """Why nothing can be reached at ``path`` (``no such file or directory``), or ``None``
    when something accepts connections there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        return os.strerror(exc.errno).lower() if exc.errno else str(exc)
    finally:
        probe.close()
    return None


def _is_transport_failure(details: str) -> bool:
    """Whether an UNAVAILABLE status came from grpcio's channel rather than the daemon."""
    lowered = details.lower()
    return any(
        phrase in lowered
        for phrase in (
            "failed to connect",
            "socket closed",
            "connection reset",
            "broken pipe",
            "goaway",
            "backends failing",
        )
    )


class Connection:
    """One channel, the namespace sent with every call and the status-to-error mapping.

    ``timeout`` is how long :meth:`connect` waits for a daemon that accepts connections but
    does not answer yet; calls themselves never wait for the connection.
    """

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.path = socket_path(address)
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def channel(self) -> grpc.Channel:
        """The gRPC channel, made (not connected) on first use."""
        channel = self._channel
        if channel is not None:
            return channel
        with self._lock:
            if self._closed:
                raise errdefs.FailedPrecondition(f"client of {self.path} is closed")
            if self._channel is None:
                import grpc

                self._channel = grpc.insecure_channel(
                    f"unix://{os.path.abspath(self.path)}",
                    options=[
                        ("grpc.max_receive_message_length", _MAX_MESSAGE),
                        ("grpc.max_send_message_length", _MAX_MESSAGE),
                    ],
                )
            return self._channel

    def unavailable(self, reason: str) -> errdefs.Unavailable:
        """The error of a daemon that cannot be reached: ``connect to <path>: <reason>``."""
        return errdefs.Unavailable(f"connect to {self.path}: {reason}")

    def connect(self, timeout: float | None = None) -> None:
        """Make the connection now, waiting up to ``timeout`` seconds (default the
        connection's) for a daemon that accepts connections but does not answer yet.

        A missing socket or one nobody listens on fails at once; all fail with
        :class:`~pycontainerd.errdefs.Unavailable` naming the address.
        """
        import grpc

        wait = self.timeout if timeout is None else timeout
        reason = _probe(self.path)
        if reason is not None:
            raise self.unavailable(reason)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=wait)
        except grpc.FutureTimeoutError:
            why = _probe(self.path) or "the daemon did not answer"
            raise self.unavailable(f"{why} (no connection within {wait:g}s)") from None

    def close(self) -> None:
        """Close the channel: calls in flight end with ``CANCELLED``, later ones fail."""
        with self._lock:
            self._closed = True
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def metadata(
        self, namespace: str | None = None, lease: str | None = None
    ) -> tuple[tuple[str, str], ...]:
        """The headers of a call in ``namespace`` under ``lease``."""
        metadata: list[tuple[str, str]] = []
        if namespace is not None:
            metadata.append((_NAMESPACE_HEADER, namespace))
        if lease:
            metadata.append((_LEASE_HEADER, lease))
        return tuple(metadata)

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
        import grpc

        try:
            return method(request, metadata=self.metadata(namespace, lease), timeout=timeout)
        except grpc.RpcError as exc:
            raise self.error(exc) from None
        except ValueError as exc:  # grpcio: "Cannot invoke RPC on closed channel!"
            if "closed channel" in str(exc):
                raise errdefs.FailedPrecondition(f"client of {self.path} is closed") from None
            raise

    def error(self, exc: grpc.RpcError) -> errdefs.ContainerdError:
        """The ``errdefs`` exception of a failed call; a connection that could not be made
        or was lost is :class:`~pycontainerd.errdefs.Unavailable` naming the address."""
        import grpc

        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        message = details or (code.name.lower() if code is not None else "unknown error")
        if code == grpc.StatusCode.UNAVAILABLE and _is_transport_failure(message):
            # The connection failed, not the operation: say which daemon could not be reached.
            reason = _probe(self.path)
            if reason is None:  # it answers again, or never went: grpcio's own words
                reason = f"connection lost ({message.lower()})"
            return self.unavailable(reason)
        if code == grpc.StatusCode.UNKNOWN and message.startswith("context deadline exceeded"):
            # containerd passes the call's deadline on to the shim, whose expiry comes back
            # as UNKNOWN when the daemon answers before grpcio's own deadline fires
            return errdefs.DeadlineExceeded(message.removesuffix(": unknown"))
        return errdefs.from_code(code.value[0] if code is not None else None, message)
