"""``pyctr run``: ctr's ``run`` (an image's command in a new container, its task started and,
unless detached, waited for; pyctr exits with the container's exit code)."""

from __future__ import annotations

import argparse
import contextlib

from pycontainerd import errdefs
from pycontainerd.cli.common import client_from
from pycontainerd.cli.containers import add_container_flags, create_container
from pycontainerd.cli.tasks import add_io_flags, io_creator, run_process

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    if args.rm and args.detach:
        raise errdefs.InvalidArgument("flags --detach and --rm cannot be specified together")
    if not args.ref:
        raise errdefs.InvalidArgument("image ref must be provided")
    if not args.id:
        raise errdefs.InvalidArgument("container id must be provided")
    with client_from(args) as client:
        image = client.images.get(args.ref)
        if not client.images.is_unpacked(image, snapshotter=args.snapshotter):
            client.images.unpack(image, snapshotter=args.snapshotter)
        container = create_container(client, args, args.ref, args.id, args.command)

        def remove() -> None:
            if args.rm:
                with contextlib.suppress(errdefs.NotFound):
                    client.containers.delete(container.id, cleanup_snapshot=True)

        try:
            task = client.container(container.id).new_task(io=io_creator(args, terminal=args.tty))
        except BaseException:
            remove()
            raise
        return run_process(task, detach=args.detach, terminal=args.tty, after=remove)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run a container",
        description="run a container from an image: IMAGE CONTAINER [COMMAND] [ARG...]",
    )
    p.add_argument("--rm", action="store_true", help="remove the container after running")
    add_io_flags(p)
    p.add_argument(
        "-d",
        "--detach",
        action="store_true",
        help="detach from the task after it has started execution",
    )
    add_container_flags(p, run=True)
    p.add_argument("ref", nargs="?", default="", metavar="IMAGE")
    p.add_argument("id", nargs="?", default="", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=_run)
