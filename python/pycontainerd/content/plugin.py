"""The ``io.containerd.content.v1 content`` plugin: the local store at ``<root>/content``."""

from __future__ import annotations

from pycontainerd.content.local import LocalStore
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["registration"]


def _init(ic: InitContext) -> LocalStore:
    # DESIGN.md keeps the blobs at the top of the daemon's root, beside metadata.db.
    store = LocalStore(ic.root.parent / "content")
    ic.meta.exports["root"] = str(store.root)
    return store


registration = Registration(type=Type.CONTENT, id="content", init=_init)
