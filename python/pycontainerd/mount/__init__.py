"""Mount values, returned by snapshotters and diff code; later, the one place that mounts.

Executing mounts is the job of this package only (through the native crate); that is a later
task. For now it holds containerd's ``mount.Mount`` as a value.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mount"]


@dataclass(frozen=True)
class Mount:
    """containerd's ``mount.Mount``: ``mount -t TYPE -o OPTIONS SOURCE TARGET`` as a value."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()
