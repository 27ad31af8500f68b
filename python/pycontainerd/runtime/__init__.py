"""The runtime: containerd's ``runtime/v2``, tasks run by shims over ttrpc.

:class:`TaskManager` (the ``io.containerd.runtime.v2 task`` plugin) creates, finds and deletes
tasks; each is a :class:`ShimTask`, the daemon's side of one shim's ``containerd.task.v2.Task``
API. Bundles, shim command lines and runtime name resolution follow containerd.
"""

from pycontainerd.runtime.binary import (
    DEFAULT_SHIMS,
    Exit,
    ShimCommand,
    binary_name,
    resolve_runtime,
)
from pycontainerd.runtime.bundle import Bundle
from pycontainerd.runtime.manager import (
    TASK_DELETE_TOPIC,
    TASK_EXIT_TOPIC,
    Config,
    CreateOpts,
    TaskManager,
)
from pycontainerd.runtime.shim import ShimLog, ShimTask

__all__ = [
    "DEFAULT_SHIMS",
    "TASK_DELETE_TOPIC",
    "TASK_EXIT_TOPIC",
    "Bundle",
    "Config",
    "CreateOpts",
    "Exit",
    "ShimCommand",
    "ShimLog",
    "ShimTask",
    "TaskManager",
    "binary_name",
    "resolve_runtime",
]
