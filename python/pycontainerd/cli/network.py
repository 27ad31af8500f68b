"""``pyctr network create|ls|inspect|rm``: named CNI networks on the daemon's host.

Networks are conflists in the daemon's CNI config directory, read and written here directly
(no gRPC): the directory comes from ``--conf-dir``, else from the daemon's config file
(``[plugins."io.containerd.internal.v1.network"] conf_dir``), else ``/etc/cni/net.d``. ``rm``
asks the daemon which containers use the network (their ``pycontainerd.io/network`` label, in
every namespace) and refuses while any does. ``result`` prints a container's attachment (the
``pycontainerd.io/network.result`` label); ``check`` runs CNI CHECK on it with the result the
daemon cached under its root.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from pycontainerd import errdefs
from pycontainerd.cli.common import client_from
from pycontainerd.cli.tables import print_table
from pycontainerd.daemon.config import DEFAULT_ROOT
from pycontainerd.network.cni import CNI
from pycontainerd.network.labels import LABEL_NETWORK, network_result
from pycontainerd.network.manager import cni_container_id
from pycontainerd.network.store import (
    DEFAULT_BIN_DIRS,
    DEFAULT_BRIDGE,
    DEFAULT_CONF_DIR,
    DEFAULT_SUBNET,
    NetworkStore,
)

__all__ = ["add_parser", "store_from"]

#: The daemon's config file, read for the network plugin's settings.
DAEMON_CONFIG = "/etc/pycontainerd/config.toml"
PLUGIN = "io.containerd.internal.v1.network"


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The network plugin's table of the daemon's config file, and the daemon's root."""
    path = Path(args.config)
    if not path.is_file():
        return {}, DEFAULT_ROOT
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise errdefs.InvalidArgument(f"config {path}: {exc}") from None
    plugin = doc.get("plugins", {}).get(PLUGIN, {})
    return (plugin if isinstance(plugin, dict) else {}), str(doc.get("root", DEFAULT_ROOT))


def store_from(args: argparse.Namespace) -> NetworkStore:
    """The network store of ``--conf-dir`` or of the daemon's config file."""
    settings, _ = _settings(args)
    return NetworkStore(
        args.conf_dir or str(settings.get("conf_dir", DEFAULT_CONF_DIR)),
        default_subnet=str(settings.get("default_subnet", DEFAULT_SUBNET)),
        default_bridge=str(settings.get("default_bridge", DEFAULT_BRIDGE)),
    )


def _users(args: argparse.Namespace, name: str) -> list[str]:
    """``namespace/id`` of the containers whose labels ask for network ``name``."""
    users = []
    with client_from(args) as client:
        for ns in client.namespaces.list():
            client.namespace = ns.name
            for c in client.containers.list(f'labels."{LABEL_NETWORK}"=={name}'):
                users.append(f"{ns.name}/{c.id}")
    return users


def _create(args: argparse.Namespace) -> int:
    conf = store_from(args).create(args.name, subnet=args.subnet, bridge=args.bridge)
    print(conf.path)
    return 0


def _list(args: argparse.Namespace) -> int:
    networks = store_from(args).list()
    if args.quiet:
        for n in networks:
            print(n.name)
        return 0
    rows = [["NAME", "BRIDGE", "SUBNET", "PLUGINS", "FILE"]]
    for n in networks:
        rows.append(
            [n.name, n.bridge or "-", ",".join(n.subnets) or "-", ",".join(n.plugins), n.path]
        )
    print_table(rows, padding=4)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    _, conf = store_from(args).inspect(args.name)
    print(json.dumps(conf.raw, indent=4))
    return 0


def _remove(args: argparse.Namespace) -> int:
    store = store_from(args)
    status = 0
    for name in args.names:
        try:
            store.remove(name, in_use=None if args.force else lambda n: _users(args, n))
        except errdefs.ContainerdError as exc:
            print(f"pyctr: unable to remove network {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(name)
    return status


def _show_result(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        container = client.containers.get(args.id)
    result = network_result(container.labels)
    if result is None:
        raise errdefs.NotFound(f"container {args.id}: not attached to a network")
    print(json.dumps(result, indent=4))
    return 0


def _check(args: argparse.Namespace) -> int:
    settings, root = _settings(args)
    with client_from(args) as client:
        container = client.containers.get(args.id)
        namespace = client.namespace
    result = network_result(container.labels)
    if result is None:
        raise errdefs.NotFound(f"container {args.id}: not attached to a network")
    bin_dirs = settings.get("bin_dirs", list(DEFAULT_BIN_DIRS))
    cni = CNI(bin_dirs, Path(args.root or root) / PLUGIN / "results")
    cni.check(str(result["network"]), container_id=cni_container_id(namespace, container.id))
    print(f"{args.id}: {result['network']} ok")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pyctr network``."""
    p = sub.add_parser("network", aliases=["networks", "net"], help="manage CNI networks")
    p.add_argument(
        "--config",
        default=DAEMON_CONFIG,
        help="the daemon's config file, for its CNI settings (default %(default)s)",
    )
    p.add_argument("--conf-dir", default="", help="the CNI config directory (overrides --config)")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    create = cmds.add_parser(
        "create",
        help="create a bridge network",
        description="write a bridge network's conflist (bridge, host-local, portmap, firewall) "
        "as pycontainerd-<name>.conflist",
    )
    create.add_argument("name", metavar="<name>")
    create.add_argument("--subnet", default="", help="its subnet (default: a free /24 of 10.89/16)")
    create.add_argument("--bridge", default="", help="its bridge device (default: pcd-<name>)")
    create.set_defaults(func=_create)

    ls = cmds.add_parser("list", aliases=["ls"], help="list networks")
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the network name")
    ls.set_defaults(func=_list)

    inspect = cmds.add_parser("inspect", help="print a network's conflist")
    inspect.add_argument("name", metavar="<name>")
    inspect.set_defaults(func=_inspect)

    rm = cmds.add_parser(
        "remove",
        aliases=["rm"],
        help="remove networks",
        description="remove networks written by pycontainerd; refused while a container uses one",
    )
    rm.add_argument("names", nargs="+", metavar="<name>")
    rm.add_argument(
        "-f", "--force", action="store_true", help="do not ask the daemon whether it is in use"
    )
    rm.set_defaults(func=_remove)

    result = cmds.add_parser(
        "result", help="print a container's attachment (addresses, gateway, MAC, ports)"
    )
    result.add_argument("id", metavar="<container>")
    result.set_defaults(func=_show_result)

    check = cmds.add_parser(
        "check",
        help="run CNI CHECK on a container's attachment (on the daemon's host)",
        description="run CNI CHECK of the container's network with the result the daemon cached",
    )
    check.add_argument("id", metavar="<container>")
    check.add_argument("--root", default="", help="the daemon's root (default: from --config)")
    check.set_defaults(func=_check)
