"""containerd's identifier rules."""

from __future__ import annotations

import pytest

from pycontainerd import identifiers
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.identifiers import MAX_LENGTH, PATTERN, is_valid, validate

VALID = [
    "default",
    "Default",
    "TestValidIdentifiers",
    "default-default",
    "containerd.io",
    "foo.boo",
    "swarmkit.docker.io",
    "0912341234",
    "task.0.0123456789",
    "container.system-75-f19a.00",
    "underscores_are_allowed",
    "a" * MAX_LENGTH,
    "a",
    "0",
    "k8s.io",
    "moby",
]

INVALID = [
    ".foo..foo",
    "foo/foo",
    "foo/..",
    "..",
    ".",
    "/",
    "foo..foo",
    "foo.-boo",
    "-foo.boo",
    "foo.boo-",
    "but__only_tasteful_underscores",
    "zn--e9.org",
    "default--default",
    "foo bar",
    " foo",
    "foo\n",
    "foo\x00",
    "föö",
    "foo:bar",
    "foo@bar",
    "_foo",
    "foo_",
    ".foo",
    "foo.",
]


@pytest.mark.parametrize("name", VALID)
def test_valid(name: str) -> None:
    validate(name)
    assert is_valid(name)


@pytest.mark.parametrize("name", INVALID)
def test_invalid(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate(name)
    assert not is_valid(name)
    assert str(info.value).startswith("identifier ")


def test_empty() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate("")
    assert str(info.value) == "identifier must not be empty"
    assert not is_valid("")


def test_too_long() -> None:
    name = "a" * (MAX_LENGTH + 1)
    with pytest.raises(InvalidArgument) as info:
        validate(name)
    assert str(info.value) == f'identifier "{name}" greater than maximum length (76 characters)'
    assert not is_valid(name)


def test_length_counts_bytes_as_containerd_does() -> None:
    name = "é" * 40  # 40 characters, 80 bytes
    with pytest.raises(InvalidArgument, match="greater than maximum length"):
        validate(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "foo/foo",
            'identifier "foo/foo" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$',
        ),
        (
            'a"b',
            'identifier "a\\"b" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$',
        ),
    ],
)
def test_message(name: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate(name)
    assert str(info.value) == message


def test_pattern_is_containerds() -> None:
    assert PATTERN == "^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"
    assert identifiers.__all__ == sorted(identifiers.__all__)


def test_not_slow_on_long_near_misses() -> None:
    # Anything longer than MAX_LENGTH is refused before the pattern runs, but a
    # near-miss within the limit must be quick too.
    validate("a." * 37 + "a")
    with pytest.raises(InvalidArgument):
        validate("a" * 75 + "!")
