"""What every pyctr command shares: the client from the global flags, label arguments."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pycontainerd import errdefs
from pycontainerd.client import Client

__all__ = ["client_from", "object_with_labels", "parse_labels"]


def client_from(args: argparse.Namespace) -> Client:
    """A client for the global ``--address``, ``--namespace`` and timeout flags, connected
    (as ctr: a daemon that is starting gets ``--connect-timeout`` seconds to answer; a
    missing socket fails at once)."""
    client = Client(
        args.address,
        namespace=args.namespace,
        timeout=args.connect_timeout,
        call_timeout=args.timeout or None,
    )
    if args.connect_timeout > 0:
        try:
            client.connect()
        except BaseException:
            client.close()
            raise
    return client


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` arguments (``key`` alone means an empty value), as ctr reads them."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise errdefs.InvalidArgument(f"invalid label {pair!r}: the key is empty")
        labels[key] = value
    return labels


def object_with_labels(args: Sequence[str]) -> tuple[str, dict[str, str]]:
    """ctr's ``<name> [<key>=<value>, ...]`` argument shape."""
    if not args:
        return "", {}
    return args[0], parse_labels(args[1:])
