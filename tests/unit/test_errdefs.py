"""One exception class per containerd error kind, one status code each, both ways."""

from __future__ import annotations

import pytest

from pycontainerd import errdefs
from pycontainerd.errdefs import Code


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errdefs.NotFound, Code.NOT_FOUND),
        (errdefs.AlreadyExists, Code.ALREADY_EXISTS),
        (errdefs.InvalidArgument, Code.INVALID_ARGUMENT),
        (errdefs.FailedPrecondition, Code.FAILED_PRECONDITION),
        (errdefs.Unavailable, Code.UNAVAILABLE),
        (errdefs.NotImplemented, Code.UNIMPLEMENTED),
        (errdefs.Canceled, Code.CANCELLED),
        (errdefs.DeadlineExceeded, Code.DEADLINE_EXCEEDED),
        (errdefs.Unknown, Code.UNKNOWN),
    ],
)
def test_round_trip(cls: type[errdefs.ContainerdError], code: Code) -> None:
    assert errdefs.to_code(cls("x")) == code
    back = errdefs.from_code(int(code), 'image "a": not found')
    assert type(back) is cls
    assert str(back) == 'image "a": not found'


def test_codes_match_grpc() -> None:
    import grpc

    for code in Code:
        assert grpc.StatusCode[code.name].value[0] == code.value


def test_unexpected_errors_are_unknown() -> None:
    assert errdefs.to_code(RuntimeError("x")) == Code.UNKNOWN
    assert type(errdefs.from_code(999, "x")) is errdefs.Unknown
    assert type(errdefs.from_code(None, "x")) is errdefs.Unknown
