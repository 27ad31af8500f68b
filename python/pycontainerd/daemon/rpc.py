"""The contract between gRPC services and the transport that serves them.

A service is a plain object with one ``async`` method per RPC, named as in the ``.proto``, and a
``register(server)`` that calls :meth:`RPCServer.add_service` with its service descriptor. The
calling conventions are grpc.aio's:

- unary: ``async def M(self, request, context) -> Response``
- server streaming: an async generator ``async def M(self, request, context)`` that yields
- client streaming: ``async def M(self, requests: AsyncIterator[Request], context) -> Response``
- bidirectional: an async generator taking ``requests``

Errors: a handler raises :mod:`pycontainerd.errdefs` exceptions (or calls ``context.abort``); the
transport answers with the status of :func:`status_of`, the one mapping for every service. A
method the object does not have answers UNIMPLEMENTED. Transports live in ``transport/``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NoReturn, Protocol

from google.protobuf.descriptor import ServiceDescriptor

from pycontainerd import errdefs
from pycontainerd.errdefs import Code

__all__ = ["AbortError", "RPCServer", "ServicerContext", "status_of"]

log = logging.getLogger(__name__)


class AbortError(Exception):
    """Raised by ``context.abort``: the call ends with ``code`` and ``details``."""

    def __init__(self, code: Code, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class ServicerContext(Protocol):
    """What a handler may ask of its call."""

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        """The request's metadata (gRPC headers), keys lowercase."""
        ...

    async def abort(self, code: Code, details: str) -> NoReturn:
        """End the call with a status; raises."""
        ...

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline, or None without one."""
        ...

    def cancelled(self) -> bool:
        """Whether the client has gone away or the deadline passed."""
        ...


class RPCServer(Protocol):
    """A gRPC server on a unix socket."""

    def add_service(self, descriptor: ServiceDescriptor, implementation: object) -> None:
        """Serve every method of ``descriptor`` that ``implementation`` has."""
        ...

    async def start(self, path: str) -> None:
        """Bind ``path`` (the caller has made it free) and start serving."""
        ...

    async def stop(self, grace: float) -> None:
        """Stop accepting calls, give running ones ``grace`` seconds, then cancel them."""
        ...


def status_of(exc: BaseException, method: str) -> tuple[Code, str]:
    """The status a call ends with when its handler raised ``exc``."""
    if isinstance(exc, AbortError):
        return exc.code, exc.details
    if isinstance(exc, errdefs.ContainerdError):
        return exc.code, exc.message
    log.error("unexpected error in %s", method, exc_info=exc)
    return Code.UNKNOWN, str(exc) or type(exc).__name__
