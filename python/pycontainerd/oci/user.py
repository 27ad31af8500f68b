"""``/etc/passwd`` and ``/etc/group`` of a container, parsed as runc's ``user`` package does.

A line is ``name:password:uid:gid:gecos:home:shell`` (passwd) or ``name:password:gid:a,b``
(group); blank lines are skipped, missing fields are empty and a number that does not parse is
0. The files are read from the container's own root filesystem, never the host's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pycontainerd.oci.rootfs import RootReader

__all__ = [
    "Group",
    "User",
    "groups_from_root",
    "parse_group",
    "parse_passwd",
    "users_from_root",
]


@dataclass(frozen=True)
class User:
    """One line of ``/etc/passwd``."""

    name: str
    uid: int
    gid: int
    home: str = ""
    shell: str = ""


@dataclass(frozen=True)
class Group:
    """One line of ``/etc/group``."""

    name: str
    gid: int
    members: tuple[str, ...] = ()


_NUMBER = re.compile(r"[+-]?[0-9]+")


def _int(field: str) -> int:
    # as Go's strconv.Atoi with its error ignored: anything but a plain number is 0
    return int(field) if _NUMBER.fullmatch(field) else 0


def _fields(line: str, n: int) -> list[str]:
    parts = line.split(":")
    return parts + [""] * (n - len(parts))


def _lines(text: bytes) -> list[str]:
    out = []
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line:
            out.append(line)
    return out


def parse_passwd(text: bytes) -> list[User]:
    """Every entry of a passwd file."""
    users = []
    for line in _lines(text):
        name, _pw, uid, gid, _gecos, home, shell = _fields(line, 7)[:7]
        users.append(User(name, _int(uid), _int(gid), home, shell))
    return users


def parse_group(text: bytes) -> list[Group]:
    """Every entry of a group file."""
    groups = []
    for line in _lines(text):
        name, _pw, gid, members = _fields(line, 4)[:4]
        groups.append(Group(name, _int(gid), tuple(m for m in members.split(",") if m)))
    return groups


def users_from_root(root: RootReader, match: Callable[[User], bool]) -> list[User]:
    """The entries of the root's ``/etc/passwd`` that ``match``; raises
    :class:`FileNotFoundError` when there is no such file."""
    return [u for u in parse_passwd(root.read_file("/etc/passwd")) if match(u)]


def groups_from_root(root: RootReader, match: Callable[[Group], bool]) -> list[Group]:
    """The entries of the root's ``/etc/group`` that ``match``; raises
    :class:`FileNotFoundError` when there is no such file."""
    return [g for g in parse_group(root.read_file("/etc/group")) if match(g)]
