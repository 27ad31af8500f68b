"""The one error vocabulary, from syscall to client.

Each class matches one of containerd's ``errdefs`` kinds and one gRPC status code. Services map
exceptions to codes through :data:`GRPC_CODES`; the client maps codes back with
:func:`from_grpc_code`. Messages are lowercase, name the operation and the object, and keep the
errno where there is one.
"""

from __future__ import annotations

import grpc

__all__ = [
    "GRPC_CODES",
    "AlreadyExists",
    "Canceled",
    "ContainerdError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "NotImplemented",
    "Unavailable",
    "Unknown",
    "from_grpc_code",
    "to_grpc_code",
]


class ContainerdError(Exception):
    """Base of every error pycontainerd raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Unknown(ContainerdError):
    """An error without a more precise kind."""

    code = grpc.StatusCode.UNKNOWN


class NotFound(ContainerdError):
    """The object does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ContainerdError):
    """An object with that name already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(ContainerdError, ValueError):
    """The request is malformed: a bad name, reference, filter or value."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ContainerdError):
    """The system is not in the state the operation needs (a namespace not empty, say)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ContainerdError):
    """The daemon or a resource cannot be reached now."""

    code = grpc.StatusCode.UNAVAILABLE


class NotImplemented(ContainerdError):  # noqa: A001 - containerd's name for the kind
    """The operation is not implemented."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Canceled(ContainerdError):
    """The operation was canceled."""

    code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(ContainerdError, TimeoutError):
    """The operation did not finish in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


_CLASSES: tuple[type[ContainerdError], ...] = (
    Unknown,
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    Unavailable,
    NotImplemented,
    Canceled,
    DeadlineExceeded,
)

#: Exception class → gRPC status code, the table every service uses.
GRPC_CODES: dict[type[ContainerdError], grpc.StatusCode] = {cls: cls.code for cls in _CLASSES}
_BY_CODE: dict[grpc.StatusCode, type[ContainerdError]] = {cls.code: cls for cls in _CLASSES}


def to_grpc_code(exc: BaseException) -> grpc.StatusCode:
    """The status code a service answers with for ``exc``."""
    if isinstance(exc, ContainerdError):
        return exc.code
    return grpc.StatusCode.UNKNOWN


def from_grpc_code(code: grpc.StatusCode | None, message: str) -> ContainerdError:
    """The exception the client raises for a status code and its message."""
    cls = _BY_CODE.get(code, Unknown) if code is not None else Unknown
    return cls(message)
