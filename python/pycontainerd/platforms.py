"""Platforms as containerd's ``platforms`` package handles them.

:class:`Platform` is an OCI platform; ``str()`` formats it (``linux/amd64``, ``linux/arm/v7``).
:func:`parse` reads ctr's ``--platform`` specifiers, :func:`normalize` gives the canonical form
(``x86_64`` → ``amd64``, ``aarch64/v8`` → ``arm64``). Matchers choose manifests from an index:
:func:`only` (the platform and what it runs: amd64 runs 386, arm/v7 runs v6 and v5),
:func:`only_strict`, :func:`ordered`, :func:`any_of`, :data:`ALL`, and :func:`default` for this
machine. A :class:`MatchComparer` also orders matches, best first.
"""

from __future__ import annotations

import functools
import platform as _platform
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from pycontainerd import errdefs

__all__ = [
    "ALL",
    "MatchComparer",
    "Matcher",
    "Platform",
    "any_of",
    "default",
    "default_strict",
    "host",
    "new_matcher",
    "normalize",
    "only",
    "only_strict",
    "ordered",
    "parse",
    "sort_by_preference",
]

T = TypeVar("T")

# uname machine → (GOARCH, variant)
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}

_KNOWN_OS = frozenset(
    (
        *("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js"),
        *("linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"),
    )
)
_KNOWN_ARCH = frozenset(
    (
        *("386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le"),
        *("loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc"),
        *("riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"),
    )
)
_SPECIFIER_RE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Platform:
    """An OCI platform: operating system, architecture, optional variant, OS version and
    features (the last two matter to Windows images only)."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.os:
            return "unknown"
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@functools.cache
def host() -> Platform:
    """The platform of this machine, as containerd's ``DefaultSpec`` (arm64 has variant v8)."""
    machine = _platform.machine().lower()
    arch, variant = _ARCHES.get(machine, (machine, ""))
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    return Platform(os=os_name, architecture=arch, variant=variant)


def _normalize_os(os_name: str) -> str:
    if not os_name:
        return host().os
    os_name = os_name.lower()
    return "darwin" if os_name == "macos" else os_name


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    """The canonical form of ``p``: lowercase, Go's architecture names, default variants."""
    arch, variant = _normalize_arch(p.architecture, p.variant)
    return replace(p, os=_normalize_os(p.os), architecture=arch, variant=variant)


