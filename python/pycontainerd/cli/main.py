"""``pyctr``: the command line client, with ctr's global flags."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pycontainerd import errdefs
from pycontainerd.cli import (
    containers,
    content,
    events,
    images,
    leases,
    namespaces,
    network,
    plugins,
    run,
    snapshots,
    tasks,
    version,
)
from pycontainerd.client.connection import DEFAULT_ADDRESS
from pycontainerd.namespaces import DEFAULT

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="pyctr",
        description="pyctr: a client for pycontainerd and containerd, with ctr's commands",
    )
    p.add_argument(
        "-a",
        "--address",
        default=os.environ.get("CONTAINERD_ADDRESS", DEFAULT_ADDRESS),
        help="address of the daemon's socket (env CONTAINERD_ADDRESS; default %(default)s)",
    )
    p.add_argument(
        "-n",
        "--namespace",
        default=os.environ.get("CONTAINERD_NAMESPACE", DEFAULT),
        help="namespace to use (env CONTAINERD_NAMESPACE; default %(default)s)",
    )
    p.add_argument(
        "--timeout", type=float, default=0.0, help="seconds each call may take; 0 means no limit"
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the daemon to answer (default %(default)s)",
    )
    p.add_argument("--debug", action="store_true", help="print tracebacks of errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for module in (
        containers,
        content,
        events,
        images,
        leases,
        namespaces,
        network,
        plugins,
        run,
        snapshots,
        tasks,
        version,
    ):
        module.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except errdefs.ContainerdError as exc:
        if args.debug:
            raise
        print(f"pyctr: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
