"""The ``io.containerd.metadata.v1`` plugin: the database at ``<root>/metadata.db``."""

from __future__ import annotations

from pycontainerd.metadata.db import DB
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = ["registration"]


def _init(ic: InitContext) -> DB:
    # DESIGN.md keeps the database at the top of the daemon's root, beside content/.
    db = DB(ic.root.parent / "metadata.db")
    ic.meta.exports["path"] = str(db.path)
    ic.meta.exports["schema"] = str(db.schema_version)
    return db


registration = Registration(type=Type.METADATA, id="sqlite", init=_init)
