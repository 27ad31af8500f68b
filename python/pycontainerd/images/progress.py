"""Progress of transfers: what pull, push and import report, one event at a time.

A transfer calls its ``progress`` function (from worker threads) with a :class:`Progress` each
time a blob changes state or moves on: ``waiting`` (seen, not started), ``downloading`` or
``uploading`` (``offset`` of ``total`` bytes), ``done``, ``exists`` (already there, nothing
sent), ``mounted`` (pushed by cross-repository mount); and ``resolving``/``resolved`` for the
reference itself. The function must be quick and thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt

__all__ = ["FINISHED", "Progress", "ProgressFunc", "make_ref_key"]

#: The statuses after which a blob's line no longer changes.
FINISHED = frozenset({"done", "exists", "mounted"})


@dataclass(frozen=True)
class Progress:
    """One state of one transfer: ``ref`` names it (``layer-sha256:...`` or the image)."""

    ref: str
    status: str
    offset: int = 0
    total: int = 0
    descriptor: Descriptor | None = None


ProgressFunc = Callable[[Progress], None]


def make_ref_key(desc: Descriptor, prefixes: Mapping[str, str] | None = None) -> str:
    """The ingest ref of a descriptor, as containerd's ``remotes.MakeRefKey``: a kind prefix
    (``manifest-``, ``index-``, ``layer-``, ``config-``, ``unknown-``) and the digest, with the
    OCI ref-name annotation before it when there is one."""
    key = desc.digest
    name = desc.annotations.get("org.opencontainers.image.ref.name")
    if name:
        key = f"{name}@{desc.digest}"
    media_type = desc.media_type
    if prefixes and (prefix := prefixes.get(media_type)):
        return f"{prefix}-{key}"
    if mt.is_manifest_type(media_type):
        return "manifest-" + key
    if mt.is_index_type(media_type):
        return "index-" + key
    if mt.is_layer_type(media_type):
        return "layer-" + key
    if mt.is_known_config(media_type):
        return "config-" + key
    return "unknown-" + key
