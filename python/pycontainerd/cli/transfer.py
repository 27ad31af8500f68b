"""What pull, push and fetch share in pyctr: ctr's registry flags, and the progress display.

On a terminal the display redraws a line per blob every 100 ms (``ref: status |+++---|
offset/total speed``) and a total line, as ctr does, in colour unless ``NO_COLOR`` is set.
Elsewhere it prints a plain line as each blob finishes, and the total at the end.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from pycontainerd import errdefs
from pycontainerd.images.progress import FINISHED, Progress
from pycontainerd.remotes import (
    HostsConfig,
    Resolver,
    chain_credentials,
    docker_config_credentials,
    parse_user,
    static_credentials,
)

__all__ = ["ProgressDisplay", "add_registry_flags", "human_bytes", "resolver_from"]

_GREEN = "\x1b[32m"
_RESET = "\x1b[0m"


def add_registry_flags(p: argparse.ArgumentParser) -> None:
    """ctr's ``RegistryFlags``."""
    p.add_argument(
        "-k", "--skip-verify", action="store_true", help="skip SSL certificate validation"
    )
    p.add_argument("--plain-http", action="store_true", help="allow connections using plain HTTP")
    p.add_argument("-u", "--user", default="", help="user[:password] registry user and password")
    p.add_argument("--refresh", default="", help="refresh token for authorization server")
    p.add_argument(
        "--hosts-dir",
        action="append",
        default=None,
        help="custom hosts configuration directory (certs.d layout); may be repeated",
    )
    p.add_argument("--tlscacert", default="", help="path to TLS root CA")
    p.add_argument("--tlscert", default="", help="path to TLS client certificate")
    p.add_argument("--tlskey", default="", help="path to TLS client key")


def resolver_from(args: argparse.Namespace) -> Resolver:
    """A resolver for the registry flags: ``--user`` (asking for the password on a terminal
    when it is not given) before Docker's ``config.json``."""
    user = args.user
    username, secret = parse_user(user) if user else ("", "")
    if user and ":" not in user:
        if not sys.stdin.isatty():
            raise errdefs.InvalidArgument(f"--user {username}: no password and no terminal to ask")
        secret = getpass.getpass("Password: ")
    if args.refresh:
        username, secret = "", args.refresh
    credentials = docker_config_credentials()
    if username or secret:
        credentials = chain_credentials(static_credentials(username, secret), credentials)
    if bool(args.tlscert) != bool(args.tlskey):
        raise errdefs.InvalidArgument("--tlscert and --tlskey must be given together")
    hosts = HostsConfig(
        hosts_dirs=args.hosts_dir,
        plain_http=args.plain_http,
        ca_files=(args.tlscacert,) if args.tlscacert else (),
        client_pairs=((args.tlscert, args.tlskey),) if args.tlscert else (),
        skip_verify=args.skip_verify,
    )
    return Resolver(hosts, credentials)


