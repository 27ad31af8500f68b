"""``pyctr namespaces create|ls|label|rm``."""

from __future__ import annotations

import argparse
import sys

from pycontainerd import errdefs
from pycontainerd.cli.common import client_from, object_with_labels
from pycontainerd.cli.tables import print_table

__all__ = ["add_parser"]


def _create(args: argparse.Namespace) -> int:
    name, labels = object_with_labels(args.args)
    if not name:
        raise errdefs.InvalidArgument("please specify a namespace")
    with client_from(args) as client:
        client.namespaces.create(name, labels)
    return 0


def _label(args: argparse.Namespace) -> int:
    name, labels = object_with_labels(args.args)
    if not name:
        raise errdefs.InvalidArgument("please specify a namespace")
    with client_from(args) as client:
        for key, value in labels.items():
            client.namespaces.set_label(name, key, value)
    return 0


def _list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        namespaces = client.namespaces.list()
    if args.quiet:
        for ns in namespaces:
            print(ns.name)
        return 0
    rows = [["NAME", "LABELS"]]
    for ns in namespaces:
        rows.append([ns.name, ",".join(f"{k}={v}" for k, v in sorted(ns.labels.items()))])
    print_table(rows)
    return 0


def _remove(args: argparse.Namespace) -> int:
    status = 0
    with client_from(args) as client:
        for name in args.names:
            try:
                client.namespaces.delete(name)
            except errdefs.NotFound:
                pass
            except errdefs.ContainerdError as exc:
                print(f"pyctr: unable to delete {name}: {exc}", file=sys.stderr)
                status = 1
                continue
            print(name)
    return status


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("namespaces", aliases=["namespace", "ns"], help="manage namespaces")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    create = cmds.add_parser(
        "create",
        aliases=["c"],
        help="create a new namespace",
        description="create a new namespace; it must be unique",
    )
    create.add_argument("args", nargs="*", metavar="<name> [<key>=<value> ...]")
    create.set_defaults(func=_create)

    label = cmds.add_parser(
        "label",
        help="set and clear labels for a namespace",
        description="set and clear labels for a namespace; an empty value clears the label",
    )
    label.add_argument("args", nargs="*", metavar="<name> [<key>=<value> ...]")
    label.set_defaults(func=_label)

    ls = cmds.add_parser("list", aliases=["ls"], help="list namespaces")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the namespace name")
    ls.set_defaults(func=_list)

    rm = cmds.add_parser(
        "remove",
        aliases=["rm"],
        help="remove one or more namespaces",
        description="remove one or more namespaces; a namespace must be empty",
    )
    rm.add_argument("names", nargs="+", metavar="<name>")
    rm.set_defaults(func=_remove)
