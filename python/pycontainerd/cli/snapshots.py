"""``pyctr snapshots ls|tree|info|usage|mounts|prepare|view|commit|rm|label``: ctr's commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from pycontainerd import errdefs
from pycontainerd.cli.common import client_from, object_with_labels, parse_labels
from pycontainerd.cli.leases import print_space_table
from pycontainerd.diff import MEDIA_TYPE_LAYER_GZIP
from pycontainerd.mount import Mount
from pycontainerd.rootfs import create_diff, with_mounts
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER, Info, Kind, Snapshotter

__all__ = ["add_parser", "format_bytes", "format_rfc3339_nano"]


def format_bytes(size: int) -> str:
    """containerd's ``progress.Bytes``: binary units, two decimals past bytes."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, i = float(size), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:0.2f} {units[i]}" if i else f"{size} {units[i]}"


def format_rfc3339_nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC time: trailing zeros of the fraction dropped."""
    t = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return t + (f".{frac}" if frac else "") + "Z"


def _print_mounts(target: str, mounts: Sequence[Mount]) -> None:
    for m in mounts:
        print(f"mount -t {m.type} {m.source} {target} -o {','.join(m.options)}")


def _infos(sn: Snapshotter, *filters: str) -> list[Info]:
    infos: list[Info] = []
    sn.walk(infos.append, *filters)
    return infos


def _list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        infos = _infos(client.snapshots(args.snapshotter))
    rows = [["KEY", "PARENT", "KIND"]]
    rows += [[i.name, i.parent, i.kind.value] for i in infos]
    print_space_table(rows)
    return 0


def _tree(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        infos = _infos(client.snapshots(args.snapshotter))
    children: dict[str, list[str]] = {}
    names = {i.name for i in infos}
    roots: list[str] = []
    for info in infos:
        if info.parent:
            children.setdefault(info.parent, []).append(info.name)
            if info.parent not in names:  # as ctr: a parent not listed still shows
                names.add(info.parent)
                roots.append(info.parent)
        else:
            roots.append(info.name)

    def show(name: str, level: int) -> None:
        prefix = "  " * level + ("\\_" if level else "")
        print(f"{prefix} {name}")
        for child in children.get(name, []):
            show(child, level + 1)

    for root in roots:
        show(root, 0)
    return 0


def _info(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        info = client.snapshots(args.snapshotter).stat(args.key)
    doc: dict[str, object] = {"Kind": info.kind.value, "Name": info.name}
    if info.parent:
        doc["Parent"] = info.parent
    if info.labels:
        doc["Labels"] = dict(sorted(info.labels.items()))
    doc["Created"] = format_rfc3339_nano(info.created_at)
    doc["Updated"] = format_rfc3339_nano(info.updated_at)
    print(json.dumps(doc, indent=4, ensure_ascii=False))
    return 0


def _usage(args: argparse.Namespace) -> int:
    def size(n: int) -> str:
        return str(n) if args.b else format_bytes(n)

    with client_from(args) as client:
        sn = client.snapshots(args.snapshotter)
        keys = args.keys or [i.name for i in _infos(sn)]
        rows = [["KEY", "SIZE", "INODES"]]
        for key in keys:
            usage = sn.usage(key)
            rows.append([key, size(usage.size), str(usage.inodes)])
    print_space_table(rows)
    return 0


def _mounts(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        mounts = client.snapshots(args.snapshotter).mounts(args.key)
    _print_mounts(args.target, mounts)
    return 0


def _gc_root() -> dict[str, str]:
    """The label ctr puts on what it prepares and commits, so the collector keeps it."""
    return {"containerd.io/gc.root": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _create(args: argparse.Namespace) -> int:
    labels = _gc_root()
    with client_from(args) as client:
        sn = client.snapshots(args.snapshotter)
        create = sn.prepare if args.kind == Kind.ACTIVE else sn.view
        mounts = create(args.key, args.parent, labels=labels)
    if args.target:
        _print_mounts(args.target, mounts)
    if args.mounts:
        doc = [
            {"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}
            for m in mounts
        ]
        print(json.dumps(doc, indent=4))
    return 0


def _commit(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        client.snapshots(args.snapshotter).commit(args.key, args.active, labels=_gc_root())
    return 0


def _remove(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        sn = client.snapshots(args.snapshotter)
        for key in args.keys:
            sn.remove(key)
    return 0


def _label(args: argparse.Namespace) -> int:
    key, labels = object_with_labels(args.args)
    with client_from(args) as client:
        sn = client.snapshots(args.snapshotter)
        if labels:
            paths = [f"labels.{k}" for k in labels]
            info = Info(key, Kind.UNKNOWN, labels={k: v for k, v in labels.items() if v})
            info = sn.update(info, *paths)
        else:
            info = sn.stat(key)
    print(",".join(f"{k}={v}" for k, v in info.labels.items()))
    return 0


def _diff(args: argparse.Namespace) -> int:
    id_a, id_b = args.id_a, args.id_b
    if not id_a:
        raise errdefs.InvalidArgument("snapshot id must be provided")
    labels = parse_labels(args.label)
    if args.keep:
        labels["containerd.io/gc.root"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with client_from(args) as client, client.with_lease():
        sn, differ = client.snapshots(args.snapshotter), client.diff()
        opts = {"media_type": args.media_type, "ref": args.ref, "labels": labels}
        if not id_b:
            desc = create_diff(sn, differ, id_a, **opts)
        else:
            with with_mounts(sn, id_a) as lower, with_mounts(sn, id_b) as upper:
                desc = differ.compare(lower, upper, **opts)
        out = sys.stdout.buffer
        with client.content.reader_at(desc) as ra:
            offset = 0
            while offset < ra.size:
                chunk = ra.read_at(offset, min(1 << 20, ra.size - offset))
                if not chunk:
                    break
                out.write(chunk)
                offset += len(chunk)
        out.flush()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("snapshots", aliases=["snapshot"], help="manage snapshots")
    p.add_argument(
        "--snapshotter",
        default=os.environ.get("CONTAINERD_SNAPSHOTTER", DEFAULT_SNAPSHOTTER),
        help="snapshotter name (env CONTAINERD_SNAPSHOTTER; default %(default)s)",
    )
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    ls = cmds.add_parser("list", aliases=["ls"], help="list snapshots")
    ls.set_defaults(func=_list)
    cmds.add_parser("tree", help="display tree view of snapshot branches").set_defaults(func=_tree)
    info = cmds.add_parser("info", help="get info about a snapshot")
    info.add_argument("key", metavar="<key>")
    info.set_defaults(func=_info)

    usage = cmds.add_parser("usage", help="usage snapshots")
    usage.add_argument("-b", action="store_true", help="display size in bytes")
    usage.add_argument("keys", nargs="*", metavar="<key>")
    usage.set_defaults(func=_usage)

    mounts = cmds.add_parser(
        "mounts", aliases=["m", "mount"], help="mount gets mount commands for the snapshots"
    )
    mounts.add_argument("target", metavar="<target>")
    mounts.add_argument("key", metavar="<key>")
    mounts.set_defaults(func=_mounts)

    for name, kind, text in (
        ("prepare", Kind.ACTIVE, "prepare a snapshot from a committed snapshot"),
        ("view", Kind.VIEW, "create a read-only snapshot from a committed snapshot"),
    ):
        c = cmds.add_parser(name, help=text)
        c.add_argument("-t", "--target", default="", help="mount target path, prints the mount")
        c.add_argument("--mounts", action="store_true", help="print out snapshot mounts as JSON")
        c.add_argument("key", metavar="<key>")
        c.add_argument("parent", nargs="?", default="", metavar="<parent>")
        c.set_defaults(func=_create, kind=kind)

    commit = cmds.add_parser("commit", help="commit an active snapshot into the provided name")
    commit.add_argument("key", metavar="<key>")
    commit.add_argument("active", metavar="<active>")
    commit.set_defaults(func=_commit)

    rm = cmds.add_parser("delete", aliases=["del", "remove", "rm"], help="remove snapshots")
    rm.add_argument("keys", nargs="+", metavar="<key>")
    rm.set_defaults(func=_remove)

    diff = cmds.add_parser(
        "diff",
        help="get the diff of two snapshots. the default second snapshot is the first "
        "snapshot's parent.",
        description="write the layer of the changes from <idB> (default: <idA>'s parent) to "
        "<idA> to stdout; the daemon keeps it in its content store",
    )
    diff.add_argument(
        "--media-type", default=MEDIA_TYPE_LAYER_GZIP, help="media type to use for creating diff"
    )
    diff.add_argument("--ref", default="", help="content upload reference to use")
    diff.add_argument(
        "--keep", action="store_true", help="keep diff content. up to creator to delete it."
    )
    diff.add_argument("--label", action="append", default=[], help="labels to attach")
    diff.add_argument("id_a", nargs="?", default="", metavar="<idA>")
    diff.add_argument("id_b", nargs="?", default="", metavar="<idB>")
    diff.set_defaults(func=_diff)

    label = cmds.add_parser("label", help="add labels to a snapshot")
    label.add_argument("args", nargs="+", metavar="<name> [<label>=<value> ...]")
    label.set_defaults(func=_label)
