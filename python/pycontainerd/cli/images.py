"""``pyctr images pull|push|ls|rm|tag|label|check|export|import|mount|unmount``: ctr's image
commands.

``pull`` and ``import`` unpack into the snapshotter (``--snapshotter``, env
``CONTAINERD_SNAPSHOTTER``, default overlayfs) as ctr's do; ``check`` says whether each image
is unpacked there; ``mount`` unpacks if needed and mounts the image's root file system on a
directory under a lease named by that directory, ``unmount --rm`` removes both again.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import IO

from pycontainerd import errdefs
from pycontainerd.cli.common import client_from, object_with_labels, parse_labels
from pycontainerd.cli.tables import print_table
from pycontainerd.cli.transfer import (
    ProgressDisplay,
    add_registry_flags,
    human_bytes,
    resolver_from,
)
from pycontainerd.client import Client
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import validate_digest
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import Image
from pycontainerd.mount import mount_all, unmount_all
from pycontainerd.platforms import default, host, only, parse
from pycontainerd.snapshots import DEFAULT_SNAPSHOTTER
from pycontainerd.unpack import UnpackResult

__all__ = ["add_parser", "labels_column", "platforms_column"]

log = logging.getLogger(__name__)


def _warn(message: str) -> None:
    print(f"pyctr: {message}", file=sys.stderr)


def labels_column(labels: Mapping[str, str]) -> str:
    """``k=v,k2=v2`` sorted, or ``-``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def platforms_column(client: Client, image: Image) -> str:
    """The image's platforms as ctr lists them: formatted, unique, sorted; ``-`` if none."""
    found = sorted({str(p) for p in client.images.platforms(image)})
    return ",".join(found) or "-"


# --- pull and push -------------------------------------------------------------------------------


def _pull(args: argparse.Namespace) -> int:
    ref = args.ref
    if not ref:
        raise errdefs.InvalidArgument("please provide an image reference to pull")
    labels = parse_labels(args.label)
    with (
        client_from(args) as client,
        resolver_from(args) as resolver,
        ProgressDisplay(ref) as display,
    ):
        start = time.monotonic()
        done: list[UnpackResult] = []
        image = client.pull(
            ref,
            platform=args.platform or None,
            all_platforms=args.all_platforms,
            resolver=resolver,
            max_concurrent_downloads=args.max_concurrent_downloads,
            labels=labels,
            progress=None if args.debug else display,
            snapshotter=args.snapshotter,
            unpacked=done,
        )
    platform = args.platform[0] if args.platform else str(host())
    print(f"unpacking {platform} {image.target.digest}...")
    if args.print_chainid and done:
        print(f"image chain ID: {done[0].chain_id}")
    print(f"done: {time.monotonic() - start:.6f}s\t")
    return 0


def _push(args: argparse.Namespace) -> int:
    ref, local = args.remote, args.local
    if not ref:
        raise errdefs.InvalidArgument("please provide a remote image reference to push")
    target: str | Descriptor | None = local
    if args.manifest:
        validate_digest(args.manifest)
        target = Descriptor(args.manifest_type, args.manifest, 0)
    with client_from(args) as client, resolver_from(args) as resolver:
        if isinstance(target, Descriptor):
            target = Descriptor(
                target.media_type, target.digest, client.content.info(target.digest).size
            )
        with ProgressDisplay(ref) as display:
            client.images.push(
                ref,
                target,
                platform=args.platform or None,
                resolver=resolver,
                max_concurrent_uploads=args.max_concurrent_uploaded_layers,
                allow_non_distributable=args.allow_non_distributable_blobs,
                progress=None if args.debug else display,
            )
    return 0


