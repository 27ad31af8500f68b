"""Platform parsing, normalizing and matching, as containerd's ``platforms`` package."""

from __future__ import annotations

import pytest

from pycontainerd import errdefs, platforms
from pycontainerd.platforms import Platform


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm64/8", Platform("linux", "arm64", "v8")),
        ("linux/arm", Platform("linux", "arm")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("linux/arm/6", Platform("linux", "arm", "v6")),
        ("linux/i386", Platform("linux", "386")),
        ("windows/amd64", Platform("windows", "amd64")),
        ("macos/arm64", Platform("darwin", "arm64")),
    ],
)
def test_parse(spec: str, want: Platform) -> None:
    assert platforms.parse(spec) == want


def test_parse_one_component_fills_in_this_machine() -> None:
    me = platforms.host()
    assert platforms.parse("linux").architecture == me.architecture
    assert platforms.parse("s390x") == Platform(me.os, "s390x")


@pytest.mark.parametrize("spec", ["", "linux/", "linux/*", "a/b/c/d", "linux/amd 64", "nope"])
def test_parse_refuses(spec: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        platforms.parse(spec)


def test_format() -> None:
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(Platform("linux", "amd64")) == "linux/amd64"
    assert str(Platform("", "amd64")) == "unknown"


def test_normalize() -> None:
    assert platforms.normalize(Platform("Linux", "x86_64", "v1")) == Platform("linux", "amd64")
    assert platforms.normalize(Platform("linux", "aarch64", "v8")) == Platform("linux", "arm64")
    assert platforms.normalize(Platform("linux", "arm")) == Platform("linux", "arm", "v7")
    assert platforms.normalize(Platform("", "amd64")).os == platforms.host().os


def test_only_matches_what_a_platform_runs() -> None:
    amd64 = platforms.only(Platform("linux", "amd64"))
    assert amd64.match(Platform("linux", "amd64"))
    assert amd64.match(Platform("linux", "386"))
    assert not amd64.match(Platform("linux", "arm64"))
    assert not amd64.match(Platform("windows", "amd64"))
    assert amd64.less(Platform("linux", "amd64"), Platform("linux", "386"))
    assert not amd64.less(Platform("linux", "386"), Platform("linux", "amd64"))

    arm64 = platforms.only(Platform("linux", "arm64", "v8"))
    assert arm64.match(Platform("linux", "arm64"))
    assert arm64.match(Platform("linux", "arm", "v7"))
    assert arm64.match(Platform("linux", "arm", "v5"))
    assert not arm64.match(Platform("linux", "amd64"))

    armv7 = platforms.only(Platform("linux", "arm", "v7"))
    assert armv7.match(Platform("linux", "arm", "v6"))
    assert not armv7.match(Platform("linux", "arm", "v8"))


def test_only_strict_and_any_and_all() -> None:
    strict = platforms.only_strict(Platform("linux", "amd64"))
    assert strict.match(Platform("linux", "x86_64"))
    assert not strict.match(Platform("linux", "386"))

    either = platforms.any_of(Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert either.match(Platform("linux", "arm64", "v8"))
    assert not either.less(Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert either.less(Platform("linux", "amd64"), Platform("linux", "ppc64le"))

    assert platforms.ALL.match(Platform("plan9", "mips"))
    assert platforms.any_of().match(Platform("linux", "amd64")) is False


def test_ordered_prefers_in_order() -> None:
    order = platforms.ordered(Platform("linux", "arm64"), Platform("linux", "amd64"))
    items = [
        None,
        Platform("linux", "amd64"),
        Platform("linux", "s390x"),
        Platform("linux", "arm64"),
    ]
    ranked = platforms.sort_by_preference(items, order, lambda p: p)
    assert ranked == [
        Platform("linux", "arm64"),
        Platform("linux", "amd64"),
        Platform("linux", "s390x"),
        None,
    ]


def test_default_is_this_machine() -> None:
    me = platforms.host()
    assert platforms.default().match(me)
    assert platforms.default_strict().match(me)
    assert me.os == "linux"
