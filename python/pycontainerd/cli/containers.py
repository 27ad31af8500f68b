"""``pyctr containers create|ls|info|label|rm``: ctr's container commands, flags and output.

``add_container_flags`` and ``container_spec_opts`` are ctr's ``ContainerFlags`` and the spec
options ``ctr run`` builds from them, shared with ``pyctr run``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any

from pycontainerd import errdefs
from pycontainerd.cli.common import client_from, object_with_labels, parse_labels
from pycontainerd.cli.leases import print_space_table
from pycontainerd.client import Client
from pycontainerd.client.containers import DEFAULT_RUNTIME
from pycontainerd.containers import AnyValue, Container, RuntimeInfo
from pycontainerd.oci import (
    SpecOpt,
    canonical,
    spec_from_any,
    with_all_devices_allowed,
    with_annotations,
    with_cpu_shares,
    with_cpus,
    with_env,
    with_host_devices,
    with_memory_limit,
    with_mounts,
    with_net_host,
    with_privileged,
    with_process_cwd,
    with_rootfs_readonly,
    with_tty,
)
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER

__all__ = [
    "RUNC_OPTIONS_TYPE_URL",
    "add_container_flags",
    "add_parser",
    "container_info_json",
    "container_spec_opts",
    "create_container",
    "parse_mount",
    "runtime_from_args",
]

#: The type of runc's runtime options (``containerd.runc.v1.Options``), as ctr sends them.
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"


# --- shared with run ---------------------------------------------------------------------


def add_container_flags(p: argparse.ArgumentParser, *, run: bool = False) -> None:
    """ctr's snapshotter and container flags (those pycontainerd implements); with ``run``,
    also those only ``ctr run`` has (``--cpus``, ``--cpu-shares``)."""
    p.add_argument(
        "--snapshotter",
        default=DEFAULT_SNAPSHOTTER,
        help="snapshotter name (default %(default)s)",
    )
    p.add_argument(
        "--snapshotter-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="labels added to the new snapshot",
    )
    p.add_argument("--runtime", default=DEFAULT_RUNTIME, help="runtime name (default %(default)s)")
    p.add_argument("--cwd", default="", help="the working directory of the process")
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variables"
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="container labels"
    )
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="type=bind,src=/a,dst=/b,options=rbind:ro",
        help="a mount for the container (as ctr: type, src, dst, options separated by :)",
    )
    p.add_argument(
        "--net-host", action="store_true", help="enable host networking for the container"
    )
    p.add_argument(
        "--net",
        default="",
        metavar="NETWORK",
        help="attach to a CNI network (bridge: the default one; see pyctr network ls)",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[HOSTIP:]HOST:CONTAINER[/tcp|udp]",
        help="publish a container port on the host (with --net)",
    )
    p.add_argument("--privileged", action="store_true", help="run a privileged container")
    p.add_argument("--read-only", action="store_true", help="set the container's rootfs read-only")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a TTY for the container")
    p.add_argument(
        "--memory-limit", type=int, default=0, help="memory limit in bytes for the container"
    )
    if run:
        p.add_argument("--cpus", type=float, default=0.0, help="set the CFS cpu quota")
        p.add_argument(
            "--cpu-shares", type=int, default=1024, help="set the cpu shares (default %(default)s)"
        )


def parse_mount(text: str) -> dict[str, Any]:
    """ctr's ``--mount`` value: ``type=bind,src=/a,dst=/b,options=rbind:ro``."""
    mount: dict[str, Any] = {"destination": "", "type": "", "source": ""}
    options: list[str] = []
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise errdefs.InvalidArgument(f"mount {text!r}: {part!r} is not key=value")
        if key == "type":
            mount["type"] = value
        elif key in ("source", "src"):
            mount["source"] = value
        elif key in ("destination", "dst"):
            mount["destination"] = value
        elif key == "options":
            options = [o for o in value.split(":") if o]
        else:
            raise errdefs.InvalidArgument(f"mount {text!r}: unknown field {key!r}")
    if not mount["destination"]:
        raise errdefs.InvalidArgument(f"mount {text!r}: a destination (dst=) is required")
    if options:
        mount["options"] = options
    return mount


