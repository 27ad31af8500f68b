"""``pyctr version``."""

from __future__ import annotations

import argparse
import platform

from pycontainerd.cli.common import client_from
from pycontainerd.version import REVISION, VERSION

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    print("Client:")
    print(f"  Version:  {VERSION}")
    print(f"  Revision: {REVISION}")
    print(f"  Python version: {platform.python_version()}")
    print()
    with client_from(args) as client:
        version = client.version()
        server = client.server()
    print("Server:")
    print(f"  Version:  {version.version}")
    print(f"  Revision: {version.revision}")
    print(f"  UUID: {server.uuid}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", help="print the client and server versions")
    p.set_defaults(func=_run)
