"""The project's version and revision, as the Version service reports them."""

from __future__ import annotations

from pycontainerd import _native

__all__ = ["REVISION", "VERSION"]

VERSION, REVISION = _native.build_info()
