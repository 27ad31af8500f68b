"""The one error vocabulary, from syscall to client.

Each class matches one of containerd's ``errdefs`` kinds and one gRPC status code. The daemon
answers an exception with its class's :class:`Code`; the client raises the class back with
:func:`from_code`. Messages are lowercase, name the operation and the object, and keep the errno
where there is one. This module does not import grpc: the daemon serves without it.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AlreadyExists",
    "Canceled",
    "Code",
    "ContainerdError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "NotImplemented",
    "Unavailable",
    "Unknown",
    "from_code",
    "to_code",
]


class Code(IntEnum):
    """gRPC status codes, by their numbers on the wire."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ContainerdError(Exception):
    """Base of every error pycontainerd raises on purpose."""

    code: Code = Code.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Unknown(ContainerdError):
    """An error without a more precise kind."""

    code = Code.UNKNOWN


class NotFound(ContainerdError):
    """The object does not exist."""

    code = Code.NOT_FOUND


class AlreadyExists(ContainerdError):
    """An object with that name already exists."""

    code = Code.ALREADY_EXISTS


class InvalidArgument(ContainerdError, ValueError):
    """The request is malformed: a bad name, reference, filter or value."""

    code = Code.INVALID_ARGUMENT


class FailedPrecondition(ContainerdError):
    """The system is not in the state the operation needs (a namespace not empty, say)."""

    code = Code.FAILED_PRECONDITION


class Unavailable(ContainerdError):
    """The daemon or a resource cannot be reached now."""

    code = Code.UNAVAILABLE


class NotImplemented(ContainerdError):
    """The operation is not implemented."""

    code = Code.UNIMPLEMENTED


class Canceled(ContainerdError):
    """The operation was canceled."""

    code = Code.CANCELLED


class DeadlineExceeded(ContainerdError, TimeoutError):
    """The operation did not finish in time."""

    code = Code.DEADLINE_EXCEEDED


_BY_CODE: dict[Code, type[ContainerdError]] = {
    cls.code: cls
    for cls in (
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
}


def to_code(exc: BaseException) -> Code:
    """The status code a service answers with for ``exc``."""
    if isinstance(exc, ContainerdError):
        return exc.code
    return Code.UNKNOWN


def from_code(code: int | None, message: str) -> ContainerdError:
    """The exception the client raises for a status code (a number) and its message."""
    try:
        cls = _BY_CODE.get(Code(code), Unknown) if code is not None else Unknown
    except ValueError:
        cls = Unknown
    return cls(message)
