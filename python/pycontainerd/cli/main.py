"""``pyctr``: the command line client, with ctr's global flags.

A command's module is imported only when that command runs: ``pyctr --help`` lists them from
:data:`COMMANDS`, a static table (tests/unit check it against each module's parser).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from pycontainerd import errdefs
from pycontainerd.client.connection import DEFAULT_ADDRESS
from pycontainerd.namespaces import DEFAULT

__all__ = ["COMMANDS", "Command", "main"]


class Command(NamedTuple):
    """A top-level command: its name, aliases and help as its module's parser has them."""

    name: str
    aliases: tuple[str, ...]
    help: str
    module: str


#: Every command, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("containers", ("c", "container"), "manage containers", "containers"),
    Command("content", (), "manage content", "content"),
    Command("events", ("event",), "display events", "events"),
    Command("images", ("image", "i"), "manage images", "images"),
    Command("leases", (), "manage leases", "leases"),
    Command("namespaces", ("namespace", "ns"), "manage namespaces", "namespaces"),
    Command("network", ("networks", "net"), "manage CNI networks", "network"),
    Command("plugins", ("plugin",), "provides information about plugins", "plugins"),
    Command("run", (), "run a container", "run"),
    Command("snapshots", ("snapshot",), "manage snapshots", "snapshots"),
    Command("tasks", ("t", "task"), "manage tasks", "tasks"),
    Command("version", (), "print the client and server versions", "version"),
)
#: Global options that take a value (to find the command word in the arguments).
_VALUED = frozenset({"-a", "--address", "-n", "--namespace", "--timeout", "--connect-timeout"})


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _selected(argv: Sequence[str]) -> Command | None:
    """The command the arguments name, if any: the first word that is not a global option."""
    words = iter(argv)
    for word in words:
        if word.startswith("-") and word != "--":
            if word in _VALUED:
                next(words, None)
            continue
        name = next(words, "") if word == "--" else word
        for command in COMMANDS:
            if name == command.name or name in command.aliases:
                return command
        return None
    return None


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """pyctr's parser; only the command ``argv`` names gets its full parser (and module)."""
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
        help="seconds to wait for a starting daemon to answer (default %(default)s)",
    )
    p.add_argument("--debug", action="store_true", help="print tracebacks of errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    chosen = _selected(argv)
    for command in COMMANDS:
        if command == chosen:
            module = importlib.import_module(f"pycontainerd.cli.{command.module}")
            module.add_parser(sub)
        else:
            sub.add_parser(command.name, aliases=list(command.aliases), help=command.help)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run pyctr with ``argv`` (default the process's arguments); the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = _parser(arguments).parse_args(arguments)
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
