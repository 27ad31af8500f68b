"""Platform strings as containerd's ``platforms`` package formats them (``linux/amd64``)."""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass

__all__ = ["Platform", "host"]

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


@dataclass(frozen=True)
class Platform:
    """An OCI platform: operating system, architecture and optional variant."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


def host() -> Platform:
    """The platform of this machine, normalized as containerd does (arm64 has variant v8)."""
    machine = _platform.machine().lower()
    arch, variant = _ARCHES.get(machine, (machine, ""))
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    return Platform(os=os_name, architecture=arch, variant=variant)