def container_spec_opts(args: argparse.Namespace) -> list[SpecOpt]:
    """The spec options ``ctr run`` adds after the image config, from the container flags."""
    opts: list[SpecOpt] = []
    if args.env:
        opts.append(with_env(args.env))
    if args.mount:
        opts.append(with_mounts([parse_mount(m) for m in args.mount]))
    if args.read_only:
        opts.append(with_rootfs_readonly())
    if args.cwd:
        opts.append(with_process_cwd(args.cwd))
    if args.tty:
        opts.append(with_tty())
    if args.privileged:
        opts += [with_privileged(), with_all_devices_allowed(), with_host_devices()]
    if args.net_host:
        opts.append(with_net_host())
    if getattr(args, "cpus", 0) > 0:
        opts.append(with_cpus(args.cpus))
    if getattr(args, "cpu_shares", 0) > 0:
        opts.append(with_cpu_shares(args.cpu_shares))
    if args.memory_limit:
        opts.append(with_memory_limit(args.memory_limit))
    labels = parse_labels(args.label)
    if labels:
        opts.append(with_annotations(labels))  # as ctr: the labels are annotations too
    return opts


def runtime_from_args(args: argparse.Namespace) -> RuntimeInfo:
    """The runtime as ctr sets it: runc's (empty) options for ``io.containerd.runc.v2``."""
    if args.runtime == DEFAULT_RUNTIME:
        return RuntimeInfo(args.runtime, AnyValue(RUNC_OPTIONS_TYPE_URL, b""))
    return RuntimeInfo(args.runtime)


def create_container(
    client: Client, args: argparse.Namespace, ref: str, container_id: str, command: Sequence[str]
) -> Container:
    """``ctr containers create`` / the container half of ``ctr run``."""
    if not ref:
        raise errdefs.InvalidArgument("image ref must be provided")
    if not container_id:
        raise errdefs.InvalidArgument("container id must be provided")
    return client.containers.create_from_image(
        container_id,
        ref,
        args=list(command) or None,
        spec_opts=container_spec_opts(args),
        snapshotter=args.snapshotter,
        runtime=runtime_from_args(args),
        labels={**parse_labels(args.label), **network_labels(args)},
        snapshot_labels=parse_labels(args.snapshotter_label),
    )


def network_labels(args: argparse.Namespace) -> dict[str, str]:
    """The labels asking the daemon for ``--net`` with the ``--publish`` ports."""
    from pycontainerd.network.labels import (
        LABEL_PORTS,
        container_labels,
        parse_port,
        parse_ports,
    )

    network = args.net or ("host" if args.net_host else "none")
    if args.publish and network in ("host", "none"):
        raise errdefs.InvalidArgument("--publish needs a network: --net bridge")
    if network in ("host", "none"):
        return {}
    if args.net_host:
        raise errdefs.InvalidArgument("--net and --net-host cannot be used together")
    labels = container_labels(network=network)
    if args.publish:
        mappings = [parse_port(p).to_cni() for p in args.publish]
        labels[LABEL_PORTS] = json.dumps(mappings, separators=(",", ":"))
        parse_ports(labels[LABEL_PORTS])  # duplicates refused here, before anything is made
    return labels


# --- info ----------------------------------------------------------------------------------


def _go_time(ns: int) -> str:
    """Go's ``time.Time`` in JSON: RFC 3339 in UTC, nanoseconds without trailing zeros."""
    seconds, frac = divmod(ns, 1_000_000_000)
    t = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _any_json(value: AnyValue | None) -> dict[str, str] | None:
    if value is None:
        return None
    out: dict[str, str] = {}
    if value.type_url:
        out["type_url"] = value.type_url
    if value.value:
        out["value"] = base64.b64encode(value.value).decode("ascii")
    return out