# --- records ------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        images = client.images.list(*args.filters)
        if args.quiet:
            for img in images:
                print(img.name)
            return 0
        rows = [["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]]
        platform = default()
        for img in images:
            try:
                size = client.images.size(img, platform)
            except errdefs.ContainerdError as exc:
                _warn(f"failed calculating size for image {img.name}: {exc}")
                size = 0
            try:
                plats = platforms_column(client, img)
            except errdefs.ContainerdError as exc:
                _warn(f"failed resolving platform for image {img.name}: {exc}")
                plats = "-"
            rows.append(
                [
                    img.name,
                    img.target.media_type,
                    img.target.digest,
                    human_bytes(size),
                    plats,
                    labels_column(img.labels),
                ]
            )
    print_table(rows)
    return 0


def _remove(args: argparse.Namespace) -> int:
    status = 0
    with client_from(args) as client:
        for i, name in enumerate(args.refs):
            sync = args.sync and i == len(args.refs) - 1
            try:
                client.images.delete(name, sync=sync)
            except errdefs.NotFound:
                _warn(f"{name}: image not found")
                continue
            except errdefs.ContainerdError as exc:
                _warn(f"unable to delete {name}: {exc}")
                status = 1
                continue
            print(name)
    return status


def _tag(args: argparse.Namespace) -> int:
    if not args.source:
        raise errdefs.InvalidArgument("please provide an image reference to tag from")
    if not args.targets:
        raise errdefs.InvalidArgument("please provide an image reference to tag to")
    with client_from(args) as client:
        for img in client.images.tag(args.source, *args.targets, force=args.force):
            print(img.name)
    return 0


def _label(args: argparse.Namespace) -> int:
    name, labels = object_with_labels(args.args)
    if not name:
        raise errdefs.InvalidArgument("please specify an image")
    with client_from(args) as client:
        img = client.images.set_labels(name, labels, replace_all=args.replace_all)
    print(",".join(f"{k}={v}" for k, v in sorted(img.labels.items())))
    return 0


def _check(args: argparse.Namespace) -> int:
    status = 0
    with client_from(args) as client:
        images = client.images.list(*args.filters)
        rows = [["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"]]
        platform = default()
        for img in images:
            head = [img.name, img.target.media_type, img.target.digest]
            try:
                result = client.images.check(img, platform)
            except errdefs.ContainerdError as exc:
                _warn(f"unable to check {img.name}: {exc}")
                status = 1
                rows.append([*head, "error", "-", "false"])
                continue
            present = sum(d.size for d in result.present)
            required = sum(d.size for d in result.required)
            if result.available:
                state = "incomplete" if result.missing else "complete"
                state += f" ({len(result.present)}/{len(result.required)})"
                size = f"{human_bytes(present)}/{human_bytes(required)}"
                complete = not result.missing
            else:
                state = f"unavailable ({len(result.present)}/?)"
                size = f"{human_bytes(present)}/?"
                complete = False
            if args.quiet:
                if complete:
                    print(img.name)
                continue
            unpacked = complete and client.images.is_unpacked(
                img, snapshotter=args.snapshotter, platform=platform
            )
            rows.append([*head, state, size, str(unpacked).lower()])
    if not args.quiet:
        print_table(rows)
    return status


# --- archives -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    """``-`` is stdout; a file is removed again if writing it fails."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as f:
        try:
            yield f
        except BaseException:
            f.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise


def _export(args: argparse.Namespace) -> int:
    if not args.out or not args.images:
        raise errdefs.InvalidArgument(
            "please provide both an output filename and an image reference to export"
        )
    with client_from(args) as client, _output(args.out) as out:
        client.images.export(
            out,
            args.images,
            platform=args.platform or None,
            all_platforms=args.all_platforms,
            skip_manifest_json=args.skip_manifest_json,
            skip_non_distributable=args.skip_non_distributable,
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    if not args.input:
        raise errdefs.InvalidArgument("please provide an archive to import")
    with client_from(args) as client, contextlib.ExitStack() as stack:
        if args.input == "-":
            reader: IO[bytes] = sys.stdin.buffer
        else:
            try:
                reader = stack.enter_context(open(args.input, "rb"))
            except OSError as exc:
                raise errdefs.NotFound(f"open {args.input}: {exc.strerror}") from None
        images = client.images.import_(
            reader,
            base_name=args.base_name,
            index_name=args.index_name,
            digests=args.digests,
            skip_digest_for_named=args.skip_digest_for_named,
            platform=args.platform or None,
            all_platforms=args.all_platforms,
            compress_blobs=args.compress_blobs,
        )
        for img in images:
            log.debug("imported %s (%s)", img.name, img.target.digest)
            if args.no_unpack:
                continue
            print(f"unpacking {img.name} ({img.target.digest})...", end="", flush=True)
            client.images.unpack(img, snapshotter=args.snapshotter)
            print("done")
    return 0


# --- mounts -------------------------------------------------------------------------------------


def _mount(args: argparse.Namespace) -> int:
    ref, target = args.ref, args.target
    if not ref:
        raise errdefs.InvalidArgument("please provide an image reference to mount")
    if not target:
        raise errdefs.InvalidArgument("please provide a target path to mount to")
    snapshotter = args.snapshotter
    with client_from(args) as client:
        # the lease is named by the target and holds the snapshot, as ctr's
        with contextlib.suppress(errdefs.AlreadyExists):
            client.leases.create(
                target,
                labels={f"containerd.io/gc.ref.snapshot.{snapshotter}": target},
                expire=24 * 3600,
            )
        ok = False
        try:
            img = client.images.get(ref)
            matcher = only(parse(args.platform)) if args.platform else default()
            client.images.unpack(img, snapshotter=snapshotter, platform=matcher)
            chain = client.images.chain_id(img, matcher)
            print(chain)
            with client.with_lease(target):
                sn = client.snapshots(snapshotter)
                try:
                    mounts = sn.prepare(target, chain) if args.rw else sn.view(target, chain)
                except errdefs.AlreadyExists:
                    mounts = sn.mounts(target)
                try:
                    mount_all(mounts, target)
                except errdefs.ContainerdError:
                    with contextlib.suppress(errdefs.NotFound):
                        sn.remove(target)
                    raise
            ok = True
        finally:
            if not ok:
                with contextlib.suppress(errdefs.NotFound):
                    client.leases.delete(target)
    print(target)
    return 0


def _unmount(args: argparse.Namespace) -> int:
    target = args.target
    if not target:
        raise errdefs.InvalidArgument("please provide a target path to unmount from")
    unmount_all(target)
    if args.rm:
        with client_from(args) as client:
            try:
                client.leases.delete(target)
            except errdefs.NotFound:
                pass
            except errdefs.ContainerdError as exc:
                raise type(exc)(f"error deleting lease: {exc.message}") from None
            try:
                client.snapshots(args.snapshotter).remove(target)
            except errdefs.NotFound:
                pass
            except errdefs.ContainerdError as exc:
                raise type(exc)(f"error removing snapshot: {exc.message}") from None
    print(target)
    return 0


# --- parser -------------------------------------------------------------------------------------


def _snapshotter_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--snapshotter",
        default=os.environ.get("CONTAINERD_SNAPSHOTTER", DEFAULT_SNAPSHOTTER),
        help="snapshotter name (env CONTAINERD_SNAPSHOTTER; default %(default)s)",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("images", aliases=["image", "i"], help="manage images")
    cmds = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    mount = cmds.add_parser(
        "mount",
        help="mount an image to a target path",
        description="unpack the image if needed and mount its root file system on <target>",
    )
    _snapshotter_flag(mount)
    mount.add_argument("--rw", action="store_true", help="enable write access to the mount")
    mount.add_argument("--platform", default="", help="mount the image for the specified platform")
    mount.add_argument("ref", nargs="?", default="", metavar="<ref>")
    mount.add_argument("target", nargs="?", default="", metavar="<target>")
    mount.set_defaults(func=_mount)

    unmount = cmds.add_parser(
        "unmount",
        help="unmount the image from the target",
        description="unmount <target>; with --rm also remove its snapshot and lease",
    )
    _snapshotter_flag(unmount)
    unmount.add_argument("--rm", action="store_true", help="remove the snapshot after a unmount")
    unmount.add_argument("target", nargs="?", default="", metavar="<target>")
    unmount.set_defaults(func=_unmount)

    check = cmds.add_parser(
        "check",
        help="check existing images to ensure all content is available locally",
        description="check that every blob of each image (for this platform) is present",
    )
    check.add_argument(
        "-q", "--quiet", action="store_true", help="print only the complete image refs"
    )
    _snapshotter_flag(check)
    check.add_argument("filters", nargs="*", metavar="<filter>")
    check.set_defaults(func=_check)

    export = cmds.add_parser(
        "export",
        help="export images",
        description=(
            "export images to an OCI tar archive with a Docker manifest.json for one platform "
            "(default: this machine's); '-' writes to stdout"
        ),
    )
    export.add_argument(
        "--skip-manifest-json",
        action="store_true",
        help="do not add Docker compatible manifest.json to archive",
    )
    export.add_argument(
        "--skip-non-distributable",
        action="store_true",
        help="do not add non-distributable blobs such as Windows layers to archive",
    )
    export.add_argument(
        "--platform", action="append", default=[], help="export content for a specific platform"
    )
    export.add_argument(
        "--all-platforms", action="store_true", help="export content from all platforms"
    )
    export.add_argument("out", nargs="?", default="", metavar="<out>")
    export.add_argument("images", nargs="*", metavar="<image>")
    export.set_defaults(func=_export)

    imp = cmds.add_parser(
        "import",
        help="import images",
        description=(
            "import images from an OCI layout or Docker archive ('-' reads stdin); "
            "images are not unpacked"
        ),
    )
    imp.add_argument("--base-name", default="", help="base image name for added images")
    imp.add_argument("--digests", action="store_true", help="create digest images")
    imp.add_argument(
        "--skip-digest-for-named",
        action="store_true",
        help="skip --digests for images named in the archive",
    )
    imp.add_argument("--index-name", default="", help="image name to keep the index as")
    imp.add_argument(
        "--all-platforms", action="store_true", help="import content for all platforms"
    )
    imp.add_argument("--platform", default="", help="import content for a specific platform")
    imp.add_argument("--no-unpack", action="store_true", help="skip unpacking the images")
    imp.add_argument(
        "--compress-blobs",
        action="store_true",
        help="compress uncompressed blobs when creating manifest (Docker format only)",
    )
    _snapshotter_flag(imp)
    imp.add_argument("input", nargs="?", default="", metavar="<in>")
    imp.set_defaults(func=_import)

    ls = cmds.add_parser(
        "list", aliases=["ls"], help="list images known to the daemon", description="list images"
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="print only the image refs")
    ls.add_argument("filters", nargs="*", metavar="<filter>")
    ls.set_defaults(func=_list)

    pull = cmds.add_parser(
        "pull",
        help="pull an image from a remote",
        description="fetch an image's content for this platform and record the image",
    )
    add_registry_flags(pull)
    pull.add_argument(
        "--platform", action="append", default=[], help="pull content from a specific platform"
    )
    pull.add_argument(
        "--all-platforms", action="store_true", help="pull content from all platforms"
    )
    pull.add_argument(
        "--max-concurrent-downloads",
        type=int,
        default=3,
        help="the most blobs fetched at once (default %(default)s)",
    )
    pull.add_argument("--label", action="append", default=[], help="labels to attach to the image")
    _snapshotter_flag(pull)
    pull.add_argument(
        "--print-chainid", action="store_true", help="print the resulting image's chain ID"
    )
    pull.add_argument("ref", nargs="?", default="", metavar="<ref>")
    pull.set_defaults(func=_pull)

    push = cmds.add_parser(
        "push",
        help="push an image to a remote",
        description="push an image and all its content to a remote reference",
    )
    add_registry_flags(push)
    push.add_argument("--manifest", default="", help="digest of manifest")
    push.add_argument(
        "--manifest-type", default=mt.MEDIA_TYPE_IMAGE_MANIFEST, help="media type of manifest"
    )
    push.add_argument(
        "--platform", action="append", default=[], help="push content from a specific platform"
    )
    push.add_argument(
        "--max-concurrent-uploaded-layers",
        type=int,
        default=3,
        help="the most blobs uploaded at once (default %(default)s)",
    )
    push.add_argument(
        "--allow-non-distributable-blobs",
        action="store_true",
        help="allow pushing blobs that are marked as non-distributable",
    )
    push.add_argument("remote", nargs="?", default="", metavar="<remote>")
    push.add_argument("local", nargs="?", default=None, metavar="<local>")
    push.set_defaults(func=_push)

    rm = cmds.add_parser(
        "delete",
        aliases=["del", "remove", "rm"],
        help="remove one or more images by reference",
        description="remove one or more images by reference",
    )
    rm.add_argument(
        "--sync",
        action="store_true",
        help="synchronously remove image and all associated resources",
    )
    rm.add_argument("refs", nargs="*", metavar="<ref>")
    rm.set_defaults(func=_remove)

    tag = cmds.add_parser("tag", help="tag an image", description="tag an image")
    tag.add_argument(
        "--force", action="store_true", help="force target_ref to be created if it exists"
    )
    tag.add_argument("source", nargs="?", default="", metavar="<source_ref>")
    tag.add_argument("targets", nargs="*", metavar="<target_ref>")
    tag.set_defaults(func=_tag)

    label = cmds.add_parser(
        "label",
        help="set and clear labels for an image",
        description="set and clear labels for an image; an empty value clears the label",
    )
    label.add_argument("-r", "--replace-all", action="store_true", help="replace all labels")
    label.add_argument("args", nargs="*", metavar="<name> [<key>=<value> ...]")
    label.set_defaults(func=_label)
