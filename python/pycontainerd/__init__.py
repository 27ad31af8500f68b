"""pycontainerd: a container daemon and Python library that speaks containerd's API."""

from pycontainerd.client import Client, PluginInfo, ServerInfo, Version
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

__version__ = VERSION

__all__ = [
    "REVISION",
    "VERSION",
    "AlreadyExists",
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