def container_info_json(c: Container, *, spec_only: bool = False) -> str:
    """What ``ctr containers info`` prints: the record as Go encodes it, the spec decoded."""
    spec: Any = None
    if c.spec is not None and c.spec.value:
        spec = canonical(spec_from_any(c.spec))
    if spec_only:
        doc: Any = spec
    else:
        doc = {
            "ID": c.id,
            "Labels": {k: c.labels[k] for k in sorted(c.labels)} or None,
            "Image": c.image,
            "Runtime": {"Name": c.runtime.name, "Options": _any_json(c.runtime.options)},
            "SnapshotKey": c.snapshot_key,
            "Snapshotter": c.snapshotter,
            "CreatedAt": _go_time(c.created_at),
            "UpdatedAt": _go_time(c.updated_at),
            "Extensions": {k: _any_json(c.extensions[k]) for k in sorted(c.extensions)} or None,
        }
        if spec is not None:
            doc["Spec"] = spec
    text = json.dumps(doc, indent=4, ensure_ascii=False)
    # Go's encoder escapes these inside strings (and they cannot occur outside one)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --- commands ------------------------------------------------------------------------------


def _create(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        create_container(client, args, args.ref, args.id, args.command)
    return 0


def _list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        found = client.containers.list(*args.filters)
    if args.quiet:
        for c in found:
            print(c.id)
        return 0
    rows = [["CONTAINER", "IMAGE", "RUNTIME"]]
    rows += [[c.id, c.image or "-", c.runtime.name] for c in found]
    print_space_table(rows, padding=4)
    return 0


def _info(args: argparse.Namespace) -> int:
    if not args.id:
        raise errdefs.InvalidArgument("container id must be provided")
    with client_from(args) as client:
        c = client.containers.get(args.id)
    print(container_info_json(c, spec_only=args.spec))
    return 0


def _label(args: argparse.Namespace) -> int:
    container_id, labels = object_with_labels(args.args)
    if not container_id:
        raise errdefs.InvalidArgument("container id must be provided")
    with client_from(args) as client:
        current = client.containers.set_labels(container_id, labels)
    print(",".join(f"{k}={v}" for k, v in sorted(current.items())))
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.ids:
        raise errdefs.InvalidArgument("must specify at least one container to delete")
    first: errdefs.ContainerdError | None = None
    with client_from(args) as client:
        for container_id in args.ids:
            try:
                client.containers.delete(container_id, cleanup_snapshot=not args.keep_snapshot)
            except errdefs.ContainerdError as exc:
                first = first or exc
                print(f"pyctr: failed to delete container {container_id!r}: {exc}", file=sys.stderr)
    if first is not None:
        raise first
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("containers", aliases=["c", "container"], help="manage containers")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    create = cmds.add_parser(
        "create",
        help="create container",
        description="create a container from an unpacked image: IMAGE CONTAINER [COMMAND] [ARG...]",
    )
    add_container_flags(create)
    create.add_argument("ref", metavar="IMAGE")
    create.add_argument("id", metavar="CONTAINER")
    create.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    create.set_defaults(func=_create)

    ls = cmds.add_parser(
        "list",
        aliases=["ls"],
        help="list containers",
        description="list containers, optionally filtered (id, image, runtime.name, labels.KEY)",
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the container id")
    ls.add_argument("filters", nargs="*", metavar="<filter>")
    ls.set_defaults(func=_list)

    rm = cmds.add_parser(
        "delete",
        aliases=["del", "remove", "rm"],
        help="delete one or more existing containers",
        description="delete containers and, unless --keep-snapshot, their snapshots",
    )
    rm.add_argument(
        "--keep-snapshot", action="store_true", help="do not clean up snapshot with container"
    )
    rm.add_argument("ids", nargs="*", metavar="CONTAINER")
    rm.set_defaults(func=_delete)

    label = cmds.add_parser(
        "label",
        help="set and clear labels for a container",
        description="set labels (KEY=VALUE) or clear them (KEY= or KEY); prints all labels",
    )
    label.add_argument("args", nargs="*", metavar="CONTAINER [<key>=<value>, ...]")
    label.set_defaults(func=_label)

    info = cmds.add_parser("info", help="get info about a container")
    info.add_argument("--spec", action="store_true", help="only display the spec")
    info.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    info.set_defaults(func=_info)
