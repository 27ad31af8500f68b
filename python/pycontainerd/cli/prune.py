"""``pyctr content prune references``: ctr's way to let layers go once images are unpacked.

It removes the layer references (``containerd.io/gc.ref.content.l.*``, and the legacy numbered
``containerd.io/gc.ref.content.N`` other than ``.0``, the config) from every blob's labels, then
has the garbage collector run, by creating and deleting a lease with ``sync``, as ctr does.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

from pycontainerd.cli.common import client_from
from pycontainerd.content import Info

__all__ = ["add_parser", "is_layer_label"]

_LAYER_PREFIX: Final = "containerd.io/gc.ref.content.l."
_CONTENT_PREFIX: Final = "containerd.io/gc.ref.content."


def is_layer_label(key: str) -> bool:
    """Whether ``key`` references a layer (ctr's ``isLayerLabel``)."""
    if key.startswith(_LAYER_PREFIX):
        return True
    if not key.startswith(_CONTENT_PREFIX):
        return False
    rest = key[len(_CONTENT_PREFIX) :]
    return (rest.isdigit() and rest != "0") or rest == ""


def _references(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        cs = client.content
        infos: list[Info] = []
        cs.walk(infos.append)
        for info in infos:
            keys = sorted(k for k in info.labels if is_layer_label(k))
            if args.dry:
                for key in keys:
                    print(f"dry run: would remove label {key} of {info.digest}", file=sys.stderr)
            if not keys or args.dry:
                continue
            cs.update(Info(info.digest), *(f"labels.{k}" for k in keys))
        lease = client.leases.create(expire=3600)
        client.leases.delete(lease.id, sync=not args.async_)
    return 0


def add_parser(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``prune`` to the ``content`` subcommands."""
    p = cmds.add_parser("prune", help="prunes content from the content store")
    sub = p.add_subparsers(dest="prune_command", metavar="COMMAND", required=True)
    refs = sub.add_parser(
        "references",
        help="prunes preference labels from the content store (layers only by default)",
        description="remove layer references from blob labels, then collect garbage",
    )
    refs.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="allow garbage collection to cleanup asynchronously",
    )
    refs.add_argument("--dry", action="store_true", help="just show updates without applying them")
    refs.set_defaults(func=_references)
