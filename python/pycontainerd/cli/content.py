"""``pyctr content ls|get|fetch|ingest|label|rm|active``: ctr's content commands and output.

``prune references`` lives in :mod:`pycontainerd.cli.prune`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from pycontainerd import errdefs
from pycontainerd.cli import prune
from pycontainerd.cli.common import client_from, object_with_labels, parse_labels
from pycontainerd.cli.transfer import ProgressDisplay, add_registry_flags, resolver_from
from pycontainerd.client.images import fetch_image, fetch_matcher
from pycontainerd.content import Info, write_blob
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import validate_digest
from pycontainerd.platforms import any_of

__all__ = ["add_parser", "human_duration", "human_size", "print_tab_table"]

_CHUNK = 1 << 20


def human_size(size: float) -> str:
    """go-units' ``HumanSize``: four significant digits, decimal units (``1.234MB``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while size >= 1000.0 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units' ``HumanDuration``, as ctr prints ages."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def print_tab_table(
    rows: Sequence[Sequence[str]], *, tabwidth: int = 8, padding: int = 1, out: TextIO | None = None
) -> None:
    """Go's ``tabwriter`` padding with tabs (ctr's ``tabwriter.NewWriter(out, 1, 8, 1, '\\t', 0)``).

    Every cell but a row's last is tab-terminated; a column is as wide as its widest cell plus
    ``padding``, rounded up to a tab stop, and each cell is followed by the tabs reaching it.
    """
    out = out or sys.stdout
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 1), len(cell) + padding)
    for row in rows:
        parts = []
        for i, cell in enumerate(row[:-1]):
            cellw = -(-widths[i] // tabwidth) * tabwidth
            parts.append(cell + "\t" * -(-(cellw - len(cell)) // tabwidth))
        parts.append(row[-1] if row else "")
        out.write("".join(parts) + "\n")


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _list(args: argparse.Namespace) -> int:
    infos: list[Info] = []
    with client_from(args) as client:
        client.content.walk(infos.append, *args.filters)
    if args.quiet:
        for info in infos:
            print(info.digest)
        return 0
    now = time.time_ns()
    rows = [["DIGEST", "SIZE", "AGE", "LABELS"]]
    for info in infos:
        rows.append(
            [
                info.digest,
                human_size(info.size),
                human_duration((now - info.created_at) / 1e9),
                _labels(info.labels) or "-",
            ]
        )
    print_tab_table(rows)
    return 0


def _get(args: argparse.Namespace) -> int:
    dgst = args.digest
    validate_digest(dgst)
    out = sys.stdout.buffer
    with client_from(args) as client, client.content.reader_at(dgst) as ra:
        offset = 0
        while offset < ra.size:
            data = ra.read_at(offset, _CHUNK)
            if not data:
                break
            out.write(data)
            offset += len(data)
    out.flush()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    ref = args.ref
    expected = args.expected_digest
    if expected:
        validate_digest(expected)
    if not ref:
        raise errdefs.InvalidArgument("must specify a transaction reference")
    with client_from(args) as client:
        desc = Descriptor("", expected, args.expected_size)
        write_blob(client.content, ref, sys.stdin.buffer, desc)
    return 0


def _label(args: argparse.Namespace) -> int:
    dgst, labels = object_with_labels(args.args)
    validate_digest(dgst)
    with client_from(args) as client:
        cs = client.content
        if not labels:  # nothing to update: show what is there
            info = cs.info(dgst)
        else:
            paths = [f"labels.{k}" for k in labels]
            info = cs.update(Info(dgst, labels={k: v for k, v in labels.items() if v}), *paths)
    print(_labels(info.labels))
    return 0


def _remove(args: argparse.Namespace) -> int:
    status = 0
    with client_from(args) as client:
        cs = client.content
        for dgst in args.digests:
            try:
                validate_digest(dgst)
                cs.delete(dgst)
            except errdefs.NotFound:
                continue
            except errdefs.ContainerdError as exc:
                print(f"pyctr: could not delete {dgst}: {exc}", file=sys.stderr)
                status = 1
                continue
            print(dgst)
    return status


def _active(args: argparse.Namespace) -> int:
    filters = [args.match] if args.match is not None else []
    with client_from(args) as client:
        statuses = client.content.list_statuses(*filters)
    now = time.time_ns()
    rows = [["REF", "SIZE", "AGE", ""]]
    for st in statuses:
        rows.append(
            [st.ref, human_size(st.offset), human_duration((now - st.started_at) / 1e9), ""]
        )
    print_tab_table(rows)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    ref = args.ref
    if not ref:
        raise errdefs.InvalidArgument("please provide an image reference to fetch")
    if args.metadata_only:
        matcher, all_metadata = any_of(), True
    else:
        matcher, all_metadata = fetch_matcher(args.platform or None, args.all_platforms), False
    with (
        client_from(args) as client,
        resolver_from(args) as resolver,
        ProgressDisplay(ref) as display,
    ):
        fetch_image(
            client,
            ref,
            matcher=matcher,
            limit=0,
            all_metadata=all_metadata or args.all_metadata,
            resolver=resolver,
            max_concurrent_downloads=args.max_concurrent_downloads,
            labels=parse_labels(args.label),
            progress=None if args.debug else display,
        )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("content", help="manage content")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    prune.add_parser(cmds)

    active = cmds.add_parser(
        "active",
        help="display active transfers",
        description="display the ongoing transfers; the argument is a filter (ref~=REGEXP)",
    )
    active.add_argument("match", nargs="?", metavar="<filter>")
    # accepted as ctr accepts them; ctr does not use them either
    active.add_argument("-t", "--timeout", help=argparse.SUPPRESS)
    active.add_argument("--root", help=argparse.SUPPRESS)
    active.set_defaults(func=_active)

    rm = cmds.add_parser(
        "delete",
        aliases=["del", "remove", "rm"],
        help="permanently delete one or more blobs",
        description="delete one or more blobs; each deleted digest is printed",
    )
    rm.add_argument("digests", nargs="*", metavar="<digest>")
    rm.set_defaults(func=_remove)

    fetch = cmds.add_parser(
        "fetch",
        help="fetch all content for an image into the content store",
        description="fetch an image's content (this platform's, by default) and record the image",
    )
    add_registry_flags(fetch)
    fetch.add_argument("--label", action="append", default=[], help="labels for the image")
    fetch.add_argument(
        "--platform", action="append", default=[], help="pull content from a specific platform"
    )
    fetch.add_argument(
        "--all-platforms", action="store_true", help="pull content from all platforms"
    )
    fetch.add_argument(
        "--all-metadata", action="store_true", help="pull metadata for all platforms"
    )
    fetch.add_argument(
        "--metadata-only",
        action="store_true",
        help="pull all metadata including manifests and configs",
    )
    fetch.add_argument(
        "--max-concurrent-downloads",
        type=int,
        default=3,
        help="the most blobs fetched at once (default %(default)s)",
    )
    fetch.add_argument("ref", nargs="?", default="", metavar="<ref>")
    fetch.set_defaults(func=_fetch)

    get = cmds.add_parser(
        "get", help="get the data for an object", description="write a blob to stdout"
    )
    get.add_argument("digest", metavar="<digest>")
    get.set_defaults(func=_get)

    ingest = cmds.add_parser(
        "ingest",
        help="accept content into the store",
        description="ingest stdin into the content store under a transaction reference",
    )
    ingest.add_argument("--expected-size", type=int, default=0, help="validate against this size")
    ingest.add_argument("--expected-digest", default="", help="verify against this digest")
    ingest.add_argument("ref", nargs="?", default="", metavar="<key>")
    ingest.set_defaults(func=_ingest)

    ls = cmds.add_parser(
        "list",
        aliases=["ls"],
        help="list all blobs in the store",
        description="list blobs in the content store, optionally filtered",
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the blob digest")
    ls.add_argument("filters", nargs="*", metavar="<filter>")
    ls.set_defaults(func=_list)

    label = cmds.add_parser(
        "label",
        help="add labels to content",
        description="set and clear labels of a blob; an empty value clears the label",
    )
    label.add_argument("args", nargs="+", metavar="<digest> [<label>=<value> ...]")
    label.set_defaults(func=_label)