def parse(specifier: str) -> Platform:
    """ctr's platform specifier: ``<os>|<arch>|<os>/<arch>[/<variant>]``; what is missing is this
    machine's. :class:`~pycontainerd.errdefs.InvalidArgument` for anything else."""
    if "*" in specifier:
        raise errdefs.InvalidArgument(f"{specifier!r}: wildcards not yet supported")
    parts = specifier.split("/")
    for part in parts:
        if not _SPECIFIER_RE.fullmatch(part):
            raise errdefs.InvalidArgument(
                f"{part!r} is an invalid component of {specifier!r}: platform specifier "
                f"component must match {_SPECIFIER_RE.pattern!r}"
            )
    if len(parts) == 1:
        os_name = _normalize_os(parts[0])
        if os_name in _KNOWN_OS:
            me = host()
            variant = me.variant if me.architecture == "arm" and me.variant != "v7" else ""
            return Platform(os_name, me.architecture, variant)
        arch, variant = _normalize_arch(parts[0], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        if arch in _KNOWN_ARCH:
            return Platform(host().os, arch, variant)
        raise errdefs.InvalidArgument(f"{specifier!r}: unknown operating system or architecture")
    if len(parts) == 2:
        arch, variant = _normalize_arch(parts[1], "")
        if arch == "arm" and variant == "v7":
            variant = ""
        return Platform(_normalize_os(parts[0]), arch, variant)
    if len(parts) == 3:
        arch, variant = _normalize_arch(parts[1], parts[2])
        if arch == "arm64" and not variant:
            variant = "v8"
        return Platform(_normalize_os(parts[0]), arch, variant)
    raise errdefs.InvalidArgument(f"{specifier!r}: cannot parse platform specifier")


class Matcher(Protocol):
    """Whether a platform is wanted."""

    def match(self, platform: Platform) -> bool:
        """Whether ``platform`` is wanted."""
        ...


class MatchComparer(Matcher, Protocol):
    """A matcher that also orders platforms: ``less(a, b)`` when ``a`` is preferred to ``b``."""

    def less(self, p1: Platform, p2: Platform) -> bool:
        """Whether ``p1`` is preferred to ``p2``."""
        ...


@dataclass(frozen=True)
class _Exact:
    platform: Platform

    def match(self, platform: Platform) -> bool:
        n = normalize(platform)
        m = self.platform
        return (m.os, m.architecture, m.variant) == (n.os, n.architecture, n.variant)

    def __str__(self) -> str:
        return str(self.platform)


def new_matcher(platform: Platform) -> Matcher:
    """A matcher for the same os, architecture and variant, after normalizing both."""
    return _Exact(normalize(platform))


@dataclass(frozen=True)
class _Ordered:
    matchers: tuple[Matcher, ...]

    def match(self, platform: Platform) -> bool:
        return any(m.match(platform) for m in self.matchers)

    def less(self, p1: Platform, p2: Platform) -> bool:
        for m in self.matchers:
            m1, m2 = m.match(p1), m.match(p2)
            if m1 and not m2:
                return True
            if m1 or m2:
                return False
        return False

    def __str__(self) -> str:
        return ",".join(str(m) for m in self.matchers)


@dataclass(frozen=True)
class _Any:
    matchers: tuple[Matcher, ...]

    def match(self, platform: Platform) -> bool:
        return any(m.match(platform) for m in self.matchers)

    def less(self, p1: Platform, p2: Platform) -> bool:
        return self.match(p1) and not self.match(p2)

    def __str__(self) -> str:
        return ",".join(str(m) for m in self.matchers)


class _All:
    def match(self, platform: Platform) -> bool:
        return True

    def less(self, p1: Platform, p2: Platform) -> bool:
        return False

    def __str__(self) -> str:
        return "all"


#: Matches every platform, preferring none.
ALL: MatchComparer = _All()


def _vector(p: Platform) -> list[Platform]:
    """``p`` and the platforms it also runs, best first (containerd's ``platformVector``)."""
    out = [p]
    if p.architecture == "amd64":
        version = p.variant.removeprefix("v")
        if version.isdigit() and int(version) > 1:
            out += [replace(p, variant=f"v{v}") for v in range(int(version) - 1, 0, -1)]
        out.append(replace(p, architecture="386", variant=""))
    elif p.architecture == "arm":
        version = p.variant.removeprefix("v")
        if version.isdigit() and int(version) > 5:
            out += [replace(p, variant=f"v{v}") for v in range(int(version) - 1, 4, -1)]
    elif p.architecture == "arm64":
        out += _vector(replace(p, architecture="arm", variant=p.variant or "v8"))
    return out


def ordered(*platforms: Platform) -> MatchComparer:
    """Any of ``platforms``, preferred in the order given."""
    return _Ordered(tuple(new_matcher(p) for p in platforms))


def any_of(*platforms: Platform) -> MatchComparer:
    """Any of ``platforms``, without preference among them (containerd's ``platforms.Any``)."""
    return _Any(tuple(new_matcher(p) for p in platforms))


def only(platform: Platform) -> MatchComparer:
    """``platform`` and the ones it runs: amd64 also matches 386; arm/v7 matches v6 and v5;
    arm64 matches arm/v8 down to v5."""
    return ordered(*_vector(normalize(platform)))


def only_strict(platform: Platform) -> MatchComparer:
    """``platform`` alone (after normalizing)."""
    return ordered(normalize(platform))


def default() -> MatchComparer:
    """This machine's platform and the ones it runs (containerd's ``platforms.Default``)."""
    return only(host())


def default_strict() -> MatchComparer:
    """This machine's platform alone."""
    return only_strict(host())


def sort_by_preference(
    items: Iterable[T], matcher: MatchComparer, platform_of: Callable[[T], Platform | None]
) -> list[T]:
    """``items`` ordered best first by ``matcher``, those without a platform last; equal ones
    keep their order (containerd's stable sort of an index's manifests)."""

    def compare(a: T, b: T) -> int:
        p1, p2 = platform_of(a), platform_of(b)
        if p1 is None:
            return 0 if p2 is None else 1
        if p2 is None:
            return -1
        if matcher.less(p1, p2):
            return -1
        return 1 if matcher.less(p2, p1) else 0

    return sorted(items, key=functools.cmp_to_key(compare))
