"""``pycontainerd``: the daemon's command line, with containerd's flags."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from pycontainerd import errdefs
from pycontainerd.daemon import config as configmod
from pycontainerd.daemon.builtins import REGISTRATIONS
from pycontainerd.daemon.config import DEFAULT_CONFIG_PATH, LOG_LEVELS, Config
from pycontainerd.version import REVISION, VERSION

__all__ = ["main"]

log = logging.getLogger("pycontainerd")

_LEVELS = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_NAMES = {
    5: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class _Formatter(logging.Formatter):
    """containerd's logfmt lines: ``time="…" level=info msg="…"``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.created % 1 * 1e6):06d}Z"
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"')
        line = f'time="{ts}" level={_NAMES.get(record.levelno, "info")} msg="{msg}"'
        if record.exc_info:
            line += " error=" + '"' + str(record.exc_info[1]).replace('"', '\\"') + '"'
        return line


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Libraries' own debug chatter (grpc, asyncio) only at trace.
    quiet = logging.WARNING if _LEVELS[level] > 5 else 5
    for name in ("grpc", "grpc._cython", "asyncio"):
        logging.getLogger(name).setLevel(max(quiet, _LEVELS[level]))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pycontainerd",
        description="A container daemon that speaks containerd's API",
    )
    p.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG_PATH, help="path to the configuration file"
    )
    p.add_argument("-a", "--address", help="address for the daemon's gRPC server")
    p.add_argument("--root", help="daemon root directory")
    p.add_argument("--state", help="daemon state directory")
    p.add_argument("-l", "--log-level", choices=LOG_LEVELS, help="set the logging level")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    cfg = sub.add_parser("config", help="information on the daemon's configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    cfg_sub.add_parser("default", help="print the default configuration")
    cfg_sub.add_parser("dump", help="print the configuration in effect, after flags and file")
    return p


def _effective(args: argparse.Namespace) -> Config:
    config = configmod.load(args.config, REGISTRATIONS)
    if args.address:
        config.grpc.address = args.address
    if args.root:
        config.root = args.root
    if args.state:
        config.state = args.state
    if args.log_level:
        config.debug.level = args.log_level
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"pycontainerd {VERSION} {REVISION}")
        return 0
    try:
        if args.command == "config":
            if args.config_command == "default":
                sys.stdout.write(configmod.render(configmod.defaults(REGISTRATIONS)))
            else:
                sys.stdout.write(configmod.render(_effective(args)))
            return 0
        config = _effective(args)
    except errdefs.ContainerdError as exc:
        print(f"pycontainerd: {exc}", file=sys.stderr)
        return 1
    _setup_logging(config.debug.level)
    log.info("starting pycontainerd %s revision %s", VERSION, REVISION)
    try:
        asyncio.run(_serve(config))
    except errdefs.ContainerdError as exc:
        log.critical("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve(config: Config) -> None:
    from pycontainerd.daemon.server import serve

    await serve(config, REGISTRATIONS)


if __name__ == "__main__":
    sys.exit(main())
