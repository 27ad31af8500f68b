"""pycontainerd: a container daemon and Python library that speaks containerd's API.

The client classes load on first use, so the daemon, which never needs them, does not load
grpcio either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pycontainerd.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotImplemented,
    Unavailable,
)
from pycontainerd.namespaces import Namespace
from pycontainerd.version import REVISION, VERSION

if TYPE_CHECKING:
    from pycontainerd.client import AsyncClient, Client, PluginInfo, ServerInfo, Version

__version__ = VERSION

__all__ = [
    "REVISION",
    "VERSION",
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ContainerdError",
    "FailedPrecondition",
    "InvalidArgument",
    "Namespace",
    "NotFound",
    "NotImplemented",
    "PluginInfo",
    "ServerInfo",
    "Unavailable",
    "Version",
    "__version__",
]

_LAZY = {"AsyncClient", "Client", "PluginInfo", "ServerInfo", "Version"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("pycontainerd.client"), name)
    raise AttributeError(f"module 'pycontainerd' has no attribute {name!r}")