def human_bytes(n: float) -> str:
    """ctr's ``progress.Bytes``: one decimal, binary units (``12.3 MiB``)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:02.1f} {units[i]}"


def _color_wanted(out: TextIO) -> bool:
    return "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb" and out.isatty()


def _bar(fraction: float, width: int, color: bool) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    inner = width - 2
    done = int(inner * fraction)
    plus = "+" * done
    if color and plus:
        plus = f"{_GREEN}{plus}{_RESET}"
    return f"|{plus}{'-' * (inner - done)}|"


def _short(ref: str) -> str:
    """``layer-sha256:0123456789ab`` for ``layer-sha256:<64 hex>``: lines that fit a terminal."""
    head, sep, hexpart = ref.rpartition(":")
    if sep and len(hexpart) > 12 and all(c in "0123456789abcdef" for c in hexpart):
        return f"{head}:{hexpart[:12]}"
    return ref


@dataclass
class _Entry:
    ref: str
    status: str
    offset: int = 0
    total: int = 0
    first_offset: int = -1
    started: float = 0.0
    updated: float = 0.0
    printed: bool = False

    def speed(self) -> float:
        span = self.updated - self.started
        moved = self.offset - max(self.first_offset, 0)
        return moved / span if span > 0 and moved > 0 else 0.0


class ProgressDisplay:
    """A ``progress`` function for pull, push and fetch that draws what it is told.

    ``with ProgressDisplay("docker.io/library/busybox:latest") as display:
    client.pull(ref, progress=display)``. ``tty`` and ``color`` default to what ``out`` is.
    """

    def __init__(
        self,
        name: str,
        out: TextIO | None = None,
        *,
        tty: bool | None = None,
        color: bool | None = None,
        interval: float = 0.1,
    ) -> None:
        self.name = name
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.color = _color_wanted(self.out) if color is None else color
        self.interval = interval
        self.start = time.monotonic()
        self._entries: dict[str, _Entry] = {}
        self._resolved = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lines = 0

    # --- events ----------------------------------------------------------------------------

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        line: str | None = None
        with self._lock:
            if event.status in ("resolving", "resolved"):
                self._resolved = self._resolved or event.status == "resolved"
                return
            e = self._entries.get(event.ref)
            if e is None:
                e = self._entries[event.ref] = _Entry(event.ref, "", started=now)
            elif e.status in FINISHED:
                return
            if event.status in ("downloading", "uploading") and e.first_offset < 0:
                e.first_offset = event.offset
                e.started = now
            e.status = event.status
            e.offset = event.offset
            e.total = event.total
            e.updated = now
            if not self.tty and e.status in FINISHED and not e.printed:
                e.printed = True
                line = self._plain_line(e)
        if line is not None:
            self.out.write(line + "\n")
            self.out.flush()

    # --- drawing ---------------------------------------------------------------------------

    def _totals(self) -> tuple[int, float]:
        moved = sum(
            max(e.offset - max(e.first_offset, 0), 0)
            for e in self._entries.values()
            if e.first_offset >= 0
        )
        elapsed = time.monotonic() - self.start
        return moved, elapsed

    def _plain_line(self, e: _Entry) -> str:
        line = f"{e.ref}: {e.status}"
        if e.status != "exists" and e.total:
            line += f" {human_bytes(e.total)}"
            if (speed := e.speed()) > 0:
                line += f" ({human_bytes(speed)}/s)"
        return line

    def _summary(self) -> str:
        moved, elapsed = self._totals()
        rate = moved / elapsed if elapsed > 0 else 0.0
        return f"elapsed: {elapsed:.1f}s total: {human_bytes(moved)} ({human_bytes(rate)}/s)"

    def _screen(self) -> list[str]:
        width = shutil.get_terminal_size((120, 24)).columns
        resolved = 1.0 if self._resolved else 0.0
        status = "resolved" if self._resolved else "resolving"
        rows: list[tuple[str, str, float, str]] = [(f"{self.name}:", status, resolved, "")]
        for e in self._entries.values():
            sizes = ""
            if e.status in ("downloading", "uploading"):
                frac = e.offset / e.total if e.total else 0.0
                sizes = f"{human_bytes(e.offset)}/{human_bytes(e.total)}"
                if (speed := e.speed()) > 0:
                    sizes += f" {human_bytes(speed)}/s"
            else:
                frac = 0.0 if e.status == "waiting" else 1.0
            rows.append((f"{_short(e.ref)}:", e.status, frac, sizes))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w3 = max(len(r[3]) for r in rows)
        # The bar gives way first when the terminal is narrow.
        bar = max(12, min(40, width - 1 - (w0 + w1 + w3 + 3)))
        lines = []
        for ref, st, frac, sizes in rows:
            plain = f"{ref:<{w0}} {st:<{w1}} {_bar(frac, bar, False)} {sizes}".rstrip()
            if len(plain) >= width:  # a wrapped line would spoil the redraw
                lines.append(plain[: width - 1])
            elif self.color:
                lines.append(f"{ref:<{w0}} {st:<{w1}} {_bar(frac, bar, True)} {sizes}".rstrip())
            else:
                lines.append(plain)
        lines.append(self._summary())
        return lines

    def _draw(self) -> None:
        with self._lock:
            lines = self._screen()
        clear = "\x1b[1A\x1b[2K\r" * self._lines
        self.out.write(clear + "\n".join(lines) + "\n")
        self.out.flush()
        self._lines = len(lines)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    # --- life ------------------------------------------------------------------------------

    def __enter__(self) -> ProgressDisplay:
        self.start = time.monotonic()
        if self.tty:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._draw()
        elif exc is None:
            self.out.write(self._summary() + "\n")
            self.out.flush()
