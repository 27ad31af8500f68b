"""``pyctr plugins ls``."""

from __future__ import annotations

import argparse

from pycontainerd.cli.common import client_from
from pycontainerd.cli.tables import print_table
from pycontainerd.client import PluginInfo

__all__ = ["add_parser"]


def _platforms(plugin: PluginInfo) -> str:
    return ",".join(str(p) for p in plugin.platforms) or "-"


def _status(plugin: PluginInfo) -> str:
    if plugin.error is None:
        return "ok"
    return f"{plugin.status}: {plugin.error}"


def _detailed(plugins: list[PluginInfo]) -> None:
    for i, p in enumerate(plugins):
        if i:
            print()
        print(f"Type:          {p.type}")
        print(f"ID:            {p.id}")
        if p.requires:
            print("Requires:")
            for r in p.requires:
                print(f"               {r}")
        print(f"Platforms:     {_platforms(p)}")
        if p.exports:
            print("Exports:")
            for k, v in sorted(p.exports.items()):
                print(f"               {k}\t{v}")
        if p.capabilities:
            print("Capabilities:  " + ",".join(p.capabilities))
        if p.error is not None:
            print("Error:")
            print(f"               Status:      {p.status}")
            print(f"               Message:     {p.error}")


def _list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        plugins = client.plugins(args.filters)
    if args.quiet:
        for p in plugins:
            print(p.id)
    elif args.detailed:
        _detailed(plugins)
    else:
        rows = [["TYPE", "ID", "PLATFORMS", "STATUS"]]
        rows += [[p.type, p.id, _platforms(p), _status(p)] for p in plugins]
        print_table(rows, padding=4, minwidth=4)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plugins", aliases=["plugin"], help="provides information about plugins")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    ls = cmds.add_parser(
        "list",
        aliases=["ls"],
        help="list the daemon's plugins",
        description="list the daemon's plugins, optionally filtered (type==io.containerd.grpc.v1)",
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the plugin id")
    ls.add_argument("-d", "--detailed", action="store_true", help="print every detail")
    ls.add_argument("filters", nargs="*", metavar="<filter>")
    ls.set_defaults(func=_list)
